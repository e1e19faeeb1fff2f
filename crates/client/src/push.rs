//! Pushing an image from an [`ImageStore`]: each blob is HEADed first, mounted
//! from another repository of the same registry when the store knows one,
//! else uploaded, several at once; then the manifest. A layer stored only
//! uncompressed is gzip-compressed once with every core and the result kept
//! in the store.
//!
//! A small blob goes up in one PUT. A large one goes in PATCH chunks, each
//! with `Content-Range`, following the `Location` each answer gives and
//! checking the `Range` it reports, then a closing `PUT ?digest=`. A chunk
//! that fails transiently (connection lost, 5xx, 429) is resumed from what
//! the registry says it has (`GET` on the upload); an upload the registry
//! lost is restarted once; a registry that refuses chunks gets the rest of
//! the blob in one PATCH. The registry checks the digest at the end, so no
//! path through this can store a wrong blob.

use std::io::{self, Read};
use std::sync::Arc;

use berth_oci::media_type::{self, LayerCompression};
use berth_oci::{Descriptor, Image, ImageManifest, Layer, Manifest, RawManifest};
use berth_reference::{Digest, Reference, Repository};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Body, Method, Response};
use tokio::sync::mpsc;

use crate::client::{Target, is_retryable_status, retry_after};
use crate::compress::gzip_parallel;
use crate::error::registry_error;
use crate::pipe::{ChunkReader, ChunkWriter};
use crate::progress::{LayerEvent, Progress};
use crate::{Client, ClientError, ImageStore};

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub concurrency: usize,
    /// Blobs up to this size go in one PUT; larger ones in chunks.
    pub monolithic_limit: u64,
    /// Bytes per PATCH of a chunked upload; 0 sends the blob in one PATCH.
    pub chunk_size: u64,
    /// Cores used to compress an uncompressed layer.
    pub compress_threads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: 5,
            monolithic_limit: 16 << 20,
            chunk_size: crate::hosts::DEFAULT_UPLOAD_CHUNK_SIZE,
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
    /// The manifest as sent. When the image's kept manifest still named
    /// its blobs this is that manifest, byte for byte; otherwise a new one.
    pub manifest: RawManifest,
    /// Whether the image's kept manifest was sent unchanged.
    pub kept_manifest: bool,
}

/// Where the bytes of an upload come from.
#[derive(Clone)]
pub(crate) enum Content {
    Memory(Bytes),
    Stored(Arc<dyn ImageStore>),
}

