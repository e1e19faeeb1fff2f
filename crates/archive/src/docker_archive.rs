//! The docker-archive format: a tar with `manifest.json` naming, per image,
//! a config file, its tags and its layer tarballs, by path inside the tar.
//!
//! ```text
//! manifest.json     [{"Config": "<id>.json", "RepoTags": ["busybox:musl"],
//!                     "Layers": ["<v1-id>/layer.tar", ...]}]
//! repositories      {"busybox": {"musl": "<top v1-id>"}}   (legacy, ignored on read)
//! <id>.json         the image config; sha256 of it is the image ID
//! <v1-id>/layer.tar an uncompressed layer (or a symlink to an identical one)
//! <v1-id>/VERSION, <v1-id>/json   legacy per-layer metadata (ignored on read)
//! ```
//!
//! `podman save` and `skopeo copy docker-archive:` write layers as
//! `<diff-id>.tar` at the top; Docker 25+ writes an OCI image layout and a
//! manifest.json whose paths are `blobs/sha256/<hex>`. All are the same
//! format to a reader that follows manifest.json's paths.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use berth_oci::{BlobSink, BlobSource, Descriptor, Image};
use berth_reference::{Digest, Reference};
use serde::{Deserialize, Serialize};

use crate::archive_path;
use crate::error::ArchiveError;
use crate::load::{layer, parse_config, push_tag};
use crate::save::write_uncompressed_layer;
use crate::scan::Scan;
use crate::tar_writer::TarWriter;

pub(crate) const MANIFEST: &str = "manifest.json";

/// One image of manifest.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ManifestEntry {
    pub config: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Foreign layers (Windows base images): the layer files are still in the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_sources: Option<BTreeMap<Digest, Descriptor>>,
}

/// Builds the images manifest.json describes.
pub(crate) fn resolve(scan: &Scan, sink: &dyn BlobSink) -> Result<Vec<Image>, ArchiveError> {
    let bytes = scan.document(MANIFEST, "the archive")?;
    let entries: Vec<ManifestEntry> =
        serde_json::from_slice(bytes).map_err(|e| ArchiveError::json(MANIFEST, e))?;
    let mut images: Vec<Image> = Vec::with_capacity(entries.len());
    let mut ids: Vec<Digest> = Vec::with_capacity(entries.len());
    for entry in &entries {
        let config_path = archive_path::member_path(entry.config.as_bytes())?;
        let config_bytes = scan.document(&config_path, MANIFEST)?;
        let config = parse_config(config_bytes, &config_path, entry.layers.len())?;
        let id = Digest::sha256_of(config_bytes);

        let mut tags = Vec::new();
        for name in entry.repo_tags.iter().flatten() {
            push_tag(&mut tags, parse_repo_tag(name)?);
        }
        if let Some(at) = ids.iter().position(|i| *i == id) {
            for tag in tags {
                push_tag(&mut images[at].tags, tag);
            }
            continue;
        }

        let mut layers = Vec::with_capacity(entry.layers.len());
        for (index, (path, expected)) in entry.layers.iter().zip(config.diff_ids()).enumerate() {
            let path = archive_path::member_path(path.as_bytes())?;
            layers.push(layer(scan, sink, &path, MANIFEST, index, expected, None)?);
        }
        // docker-archive holds no registry manifest: nothing to keep.
        images.push(Image { manifest: None, config: config_bytes.to_vec(), layers, tags });
        ids.push(id);
    }
    Ok(images)
}

/// A RepoTags entry must be a name with a tag (docker's rule).
fn parse_repo_tag(name: &str) -> Result<Reference, ArchiveError> {
    let invalid = |source| ArchiveError::InvalidReference {
        name: name.to_owned(),
        path: MANIFEST.to_owned(),
        source,
    };
    let reference = Reference::parse(name).map_err(invalid)?;
    if reference.tag().is_none() || reference.digest().is_some() {
        return Err(ArchiveError::Unsupported(format!(
            "{MANIFEST}: RepoTags entry {name:?} is not a NAME:TAG reference"
        )));
    }
    Ok(reference)
}

/// Writes `images` in the legacy layout `docker save` (20.10) writes, which
/// `docker load`, `podman load` and `skopeo` all read:
/// `<v1-id>/{VERSION,json,layer.tar}` per layer (a layer already written
/// under another ID becomes a symlink to it, as docker does),
/// `<config-hex>.json`, then `manifest.json` and `repositories`.
pub(crate) fn write<W: Write>(
    images: &[Image],
    source: &dyn BlobSource,
    tar: &mut TarWriter<W>,
) -> Result<(), ArchiveError> {
    let mut written_dirs: HashSet<String> = HashSet::new();
    let mut layer_files: HashMap<Digest, String> = HashMap::new();
    let mut manifest = Vec::with_capacity(images.len());
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        let mut paths = Vec::with_capacity(image.layers.len());
        let mut parent: Option<String> = None;
        for layer in &image.layers {
            let id = v1_id(parent.as_deref(), &layer.diff_id);
            let path = format!("{id}/layer.tar");
            if written_dirs.insert(id.clone()) {
                tar.dir(&id)?;
                tar.bytes(&format!("{id}/VERSION"), b"1.0")?;
                let json = match &parent {
                    Some(p) => format!(r#"{{"id":"{id}","parent":"{p}"}}"#),
                    None => format!(r#"{{"id":"{id}"}}"#),
                };
                tar.bytes(&format!("{id}/json"), json.as_bytes())?;
                match layer_files.get(&layer.diff_id) {
                    Some(first) => tar.symlink(&path, &format!("../{first}"))?,
                    None => {
                        write_uncompressed_layer(tar, source, &path, layer)?;
                        layer_files.insert(layer.diff_id.clone(), path.clone());
                    }
                }
            }
            paths.push(path);
            parent = Some(id);
        }
        let config_path = format!("{}.json", Digest::sha256_of(&image.config).hex());
        tar.bytes(&config_path, &image.config)?;
        for tag in &image.tags {
            let top = parent.clone().unwrap_or_default();
            repositories
                .entry(tag.repository().familiar_name())
                .or_default()
                .insert(tag.tag().unwrap_or(berth_reference::DEFAULT_TAG).to_owned(), top);
        }
        manifest.push(ManifestEntry {
            config: config_path,
            repo_tags: (!image.tags.is_empty())
                .then(|| image.tags.iter().map(|t| t.familiar()).collect()),
            layers: paths,
            parent: None,
            layer_sources: None,
        });
    }
    tar.bytes(MANIFEST, &serde_json::to_vec(&manifest).expect("serialisable"))?;
    tar.bytes("repositories", &serde_json::to_vec(&repositories).expect("serialisable"))?;
    Ok(())
}

/// A legacy (v1) layer ID: unique per layer stack, like docker's, so that
/// identical stacks share a directory.
fn v1_id(parent: Option<&str>, diff_id: &Digest) -> String {
    let input = match parent {
        Some(p) => format!("{p} {diff_id}"),
        None => diff_id.to_string(),
    };
    Digest::sha256_of(input.as_bytes()).hex().to_owned()
}
