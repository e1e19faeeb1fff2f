//! [`MetadataStore`] (and the object storage [`ObjectLedger`]) in
//! PostgreSQL, for several replicas sharing one database.
//!
//! - A pool of connections (`deadpool-postgres`); each call takes one for a
//!   single statement or transaction and gives it back, so no connection is
//!   held while a blob body streams.
//! - Transactions that read before they write run `SERIALIZABLE` and are
//!   retried on a serialization failure or deadlock (SQLSTATE 40001,
//!   40P01): a manifest put and garbage collection's unlink can then never
//!   interleave so that a manifest names a link GC removed.
//! - Names are `COLLATE "C"`, so lists sort by byte order as the contract
//!   says, whatever locale the cluster was created with.
//! - The schema version lives in `berth_schema`; migrations run under an
//!   advisory lock so that replicas starting together migrate once.
//! - Changes to tags and manifests are announced with `NOTIFY` and heard
//!   by one extra connection per replica (the [`changes`] feed), so that
//!   replicas may cache manifests and still see another's push at once.
//!
//! Connections are plain TCP (`NoTls`): run the database on a private
//! network or through a local TLS proxy.

use std::str::FromStr;

use async_trait::async_trait;
use berth_reference::Digest;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls, Row};

use super::{
    Accounts, ChangeFeed, Collection, CollectionLease, Distribution, GcSnapshot, HubSettings,
    ManifestRecord, MetadataError, OrgRecord, RepoSummary, UploadRecord, Uploads, UserRecord,
};
use crate::storage::{LedgerEntry, ObjectEntry, ObjectLedger, StorageError, UploadId};

