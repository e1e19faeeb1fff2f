//! The image formats: OCI image spec v1.1 and Docker image manifest schema 2.
//!
//! Plain data types and parsing; no network, no disk.

pub mod config;
mod image;
mod manifest;
pub mod media_type;
pub mod time;
pub mod transfer;

pub use config::{ContainerConfig, History, ImageConfig, RootFs};
pub use image::{Image, Layer, RawManifest};
pub use manifest::{Descriptor, ImageIndex, ImageManifest, Manifest, ManifestError, Platform};
pub use transfer::{BlobMismatch, BlobSink, BlobSource, ImageStore, KnownLayer};
