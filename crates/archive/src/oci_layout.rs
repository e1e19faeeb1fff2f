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
use std::io::{self, Write};
use std::path::Path;

use berth_oci::{
    BlobSink, BlobSource, Descriptor, Image, ImageIndex, ImageManifest, Manifest, Platform,
    RawManifest, media_type,
};
use berth_reference::{Digest, Reference};

use crate::archive_path::blob_path;
use crate::error::ArchiveError;
use crate::load::{layer, parse_config, push_tag};
use crate::save::{copy_blob, preferred_blob};
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
pub(crate) fn resolve(scan: &Scan, sink: &dyn BlobSink) -> Result<Vec<Image>, ArchiveError> {
    check_layout_file(scan)?;
    let bytes = scan.document(INDEX, "the archive")?;
    let index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::json(INDEX, e))?;
    let mut images: Vec<Image> = Vec::new();
    let mut ids: Vec<Digest> = Vec::new();
    for descriptor in &index.manifests {
        let tag = tag_of(descriptor)?;
        let Some(image) = image_for(scan, sink, descriptor, INDEX, 0)? else {
            continue;
        };
        let id = image.id();
        let image = match ids.iter().position(|i| *i == id) {
            Some(at) => &mut images[at],
            None => {
                images.push(image);
                ids.push(id);
                images.last_mut().expect("just pushed")
            }
        };
        if let Some(tag) = tag {
            push_tag(&mut image.tags, tag);
        }
    }
    Ok(images)
}

/// Gives each image the manifest `index.json` names for its config, if any
/// (top-level image manifests only; the writer of a docker-archive with a
/// layout beside it is docker, which writes no nested indexes there).
pub(crate) fn attach_manifests(scan: &Scan, images: &mut [Image]) -> Result<(), ArchiveError> {
    let bytes = scan.document(INDEX, "the archive")?;
    let index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::json(INDEX, e))?;
    for descriptor in &index.manifests {
        if !media_type::is_image_manifest(&descriptor.media_type) {
            continue;
        }
        let path = blob_path(&descriptor.digest);
        let bytes = scan.document(&path, INDEX)?;
        check_size(&path, descriptor.size, bytes.len() as u64)?;
        let manifest = RawManifest {
            media_type: descriptor.media_type.clone(),
            bytes: bytes.to_vec(),
            digest: descriptor.digest.clone(),
        };
        let Ok(Manifest::Image(m)) = manifest.parse() else { continue };
        for image in images.iter_mut().filter(|i| i.manifest.is_none()) {
            if m.config.digest == image.id() {
                image.manifest = Some(manifest.clone());
            }
        }
    }
    Ok(())
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
) -> Result<Option<Image>, ArchiveError> {
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
        check_size(&layer_path, desc.size, loaded.blobs[0].size)?;
        layers.push(loaded);
    }
    // The bytes were checked against the digest they are stored under,
    // which is the descriptor's: kept as they are.
    let manifest = RawManifest {
        media_type: descriptor.media_type.clone(),
        bytes: bytes.to_vec(),
        digest: descriptor.digest.clone(),
    };
    Ok(Some(Image {
        manifest: Some(manifest),
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

/// What an OCI layout holds for one image: the stored layer blobs to copy
/// (each with the diff ID it carries) and the manifest naming them.
struct Planned<'a> {
    layers: Vec<(&'a Descriptor, &'a Digest)>,
    manifest: RawManifest,
}

/// The image's kept manifest when it is an OCI manifest that still names
/// held blobs (written unchanged, so the layout has the image's digest);
/// else a new OCI manifest over the preferred blobs (a Docker manifest is
/// converted, as skopeo converts it for an OCI layout).
fn plan(image: &Image) -> Result<Planned<'_>, ArchiveError> {
    let kept = image.kept_manifest().filter(|m| m.media_type == media_type::OCI_MANIFEST);
    if let Some(kept) = kept
        && let Ok(Manifest::Image(m)) = kept.parse()
    {
        let mut layers = Vec::with_capacity(image.layers.len());
        for (named, layer) in m.layers.iter().zip(&image.layers) {
            let blob = layer
                .blobs
                .iter()
                .find(|b| b.digest == named.digest)
                .ok_or_else(|| ArchiveError::NoBlob(layer.diff_id.clone()))?;
            layers.push((blob, &layer.diff_id));
        }
        return Ok(Planned { layers, manifest: kept.clone() });
    }
    let mut layers = Vec::with_capacity(image.layers.len());
    let mut descriptors = Vec::with_capacity(image.layers.len());
    for layer in &image.layers {
        let blob = preferred_blob(layer)?;
        descriptors.push(Descriptor::new(
            oci_layer_type(&blob.media_type),
            blob.digest.clone(),
            blob.size,
        ));
        layers.push((blob, &layer.diff_id));
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: Descriptor::new(media_type::OCI_CONFIG, image.id(), image.config.len() as u64),
        layers: descriptors,
        subject: None,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest).expect("serialisable");
    Ok(Planned { layers, manifest: RawManifest::new(media_type::OCI_MANIFEST, bytes) })
}

/// The index entries for one image: one per tag, both annotations carrying
/// the full name (which podman, skopeo and Docker 25+ all read back as the
/// image's name), or one without annotations for an untagged image. With
/// `ref_name`, the entry's `org.opencontainers.image.ref.name` is exactly
/// that (skopeo's `oci:DIR:REF`).
fn index_entries(
    manifest: &RawManifest,
    tags: &[Reference],
    ref_name: Option<&str>,
) -> Vec<Descriptor> {
    let descriptor = manifest.descriptor();
    let named = |tag: Option<&Reference>| {
        let mut d = descriptor.clone();
        let mut annotations = std::collections::BTreeMap::new();
        if let Some(tag) = tag {
            annotations.insert(REF_NAME.to_owned(), tag.full());
            annotations.insert(CONTAINERD_NAME.to_owned(), tag.full());
        }
        if let Some(name) = ref_name {
            annotations.insert(REF_NAME.to_owned(), name.to_owned());
        }
        d.annotations = (!annotations.is_empty()).then_some(annotations);
        d
    };
    match (tags, ref_name) {
        ([], _) => vec![named(None)],
        ([first, ..], Some(_)) => vec![named(Some(first))],
        (tags, None) => tags.iter().map(|t| named(Some(t))).collect(),
    }
}

fn new_index(manifests: Vec<Descriptor>) -> ImageIndex {
    ImageIndex {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_owned()),
        artifact_type: None,
        manifests,
        subject: None,
        annotations: None,
    }
}