/// Step `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repositories (
    name TEXT COLLATE "C" PRIMARY KEY,
    created BIGINT NOT NULL
);
CREATE TABLE blob_links (
    repository TEXT COLLATE "C" NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX blob_links_by_digest ON blob_links(digest);
CREATE TABLE manifests (
    repository TEXT COLLATE "C" NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest TEXT COLLATE "C" NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    subject TEXT COLLATE "C",
    artifact_type TEXT,
    annotations TEXT,
    created BIGINT NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repository, subject);
CREATE INDEX manifests_by_digest ON manifests(digest);
CREATE TABLE manifest_refs (
    repository TEXT COLLATE "C" NOT NULL,
    manifest TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    position BIGINT NOT NULL,
    PRIMARY KEY (repository, manifest, position),
    FOREIGN KEY (repository, manifest) REFERENCES manifests(repository, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_refs_by_digest ON manifest_refs(digest);
CREATE INDEX manifest_refs_by_repo_digest ON manifest_refs(repository, digest);
CREATE TABLE tags (
    repository TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (repository, name),
    FOREIGN KEY (repository, digest) REFERENCES manifests(repository, digest) ON DELETE CASCADE
);
CREATE TABLE users (
    name TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    created BIGINT NOT NULL
);
CREATE TABLE orgs (
    name TEXT COLLATE "C" PRIMARY KEY,
    verified BOOLEAN NOT NULL DEFAULT FALSE,
    created BIGINT NOT NULL
);
CREATE TABLE org_members (
    org TEXT COLLATE "C" NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
    member TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    PRIMARY KEY (org, member)
);
CREATE TABLE repository_settings (
    name TEXT COLLATE "C" PRIMARY KEY,
    private BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE repository_descriptions (
    name TEXT COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE repository_owner_descriptions (
    name TEXT COLLATE "C" PRIMARY KEY,
    description TEXT,
    full_description TEXT
);
CREATE TABLE stars (
    member TEXT COLLATE "C" NOT NULL,
    repository TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (member, repository)
);
CREATE INDEX stars_by_repository ON stars(repository);
CREATE TABLE uploads (
    id TEXT COLLATE "C" PRIMARY KEY,
    repository TEXT COLLATE "C" NOT NULL,
    started BIGINT NOT NULL
);
CREATE TABLE upload_ledger (
    id TEXT COLLATE "C" PRIMARY KEY,
    version BIGINT NOT NULL,
    state BYTEA NOT NULL,
    modified BIGINT NOT NULL
);
CREATE TABLE blob_objects (
    digest TEXT COLLATE "C" PRIMARY KEY,
    key TEXT NOT NULL,
    size BIGINT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE secrets (
    name TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);
"#,
    web::SCHEMA_V2,
    changes::SCHEMA_V3,
];

/// The schema this code reads and writes.
pub const PG_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Attempts of a transaction that keeps meeting serialization failures
/// (fifty pushers of one tag at once still all get through).
const ATTEMPTS: u32 = 40;

/// How long to wait before attempt `attempt + 1`: exponential with full
/// jitter, capped at 200 ms, so that contenders do not retry in lockstep.
fn backoff(attempt: u32) -> std::time::Duration {
    let ceiling = (2u64 << attempt.min(7)).min(200);
    let mut random = [0u8; 8];
    // Without randomness the ceiling itself is still a working wait.
    let jitter = match getrandom::getrandom(&mut random) {
        Ok(()) => u64::from_le_bytes(random) % (ceiling + 1),
        Err(_) => ceiling,
    };
    std::time::Duration::from_millis(jitter.max(1))
}

/// The connections a replica keeps open at most.
const POOL_SIZE: usize = 32;

pub struct PostgresMetadata {
    pool: Pool,
    config: tokio_postgres::Config,
    /// Started by the first subscriber: admin commands never listen.
    feed: tokio::sync::OnceCell<changes::Feed>,
}

/// What a transaction body can fail with.
enum TxError {
    Pg(tokio_postgres::Error),
    Meta(MetadataError),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> TxError {
        TxError::Pg(e)
    }
}

impl From<MetadataError> for TxError {
    fn from(e: MetadataError) -> TxError {
        TxError::Meta(e)
    }
}

fn pg(e: tokio_postgres::Error) -> MetadataError {
    // The server's message (not the URL, which may hold a password).
    match e.as_db_error() {
        Some(db) => MetadataError::Database(format!("{} ({})", db.message(), db.code().code())),
        None => MetadataError::Database(e.to_string()),
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
        || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// Runs `$body` (a block that may use `?` and evaluates to the result) in
/// a serializable transaction named `$tx`, committing after it and retrying
/// the whole block on a serialization failure. A `return Ok(..)` inside the
/// body ends the transaction without committing (for read-only exits).
macro_rules! serializable {
    ($self:expr, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut client = $self.client().await?;
            let outcome: Result<_, TxError> = async {
                let $tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start()
                    .await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Ok(v) => break Ok(v),
                Err(TxError::Pg(e)) if retryable(&e) && attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(TxError::Pg(e)) => break Err(pg(e)),
                Err(TxError::Meta(e)) => break Err(e),
            }
        }
    }};
}

mod changes;
mod web;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_digest(s: &str) -> Result<Digest, MetadataError> {
    Digest::parse(s).map_err(|_| MetadataError::Corrupt(format!("digest {s:?}")))
}

const SUMMARY: &str = "SELECT r.name, COALESCE(NULLIF(o.description, ''), d.description),
        o.full_description,
        (SELECT COUNT(*) FROM stars s WHERE s.repository = r.name) AS n,
        COALESCE(p.private, FALSE)
    FROM repositories r
    LEFT JOIN repository_descriptions d ON d.name = r.name
    LEFT JOIN repository_owner_descriptions o ON o.name = r.name
    LEFT JOIN repository_settings p ON p.name = r.name";

fn summary_row(r: &Row) -> RepoSummary {
    RepoSummary {
        name: r.get(0),
        description: r.get(1),
        full_description: r.get(2),
        stars: r.get::<_, i64>(3) as u64,
        private: r.get(4),
    }
}

impl PostgresMetadata {
    /// Connects to `url` (`postgres://user[:password]@host:port/db`) and
    /// migrates the schema. Errors never repeat the URL.
    pub async fn connect(url: &str) -> Result<PostgresMetadata, MetadataError> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| MetadataError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| MetadataError::Database(e.to_string()))?;
        let me = PostgresMetadata { pool, config, feed: tokio::sync::OnceCell::new() };
        me.migrate().await?;
        Ok(me)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, MetadataError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg(e),
            other => MetadataError::Database(format!("PostgreSQL pool: {other}")),
        })
    }

    async fn migrate(&self) -> Result<(), MetadataError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // One replica migrates; the others wait here, then find it done.
        tx.execute("SELECT pg_advisory_xact_lock(7286562843)", &[]).await.map_err(pg)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS berth_schema (version BIGINT NOT NULL)")
            .await
            .map_err(pg)?;
        let version: i64 =
            match tx.query_opt("SELECT version FROM berth_schema", &[]).await.map_err(pg)? {
                Some(row) => row.get(0),
                None => {
                    tx.execute("INSERT INTO berth_schema (version) VALUES (0)", &[])
                        .await
                        .map_err(pg)?;
                    0
                }
            };
        if version > PG_SCHEMA_VERSION {
            return Err(MetadataError::SchemaTooNew {
                path: "PostgreSQL database".into(),
                found: version,
                known: PG_SCHEMA_VERSION,
            });
        }
        for step in MIGRATIONS.iter().skip(version as usize) {
            tx.batch_execute(step).await.map_err(pg)?;
        }
        tx.execute("UPDATE berth_schema SET version = $1", &[&PG_SCHEMA_VERSION])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, MetadataError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.query(&stmt, params).await.map_err(pg)
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Row>, MetadataError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.query_opt(&stmt, params).await.map_err(pg)
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, MetadataError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.execute(&stmt, params).await.map_err(pg)
    }

    fn names(rows: Vec<Row>) -> Vec<String> {
        rows.iter().map(|r| r.get(0)).collect()
    }
}

async fn ensure_repository(
    tx: &tokio_postgres::Transaction<'_>,
    repo: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO repositories (name, created) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&repo, &now()],
    )
    .await
    .map(|_| ())
}

