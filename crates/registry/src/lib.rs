//! berth's registry server: the OCI Distribution API over pluggable blob
//! storage and metadata.
//!
//! - [`storage`]: content-addressed blobs and uploads ([`storage::BlobStore`]).
//! - [`metadata`]: repositories, manifests, tags, links ([`metadata::MetadataStore`]).
//! - [`registry`]: the rules binding them ([`Registry`]), free of HTTP.
//! - [`api`]: the `/v2/` HTTP API on axum.
//! - [`hub`]: Docker Hub's search, stars, descriptions and privacy ([`hub::Hub`]).
//! - [`auth`]: accounts, Docker Hub's permission rules, Basic and token auth.
//! - [`error`]: domain errors and the one table of OCI codes and statuses.
//! - [`gc`]: garbage collection, safe during pushes (grace period).
//! - [`server`]: listening, shutdown, health, metrics and request logs.
//! - [`web`]: the website (server-rendered pages, sessions, CSRF).
//!
//! The embedded default ([`open_local`]) keeps blobs on the filesystem and
//! metadata in SQLite under one root directory:
//!
//! ```text
//! <root>/
//!   blobs/ uploads/ tmp/    FsBlobStore (see storage::FsBlobStore)
//!   metadata.db             SqliteMetadata (WAL: also -wal, -shm)
//!   token.key               token signing key, mode 0600 (with --auth)
//! ```
//!
//! [`open`] follows the configuration file instead: blobs in an
//! S3-compatible bucket ([`storage::S3BlobStore`]) and/or metadata in
//! PostgreSQL ([`metadata::PostgresMetadata`]).

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod gc;
pub mod hub;
pub mod metadata;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod storage;
pub mod web;

use std::path::Path;
use std::sync::Arc;

pub use berth_reference::RepoName;
pub use error::{Error, ErrorCode};
pub use hub::Hub;
pub use registry::{Limits, ManifestRef, Registry};

/// Why the embedded backends could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use registry root {path}: {source}")]
    Root { path: String, source: std::io::Error },
    #[error("cannot open registry metadata: {0}")]
    Metadata(#[from] metadata::MetadataError),
    #[error("cannot use object storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Opens the registry `config` describes: blobs on the filesystem under
/// `root` or in S3, metadata in SQLite under `root` or in PostgreSQL. With
/// nothing configured this is [`open_local`].
pub async fn open(
    config: &config::Config,
    root: &Path,
    limits: Limits,
) -> Result<Registry, OpenError> {
    let s3 = config.storage.s3().map_err(OpenError::Config)?;
    let io_err = |source| OpenError::Root { path: root.display().to_string(), source };
    let (meta, ledger): (Arc<dyn metadata::MetadataStore>, Arc<dyn storage::ObjectLedger>) =
        match &config.metadata.url {
            Some(url) => {
                let m = Arc::new(metadata::PostgresMetadata::connect(url).await?);
                (m.clone(), m)
            }
            None => {
                std::fs::create_dir_all(root).map_err(io_err)?;
                let m = Arc::new(metadata::SqliteMetadata::open(&root.join("metadata.db"))?);
                (m.clone(), m)
            }
        };
    let blobs: Arc<dyn storage::BlobStore> = match s3 {
        Some(settings) => Arc::new(storage::S3BlobStore::new(&settings, ledger)?),
        None => {
            std::fs::create_dir_all(root).map_err(io_err)?;
            Arc::new(storage::FsBlobStore::open(root).map_err(io_err)?)
        }
    };
    let registry = Registry::new(blobs, meta, limits);
    Ok(if config.metadata.url.is_some() { registry.with_shared_metadata().await } else { registry })
}

/// Opens the filesystem + SQLite registry under `root`, creating it if needed.
pub fn open_local(root: &Path, limits: Limits) -> Result<Registry, OpenError> {
    let io_err = |source| OpenError::Root { path: root.display().to_string(), source };
    std::fs::create_dir_all(root).map_err(io_err)?;
    let blobs = storage::FsBlobStore::open(root).map_err(io_err)?;
    let meta = metadata::SqliteMetadata::open(&root.join("metadata.db"))?;
    Ok(Registry::new(Arc::new(blobs), Arc::new(meta), limits))
}
