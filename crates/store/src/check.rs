//! `system check`: verify every blob and every reference; optionally repair.

use crate::{Store, StoreError};

/// One thing `check` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A blob file whose content does not hash to its name.
    CorruptBlob { digest: String },
    /// A blob the metadata references that is missing or has the wrong size.
    MissingBlob { digest: String },
    /// An image that cannot be used (config or a layer missing/corrupt).
    BrokenImage { id: String, reason: String },
    /// A blob file nothing references.
    OrphanBlob { digest: String },
    /// A leftover temp file of an interrupted write.
    TempFile { name: String },
}

/// The outcome of [`Store::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub blobs_checked: usize,
    pub images_checked: usize,
    pub problems: Vec<Problem>,
    /// Whether `problems` were repaired.
    pub repaired: bool,
}

impl Store {
    /// Verifies every blob's digest and size and every reference (tags ->
    /// images -> layers -> blobs). With `repair`, removes what cannot be
    /// trusted: corrupt blobs, images with a missing or corrupt config or
    /// layer (and their names), orphan blobs and temp files.
    pub fn check(&self, repair: bool) -> Result<CheckReport, StoreError> {
        let _ = repair;
        Err(StoreError::Corrupt("check: not implemented yet".into()))
    }
}
