//! What the client needs from wherever images are kept locally. The caller
//! implements [`ImageStore`] over its store (berth's CLI does so over
//! `berth_store::Store`); this crate never sees the store's internals.

use std::io;

use berth_oci::{BlobSink, BlobSource, Descriptor};
use berth_reference::{Digest, Repository};

/// A local image store as the client uses it: blobs in and out, and the
/// layer facts that let a pull skip and a push reuse work.
///
/// Contract: `write_blob` (from [`BlobSink`]) is only ever handed readers
/// that fail unless the whole blob matched its digest (and, for layers, its
/// diff ID), so a failed read must leave nothing behind under that digest;
/// `write_expected_blob` is handed the raw stream and must check it.
pub trait ImageStore: BlobSource + BlobSink + Send + Sync {
    /// If `blob` is stored and known to carry a layer: the layer's diff ID
    /// and uncompressed size.
    fn known_layer(&self, blob: &Digest) -> Option<KnownLayer>;

    /// Records that layer `diff_id` is also available as `blob` (a gzip made
    /// for a push), so the next push does not compress again.
    fn add_layer_blob(&self, diff_id: &Digest, blob: &Descriptor) -> io::Result<()>;

    /// Repositories layer `diff_id` is known to exist in (from earlier pulls
    /// and pushes): candidates for a cross-repository mount on the same
    /// registry.
    fn layer_sources(&self, _diff_id: &Digest) -> Vec<Repository> {
        Vec::new()
    }
}

/// A layer the store already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLayer {
    pub diff_id: Digest,
    /// `None` while the store has not yet proven the diff ID (a layer
    /// pulled with [`crate::PullOptions::defer_diff_ids`]).
    pub uncompressed_size: Option<u64>,
}
