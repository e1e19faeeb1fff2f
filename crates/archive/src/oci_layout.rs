//! The OCI image layout (image-spec `image-layout.md`), as a tar
//! (`oci-archive`): content-addressed blobs and an index naming the images.
//!
//! ```text
//! oci-layout            {"imageLayoutVersion": "1.0.0"}
//! index.json            an image index; each manifest descriptor may carry
//!                       org.opencontainers.image.ref.name (a tag, or a full
//!                       name as podman and skopeo write it) and
//!                       io.containerd.image.name (a full name, Docker 25+)
//! blobs/sha256/<hex>    manifests, configs and layers
//! ```

use std::collections::HashSet;
use std::io::Write;

use berth_oci::{
    BlobSink, BlobSource, Descriptor, ImageIndex, ImageManifest, Platform, media_type,
};
use berth_reference::{Digest, Reference};

use crate::archive_path::blob_path;
use crate::error::ArchiveError;
use crate::load::{LoadedImage, layer, parse_config, push_tag};
use crate::save::{SaveImage, copy_blob, preferred_blob};
use crate::scan::Scan;
use crate::tar_writer::TarWriter;

pub(crate) const INDEX: &str = "index.json";
pub(crate) const LAYOUT: &str = "oci-layout";
pub(crate) const LAYOUT_VERSION: &str = "1.0.0";

/// The annotation OCI layouts name images with.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation Docker 25+ and containerd put the full image name in.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Builds the images index.json names, each verified against its descriptors.
pub(crate) fn resolve(scan: &Scan, sink: &dyn BlobSink) -> Result<Vec<LoadedImage>, ArchiveError> {
    check_layout_file(scan)?;
    let bytes = scan.document(INDEX, "the archive")?;
    let index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::json(INDEX, e))?;
    let mut images: Vec<LoadedImage> = Vec::new();
    for descriptor in &index.manifests {
        let tag = tag_of(descriptor)?;
        let Some(image) = image_for(scan, sink, descriptor, INDEX, 0)? else {
            continue;
        };
        let image = match images.iter_mut().find(|i| i.id == image.id) {
            Some(existing) => existing,
            None => {
                images.push(image);
                images.last_mut().expect("just pushed")
            }
        };
        if let Some(tag) = tag {
            push_tag(&mut image.tags, tag);
        }
    }
    Ok(images)
}

fn check_layout_file(scan: &Scan) -> Result<(), ArchiveError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layout {
        image_layout_version: String,
    }
    let bytes = scan.document(LAYOUT, "an OCI image layout")?;
    let layout: Layout =
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::json(LAYOUT, e))?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(ArchiveError::Unsupported(format!(
            "OCI image layout version {:?}",
            layout.image_layout_version
        )));
    }
    Ok(())
}

/// The tag an index entry gives its image. `io.containerd.image.name` is a
/// full name; `org.opencontainers.image.ref.name` is either a full name
/// (podman, skopeo) or only a tag (Docker 25+, which then also sets the
/// containerd name). A bare tag names no repository, so it tags nothing.
fn tag_of(descriptor: &Descriptor) -> Result<Option<Reference>, ArchiveError> {
    let annotations = descriptor.annotations.as_ref();
    let get = |key: &str| annotations.and_then(|a| a.get(key)).filter(|v| !v.is_empty());
    let name = match (get(CONTAINERD_NAME), get(REF_NAME)) {
        (Some(full), _) => full,
        (None, Some(name)) if name.contains([':', '/']) => name,
        _ => return Ok(None),
    };
    let reference = Reference::parse(name).map_err(|source| ArchiveError::InvalidReference {
        name: name.clone(),
        path: INDEX.to_owned(),
        source,
    })?;
    if reference.digest().is_some() {
        return Ok(None);
    }
    Ok(Some(reference.with_default_tag()))
}

/// The image a descriptor leads to: an image manifest, or the host
/// platform's manifest in a nested index. `None` for artifacts that are
/// not images.
fn image_for(
    scan: &Scan,
    sink: &dyn BlobSink,
    descriptor: &Descriptor,
    referrer: &str,
    depth: usize,
) -> Result<Option<LoadedImage>, ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::Unsupported("indexes nested too deeply".to_owned()));
    }
    let path = blob_path(&descriptor.digest);
    let bytes = scan.document(&path, referrer)?;
    check_size(&path, descriptor.size, bytes.len() as u64)?;
    if media_type::is_index(&descriptor.media_type) {
        let index: ImageIndex =
            serde_json::from_slice(bytes).map_err(|e| ArchiveError::json(&path, e))?;
        let host = Platform::host();
        let child = index.find_platform(&host).ok_or_else(|| {
            ArchiveError::Unsupported(format!("{path}: no image for platform {host}"))
        })?;
        return image_for(scan, sink, child, &path, depth + 1);
    }
    if !media_type::is_image_manifest(&descriptor.media_type) {
        return Ok(None);
    }
    let manifest: ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::json(&path, e))?;
    let config_type = manifest.config.media_type.as_str();
    if config_type != media_type::OCI_CONFIG && config_type != media_type::DOCKER_CONFIG {
        return Ok(None);
    }
    let config_path = blob_path(&manifest.config.digest);
    let config_bytes = scan.document(&config_path, &path)?;
    check_size(&config_path, manifest.config.size, config_bytes.len() as u64)?;
    let config = parse_config(config_bytes, &config_path, manifest.layers.len())?;

    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (index, (desc, expected)) in manifest.layers.iter().zip(config.diff_ids()).enumerate() {
        let layer_path = blob_path(&desc.digest);
        let loaded =
            layer(scan, sink, &layer_path, &path, index, expected, Some(&desc.media_type))?;
        check_size(&layer_path, desc.size, loaded.blob.size)?;
        layers.push(loaded);
    }
    Ok(Some(LoadedImage {
        id: Digest::sha256_of(config_bytes),
        config: config_bytes.to_vec(),
        layers,
        tags: Vec::new(),
    }))
}

