//! Pushing an image from an [`ImageStore`]: each blob is HEADed first, mounted
//! from another repository of the same registry when the store knows one,
//! else uploaded (one PUT when small, a streamed PATCH then PUT when large),
//! several at once; then the manifest. A layer stored only uncompressed is
//! gzip-compressed once with every core and the result kept in the store.

use std::io::{self, Read};
use std::sync::Arc;

use berth_oci::media_type::{self, LayerCompression};
use berth_oci::{Descriptor, ImageManifest};
use berth_reference::{Digest, Reference};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Body, Method, Response};
use tokio::sync::mpsc;

use crate::client::Target;
use crate::compress::gzip_parallel;
use crate::error::registry_error;
use crate::pipe::{ChunkReader, ChunkWriter};
use crate::progress::{LayerEvent, Progress};
use crate::{Client, ClientError, ImageStore, LocalImage, LocalLayer};

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub concurrency: usize,
    /// Blobs up to this size go in one PUT; larger ones are streamed.
    pub monolithic_limit: u64,
    /// Cores used to compress an uncompressed layer.
    pub compress_threads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: 5,
            monolithic_limit: 16 << 20,
            compress_threads: crate::compress::default_threads(),
        }
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest_media_type: String,
    /// `repository@<manifest digest>`, for the store's RepoDigests.
    pub repo_digest: Reference,
}

/// Where the bytes of an upload come from.
#[derive(Clone)]
enum Content {
    Memory(Bytes),
    Stored(Arc<dyn ImageStore>),
}

