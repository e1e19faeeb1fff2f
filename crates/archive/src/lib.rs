//! Image archives: reading and writing the tarballs `docker save`, `podman
//! save` and `skopeo` exchange, and turning a rootfs tarball into an image.
//!
//! Formats, one module each: [`docker_archive`] (manifest.json; legacy and
//! Docker 25+ layouts), [`oci_layout`] (OCI image layout tars), plus
//! whole-archive compression ([`compression`]: gzip, bzip2, xz, zstd, by
//! magic bytes). Entry points: [`load`], [`save`], [`import`].
//!
//! This crate knows nothing of where images live: readers write blobs into
//! a [`berth_oci::BlobSink`] and return verified image descriptions for the
//! caller to commit; writers read blobs from a [`berth_oci::BlobSource`].
//! The local store and a registry client both plug in.

mod archive_path;
mod changes;
pub mod compression;
pub mod docker_archive;
mod error;
mod import;
mod load;
pub mod oci_layout;
mod save;
mod scan;
mod tar_writer;

pub use changes::apply_changes;
pub use compression::Compression;
pub use error::ArchiveError;
pub use import::{ImportOptions, import};
pub use load::{ArchiveFormat, LoadedArchive, load, load_dir};
pub use oci_layout::write_oci_dir;
pub use save::{SaveFormat, save};
pub use scan::{METADATA_MEMBER_LIMIT, METADATA_TOTAL_LIMIT};