async fn load_manifest(
    c: &impl tokio_postgres::GenericClient,
    repo: &str,
    digest: &str,
) -> Result<Option<ManifestRecord>, TxError> {
    let Some(row) = c
        .query_opt(
            "SELECT media_type, size, subject, artifact_type, annotations FROM manifests
             WHERE repository = $1 AND digest = $2",
            &[&repo, &digest],
        )
        .await?
    else {
        return Ok(None);
    };
    let refs = c
        .query(
            "SELECT digest, kind FROM manifest_refs WHERE repository = $1 AND manifest = $2
             ORDER BY position",
            &[&repo, &digest],
        )
        .await?;
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    for r in refs {
        let d = parse_digest(r.get(0))?;
        if r.get::<_, &str>(1) == "manifest" { children.push(d) } else { blobs.push(d) }
    }
    let annotations = match row.get::<_, Option<String>>(4) {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| TxError::Meta(MetadataError::Corrupt(e.to_string())))?,
        ),
        None => None,
    };
    Ok(Some(ManifestRecord {
        digest: parse_digest(digest)?,
        media_type: row.get(0),
        size: row.get::<_, i64>(1) as u64,
        subject: row.get::<_, Option<&str>>(2).map(parse_digest).transpose()?,
        artifact_type: row.get(3),
        annotations,
        blobs,
        children,
    }))
}

/// A `users` row read as `name, password_hash, admin`.
fn user_row(r: &Row) -> UserRecord {
    UserRecord { name: r.get(0), password_hash: r.get(1), admin: r.get(2) }
}

fn limit(n: usize) -> i64 {
    n.min(i64::MAX as usize) as i64
}

#[async_trait]
impl Distribution for PostgresMetadata {
    async fn subscribe_changes(&self) -> Option<ChangeFeed> {
        let feed = self.feed.get_or_init(|| changes::Feed::start(self.config.clone())).await;
        Some(feed.subscribe())
    }

    async fn repository_exists(&self, repo: &str) -> Result<bool, MetadataError> {
        Ok(self.query_opt("SELECT 1 FROM repositories WHERE name = $1", &[&repo]).await?.is_some())
    }

