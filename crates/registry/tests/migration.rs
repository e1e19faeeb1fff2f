//! A registry root made before the schema was versioned opens and migrates
//! in place, keeping its data.

use berth_registry::metadata::prelude::*;
use berth_registry::metadata::{self, SqliteMetadata};

/// The whole schema as unversioned roots hold it (user_version 0), copied
/// from the last release that did not record a version.
const OLD_SCHEMA: &str = r#"
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

#[tokio::test]
async fn unversioned_root_migrates_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(OLD_SCHEMA).unwrap();
        conn.execute_batch(
            "INSERT INTO repositories VALUES ('alice/app', 1);
             INSERT INTO users (name, password_hash, admin, created) VALUES ('alice', 'x', 0, 1);
             INSERT INTO stars (user, repository) VALUES ('alice', 'alice/app'), ('bob', 'alice/app');",
        )
        .unwrap();
    }
    assert_eq!(metadata::schema_version(&path).unwrap(), 0);
    let store = SqliteMetadata::open(&path).unwrap();
    assert!(store.repository_exists("alice/app").await.unwrap());
    assert_eq!(store.user("alice").await.unwrap().unwrap().password_hash, "x");
    // Stars given before the counts were kept are counted.
    assert_eq!(store.repository_summary("alice/app").await.unwrap().unwrap().stars, 2);
    assert!(store.unstar("bob", "alice/app").await.unwrap());
    assert_eq!(store.repository_summary("alice/app").await.unwrap().unwrap().stars, 1);
    drop(store);
    assert_eq!(metadata::schema_version(&path).unwrap(), metadata::SCHEMA_VERSION);
    // Opening again at the current version changes nothing.
    let store = SqliteMetadata::open(&path).unwrap();
    assert!(store.repository_exists("alice/app").await.unwrap());
}
