//! [`MetadataStore`] in one SQLite file (WAL mode), the embedded default.
//!
//! Calls run on tokio's blocking pool behind one connection mutex: SQLite
//! serialises writers anyway, and hot reads are served from the registry's
//! in-memory cache before they get here. Callers store blob bytes durably
//! before the metadata naming them; commits here are durable when they
//! return (WAL, `synchronous = FULL`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_reference::Digest;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Accounts, Collection, CollectionLease, Distribution, GcSnapshot, HubSettings, ManifestRecord,
    MetadataError, OrgRecord, RepoSummary, UploadRecord, Uploads, UserRecord,
};
use crate::storage::{LedgerEntry, ObjectEntry, ObjectLedger, StorageError, UploadId};

mod web;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS repositories (
    name TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_links (
    repository TEXT NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX IF NOT EXISTS blob_links_by_digest ON blob_links(digest);
CREATE TABLE IF NOT EXISTS manifests (
    repository TEXT NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    annotations TEXT,
    created INTEGER NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX IF NOT EXISTS manifests_by_subject ON manifests(repository, subject);
CREATE TABLE IF NOT EXISTS manifest_refs (
    repository TEXT NOT NULL,
    manifest TEXT NOT NULL,
    digest TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    position INTEGER NOT NULL,
    PRIMARY KEY (repository, manifest, position),
    FOREIGN KEY (repository, manifest) REFERENCES manifests(repository, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS manifest_refs_by_digest ON manifest_refs(digest);
CREATE TABLE IF NOT EXISTS tags (
    repository TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (repository, name),
    FOREIGN KEY (repository, digest) REFERENCES manifests(repository, digest) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orgs (
    name TEXT PRIMARY KEY,
    verified INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS org_members (
    org TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    PRIMARY KEY (org, user)
);
CREATE TABLE IF NOT EXISTS repository_settings (
    name TEXT PRIMARY KEY,
    private INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS repository_descriptions (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS repository_owner_descriptions (
    name TEXT PRIMARY KEY,
    description TEXT,
    full_description TEXT
);
CREATE TABLE IF NOT EXISTS stars (
    user TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (user, repository)
);
CREATE INDEX IF NOT EXISTS stars_by_repository ON stars(repository);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    started INTEGER NOT NULL
);
"#;

/// Version 3: object storage's ledger (see `storage::ObjectLedger`) and
/// shared secrets.
const LEDGER: &str = r#"
CREATE TABLE upload_ledger (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state BLOB NOT NULL,
    modified INTEGER NOT NULL
);
CREATE TABLE blob_objects (
    digest TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"#;

/// Version 4: each repository's star count, kept by triggers, so that
/// listings by stars walk an index instead of counting every star.
const STAR_COUNTS: &str = r#"
CREATE TABLE star_counts (
    repository TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX star_counts_by_n ON star_counts(n DESC, repository);
INSERT INTO star_counts (repository, n) SELECT repository, COUNT(*) FROM stars GROUP BY repository;
CREATE TRIGGER stars_counted AFTER INSERT ON stars BEGIN
    INSERT INTO star_counts (repository, n) VALUES (NEW.repository, 1)
        ON CONFLICT (repository) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER stars_uncounted AFTER DELETE ON stars BEGIN
    UPDATE star_counts SET n = n - 1 WHERE repository = OLD.repository;
    DELETE FROM star_counts WHERE repository = OLD.repository AND n <= 0;
END;
CREATE TRIGGER stars_moved AFTER UPDATE OF repository ON stars
    WHEN OLD.repository <> NEW.repository BEGIN
    UPDATE star_counts SET n = n - 1 WHERE repository = OLD.repository;
    DELETE FROM star_counts WHERE repository = OLD.repository AND n <= 0;
    INSERT INTO star_counts (repository, n) VALUES (NEW.repository, 1)
        ON CONFLICT (repository) DO UPDATE SET n = n + 1;
END;
"#;

/// The schema this code reads and writes, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Ordered migration steps: step `i` takes the database from version `i` to
/// `i + 1`. Step 0 is idempotent (`IF NOT EXISTS`) because roots made before
/// the schema was versioned already hold these tables with version 0.
const MIGRATIONS: &[&str] = &[SCHEMA, web::SCHEMA_V2, LEDGER, STAR_COUNTS];

fn migrate(conn: &Connection, path: &Path) -> Result<(), MetadataError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version > SCHEMA_VERSION {
        return Err(MetadataError::SchemaTooNew {
            path: path.display().to_string(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    // Another server may be migrating the same file: take the write lock,
    // then read the version again.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for step in MIGRATIONS.iter().skip(version.max(0) as usize) {
            conn.execute_batch(step)?;
        }
        if version < SCHEMA_VERSION {
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        }
        Ok::<_, rusqlite::Error>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(db(e))
        }
    }
}

/// Reads the schema version of an open database (for tests and `check`).
pub fn schema_version(path: &Path) -> Result<i64, MetadataError> {
    let conn = Connection::open(path).map_err(db)?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db)
}

/// A repository's search row: the owner's non-empty description wins over
/// the image label's.
const SUMMARY: &str = "SELECT r.name, COALESCE(NULLIF(o.description, ''), d.description),
        o.full_description,
        COALESCE((SELECT n FROM star_counts s WHERE s.repository = r.name), 0) AS n,
        COALESCE(p.private, 0)
    FROM repositories r
    LEFT JOIN repository_descriptions d ON d.name = r.name
    LEFT JOIN repository_owner_descriptions o ON o.name = r.name
    LEFT JOIN repository_settings p ON p.name = r.name";

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RepoSummary> {
    Ok(RepoSummary {
        name: r.get(0)?,
        description: r.get(1)?,
        full_description: r.get(2)?,
        stars: r.get::<_, i64>(3)? as u64,
        private: r.get(4)?,
    })
}

pub struct SqliteMetadata {
    /// The one connection that writes (SQLite allows one writer at a time).
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections, so that a slow listing or a GC snapshot does
    /// not hold up manifest reads: in WAL mode readers run beside the
    /// writer and each other, and see every transaction committed before
    /// they start.
    readers: Arc<Readers>,
    /// The database file: the collection lease is a lock on a file beside it.
    path: std::path::PathBuf,
}

/// A small pool of read-only connections, opened as needed.
struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
    opened: std::sync::atomic::AtomicUsize,
    returned: std::sync::Condvar,
}

/// Read connections at most: beyond the cores they would only queue.
const READERS: usize = 4;

impl Readers {
    fn take(&self) -> Result<Connection, MetadataError> {
        use std::sync::atomic::Ordering;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(c) = idle.pop() {
                return Ok(c);
            }
            if self.opened.load(Ordering::Acquire) < READERS {
                self.opened.fetch_add(1, Ordering::AcqRel);
                drop(idle);
                return self.open().inspect_err(|_| {
                    self.opened.fetch_sub(1, Ordering::AcqRel);
                });
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self) -> Result<Connection, MetadataError> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        self.returned.notify_one();
    }
}

fn db(e: rusqlite::Error) -> MetadataError {
    MetadataError::Database(e.to_string())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_digest(s: &str) -> Result<Digest, MetadataError> {
    Digest::parse(s).map_err(|_| MetadataError::Corrupt(format!("digest {s:?}")))
}

/// A `users` row read as `name, password_hash, admin`.
fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord { name: r.get(0)?, password_hash: r.get(1)?, admin: r.get(2)? })
}

fn ensure_repository(tx: &Connection, repo: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO repositories (name, created) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![repo, now()],
    )?;
    Ok(())
}

impl SqliteMetadata {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<SqliteMetadata, MetadataError> {
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        // FULL: every commit syncs the WAL. NORMAL keeps the database
        // consistent but may lose the last commits on power loss, and a
        // client told "201 Created" must find its tag after a reboot.
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        migrate(&conn, path)?;
        let readers = Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            opened: std::sync::atomic::AtomicUsize::new(0),
            returned: std::sync::Condvar::new(),
        };
        Ok(SqliteMetadata {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(readers),
            path: path.to_owned(),
        })
    }

    /// Runs `f`, which only reads, on a read-only connection on the
    /// blocking pool (a write there fails: "attempt to write a readonly
    /// database").
    async fn read<T, F>(&self, f: F) -> Result<T, MetadataError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, MetadataError> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = readers.take()?;
            let result = f(&mut conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|e| MetadataError::Database(e.to_string()))?
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, MetadataError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, MetadataError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| MetadataError::Database(e.to_string()))?
    }
}

fn load_manifest(
    conn: &Connection,
    repo: &str,
    digest: &str,
) -> Result<Option<ManifestRecord>, MetadataError> {
    let row = conn
        .query_row(
            "SELECT media_type, size, subject, artifact_type, annotations FROM manifests
             WHERE repository = ?1 AND digest = ?2",
            params![repo, digest],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            },
        )
        .optional()
        .map_err(db)?;
    let Some((media_type, size, subject, artifact_type, annotations)) = row else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT digest, kind FROM manifest_refs WHERE repository = ?1 AND manifest = ?2
             ORDER BY position",
        )
        .map_err(db)?;
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let rows = stmt
        .query_map(params![repo, digest], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(db)?;
    for row in rows {
        let (d, kind) = row.map_err(db)?;
        let d = parse_digest(&d)?;
        if kind == "manifest" { children.push(d) } else { blobs.push(d) }
    }
    let annotations = match annotations {
        Some(text) => {
            Some(serde_json::from_str(&text).map_err(|e| MetadataError::Corrupt(e.to_string()))?)
        }
        None => None,
    };
    Ok(Some(ManifestRecord {
        digest: parse_digest(digest)?,
        media_type,
        size: size as u64,
        subject: subject.as_deref().map(parse_digest).transpose()?,
        artifact_type,
        annotations,
        blobs,
        children,
    }))
}

fn list_names(
    conn: &Connection,
    sql: &str,
    scope: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, MetadataError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let after = after.unwrap_or("");
    let limit = limit.min(i64::MAX as usize) as i64;
    fn name(r: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
        r.get(0)
    }
    let rows = match scope {
        Some(repo) => stmt.query_map(params![repo, after, limit], name),
        None => stmt.query_map(params![after, limit], name),
    }
    .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

#[async_trait]
impl Distribution for SqliteMetadata {
    async fn repository_exists(&self, repo: &str) -> Result<bool, MetadataError> {
        let repo = repo.to_owned();
        self.read(move |c| {
            c.query_row("SELECT 1 FROM repositories WHERE name = ?1", [&repo], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
                .map_err(db)
        })
        .await
    }

    async fn list_repositories(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, MetadataError> {
        let after = after.map(str::to_owned);
        self.read(move |c| {
            list_names(
                c,
                "SELECT name FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2",
                None,
                after.as_deref(),
                limit,
            )
        })
        .await
    }

    async fn delete_repository(&self, repo: &str) -> Result<bool, MetadataError> {
        let repo = repo.to_owned();
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute("DELETE FROM tags WHERE repository = ?1", [&repo]).map_err(db)?;
            tx.execute("DELETE FROM manifest_refs WHERE repository = ?1", [&repo]).map_err(db)?;
            tx.execute("DELETE FROM uploads WHERE repository = ?1", [&repo]).map_err(db)?;
            tx.execute("DELETE FROM repository_settings WHERE name = ?1", [&repo]).map_err(db)?;
            tx.execute("DELETE FROM repository_descriptions WHERE name = ?1", [&repo])
                .map_err(db)?;
            tx.execute("DELETE FROM repository_owner_descriptions WHERE name = ?1", [&repo])
                .map_err(db)?;
            tx.execute("DELETE FROM stars WHERE repository = ?1", [&repo]).map_err(db)?;
            let n = tx.execute("DELETE FROM repositories WHERE name = ?1", [&repo]).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), MetadataError> {
        let (repo, digest) = (repo.to_owned(), digest.to_string());
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            ensure_repository(&tx, &repo).map_err(db)?;
            tx.execute(
                "INSERT INTO blob_links (repository, digest, size, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repository, digest) DO NOTHING",
                params![repo, digest, size as i64, now()],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        let (repo, digest) = (repo.to_owned(), digest.to_string());
        self.read(move |c| {
            c.prepare_cached("SELECT size FROM blob_links WHERE repository = ?1 AND digest = ?2")
                .and_then(|mut s| {
                    s.query_row(params![repo, digest], |r| r.get::<_, i64>(0)).optional()
                })
                .map(|o| o.map(|n| n as u64))
                .map_err(db)
        })
        .await
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetadataError> {
        let (repo, digest) = (repo.to_owned(), digest.to_string());
        self.call(move |c| {
            c.execute(
                "DELETE FROM blob_links WHERE repository = ?1 AND digest = ?2",
                params![repo, digest],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn put_manifest(
        &self,
        repo: &str,
        record: &ManifestRecord,
        tags: &[&str],
    ) -> Result<(), MetadataError> {
        let (repo, record) = (repo.to_owned(), record.clone());
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        self.call(move |c| {
            let annotations = record
                .annotations
                .as_ref()
                .map(|a| serde_json::to_string(a).expect("string map serialises"));
            let digest = record.digest.to_string();
            let tx = c.transaction().map_err(db)?;
            ensure_repository(&tx, &repo).map_err(db)?;
            let inserted = tx
                .execute(
                    "INSERT INTO manifests
                     (repository, digest, media_type, size, subject, artifact_type, annotations, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (repository, digest) DO NOTHING",
                    params![
                        repo,
                        digest,
                        record.media_type,
                        record.size as i64,
                        record.subject.as_ref().map(|d| d.to_string()),
                        record.artifact_type,
                        annotations,
                        now()
                    ],
                )
                .map_err(db)?;
            for blob in &record.blobs {
                let linked = tx
                    .prepare_cached(
                        "SELECT 1 FROM blob_links WHERE repository = ?1 AND digest = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![repo, blob.to_string()], |_| Ok(())).optional()
                    })
                    .map_err(db)?;
                if linked.is_none() {
                    return Err(MetadataError::MissingBlob(blob.clone()));
                }
            }
            if inserted > 0 {
                let refs = record.blobs.iter().map(|d| (d, "blob"));
                let refs = refs.chain(record.children.iter().map(|d| (d, "manifest")));
                for (position, (d, kind)) in refs.enumerate() {
                    tx.execute(
                        "INSERT INTO manifest_refs (repository, manifest, digest, kind, position)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![repo, digest, d.to_string(), kind, position as i64],
                    )
                    .map_err(db)?;
                }
            }
            for tag in &tags {
                tx.execute(
                    "INSERT INTO tags (repository, name, digest, updated) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (repository, name) DO UPDATE SET digest = excluded.digest,
                     updated = excluded.updated",
                    params![repo, tag, digest, now()],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetadataError> {
        let (repo, digest) = (repo.to_owned(), digest.to_string());
        self.read(move |c| load_manifest(c, &repo, &digest)).await
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, MetadataError> {
        let (repo, digest) = (repo.to_owned(), digest.to_string());
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                "DELETE FROM tags WHERE repository = ?1 AND digest = ?2",
                params![repo, digest],
            )
            .map_err(db)?;
            let n = tx
                .execute(
                    "DELETE FROM manifests WHERE repository = ?1 AND digest = ?2",
                    params![repo, digest],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>, MetadataError> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.read(move |c| {
            let d = c
                .prepare_cached("SELECT digest FROM tags WHERE repository = ?1 AND name = ?2")
                .and_then(|mut s| {
                    s.query_row(params![repo, tag], |r| r.get::<_, String>(0)).optional()
                })
                .map_err(db)?;
            d.as_deref().map(parse_digest).transpose()
        })
        .await
    }

    async fn list_tags(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, MetadataError> {
        let (repo, after) = (repo.to_owned(), after.map(str::to_owned));
        self.read(move |c| {
            list_names(
                c,
                "SELECT name FROM tags WHERE repository = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
                Some(&repo),
                after.as_deref(),
                limit,
            )
        })
        .await
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetadataError> {
        let (repo, tag) = (repo.to_owned(), tag.to_owned());
        self.call(move |c| {
            c.execute("DELETE FROM tags WHERE repository = ?1 AND name = ?2", params![repo, tag])
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }

    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, MetadataError> {
        let (repo, subject) = (repo.to_owned(), subject.to_string());
        self.read(move |c| {
            let digests: Vec<String> = {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT digest FROM manifests WHERE repository = ?1 AND subject = ?2
                         ORDER BY digest",
                    )
                    .map_err(db)?;
                let rows = stmt
                    .query_map(params![repo, subject], |r| r.get::<_, String>(0))
                    .map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            let mut out = Vec::with_capacity(digests.len());
            for d in digests {
                out.extend(load_manifest(c, &repo, &d)?);
            }
            Ok(out)
        })
        .await
    }

    async fn blob_repositories(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<String>, MetadataError> {
        let digest = digest.to_string();
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT repository FROM blob_links WHERE digest = ?1
                     ORDER BY repository LIMIT ?2",
                )
                .map_err(db)?;
            let rows = stmt.query_map(params![digest, limit], |r| r.get(0)).map_err(db)?;
            rows.collect::<Result<Vec<String>, _>>().map_err(db)
        })
        .await
    }
}

#[async_trait]
impl Uploads for SqliteMetadata {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), MetadataError> {
        let u = upload.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO uploads (id, repository, started) VALUES (?1, ?2, ?3)",
                params![u.id.as_str(), u.repository, u.started],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, MetadataError> {
        let id = id.clone();
        self.read(move |c| {
            c.query_row(
                "SELECT repository, started FROM uploads WHERE id = ?1",
                [id.as_str()],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map(|o| o.map(|(repository, started)| UploadRecord { id, repository, started }))
            .map_err(db)
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool, MetadataError> {
        let id = id.clone();
        self.call(move |c| {
            c.execute("DELETE FROM uploads WHERE id = ?1", [id.as_str()]).map(|n| n > 0).map_err(db)
        })
        .await
    }

    async fn list_uploads(&self) -> Result<Vec<UploadRecord>, MetadataError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT id, repository, started FROM uploads ORDER BY id")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, repository, started) = row.map_err(db)?;
                let id = UploadId::parse(&id)
                    .ok_or_else(|| MetadataError::Corrupt(format!("upload id {id:?}")))?;
                out.push(UploadRecord { id, repository, started });
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Accounts for SqliteMetadata {
    async fn create_user(&self, user: &UserRecord) -> Result<bool, MetadataError> {
        let u = user.clone();
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            let org_taken = tx
                .query_row("SELECT 1 FROM orgs WHERE name = ?1", [&u.name], |_| Ok(()))
                .optional()
                .map_err(db)?
                .is_some();
            if org_taken {
                return Ok(false);
            }
            let n = tx
                .execute(
                    "INSERT INTO users (name, password_hash, admin, created) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO NOTHING",
                    params![u.name, u.password_hash, u.admin, now()],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, MetadataError> {
        let name = name.to_owned();
        self.read(move |c| {
            c.query_row("SELECT password_hash, admin FROM users WHERE name = ?1", [&name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
            })
            .optional()
            .map(|o| o.map(|(password_hash, admin)| UserRecord { name, password_hash, admin }))
            .map_err(db)
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, MetadataError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT name, password_hash, admin FROM users ORDER BY name")
                .map_err(db)?;
            let rows = stmt.query_map([], user_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    async fn users_page(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<UserRecord>, u64), MetadataError> {
        let (offset, limit) =
            (offset.min(i64::MAX as usize) as i64, limit.min(i64::MAX as usize) as i64);
        self.read(move |c| {
            let total: i64 =
                c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).map_err(db)?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT name, password_hash, admin FROM users ORDER BY name LIMIT ? OFFSET ?",
                )
                .map_err(db)?;
            let rows = stmt.query_map([limit, offset], user_row).map_err(db)?;
            let users = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
            Ok((users, total as u64))
        })
        .await
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, MetadataError> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.call(move |c| {
            c.execute("UPDATE users SET password_hash = ?2 WHERE name = ?1", params![name, hash])
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<bool, MetadataError> {
        let name = name.to_owned();
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute("DELETE FROM org_members WHERE user = ?1", [&name]).map_err(db)?;
            tx.execute("DELETE FROM stars WHERE user = ?1", [&name]).map_err(db)?;
            let n = tx.execute("DELETE FROM users WHERE name = ?1", [&name]).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn create_org(&self, name: &str) -> Result<bool, MetadataError> {
        let name = name.to_owned();
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            let user_taken = tx
                .query_row("SELECT 1 FROM users WHERE name = ?1", [&name], |_| Ok(()))
                .optional()
                .map_err(db)?
                .is_some();
            if user_taken {
                return Ok(false);
            }
            let n = tx
                .execute(
                    "INSERT INTO orgs (name, verified, created) VALUES (?1, 0, ?2)
                     ON CONFLICT (name) DO NOTHING",
                    params![name, now()],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn org(&self, name: &str) -> Result<Option<OrgRecord>, MetadataError> {
        let name = name.to_owned();
        self.read(move |c| {
            let verified = c
                .query_row("SELECT verified FROM orgs WHERE name = ?1", [&name], |r| {
                    r.get::<_, bool>(0)
                })
                .optional()
                .map_err(db)?;
            let Some(verified) = verified else { return Ok(None) };
            let mut stmt = c
                .prepare_cached("SELECT user FROM org_members WHERE org = ?1 ORDER BY user")
                .map_err(db)?;
            let members = stmt
                .query_map([&name], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            Ok(Some(OrgRecord { name, verified, members }))
        })
        .await
    }

    async fn set_org_verified(&self, name: &str, verified: bool) -> Result<bool, MetadataError> {
        let name = name.to_owned();
        self.call(move |c| {
            c.execute("UPDATE orgs SET verified = ?2 WHERE name = ?1", params![name, verified])
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }

    async fn add_org_member(&self, org: &str, user: &str) -> Result<bool, MetadataError> {
        let (org, user) = (org.to_owned(), user.to_owned());
        self.call(move |c| {
            let both = c
                .query_row(
                    "SELECT (SELECT COUNT(*) FROM orgs WHERE name = ?1)
                          + (SELECT COUNT(*) FROM users WHERE name = ?2)",
                    params![org, user],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(db)?;
            if both != 2 {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO org_members (org, user) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![org, user],
            )
            .map(|_| true)
            .map_err(db)
        })
        .await
    }

    async fn remove_org_member(&self, org: &str, user: &str) -> Result<bool, MetadataError> {
        let (org, user) = (org.to_owned(), user.to_owned());
        self.call(move |c| {
            c.execute("DELETE FROM org_members WHERE org = ?1 AND user = ?2", params![org, user])
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }

    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, MetadataError> {
        let (name, candidate) = (name.to_owned(), candidate.to_vec());
        self.call(move |c| {
            c.execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, candidate],
            )
            .map_err(db)?;
            c.query_row("SELECT value FROM secrets WHERE name = ?1", [&name], |r| r.get(0))
                .map_err(db)
        })
        .await
    }
}

#[async_trait]
impl HubSettings for SqliteMetadata {
    async fn set_repository_private(&self, repo: &str, private: bool) -> Result<(), MetadataError> {
        let repo = repo.to_owned();
        self.call(move |c| {
            c.execute(
                "INSERT INTO repository_settings (name, private) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET private = excluded.private",
                params![repo, private],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn repository_private(&self, repo: &str) -> Result<bool, MetadataError> {
        let repo = repo.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT private FROM repository_settings WHERE name = ?1")
                .and_then(|mut s| s.query_row([&repo], |r| r.get::<_, bool>(0)).optional())
                .map(|o| o.unwrap_or(false))
                .map_err(db)
        })
        .await
    }

    async fn set_repository_description(
        &self,
        repo: &str,
        description: Option<&str>,
    ) -> Result<(), MetadataError> {
        let (repo, description) = (repo.to_owned(), description.map(str::to_owned));
        self.call(move |c| {
            match description {
                Some(d) => c.execute(
                    "INSERT INTO repository_descriptions (name, description) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET description = excluded.description",
                    params![repo, d],
                ),
                None => c.execute("DELETE FROM repository_descriptions WHERE name = ?1", [&repo]),
            }
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn search_repositories(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<RepoSummary>, MetadataError> {
        let query = query.to_lowercase();
        let limit = limit.min(i64::MAX as usize) as i64;
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "{SUMMARY}
                     WHERE instr(lower(r.name), ?1) > 0
                        OR instr(lower(COALESCE(NULLIF(o.description, ''), d.description, '')), ?1) > 0
                     ORDER BY n DESC, r.name
                     LIMIT ?2"
                ))
                .map_err(db)?;
            let rows = stmt.query_map(params![query, limit], summary_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    async fn set_repository_owner_description(
        &self,
        repo: &str,
        description: Option<&str>,
        full_description: Option<&str>,
    ) -> Result<(), MetadataError> {
        let repo = repo.to_owned();
        let (description, full) =
            (description.map(str::to_owned), full_description.map(str::to_owned));
        self.call(move |c| {
            c.execute(
                "INSERT INTO repository_owner_descriptions (name, description, full_description)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET
                   description = COALESCE(excluded.description, description),
                   full_description = COALESCE(excluded.full_description, full_description)",
                params![repo, description, full],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn repository_summary(&self, repo: &str) -> Result<Option<RepoSummary>, MetadataError> {
        let repo = repo.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("{SUMMARY} WHERE r.name = ?1"))
                .and_then(|mut s| s.query_row([&repo], summary_row).optional())
                .map_err(db)
        })
        .await
    }

    async fn star(&self, user: &str, repo: &str) -> Result<bool, MetadataError> {
        let (user, repo) = (user.to_owned(), repo.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO stars (user, repository) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![user, repo],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn unstar(&self, user: &str, repo: &str) -> Result<bool, MetadataError> {
        let (user, repo) = (user.to_owned(), repo.to_owned());
        self.call(move |c| {
            c.execute("DELETE FROM stars WHERE user = ?1 AND repository = ?2", params![user, repo])
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }
}

#[async_trait]
impl Collection for SqliteMetadata {
    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        let digest = digest.to_string();
        self.call(move |c| {
            c.query_row("SELECT size FROM blob_links WHERE digest = ?1 LIMIT 1", [&digest], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|o| o.map(|n| n as u64))
            .map_err(db)
        })
        .await
    }

    async fn gc_snapshot(&self) -> Result<GcSnapshot, MetadataError> {
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            let mut snapshot = GcSnapshot::default();
            let keys: Vec<(String, String, i64)> = {
                let mut stmt =
                    tx.prepare("SELECT repository, digest, created FROM manifests").map_err(db)?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            for (repo, digest, created) in keys {
                if let Some(record) = load_manifest(&tx, &repo, &digest)? {
                    snapshot.manifests.push((repo, record, created));
                }
            }
            {
                let mut stmt = tx.prepare("SELECT repository, digest FROM tags").map_err(db)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(db)?;
                for row in rows {
                    let (repo, d) = row.map_err(db)?;
                    snapshot.tags.push((repo, parse_digest(&d)?));
                }
            }
            {
                let mut stmt =
                    tx.prepare("SELECT repository, digest, created FROM blob_links").map_err(db)?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                    })
                    .map_err(db)?;
                for row in rows {
                    let (repo, d, created) = row.map_err(db)?;
                    snapshot.links.push((repo, parse_digest(&d)?, created));
                }
            }
            Ok(snapshot)
        })
        .await
    }

    async fn unlink_stale_blob(
        &self,
        repo: &str,
        digest: &Digest,
        linked_before: i64,
    ) -> Result<bool, MetadataError> {
        let (repo, digest) = (repo.to_owned(), digest.to_string());
        self.call(move |c| {
            c.execute(
                "DELETE FROM blob_links
                 WHERE repository = ?1 AND digest = ?2 AND created < ?3
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs
                                   WHERE repository = ?1 AND digest = ?2)",
                params![repo, digest, linked_before],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn blob_in_use(&self, digest: &Digest) -> Result<bool, MetadataError> {
        let digest = digest.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM blob_links WHERE digest = ?1)
                     OR EXISTS (SELECT 1 FROM manifest_refs WHERE digest = ?1)
                     OR EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)",
                [&digest],
                |r| r.get::<_, bool>(0),
            )
            .map_err(db)
        })
        .await
    }

    /// A lock on `<database>.gc-lock`, held by the open file: the kernel
    /// drops it when the process ends, however it ends.
    async fn lease_collection(&self) -> Result<CollectionLease, MetadataError> {
        let mut name = self.path.clone().into_os_string();
        name.push(".gc-lock");
        let path = std::path::PathBuf::from(name);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| MetadataError::Database(format!("{}: {e}", path.display())))?;
            match file.try_lock() {
                Ok(()) => Ok(CollectionLease::new(async move { drop(file) })),
                Err(std::fs::TryLockError::WouldBlock) => Err(MetadataError::CollectionRunning),
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(MetadataError::Database(format!("{}: {e}", path.display())))
                }
            }
        })
        .await
        .map_err(|e| MetadataError::Database(e.to_string()))?
    }

    async fn stale_links(
        &self,
        after: Option<(&str, &Digest)>,
        linked_before: i64,
        limit: usize,
    ) -> Result<Vec<(String, Digest)>, MetadataError> {
        let (repo, digest) =
            after.map_or((String::new(), String::new()), |(r, d)| (r.to_owned(), d.to_string()));
        let limit = limit.min(i64::MAX as usize) as i64;
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT l.repository, l.digest FROM blob_links l
                     WHERE (l.repository, l.digest) > (?1, ?2) AND l.created < ?3
                       AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                                       WHERE r.repository = l.repository AND r.digest = l.digest)
                     ORDER BY l.repository, l.digest LIMIT ?4",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![repo, digest, linked_before, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (repo, d) = row.map_err(db)?;
                out.push((repo, parse_digest(&d)?));
            }
            Ok(out)
        })
        .await
    }

    async fn unlink_stale_blobs(
        &self,
        links: &[(String, Digest)],
        linked_before: i64,
    ) -> Result<usize, MetadataError> {
        let links: Vec<(String, String)> =
            links.iter().map(|(r, d)| (r.clone(), d.to_string())).collect();
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            let mut removed = 0;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "DELETE FROM blob_links
                         WHERE repository = ?1 AND digest = ?2 AND created < ?3
                           AND NOT EXISTS (SELECT 1 FROM manifest_refs
                                           WHERE repository = ?1 AND digest = ?2)",
                    )
                    .map_err(db)?;
                for (repo, digest) in &links {
                    removed += stmt.execute(params![repo, digest, linked_before]).map_err(db)?;
                }
            }
            tx.commit().map_err(db)?;
            Ok(removed)
        })
        .await
    }

    async fn blobs_kept(
        &self,
        digests: &[Digest],
        stale_before: Option<i64>,
    ) -> Result<std::collections::HashSet<Digest>, MetadataError> {
        let digests = digests.to_vec();
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            let mut kept = std::collections::HashSet::new();
            {
                let mut stmt = tx
                    .prepare_cached(&format!("SELECT {}", sqlite_kept("?1", "?2")))
                    .map_err(db)?;
                for d in digests {
                    if stmt
                        .query_row(params![d.as_str(), stale_before], |r| r.get::<_, bool>(0))
                        .map_err(db)?
                    {
                        kept.insert(d);
                    }
                }
            }
            tx.commit().map_err(db)?;
            Ok(kept)
        })
        .await
    }

    async fn unkept_objects(
        &self,
        after: Option<&Digest>,
        stale_before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(Digest, ObjectEntry)>, MetadataError> {
        let after = after.map(|d| d.to_string()).unwrap_or_default();
        let limit = limit.min(i64::MAX as usize) as i64;
        self.call(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT b.digest, b.key, b.size, b.created FROM blob_objects b
                     WHERE b.digest > ?2 AND NOT ({})
                     ORDER BY b.digest LIMIT ?3",
                    sqlite_kept("b.digest", "?1")
                ))
                .map_err(db)?;
            let rows =
                stmt.query_map(params![stale_before, after, limit], object_row).map_err(db)?;
            objects(rows)
        })
        .await
    }

    async fn remove_unkept_objects(
        &self,
        digests: &[Digest],
        created_before: i64,
    ) -> Result<Vec<(Digest, ObjectEntry)>, MetadataError> {
        let digests = digests.to_vec();
        self.call(move |c| {
            // IMMEDIATE: the write lock first, so the check and the delete
            // see the same database (a touch or link waits for the commit).
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let mut out = Vec::new();
            {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "DELETE FROM blob_objects AS b
                         WHERE b.digest = ?1 AND b.created < ?2 AND NOT ({})
                         RETURNING digest, key, size, created",
                        sqlite_kept("b.digest", "NULL")
                    ))
                    .map_err(db)?;
                for d in &digests {
                    let removed = stmt
                        .query_row(params![d.as_str(), created_before], object_row)
                        .optional()
                        .map_err(db)?;
                    if let Some((_, e)) = removed {
                        out.push((d.clone(), e));
                    }
                }
            }
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }
}

/// Whether something keeps the blob `digest` (an SQL expression; links
/// made before `stale_before` do not count, unless it is NULL).
fn sqlite_kept(digest: &str, stale_before: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM blob_links l WHERE l.digest = {digest}
                 AND ({stale_before} IS NULL OR l.created >= {stale_before}))
         OR EXISTS (SELECT 1 FROM manifest_refs r WHERE r.digest = {digest})
         OR EXISTS (SELECT 1 FROM manifests m WHERE m.digest = {digest})"
    )
}

fn object_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, ObjectEntry)> {
    Ok((
        r.get(0)?,
        ObjectEntry { key: r.get(1)?, size: r.get::<_, i64>(2)? as u64, created: r.get(3)? },
    ))
}

/// Ledger rows read with [`object_row`], their digests parsed.
fn objects(
    rows: impl Iterator<Item = rusqlite::Result<(String, ObjectEntry)>>,
) -> Result<Vec<(Digest, ObjectEntry)>, MetadataError> {
    rows.map(|row| {
        let (d, e) = row.map_err(db)?;
        Ok((parse_digest(&d)?, e))
    })
    .collect()
}

fn ledger_err(e: MetadataError) -> StorageError {
    StorageError::Ledger(e.to_string())
}

#[async_trait]
impl ObjectLedger for SqliteMetadata {
    async fn object_insert(
        &self,
        digest: &Digest,
        entry: &ObjectEntry,
    ) -> Result<bool, StorageError> {
        let (digest, e) = (digest.to_string(), entry.clone());
        self.call(move |c| {
            c.execute(
                "INSERT INTO blob_objects (digest, key, size, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (digest) DO NOTHING",
                params![digest, e.key, e.size as i64, e.created],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
        .map_err(ledger_err)
    }

    async fn object_get(&self, digest: &Digest) -> Result<Option<ObjectEntry>, StorageError> {
        let digest = digest.to_string();
        self.call(move |c| {
            c.prepare_cached("SELECT key, size, created FROM blob_objects WHERE digest = ?1")
                .and_then(|mut s| {
                    s.query_row([&digest], |r| {
                        Ok(ObjectEntry {
                            key: r.get(0)?,
                            size: r.get::<_, i64>(1)? as u64,
                            created: r.get(2)?,
                        })
                    })
                    .optional()
                })
                .map_err(db)
        })
        .await
        .map_err(ledger_err)
    }

    async fn object_touch(&self, digest: &Digest, at: i64) -> Result<bool, StorageError> {
        let digest = digest.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE blob_objects SET created = max(created, ?2) WHERE digest = ?1",
                params![digest, at],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
        .map_err(ledger_err)
    }

    async fn object_remove(&self, digest: &Digest) -> Result<bool, StorageError> {
        let digest = digest.to_string();
        self.call(move |c| {
            c.execute("DELETE FROM blob_objects WHERE digest = ?1", [&digest])
                .map(|n| n == 1)
                .map_err(db)
        })
        .await
        .map_err(ledger_err)
    }

    async fn object_list(&self) -> Result<Vec<(Digest, ObjectEntry)>, StorageError> {
        self.call(|c| {
            let mut stmt =
                c.prepare("SELECT digest, key, size, created FROM blob_objects").map_err(db)?;
            let rows = stmt.query_map([], object_row).map_err(db)?;
            objects(rows)
        })
        .await
        .map_err(ledger_err)
    }

    async fn ledger_insert(&self, id: &UploadId, state: &[u8]) -> Result<bool, StorageError> {
        let (id, state) = (id.as_str().to_owned(), state.to_vec());
        self.call(move |c| {
            c.execute(
                "INSERT INTO upload_ledger (id, version, state, modified) VALUES (?1, 0, ?2, ?3)
                 ON CONFLICT (id) DO NOTHING",
                params![id, state, now()],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
        .map_err(ledger_err)
    }

    async fn ledger_get(&self, id: &UploadId) -> Result<Option<LedgerEntry>, StorageError> {
        let id = id.as_str().to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT version, state, modified FROM upload_ledger WHERE id = ?1",
                [&id],
                |r| Ok(LedgerEntry { version: r.get(0)?, state: r.get(1)?, modified: r.get(2)? }),
            )
            .optional()
            .map_err(db)
        })
        .await
        .map_err(ledger_err)
    }

    async fn ledger_replace(
        &self,
        id: &UploadId,
        version: i64,
        state: &[u8],
    ) -> Result<bool, StorageError> {
        let (id, state) = (id.as_str().to_owned(), state.to_vec());
        self.call(move |c| {
            c.execute(
                "UPDATE upload_ledger SET version = version + 1, state = ?3, modified = ?4
                 WHERE id = ?1 AND version = ?2",
                params![id, version, state, now()],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
        .map_err(ledger_err)
    }

    async fn ledger_remove(&self, id: &UploadId) -> Result<bool, StorageError> {
        let id = id.as_str().to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM upload_ledger WHERE id = ?1", [&id]).map(|n| n == 1).map_err(db)
        })
        .await
        .map_err(ledger_err)
    }

    async fn ledger_list(&self) -> Result<Vec<(UploadId, i64)>, StorageError> {
        self.call(|c| {
            let mut stmt = c.prepare("SELECT id, modified FROM upload_ledger").map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, t) = row.map_err(db)?;
                if let Some(id) = UploadId::parse(&id) {
                    out.push((id, t));
                }
            }
            Ok(out)
        })
        .await
        .map_err(ledger_err)
    }
}
