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
INSERT OR IGNORE INTO repository_activity (name, updated)
    SELECT repository, MAX(updated) FROM tags GROUP BY repository;
-- Substring search over names and shown descriptions (trigram index), kept
-- current by triggers so no writer needs to know of it.
CREATE VIRTUAL TABLE IF NOT EXISTS repository_search
    USING fts5(name, description, tokenize = 'trigram case_sensitive 0');
CREATE TRIGGER IF NOT EXISTS repository_search_add AFTER INSERT ON repositories BEGIN
    INSERT INTO repository_search (name, description) VALUES (new.name, COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = new.name), ''), (SELECT description FROM repository_descriptions WHERE name = new.name), ''));
END;
CREATE TRIGGER IF NOT EXISTS repository_search_remove AFTER DELETE ON repositories BEGIN
    DELETE FROM repository_search WHERE name = old.name;
    DELETE FROM repository_activity WHERE name = old.name;
    DELETE FROM tag_pushers WHERE repository = old.name;
END;
-- A deleted tag forgets who pushed it (a new tag of that name is new).
CREATE TRIGGER IF NOT EXISTS tag_pushers_forget AFTER DELETE ON tags BEGIN
    DELETE FROM tag_pushers WHERE repository = old.repository AND name = old.name;
END;
CREATE TRIGGER IF NOT EXISTS repository_search_rename AFTER UPDATE OF name ON repositories BEGIN
    DELETE FROM repository_search WHERE name = old.name;
    INSERT INTO repository_search (name, description) VALUES (new.name, COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = new.name), ''), (SELECT description FROM repository_descriptions WHERE name = new.name), ''));
END;
CREATE TRIGGER IF NOT EXISTS repository_search_label_insert AFTER INSERT ON repository_descriptions BEGIN
    UPDATE repository_search SET description = COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = new.name), ''), (SELECT description FROM repository_descriptions WHERE name = new.name), '') WHERE name = new.name;
END;
CREATE TRIGGER IF NOT EXISTS repository_search_label_update AFTER UPDATE ON repository_descriptions BEGIN
    UPDATE repository_search SET description = COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = old.name), ''), (SELECT description FROM repository_descriptions WHERE name = old.name), '') WHERE name = old.name;
    UPDATE repository_search SET description = COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = new.name), ''), (SELECT description FROM repository_descriptions WHERE name = new.name), '') WHERE name = new.name;
END;
CREATE TRIGGER IF NOT EXISTS repository_search_label_delete AFTER DELETE ON repository_descriptions BEGIN
    UPDATE repository_search SET description = COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = old.name), ''), (SELECT description FROM repository_descriptions WHERE name = old.name), '') WHERE name = old.name;
END;
CREATE TRIGGER IF NOT EXISTS repository_search_owner_insert AFTER INSERT ON repository_owner_descriptions BEGIN
    UPDATE repository_search SET description = COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = new.name), ''), (SELECT description FROM repository_descriptions WHERE name = new.name), '') WHERE name = new.name;
END;
CREATE TRIGGER IF NOT EXISTS repository_search_owner_update AFTER UPDATE ON repository_owner_descriptions BEGIN
    UPDATE repository_search SET description = COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = old.name), ''), (SELECT description FROM repository_descriptions WHERE name = old.name), '') WHERE name = old.name;
    UPDATE repository_search SET description = COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = new.name), ''), (SELECT description FROM repository_descriptions WHERE name = new.name), '') WHERE name = new.name;
END;
CREATE TRIGGER IF NOT EXISTS repository_search_owner_delete AFTER DELETE ON repository_owner_descriptions BEGIN
    UPDATE repository_search SET description = COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = old.name), ''), (SELECT description FROM repository_descriptions WHERE name = old.name), '') WHERE name = old.name;
