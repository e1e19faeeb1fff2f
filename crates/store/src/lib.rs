//! berth's local image store: what `docker images` lists, without a daemon.
//!
//! Blobs (layer tarballs, compressed or not, and image configs) are
//! content-addressed files; everything else (images, layers, tags, repo
//! digests) is metadata in one SQLite database. On disk:
//!
//! ```text
//! <root>/
//! ├── lock                  advisory flock: shared while ingesting/committing,
//! │                         exclusive while deleting blob files
//! ├── berth.db              SQLite (WAL; berth.db-wal, berth.db-shm beside it)
//! │   ├── images            id (= config digest), config bytes, created, size, added
//! │   ├── layers            diff_id, tar length, content size (docker's layer size)
//! │   ├── layer_blobs       diff_id -> blob digest, media type, size (a layer may be
//! │   │                     stored uncompressed and/or compressed)
//! │   ├── image_layers      image id, position (bottom = 0), diff_id, chain id
//! │   ├── tags              repository (full name), tag -> image id
//! │   ├── repo_digests      repository, manifest digest -> image id
//! │   ├── manifests         digest -> image id, media type, the exact bytes
//! │   └── containers        id, name, image (pinned), command, state, config
//! ├── blobs/
//! │   └── sha256/
//! │       └── <64 hex>      immutable; the file's sha256 is its name
//! ├── tmp/
//! │   └── <pid>.<n>-<k>     blobs being written; renamed into blobs/ when
//! │                         complete; swept by the next writer once their
//! │                         owner's lock is free (the writer was killed)
//! └── writers/
//!     ├── <pid>.<n>.lock    flocked while that Store writes (one per Store)
//!     └── proof.lock        flocked by the one process proving pulled layers
//! ```
//!
//! Consistency rules, which every function here keeps:
//! - A file under `blobs/` only ever appears complete: it is written under
//!   `tmp/`, hashed while written, fsynced, then renamed. A partial write is
//!   never visible under a digest.
//! - Blobs are written before the metadata that references them, and metadata
//!   is deleted before the blobs it referenced. Every metadata change is one
//!   SQLite transaction. So a process killed at any moment leaves at worst
//!   orphan blobs and temp files, never a tag or image pointing at missing
//!   content; [`Store::check`] with `repair` and the garbage collector remove
//!   the orphans.
//! - Several processes may use one store at once (SQLite WAL + busy timeout).
//!   A [`Store`] that writes blobs holds the shared lock on `root/lock` from
//!   its first write until it is dropped or calls [`Store::end_ingest`]; blob
//!   files are only deleted under the exclusive lock (taken without waiting),
//!   after re-checking that nothing references them. So a blob written for an
//!   image being committed is never deleted under it; a removal that finds
//!   the lock busy leaves its files as orphans for the next collection
//!   (`image prune`, `system check --repair`).
//!
//! Sizes: a layer's `uncompressed_size` is its tar's length; docker's SIZE
//! (of layers in `history`, of images in `images`) is the unpacked content
//! size, which the store measures itself (`berth_layer::TarWalk`).
//!
//! Deferred verification: a pull records compressed blobs checked against
//! their digests, with the diff IDs the registry claims still unchecked
//! (`verified = 0` on the layer_blobs row and, until one of its blobs is
//! checked, on the layer). Every read of an image ([`Store::image`],
//! [`Store::list_images`]) first runs [`Store::verify_pending_layers`],
//! which decompresses each unchecked blob once, records the layer's sizes,
//! and discards the images resting on a blob that lied. So no caller ever
//! sees an image whose layers are not proven. One prover runs at a time,
//! across processes (`writers/proof.lock`): berth's pull starts one in the
//! background, and a read meanwhile waits for it rather than doing the
//! same work twice.
//!
//! `rmi` prints docker's `Deleted:` lines: the image ID, then the chain ID of
//! each layer stack no other image uses, top first. Blobs are shared by diff
//! ID, so a layer file is deleted only when no image uses that diff ID.
//!
//! Identity: an image's ID is the sha256 of its config bytes, exactly as
//! received. A layer is identified by its diff ID (the sha256 of the
//! uncompressed tar) and stored once however many images use it.

mod blobs;
mod check;
mod containers;
mod db;
mod error;
mod images;
mod lock;
mod remove;
mod temp;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use berth_oci::Descriptor;
pub use berth_reference::{Digest, Reference};