    async fn list_repositories(
        &self,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>, MetadataError> {
        let after = after.unwrap_or("");
        let rows = self
            .query(
                "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
                &[&after, &limit(n)],
            )
            .await?;
        Ok(Self::names(rows))
    }

    async fn delete_repository(&self, repo: &str) -> Result<bool, MetadataError> {
        serializable!(self, |tx| {
            for sql in [
                "DELETE FROM tags WHERE repository = $1",
                "DELETE FROM manifest_refs WHERE repository = $1",
                "DELETE FROM uploads WHERE repository = $1",
                "DELETE FROM repository_settings WHERE name = $1",
                "DELETE FROM repository_descriptions WHERE name = $1",
                "DELETE FROM repository_owner_descriptions WHERE name = $1",
                "DELETE FROM stars WHERE repository = $1",
            ] {
                tx.execute(sql, &[&repo]).await?;
            }
            tx.execute("DELETE FROM repositories WHERE name = $1", &[&repo]).await? > 0
        })
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), MetadataError> {
        let digest = digest.as_str();
        serializable!(self, |tx| {
            ensure_repository(&tx, repo).await?;
            tx.execute(
                "INSERT INTO blob_links (repository, digest, size, created) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository, digest) DO NOTHING",
                &[&repo, &digest, &(size as i64), &now()],
            )
            .await?;
        })
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        let row = self
            .query_opt(
                "SELECT size FROM blob_links WHERE repository = $1 AND digest = $2",
                &[&repo, &digest.as_str()],
            )
            .await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetadataError> {
        Ok(self
            .execute(
                "DELETE FROM blob_links WHERE repository = $1 AND digest = $2",
                &[&repo, &digest.as_str()],
            )
            .await?
            > 0)
    }

    async fn put_manifest(
        &self,
        repo: &str,
        record: &ManifestRecord,
        tags: &[&str],
    ) -> Result<(), MetadataError> {
        let annotations = record
            .annotations
            .as_ref()
            .map(|a| serde_json::to_string(a).expect("string map serialises"));
        let digest = record.digest.as_str();
        let subject = record.subject.as_ref().map(|d| d.as_str());
        serializable!(self, |tx| {
            ensure_repository(&tx, repo).await?;
            let inserted = tx
                .execute(
                    "INSERT INTO manifests
                     (repository, digest, media_type, size, subject, artifact_type, annotations, created)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (repository, digest) DO NOTHING",
                    &[
                        &repo,
                        &digest,
                        &record.media_type,
                        &(record.size as i64),
                        &subject,
                        &record.artifact_type,
                        &annotations,
                        &now(),
                    ],
                )
                .await?;
            for blob in &record.blobs {
                // FOR SHARE: garbage collection cannot remove the link
                // before this transaction commits.
                let linked = tx
                    .query_opt(
                        "SELECT 1 FROM blob_links WHERE repository = $1 AND digest = $2 FOR SHARE",
                        &[&repo, &blob.as_str()],
                    )
                    .await?;
                if linked.is_none() {
                    return Err(TxError::Meta(MetadataError::MissingBlob(blob.clone())));
                }
            }
            if inserted > 0 {
                let refs = record.blobs.iter().map(|d| (d, "blob"));
                let refs = refs.chain(record.children.iter().map(|d| (d, "manifest")));
                for (position, (d, kind)) in refs.enumerate() {
                    tx.execute(
                        "INSERT INTO manifest_refs (repository, manifest, digest, kind, position)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&repo, &digest, &d.as_str(), &kind, &(position as i64)],
                    )
                    .await?;
                }
            }
            for &tag in tags {
                tx.execute(
                    "INSERT INTO tags (repository, name, digest, updated) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (repository, name) DO UPDATE SET digest = excluded.digest,
                     updated = excluded.updated",
                    &[&repo, &tag, &digest, &now()],
                )
                .await?;
            }
        })
    }

    async fn manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetadataError> {
        let client = self.client().await?;
        match load_manifest(&**client, repo, digest.as_str()).await {
            Ok(m) => Ok(m),
            Err(TxError::Pg(e)) => Err(pg(e)),
            Err(TxError::Meta(e)) => Err(e),
        }
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, MetadataError> {
        let digest = digest.as_str();
        serializable!(self, |tx| {
            tx.execute("DELETE FROM tags WHERE repository = $1 AND digest = $2", &[&repo, &digest])
                .await?;
            tx.execute(
                "DELETE FROM manifests WHERE repository = $1 AND digest = $2",
                &[&repo, &digest],
            )
            .await?
                > 0
        })
    }

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>, MetadataError> {
        let row = self
            .query_opt(
                "SELECT digest FROM tags WHERE repository = $1 AND name = $2",
                &[&repo, &tag],
            )
            .await?;
        row.map(|r| parse_digest(r.get(0))).transpose()
    }

    async fn list_tags(
        &self,
        repo: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>, MetadataError> {
        let after = after.unwrap_or("");
        let rows = self
            .query(
                "SELECT name FROM tags WHERE repository = $1 AND name > $2 ORDER BY name LIMIT $3",
                &[&repo, &after, &limit(n)],
            )
            .await?;
        Ok(Self::names(rows))
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetadataError> {
        Ok(self
            .execute("DELETE FROM tags WHERE repository = $1 AND name = $2", &[&repo, &tag])
            .await?
            > 0)
    }

    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, MetadataError> {
        let subject = subject.as_str();
        serializable!(self, |tx| {
            let rows = tx
                .query(
                    "SELECT digest FROM manifests WHERE repository = $1 AND subject = $2
                     ORDER BY digest",
                    &[&repo, &subject],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.extend(load_manifest(&*tx, repo, r.get(0)).await?);
            }
            out
        })
    }

    async fn blob_repositories(
        &self,
        digest: &Digest,
        n: usize,
    ) -> Result<Vec<String>, MetadataError> {
        let rows = self
            .query(
                "SELECT repository FROM blob_links WHERE digest = $1 ORDER BY repository LIMIT $2",
                &[&digest.as_str(), &limit(n)],
            )
            .await?;
        Ok(Self::names(rows))
    }
}

#[async_trait]
impl Uploads for PostgresMetadata {
    async fn create_upload(&self, u: &UploadRecord) -> Result<(), MetadataError> {
        self.execute(
            "INSERT INTO uploads (id, repository, started) VALUES ($1, $2, $3)",
            &[&u.id.as_str(), &u.repository, &u.started],
        )
        .await
        .map(|_| ())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, MetadataError> {
        let row = self
            .query_opt("SELECT repository, started FROM uploads WHERE id = $1", &[&id.as_str()])
            .await?;
        Ok(row.map(|r| UploadRecord { id: id.clone(), repository: r.get(0), started: r.get(1) }))
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool, MetadataError> {
        Ok(self.execute("DELETE FROM uploads WHERE id = $1", &[&id.as_str()]).await? > 0)
    }

    async fn list_uploads(&self) -> Result<Vec<UploadRecord>, MetadataError> {
        let rows =
            self.query("SELECT id, repository, started FROM uploads ORDER BY id", &[]).await?;
        rows.iter()
            .map(|r| {
                let id: &str = r.get(0);
                let id = UploadId::parse(id)
                    .ok_or_else(|| MetadataError::Corrupt(format!("upload id {id:?}")))?;
                Ok(UploadRecord { id, repository: r.get(1), started: r.get(2) })
            })
            .collect()
    }
}

#[async_trait]
impl Accounts for PostgresMetadata {
    async fn create_user(&self, u: &UserRecord) -> Result<bool, MetadataError> {
        serializable!(self, |tx| {
            if tx.query_opt("SELECT 1 FROM orgs WHERE name = $1", &[&u.name]).await?.is_some() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO users (name, password_hash, admin, created) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING",
                &[&u.name, &u.password_hash, &u.admin, &now()],
            )
            .await?
                > 0
        })
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, MetadataError> {
        let row = self
            .query_opt("SELECT password_hash, admin FROM users WHERE name = $1", &[&name])
            .await?;
        Ok(row.map(|r| UserRecord {
            name: name.to_owned(),
            password_hash: r.get(0),
            admin: r.get(1),
        }))
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, MetadataError> {
        let rows =
            self.query("SELECT name, password_hash, admin FROM users ORDER BY name", &[]).await?;
        Ok(rows.iter().map(user_row).collect())
    }

    async fn users_page(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<UserRecord>, u64), MetadataError> {
        let (offset, limit) = (self::limit(offset), self::limit(limit));
        // The count in the same statement: one snapshot for both.
        let rows = self
            .query(
                "SELECT name, password_hash, admin, COUNT(*) OVER () FROM users
                 ORDER BY name LIMIT $1 OFFSET $2",
                &[&limit, &offset],
            )
            .await?;
        let total = match rows.first() {
            Some(r) => r.get::<_, i64>(3) as u64,
            // Past the end, or no users at all.
            None => self.query("SELECT COUNT(*) FROM users", &[]).await?[0].get::<_, i64>(0) as u64,
        };
        let users = rows.iter().map(user_row).collect();
        Ok((users, total))
    }

    async fn set_password(&self, name: &str, hash: &str) -> Result<bool, MetadataError> {
        Ok(self
            .execute("UPDATE users SET password_hash = $2 WHERE name = $1", &[&name, &hash])
            .await?
            > 0)
    }

    async fn delete_user(&self, name: &str) -> Result<bool, MetadataError> {
        serializable!(self, |tx| {
            tx.execute("DELETE FROM org_members WHERE member = $1", &[&name]).await?;
            tx.execute("DELETE FROM stars WHERE member = $1", &[&name]).await?;
            tx.execute("DELETE FROM users WHERE name = $1", &[&name]).await? > 0
        })
    }

    async fn create_org(&self, name: &str) -> Result<bool, MetadataError> {
        serializable!(self, |tx| {
            if tx.query_opt("SELECT 1 FROM users WHERE name = $1", &[&name]).await?.is_some() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO orgs (name, verified, created) VALUES ($1, FALSE, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &now()],
            )
            .await?
                > 0
        })
    }

    async fn org(&self, name: &str) -> Result<Option<OrgRecord>, MetadataError> {
        serializable!(self, |tx| {
            let Some(row) =
                tx.query_opt("SELECT verified FROM orgs WHERE name = $1", &[&name]).await?
            else {
                return Ok(None);
            };
            let members = tx
                .query("SELECT member FROM org_members WHERE org = $1 ORDER BY member", &[&name])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Some(OrgRecord { name: name.to_owned(), verified: row.get(0), members })
        })
    }

    async fn set_org_verified(&self, name: &str, verified: bool) -> Result<bool, MetadataError> {
        Ok(self
            .execute("UPDATE orgs SET verified = $2 WHERE name = $1", &[&name, &verified])
            .await?
            > 0)
    }

    async fn add_org_member(&self, org: &str, user: &str) -> Result<bool, MetadataError> {
        serializable!(self, |tx| {
            let both: i64 = tx
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM orgs WHERE name = $1)
                          + (SELECT COUNT(*) FROM users WHERE name = $2)",
                    &[&org, &user],
                )
                .await?
                .get(0);
            if both != 2 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO org_members (org, member) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&org, &user],
            )
            .await?;
            true
        })
    }

    async fn remove_org_member(&self, org: &str, user: &str) -> Result<bool, MetadataError> {
        Ok(self
            .execute("DELETE FROM org_members WHERE org = $1 AND member = $2", &[&org, &user])
            .await?
            > 0)
    }

    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, MetadataError> {
        self.execute(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &candidate],
        )
        .await?;
        let row = self.query_opt("SELECT value FROM secrets WHERE name = $1", &[&name]).await?;
        row.map(|r| r.get(0))
            .ok_or_else(|| MetadataError::Database(format!("secret {name} vanished")))
    }
}

#[async_trait]
impl HubSettings for PostgresMetadata {
    async fn set_repository_private(&self, repo: &str, private: bool) -> Result<(), MetadataError> {
        self.execute(
            "INSERT INTO repository_settings (name, private) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET private = excluded.private",
            &[&repo, &private],
        )
        .await
        .map(|_| ())
    }

    async fn repository_private(&self, repo: &str) -> Result<bool, MetadataError> {
        let row = self
            .query_opt("SELECT private FROM repository_settings WHERE name = $1", &[&repo])
            .await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    async fn set_repository_description(
        &self,
        repo: &str,
        description: Option<&str>,
    ) -> Result<(), MetadataError> {
        match description {
            Some(d) => {
                self.execute(
                    "INSERT INTO repository_descriptions (name, description) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET description = excluded.description",
                    &[&repo, &d],
                )
                .await?
            }
            None => {
                self.execute("DELETE FROM repository_descriptions WHERE name = $1", &[&repo])
                    .await?
            }
        };
        Ok(())
    }

    async fn set_repository_owner_description(
        &self,
        repo: &str,
        description: Option<&str>,
        full_description: Option<&str>,
    ) -> Result<(), MetadataError> {
        self.execute(
            "INSERT INTO repository_owner_descriptions AS o (name, description, full_description)
             VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET
               description = COALESCE(excluded.description, o.description),
               full_description = COALESCE(excluded.full_description, o.full_description)",
            &[&repo, &description, &full_description],
        )
        .await
        .map(|_| ())
    }

    async fn repository_summary(&self, repo: &str) -> Result<Option<RepoSummary>, MetadataError> {
        let row = self.query_opt(&format!("{SUMMARY} WHERE r.name = $1"), &[&repo]).await?;
        Ok(row.as_ref().map(summary_row))
    }

    async fn search_repositories(
        &self,
        query: &str,
        n: usize,
    ) -> Result<Vec<RepoSummary>, MetadataError> {
        let query = query.to_lowercase();
        let rows = self
            .query(
                &format!(
                    "{SUMMARY}
                     WHERE strpos(lower(r.name), $1) > 0
                        OR strpos(lower(COALESCE(NULLIF(o.description, ''), d.description, '')), $1) > 0
                     ORDER BY n DESC, r.name
                     LIMIT $2"
                ),
                &[&query, &limit(n)],
            )
            .await?;
        Ok(rows.iter().map(summary_row).collect())
    }

    async fn star(&self, user: &str, repo: &str) -> Result<bool, MetadataError> {
        Ok(self
            .execute(
                "INSERT INTO stars (member, repository) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&user, &repo],
            )
            .await?
            > 0)
    }

    async fn unstar(&self, user: &str, repo: &str) -> Result<bool, MetadataError> {
        Ok(self
            .execute("DELETE FROM stars WHERE member = $1 AND repository = $2", &[&user, &repo])
            .await?
            > 0)
    }
}

#[async_trait]
impl Collection for PostgresMetadata {
    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        let row = self
            .query_opt("SELECT size FROM blob_links WHERE digest = $1 LIMIT 1", &[&digest.as_str()])
            .await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn gc_snapshot(&self) -> Result<GcSnapshot, MetadataError> {
        let mut client = self.client().await?;
        // One consistent view, read-only: no serialization failure to retry.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg)?;
        let mut snapshot = GcSnapshot::default();
        let manifests = tx
            .query(
                "SELECT repository, digest, media_type, size, subject, artifact_type, annotations, created
                 FROM manifests",
                &[],
            )
            .await
            .map_err(pg)?;
        let refs = tx
            .query(
                "SELECT repository, manifest, digest, kind FROM manifest_refs
                 ORDER BY repository, manifest, position",
                &[],
            )
            .await
            .map_err(pg)?;
        let mut by_manifest: std::collections::HashMap<
            (String, String),
            (Vec<Digest>, Vec<Digest>),
        > = std::collections::HashMap::new();
        for r in refs {
            let entry = by_manifest.entry((r.get(0), r.get(1))).or_default();
            let d = parse_digest(r.get(2))?;
            if r.get::<_, &str>(3) == "manifest" { entry.1.push(d) } else { entry.0.push(d) }
        }
        for r in manifests {
            let repo: String = r.get(0);
            let digest: String = r.get(1);
            let (blobs, children) =
                by_manifest.remove(&(repo.clone(), digest.clone())).unwrap_or_default();
            let annotations = match r.get::<_, Option<String>>(6) {
                Some(t) => Some(
                    serde_json::from_str(&t).map_err(|e| MetadataError::Corrupt(e.to_string()))?,
                ),
                None => None,
            };
            let record = ManifestRecord {
                digest: parse_digest(&digest)?,
                media_type: r.get(2),
                size: r.get::<_, i64>(3) as u64,
                subject: r.get::<_, Option<&str>>(4).map(parse_digest).transpose()?,
                artifact_type: r.get(5),
                annotations,
                blobs,
                children,
            };
            snapshot.manifests.push((repo, record, r.get(7)));
        }
        for r in tx.query("SELECT repository, digest FROM tags", &[]).await.map_err(pg)? {
            snapshot.tags.push((r.get(0), parse_digest(r.get(1))?));
        }
        for r in
            tx.query("SELECT repository, digest, created FROM blob_links", &[]).await.map_err(pg)?
        {
            snapshot.links.push((r.get(0), parse_digest(r.get(1))?, r.get(2)));
        }
        tx.commit().await.map_err(pg)?;
        Ok(snapshot)
    }

    async fn unlink_stale_blob(
        &self,
        repo: &str,
        digest: &Digest,
        linked_before: i64,
    ) -> Result<bool, MetadataError> {
        let digest = digest.as_str();
        serializable!(self, |tx| {
            tx.execute(
                "DELETE FROM blob_links
                 WHERE repository = $1 AND digest = $2 AND created < $3
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs
                                   WHERE repository = $1 AND digest = $2)",
                &[&repo, &digest, &linked_before],
            )
            .await?
                > 0
        })
    }

    async fn blob_in_use(&self, digest: &Digest) -> Result<bool, MetadataError> {
        let row = self
            .query_opt(
                "SELECT EXISTS (SELECT 1 FROM blob_links WHERE digest = $1)
                     OR EXISTS (SELECT 1 FROM manifest_refs WHERE digest = $1)
                     OR EXISTS (SELECT 1 FROM manifests WHERE digest = $1)",
                &[&digest.as_str()],
            )
            .await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    /// `pg_try_advisory_lock` on a connection of its own, outside the pool,
    /// held for the run: the lock goes with the session, so a collector
    /// that dies or loses the database releases it.
    async fn lease_collection(&self) -> Result<CollectionLease, MetadataError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(pg)?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        let held: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&COLLECTION_LOCK])
            .await
            .map_err(pg)?
            .get(0);
        if !held {
            task.abort();
            return Err(MetadataError::CollectionRunning);
        }
        // Unlocked at once on release: the server notices a closed session
        // only a moment later, and the next run may be about to start.
        Ok(CollectionLease::new(async move {
            let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&COLLECTION_LOCK]).await;
            drop(client);
            task.abort();
        }))
    }

    async fn stale_links(
        &self,
        after: Option<(&str, &Digest)>,
        linked_before: i64,
        n: usize,
    ) -> Result<Vec<(String, Digest)>, MetadataError> {
        let (repo, digest) = after.map_or(("", ""), |(r, d)| (r, d.as_str()));
        let rows = self
            .query(
                "SELECT l.repository, l.digest FROM blob_links l
                 WHERE (l.repository, l.digest) > ($1, $2) AND l.created < $3
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                                   WHERE r.repository = l.repository AND r.digest = l.digest)
                 ORDER BY l.repository, l.digest LIMIT $4",
                &[&repo, &digest, &linked_before, &limit(n)],
            )
            .await?;
        rows.iter().map(|r| Ok((r.get(0), parse_digest(r.get(1))?))).collect()
    }

    async fn unlink_stale_blobs(
        &self,
        links: &[(String, Digest)],
        linked_before: i64,
    ) -> Result<usize, MetadataError> {
        let repos: Vec<&str> = links.iter().map(|(r, _)| r.as_str()).collect();
        let digests: Vec<&str> = links.iter().map(|(_, d)| d.as_str()).collect();
        // Serializable: a manifest put holding one of these links FOR SHARE
        // makes this wait, then fail and retry, then see the reference.
        serializable!(self, |tx| {
            tx.execute(
                "DELETE FROM blob_links l
                 USING unnest($1::text[], $2::text[]) AS c(repository, digest)
                 WHERE l.repository = c.repository AND l.digest = c.digest AND l.created < $3
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                                   WHERE r.repository = l.repository AND r.digest = l.digest)",
                &[&repos, &digests, &linked_before],
            )
            .await? as usize
        })
    }

    async fn blobs_kept(
        &self,
        digests: &[Digest],
        stale_before: Option<i64>,
    ) -> Result<std::collections::HashSet<Digest>, MetadataError> {
        let list: Vec<&str> = digests.iter().map(Digest::as_str).collect();
        let rows = self
            .query(
                &format!("SELECT d FROM unnest($1::text[]) AS d WHERE {}", pg_kept("d", "$2")),
                &[&list, &stale_before],
            )
            .await?;
        rows.iter().map(|r| parse_digest(r.get(0))).collect()
    }

    async fn unkept_objects(
        &self,
        after: Option<&Digest>,
        stale_before: Option<i64>,
        n: usize,
    ) -> Result<Vec<(Digest, ObjectEntry)>, MetadataError> {
        let after = after.map_or("", Digest::as_str);
        let rows = self
            .query(
                &format!(
                    "SELECT b.digest, b.key, b.size, b.created FROM blob_objects b
                     WHERE b.digest > $1 AND NOT ({})
                     ORDER BY b.digest LIMIT $3",
                    pg_kept("b.digest", "$2")
                ),
                &[&after, &stale_before, &limit(n)],
            )
            .await?;
        rows.iter().map(|r| Ok((parse_digest(r.get(0))?, object_entry(r, 1)))).collect()
    }

    async fn remove_unkept_objects(
        &self,
        digests: &[Digest],
        created_before: i64,
    ) -> Result<Vec<(Digest, ObjectEntry)>, MetadataError> {
        let list: Vec<&str> = digests.iter().map(Digest::as_str).collect();
        // The delete locks each entry: a put touching it (an UPDATE of the
        // same row) waits, then finds it gone and stores the blob anew; a
        // touch that came first makes the entry young, so it stays.
        serializable!(self, |tx| {
            let rows = tx
                .query(
                    &format!(
                        "DELETE FROM blob_objects b
                         WHERE b.digest = ANY($1) AND b.created < $2 AND NOT ({})
                         RETURNING b.digest, b.key, b.size, b.created",
                        pg_kept("b.digest", "NULL::bigint")
                    ),
                    &[&list, &created_before],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((parse_digest(r.get(0))?, object_entry(r, 1)));
            }
            out
        })
    }
}

