//! Registry to registry: an image, or a multi-platform image whole, copied
//! blob by blob. Each layer goes up while it comes down, the GET's body
//! streamed into the PUT; a blob the destination has is neither downloaded
//! nor sent, and on one registry it is mounted. The destination checks
//! every blob against the digest its PUT names; layers are not
//! decompressed, since nothing about them changes. A stream that breaks is
//! redone through a scratch file, with the pull's and push's resumption. Manifests and the index go up byte for byte: the destination
//! has the source's digests.

use std::io;
use std::sync::Arc;

use berth_oci::{Descriptor, ImageManifest, Manifest, Platform, RawManifest, media_type};
use berth_reference::Reference;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use tokio::sync::mpsc;

use crate::client::Target;
use crate::error::registry_error;
use crate::manifests::select_platform;
use crate::progress::{LayerEvent, Progress};
use crate::pull::PIPE_DEPTH;
use crate::push::{Content, location, with_digest};
use crate::{Client, ClientError, ImageStore, PullOptions, PushOptions, PushedImage};

/// What [`Client::copy`] did.
#[derive(Debug, Clone)]
pub struct RegistryCopy {
    /// What the destination now has under the tag (the index, with `all`).
    pub pushed: PushedImage,
    /// `repository@digest` the source reference resolved to.
    pub source_digest: Reference,
    /// How many image manifests were copied.
    pub images: usize,
}

impl Client {
    /// Copies `src` to `dst` (which must name a tag). From an index: every
    /// platform and the index itself with `all`, else the platform of
    /// `pull.platform` (default: the host's). `scratch` holds each blob
    /// between its download and its upload.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy(
        &self,
        src: &Reference,
        dst: &Reference,
        all: bool,
        scratch: Arc<dyn ImageStore>,
        pull: &PullOptions,
        push: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<RegistryCopy, ClientError> {
        let src_path = src.path();
        let src_scopes = [format!("repository:{src_path}:pull")];
        let (src_base, top) = self.resolve(src, &src_scopes).await?;
        let from = Target { base: &src_base, domain: src.domain(), scopes: &src_scopes };
        let source_digest = Reference::digested(src.repository().clone(), top.digest.clone());

        let dst_path = dst.path();
        let dst_base = self.opts.config.base_url(dst.domain());
        let same_registry = src.domain() == dst.domain() && src_base == dst_base;
        let mount_from = (same_registry && src_path != dst_path).then(|| src_path.to_owned());
        let mut dst_scopes = vec![format!("repository:{dst_path}:pull,push")];
        if let Some(m) = &mount_from {
            dst_scopes.push(format!("repository:{m}:pull"));
        }
        let to = Target { base: &dst_base, domain: dst.domain(), scopes: &dst_scopes };

        let top_raw = |media_type: Option<&str>| RawManifest {
            media_type: media_type.unwrap_or(media_type::OCI_INDEX).to_owned(),
            bytes: top.bytes.clone(),
            digest: top.digest.clone(),
        };
        // (the manifest put under the tag, the image manifests to copy first)
        let (tagged, children): (RawManifest, Vec<(RawManifest, ImageManifest)>) =
            match &top.manifest {
                Manifest::Image(m) => {
                    let raw = crate::pull::raw_of(top.bytes.clone(), top.digest.clone(), m);
                    (raw.clone(), vec![(raw, m.clone())])
                }
                Manifest::Index(index) if all => {
                    let mut children = Vec::new();
                    for entry in &index.manifests {
                        children.push(self.fetch_child(&from, src_path, entry).await?);
                    }
                    (top_raw(index.media_type.as_deref()), children)
                }
                Manifest::Index(index) => {
                    let wanted = pull.platform.clone().unwrap_or_else(Platform::host);
                    let entry = select_platform(index, &wanted)?;
                    let child = self.fetch_child(&from, src_path, entry).await?;
                    (child.0.clone(), vec![child])
                }
            };
        let several = children.len() > 1 || tagged.digest != children[0].0.digest;
        for (raw, manifest) in &children {
            let relay = Relay {
                from: &from,
                src_path,
                to: &to,
                dst_path,
                mount_from: mount_from.as_deref(),
                scratch: scratch.clone(),
                push,
                progress: progress.clone(),
            };
            self.relay_image(&relay, manifest, pull.concurrency.max(1)).await?;
            if several {
                self.put_manifest(&to, dst_path, raw.digest.as_str(), raw).await?;
            }
        }
        let tag = dst.tag().unwrap_or(berth_reference::DEFAULT_TAG);
        self.put_manifest(&to, dst_path, tag, &tagged).await?;
        Ok(RegistryCopy {
            pushed: PushedImage {
                manifest_digest: tagged.digest.clone(),
                manifest_size: tagged.bytes.len() as u64,
                manifest_media_type: tagged.media_type.clone(),
                repo_digest: Reference::digested(dst.repository().clone(), tagged.digest.clone()),
                kept_manifest: true,
                manifest: tagged,
            },
            source_digest,
            images: children.len(),
        })
    }

