//! Fetching manifests: every media type berth reads is accepted, the bytes
//! are verified against the digest that named them (and against the
//! registry's `Docker-Content-Digest`), and an index resolves to one platform.

use berth_oci::{ImageIndex, Manifest, Platform, media_type};
use berth_reference::{Algorithm, Digest};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::client::{Target, read_limited};
use crate::error::registry_error;
use crate::{Client, ClientError};

/// The `Accept` header of manifest requests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted (distribution's own limit).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// A manifest as fetched: its exact bytes, their digest and the parsed document.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub manifest: Manifest,
}

impl Client {
    /// GETs `/v2/<path>/manifests/<reference>` (a tag or a digest). When the
    /// reference is a digest the bytes must hash to it; a `Docker-Content-Digest`
    /// header must agree with the bytes; the declared media type must agree
    /// with the document.
    pub(crate) async fn fetch_manifest(
        &self,
        t: &Target<'_>,
        path: &str,
        reference: &str,
    ) -> Result<FetchedManifest, ClientError> {
        let url = format!("{}/v2/{path}/manifests/{reference}", t.base);
        let resp =
            self.send(t, Method::GET, &url, true, &|rb| rb.header(ACCEPT, MANIFEST_ACCEPT)).await?;
        if !resp.status().is_success() {
            return Err(registry_error(resp).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let header_digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE).await?;
        let requested = Digest::parse(reference).ok();
        let algorithm = requested.as_ref().map_or(Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &bytes);
        let what = || format!("manifest {path}:{reference}");
        if let Some(expected) = requested.filter(|r| *r != digest) {
            return Err(ClientError::DigestMismatch { what: what(), expected, actual: digest });
        }
        if let Some(claimed) = header_digest {
            let actual = Digest::of(claimed.algorithm(), &bytes);
            if actual != claimed {
                return Err(ClientError::DigestMismatch {
                    what: what(),
                    expected: claimed,
                    actual,
                });
            }
        }
        let manifest = Manifest::parse(&bytes, content_type.as_deref())
            .map_err(|source| ClientError::Manifest { url, source })?;
        Ok(FetchedManifest { bytes, digest, manifest })
    }
}

/// The index entry for `wanted`, or docker's error listing what is there.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<&'a berth_oci::Descriptor, ClientError> {
    let candidates =
        index.manifests.iter().filter(|d| media_type::is_image_manifest(&d.media_type));
    let found =
        candidates.clone().find(|d| d.platform.as_ref().is_some_and(|p| p.satisfies(wanted)));
    found.ok_or_else(|| ClientError::PlatformNotFound {
        wanted: wanted.to_string(),
        available: candidates
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(Platform::to_string)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_platform_lists_those_present() {
        let json = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":1,"platform":{"os":"linux","architecture":"amd64"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":2,"platform":{"os":"linux","architecture":"arm","variant":"v7"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":3,"platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let Manifest::Index(index) = Manifest::parse(json.as_bytes(), None).unwrap() else {
            panic!()
        };
        let d = select_platform(&index, &Platform::parse("linux/arm/v7").unwrap()).unwrap();
        assert_eq!(d.size, 2);
        let e = select_platform(&index, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no matching manifest for linux/s390x in the manifest list entries (available: linux/amd64, linux/arm/v7)"
        );
    }
}