/// The advisory lock key of garbage collection (beside migration's).
const COLLECTION_LOCK: i64 = 7286562844;

/// Whether something keeps the blob `digest` (an SQL expression; links
/// made before `stale_before` do not count, unless it is NULL).
fn pg_kept(digest: &str, stale_before: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM blob_links l WHERE l.digest = {digest}
                 AND ({stale_before}::bigint IS NULL OR l.created >= {stale_before}::bigint))
         OR EXISTS (SELECT 1 FROM manifest_refs r WHERE r.digest = {digest})
         OR EXISTS (SELECT 1 FROM manifests m WHERE m.digest = {digest})"
    )
}

fn ledger_err(e: MetadataError) -> StorageError {
    StorageError::Ledger(e.to_string())
}

fn object_entry(r: &Row, from: usize) -> ObjectEntry {
    ObjectEntry {
        key: r.get(from),
        size: r.get::<_, i64>(from + 1) as u64,
        created: r.get(from + 2),
    }
}

#[async_trait]
impl ObjectLedger for PostgresMetadata {
    async fn object_insert(&self, digest: &Digest, e: &ObjectEntry) -> Result<bool, StorageError> {
        self.execute(
            "INSERT INTO blob_objects (digest, key, size, created) VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO NOTHING",
            &[&digest.as_str(), &e.key, &(e.size as i64), &e.created],
        )
        .await
        .map(|n| n == 1)
        .map_err(ledger_err)
    }

