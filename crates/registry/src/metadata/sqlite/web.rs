//! [`AccessTokens`], [`Sessions`] and [`Browse`] for [`SqliteMetadata`]
//! (schema step 2 in the parent module).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::{SqliteMetadata, db, parse_digest};
use crate::metadata::browse::{
    AccessTokenRecord, AccessTokens, Browse, RenameOutcome, RepoListing, RepoOrder, RepoPage,
    RepoQuery, SessionRecord, Sessions, TagDetail, TagOrder, TagPage, Viewer,
};
use crate::metadata::{MetadataError, RepoSummary};

/// Schema step 2: tokens, sessions, who pushed what and when.
pub(super) const SCHEMA_V2: &str = r#"
CREATE TABLE IF NOT EXISTS access_tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    description TEXT NOT NULL,
    scope TEXT NOT NULL,
    hash TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_used INTEGER
);
CREATE INDEX IF NOT EXISTS access_tokens_by_user ON access_tokens(user);
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user);
CREATE TABLE IF NOT EXISTS tag_pushers (
    repository TEXT NOT NULL,
    name TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (repository, name)
);
CREATE TABLE IF NOT EXISTS repository_activity (
    name TEXT PRIMARY KEY,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS repository_activity_by_time ON repository_activity(updated);
CREATE INDEX IF NOT EXISTS tags_by_time ON tags(repository, updated);
"#;

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessTokenRecord> {
    Ok(AccessTokenRecord {
        id: r.get(0)?,
        user: r.get(1)?,
        description: r.get(2)?,
        scope: r.get(3)?,
        hash: r.get(4)?,
        created: r.get(5)?,
        last_used: r.get(6)?,
    })
}

const TOKEN_COLUMNS: &str = "id, user, description, scope, hash, created, last_used";

fn user_exists(c: &rusqlite::Connection, user: &str) -> Result<bool, MetadataError> {
    c.query_row("SELECT 1 FROM users WHERE name = ?1", [user], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
        .map_err(db)
}

#[async_trait]
impl AccessTokens for SqliteMetadata {
    async fn create_access_token(&self, token: &AccessTokenRecord) -> Result<bool, MetadataError> {
        let t = token.clone();
        self.call(move |c| {
            if !user_exists(c, &t.user)? {
                return Ok(false);
            }
            c.execute(
                "INSERT INTO access_tokens (id, user, description, scope, hash, created, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                params![t.id, t.user, t.description, t.scope, t.hash, t.created, t.last_used],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn access_token(&self, id: &str) -> Result<Option<AccessTokenRecord>, MetadataError> {
        let id = id.to_owned();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE id = ?1"),
                [&id],
                token_row,
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn list_access_tokens(
        &self,
        user: &str,
    ) -> Result<Vec<AccessTokenRecord>, MetadataError> {
        let user = user.to_owned();
        self.call(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE user = ?1
                     ORDER BY created DESC, id"
                ))
                .map_err(db)?;
            let rows = s.query_map([&user], token_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    async fn delete_access_token(&self, user: &str, id: &str) -> Result<bool, MetadataError> {
        let (user, id) = (user.to_owned(), id.to_owned());
        self.call(move |c| {
            c.execute("DELETE FROM access_tokens WHERE user = ?1 AND id = ?2", params![user, id])
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }

    async fn touch_access_token(&self, id: &str, at: i64) -> Result<(), MetadataError> {
        let id = id.to_owned();
        self.call(move |c| {
            c.execute("UPDATE access_tokens SET last_used = ?2 WHERE id = ?1", params![id, at])
                .map(|_| ())
                .map_err(db)
        })
        .await
    }
}

#[async_trait]
impl Sessions for SqliteMetadata {
    async fn create_session(&self, session: &SessionRecord) -> Result<bool, MetadataError> {
        let s = session.clone();
        self.call(move |c| {
            if !user_exists(c, &s.user)? {
                return Ok(false);
            }
            // Expired sessions are swept as new ones are made.
            c.execute("DELETE FROM sessions WHERE expires <= ?1", [s.created]).map_err(db)?;
            c.execute(
                "INSERT INTO sessions (hash, user, created, expires) VALUES (?1, ?2, ?3, ?4)",
                params![s.hash, s.user, s.created, s.expires],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn session(&self, hash: &str, now: i64) -> Result<Option<SessionRecord>, MetadataError> {
        let hash = hash.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT hash, user, created, expires FROM sessions WHERE hash = ?1 AND expires > ?2",
                params![hash, now],
                |r| {
                    Ok(SessionRecord {
                        hash: r.get(0)?,
                        user: r.get(1)?,
                        created: r.get(2)?,
                        expires: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn delete_session(&self, hash: &str) -> Result<bool, MetadataError> {
        let hash = hash.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM sessions WHERE hash = ?1", [&hash]).map(|n| n > 0).map_err(db)
        })
        .await
    }

    async fn delete_user_sessions(&self, user: &str) -> Result<u64, MetadataError> {
        let user = user.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM sessions WHERE user = ?1", [&user]).map(|n| n as u64).map_err(db)
        })
        .await
    }
}

/// The rows a listing filters: every repository with its namespace,
/// privacy, description, stars, last push and publisher flag.
const LISTING: &str = "
    SELECT r.name,
           COALESCE(NULLIF(o.description, ''), d.description) AS description,
           o.full_description,
           (SELECT COUNT(*) FROM stars s WHERE s.repository = r.name) AS stars,
           COALESCE(p.private, 0) AS private,
           COALESCE(a.updated, r.created) AS updated,
           COALESCE(g.verified, 0) AS verified
    FROM repositories r
    LEFT JOIN repository_descriptions d ON d.name = r.name
    LEFT JOIN repository_owner_descriptions o ON o.name = r.name
    LEFT JOIN repository_settings p ON p.name = r.name
    LEFT JOIN repository_activity a ON a.name = r.name
    LEFT JOIN orgs g ON g.name = CASE WHEN instr(r.name, '/') > 0
                                      THEN substr(r.name, 1, instr(r.name, '/') - 1) END";

#[async_trait]
impl Browse for SqliteMetadata {
    async fn query_repositories(&self, query: &RepoQuery) -> Result<RepoPage, MetadataError> {
        let q = query.clone();
        self.call(move |c| {
            let mut conditions: Vec<&str> = Vec::new();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            use rusqlite::types::Value;
            // `?N` numbering follows the order conditions are pushed.
            let ns_expr = "CASE WHEN instr(r.name, '/') > 0
                            THEN substr(r.name, 1, instr(r.name, '/') - 1) ELSE '' END";
            let visibility;
            match &q.viewer {
                Viewer::Everything => {}
                Viewer::Namespaces(list) => {
                    visibility = format!(
                        "(COALESCE(p.private, 0) = 0 OR {ns_expr} IN (SELECT value FROM json_each(?)))"
                    );
                    conditions.push(&visibility);
                    args.push(Value::Text(serde_json::to_string(list).expect("json")));
                }
            }
            let text_cond = "(instr(lower(r.name), ?) > 0 OR instr(lower(COALESCE(NULLIF(o.description, ''), d.description, '')), ?) > 0)";
            if let Some(text) = q.text.as_ref().filter(|t| !t.is_empty()) {
                conditions.push(text_cond);
                args.push(Value::Text(text.to_lowercase()));
                args.push(Value::Text(text.to_lowercase()));
            }
            let ns_cond = format!("{ns_expr} = ?");
            if let Some(ns) = &q.namespace {
                conditions.push(&ns_cond);
                args.push(Value::Text(ns.clone()));
            }
            if q.official {
                conditions.push("(instr(r.name, '/') = 0 OR r.name LIKE 'library/%')");
            }
            if q.verified {
                conditions.push("COALESCE(g.verified, 0) = 1");
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            };
            let from = "FROM repositories r
                LEFT JOIN repository_descriptions d ON d.name = r.name
                LEFT JOIN repository_owner_descriptions o ON o.name = r.name
                LEFT JOIN repository_settings p ON p.name = r.name
                LEFT JOIN orgs g ON g.name = CASE WHEN instr(r.name, '/') > 0
                                      THEN substr(r.name, 1, instr(r.name, '/') - 1) END";
            let total: i64 = c
                .prepare_cached(&format!("SELECT COUNT(*) {from}{filter}"))
                .and_then(|mut s| s.query_row(params_from_iter(args.iter()), |r| r.get(0)))
                .map_err(db)?;
            let order = match q.order {
                RepoOrder::Stars => "stars DESC, r.name",
                RepoOrder::Updated => "updated DESC, r.name",
                RepoOrder::Name => "r.name",
            };
            let mut page_args = args.clone();
            page_args.push(Value::Integer(q.limit.min(i64::MAX as usize) as i64));
            page_args.push(Value::Integer(q.offset.min(i64::MAX as usize) as i64));
            let mut s = c
                .prepare_cached(&format!("{LISTING}{filter} ORDER BY {order} LIMIT ? OFFSET ?"))
                .map_err(db)?;
            let rows = s
                .query_map(params_from_iter(page_args.iter()), |r| {
                    Ok(RepoListing {
                        summary: RepoSummary {
                            name: r.get(0)?,
                            description: r.get(1)?,
                            full_description: r.get(2)?,
                            stars: r.get::<_, i64>(3)? as u64,
                            private: r.get(4)?,
                        },
                        updated: r.get(5)?,
                        verified: r.get(6)?,
                    })
                })
                .map_err(db)?;
            let items = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
            Ok(RepoPage { total: total as u64, items })
        })
        .await
    }

    async fn tag_details(
        &self,
        repo: &str,
        order: TagOrder,
        offset: usize,
        limit: usize,
    ) -> Result<TagPage, MetadataError> {
        let repo = repo.to_owned();
        self.call(move |c| {
            let total: i64 = c
                .query_row("SELECT COUNT(*) FROM tags WHERE repository = ?1", [&repo], |r| r.get(0))
                .map_err(db)?;
            let order = match order {
                TagOrder::Newest => "t.updated DESC, t.name",
                TagOrder::Name => "t.name",
            };
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT t.name, t.digest, m.media_type, t.updated, u.user
                     FROM tags t
                     JOIN manifests m ON m.repository = t.repository AND m.digest = t.digest
                     LEFT JOIN tag_pushers u ON u.repository = t.repository AND u.name = t.name
                     WHERE t.repository = ?1 ORDER BY {order} LIMIT ?2 OFFSET ?3"
                ))
                .map_err(db)?;
            let limit = limit.min(i64::MAX as usize) as i64;
            let offset = offset.min(i64::MAX as usize) as i64;
            let rows = s
                .query_map(params![repo, limit, offset], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(db)?;
            let mut items = Vec::new();
            for row in rows {
                let (name, digest, media_type, updated, pushed_by) = row.map_err(db)?;
                let digest = parse_digest(&digest)?;
                items.push(TagDetail { name, digest, media_type, updated, pushed_by });
            }
            Ok(TagPage { total: total as u64, items })
        })
        .await
    }

    async fn orgs_of(&self, user: &str) -> Result<Vec<String>, MetadataError> {
        let user = user.to_owned();
        self.call(move |c| {
            let mut s = c
                .prepare_cached("SELECT org FROM org_members WHERE user = ?1 ORDER BY org")
                .map_err(db)?;
            let rows = s.query_map([&user], |r| r.get(0)).map_err(db)?;
            rows.collect::<Result<Vec<String>, _>>().map_err(db)
        })
        .await
    }

    async fn starred(&self, user: &str, repo: &str) -> Result<bool, MetadataError> {
        let (user, repo) = (user.to_owned(), repo.to_owned());
        self.call(move |c| {
            c.query_row(
                "SELECT 1 FROM stars WHERE user = ?1 AND repository = ?2",
                params![user, repo],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(db)
        })
        .await
    }

    async fn record_pusher(&self, repo: &str, tag: &str, user: &str) -> Result<(), MetadataError> {
        let (repo, tag, user) = (repo.to_owned(), tag.to_owned(), user.to_owned());
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            if !user.is_empty() {
                tx.execute(
                    "INSERT INTO tag_pushers (repository, name, user) VALUES (?1, ?2, ?3)
                     ON CONFLICT (repository, name) DO UPDATE SET user = excluded.user",
                    params![repo, tag, user],
                )
                .map_err(db)?;
            }
            tx.execute(
                "INSERT INTO repository_activity (name, updated)
                 SELECT ?1, MAX(updated) FROM tags WHERE repository = ?1 AND name = ?2
                 ON CONFLICT (name) DO UPDATE SET updated = MAX(updated, excluded.updated)",
                params![repo, tag],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn bare_repositories(&self) -> Result<Vec<String>, MetadataError> {
        self.call(|c| {
            let mut s = c
                .prepare("SELECT name FROM repositories WHERE instr(name, '/') = 0 ORDER BY name")
                .map_err(db)?;
            let rows = s.query_map([], |r| r.get(0)).map_err(db)?;
            rows.collect::<Result<Vec<String>, _>>().map_err(db)
        })
        .await
    }

    async fn rename_repository(
        &self,
        from: &str,
        to: &str,
    ) -> Result<RenameOutcome, MetadataError> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.call(move |c| {
            let tx = c.transaction().map_err(db)?;
            let exists = |name: &str| {
                tx.query_row("SELECT 1 FROM repositories WHERE name = ?1", [name], |_| Ok(()))
                    .optional()
                    .map(|r| r.is_some())
                    .map_err(db)
            };
            if !exists(&from)? {
                return Ok(RenameOutcome::NoSource);
            }
            if exists(&to)? {
                return Ok(RenameOutcome::TargetExists);
            }
            // Children are renamed before their parents; the foreign keys
            // are checked once, at commit.
            tx.execute_batch("PRAGMA defer_foreign_keys = ON").map_err(db)?;
            for table in [
                "repository_settings",
                "repository_descriptions",
                "repository_owner_descriptions",
                "repository_activity",
            ] {
                // What the source says wins over settings made for a
                // repository that was never pushed.
                tx.execute(&format!("DELETE FROM {table} WHERE name = ?1"), [&to]).map_err(db)?;
                tx.execute(&format!("UPDATE {table} SET name = ?2 WHERE name = ?1"), [&from, &to])
                    .map_err(db)?;
            }
            tx.execute(
                "UPDATE OR IGNORE stars SET repository = ?2 WHERE repository = ?1",
                [&from, &to],
            )
            .map_err(db)?;
            tx.execute("DELETE FROM stars WHERE repository = ?1", [&from]).map_err(db)?;
            for table in
                ["tags", "manifest_refs", "manifests", "blob_links", "uploads", "tag_pushers"]
            {
                tx.execute(
                    &format!("UPDATE {table} SET repository = ?2 WHERE repository = ?1"),
                    [&from, &to],
                )
                .map_err(db)?;
            }
            tx.execute("UPDATE repositories SET name = ?2 WHERE name = ?1", [&from, &to])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(RenameOutcome::Renamed)
        })
        .await
    }
}
