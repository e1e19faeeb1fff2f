//! What the tags pages show of an image: per platform its digest, OS and
//! architecture, compressed size, layers, history and labels. Read from the
//! manifest and config blobs and kept in memory by manifest digest (content
//! never changes under a digest), so a page of tags costs at most a few
//! small blob reads the first time and none after.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use berth_oci::{History, ImageConfig, Manifest};
use berth_reference::{Digest, RepoName};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::registry::{ManifestRef, Registry};

/// Configs larger than this are not read for a page.
const CONFIG_MAX: u64 = 4 << 20;
/// Entries kept before the cache starts over.
const CACHE_MAX: usize = 20_000;

#[derive(Debug, Clone)]
pub struct PlatformFacts {
    pub digest: Digest,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// Config and layers as stored (compressed).
    pub size: u64,
    pub layers: Vec<(Digest, u64)>,
    pub history: Vec<History>,
    pub labels: BTreeMap<String, String>,
}

impl PlatformFacts {
    pub fn platform(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Default)]
pub struct ImageFacts {
    cache: Mutex<HashMap<Digest, Arc<Vec<PlatformFacts>>>>,
}

impl ImageFacts {
    /// The platforms of the manifest `digest` in `repo` (attestations, the
    /// `unknown/unknown` entries of an index, left out).
    pub async fn platforms(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Arc<Vec<PlatformFacts>>> {
        if let Some(hit) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(digest) {
            return Ok(hit.clone());
        }
        let top = registry.get_manifest(repo, &ManifestRef::Digest(digest.clone())).await?;
        let parsed = Manifest::parse(&top.bytes, Some(&top.media_type))
            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let mut out = Vec::new();
        match parsed {
            Manifest::Image(m) => out.push(image(registry, repo, digest.clone(), &m).await?),
            Manifest::Index(index) => {
                for child in &index.manifests {
                    let attestation = child
                        .platform
                        .as_ref()
                        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown");
                    if attestation {
                        continue;
                    }
                    let Ok(content) = registry
                        .get_manifest(repo, &ManifestRef::Digest(child.digest.clone()))
                        .await
                    else {
                        continue;
                    };
                    let Ok(Manifest::Image(m)) =
                        Manifest::parse(&content.bytes, Some(&content.media_type))
                    else {
                        continue;
                    };
                    let mut facts = image(registry, repo, child.digest.clone(), &m).await?;
                    if let Some(p) = &child.platform {
                        facts.os = p.os.clone();
                        facts.architecture = p.architecture.clone();
                        facts.variant = p.variant.clone();
                    }
                    out.push(facts);
                }
            }
        }
        let out = Arc::new(out);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(digest.clone(), out.clone());
        Ok(out)
    }
}

async fn image(
    registry: &Registry,
    repo: &RepoName,
    digest: Digest,
    m: &berth_oci::ImageManifest,
) -> Result<PlatformFacts> {
    let config = read_config(registry, repo, &m.config.digest).await.unwrap_or_default();
    let labels = config.labels();
    Ok(PlatformFacts {
        digest,
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
        size: m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>(),
        layers: m.layers.iter().map(|l| (l.digest.clone(), l.size)).collect(),
        history: config.history,
        labels,
    })
}

async fn read_config(registry: &Registry, repo: &RepoName, digest: &Digest) -> Option<ImageConfig> {
    let (reader, size) = registry.get_blob(repo, digest, None).await.ok()?;
    if size > CONFIG_MAX {
        return None;
    }
    let mut bytes = Vec::with_capacity(size as usize);
    reader.take(CONFIG_MAX).read_to_end(&mut bytes).await.ok()?;
    ImageConfig::parse(&bytes).ok()
}