fn check_size(path: &str, expected: u64, actual: u64) -> Result<(), ArchiveError> {
    if expected != actual {
        return Err(ArchiveError::SizeMismatch { what: path.to_owned(), expected, actual });
    }
    Ok(())
}

/// Writes `images` as an OCI image layout: `oci-layout`, every blob once
/// under `blobs/sha256/`, `index.json` with one entry per tag (both
/// annotations carry the full name, which podman, skopeo and Docker 25+
/// all read back as the image's name; an untagged image gets an entry
/// without annotations), and the `manifest.json` Docker 25+ writes beside
/// it so that `docker load` of any version reads the archive too. Layers
/// are copied as stored (compressed or not); configs byte for byte.
pub(crate) fn write<W: Write>(
    images: &[SaveImage],
    source: &dyn BlobSource,
    tar: &mut TarWriter<W>,
) -> Result<(), ArchiveError> {
    tar.bytes(LAYOUT, format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#).as_bytes())?;
    tar.dir("blobs")?;
    tar.dir("blobs/sha256")?;
    let mut written: HashSet<Digest> = HashSet::new();
    let mut index = Vec::new();
    let mut docker_manifest = Vec::new();
    for image in images {
        let mut layers = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            let blob = preferred_blob(layer)?;
            let media_type = oci_layer_type(&blob.media_type);
            if written.insert(blob.digest.clone()) {
                copy_blob(tar, source, &blob_path(&blob.digest), blob, &layer.diff_id)?;
            }
            layers.push(Descriptor::new(media_type, blob.digest.clone(), blob.size));
        }
        let config = put(tar, &mut written, &image.config)?;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config: Descriptor::new(
                media_type::OCI_CONFIG,
                config.clone(),
                image.config.len() as u64,
            ),
            layers,
            subject: None,
            annotations: None,
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("serialisable");
        let manifest_digest = put(tar, &mut written, &manifest_bytes)?;
        let descriptor =
            Descriptor::new(media_type::OCI_MANIFEST, manifest_digest, manifest_bytes.len() as u64);
        if image.tags.is_empty() {
            index.push(descriptor.clone());
        }
        for tag in &image.tags {
            let mut named = descriptor.clone();
            named.annotations = Some(
                [(REF_NAME.to_owned(), tag.full()), (CONTAINERD_NAME.to_owned(), tag.full())]
                    .into(),
            );
            index.push(named);
        }
        docker_manifest.push(crate::docker_archive::ManifestEntry {
            config: blob_path(&config),
            repo_tags: (!image.tags.is_empty())
                .then(|| image.tags.iter().map(|t| t.familiar()).collect()),
            layers: manifest.layers.iter().map(|l| blob_path(&l.digest)).collect(),
            parent: None,
            layer_sources: None,
        });
    }
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_owned()),
        artifact_type: None,
        manifests: index,
        subject: None,
        annotations: None,
    };
    tar.bytes(INDEX, &serde_json::to_vec(&index).expect("serialisable"))?;
    tar.bytes(
        crate::docker_archive::MANIFEST,
        &serde_json::to_vec(&docker_manifest).expect("serialisable"),
    )?;
    Ok(())
}

/// Writes a small document as a blob (once) and returns its digest.
fn put<W: Write>(
    tar: &mut TarWriter<W>,
    written: &mut HashSet<Digest>,
    bytes: &[u8],
) -> Result<Digest, ArchiveError> {
    let digest = Digest::sha256_of(bytes);
    if written.insert(digest.clone()) {
        tar.bytes(&blob_path(&digest), bytes)?;
    }
    Ok(digest)
}

/// The OCI media type for a stored layer blob's (possibly Docker) type.
fn oci_layer_type(stored: &str) -> &'static str {
    match media_type::layer_compression(stored) {
        Some(media_type::LayerCompression::Gzip) => media_type::OCI_LAYER_GZIP,
        Some(media_type::LayerCompression::Zstd) => media_type::OCI_LAYER_ZSTD,
        _ => media_type::OCI_LAYER,
    }
}