/// Writes `images` as an OCI image layout: `oci-layout`, every blob once
/// under `blobs/sha256/`, `index.json` (see [`index_entries`]), and the
/// `manifest.json` Docker 25+ writes beside it so that `docker load` of any
/// version reads the archive too. Layers are copied as stored (compressed or
/// not); configs and kept OCI manifests byte for byte (see [`plan`]).
pub(crate) fn write<W: Write>(
    images: &[Image],
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
        let planned = plan(image)?;
        for (blob, diff_id) in &planned.layers {
            if written.insert(blob.digest.clone()) {
                copy_blob(tar, source, &blob_path(&blob.digest), blob, diff_id)?;
            }
        }
        let config = put(tar, &mut written, &image.config)?;
        put(tar, &mut written, &planned.manifest.bytes)?;
        index.extend(index_entries(&planned.manifest, &image.tags, None));
        docker_manifest.push(crate::docker_archive::ManifestEntry {
            config: blob_path(&config),
            repo_tags: (!image.tags.is_empty())
                .then(|| image.tags.iter().map(|t| t.familiar()).collect()),
            layers: planned.layers.iter().map(|(b, _)| blob_path(&b.digest)).collect(),
            parent: None,
            layer_sources: None,
        });
    }
    tar.bytes(INDEX, &serde_json::to_vec(&new_index(index)).expect("serialisable"))?;
    tar.bytes(
        crate::docker_archive::MANIFEST,
        &serde_json::to_vec(&docker_manifest).expect("serialisable"),
    )?;
    Ok(())
}

