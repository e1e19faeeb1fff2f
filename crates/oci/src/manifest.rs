//! Descriptors, image manifests and indexes (OCI image spec v1.1 and Docker
//! schema 2, which share one JSON shape and differ only in media types).
//!
//! These types are for reading and building documents. A manifest's digest is
//! always computed over the bytes as received or written, never over a
//! re-serialisation of these structs.

use std::collections::BTreeMap;

use berth_reference::Digest;
use serde::{Deserialize, Serialize};

use crate::media_type;

/// A reference to content: its media type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Embedded content, base64 encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            data: None,
        }
    }
}

/// The platform an image runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`, as `--platform` takes it.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let architecture = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            os_version: None,
            os_features: None,
            variant,
        })
    }

    /// The platform this process runs on, in OCI's names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let variant = (architecture == "arm64").then(|| "v8".to_owned());
        Platform {
            architecture: architecture.to_owned(),
            os: std::env::consts::OS.to_owned(),
            os_version: None,
            os_features: None,
            variant,
        }
    }

    /// Whether an image for `self` satisfies a request for `wanted`: same OS and
    /// architecture, and the same variant when `wanted` names one (arm64's `v8`
    /// is its only variant, so a missing one matches it).
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        if self.os != wanted.os || self.architecture != wanted.architecture {
            return false;
        }
        match (&wanted.variant, &self.variant) {
            (None, _) => true,
            (Some(w), Some(v)) => w == v,
            (Some(w), None) => self.architecture == "arm64" && w == "v8",
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest: one config and its layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An index (OCI) or manifest list (Docker): manifests per platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ImageIndex {
    /// The first manifest for `platform`, as docker picks it.
    pub fn find_platform(&self, platform: &Platform) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.satisfies(platform)))
    }
}

/// Either kind of manifest document, told apart by media type.
// Both variants are large and a manifest is parsed once per use, so boxing
// would only add an indirection to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// Why bytes are not a manifest berth understands.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported manifest schema version {0}")]
    SchemaVersion(u32),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("manifest media type {declared:?} does not match its content")]
    MediaTypeMismatch { declared: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses a manifest. `content_type` is the media type the transport
    /// declared (an HTTP `Content-Type`, a descriptor's `mediaType`), if any;
    /// the document's own `mediaType`, when present, must agree with it.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let probe: Probe = serde_json::from_slice(bytes)?;
        match probe.schema_version {
            Some(2) => {}
            Some(v) => return Err(ManifestError::SchemaVersion(v)),
            None => return Err(ManifestError::SchemaVersion(0)),
        }
        let declared = content_type.filter(|c| {
            // A generic transport type says nothing about the document.
            !c.is_empty() && *c != "application/json" && *c != "application/octet-stream"
        });
        let media_type = match (&probe.media_type, declared) {
            (Some(inner), Some(outer)) if inner != outer => {
                return Err(ManifestError::MediaTypeMismatch { declared: outer.to_owned() });
            }
            (Some(inner), _) => inner.clone(),
            (None, Some(outer)) => outer.to_owned(),
            // OCI allows an absent mediaType: the shape decides.
            (None, None) if probe.manifests.is_some() => media_type::OCI_INDEX.to_owned(),
            (None, None) => media_type::OCI_MANIFEST.to_owned(),
        };
        if media_type::is_index(&media_type) {
            if probe.config.is_some() || probe.manifests.is_none() {
                return Err(ManifestError::MediaTypeMismatch { declared: media_type });
            }
            Ok(Manifest::Index(serde_json::from_slice(bytes)?))
        } else if media_type::is_image_manifest(&media_type) {
            if probe.manifests.is_some() || probe.config.is_none() {
                return Err(ManifestError::MediaTypeMismatch { declared: media_type });
            }
            Ok(Manifest::Image(serde_json::from_slice(bytes)?))
        } else {
            Err(ManifestError::MediaType(media_type))
        }
    }

    /// The media type of the document (defaulted for OCI documents without one).
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image(m) => m.media_type.as_deref().unwrap_or(media_type::OCI_MANIFEST),
            Manifest::Index(i) => i.media_type.as_deref().unwrap_or(media_type::OCI_INDEX),
        }
    }

    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Manifest::Image(m) => m.subject.as_ref(),
            Manifest::Index(i) => i.subject.as_ref(),
        }
    }

    /// Every descriptor this manifest points at (config, layers, children; not the subject).
    pub fn references(&self) -> Vec<&Descriptor> {
        match self {
            Manifest::Image(m) => std::iter::once(&m.config).chain(&m.layers).collect(),
            Manifest::Index(i) => i.manifests.iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image_json(media_type: Option<&str>) -> String {
        let mt = media_type.map(|m| format!(r#""mediaType":"{m}","#)).unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"{}","digest":"{D}","size":0}},"layers":[]}}"#,
            media_type::OCI_CONFIG
        )
    }

    #[test]
    fn parses_by_declared_or_inner_type() {
        let m = Manifest::parse(image_json(None).as_bytes(), None).unwrap();
        assert_eq!(m.media_type(), media_type::OCI_MANIFEST);
        let m = Manifest::parse(image_json(None).as_bytes(), Some(media_type::DOCKER_MANIFEST));
        assert!(matches!(m, Ok(Manifest::Image(_))));
        let json = image_json(Some(media_type::DOCKER_MANIFEST));
        let m = Manifest::parse(json.as_bytes(), Some(media_type::OCI_MANIFEST));
        assert!(matches!(m, Err(ManifestError::MediaTypeMismatch { .. })));
    }

    #[test]
    fn an_image_posing_as_an_index_is_refused() {
        let m = Manifest::parse(image_json(None).as_bytes(), Some(media_type::OCI_INDEX));
        assert!(matches!(m, Err(ManifestError::MediaTypeMismatch { .. })));
    }

    #[test]
    fn schema_one_and_garbage_are_refused() {
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::SchemaVersion(1))
        ));
        assert!(matches!(Manifest::parse(b"not json", None), Err(ManifestError::Json(_))));
    }

    #[test]
    fn platform_matching() {
        let host = Platform::parse("linux/amd64").unwrap();
        assert!(Platform::parse("linux/amd64/v2").unwrap().satisfies(&host));
        assert!(!host.satisfies(&Platform::parse("linux/arm64").unwrap()));
        let arm = Platform::parse("linux/arm64").unwrap();
        assert!(arm.satisfies(&Platform::parse("linux/arm64/v8").unwrap()));
        assert_eq!(Platform::parse("linux/arm/v7").unwrap().to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux").is_none());
    }
}
