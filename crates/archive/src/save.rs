//! Writing archives: `berth save`.

use std::io::{self, Write};

use berth_oci::{BlobSource, Descriptor, Image, Layer, media_type};
use berth_reference::{Algorithm, Digest, HashingReader};

use crate::compression::BUFFER_SIZE;
use crate::error::ArchiveError;
use crate::tar_writer::TarWriter;
use crate::{docker_archive, oci_layout};

/// Which archive to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveFormat {
    /// docker-archive, legacy layout (`docker save` before Docker 25).
    #[default]
    Docker,
    /// OCI image layout, plus the manifest.json Docker 25+ adds.
    Oci,
}

/// Writes `images` as one archive to `out`, streaming: memory use does not
/// depend on layer sizes. Each image's config is written byte for byte (so
/// it keeps its ID) and, in an OCI layout, its kept OCI manifest too (so it
/// keeps its digest); tags may be empty (the archive then names the image
/// by ID only). Every layer needs its tar length (`uncompressed_size`). Images given twice (by ID) are written once with
/// the union of their tags; layers shared between images are written once.
///
/// Contract: blobs come from `source`, which promises their content
/// matches their digest (see [`BlobSource`]); uncompressed blobs are copied
/// without rehashing (by the kernel when both ends are files). A layer that
/// must be decompressed (docker-archive holds uncompressed layers) is
/// hashed on the way and must match its diff ID and size, or the save
/// fails. On error `out` holds a partial archive: the caller discards it
/// (write to a temp file and rename on success).
pub fn save<W: Write>(
    images: &[Image],
    source: &dyn BlobSource,
    format: SaveFormat,
    out: W,
) -> Result<W, ArchiveError> {
    let images = merge(images);
    let mut tar = TarWriter::new(out);
    match format {
        SaveFormat::Docker => docker_archive::write(&images, source, &mut tar)?,
        SaveFormat::Oci => oci_layout::write(&images, source, &mut tar)?,
    }
    Ok(tar.finish()?)
}

/// One entry per image ID, tags merged, first occurrence's position kept.
pub(crate) fn merge(images: &[Image]) -> Vec<Image> {
    let mut out: Vec<(Digest, Image)> = Vec::new();
    for image in images {
        let id = image.id();
        match out.iter_mut().find(|(existing, _)| *existing == id) {
            Some((_, merged)) => {
                for tag in &image.tags {
                    if !merged.tags.contains(tag) {
                        merged.tags.push(tag.clone());
                    }
                }
            }
            None => out.push((id, image.clone())),
        }
    }
    out.into_iter().map(|(_, image)| image).collect()
}

fn compression_of(blob: &Descriptor) -> Option<media_type::LayerCompression> {
    media_type::layer_compression(&blob.media_type)
}

/// The blob to copy as is: an uncompressed one if stored, else the first.
pub(crate) fn preferred_blob(layer: &Layer) -> Result<&Descriptor, ArchiveError> {
    layer
        .blobs
        .iter()
        .find(|b| compression_of(b) == Some(media_type::LayerCompression::None))
        .or_else(|| layer.blobs.iter().find(|b| compression_of(b).is_some()))
        .ok_or_else(|| ArchiveError::NoBlob(layer.diff_id.clone()))
}

/// Writes `blob` (which carries `diff_id`, for messages) as member `path`,
/// byte for byte.
pub(crate) fn copy_blob<W: Write>(
    tar: &mut TarWriter<W>,
    source: &dyn BlobSource,
    path: &str,
    blob: &Descriptor,
    diff_id: &Digest,
) -> Result<(), ArchiveError> {
    let unreadable = |cause| ArchiveError::UnreadableBlob {
        diff_id: diff_id.clone(),
        digest: blob.digest.clone(),
        cause,
    };
    match source.open_blob_file(&blob.digest).map_err(unreadable)? {
        Some(file) => tar.file(path, blob.size, file)?,
        None => {
            let mut reader = source.open_blob(&blob.digest).map_err(unreadable)?;
            tar.reader(path, blob.size, &mut *reader)?
        }
    }
    Ok(())
}

/// Writes `layer` uncompressed as member `path`: its uncompressed blob
/// copied, or a compressed one decompressed and checked against the diff ID.
pub(crate) fn write_uncompressed_layer<W: Write>(
    tar: &mut TarWriter<W>,
    source: &dyn BlobSource,
    path: &str,
    layer: &Layer,
) -> Result<(), ArchiveError> {
    let blob = preferred_blob(layer)?;
    let size = layer.uncompressed_size.ok_or_else(|| ArchiveError::CorruptLayer {
        diff_id: layer.diff_id.clone(),
        message: "its diff ID is not proven yet".to_owned(),
    })?;
    let compression = compression_of(blob);
    if compression == Some(media_type::LayerCompression::None) {
        return copy_blob(tar, source, path, blob, &layer.diff_id);
    }
    let opened = source.open_blob(&blob.digest).map_err(|cause| ArchiveError::UnreadableBlob {
        diff_id: layer.diff_id.clone(),
        digest: blob.digest.clone(),
        cause,
    })?;
    let compressed = io::BufReader::with_capacity(BUFFER_SIZE, opened);
    let decoded = berth_layer::decompress(compressed, &blob.media_type)?;
    let mut hashing = HashingReader::new(decoded, Algorithm::Sha256);
    let corrupt =
        |message: String| ArchiveError::CorruptLayer { diff_id: layer.diff_id.clone(), message };
    tar.reader(path, size, &mut hashing)
        .map_err(|e| corrupt(format!("decompressing {}: {e}", blob.digest)))?;
    let (digest, _) = hashing.finish();
    if digest != layer.diff_id {
        return Err(corrupt(format!("blob {} decompresses to {digest}", blob.digest)));
    }
    Ok(())
}
