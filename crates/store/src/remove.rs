//! Removing images (docker's `rmi` semantics), pruning, and collecting
//! unreferenced blob files.

use berth_reference::Digest;

use crate::{Store, StoreError};

/// What a removal did, in the order docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    /// `Untagged: busybox:musl` / `Untagged: busybox@sha256:...` (familiar form).
    Untagged(String),
    /// `Deleted: sha256:...`: the image ID, then the chain ID of each layer
    /// stack no remaining image uses, top first (docker prints chain IDs).
    Deleted(Digest),
}

/// A `label=` / `label!=` filter of `image prune` and `images --filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    /// `None`: the label must (or must not) exist with any value.
    pub value: Option<String>,
    /// `label!=`: the image must NOT match.
    pub negate: bool,
}

/// Which images `prune` removes.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// `true`: only images without tags (docker's default); `false` (`-a`):
    /// every image no container uses.
    pub dangling_only: bool,
    /// Only images created before this unix time (`until=`).
    pub until: Option<i64>,
    pub labels: Vec<LabelFilter>,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub events: Vec<RemoveEvent>,
    /// Sum of the uncompressed sizes of the layer stacks deleted (docker's
    /// "Total reclaimed space").
    pub space_reclaimed: u64,
}

impl Store {
    /// Docker's `rmi NAME`: untags a named reference; deletes the image when
    /// its last reference goes (or when removed by ID), then the layers no
    /// other image uses. `force` allows removing by ID an image several
    /// repositories reference. `prune_parents` is accepted for docker's
    /// `--no-prune`; berth records no parent images, so it changes nothing.
    /// Returns the events in docker's order. All metadata changes are one
    /// transaction; blob files are deleted after it (see the crate docs).
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        prune_parents: bool,
    ) -> Result<Vec<RemoveEvent>, StoreError> {
        let _ = (name, force, prune_parents);
        Err(StoreError::Corrupt("remove: not implemented yet".into()))
    }

    /// `image prune`: removes dangling images (or, with `dangling_only`
    /// false, every image no container uses) matching the filters.
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport, StoreError> {
        let _ = options;
        Err(StoreError::Corrupt("prune: not implemented yet".into()))
    }
}