    /// The config and every layer of one image, each layer downloaded (when
    /// the destination lacks it) and uploaded in one pipeline.
    async fn relay_image(
        &self,
        r: &Relay<'_>,
        manifest: &ImageManifest,
        concurrency: usize,
    ) -> Result<(), ClientError> {
        if !self.destination_has(r, &manifest.config).await? {
            let config = self.fetch_small_blob(r.from, r.src_path, &manifest.config).await?;
            let config = Content::Memory(Bytes::from(config));
            let quiet: Arc<dyn Progress> = Arc::new(crate::NoProgress);
            let desc = &manifest.config;
            self.upload_blob(r.to, r.dst_path, desc, config, None, r.push, "config", quiet).await?;
        }
        for layer in &manifest.layers {
            r.progress.layer(layer.digest.short(), LayerEvent::Waiting { total: layer.size });
        }
        let results: Vec<Result<(), ClientError>> = futures_util::stream::iter(&manifest.layers)
            .map(|layer| async move {
                let id = layer.digest.short();
                let status = match self.destination_has(r, layer).await? {
                    true => "Layer already exists".to_owned(),
                    false => self.relay_layer(r, layer).await?,
                };
                r.progress.layer(id, LayerEvent::Done(&status));
                Ok(())
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

impl Client {
    async fn destination_has(&self, r: &Relay<'_>, blob: &Descriptor) -> Result<bool, ClientError> {
        let url = format!("{}/v2/{}/blobs/{}", r.to.base, r.dst_path, blob.digest);
        let head = self.send(r.to, Method::HEAD, &url, true, &|rb| rb).await?;
        match head.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(registry_error(head).await),
        }
    }

    /// One layer the destination lacks: mounted on one registry, else
    /// streamed up while it comes down; if the stream breaks, downloaded
    /// into `scratch` and sent from there.
    async fn relay_layer(&self, r: &Relay<'_>, layer: &Descriptor) -> Result<String, ClientError> {
        let mut post_url = format!("{}/v2/{}/blobs/uploads/", r.to.base, r.dst_path);
        if let Some(from) = r.mount_from {
            post_url = format!("{post_url}?mount={}&from={from}", layer.digest);
        }
        let resp = self
            .send(r.to, Method::POST, &post_url, true, &|rb| rb.header(CONTENT_LENGTH, 0))
            .await?;
        match (resp.status().as_u16(), r.mount_from) {
            (201, Some(from)) => return Ok(format!("Mounted from {from}")),
            (202, _) => {}
            _ => return Err(registry_error(resp).await),
        }
        let location = location(&resp)?;
        if self.stream_layer(r, layer, &location).await.is_ok() {
            return Ok("Pushed".into());
        }
        // The stream broke (either side): again through a file, with the
        // pull's and the push's retries and resumption.
        let id = layer.digest.short();
        if !r.scratch.has_blob(&layer.digest) {
            self.download_blob(r.from, r.src_path, layer, r.scratch.clone(), &*r.progress).await?;
        }
        let content = Content::Stored(r.scratch.clone());
        self.upload_blob(r.to, r.dst_path, layer, content, None, r.push, id, r.progress.clone())
            .await
    }

    /// GETs the layer and PUTs the same bytes, as they come, into the
    /// upload session at `location`. The destination checks the digest
    /// (the PUT names it), so nothing is hashed or kept here.
    async fn stream_layer(
        &self,
        r: &Relay<'_>,
        layer: &Descriptor,
        location: &str,
    ) -> Result<(), ClientError> {
        let (fetch_tx, up_rx) = mpsc::channel::<io::Result<Bytes>>(PIPE_DEPTH);
        let body = futures_util::stream::unfold(up_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let body = std::sync::Mutex::new(Some(reqwest::Body::wrap_stream(body)));
        let url = with_digest(location, &layer.digest);
        let size = layer.size;
        // Sent once (a stream cannot be rebuilt): no retry; the caller
        // falls back to a file.
        let build = |rb: reqwest::RequestBuilder| {
            let rb =
                rb.header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, size);
            // Asked again (an auth round): the stream is gone, so this
            // attempt fails at once and the caller falls back to a file.
            let b = body.lock().expect("lock").take().unwrap_or_else(|| {
                reqwest::Body::wrap_stream(futures_util::stream::once(async {
                    Err::<Bytes, _>(io::Error::other("the layer stream was already sent"))
                }))
            });
            rb.body(b)
        };
        let upload = self.send(r.to, Method::PUT, &url, false, &build);
        let id = layer.digest.short();
        let fetch = self.fetch_blob_into(r.from, r.src_path, layer, id, [fetch_tx], &*r.progress);
        let (uploaded, fetched) = tokio::join!(upload, fetch);
        fetched?;
        let resp = uploaded?;
        if resp.status().as_u16() != 201 {
            return Err(registry_error(resp).await);
        }
        Ok(())
    }
}

/// Where one image's blobs come from and go to.
struct Relay<'a> {
    from: &'a Target<'a>,
    src_path: &'a str,
    to: &'a Target<'a>,
    dst_path: &'a str,
    /// On one registry: the source repository, to mount from.
    mount_from: Option<&'a str>,
    scratch: Arc<dyn ImageStore>,
    push: &'a PushOptions,
    progress: Arc<dyn Progress>,
}
