//! `berth import`: a root filesystem tarball becomes a one-layer image, as
//! `docker import` makes it.

use std::io::Read;
use std::time::SystemTime;

use berth_oci::{
    BlobSink, ContainerConfig, Descriptor, History, Image, ImageConfig, Layer, Platform, RootFs,
    media_type,
};

use crate::changes::apply_changes;
use crate::compression::{Compression, decompress};
use crate::error::ArchiveError;
use berth_layer::TarCheck;

/// How to describe the imported image.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Dockerfile instructions to apply to the config (`-c`).
    pub changes: Vec<String>,
    /// The history comment (`-m`); by default `Imported from <source>`.
    pub message: Option<String>,
    /// What the tarball was (a path, or `-` for stdin), for the default message.
    pub source: String,
    /// The platform the config names (the host's, as docker does).
    pub platform: Platform,
    /// The image's creation time.
    pub created: SystemTime,
}

/// Stores the tarball `reader` yields (plain or gzip/bzip2/xz/zstd
/// compressed) as one uncompressed layer and builds the image's config.
///
/// Contract: the layer goes through `sink` (which computes its digest: for
/// an uncompressed layer that is the diff ID) while its tar structure is
/// checked; a stream that is not a tar or is cut short fails before any
/// image exists. Changes are validated before any byte is read. The
/// returned image has no tags (the caller adds them) and is committed by
/// the caller.
pub fn import<R: Read + Send + 'static>(
    reader: R,
    sink: &dyn BlobSink,
    options: &ImportOptions,
) -> Result<Image, ArchiveError> {
    let mut container_config = ContainerConfig::default();
    apply_changes(&mut container_config, &options.changes)?;

    let (compression, reader) = decompress(reader)?;
    let mut checked = TarCheck::new(reader);
    let (diff_id, size) = sink.write_blob(&mut checked).map_err(|e| match compression {
        Compression::None => ArchiveError::InvalidRootfs(e.to_string()),
        c => ArchiveError::InvalidRootfs(format!("{} stream: {e}", c.name())),
    })?;
    checked.finish().map_err(|e| ArchiveError::InvalidRootfs(e.to_string()))?;

    let created = rfc3339(options.created);
    let comment = options
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("Imported from {}", options.source));
    let mut config = ImageConfig {
        created: Some(created.clone()),
        architecture: options.platform.architecture.clone(),
        os: options.platform.os.clone(),
        variant: options.platform.variant.clone(),
        config: Some(container_config),
        rootfs: RootFs { kind: "layers".to_owned(), diff_ids: vec![diff_id.clone()] },
        history: vec![History {
            created: Some(created),
            comment: Some(comment.clone()),
            ..History::default()
        }],
        ..ImageConfig::default()
    };
    config.extra.insert("comment".to_owned(), serde_json::Value::String(comment));
    let config = serde_json::to_vec(&config).expect("serialisable");
    Ok(Image {
        manifest: None,
        config,
        layers: vec![Layer {
            blobs: vec![Descriptor::new(media_type::OCI_LAYER, diff_id.clone(), size)],
            diff_id,
            uncompressed_size: Some(size),
        }],
        tags: Vec::new(),
    })
}

/// `2006-01-02T15:04:05.999999999Z`, as docker writes `created`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    berth_oci::time::rfc3339_nano(since.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::new(951_782_400, 500_000_000);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.5Z");
    }
}
