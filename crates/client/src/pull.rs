//! Pulling an image into an [`ImageStore`].
//!
//! Each layer is fetched once over the network; how its diff ID is checked
//! depends on [`PullOptions::defer_diff_ids`].
//!
//! - By default the bytes go two ways at once: to the store's `write_blob`
//!   through a reader that reports end of input only once the blob's digest,
//!   size and diff ID have all been verified, and to a decompressor thread
//!   that computes the diff ID. A store never keeps a blob that failed.
//! - Deferred, the bytes go only to the store's `write_expected_blob`, which
//!   hashes while it writes and keeps the blob only if digest and size
//!   match; the layer comes back as an unverified claim, for a store that
//!   proves it before the image is first used (berth's local store does).
//!   Decompressing costs several times the CPU of the download, so on a
//!   fast network a deferred pull is several times quicker.
//!
//! An interrupted download resumes with `Range` from the last byte
//! received; the pipes never see the gap.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use berth_oci::media_type::{self, LayerCompression};
use berth_oci::{
    BlobMismatch, Descriptor, Image, ImageConfig, ImageManifest, Layer, Manifest, Platform,
    RawManifest,
};
use berth_reference::{Digest, Hasher, Reference};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::RANGE;
use tokio::sync::mpsc;

use crate::client::{Target, is_transient, network_error, read_limited};
use crate::error::registry_error;
use crate::manifests::select_platform;
use crate::pipe::ChunkReader;
use crate::progress::{LayerEvent, Progress};
use crate::{Client, ClientError, ImageStore};

/// Largest image config accepted.
const MAX_CONFIG_SIZE: u64 = 16 << 20;
/// Chunks in flight per pipe (each up to the size of one network read, which
/// can reach a few hundred KiB): bounds a layer's memory to a few MiB.
pub(crate) const PIPE_DEPTH: usize = 8;
/// Read size of the decompressor, in and out: large enough that per-call
/// overhead vanishes next to inflating.
const UNPACK_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pick from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Layers downloaded at once.
    pub concurrency: usize,
    /// Leave the diff-ID check to the store (see the module documentation):
    /// the pulled layers come back with `uncompressed_size: None`.
    pub defer_diff_ids: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { platform: None, concurrency: 6, defer_diff_ids: false }
    }
}

/// What a pull fetched: everything the store needs to commit the image.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference as pulled (tag or digest), normalised.
    pub reference: Reference,
    /// `repository@<manifest digest>` (the index's digest for a multi-platform image).
    pub repo_digest: Reference,
    /// The digest the reference resolved to (the index's, for a multi-platform image).
    pub manifest_digest: Digest,
    /// The index the image was picked from, byte for byte.
    pub index: Option<RawManifest>,
    /// The image: its manifest and config exactly as received (verified
    /// against their digests), each layer with the one blob the manifest
    /// names and, unless the diff ID is still unproven, its tar length.
    pub image: Image,
    /// Whether any layer had to be downloaded (false: the store had them all).
    pub downloaded_any: bool,
}

/// Every platform of a reference, as [`Client::pull_all`] fetched it.
#[derive(Debug, Clone)]
pub struct PulledIndex {
    /// The index, byte for byte; `None` when the reference named one image.
    pub index: Option<RawManifest>,
    /// One per index entry, in the index's order (or the one image).
    pub images: Vec<PulledImage>,
}

/// One layer as a pull produced it.
struct PulledLayer {
    layer: Layer,
    downloaded: bool,
}