    async fn object_get(&self, digest: &Digest) -> Result<Option<ObjectEntry>, StorageError> {
        let row = self
            .query_opt(
                "SELECT key, size, created FROM blob_objects WHERE digest = $1",
                &[&digest.as_str()],
            )
            .await
            .map_err(ledger_err)?;
        Ok(row.map(|r| object_entry(&r, 0)))
    }

    async fn object_touch(&self, digest: &Digest, at: i64) -> Result<bool, StorageError> {
        self.execute(
            "UPDATE blob_objects SET created = GREATEST(created, $2) WHERE digest = $1",
            &[&digest.as_str(), &at],
        )
        .await
        .map(|n| n == 1)
        .map_err(ledger_err)
    }

    async fn object_remove(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.execute("DELETE FROM blob_objects WHERE digest = $1", &[&digest.as_str()])
            .await
            .map(|n| n == 1)
            .map_err(ledger_err)
    }

    async fn object_list(&self) -> Result<Vec<(Digest, ObjectEntry)>, StorageError> {
        let rows = self
            .query("SELECT digest, key, size, created FROM blob_objects", &[])
            .await
            .map_err(ledger_err)?;
        rows.iter()
            .map(|r| {
                let d = Digest::parse(r.get(0)).map_err(|_| {
                    StorageError::Ledger(format!("digest {:?}", r.get::<_, &str>(0)))
                })?;
                Ok((d, object_entry(r, 1)))
            })
            .collect()
    }