END;
DELETE FROM repository_search;
INSERT INTO repository_search (name, description)
    SELECT r.name, COALESCE(NULLIF((SELECT description FROM repository_owner_descriptions WHERE name = r.name), ''), (SELECT description FROM repository_descriptions WHERE name = r.name), '') FROM repositories r;
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
        self.read(move |c| {
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
        self.read(move |c| {
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
        self.read(move |c| {
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

/// A repository name's namespace (`''` for one-component names), in SQL.
const NAMESPACE: &str = "CASE WHEN instr(r.name, '/') > 0
    THEN substr(r.name, 1, instr(r.name, '/') - 1) ELSE '' END";

/// `text` as a `LIKE` pattern matching it anywhere (`\` escapes).
fn like_anywhere(text: &str) -> String {
    let mut p = String::from("%");
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// The count and page queries of a listing, with their arguments.
///
/// Built so that 10,000 repositories cost little: the candidates come from
/// plain scans (names are lowercase already; descriptions match with
/// `LIKE`, ASCII case-insensitively as `lower()` would) or from a range of
/// the primary key (a namespace); visibility and filters join only what
/// they need; the sort key is computed for the filtered rows only, and the
/// descriptions and counts shown are read for the page's rows alone. The
/// start page (newest first, no text, no namespace) walks the activity
/// index and stops at the page's end.
fn listing_sql(
    q: &RepoQuery,
) -> (String, String, Vec<rusqlite::types::Value>, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut args: Vec<Value> = Vec::new();
    let text = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let candidates = match text {
        // The trigram index answers substrings of three characters or more.
        Some(t) if t.chars().count() >= 3 => {
            args.push(Value::Text(format!("\"{}\"", t.replace('"', "\"\""))));
            Some("SELECT name FROM repository_search WHERE repository_search MATCH ?")
        }
        Some(t) => {
            args.push(Value::Text(t.to_lowercase()));
            args.push(Value::Text(like_anywhere(t)));
            args.push(Value::Text(like_anywhere(t)));
            Some(
                "SELECT name FROM repositories WHERE instr(name, ?) > 0
                 UNION SELECT d.name FROM repository_descriptions d
                    WHERE d.description LIKE ? ESCAPE '\\'
                    AND NOT EXISTS (SELECT 1 FROM repository_owner_descriptions o
                                    WHERE o.name = d.name AND o.description <> '')
                 UNION SELECT o.name FROM repository_owner_descriptions o
                    WHERE o.description <> '' AND o.description LIKE ? ESCAPE '\\'",
            )
        }
        None => None,
    };
    let mut joins = String::from(" LEFT JOIN repository_settings p ON p.name = r.name");
    let mut conditions: Vec<String> = Vec::new();
    if let Viewer::Namespaces(list) = &q.viewer {
        conditions.push(format!(
            "(COALESCE(p.private, 0) = 0 OR {NAMESPACE} IN (SELECT value FROM json_each(?)))"
        ));
        args.push(Value::Text(serde_json::to_string(list).expect("json")));
    }
    if let Some(ns) = &q.namespace {
        // `NS/` up to `NS0` ('0' follows '/'): a range of the primary key.
        conditions.push("r.name >= ? AND r.name < ?".to_owned());
        args.push(Value::Text(format!("{ns}/")));
        args.push(Value::Text(format!("{ns}0")));
    }
    if q.official {
        conditions.push("(instr(r.name, '/') = 0 OR r.name LIKE 'library/%')".to_owned());
    }
    if q.verified {
        joins.push_str(&format!(" JOIN orgs g ON g.name = {NAMESPACE} AND g.verified = 1"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let filtered = match candidates {
        Some(c) => format!(
            "SELECT r.name, r.created FROM repositories r{joins}
             WHERE r.name IN ({c}){}",
            filter.replacen(" WHERE ", " AND ", 1)
        ),
        None => format!("SELECT r.name, r.created FROM repositories r{joins}{filter}"),
    };
    let plain = text.is_none() && q.namespace.is_none() && !q.official && !q.verified;
    let count = match &q.viewer {
        // All repositories less the private ones the viewer may not see:
        // two index counts instead of a join over every repository.
        Viewer::Namespaces(_) if plain => format!(
            "SELECT (SELECT COUNT(*) FROM repositories) - (SELECT COUNT(*)
               FROM repository_settings p JOIN repositories r ON r.name = p.name
               WHERE p.private = 1 AND {NAMESPACE} NOT IN (SELECT value FROM json_each(?)))"
        ),
        Viewer::Everything if plain => "SELECT COUNT(*) FROM repositories".to_owned(),
        _ => format!("SELECT COUNT(*) FROM ({filtered})"),
    };
    let unfiltered = text.is_none() && q.namespace.is_none();
    let walk = q.order == RepoOrder::Updated && unfiltered;
    // Everything by stars: the starred ones from the star count index,
    // then the rest in name order straight from the primary key, each side
    // cut at the page's end, so 10,000 rows are never sorted.
    let by_stars = q.order == RepoOrder::Stars && unfiltered;
    let end = q.offset.saturating_add(q.limit).min(i64::MAX as usize) as i64;
    let mut pre_args: Vec<Value> = Vec::new();
    let page = if by_stars {
        let and_filter = filter.replacen(" WHERE ", " AND ", 1);
        pre_args.extend(args.iter().cloned());
        pre_args.push(Value::Integer(end));
        pre_args.extend(args.iter().cloned());
        pre_args.push(Value::Integer(end));
        format!(
            "SELECT name, k, NULL AS total FROM (
               SELECT * FROM (SELECT r.name AS name, s.n AS k
                 FROM star_counts s
                 JOIN repositories r ON r.name = s.repository{joins}{filter}
                 ORDER BY s.n DESC, r.name LIMIT ?)
               UNION ALL
               SELECT * FROM (SELECT r.name AS name, 0 AS k FROM repositories r{joins}
                 WHERE NOT EXISTS (SELECT 1 FROM star_counts x WHERE x.repository = r.name){and_filter}
                 ORDER BY r.name LIMIT ?))
             ORDER BY k DESC, name LIMIT ? OFFSET ?"
        )
    } else if walk {
        let verified = if q.verified {
            format!(" JOIN orgs g ON g.name = {NAMESPACE} AND g.verified = 1")
        } else {
            String::new()
        };
        format!(
            "SELECT a.name, a.updated AS k, NULL AS total FROM repository_activity a
             JOIN repositories r ON r.name = a.name
             LEFT JOIN repository_settings p ON p.name = r.name{verified}{filter}
             ORDER BY a.updated DESC, a.name LIMIT ? OFFSET ?"
        )
    } else {
        let (key, join) = match q.order {
            RepoOrder::Stars => {
                ("COALESCE((SELECT n FROM star_counts s WHERE s.repository = f.name), 0)", "")
            }
            RepoOrder::Updated => (
                "COALESCE(a.updated, f.created)",
                " LEFT JOIN repository_activity a ON a.name = f.name",
            ),
            RepoOrder::Name => ("0", ""),
        };
        format!(
            "SELECT f.name, {key} AS k, COUNT(*) OVER () AS total FROM ({filtered}) f{join}
             ORDER BY k DESC, f.name LIMIT ? OFFSET ?"
        )
    };
    let page = format!(
        "SELECT r.name,
               COALESCE(NULLIF(o.description, ''), d.description),
               o.full_description,
               COALESCE((SELECT n FROM star_counts s WHERE s.repository = r.name), 0),
               COALESCE(p.private, 0),
               COALESCE(a.updated, r.created),
               COALESCE(g.verified, 0),
               pg.total
         FROM ({page}) pg
         JOIN repositories r ON r.name = pg.name
         LEFT JOIN repository_descriptions d ON d.name = r.name
         LEFT JOIN repository_owner_descriptions o ON o.name = r.name
         LEFT JOIN repository_settings p ON p.name = r.name
         LEFT JOIN repository_activity a ON a.name = r.name
         LEFT JOIN orgs g ON g.name = {NAMESPACE}
         ORDER BY pg.k DESC, r.name"
    );
    let mut page_args = if by_stars { pre_args } else { args.clone() };
    page_args.push(Value::Integer(q.limit.min(i64::MAX as usize) as i64));
    page_args.push(Value::Integer(q.offset.min(i64::MAX as usize) as i64));
    (count, page, args, page_args)
}

#[async_trait]
impl Browse for SqliteMetadata {
    async fn query_repositories(&self, query: &RepoQuery) -> Result<RepoPage, MetadataError> {
        let q = query.clone();
        self.read(move |c| {
            let (sql_count, sql_page, args, page_args) = listing_sql(&q);
            let count = || -> Result<i64, MetadataError> {
                c.prepare_cached(&sql_count)
                    .and_then(|mut s| s.query_row(params_from_iter(args.iter()), |r| r.get(0)))
                    .map_err(db)
            };
            let mut total: Option<i64> = None;
            let mut s = c.prepare_cached(&sql_page).map_err(db)?;
            let rows = s
                .query_map(params_from_iter(page_args.iter()), |r| {
                    Ok((
                        r.get::<_, Option<i64>>(7)?,
                        RepoListing {
                            summary: RepoSummary {
                                name: r.get(0)?,
                                description: r.get(1)?,
                                full_description: r.get(2)?,
                                stars: r.get::<_, i64>(3)? as u64,
                                private: r.get(4)?,
                            },
                            updated: r.get(5)?,
                            verified: r.get(6)?,
                        },
                    ))
                })
                .map_err(db)?;
            let mut items = Vec::new();
            for row in rows {
                let (t, item) = row.map_err(db)?;
                total = total.or(t);
                items.push(item);
            }
            drop(s);
            // The page query counts as it goes, except on the start page's
            // index walk or past the last page.
            let total = match total {
                Some(t) => t,
                None if q.count => count()?,
                None => (q.offset + items.len()) as i64,
            };
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
        self.read(move |c| {
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
        self.read(move |c| {
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
        self.read(move |c| {
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
