//! The store's errors. Texts a user sees from `berth` use Docker's wording.

use berth_reference::{Digest, ReferenceError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No image answers to this name, ID or ID prefix (also for an
    /// ambiguous prefix, as docker does).
    #[error("No such image: {0}")]
    NoSuchImage(String),

    /// Removal refused. `image` is the 12-hex short ID; `hard` conflicts
    /// (a running container) cannot be forced.
    #[error(
        "conflict: unable to delete {image} ({}) - {reason}",
        if *hard { "cannot be forced" } else { "must be forced" }
    )]
    Conflict { image: String, hard: bool, reason: String },

    /// Untagging would leave an image a container uses without a name.
    #[error(
        "conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image {image}"
    )]
    ReferenceInUse { reference: String, container: String, image: String },

    #[error("No such container: {0}")]
    NoSuchContainer(String),

    /// docker's wording, `/` before the name included.
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    ContainerNameInUse { name: String, id: String },

    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),

    /// A tag was expected (for example `berth tag ... name@sha256:...`).
    #[error("refusing to create a tag with a digest reference")]
    TagWithDigest,

    /// A repo digest was expected but the reference has no digest.
    #[error("reference {0} has no digest")]
    NotDigested(String),

    #[error("invalid image config: {0}")]
    InvalidConfig(#[source] serde_json::Error),

    #[error("image {image} has {layers} layers but its config lists {diff_ids} diff IDs")]
    LayerCount { image: Digest, layers: usize, diff_ids: usize },

    #[error("layer {index} of image {image} is {found} but its config says {expected}")]
    DiffIdMismatch { image: Digest, index: usize, expected: Digest, found: Digest },

    /// An uncompressed layer blob whose digest is not its diff ID.
    #[error("uncompressed layer blob {blob} does not match its diff ID {diff_id}")]
    UncompressedBlobMismatch { diff_id: Digest, blob: Digest },

    /// A layer given with no blob to carry it.
    #[error("layer {0} has no blob")]
    LayerWithoutBlob(Digest),

    /// A manifest recorded for an image that it does not describe.
    #[error("manifest {manifest} does not describe image {image}")]
    ManifestNotForImage { manifest: Digest, image: Digest },

    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),

    #[error("blob {digest} has {actual} bytes, expected {expected}")]
    BlobSize { digest: Digest, expected: u64, actual: u64 },

    #[error("layer {0} is not in the store")]
    NoSuchLayer(Digest),

    #[error("the store at {path} has schema version {found}; this berth knows up to {known}")]
    SchemaTooNew { path: String, found: i64, known: i64 },

    /// The metadata holds a value that cannot have been written by berth.
    #[error("corrupt store metadata: {0}")]
    Corrupt(String),

    /// Layer blobs that did not decompress to the diff ID their image
    /// claimed (found by deferred verification); they and the images
    /// resting on them are gone from the store.
    #[error("{}", .0.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("\n"))]
    CorruptLayers(Vec<crate::CorruptLayer>),

    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),

    #[error("store database: {0}")]
    Db(#[from] rusqlite::Error),
}
