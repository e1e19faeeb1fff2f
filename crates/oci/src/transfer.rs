//! The contracts between places that hold images (the local store, archives,
//! registries). Readers of one format write into a [`BlobSink`]; writers of
//! another read from a [`BlobSource`]. Neither side knows the other's layout.

use std::io::{self, Read};

use berth_reference::Digest;

use crate::manifest::Descriptor;

/// Somewhere blobs can be read by digest.
pub trait BlobSource {
    /// Opens the blob. Contract: the bytes are those that hash to `digest`;
    /// a source that cannot promise this (a remote registry) verifies while
    /// streaming and fails the read on mismatch.
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>>;

    /// The blob's size, if the source has it.
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>>;

    /// The blob as a local file, when the source keeps it in one, so that a
    /// copy can let the kernel move the bytes (`copy_file_range`,
    /// `sendfile`). Same content contract as [`BlobSource::open_blob`].
    /// `Ok(None)` (the default) means: use `open_blob`.
    fn open_blob_file(&self, digest: &Digest) -> io::Result<Option<std::fs::File>> {
        let _ = digest;
        Ok(None)
    }
}

/// Somewhere blobs can be written.
pub trait BlobSink {
    /// Stores everything `reader` yields as one blob and returns its sha256
    /// digest and size. Contract: the sink computes the digest itself and
    /// never trusts a name given by the caller; the caller compares it with
    /// the digest it expected. A blob written but never made part of a
    /// committed image may be collected later: writing is not committing.
    fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)>;

    /// Whether the sink already holds this blob (so a copy can skip it).
    fn has_blob(&self, digest: &Digest) -> bool;
}

/// One layer of an image as a source offers it: its uncompressed identity
/// (`diff_id`) and the blob that carries it, whose media type tells how it is
/// compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    pub diff_id: Digest,
    pub blob: Descriptor,
}
