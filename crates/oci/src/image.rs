//! The one description of an image that every place holding images reads
//! and writes: the registry client, the archive formats, the local store
//! and the copy engine between them.
//!
//! An image is its config (exact bytes: their digest is the image ID), its
//! layers bottom first, and, when it arrived with one, the manifest exactly
//! as received. Keeping those bytes is what lets a push or a copy publish
//! the same manifest digest the image had at its source: a digest is what
//! deployments pin and signatures point at, and re-serialising the JSON
//! would change it.

use berth_reference::{Digest, Reference};

use crate::manifest::{Descriptor, Manifest, ManifestError};

/// A manifest or index exactly as received, with its media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// The digest of `bytes` (sha256 unless the source named another algorithm).
    pub digest: Digest,
}

impl RawManifest {
    /// Wraps bytes received without a digest to check: the digest is their sha256.
    pub fn new(media_type: impl Into<String>, bytes: Vec<u8>) -> RawManifest {
        let digest = Digest::sha256_of(&bytes);
        RawManifest { media_type: media_type.into(), bytes, digest }
    }

    pub fn parse(&self) -> Result<Manifest, ManifestError> {
        Manifest::parse(&self.bytes, Some(&self.media_type))
    }

    /// The descriptor that points at this document (as an index entry or a
    /// referrer's subject would).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, self.digest.clone(), self.bytes.len() as u64)
    }
}

/// One image, wherever it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image manifest this image arrived with, byte for byte; `None`
    /// for an image that never had one (imported, loaded from a docker
    /// archive) or whose manifest was not kept.
    pub manifest: Option<RawManifest>,
    /// The config JSON exactly as received.
    pub config: Vec<u8>,
    /// Bottom first, one per `rootfs.diff_ids` entry.
    pub layers: Vec<Layer>,
    /// Names (tags) the image goes by at its source, or is to be given.
    pub tags: Vec<Reference>,
}

/// One layer of an [`Image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The blobs that carry it where the image is held (uncompressed and/or
    /// compressed; the media type tells which), the preferred one first.
    pub blobs: Vec<Descriptor>,
    /// The uncompressed tar's length, once the diff ID has been proven.
    pub uncompressed_size: Option<u64>,
}

impl Image {
    /// The image ID: the sha256 of the config bytes.
    pub fn id(&self) -> Digest {
        Digest::sha256_of(&self.config)
    }

    /// The kept manifest, if it still describes this image as held: it
    /// names this config, and each of its layers is a blob the holder has
    /// for the same layer. Only then can a writer send it unchanged.
    pub fn kept_manifest(&self) -> Option<&RawManifest> {
        let raw = self.manifest.as_ref()?;
        let Ok(Manifest::Image(m)) = raw.parse() else { return None };
        let config_matches = m.config.digest
            == Digest::of(m.config.digest.algorithm(), &self.config)
            && m.config.size == self.config.len() as u64;
        let layers_match = m.layers.len() == self.layers.len()
            && m.layers
                .iter()
                .zip(&self.layers)
                .all(|(d, l)| l.blobs.iter().any(|b| b.digest == d.digest && b.size == d.size));
        (config_matches && layers_match).then_some(raw)
    }

    /// For each layer, the blob the kept manifest names (when there is one),
    /// else the preferred blob.
    pub fn primary_blobs(&self) -> Vec<Descriptor> {
        let named: Option<Vec<Descriptor>> =
            self.kept_manifest().and_then(|raw| match raw.parse() {
                Ok(Manifest::Image(m)) => Some(m.layers),
                _ => None,
            });
        match named {
            Some(layers) => layers,
            None => self.layers.iter().filter_map(|l| l.blobs.first().cloned()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type;

    fn image_with(manifest_layers: &[(&Digest, u64)], held: &[Descriptor]) -> Image {
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let layers: Vec<String> = manifest_layers
            .iter()
            .map(|(d, s)| {
                format!(
                    r#"{{"mediaType":"{}","digest":"{d}","size":{s}}}"#,
                    media_type::OCI_LAYER_GZIP
                )
            })
            .collect();
        // Deliberately unusual spacing: only these exact bytes carry the digest.
        let bytes = format!(
            "{{ \"schemaVersion\": 2, \"mediaType\": \"{}\",\n \"config\": {{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}}}, \"layers\": [{}] }}",
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            Digest::sha256_of(&config),
            config.len(),
            layers.join(",")
        );
        Image {
            manifest: Some(RawManifest::new(media_type::OCI_MANIFEST, bytes.into_bytes())),
            config,
            layers: held
                .iter()
                .map(|b| Layer {
                    diff_id: Digest::sha256_of(b.digest.as_str().as_bytes()),
                    blobs: vec![b.clone()],
                    uncompressed_size: None,
                })
                .collect(),
            tags: Vec::new(),
        }
    }

    #[test]
    fn a_manifest_is_kept_only_while_its_blobs_are_held() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let held = |d: &Digest| Descriptor::new(media_type::OCI_LAYER_GZIP, d.clone(), 7);
        let image = image_with(&[(&a, 7)], &[held(&a)]);
        let kept = image.kept_manifest().expect("kept");
        assert_eq!(kept.digest, Digest::sha256_of(&kept.bytes));
        assert_eq!(image.primary_blobs(), vec![held(&a)]);

        // The holder has the layer only in another form (recompressed).
        let other = image_with(&[(&a, 7)], &[held(&b)]);
        assert!(other.kept_manifest().is_none());
        assert_eq!(other.primary_blobs(), vec![held(&b)]);

        // A config that is not the one the manifest names.
        let mut changed = image_with(&[(&a, 7)], &[held(&a)]);
        changed.config.push(b' ');
        assert!(changed.kept_manifest().is_none());

        // Another size under the same digest is not the same blob.
        let resized = image_with(&[(&a, 8)], &[held(&a)]);
        assert!(resized.kept_manifest().is_none());
    }
}
