//! The metadata database: connection settings and the schema.
//!
//! The schema version lives in `PRAGMA user_version`; opening a current store
//! reads it once and runs no DDL.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// The schema this code reads and writes.
const SCHEMA_VERSION: i64 = 4;

/// Version 1. Digests are stored as their text (`sha256:<hex>`), so ID
/// prefix lookups are range scans on the primary key.
const SCHEMA_V1: &str = r#"
CREATE TABLE images (
    id            TEXT PRIMARY KEY,      -- sha256 of the config bytes
    config        BLOB NOT NULL,         -- the config bytes (also a blob file)
    created       INTEGER,               -- unix seconds from config.created
    size          INTEGER NOT NULL,      -- sum of layer content sizes (docker's SIZE)
    added         INTEGER NOT NULL,      -- unix seconds it entered the store
    last_tag_time INTEGER                -- unix nanoseconds of the last `tag`
) WITHOUT ROWID;

CREATE TABLE layers (
    diff_id      TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,       -- uncompressed tar length
    content_size INTEGER NOT NULL        -- unpacked size, as docker reports it
) WITHOUT ROWID;

CREATE TABLE layer_blobs (
    diff_id    TEXT NOT NULL REFERENCES layers(diff_id) ON DELETE CASCADE,
    digest     TEXT NOT NULL,            -- blob file name
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL,
    PRIMARY KEY (diff_id, digest)
) WITHOUT ROWID;
CREATE INDEX layer_blobs_by_digest ON layer_blobs(digest);

CREATE TABLE image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,           -- 0 = bottom
    diff_id  TEXT NOT NULL REFERENCES layers(diff_id),
    chain_id TEXT NOT NULL,
    PRIMARY KEY (image_id, position)
) WITHOUT ROWID;
CREATE INDEX image_layers_by_diff ON image_layers(diff_id);
CREATE INDEX image_layers_by_chain ON image_layers(chain_id);

CREATE TABLE tags (
    repository TEXT NOT NULL,            -- full name: docker.io/library/busybox
    tag        TEXT NOT NULL,
    image_id   TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY (repository, tag)
) WITHOUT ROWID;
CREATE INDEX tags_by_image ON tags(image_id);

CREATE TABLE repo_digests (
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,            -- manifest digest
    image_id   TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY (repository, digest)
) WITHOUT ROWID;
CREATE INDEX repo_digests_by_image ON repo_digests(image_id);

-- Containers (a later capability) pin their image: an image a container
-- uses cannot be removed. Layer snapshots will hang off this table.
CREATE TABLE containers (
    id       TEXT PRIMARY KEY,
    name     TEXT UNIQUE,
    image_id TEXT NOT NULL REFERENCES images(id),
    running  INTEGER NOT NULL DEFAULT 0,
    created  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX containers_by_image ON containers(image_id);
"#;

pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // WAL lets readers run beside a writer. NORMAL sync in WAL mode is still
    // crash-consistent (a power cut may lose the last commits, never
    // corrupt); blob files are fsynced before any row references them.
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    // Every berth command is a short process: checkpointing (two fsyncs)
    // and deleting the WAL at each exit would cost more than the command.
    // SQLite's automatic checkpoints still bound the WAL's size.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Version 2: a layer blob may be recorded before it is proven to carry its
/// diff ID. A pull stores compressed blobs checked against their digests and
/// leaves decompressing to the first read of an image (see `verify.rs`); a
/// layer none of whose blobs is proven yet has sizes 0.
const SCHEMA_V2: &str = r#"
ALTER TABLE layers ADD COLUMN verified INTEGER NOT NULL DEFAULT 1;
ALTER TABLE layer_blobs ADD COLUMN verified INTEGER NOT NULL DEFAULT 1;
CREATE INDEX layer_blobs_unverified ON layer_blobs(diff_id) WHERE verified = 0;
"#;

/// Version 3: the manifests an image arrived with (or was last pushed
/// with), byte for byte, so that a push or copy of an unchanged image sends
/// the same bytes and the destination gets the same digest.
const SCHEMA_V3: &str = r#"
CREATE TABLE manifests (
    digest     TEXT PRIMARY KEY,         -- of `content`
    image_id   TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    media_type TEXT NOT NULL,
    content    BLOB NOT NULL,            -- exactly as received or sent
    added      INTEGER NOT NULL          -- unix nanoseconds: newest is preferred
) WITHOUT ROWID;
CREATE INDEX manifests_by_image ON manifests(image_id, added);
"#;

/// Version 4: what `ps`, `diff` and `commit` need of a container: the image
/// name it was run with, its command, how it ended, and its config (the
/// image's, with the run's changes: what `commit` starts from).
const SCHEMA_V4: &str = r#"
ALTER TABLE containers ADD COLUMN image_name TEXT NOT NULL DEFAULT '';
ALTER TABLE containers ADD COLUMN command TEXT NOT NULL DEFAULT '';
ALTER TABLE containers ADD COLUMN exit_code INTEGER;
ALTER TABLE containers ADD COLUMN finished INTEGER;
ALTER TABLE containers ADD COLUMN config BLOB NOT NULL DEFAULT x'';
"#;

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.display().to_string(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    // Another process may be creating the schema right now: take the write
    // lock first, then look again.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == 0 {
            conn.execute_batch(SCHEMA_V1)?;
        }
        if version < 2 {
            conn.execute_batch(SCHEMA_V2)?;
        }
        if version < 3 {
            conn.execute_batch(SCHEMA_V3)?;
        }
        if version < 4 {
            conn.execute_batch(SCHEMA_V4)?;
        }
        if version < SCHEMA_VERSION {
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        }
        Ok::<_, rusqlite::Error>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}