pub use berth_oci::time::parse_rfc3339;
pub use blobs::BlobWriter;
pub use check::{CheckReport, Problem};
pub use containers::ContainerRecord;
pub use error::StoreError;
pub use remove::{LabelFilter, PruneOptions, PruneReport, RemoveEvent, labels_match};
pub use verify::{CorruptLayer, ProofProgress};

/// A local image store rooted at one directory. `Send + Sync`: share it by
/// reference or in an `Arc`; every method takes `&self`.
pub struct Store {
    root: PathBuf,
    conn: Mutex<rusqlite::Connection>,
    locks: lock::StoreLock,
    temps: temp::TempOwner,
    /// Told how a proof of pending layers goes (see `on_proof_progress`).
    proof_observer: Mutex<Option<ProofObserver>>,
}

type ProofObserver = Box<dyn Fn(ProofProgress) + Send + Sync>;

impl Store {
    /// Opens (creating if needed) the store at `root`: `root/blobs/sha256`,
    /// `root/tmp`, and `root/berth.db` (WAL, busy timeout, schema created or
    /// migrated). Opening a current store does one small read of the schema
    /// version and nothing else.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(root.join("blobs/sha256"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        std::fs::create_dir_all(root.join("writers"))?;
        let conn = db::open(&root.join("berth.db"))?;
        let locks = lock::StoreLock::new(root.join("lock"));
        let temps = temp::TempOwner::new(root.join("tmp"), root.join("writers"));
        Ok(Store {
            root: root.to_owned(),
            conn: Mutex::new(conn),
            locks,
            temps,
            proof_observer: Mutex::new(None),
        })
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        // A panic while holding the connection cannot leave a transaction
        // half-applied (it rolls back on drop), so a poisoned lock is safe.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An image to record with [`Store::commit_images`]. Its blobs (every
/// layer's and, optionally, the config's) must already be in the store.
///
/// Per layer of `image`: every blob listed is recorded as carrying it. For
/// an uncompressed media type (OCI_LAYER / DOCKER_LAYER) the blob's digest
/// must be the diff ID. `uncompressed_size: Some(n)` says the caller proved
/// the diff ID (by decompressing, or because the blob is the tar itself);
/// `None` records an unverified claim, as a pull does: the store verifies
/// it (and measures the sizes) before any image using the layer is read,
/// see [`Store::verify_pending_layers`]. (Docker's layer SIZE is the
/// unpacked content size, which the store measures itself.)
///
/// `image.manifest`, when given, must name the image's config; it is kept
/// byte for byte (see [`ImageRecord::manifests`]). `image.tags` are the tags
/// to point at the image (each has a tag and no digest).
#[derive(Debug, Clone)]
pub struct NewImage {
    pub image: berth_oci::Image,
    /// `repository@manifest-digest` names the image is known by (each has a
    /// digest; a tag beside it is ignored).
    pub repo_digests: Vec<Reference>,
}

/// The result of committing one [`NewImage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub id: Digest,
    /// Tags that moved here from another image: (tag, previous image ID).
    /// The previous image may now be dangling.
    pub moved_tags: Vec<(Reference, Digest)>,
}

/// Everything the store knows about one image.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub id: Digest,
    pub config_bytes: Vec<u8>,
    pub config: berth_oci::ImageConfig,
    /// Bottom first.
    pub layers: Vec<LayerRecord>,
    /// Sorted by their full form, as docker lists them.
    pub tags: Vec<Reference>,
    /// Sorted by their full form.
    pub repo_digests: Vec<Reference>,
    /// The manifests the image arrived or was last pushed with, exactly
    /// as received or sent, newest first.
    pub manifests: Vec<berth_oci::RawManifest>,
    /// Sum of the layers' content sizes (docker's SIZE).
    pub size: u64,
    /// Unix seconds from the config's `created`, if it has a valid one.
    pub created: Option<i64>,
    /// Unix seconds when the image entered this store.
    pub added: i64,
    /// Unix nanoseconds of the last `tag` onto this image (docker's
    /// `Metadata.LastTagTime`); `None` if it was never tagged that way.
    pub last_tag_time: Option<i64>,
}

impl ImageRecord {
    /// The image as a push, save or copy reads it, named `tags`: its
    /// manifest is the newest kept one that still names the blobs held
    /// (see [`berth_oci::Image::kept_manifest`]), else none.
    pub fn to_image(&self, tags: Vec<Reference>) -> berth_oci::Image {
        let mut image = berth_oci::Image {
            manifest: None,
            config: self.config_bytes.clone(),
            layers: self
                .layers
                .iter()
                .map(|l| berth_oci::Layer {
                    diff_id: l.diff_id.clone(),
                    blobs: l.blobs.clone(),
                    uncompressed_size: Some(l.uncompressed_size),
                })
                .collect(),
            tags,
        };
        for m in &self.manifests {
            image.manifest = Some(m.clone());
            if image.kept_manifest().is_some() {
                return image;
            }
        }
        image.manifest = None;
        image
    }
}