    async fn ledger_insert(&self, id: &UploadId, state: &[u8]) -> Result<bool, StorageError> {
        self.execute(
            "INSERT INTO upload_ledger (id, version, state, modified) VALUES ($1, 0, $2, $3)
             ON CONFLICT (id) DO NOTHING",
            &[&id.as_str(), &state, &now()],
        )
        .await
        .map(|n| n == 1)
        .map_err(ledger_err)
    }

    async fn ledger_get(&self, id: &UploadId) -> Result<Option<LedgerEntry>, StorageError> {
        let row = self
            .query_opt(
                "SELECT version, state, modified FROM upload_ledger WHERE id = $1",
                &[&id.as_str()],
            )
            .await
            .map_err(ledger_err)?;
        Ok(row.map(|r| LedgerEntry { version: r.get(0), state: r.get(1), modified: r.get(2) }))
    }

    async fn ledger_replace(
        &self,
        id: &UploadId,
        version: i64,
        state: &[u8],
    ) -> Result<bool, StorageError> {
        // One statement: the row lock makes the compare and the swap atomic.
        self.execute(
            "UPDATE upload_ledger SET version = version + 1, state = $3, modified = $4
             WHERE id = $1 AND version = $2",
            &[&id.as_str(), &version, &state, &now()],
        )
        .await
        .map(|n| n == 1)
        .map_err(ledger_err)
    }

    async fn ledger_remove(&self, id: &UploadId) -> Result<bool, StorageError> {
        self.execute("DELETE FROM upload_ledger WHERE id = $1", &[&id.as_str()])
            .await
            .map(|n| n == 1)
            .map_err(ledger_err)
    }

    async fn ledger_list(&self) -> Result<Vec<(UploadId, i64)>, StorageError> {
        let rows =
            self.query("SELECT id, modified FROM upload_ledger", &[]).await.map_err(ledger_err)?;
        Ok(rows
            .iter()
            .filter_map(|r| UploadId::parse(r.get(0)).map(|id| (id, r.get::<_, i64>(1))))
            .collect())
    }
}
