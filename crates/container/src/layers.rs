//! An image's layers as overlayfs lower directories: each layer stack
//! unpacked once into the store's snapshots (keyed by chain ID), all of an
//! image's missing layers at once, one per core.

use std::io::{self, BufReader};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_oci::Descriptor;
use berth_reference::Digest;
use berth_snapshot::{SnapshotError, Snapshots, UnpackOptions};
use berth_store::{ImageRecord, Store};

/// The snapshot directory of a store: `<root>/snapshots`.
pub fn snapshots_of(store: &Store) -> Result<Snapshots, SnapshotError> {
    Snapshots::open(&store.root().join("snapshots"))
}

/// The lower directories of `image`, topmost first (the order overlayfs's
/// `lowerdir=` takes), unpacking the layers not yet unpacked.
pub fn lower_dirs(
    store: &Store,
    snapshots: &Snapshots,
    image: &ImageRecord,
    opts: &UnpackOptions,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let layers: Vec<Stacked<'_>> =
        image.layers.iter().map(|l| (l.chain_id.clone(), &l.diff_id, &l.blobs[..])).collect();
    stack_dirs(store, snapshots, &layers, opts)
}

/// Like [`lower_dirs`], for layers not (yet) recorded as an image, such as
/// a build's: their blobs need only be in the store.
pub fn layer_dirs(
    store: &Store,
    snapshots: &Snapshots,
    layers: &[berth_oci::Layer],
    opts: &UnpackOptions,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let stack: Vec<Stacked<'_>> = berth_store::chain_ids(&diff_ids)
        .into_iter()
        .zip(layers)
        .map(|(chain, l)| (chain, &l.diff_id, &l.blobs[..]))
        .collect();
    stack_dirs(store, snapshots, &stack, opts)
}

/// A layer in a stack: its chain ID, diff ID and the blobs carrying it.
type Stacked<'a> = (Digest, &'a Digest, &'a [Descriptor]);

/// Per layer, bottom first.
fn stack_dirs(
    store: &Store,
    snapshots: &Snapshots,
    layers: &[Stacked<'_>],
    opts: &UnpackOptions,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let missing: Vec<usize> = (0..layers.len()).filter(|&i| !snapshots.has(&layers[i].0)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(missing.len());
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<SnapshotError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = missing.get(k) else { break };
                    let (chain_id, diff_id, blobs) = &layers[i];
                    let open = || -> io::Result<Box<dyn io::Read>> {
                        // The uncompressed blob if stored, else the first.
                        let blob = blobs
                            .iter()
                            .find(|b| b.digest == **diff_id)
                            .or_else(|| blobs.first())
                            .ok_or_else(|| io::Error::other("no blob carries the layer"))?;
                        let file =
                            BufReader::with_capacity(256 * 1024, store.open_blob(&blob.digest)?);
                        Ok(Box::new(berth_layer::decompress(file, &blob.media_type)?))
                    };
                    if let Err(e) = snapshots.ensure(chain_id, open, opts) {
                        failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(layers.iter().rev().map(|(chain_id, ..)| snapshots.path(chain_id)).collect())
}
