//! [`AccessTokens`], [`Sessions`] and [`Browse`] for [`PostgresMetadata`]
//! (schema step 2 in the parent module).
//!
//! What SQLite does with triggers is done here with foreign keys: a
//! tag's pusher goes with the tag (and moves with it on a rename), a
//! repository's activity with the repository, tokens and sessions with
//! their user.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use super::{ATTEMPTS, PostgresMetadata, TxError, backoff, limit, parse_digest, pg, retryable};
use crate::metadata::browse::{
    AccessTokenRecord, AccessTokens, Browse, RenameOutcome, RepoListing, RepoOrder, RepoPage,
    RepoQuery, SessionRecord, Sessions, TagDetail, TagOrder, TagPage, Viewer,
};
use crate::metadata::{MetadataError, RepoSummary};

/// Schema step 2: tokens, sessions, who pushed what and when.
pub(super) const SCHEMA_V2: &str = r#"
CREATE TABLE access_tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    description TEXT NOT NULL,
    scope TEXT NOT NULL,
    hash TEXT NOT NULL,
    created BIGINT NOT NULL,
    last_used BIGINT
);
CREATE INDEX access_tokens_by_owner ON access_tokens(owner);
CREATE TABLE sessions (
    hash TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX sessions_by_owner ON sessions(owner);
CREATE INDEX sessions_by_expiry ON sessions(expires);
CREATE TABLE tag_pushers (
    repository TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    pusher TEXT NOT NULL,
    PRIMARY KEY (repository, name),
    FOREIGN KEY (repository, name) REFERENCES tags(repository, name)
        ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE repository_activity (
    name TEXT COLLATE "C" PRIMARY KEY REFERENCES repositories(name) ON DELETE CASCADE,
    updated BIGINT NOT NULL
);
CREATE INDEX repository_activity_by_time ON repository_activity(updated);
CREATE INDEX tags_by_time ON tags(repository, updated);
INSERT INTO repository_activity (name, updated)
    SELECT repository, MAX(updated) FROM tags GROUP BY repository;
"#;

const TOKEN_COLUMNS: &str = "id, owner, description, scope, hash, created, last_used";

fn token_row(r: &Row) -> AccessTokenRecord {
    AccessTokenRecord {
        id: r.get(0),
        user: r.get(1),
        description: r.get(2),
        scope: r.get(3),
        hash: r.get(4),
        created: r.get(5),
        last_used: r.get(6),
    }
}

fn is_foreign_key_violation(e: &MetadataError) -> bool {
    matches!(e, MetadataError::Database(m) if m.ends_with("(23503)"))
}

#[async_trait]
impl AccessTokens for PostgresMetadata {
    async fn create_access_token(&self, t: &AccessTokenRecord) -> Result<bool, MetadataError> {
        // The foreign key is the test that the user exists.
        let inserted = self
            .execute(
                "INSERT INTO access_tokens (id, owner, description, scope, hash, created, last_used)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                &[&t.id, &t.user, &t.description, &t.scope, &t.hash, &t.created, &t.last_used],
            )
            .await;
        match inserted {
            Ok(n) => Ok(n > 0),
            Err(e) if is_foreign_key_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn access_token(&self, id: &str) -> Result<Option<AccessTokenRecord>, MetadataError> {
        let row = self
            .query_opt(&format!("SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE id = $1"), &[&id])
            .await?;
        Ok(row.as_ref().map(token_row))
    }

    async fn list_access_tokens(
        &self,
        user: &str,
    ) -> Result<Vec<AccessTokenRecord>, MetadataError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE owner = $1
                     ORDER BY created DESC, id"
                ),
                &[&user],
            )
            .await?;
        Ok(rows.iter().map(token_row).collect())
    }

    async fn delete_access_token(&self, user: &str, id: &str) -> Result<bool, MetadataError> {
        let n = self
            .execute("DELETE FROM access_tokens WHERE owner = $1 AND id = $2", &[&user, &id])
            .await?;
        Ok(n > 0)
    }

    async fn touch_access_token(&self, id: &str, at: i64) -> Result<(), MetadataError> {
        self.execute("UPDATE access_tokens SET last_used = $2 WHERE id = $1", &[&id, &at])
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Sessions for PostgresMetadata {
    async fn create_session(&self, s: &SessionRecord) -> Result<bool, MetadataError> {
        // Expired sessions are swept as new ones are made.
        self.execute("DELETE FROM sessions WHERE expires <= $1", &[&s.created]).await?;
        let inserted = self
            .execute(
                "INSERT INTO sessions (hash, owner, created, expires) VALUES ($1, $2, $3, $4)",
                &[&s.hash, &s.user, &s.created, &s.expires],
            )
            .await;
        match inserted {
            Ok(n) => Ok(n > 0),
            Err(e) if is_foreign_key_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn session(&self, hash: &str, now: i64) -> Result<Option<SessionRecord>, MetadataError> {
        let row = self
            .query_opt(
                "SELECT hash, owner, created, expires FROM sessions
                 WHERE hash = $1 AND expires > $2",
                &[&hash, &now],
            )
            .await?;
        Ok(row.map(|r| SessionRecord {
            hash: r.get(0),
            user: r.get(1),
            created: r.get(2),
            expires: r.get(3),
        }))
    }

    async fn delete_session(&self, hash: &str) -> Result<bool, MetadataError> {
        Ok(self.execute("DELETE FROM sessions WHERE hash = $1", &[&hash]).await? > 0)
    }

    async fn delete_user_sessions(&self, user: &str) -> Result<u64, MetadataError> {
        self.execute("DELETE FROM sessions WHERE owner = $1", &[&user]).await
    }
}

/// A repository name's namespace (`''` for one-component names), in SQL.
const NAMESPACE: &str =
    "(CASE WHEN strpos(r.name, '/') > 0 THEN split_part(r.name, '/', 1) ELSE '' END)";

/// The shown description: the owner's when set, else the image label's.
const SHOWN_DESCRIPTION: &str = "COALESCE(NULLIF(o.description, ''), d.description)";

/// The listing's `FROM ... WHERE ...` and its arguments. One plain query:
/// PostgreSQL plans the joins and the filters itself, and the page is cut
/// with `LIMIT`; text matches are substrings, case-insensitive, as
/// `search_repositories` does them.
fn listing_filter(q: &RepoQuery) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut conditions: Vec<String> = Vec::new();
    let mut arg = |value: Box<dyn ToSql + Sync + Send>| {
        args.push(value);
        format!("${}", args.len())
    };
    if let Some(text) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let n = arg(Box::new(text.to_lowercase()));
        conditions.push(format!(
            "(strpos(lower(r.name), {n}) > 0
              OR strpos(lower(COALESCE({SHOWN_DESCRIPTION}, '')), {n}) > 0)"
        ));
    }
    if let Viewer::Namespaces(list) = &q.viewer {
        let n = arg(Box::new(list.clone()));
        conditions.push(format!("(NOT COALESCE(p.private, FALSE) OR {NAMESPACE} = ANY({n}))"));
    }
    if let Some(ns) = &q.namespace {
        // `NS/` up to `NS0` ('0' follows '/'): a range of the primary key.
        let from = arg(Box::new(format!("{ns}/")));
        let to = arg(Box::new(format!("{ns}0")));
        conditions.push(format!("r.name >= {from} AND r.name < {to}"));
    }
    if q.official {
        conditions.push("(strpos(r.name, '/') = 0 OR r.name LIKE 'library/%')".to_owned());
    }
    if q.verified {
        conditions.push("COALESCE(g.verified, FALSE)".to_owned());
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let from = format!(
        " FROM repositories r
          LEFT JOIN repository_descriptions d ON d.name = r.name
          LEFT JOIN repository_owner_descriptions o ON o.name = r.name
          LEFT JOIN repository_settings p ON p.name = r.name
          LEFT JOIN repository_activity a ON a.name = r.name
          LEFT JOIN orgs g ON g.name = {NAMESPACE}{filter}"
    );
    (from, args)
}

fn listing_row(r: &Row) -> RepoListing {
    RepoListing {
        summary: RepoSummary {
            name: r.get(0),
            description: r.get(1),
            full_description: r.get(2),
            stars: r.get::<_, i64>(3) as u64,
            private: r.get(4),
        },
        updated: r.get(5),
        verified: r.get(6),
    }
}

#[async_trait]
impl Browse for PostgresMetadata {
    async fn query_repositories(&self, q: &RepoQuery) -> Result<RepoPage, MetadataError> {
        let (from, mut args) = listing_filter(q);
        let order = match q.order {
            RepoOrder::Stars => "stars DESC, r.name",
            RepoOrder::Updated => "updated DESC, r.name",
            RepoOrder::Name => "r.name",
        };
        let page_sql = format!(
            "SELECT r.name, {SHOWN_DESCRIPTION}, o.full_description,
                    (SELECT COUNT(*) FROM stars s WHERE s.repository = r.name) AS stars,
                    COALESCE(p.private, FALSE),
                    COALESCE(a.updated, r.created) AS updated,
                    COALESCE(g.verified, FALSE)
             {from}
             ORDER BY {order} LIMIT ${} OFFSET ${}",
            args.len() + 1,
            args.len() + 2
        );
        let count_sql = format!("SELECT COUNT(*) {from}");
        let count_args = args.len();
        args.push(Box::new(limit(q.limit)));
        args.push(Box::new(limit(q.offset)));
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = self.query(&page_sql, &params).await?;
        let items: Vec<RepoListing> = rows.iter().map(listing_row).collect();
        let total = if q.count {
            let row = self.query_opt(&count_sql, &params[..count_args]).await?;
            row.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0)
        } else {
            (q.offset + items.len()) as u64
        };
        Ok(RepoPage { total, items })
    }

    async fn tag_details(
        &self,
        repo: &str,
        order: TagOrder,
        offset: usize,
        n: usize,
    ) -> Result<TagPage, MetadataError> {
        let total: i64 = self
            .query_opt("SELECT COUNT(*) FROM tags WHERE repository = $1", &[&repo])
            .await?
            .map(|r| r.get(0))
            .unwrap_or(0);
        let order = match order {
            TagOrder::Newest => "t.updated DESC, t.name",
            TagOrder::Name => "t.name",
        };
        let rows = self
            .query(
                &format!(
                    "SELECT t.name, t.digest, m.media_type, t.updated, u.pusher
                     FROM tags t
                     JOIN manifests m ON m.repository = t.repository AND m.digest = t.digest
                     LEFT JOIN tag_pushers u ON u.repository = t.repository AND u.name = t.name
                     WHERE t.repository = $1 ORDER BY {order} LIMIT $2 OFFSET $3"
                ),
                &[&repo, &limit(n), &limit(offset)],
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            items.push(TagDetail {
                name: r.get(0),
                digest: parse_digest(r.get(1))?,
                media_type: r.get(2),
                updated: r.get(3),
                pushed_by: r.get(4),
            });
        }
        Ok(TagPage { total: total as u64, items })
    }

    async fn orgs_of(&self, user: &str) -> Result<Vec<String>, MetadataError> {
        let rows = self
            .query("SELECT org FROM org_members WHERE member = $1 ORDER BY org", &[&user])
            .await?;
        Ok(Self::names(rows))
    }

    async fn starred(&self, user: &str, repo: &str) -> Result<bool, MetadataError> {
        let row = self
            .query_opt("SELECT 1 FROM stars WHERE member = $1 AND repository = $2", &[&user, &repo])
            .await?;
        Ok(row.is_some())
    }

    async fn record_pusher(&self, repo: &str, tag: &str, user: &str) -> Result<(), MetadataError> {
        serializable!(self, |tx| {
            // A tag deleted meanwhile has no pusher to record.
            if !user.is_empty() {
                tx.execute(
                    "INSERT INTO tag_pushers (repository, name, pusher)
                     SELECT repository, name, $3 FROM tags WHERE repository = $1 AND name = $2
                     ON CONFLICT (repository, name) DO UPDATE SET pusher = excluded.pusher",
                    &[&repo, &tag, &user],
                )
                .await?;
            }
            tx.execute(
                "INSERT INTO repository_activity (name, updated)
                 SELECT repository, updated FROM tags WHERE repository = $1 AND name = $2
                 ON CONFLICT (name) DO UPDATE
                    SET updated = GREATEST(repository_activity.updated, excluded.updated)",
                &[&repo, &tag],
            )
            .await?;
        })
    }

    async fn bare_repositories(&self) -> Result<Vec<String>, MetadataError> {
        let rows = self
            .query("SELECT name FROM repositories WHERE strpos(name, '/') = 0 ORDER BY name", &[])
            .await?;
        Ok(Self::names(rows))
    }

    async fn rename_repository(
        &self,
        from: &str,
        to: &str,
    ) -> Result<RenameOutcome, MetadataError> {
        serializable!(self, |tx| {
            let exists = "SELECT 1 FROM repositories WHERE name = $1";
            if tx.query_opt(exists, &[&from]).await?.is_none() {
                return Ok(RenameOutcome::NoSource);
            }
            if tx.query_opt(exists, &[&to]).await?.is_some() {
                return Ok(RenameOutcome::TargetExists);
            }
            // The new name first, so that every row can point at it as it
            // moves; the old one last, when nothing refers to it.
            tx.execute(
                "INSERT INTO repositories (name, created)
                 SELECT $2, created FROM repositories WHERE name = $1",
                &[&from, &to],
            )
            .await?;
            for table in [
                "repository_settings",
                "repository_descriptions",
                "repository_owner_descriptions",
                "repository_activity",
            ] {
                // What the source says wins over settings made for a
                // repository that was never pushed.
                tx.execute(&format!("DELETE FROM {table} WHERE name = $1"), &[&to]).await?;
                tx.execute(&format!("UPDATE {table} SET name = $2 WHERE name = $1"), &[&from, &to])
                    .await?;
            }
            tx.execute(
                "UPDATE stars SET repository = $2 WHERE repository = $1 AND NOT EXISTS
                    (SELECT 1 FROM stars x WHERE x.member = stars.member AND x.repository = $2)",
                &[&from, &to],
            )
            .await?;
            tx.execute("DELETE FROM stars WHERE repository = $1", &[&from]).await?;
            tx.execute(
                "INSERT INTO manifests (repository, digest, media_type, size, subject,
                                        artifact_type, annotations, created)
                 SELECT $2, digest, media_type, size, subject, artifact_type, annotations, created
                 FROM manifests WHERE repository = $1",
                &[&from, &to],
            )
            .await?;
            // Tags carry their pushers with them (ON UPDATE CASCADE).
            for table in ["manifest_refs", "tags", "blob_links", "uploads"] {
                tx.execute(
                    &format!("UPDATE {table} SET repository = $2 WHERE repository = $1"),
                    &[&from, &to],
                )
                .await?;
            }
            tx.execute("DELETE FROM manifests WHERE repository = $1", &[&from]).await?;
            tx.execute("DELETE FROM repositories WHERE name = $1", &[&from]).await?;
            RenameOutcome::Renamed
        })
    }
}
