//! Every storage and metadata implementation passes the shared suites.

use berth_registry::metadata::{self, SqliteMetadata};
use berth_registry::storage::{self, FsBlobStore};

#[tokio::test]
async fn filesystem_blob_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    storage::testing::run_suite(&store).await;
}

#[tokio::test]
async fn sqlite_metadata_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetadata::open(&dir.path().join("metadata.db")).unwrap();
    metadata::testing::run_suite(&store).await;
    metadata::testing::ledger_collection(&store).await;
}
