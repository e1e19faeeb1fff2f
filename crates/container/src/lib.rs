//! Containers without a daemon: each one an OCI runtime bundle (a
//! `config.json` and a root filesystem) over an overlayfs mount of its
//! image's snapshots, run by a real OCI runtime (runc, crun).
//!
//! This crate so far holds what a bundle says: [`spec::bundle_config`]
//! turns an image's config and `run`'s options into the runtime's
//! `config.json` the way docker fills it (namespaces, mounts, masked paths,
//! the default capabilities, the user resolved against the image's own
//! `/etc/passwd` and `/etc/group`).

pub mod init;
pub mod layers;
pub mod mount;
pub mod rootfs;
pub mod runtime;
pub mod spec;
pub mod user;

pub use init::write_init_layer;
pub use layers::{layer_dirs, lower_dirs, snapshots_of};
pub use mount::{Overlay, mount_lowers, mount_overlay, unmount};
pub use rootfs::resolve_in_root;
pub use runtime::{RuntimeMissing, find_runtime, remove_cgroups, runtime_command};
pub use spec::{Network, RunOptions, SpecError, bundle_config};
pub use user::{User, UserError, resolve_user};
