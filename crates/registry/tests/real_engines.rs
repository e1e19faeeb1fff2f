//! The storage and metadata contract suites against real engines: S3 on
//! SeaweedFS and PostgreSQL 15, each started here on loopback and stopped
//! afterwards. A test whose engine is not installed prints why and passes
//! without running (the interop tier installs both).

mod engines;

use std::sync::Arc;

use berth_registry::metadata::{self, PostgresMetadata, SqliteMetadata};
use berth_registry::storage::{self, S3BlobStore, UploadLedger};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn s3_blob_store_on_seaweedfs() {
    let Some(s3) = engines::SeaweedFs::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ledger: Arc<dyn UploadLedger> =
        Arc::new(SqliteMetadata::open(&dir.path().join("metadata.db")).unwrap());
    let store = S3BlobStore::new(&s3.settings(), ledger).unwrap();
    runtime().block_on(storage::testing::run_suite(&store));
}

#[test]
fn postgres_metadata_and_s3_with_a_postgres_ledger() {
    let Some(pg) = engines::Postgres::start() else { return };
    let rt = runtime();
    let meta = rt.block_on(PostgresMetadata::connect(&pg.database("suite"))).unwrap();
    rt.block_on(metadata::testing::run_suite(&meta));
    // A second connection migrates nothing and sees the same data.
    let again = rt.block_on(PostgresMetadata::connect(&pg.database_url("suite"))).unwrap();
    rt.block_on(async {
        use berth_registry::metadata::prelude::*;
        assert!(again.user("root").await.unwrap().is_some());
    });
    let Some(s3) = engines::SeaweedFs::start() else { return };
    let ledger: Arc<dyn UploadLedger> =
        Arc::new(rt.block_on(PostgresMetadata::connect(&pg.database("ledger"))).unwrap());
    let store = S3BlobStore::new(&s3.settings(), ledger).unwrap();
    rt.block_on(storage::testing::run_suite(&store));
}
