//! Why an archive could not be read or written.

use std::io;

use berth_reference::{Digest, ReferenceError};

/// Everything that can go wrong reading, writing or importing an archive.
/// Messages name the offending member so a user can see what is wrong with
/// their file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Io(#[from] io::Error),

    /// The input is not a tar stream (or not a decompressible one).
    #[error("invalid archive: not a tar file: {0}")]
    NotATar(String),

    /// The tar stream ended inside a member.
    #[error("invalid archive: unexpected end of file in {path:?} (the archive is truncated)")]
    Truncated { path: String },

    /// `import`: the input is not a complete tar stream.
    #[error("invalid rootfs tarball: {0}")]
    InvalidRootfs(String),

    /// A valid tar that holds no image: no manifest.json, no index.json.
    #[error(
        "invalid archive: no manifest.json or index.json found: this tar file is not an image archive"
    )]
    NotAnImageArchive,

    /// Only a pre-1.10 `repositories` file and per-layer json: the image ID
    /// cannot be recreated from that.
    #[error(
        "invalid archive: legacy archive without manifest.json (docker before 1.10) is not supported"
    )]
    LegacyWithoutManifest,

    /// A member whose name or link target leaves the archive.
    #[error("invalid archive: entry {path:?} {reason}")]
    UnsafePath { path: String, reason: &'static str },

    #[error("invalid archive: entry {path:?} appears twice")]
    DuplicateEntry { path: String },

    /// A metadata member larger than berth keeps in memory.
    #[error(
        "invalid archive: {path:?} is {size} bytes, more than the {limit} bytes allowed for metadata"
    )]
    MemberTooLarge { path: String, size: u64, limit: u64 },

    #[error("invalid archive: the metadata files together exceed {limit} bytes")]
    MetadataTooLarge { limit: u64 },

    /// A manifest names a file that is not in the archive.
    #[error("invalid archive: {referrer} names {path:?}, which is not in the archive")]
    MissingMember { referrer: String, path: String },

    #[error("invalid archive: symlink chain too long or cyclic at {path:?}")]
    LinkLoop { path: String },

    #[error("invalid archive: {path:?}: {message}")]
    InvalidJson { path: String, message: String },

    #[error("invalid archive: {what}: digest mismatch (expected {expected}, got {actual})")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },

    #[error("invalid archive: {what}: size mismatch (expected {expected} bytes, got {actual})")]
    SizeMismatch { what: String, expected: u64, actual: u64 },

    /// A layer whose uncompressed content is not what the config says.
    #[error(
        "invalid archive: layer {index} ({path}) has diff ID {actual}, but the image config says {expected}"
    )]
    DiffIdMismatch { index: usize, path: String, expected: Digest, actual: Digest },

    #[error(
        "invalid archive: image config {config} lists {diff_ids} layers but the manifest has {layers}"
    )]
    LayerCount { config: String, diff_ids: usize, layers: usize },

    #[error("invalid archive: layer {path:?}: {message}")]
    InvalidLayer { path: String, message: String },

    #[error("invalid reference format: {name:?} in {path}: {source}")]
    InvalidReference {
        name: String,
        path: String,
        #[source]
        source: ReferenceError,
    },

    #[error("invalid archive: {0}")]
    Unsupported(String),

    /// Writing: a layer's stored blob is not what the store's records say.
    #[error("layer {diff_id}: {message}")]
    CorruptLayer { diff_id: Digest, message: String },

    /// Writing: a stored blob cannot be opened (`cause` is in the message).
    #[error("layer {diff_id}: cannot read blob {digest}: {cause}")]
    UnreadableBlob { diff_id: Digest, digest: Digest, cause: io::Error },

    /// Writing: nothing can carry the layer.
    #[error("layer {0}: no stored blob carries it")]
    NoBlob(Digest),

    /// Writing `oci:DIR`: the directory holds something other than a layout.
    #[error("{0}: exists and is not an OCI image layout")]
    NotALayout(String),

    /// `import`: a `-c` change that is not a Dockerfile instruction import allows.
    #[error("{0}")]
    InvalidChange(String),
}

impl ArchiveError {
    pub(crate) fn json(path: &str, err: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::InvalidJson { path: path.to_owned(), message: err.to_string() }
    }
}
