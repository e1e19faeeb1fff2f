//! Image layers unpacked for overlayfs: each layer once, in a directory of
//! its own keyed by its chain ID, shared by every container that stacks it
//! (as a `lowerdir`).
//!
//! An OCI layer marks deletions with whiteout files; overlayfs has its own
//! marks, which [`unpack`] writes instead:
//!
//! ```text
//! layer tar               overlay lower directory
//! dir/.wh.name            dir/name: a character device 0:0
//! dir/.wh..wh..opq        dir: xattr trusted.overlay.opaque = "y"
//! ```
//!
//! Both need root (mknod, trusted xattrs), as do device nodes and file
//! owners; unpacking as another user gives [`SnapshotError::NeedsRoot`] for
//! a whiteout, skips device nodes and keeps files owned by the caller.
//!
//! Nothing in a layer can reach outside its directory: `..` components and
//! entries whose parent is a symlink are refused, symlinks are created
//! without ever being followed, and hard links must point at a file of the
//! same layer.

mod changes;
mod tree;
mod unpack;

use std::io::Read;
use std::path::{Path, PathBuf};

use berth_reference::Digest;

pub use changes::{Change, ChangeKind, Lowers, changes, write_layer};
pub use tree::write_tree;
pub use unpack::{UnpackOptions, Unpacked, unpack, unpack_files};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An entry that would land outside the layer's directory.
    #[error("layer entry {path:?} {reason}")]
    Unsafe { path: String, reason: &'static str },

    /// What only root can create (whiteouts, opaque directories).
    #[error("layer entry {0:?} needs root to unpack (an overlay whiteout)")]
    NeedsRoot(String),

    #[error("layer entry {path:?}: {source}")]
    Entry { path: String, source: std::io::Error },

    #[error("reading the layer: {0}")]
    Read(#[source] std::io::Error),

    #[error("snapshot {what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// The snapshot directory: `<root>/<chain ID hex>/` for each unpacked
/// layer stack, and `<root>/.tmp-*` while one is being unpacked.
pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots, SnapshotError> {
        std::fs::create_dir_all(root).map_err(|source| SnapshotError::Io {
            what: format!("create {}", root.display()),
            source,
        })?;
        Ok(Snapshots { root: root.to_owned() })
    }

    /// Where the snapshot of the layer stack `chain_id` is (or would be).
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    /// Whether that snapshot is there, complete.
    pub fn has(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).is_dir()
    }

    /// The snapshot of `chain_id`, unpacking `layer` (an uncompressed tar)
    /// first unless it is already there. Unpacked into a temporary
    /// directory and renamed into place, so a snapshot is only ever seen
    /// complete; when two unpack the same layer at once, one rename wins
    /// and the other's copy is removed.
    pub fn ensure(
        &self,
        chain_id: &Digest,
        layer: impl FnOnce() -> std::io::Result<Box<dyn Read>>,
        opts: &UnpackOptions,
    ) -> Result<PathBuf, SnapshotError> {
        let dest = self.path(chain_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let io = |what: String| move |source| SnapshotError::Io { what, source };
        let temp = tempfile::Builder::new()
            .prefix(&format!(".tmp-{}-", chain_id.hex()))
            .tempdir_in(&self.root)
            .map_err(io(format!("create a directory in {}", self.root.display())))?;
        let reader = layer().map_err(SnapshotError::Read)?;
        unpack(reader, temp.path(), opts)?;
        let temp = temp.keep();
        match std::fs::rename(&temp, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&temp);
                Ok(dest)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&temp);
                Err(io(format!("rename to {}", dest.display()))(e))
            }
        }
    }

    /// Removes a snapshot (when no image or container needs it any more).
    pub fn remove(&self, chain_id: &Digest) -> Result<bool, SnapshotError> {
        match std::fs::remove_dir_all(self.path(chain_id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => {
                Err(SnapshotError::Io { what: format!("remove {}", chain_id.short()), source: e })
            }
        }
    }
}