/// Writes `images` into the OCI image layout directory `dir` (`oci:DIR`),
/// creating it, or adding to the layout already there: blobs it lacks are
/// written (each to a temporary file, then renamed, so none is ever seen
/// partial), and `index.json` is replaced atomically, an existing entry
/// with the same `org.opencontainers.image.ref.name` giving way to the new
/// one. With `ref_name`, each image gets one entry under exactly that name.
/// A directory that exists, is not empty and is not a layout is refused.
pub fn write_oci_dir(
    images: &[Image],
    source: &dyn BlobSource,
    dir: &Path,
    ref_name: Option<&str>,
) -> Result<(), ArchiveError> {
    let images = crate::save::merge(images);
    let existing = read_dir_index(dir)?;
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)?;
    let layout = dir.join(LAYOUT);
    if !layout.exists() {
        let text = format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#);
        write_file_atomically(&layout, &mut text.as_bytes())?;
    }
    let mut entries = Vec::new();
    for image in &images {
        let planned = plan(image)?;
        for (blob, diff_id) in &planned.layers {
            let path = blobs.join(blob.digest.hex());
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == blob.size) {
                continue;
            }
            let unreadable = |cause| ArchiveError::UnreadableBlob {
                diff_id: (*diff_id).clone(),
                digest: blob.digest.clone(),
                cause,
            };
            match source.open_blob_file(&blob.digest).map_err(unreadable)? {
                Some(mut file) => write_file_atomically(&path, &mut file)?,
                None => {
                    let mut reader = source.open_blob(&blob.digest).map_err(unreadable)?;
                    write_file_atomically(&path, &mut reader)?
                }
            }
        }
        for document in [&image.config, &planned.manifest.bytes] {
            let path = blobs.join(Digest::sha256_of(document).hex());
            if !path.exists() {
                write_file_atomically(&path, &mut &document[..])?;
            }
        }
        entries.extend(index_entries(&planned.manifest, &image.tags, ref_name));
    }
    let ref_of = |d: &Descriptor| d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).cloned();
    let mut manifests: Vec<Descriptor> = existing
        .map(|i| i.manifests)
        .unwrap_or_default()
        .into_iter()
        .filter(|old| {
            !entries.iter().any(|new| match ref_of(new) {
                Some(name) => ref_of(old).as_ref() == Some(&name),
                None => ref_of(old).is_none() && old.digest == new.digest,
            })
        })
        .collect();
    manifests.extend(entries);
    let index = serde_json::to_vec(&new_index(manifests)).expect("serialisable");
    write_file_atomically(&dir.join(INDEX), &mut &index[..])?;
    Ok(())
}

/// The index of the layout at `dir`: `None` if `dir` is absent or empty;
/// an error if it holds something that is not an OCI image layout.
fn read_dir_index(dir: &Path) -> Result<Option<ImageIndex>, ArchiveError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(None);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let layout = std::fs::read(dir.join(LAYOUT))
        .map_err(|_| ArchiveError::NotALayout(dir.display().to_string()))?;
    let version: serde_json::Value =
        serde_json::from_slice(&layout).map_err(|e| ArchiveError::json(LAYOUT, e))?;
    if !version["imageLayoutVersion"].as_str().is_some_and(|v| v.starts_with("1.")) {
        return Err(ArchiveError::Unsupported(format!(
            "{}: OCI image layout version {}",
            dir.display(),
            version["imageLayoutVersion"]
        )));
    }
    match std::fs::read(dir.join(INDEX)) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).map_err(|e| ArchiveError::json(INDEX, e))?))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `path` from `reader` through a temporary file beside it, synced
/// and renamed: a reader of the layout never sees the file partial.
fn write_file_atomically(path: &Path, reader: &mut dyn io::Read) -> Result<(), ArchiveError> {
    let parent = path.parent().expect("a file inside the layout");
    let mut temp = tempfile::Builder::new().prefix(".berth-").tempfile_in(parent)?;
    io::copy(reader, temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| ArchiveError::Io(e.error))?;
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