impl Client {
    /// Pushes `image` as `target`: under its tag, or, for a digest
    /// reference, under that digest (which must be the kept manifest's).
    ///
    /// When the image's kept manifest still names the blobs the store holds
    /// (see [`Image::kept_manifest`]) those blobs and those exact manifest
    /// bytes are sent, so the destination has the source's digest. Only
    /// otherwise is a manifest written here: the layers compressed as
    /// stored (gzipped once if stored only uncompressed), Docker's schema 2
    /// when every layer is gzip, OCI otherwise.
    pub async fn push(
        &self,
        target: &Reference,
        image: &Image,
        store: Arc<dyn ImageStore>,
        opts: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PushedImage, ClientError> {
        let domain = target.domain();
        let path = target.path();
        let base = self.opts.config.base_url(domain);
        let kept = image.kept_manifest().cloned();
        if let Some(wanted) = target.digest()
            && kept.as_ref().map(|k| &k.digest) != Some(wanted)
        {
            return Err(ClientError::InvalidResponse {
                url: format!("{base}/v2/{path}/manifests/{wanted}"),
                detail: "cannot push by digest: the image's manifest is not kept unchanged".into(),
            });
        }
        let sources: Vec<Vec<Repository>> =
            image.layers.iter().map(|l| store.layer_sources(&l.diff_id)).collect();
        let mount_from = |i: usize| {
            sources[i]
                .iter()
                .find(|r| r.domain() == domain && r.path() != path)
                .map(|r| r.path().to_owned())
        };
        let mut scopes = vec![format!("repository:{path}:pull,push")];
        for from in (0..image.layers.len()).filter_map(mount_from) {
            let s = format!("repository:{from}:pull");
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let t = Target { base: &base, domain, scopes: &scopes };

        for layer in &image.layers {
            progress.layer(
                layer.diff_id.short(),
                LayerEvent::Waiting { total: layer.uncompressed_size.unwrap_or(0) },
            );
        }
        // The blob each layer goes up as: the kept manifest's, else chosen
        // (and perhaps made) here.
        let named = kept.as_ref().map(|_| image.primary_blobs());
        let layer_results: Vec<Result<Descriptor, ClientError>> =
            futures_util::stream::iter(image.layers.iter().enumerate())
                .map(|(i, layer)| {
                    let store = store.clone();
                    let progress = progress.clone();
                    let t = &t;
                    let named = named.as_ref().map(|n| n[i].clone());
                    async move {
                        let id = layer.diff_id.short();
                        let blob = match named {
                            Some(b) => b,
                            None => compressed_blob(layer, &store, opts.compress_threads).await?,
                        };
                        let content = Content::Stored(store);
                        let status = self
                            .upload_blob(
                                t,
                                path,
                                &blob,
                                content,
                                mount_from(i),
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

        let manifest = match kept.clone() {
            Some(raw) => raw,
            None => new_manifest(&image.config, blobs),
        };
        let config_desc = match manifest.parse() {
            Ok(Manifest::Image(m)) => m.config,
            _ => unreachable!("kept and new manifests are image manifests"),
        };
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
        let reference = match target.digest() {
            Some(d) => d.to_string(),
            None => target.tag().unwrap_or(berth_reference::DEFAULT_TAG).to_owned(),
        };
        self.put_manifest(&t, path, &reference, &manifest).await?;
        Ok(PushedImage {
            manifest_digest: manifest.digest.clone(),
            manifest_size: manifest.bytes.len() as u64,
            manifest_media_type: manifest.media_type.clone(),
            repo_digest: Reference::digested(target.repository().clone(), manifest.digest.clone()),
            kept_manifest: kept.is_some(),
            manifest,
        })
    }

    /// Pushes a multi-platform image whole: every child (each must keep its
    /// manifest, so the index's entries still name them) by digest, then
    /// `index`'s exact bytes under `target`'s tag. The destination then has
    /// the index digest of the source.
    pub async fn push_index(
        &self,
        target: &Reference,
        index: &RawManifest,
        children: &[Image],
        store: Arc<dyn ImageStore>,
        opts: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PushedImage, ClientError> {
        let domain = target.domain();
        let path = target.path();
        let base = self.opts.config.base_url(domain);
        for child in children {
            let Some(kept) = child.kept_manifest() else {
                return Err(ClientError::InvalidResponse {
                    url: format!("{base}/v2/{path}/manifests/{}", index.digest),
                    detail: "an index can only be pushed with every manifest it names".into(),
                });
            };
            let by_digest = Reference::digested(target.repository().clone(), kept.digest.clone());
            self.push(&by_digest, child, store.clone(), opts, progress.clone()).await?;
        }
        let scopes = [format!("repository:{path}:pull,push")];
        let t = Target { base: &base, domain, scopes: &scopes };
        let reference = match target.digest() {
            Some(d) => d.to_string(),
            None => target.tag().unwrap_or(berth_reference::DEFAULT_TAG).to_owned(),
        };
        self.put_manifest(&t, path, &reference, index).await?;
        Ok(PushedImage {
            manifest_digest: index.digest.clone(),
            manifest_size: index.bytes.len() as u64,
            manifest_media_type: index.media_type.clone(),
            repo_digest: Reference::digested(target.repository().clone(), index.digest.clone()),
            kept_manifest: true,
            manifest: index.clone(),
        })
    }

    /// PUTs a manifest's exact bytes under a tag or digest; the registry's
    /// `Docker-Content-Digest`, when it sends one, must be the bytes' digest.
    pub(crate) async fn put_manifest(
        &self,
        t: &Target<'_>,
        path: &str,
        reference: &str,
        manifest: &RawManifest,
    ) -> Result<(), ClientError> {
        let url = format!("{}/v2/{path}/manifests/{reference}", t.base);
        let body = Bytes::from(manifest.bytes.clone());
        let resp = self
            .send(t, Method::PUT, &url, true, &|rb| {
                rb.header(CONTENT_TYPE, manifest.media_type.as_str()).body(body.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(registry_error(resp).await);
        }
        let claimed = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        if let Some(claimed) = claimed
            && claimed.algorithm() == manifest.digest.algorithm()
            && claimed != manifest.digest
        {
            return Err(ClientError::DigestMismatch {
                what: url,
                expected: manifest.digest.clone(),
                actual: claimed,
            });
        }
        Ok(())
    }

    /// Makes sure the registry has blob `desc`; returns docker's status text.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn upload_blob(
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
        if desc.size > opts.monolithic_limit {
            let Content::Stored(store) = content else { unreachable!("in-memory blobs are small") };
            let up = Upload { t, path, desc, store, opts, id, progress };
            self.upload_large(&up, location).await?;
            return Ok("Pushed".into());
        }
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
        if resp.status().as_u16() != 201 {
            return Err(registry_error(resp).await);
        }
        Ok("Pushed".into())
    }

    /// Opens an upload session; returns its URL.
    async fn start_upload(&self, t: &Target<'_>, path: &str) -> Result<String, ClientError> {
        let url = format!("{}/v2/{path}/blobs/uploads/", t.base);
        let resp =
            self.send(t, Method::POST, &url, true, &|rb| rb.header(CONTENT_LENGTH, 0)).await?;
        if resp.status().as_u16() != 202 {
            return Err(registry_error(resp).await);
        }
        location(&resp)
    }

    /// Uploads a large blob into the session at `location`: chunks, resumed
    /// and retried as the module documentation describes, then the closing PUT.
    async fn upload_large(&self, up: &Upload<'_>, mut location: String) -> Result<(), ClientError> {
        let size = up.desc.size;
        let mut offset = 0u64;
        // Cleared for good once the registry refuses chunks.
        let mut can_chunk = up.opts.chunk_size > 0;
        let mut ranged = can_chunk;
        // Sent without the registry confirming what it kept (no `Range`).
        let mut unconfirmed = false;
        let mut restarted = false;
        let mut failures = 0u32;
        loop {
            let step = if offset < size {
                let chunk = if ranged { up.opts.chunk_size } else { size - offset };
                self.patch_from(up, &mut location, &mut offset, chunk, ranged).await
            } else {
                self.close_upload(up, &location).await
            };
            match step {
                Ok(Sent::Done) => return Ok(()),
                Ok(Sent::Partial) => {}
                Ok(Sent::Unconfirmed) => {
                    // Go on without chunks: nothing could be resumed anyway.
                    unconfirmed = true;
                    can_chunk = false;
                    ranged = false;
                }
                Err(Failure::Refused(e)) if ranged && offset == 0 => {
                    note_restart(up, &e);
                    can_chunk = false;
                    ranged = false;
                    location = self.start_upload(up.t, up.path).await?;
                }
                Err(Failure::Refused(e)) if unconfirmed && !restarted => {
                    // Chunks the registry did not confirm did not add up:
                    // once more, from the start, in one PATCH.
                    note_restart(up, &e);
                    restarted = true;
                    ranged = false;
                    unconfirmed = false;
                    offset = 0;
                    location = self.start_upload(up.t, up.path).await?;
                }
                Err(Failure::Transient(e, wait)) if failures < self.opts.retries => {
                    let wait = wait
                        .map(|w| w.min(self.opts.max_retry_after))
                        .unwrap_or_else(|| self.backoff(failures));
                    failures += 1;
                    let reason = e.to_string();
                    up.progress
                        .layer(up.id, LayerEvent::Retrying { attempt: failures, reason: &reason });
                    tokio::time::sleep(wait).await;
                    let resumed = if ranged && !unconfirmed {
                        self.upload_status(up.t, &location).await?
                    } else {
                        None
                    };
                    match resumed {
                        Some((loc, have)) => {
                            location = loc;
                            offset = have;
                        }
                        // The closing PUT went through but its answer was lost.
                        None if offset >= size && self.has_blob(up).await? => return Ok(()),
                        None => {
                            // Nothing to resume from: a new session.
                            unconfirmed = false;
                            ranged = can_chunk;
                            offset = 0;
                            location = self.start_upload(up.t, up.path).await?;
                        }
                    }
                }
                Err(Failure::Gone(e)) if !restarted => {
                    // The registry lost the upload (expired, restarted):
                    // unless the blob made it anyway, start it over, once.
                    if offset >= size && self.has_blob(up).await? {
                        return Ok(());
                    }
                    note_restart(up, &e);
                    restarted = true;
                    unconfirmed = false;
                    ranged = can_chunk;
                    offset = 0;
                    location = self.start_upload(up.t, up.path).await?;
                }
                Err(
                    Failure::Transient(e, _)
                    | Failure::Gone(e)
                    | Failure::Refused(e)
                    | Failure::Fatal(e),
                ) => return Err(e),
            }
        }
    }

    /// Whether the registry has the blob now.
    async fn has_blob(&self, up: &Upload<'_>) -> Result<bool, ClientError> {
        let url = format!("{}/v2/{}/blobs/{}", up.t.base, up.path, up.desc.digest);
        let head = self.send(up.t, Method::HEAD, &url, true, &|rb| rb).await?;
        Ok(head.status().as_u16() == 200)
    }

    /// Sends the blob from `*offset` in PATCHes of `chunk` bytes (with
    /// `Content-Range` when `ranged`), following each `Location`.
    async fn patch_from(
        &self,
        up: &Upload<'_>,
        location: &mut String,
        offset: &mut u64,
        chunk: u64,
        ranged: bool,
    ) -> Result<Sent, Failure> {
        let size = up.desc.size;
        let feeder = Feeder::start(up.store.clone(), up.desc.digest.clone(), *offset);
        while *offset < size {
            let start = *offset;
            let len = chunk.min(size - start);
            let end = start + len - 1;
            let body = feeder.body(len, start, size, up.id.to_owned(), up.progress.clone());
            let body = std::sync::Mutex::new(Some(body));
            let resp = self
                .send(up.t, Method::PATCH, location, false, &|rb| {
                    // A resend (after an auth challenge) has no body left: it
                    // then fails, and the retry below resumes.
                    let body = body.lock().expect("lock").take().unwrap_or_else(|| Body::from(""));
                    let rb = rb
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, len);
                    let rb = if ranged {
                        rb.header(CONTENT_RANGE, format!("{start}-{end}"))
                    } else {
                        rb
                    };
                    rb.body(body)
                })
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e @ ClientError::Network { .. }) => return Err(Failure::Transient(e, None)),
                Err(e) => return Err(Failure::Fatal(e)),
            };
            let status = resp.status().as_u16();
            if status != 202 {
                let wait = retry_after(&resp);
                let err = registry_error(resp).await;
                return Err(match status {
                    404 => Failure::Gone(err),
                    // Chunks refused from the start (400, 416): the caller
                    // falls back to one PATCH. Later, 416 means the registry
                    // holds other bytes than we think: ask it and resume.
                    400 | 416 if ranged && start == 0 => Failure::Refused(err),
                    416 => Failure::Transient(err, None),
                    s if is_retryable_status(s) => Failure::Transient(err, wait),
                    _ => Failure::Fatal(err),
                });
            }
            *location = location_or(&resp, location);
            let kept = range_end(&resp);
            match kept {
                // One PATCH for the rest: the closing PUT's digest check tells.
                _ if !ranged => *offset = end + 1,
                None => {
                    *offset = end + 1;
                    return Ok(Sent::Unconfirmed);
                }
                Some(last) if last == end => *offset = end + 1,
                Some(last) if last < end && last + 1 >= start => {
                    // The registry kept less than was sent: send the rest.
                    *offset = last + 1;
                    return Ok(Sent::Partial);
                }
                Some(last) => {
                    return Err(Failure::Fatal(ClientError::InvalidResponse {
                        url: location.clone(),
                        detail: format!("upload reports bytes 0-{last} after chunk {start}-{end}"),
                    }));
                }
            }
        }
        Ok(Sent::Partial)
    }

    /// The closing `PUT ?digest=`.
    async fn close_upload(&self, up: &Upload<'_>, location: &str) -> Result<Sent, Failure> {
        let url = with_digest(location, &up.desc.digest);
        let resp = self
            .send(up.t, Method::PUT, &url, true, &|rb| rb.header(CONTENT_LENGTH, 0))
            .await
            .map_err(|e| match e {
                ClientError::Network { .. } => Failure::Transient(e, None),
                e => Failure::Fatal(e),
            })?;
        match resp.status().as_u16() {
            201 => Ok(Sent::Done),
            404 => Err(Failure::Gone(registry_error(resp).await)),
            400 => Err(Failure::Refused(registry_error(resp).await)),
            _ => Err(Failure::Fatal(registry_error(resp).await)),
        }
    }

    /// How much of the upload at `location` the registry holds: its new
    /// location and the offset to resume from; `None` if it is gone or
    /// will not say.
    async fn upload_status(
        &self,
        t: &Target<'_>,
        location: &str,
    ) -> Result<Option<(String, u64)>, ClientError> {
        let resp = self.send(t, Method::GET, location, true, &|rb| rb).await?;
        match resp.status().as_u16() {
            200 | 204 => {}
            404 => return Ok(None),
            _ => return Err(registry_error(resp).await),
        }
        let loc = location_or(&resp, location);
        // `0-0` is how registries say both "nothing" and "one byte": resend
        // from the start, which is right for the only likely case.
        Ok(range_end(&resp).map(|last| (loc, if last == 0 { 0 } else { last + 1 })))
    }
}

/// One large blob being pushed.
struct Upload<'a> {
    t: &'a Target<'a>,
    path: &'a str,
    desc: &'a Descriptor,
    store: Arc<dyn ImageStore>,
    opts: &'a PushOptions,
    id: &'a str,
    progress: Arc<dyn Progress>,
}

/// How a step of an upload ended.
enum Sent {
    /// The closing PUT was accepted.
    Done,
    /// Bytes were accepted (maybe fewer than sent); carry on from the offset.
    Partial,
    /// Accepted without `Range`: the registry's tally is unknown.
    Unconfirmed,
}

enum Failure {
    /// Worth another try: resume from what the registry has.
    Transient(ClientError, Option<std::time::Duration>),
    /// The registry no longer knows the upload.
    Gone(ClientError),
    /// The registry refuses this way of uploading (or the bytes did not add up).
    Refused(ClientError),
    Fatal(ClientError),
}

/// Tells the layer's progress that its upload starts over, and why.
fn note_restart(up: &Upload<'_>, e: &ClientError) {
    let reason = format!("starting the upload over: {e}");
    up.progress.layer(up.id, LayerEvent::Retrying { attempt: 0, reason: &reason });
}

/// The last byte a registry says it holds (`Range: 0-N`, also `bytes=0-N`).
fn range_end(resp: &Response) -> Option<u64> {
    let v = resp.headers().get(RANGE)?.to_str().ok()?.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (first, last) = v.split_once('-')?;
    (first.trim() == "0").then_some(())?;
    last.trim().parse().ok()
}

/// Reads a stored blob from an offset on a blocking thread and hands it out
/// as successive request bodies of given lengths (the chunks).
struct Feeder {
    state: Arc<tokio::sync::Mutex<FeedState>>,
}

struct FeedState {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    /// Read but not yet sent: the part of a piece beyond the last chunk.
    leftover: Option<Bytes>,
}

impl Feeder {
    fn start(store: Arc<dyn ImageStore>, digest: Digest, offset: u64) -> Feeder {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
        tokio::task::spawn_blocking(move || {
            let mut src = match store.open_blob_at(&digest, offset) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; 1 << 20];
                match src.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        Feeder { state: Arc::new(tokio::sync::Mutex::new(FeedState { rx, leftover: None })) }
    }

    /// The next `len` bytes as a request body; `start` is their offset in the
    /// blob of `total` bytes, for progress.
    fn body(
        &self,
        len: u64,
        start: u64,
        total: u64,
        id: String,
        progress: Arc<dyn Progress>,
    ) -> Body {
        let seed = (self.state.clone(), len, start, id, progress);
        let stream = futures_util::stream::unfold(
            seed,
            move |(state, left, done, id, progress)| async move {
                if left == 0 {
                    return None;
                }
                let mut st = state.lock().await;
                let piece = match st.leftover.take() {
                    Some(b) => Ok(b),
                    None => st.rx.recv().await.unwrap_or_else(|| {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the stored blob is shorter than its size",
                        ))
                    }),
                };
                let mut piece = match piece {
                    Ok(p) => p,
                    Err(e) => {
                        drop(st);
                        return Some((Err(e), (state, 0, done, id, progress)));
                    }
                };
                if piece.len() as u64 > left {
                    st.leftover = Some(piece.split_off(left as usize));
                }
                drop(st);
                let n = piece.len() as u64;
                progress.layer(&id, LayerEvent::Advance { done: done + n, total });
                Some((Ok(piece), (state, left - n, done + n, id, progress)))
            },
        );
        Body::wrap_stream(stream)
    }
}

/// A manifest for `config` and `blobs` (one per layer, bottom first):
/// Docker's schema 2 when every layer is gzip (what docker itself pushes),
/// OCI otherwise (zstd layers exist only in OCI).
fn new_manifest(config: &[u8], blobs: Vec<Descriptor>) -> RawManifest {
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
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(manifest_type.to_owned()),
        artifact_type: None,
        config: Descriptor::new(config_type, Digest::sha256_of(config), config.len() as u64),
        layers,
        subject: None,
        annotations: None,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    RawManifest::new(manifest_type, bytes)
}

/// The compressed blob to push for a layer, compressing (once) if the store
/// has only the uncompressed one.
async fn compressed_blob(
    layer: &Layer,
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

pub(crate) fn location(resp: &Response) -> Result<String, ClientError> {
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

pub(crate) fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}