impl Client {
    /// Pulls `reference` (tag or digest) into `store`, verifying everything,
    /// and returns what to commit. Nothing is committed here: the caller
    /// records the image (and may refuse to). From an index, the platform
    /// of [`PullOptions::platform`] (default: the host's) is pulled.
    pub async fn pull(
        &self,
        reference: &Reference,
        store: Arc<dyn ImageStore>,
        opts: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PulledImage, ClientError> {
        let path = reference.path();
        let scopes = [format!("repository:{path}:pull")];
        let (base, top) = self.resolve(reference, &scopes).await?;
        let t = Target { base: &base, domain: reference.domain(), scopes: &scopes };
        let (index, raw, manifest) = match top.manifest {
            Manifest::Image(m) => (None, raw_of(top.bytes, top.digest.clone(), &m), m),
            Manifest::Index(index) => {
                let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
                let entry = select_platform(&index, &wanted)?;
                let (raw, m) = self.fetch_child(&t, path, entry).await?;
                let media_type = index.media_type.clone().unwrap_or(media_type::OCI_INDEX.into());
                let index =
                    RawManifest { media_type, bytes: top.bytes, digest: top.digest.clone() };
                (Some(index), raw, m)
            }
        };
        let image = self.pull_image(&t, path, (raw, manifest), store, opts, progress).await?;
        Ok(PulledImage {
            reference: reference.clone(),
            repo_digest: Reference::digested(reference.repository().clone(), top.digest.clone()),
            manifest_digest: top.digest,
            index,
            image: image.0,
            downloaded_any: image.1,
        })
    }

    /// Pulls every platform of a multi-platform image (every entry must be
    /// an image manifest berth can store). A reference that names a single
    /// image pulls that image, with no index.
    pub async fn pull_all(
        &self,
        reference: &Reference,
        store: Arc<dyn ImageStore>,
        opts: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PulledIndex, ClientError> {
        let path = reference.path();
        let scopes = [format!("repository:{path}:pull")];
        let (base, top) = self.resolve(reference, &scopes).await?;
        let t = Target { base: &base, domain: reference.domain(), scopes: &scopes };
        let repo_digest = Reference::digested(reference.repository().clone(), top.digest.clone());
        let (index, children) = match top.manifest {
            Manifest::Image(m) => (None, vec![(raw_of(top.bytes, top.digest.clone(), &m), m)]),
            Manifest::Index(index) => {
                let mut children = Vec::new();
                for entry in &index.manifests {
                    children.push(self.fetch_child(&t, path, entry).await?);
                }
                let media_type = index.media_type.clone().unwrap_or(media_type::OCI_INDEX.into());
                let index =
                    RawManifest { media_type, bytes: top.bytes, digest: top.digest.clone() };
                (Some(index), children)
            }
        };
        let mut images = Vec::new();
        for (raw, manifest) in children {
            let (image, downloaded_any) = self
                .pull_image(&t, path, (raw, manifest), store.clone(), opts, progress.clone())
                .await?;
            images.push(PulledImage {
                reference: reference.clone(),
                repo_digest: repo_digest.clone(),
                manifest_digest: top.digest.clone(),
                index: index.clone(),
                image,
                downloaded_any,
            });
        }
        Ok(PulledIndex { index, images })
    }

    /// The manifest `reference` names, from the first endpoint that has it
    /// (mirrors first), with that endpoint's base URL.
    pub(crate) async fn resolve(
        &self,
        reference: &Reference,
        scopes: &[String],
    ) -> Result<(String, crate::manifests::FetchedManifest), ClientError> {
        let domain = reference.domain();
        let tag_or_digest = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => berth_reference::DEFAULT_TAG.to_owned(),
        };
        let mut last_err = None;
        for base in self.opts.config.pull_endpoints(domain) {
            let t = Target { base: &base, domain, scopes };
            match self.fetch_manifest(&t, reference.path(), &tag_or_digest).await {
                Ok(m) => return Ok((base, m)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one endpoint"))
    }

    /// The image manifest an index entry names (which must not be an index).
    pub(crate) async fn fetch_child(
        &self,
        t: &Target<'_>,
        path: &str,
        entry: &Descriptor,
    ) -> Result<(RawManifest, ImageManifest), ClientError> {
        let child = self.fetch_manifest(t, path, entry.digest.as_str()).await?;
        match child.manifest {
            Manifest::Image(m) => Ok((raw_of(child.bytes, child.digest, &m), m)),
            Manifest::Index(_) => Err(ClientError::InvalidResponse {
                url: format!("{}/v2/{path}/manifests/{}", t.base, entry.digest),
                detail: "an index entry for a platform is itself an index".into(),
            }),
        }
    }

    /// Fetches the config and layers `manifest` names into `store`; returns
    /// the image and whether any layer had to be downloaded.
    async fn pull_image(
        &self,
        t: &Target<'_>,
        path: &str,
        (raw, manifest): (RawManifest, ImageManifest),
        store: Arc<dyn ImageStore>,
        opts: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<(Image, bool), ClientError> {
        if manifest.config.size > MAX_CONFIG_SIZE {
            return Err(ClientError::TooLarge {
                url: format!("{}/v2/{path}/blobs/{}", t.base, manifest.config.digest),
                what: "image config".into(),
                limit: MAX_CONFIG_SIZE,
            });
        }
        let config = self.fetch_small_blob(t, path, &manifest.config).await?;
        let parsed = ImageConfig::parse(&config).map_err(|e| ClientError::InvalidResponse {
            url: format!("{}/v2/{path}/blobs/{}", t.base, manifest.config.digest),
            detail: format!("image config: {e}"),
        })?;
        let diff_ids = parsed.diff_ids();
        if diff_ids.len() != manifest.layers.len() {
            return Err(ClientError::InvalidResponse {
                url: format!("{}/v2/{path}/manifests/{}", t.base, raw.digest),
                detail: format!(
                    "{} layers in the manifest but {} diff IDs in the config",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let mut jobs = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let compression = media_type::layer_compression(&layer.media_type)
                .ok_or_else(|| ClientError::UnsupportedLayer(layer.media_type.clone()))?;
            jobs.push((layer.clone(), diff_id.clone(), compression));
        }
        // What the store has is decided up front, so the listing reads like
        // docker's: `Already exists` or `Pulling fs layer` for every layer first.
        let jobs: Vec<_> = jobs
            .into_iter()
            .map(|(layer, diff_id, compression)| {
                let known = store.known_layer(&layer.digest).filter(|k| k.diff_id == diff_id);
                let event = match &known {
                    Some(_) => LayerEvent::Done("Already exists"),
                    None => LayerEvent::Waiting { total: layer.size },
                };
                progress.layer(layer.digest.short(), event);
                (layer, diff_id, compression, known)
            })
            .collect();
        let results: Vec<Result<PulledLayer, ClientError>> = futures_util::stream::iter(jobs)
            .map(|(layer, diff_id, compression, known)| {
                let store = store.clone();
                let progress = progress.clone();
                async move {
                    if let Some(known) = known {
                        return Ok(PulledLayer {
                            layer: Layer {
                                diff_id,
                                blobs: vec![layer],
                                uncompressed_size: known.uncompressed_size,
                            },
                            downloaded: false,
                        });
                    }
                    let pulled = if opts.defer_diff_ids {
                        self.download_blob(t, path, &layer, store, &*progress).await?;
                        PulledLayer {
                            layer: Layer {
                                diff_id,
                                blobs: vec![layer.clone()],
                                uncompressed_size: None,
                            },
                            downloaded: true,
                        }
                    } else {
                        self.download_layer(
                            t,
                            path,
                            &layer,
                            &diff_id,
                            compression,
                            store,
                            &*progress,
                        )
                        .await?
                    };
                    progress.layer(layer.digest.short(), LayerEvent::Done("Pull complete"));
                    Ok(pulled)
                }
            })
            .buffered(opts.concurrency.max(1))
            .collect()
            .await;
        let layers = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let downloaded_any = layers.iter().any(|l| l.downloaded);
        let image = Image {
            manifest: Some(raw),
            config,
            layers: layers.into_iter().map(|l| l.layer).collect(),
            tags: Vec::new(),
        };
        Ok((image, downloaded_any))
    }

    /// GETs a small blob into memory, bounded by and verified against `desc`.
    pub(crate) async fn fetch_small_blob(
        &self,
        t: &Target<'_>,
        path: &str,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v2/{path}/blobs/{}", t.base, desc.digest);
        let resp = self.send(t, Method::GET, &url, true, &|rb| rb).await?;
        if !resp.status().is_success() {
            return Err(registry_error(resp).await);
        }
        let bytes = read_limited(resp, desc.size).await?;
        if bytes.len() as u64 != desc.size {
            return Err(ClientError::Truncated {
                what: url,
                got: bytes.len() as u64,
                expected: desc.size,
            });
        }
        let actual = Digest::of(desc.digest.algorithm(), &bytes);
        if actual != desc.digest {
            return Err(ClientError::DigestMismatch {
                what: url,
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Streams one layer blob into the store while verifying its digest and
    /// diff ID (see the module documentation).
    #[allow(clippy::too_many_arguments)]
    async fn download_layer(
        &self,
        t: &Target<'_>,
        path: &str,
        desc: &Descriptor,
        diff_id: &Digest,
        compression: LayerCompression,
        store: Arc<dyn ImageStore>,
        progress: &dyn Progress,
    ) -> Result<PulledLayer, ClientError> {
        let id = desc.digest.short().to_owned();
        let verdict: Arc<Mutex<Option<ClientError>>> = Arc::new(Mutex::new(None));
        let (store_tx, store_rx) = mpsc::channel::<io::Result<Bytes>>(PIPE_DEPTH);
        let (unpack_tx, unpack_rx) = mpsc::channel::<io::Result<Bytes>>(PIPE_DEPTH);
        let (diff_tx, diff_rx) = std::sync::mpsc::sync_channel(1);
        let unpacker = tokio::task::spawn_blocking(move || {
            let result = unpack_and_hash(ChunkReader::new(unpack_rx), compression);
            let _ = diff_tx.send(result);
        });
        let writer = {
            let mut reader = VerifyingReader {
                inner: ChunkReader::new(store_rx),
                hasher: Some(Hasher::new(desc.digest.algorithm())),
                count: 0,
                desc: desc.clone(),
                diff_id: diff_id.clone(),
                diff_rx,
                verdict: verdict.clone(),
                uncompressed_size: None,
            };
            tokio::task::spawn_blocking(move || {
                let written = store.write_blob(&mut reader);
                (written, reader.uncompressed_size)
            })
        };
        let fetched =
            self.fetch_blob_into(t, path, desc, &id, [store_tx, unpack_tx], progress).await;
        let (written, uncompressed) = writer.await.expect("blob writer thread");
        unpacker.await.expect("unpack thread");
        fetched?;
        if let Some(e) = verdict.lock().expect("lock").take() {
            return Err(e);
        }
        let (digest, _) = written.map_err(|e| ClientError::io(format!("storing layer {id}"), e))?;
        if digest != desc.digest {
            // The store hashed different bytes than were verified: a broken store.
            return Err(ClientError::DigestMismatch {
                what: format!("stored layer {id}"),
                expected: desc.digest.clone(),
                actual: digest,
            });
        }
        Ok(PulledLayer {
            layer: Layer {
                diff_id: diff_id.clone(),
                blobs: vec![desc.clone()],
                uncompressed_size: Some(uncompressed.expect("verified reader records the size")),
            },
            downloaded: true,
        })
    }

    /// Streams one blob into the store, which checks its digest and size
    /// while writing (one hash of the stream in all).
    pub(crate) async fn download_blob(
        &self,
        t: &Target<'_>,
        path: &str,
        desc: &Descriptor,
        store: Arc<dyn ImageStore>,
        progress: &dyn Progress,
    ) -> Result<(), ClientError> {
        let id = desc.digest.short().to_owned();
        let (store_tx, store_rx) = mpsc::channel::<io::Result<Bytes>>(PIPE_DEPTH);
        let writer = {
            let desc = desc.clone();
            tokio::task::spawn_blocking(move || {
                store.write_expected_blob(&mut ChunkReader::new(store_rx), &desc)
            })
        };
        let fetched = self.fetch_blob_into(t, path, desc, &id, [store_tx], progress).await;
        let written = writer.await.expect("blob writer thread");
        fetched?;
        written.map_err(|e| stored_blob_error(e, desc))
    }

    /// GETs a blob and sends its bytes to every pipe, resuming with `Range`
    /// after a transient failure. Sends at most `desc.size` bytes; dropping
    /// the pipes (on return) tells the readers the input ended.
    pub(crate) async fn fetch_blob_into<const N: usize>(
        &self,
        t: &Target<'_>,
        path: &str,
        desc: &Descriptor,
        id: &str,
        pipes: [mpsc::Sender<io::Result<Bytes>>; N],
        progress: &dyn Progress,
    ) -> Result<(), ClientError> {
        let url = format!("{}/v2/{path}/blobs/{}", t.base, desc.digest);
        let mut offset = 0u64;
        let mut attempt = 0u32;
        let mut failed_at = None;
        'request: loop {
            let start = offset;
            let resp = self
                .send(t, Method::GET, &url, true, &|rb| {
                    if start > 0 { rb.header(RANGE, format!("bytes={start}-")) } else { rb }
                })
                .await?;
            // 206: the rest from `start`; 200: the whole blob again (skip what we have).
            let mut skip = match resp.status().as_u16() {
                206 => 0,
                200 => start,
                _ => return Err(registry_error(resp).await),
            };
            if resp.content_length().is_some_and(|n| n + start - skip > desc.size) {
                return Err(ClientError::TooLarge { url, what: "blob".into(), limit: desc.size });
            }
            let mut body = resp.bytes_stream();
            let problem = loop {
                match body.next().await {
                    Some(Ok(mut chunk)) => {
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64);
                            let _ = chunk.split_to(n as usize);
                            skip -= n;
                        }
                        if offset + chunk.len() as u64 > desc.size {
                            return Err(ClientError::TooLarge {
                                url,
                                what: "blob".into(),
                                limit: desc.size,
                            });
                        }
                        offset += chunk.len() as u64;
                        for pipe in &pipes {
                            if pipe.send(Ok(chunk.clone())).await.is_err() {
                                // A reader failed; its own error explains why.
                                return Ok(());
                            }
                        }
                        progress.layer(id, LayerEvent::Advance { done: offset, total: desc.size });
                    }
                    Some(Err(e)) if is_transient(&e) => {
                        break network_error(&Method::GET, &url, &e);
                    }
                    Some(Err(e)) => return Err(network_error(&Method::GET, &url, &e)),
                    None if offset == desc.size => break 'request,
                    None => {
                        break ClientError::Truncated {
                            what: url.clone(),
                            got: offset,
                            expected: desc.size,
                        };
                    }
                }
            };
            if failed_at.is_none_or(|at| offset > at) {
                attempt = 0; // progress since the last failure
            }
            failed_at = Some(offset);
            if attempt >= self.opts.retries {
                return Err(problem);
            }
            progress.layer(
                id,
                LayerEvent::Retrying { attempt: attempt + 1, reason: &problem.to_string() },
            );
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
        Ok(())
    }
}

/// Decompresses a layer and returns its diff ID and uncompressed size.
/// Always drains its input, so the network side never blocks on it.
fn unpack_and_hash(
    input: ChunkReader,
    compression: LayerCompression,
) -> Result<(Digest, u64), String> {
    let mut input = io::BufReader::with_capacity(UNPACK_BUFFER, input);
    let mut hasher = Hasher::new(berth_reference::Algorithm::Sha256);
    let mut size = 0u64;
    let mut buf = vec![0u8; UNPACK_BUFFER];
    let mut hash_all = |r: &mut dyn Read| -> io::Result<()> {
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    };
    let result =
        berth_layer::decompress_as(&mut input, compression).and_then(|mut d| hash_all(&mut d));
    let trailing = io::copy(&mut input, &mut io::sink()).unwrap_or(0);
    result.map_err(|e| format!("cannot decompress: {e}"))?;
    if trailing > 0 {
        return Err(format!("{trailing} bytes of garbage after the compressed data"));
    }
    Ok((hasher.finish(), size))
}

/// The reader handed to the store: passes bytes through, and at end of
/// input fails unless size, digest and diff ID all check out.
struct VerifyingReader {
    inner: ChunkReader,
    hasher: Option<Hasher>,
    count: u64,
    desc: Descriptor,
    diff_id: Digest,
    diff_rx: std::sync::mpsc::Receiver<Result<(Digest, u64), String>>,
    verdict: Arc<Mutex<Option<ClientError>>>,
    uncompressed_size: Option<u64>,
}

impl VerifyingReader {
    fn reject(&self, e: ClientError) -> io::Error {
        let err = io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        self.verdict.lock().expect("lock").get_or_insert(e);
        err
    }

    fn verify(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else { return Ok(()) };
        let what = || format!("layer {}", self.desc.digest.short());
        if self.count != self.desc.size {
            return Err(self.reject(ClientError::Truncated {
                what: what(),
                got: self.count,
                expected: self.desc.size,
            }));
        }
        let actual = hasher.finish();
        if actual != self.desc.digest {
            let e = ClientError::DigestMismatch {
                what: what(),
                expected: self.desc.digest.clone(),
                actual,
            };
            return Err(self.reject(e));
        }
        match self.diff_rx.recv() {
            Ok(Ok((diff, size))) if diff == self.diff_id => {
                self.uncompressed_size = Some(size);
                Ok(())
            }
            Ok(Ok((diff, _))) => Err(self.reject(ClientError::DiffIdMismatch {
                blob: self.desc.digest.clone(),
                expected: self.diff_id.clone(),
                actual: diff,
            })),
            Ok(Err(detail)) => Err(self.reject(ClientError::Layer { layer: what(), detail })),
            Err(_) => Err(self
                .reject(ClientError::Layer { layer: what(), detail: "decompressor died".into() })),
        }
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.verify()?;
            return Ok(0);
        }
        self.count += n as u64;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// A fetched image manifest as kept: its media type (defaulted as OCI
/// documents without one are), bytes and digest.
/// What a store's refusal of a streamed blob means: cut short, not the
/// blob named, or the store's own trouble.
fn stored_blob_error(e: io::Error, desc: &Descriptor) -> ClientError {
    let id = desc.digest.short();
    match BlobMismatch::find(&e) {
        Some(m) if m.actual_size != desc.size => ClientError::Truncated {
            what: format!("layer {id}"),
            got: m.actual_size,
            expected: desc.size,
        },
        Some(m) => ClientError::DigestMismatch {
            what: format!("layer {id}"),
            expected: desc.digest.clone(),
            actual: m.actual.clone(),
        },
        None => ClientError::io(format!("storing layer {id}"), e),
    }
}

pub(crate) fn raw_of(bytes: Vec<u8>, digest: Digest, manifest: &ImageManifest) -> RawManifest {
    let media_type = manifest.media_type.clone().unwrap_or(media_type::OCI_MANIFEST.into());
    RawManifest { media_type, bytes, digest }
}