/// One layer of an [`ImageRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    pub diff_id: Digest,
    /// Docker's chain ID of the layer stack ending here.
    pub chain_id: Digest,
    /// Length of the uncompressed tar.
    pub uncompressed_size: u64,
    /// What the layer occupies unpacked (docker's layer SIZE, as `history`
    /// shows it): regular file sizes plus symlink target lengths.
    pub content_size: u64,
    /// Every stored blob carrying this layer, uncompressed first if present.
    pub blobs: Vec<Descriptor>,
}

/// A stored layer, independent of the images using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayer {
    pub diff_id: Digest,
    /// Length of the uncompressed tar.
    pub uncompressed_size: u64,
    /// docker's layer size (unpacked content).
    pub content_size: u64,
    /// False while the layer's diff ID is an unverified claim (sizes are 0
    /// until [`Store::verify_pending_layers`] runs).
    pub verified: bool,
    /// Every stored blob carrying it, uncompressed first if present.
    pub blobs: Vec<Descriptor>,
    /// Repositories the layer is known to exist in remotely: those of the
    /// repo digests of the images using it (for cross-repository mounts).
    pub repositories: Vec<berth_reference::Repository>,
}

/// The light view of an image that listing needs (no config parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: Digest,
    pub created: Option<i64>,
    /// docker's SIZE (sum of layer content sizes).
    pub size: u64,
    pub added: i64,
    /// Sorted by their full form.
    pub tags: Vec<Reference>,
    /// Sorted by their full form.
    pub repo_digests: Vec<Reference>,
}

/// Docker's chain IDs for a stack of diff IDs (bottom first):
/// `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl berth_oci::BlobSource for Store {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
        Ok(Box::new(Store::open_blob(self, digest)?))
    }

    fn open_blob_file(&self, digest: &Digest) -> std::io::Result<Option<std::fs::File>> {
        Store::open_blob(self, digest).map(Some)
    }

    fn blob_size(&self, digest: &Digest) -> std::io::Result<Option<u64>> {
        match std::fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl berth_oci::BlobSink for Store {
    fn write_blob(&self, reader: &mut dyn std::io::Read) -> std::io::Result<(Digest, u64)> {
        Store::write_blob(self, reader)
    }

    fn write_expected_blob(
        &self,
        reader: &mut dyn std::io::Read,
        expected: &berth_oci::Descriptor,
    ) -> std::io::Result<()> {
        Store::write_expected_blob(self, reader, expected)
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        Store::has_blob(self, digest)
    }
}

/// The store as a registry pull and push use it. Layer facts are indexed
/// queries, so a pull of a few layers costs a few lookups however large
/// the store is.
impl berth_oci::ImageStore for Store {
    fn known_layer(&self, blob: &Digest) -> Option<berth_oci::KnownLayer> {
        // A metadata error here only costs a download, never correctness.
        let known = Store::known_layer(self, blob).ok().flatten()?;
        self.has_blob(blob).then_some(known)
    }

    fn add_layer_blob(&self, diff_id: &Digest, blob: &Descriptor) -> std::io::Result<()> {
        Store::add_layer_blob(self, diff_id, blob).map_err(std::io::Error::other)
    }

    fn layer_sources(&self, diff_id: &Digest) -> Vec<berth_reference::Repository> {
        self.layer_repositories(diff_id).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Store>();
    }

    #[test]
    fn chain_ids_follow_dockers_rule() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::sha256_of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn a_blob_written_piece_by_piece_appears_only_when_committed() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.create_blob().unwrap();
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let expected = Digest::sha256_of(b"hello world");
        assert!(!store.has_blob(&expected));
        assert_eq!(w.commit().unwrap(), (expected.clone(), 11));
        assert!(store.has_blob(&expected));
        let mut dropped = store.create_blob().unwrap();
        dropped.write_all(b"abandoned").unwrap();
        drop(dropped);
        assert!(!store.has_blob(&Digest::sha256_of(b"abandoned")));
        assert_eq!(store.temp_usage().unwrap().0, 0, "nothing is left in tmp/");
    }
}
