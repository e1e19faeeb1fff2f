//! Reading archives: `berth load`.

use std::io::{self, Read};
use std::path::Path;
use std::thread;

use berth_oci::{BlobSink, Descriptor, Image, ImageConfig, Layer, media_type};
use berth_reference::{Digest, Reference};

use crate::compression::{BUFFER_SIZE, Compression, decompress};
use crate::error::ArchiveError;
use crate::scan::{Scan, scan};
use crate::{docker_archive, oci_layout};

/// Which format an archive was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `manifest.json` (docker save, podman save, skopeo docker-archive,
    /// and Docker 25+'s OCI layout with a manifest.json).
    DockerArchive,
    /// An OCI image layout without manifest.json (oci-archive).
    OciLayout,
}

/// What [`load`] found.
#[derive(Debug, Clone)]
pub struct LoadedArchive {
    pub compression: Compression,
    pub format: ArchiveFormat,
    /// Each verified: every layer's blob (`blobs[0]`, as the sink computed
    /// its digest and size, with a media type telling its compression) is
    /// in the sink with its diff ID proven and its tar length known. Tags
    /// are those the archive gives, in archive order, without duplicates.
    /// An image from an OCI layout keeps its manifest byte for byte; of a
    /// multi-platform image, the host's platform is read.
    pub images: Vec<Image>,
}

/// Reads an image archive: docker-archive (legacy layout, or Docker 25+'s OCI
/// layout with manifest.json), or an OCI image layout tar; plain or
/// compressed with gzip, bzip2, xz or zstd (detected by magic bytes).
///
/// Contract: every blob goes through `sink`, which computes its digest;
/// this function verifies each against the archive's claims: blob names
/// (`blobs/sha256/<hex>`) and descriptors (digest and size), and every
/// layer's uncompressed digest against the config's `rootfs.diff_ids`. On
/// `Ok` the images are fully verified and every layer blob is in the sink;
/// committing them is the caller's job (in one transaction, so that on
/// `Err` nothing is committed). Blobs written before an `Err` are orphans
/// the sink may collect. The input is read exactly once, start to end.
pub fn load<R: Read + Send + 'static>(
    reader: R,
    sink: &dyn BlobSink,
) -> Result<LoadedArchive, ArchiveError> {
    let (compression, reader) = decompress(reader)?;
    let scan = scan(reader, sink).map_err(|e| match e {
        // An unreadable compressed stream surfaces as an I/O error.
        ArchiveError::Io(io) if compression != Compression::None => {
            ArchiveError::NotATar(format!("{} stream: {io}", compression.name()))
        }
        other => other,
    })?;
    let (format, images) = resolve(&scan, sink)?;
    Ok(LoadedArchive { compression, format, images })
}

/// Reads an unpacked archive: an OCI image layout directory (`oci:` as
/// skopeo writes it) or an extracted docker-archive. Same contract as
/// [`load`]: the directory is streamed as a tar, so every check applies
/// (symlinks stay symlinks and must stay inside the directory).
pub fn load_dir(dir: &Path, sink: &dyn BlobSink) -> Result<LoadedArchive, ArchiveError> {
    let (reader, writer) = io::pipe()?;
    let root = dir.to_owned();
    let producer = thread::spawn(move || -> io::Result<()> {
        let mut builder = tar::Builder::new(io::BufWriter::with_capacity(BUFFER_SIZE, writer));
        builder.follow_symlinks(false);
        builder.append_dir_all(".", &root)?;
        builder.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    });
    let loaded = load(reader, sink);
    // A failure to read the directory explains a short stream best.
    match producer.join() {
        Ok(Err(e)) if loaded.is_err() && e.kind() != io::ErrorKind::BrokenPipe => {
            Err(ArchiveError::Io(e))
        }
        _ => loaded,
    }
}

fn resolve(scan: &Scan, sink: &dyn BlobSink) -> Result<(ArchiveFormat, Vec<Image>), ArchiveError> {
    if scan.contains(docker_archive::MANIFEST) {
        let mut images = docker_archive::resolve(scan, sink)?;
        // Docker 25+ writes an OCI layout beside manifest.json: its
        // manifests are the images' own, kept as the layout has them.
        if scan.contains(oci_layout::INDEX) {
            oci_layout::attach_manifests(scan, &mut images)?;
        }
        Ok((ArchiveFormat::DockerArchive, images))
    } else if scan.contains(oci_layout::INDEX) {
        Ok((ArchiveFormat::OciLayout, oci_layout::resolve(scan, sink)?))
    } else if scan.contains("repositories") {
        Err(ArchiveError::LegacyWithoutManifest)
    } else {
        Err(ArchiveError::NotAnImageArchive)
    }
}

/// Parses a config and checks it has as many diff IDs as there are layers.
pub(crate) fn parse_config(
    bytes: &[u8],
    path: &str,
    layers: usize,
) -> Result<ImageConfig, ArchiveError> {
    let config = ImageConfig::parse(bytes).map_err(|e| ArchiveError::json(path, e))?;
    if config.diff_ids().len() != layers {
        return Err(ArchiveError::LayerCount {
            config: path.to_owned(),
            diff_ids: config.diff_ids().len(),
            layers,
        });
    }
    Ok(config)
}

/// Fetches the layer at `path` and checks its diff ID. `declared` is the
/// layer media type a manifest gave it, if any; it must agree with the
/// compression the content shows.
pub(crate) fn layer(
    scan: &Scan,
    sink: &dyn BlobSink,
    path: &str,
    referrer: &str,
    index: usize,
    expected: &Digest,
    declared: Option<&str>,
) -> Result<Layer, ArchiveError> {
    let blob = scan.blob(path, referrer, sink)?;
    let invalid = |message: String| ArchiveError::InvalidLayer { path: path.to_owned(), message };
    let (diff_id, uncompressed_size, compression) = blob.diff_id().map_err(invalid)?;
    if diff_id != *expected {
        return Err(ArchiveError::DiffIdMismatch {
            index,
            path: path.to_owned(),
            expected: expected.clone(),
            actual: diff_id,
        });
    }
    let media_type = match compression {
        Compression::None => media_type::OCI_LAYER,
        Compression::Gzip => media_type::OCI_LAYER_GZIP,
        Compression::Zstd => media_type::OCI_LAYER_ZSTD,
        other => return Err(invalid(format!("{} layers are not supported", other.name()))),
    };
    let media_type = match declared {
        None => media_type.to_owned(),
        Some(declared) => {
            let declared_compression = media_type::layer_compression(declared)
                .ok_or_else(|| invalid(format!("unsupported layer media type {declared:?}")))?;
            let shown = match compression {
                Compression::None => media_type::LayerCompression::None,
                Compression::Gzip => media_type::LayerCompression::Gzip,
                _ => media_type::LayerCompression::Zstd,
            };
            if declared_compression != shown {
                return Err(invalid(format!(
                    "media type {declared:?} does not match its {} content",
                    compression.name()
                )));
            }
            declared.to_owned()
        }
    };
    Ok(Layer {
        diff_id,
        blobs: vec![Descriptor::new(&media_type, blob.digest, blob.size)],
        uncompressed_size: Some(uncompressed_size),
    })
}

/// Adds `tag` to `tags` unless it is already there.
pub(crate) fn push_tag(tags: &mut Vec<Reference>, tag: Reference) {
    if !tags.contains(&tag) {
        tags.push(tag);
    }
}
