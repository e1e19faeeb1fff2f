//! What can stop a copy. Texts a user sees use skopeo's and docker's wording
//! where they have one.

use berth_archive::ArchiveError;
use berth_client::ClientError;
use berth_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A place that does not parse, or names nothing berth can copy.
    #[error("{0}")]
    InvalidPlace(String),

    /// The source has no such image.
    #[error("{0}")]
    NotFound(String),

    /// A copy berth cannot make between these two places.
    #[error("{0}")]
    Unsupported(String),

    #[error(transparent)]
    Client(#[from] ClientError),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Archive(#[from] ArchiveError),

    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl TransferError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TransferError {
        let what = what.into();
        move |source| TransferError::Io { what, source }
    }
}