impl Client {
    /// Pushes `image` as `target` (which must carry a tag).
    pub async fn push(
        &self,
        target: &Reference,
        image: &LocalImage,
        store: Arc<dyn ImageStore>,
        opts: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PushedImage, ClientError> {
        let tag = target.tag().unwrap_or(berth_reference::DEFAULT_TAG);
        let domain = target.domain();
        let path = target.path();
        let base = self.opts.config.base_url(domain);
        let mut scopes = vec![format!("repository:{path}:pull,push")];
        let mount_from = |l: &LocalLayer| {
            l.sources
                .iter()
                .find(|r| r.domain() == domain && r.path() != path)
                .map(|r| r.path().to_owned())
        };
        for from in image.layers.iter().filter_map(mount_from) {
            let s = format!("repository:{from}:pull");
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let t = Target { base: &base, domain, scopes: &scopes };

        for layer in &image.layers {
            progress.layer(
                layer.diff_id.short(),
                LayerEvent::Waiting { total: layer.uncompressed_size },
            );
        }
        let layer_results: Vec<Result<Descriptor, ClientError>> =
            futures_util::stream::iter(&image.layers)
                .map(|layer| {
                    let store = store.clone();
                    let progress = progress.clone();
                    let t = &t;
                    async move {
                        let id = layer.diff_id.short();
                        let blob = compressed_blob(layer, &store, opts.compress_threads).await?;
                        let content = Content::Stored(store);
                        let status = self
                            .upload_blob(
                                t,
                                path,
                                &blob,
                                content,
                                mount_from(layer),
                                opts,
                                id,
                                progress.clone(),
                            )
                            .await?;
                        progress.layer(id, LayerEvent::Done(&status));
                        Ok(blob)
                    }
                })
                .buffered(opts.concurrency.max(1))
                .collect()
                .await;
        let blobs = layer_results.into_iter().collect::<Result<Vec<_>, _>>()?;

        // Docker's schema 2 when every layer is gzip (what docker itself
        // pushes); OCI otherwise (zstd layers exist only in OCI).
        let docker = blobs
            .iter()
            .all(|b| media_type::layer_compression(&b.media_type) == Some(LayerCompression::Gzip));
        let (manifest_type, config_type) = if docker {
            (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG)
        } else {
            (media_type::OCI_MANIFEST, media_type::OCI_CONFIG)
        };
        let layers: Vec<Descriptor> = blobs
            .into_iter()
            .map(|b| {
                let mt = match (docker, media_type::layer_compression(&b.media_type)) {
                    (true, _) => media_type::DOCKER_LAYER_GZIP,
                    (false, Some(LayerCompression::Zstd)) => media_type::OCI_LAYER_ZSTD,
                    (false, _) => media_type::OCI_LAYER_GZIP,
                };
                Descriptor::new(mt, b.digest, b.size)
            })
            .collect();
        let config_desc = Descriptor::new(
            config_type,
            Digest::sha256_of(&image.config),
            image.config.len() as u64,
        );
        let config = Content::Memory(Bytes::from(image.config.clone()));
        self.upload_blob(
            &t,
            path,
            &config_desc,
            config,
            None,
            opts,
            "config",
            Arc::new(crate::NoProgress),
        )
        .await?;

        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(manifest_type.to_owned()),
            artifact_type: None,
            config: config_desc,
            layers,
            subject: None,
            annotations: None,
        };
        let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        let digest = Digest::sha256_of(&bytes);
        let url = format!("{base}/v2/{path}/manifests/{tag}");
        let body = Bytes::from(bytes);
        let resp = self
            .send(&t, Method::PUT, &url, true, &|rb| {
                rb.header(CONTENT_TYPE, manifest_type).body(body.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(registry_error(resp).await);
        }
        Ok(PushedImage {
            manifest_digest: digest.clone(),
            manifest_size: body.len() as u64,
            manifest_media_type: manifest_type.to_owned(),
            repo_digest: Reference::digested(target.repository().clone(), digest),
        })
    }

    /// Makes sure the registry has blob `desc`; returns docker's status text.
    #[allow(clippy::too_many_arguments)]
    async fn upload_blob(
        &self,
        t: &Target<'_>,
        path: &str,
        desc: &Descriptor,
        content: Content,
        mount_from: Option<String>,
        opts: &PushOptions,
        id: &str,
        progress: Arc<dyn Progress>,
    ) -> Result<String, ClientError> {
        let blob_url = format!("{}/v2/{path}/blobs/{}", t.base, desc.digest);
        let head = self.send(t, Method::HEAD, &blob_url, true, &|rb| rb).await?;
        match head.status().as_u16() {
            200 => return Ok("Layer already exists".into()),
            404 => {}
            _ => return Err(registry_error(head).await),
        }
        let mut post_url = format!("{}/v2/{path}/blobs/uploads/", t.base);
        if let Some(from) = &mount_from {
            post_url = format!("{post_url}?mount={}&from={from}", desc.digest);
        }
        let resp =
            self.send(t, Method::POST, &post_url, true, &|rb| rb.header(CONTENT_LENGTH, 0)).await?;
        match (resp.status().as_u16(), &mount_from) {
            (201, Some(from)) => return Ok(format!("Mounted from {from}")),
            (202, _) => {}
            _ => return Err(registry_error(resp).await),
        }
        let location = location(&resp)?;
        let resp = if desc.size <= opts.monolithic_limit {
            let bytes = match content {
                Content::Memory(b) => b,
                Content::Stored(store) => read_stored(store, desc.digest.clone()).await?,
            };
            let url = with_digest(&location, &desc.digest);
            let resp = self
                .send(t, Method::PUT, &url, true, &|rb| {
                    rb.header(CONTENT_TYPE, "application/octet-stream").body(bytes.clone())
                })
                .await?;
            progress.layer(id, LayerEvent::Advance { done: desc.size, total: desc.size });
            resp
        } else {
            let Content::Stored(store) = content else { unreachable!("in-memory blobs are small") };
            let body = stream_stored(store, desc.clone(), id.to_owned(), progress.clone());
            let body = std::sync::Mutex::new(Some(body));
            let resp = self
                .send(t, Method::PATCH, &location, false, &|rb| {
                    let body = body.lock().expect("lock").take().unwrap_or_else(|| Body::from(""));
                    rb.header(CONTENT_TYPE, "application/octet-stream").body(body)
                })
                .await?;
            if resp.status().as_u16() != 202 {
                return Err(registry_error(resp).await);
            }
            let url = with_digest(&location_or(&resp, &location), &desc.digest);
            self.send(t, Method::PUT, &url, true, &|rb| rb.header(CONTENT_LENGTH, 0)).await?
        };
        if resp.status().as_u16() != 201 {
            return Err(registry_error(resp).await);
        }
        Ok("Pushed".into())
    }
}

/// The compressed blob to push for a layer, compressing (once) if the store
/// has only the uncompressed one.
async fn compressed_blob(
    layer: &LocalLayer,
    store: &Arc<dyn ImageStore>,
    threads: usize,
) -> Result<Descriptor, ClientError> {
    let compressed = layer.blobs.iter().find(|b| {
        matches!(
            media_type::layer_compression(&b.media_type),
            Some(LayerCompression::Gzip | LayerCompression::Zstd)
        )
    });
    if let Some(b) = compressed {
        return Ok(b.clone());
    }
    let diff_id = layer.diff_id.clone();
    let store = store.clone();
    let id = diff_id.short().to_owned();
    let (digest, size) = tokio::task::spawn_blocking(move || -> io::Result<(Digest, u64)> {
        let (tx, rx) = mpsc::channel(8);
        let written = std::thread::scope(|s| {
            let store_ref = &store;
            let diff_ref = &diff_id;
            s.spawn(move || {
                let mut out = ChunkWriter::new(tx);
                let result = store_ref
                    .open_blob(diff_ref)
                    .and_then(|mut src| gzip_parallel(&mut src, &mut out, threads));
                if let Err(e) = result {
                    out.fail(e);
                }
            });
            store.write_blob(&mut ChunkReader::new(rx))
        })?;
        let desc = Descriptor::new(media_type::DOCKER_LAYER_GZIP, written.0.clone(), written.1);
        store.add_layer_blob(&diff_id, &desc)?;
        Ok(written)
    })
    .await
    .expect("compression thread")
    .map_err(|e| ClientError::io(format!("compressing layer {id}"), e))?;
    Ok(Descriptor::new(media_type::DOCKER_LAYER_GZIP, digest, size))
}

/// Reads a whole (small) stored blob.
async fn read_stored(store: Arc<dyn ImageStore>, digest: Digest) -> Result<Bytes, ClientError> {
    let ctx = format!("reading blob {digest}");
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        store.open_blob(&digest)?.read_to_end(&mut buf)?;
        Ok(Bytes::from(buf))
    })
    .await
    .expect("reader thread")
    .map_err(|e| ClientError::io(ctx, e))
}

/// A request body streaming a stored blob, reporting progress.
fn stream_stored(
    store: Arc<dyn ImageStore>,
    desc: Descriptor,
    id: String,
    progress: Arc<dyn Progress>,
) -> Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let digest = desc.digest.clone();
    tokio::task::spawn_blocking(move || {
        let mut src = match store.open_blob(&digest) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut done = 0u64;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match src.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                    done += n as u64;
                    progress.layer(&id, LayerEvent::Advance { done, total: desc.size });
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        );
    Body::wrap_stream(stream)
}

fn location(resp: &Response) -> Result<String, ClientError> {
    let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        ClientError::InvalidResponse {
            url: resp.url().to_string(),
            detail: "upload response without Location".into(),
        }
    })?;
    resp.url().join(loc).map(|u| u.to_string()).map_err(|e| ClientError::InvalidResponse {
        url: resp.url().to_string(),
        detail: format!("bad Location {loc:?}: {e}"),
    })
}

fn location_or(resp: &Response, fallback: &str) -> String {
    location(resp).unwrap_or_else(|_| fallback.to_owned())
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}
