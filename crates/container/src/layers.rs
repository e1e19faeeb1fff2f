//! An image's layers as overlayfs lower directories: each layer stack
//! unpacked once into the store's snapshots (keyed by chain ID), all of an
//! image's missing layers at once, one per core.

use std::io::{self, BufReader};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    let missing: Vec<usize> =
        (0..image.layers.len()).filter(|&i| !snapshots.has(&image.layers[i].chain_id)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(missing.len());
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<SnapshotError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = missing.get(k) else { break };
                    let layer = &image.layers[i];
                    let open = || -> io::Result<Box<dyn io::Read>> {
                        // The uncompressed blob if stored, else the first.
                        let blob = layer
                            .blobs
                            .iter()
                            .find(|b| b.digest == layer.diff_id)
                            .or_else(|| layer.blobs.first())
                            .ok_or_else(|| io::Error::other("no blob carries the layer"))?;
                        let file =
                            BufReader::with_capacity(256 * 1024, store.open_blob(&blob.digest)?);
                        Ok(Box::new(berth_layer::decompress(file, &blob.media_type)?))
                    };
                    if let Err(e) = snapshots.ensure(&layer.chain_id, open, opts) {
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
    Ok(image.layers.iter().rev().map(|l| snapshots.path(&l.chain_id)).collect())
}
