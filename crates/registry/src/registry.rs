//! The registry's operations, independent of HTTP: what a push or pull may
//! do, checked against storage and metadata. The `api` module only
//! translates requests into these calls.
//!
//! Who verifies what: every byte entering blob storage is checked against
//! its digest by the [`BlobStore`]; this module checks that manifests parse,
//! that what they reference exists in the repository with the declared
//! size, that uploads belong to the repository in the URL, and size limits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use berth_oci::{Descriptor, Manifest, ManifestError, media_type};
use berth_reference::{Digest, DigestError, RepoName, validate_tag};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::metadata::{Change, ChangeFeed, ManifestRecord, MetadataStore, UploadRecord};
use crate::storage::{
    BlobReader, BlobStore, ByteRange, ByteStream, ChunkLength, UploadId, bytes_stream,
};

/// The image label search shows as a repository's description.
pub const DESCRIPTION_LABEL: &str = "org.opencontainers.image.description";

pub use crate::hub::{DESCRIPTION_MAX, FULL_DESCRIPTION_MAX};

/// The largest manifest accepted (the spec's recommended minimum limit).
pub const MANIFEST_MAX: usize = 4 << 20;

/// Tunables of a [`Registry`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest body.
    pub manifest_max: usize,
    /// Largest single blob.
    pub blob_max: u64,
    /// Whether `POST ?mount=<digest>` without `from` links any blob the
    /// registry already stores (a 201 instead of a new upload).
    pub mount_without_from: bool,
    /// Whether an index may name child manifests the repository lacks (a
    /// sparse index, such as a copy of some platforms only). The spec lets
    /// a registry accept or refuse such an index; a child that is present
    /// must match its descriptor either way.
    pub sparse_indexes: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            manifest_max: MANIFEST_MAX,
            blob_max: 64 << 30,
            mount_without_from: true,
            sparse_indexes: true,
        }
    }
}

/// The most `?tag=` parameters one manifest push may carry (the spec asks
/// registries to take at least 10, and allows a 414 beyond their limit).
pub const TAGS_PER_PUSH_MAX: usize = 100;

/// The `<reference>` of a manifest URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    pub fn parse(s: &str) -> Result<ManifestRef> {
        if s.contains(':') {
            return parse_digest(s).map(ManifestRef::Digest);
        }
        validate_tag(s).map_err(|_| Error::ManifestInvalid(format!("invalid tag {s:?}")))?;
        Ok(ManifestRef::Tag(s.to_owned()))
    }

    fn as_key(&self) -> &str {
        match self {
            ManifestRef::Tag(t) => t,
            ManifestRef::Digest(d) => d.as_str(),
        }
    }
}

/// Parses a digest from a request, telling malformed from unsupported.
pub fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| match e {
        DigestError::UnsupportedAlgorithm => Error::UnsupportedAlgorithm(s.to_owned()),
        _ => Error::DigestInvalid(format!("{s:?} is not a valid digest")),
    })
}

/// A manifest ready to serve.
#[derive(Debug)]
pub struct ManifestContent {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub subject: Option<Digest>,
}

/// What a manifest push produced.
#[derive(Debug)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// The tags given as `?tag=` parameters, now pointing at the manifest
    /// (each is answered with an `OCI-Tag` header).
    pub extra_tags: Vec<String>,
}

/// Hot manifests by `(repository, tag or digest)`. Writes through this
/// process, and changes the metadata's feed reports, bump a generation and
/// drop the repository's entries; a reader inserts only if nothing was
/// dropped since it started, so a stale answer is never cached. Writes the
/// cache is not told of (admin commands on SQLite) are seen within
/// [`CACHE_TTL`]. With shared metadata the cache is on only while the feed
/// is live.
struct ManifestCache {
    generation: AtomicU64,
    enabled: AtomicBool,
    entries: RwLock<HashMap<String, RepoEntries>>,
}

/// One repository's cached manifests by tag or digest, with when they were read.
type RepoEntries = HashMap<String, (Instant, Arc<ManifestContent>)>;

const CACHE_MAX_REPOSITORIES: usize = 4096;
/// How long a cached manifest is served without asking the metadata store.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

impl ManifestCache {
    fn new(enabled: bool) -> ManifestCache {
        ManifestCache {
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(enabled),
            entries: RwLock::default(),
        }
    }

    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    fn get(&self, repo: &RepoName, key: &str) -> Option<Arc<ManifestContent>> {
        if !self.enabled() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let (at, value) = entries.get(repo.as_str())?.get(key)?;
        (at.elapsed() < CACHE_TTL).then(|| value.clone())
    }

    fn insert(&self, generation: u64, repo: &RepoName, key: &str, value: Arc<ManifestContent>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if !self.enabled() || self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CACHE_MAX_REPOSITORIES && !entries.contains_key(repo.as_str()) {
            entries.clear();
        }
        entries
            .entry(repo.as_str().to_owned())
            .or_default()
            .insert(key.to_owned(), (Instant::now(), value));
    }

    fn invalidate(&self, repo: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(repo);
    }

    /// Drops everything, and turns the cache on or off.
    fn reset(&self, enabled: bool) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        self.enabled.store(enabled, Ordering::Release);
    }

    /// Applies what `feed` reports until it stops or the cache is gone.
    async fn follow(cache: Weak<ManifestCache>, mut feed: ChangeFeed) {
        while let Some(change) = feed.recv().await {
            let Some(cache) = cache.upgrade() else { return };
            match change {
                Change::Live => cache.reset(true),
                Change::Lost => cache.reset(false),
                Change::Repository(repo) => cache.invalidate(&repo),
            }
        }
        if let Some(cache) = cache.upgrade() {
            cache.reset(false);
        }
    }
}

/// Manifest bytes by digest. Content-addressed, so an entry can never be
/// stale: whether a repository still has the manifest, and what a tag
/// points at, is always asked of the metadata; only the bytes, which would
/// otherwise be fetched from blob storage, come from here.
#[derive(Default)]
struct ManifestBytes {
    entries: RwLock<(HashMap<Digest, Bytes>, usize)>,
}

/// What [`ManifestBytes`] holds at most; it starts over when full.
const MANIFEST_BYTES_MAX: usize = 64 << 20;

impl ManifestBytes {
    fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).0.get(digest).cloned()
    }

    fn insert(&self, digest: &Digest, bytes: &Bytes) {
        let mut guard = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let (map, total) = &mut *guard;
        if *total + bytes.len() > MANIFEST_BYTES_MAX {
            map.clear();
            *total = 0;
        }
        if map.insert(digest.clone(), bytes.clone()).is_none() {
            *total += bytes.len();
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The registry: blob storage plus metadata plus the rules that bind them.
pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetadataStore>,
    limits: Limits,
    cache: Arc<ManifestCache>,
    manifest_bytes: ManifestBytes,
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetadataStore>, limits: Limits) -> Self {
        Registry {
            blobs,
            meta,
            limits,
            cache: Arc::new(ManifestCache::new(true)),
            manifest_bytes: ManifestBytes::default(),
        }
    }

    /// For a replica sharing its metadata (PostgreSQL): manifests are cached
    /// only while the metadata's change feed is live, so that a tag moved
    /// through another replica is seen here as soon as the database tells;
    /// without a feed every read asks the database.
    pub async fn with_shared_metadata(self) -> Self {
        match self.meta.subscribe_changes().await {
            Some(feed) => {
                self.cache.reset(feed.is_live());
                tokio::spawn(ManifestCache::follow(Arc::downgrade(&self.cache), feed));
            }
            None => self.cache.reset(false),
        }
        self
    }

    /// Whether manifest reads may be answered from memory right now.
    pub fn manifest_cache_enabled(&self) -> bool {
        self.cache.enabled()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Up to `limit` repositories that hold blob `digest`, sorted: the
    /// candidates for a mount without `from`.
    pub async fn blob_holders(&self, digest: &Digest, limit: usize) -> Result<Vec<String>> {
        Ok(self.meta.blob_repositories(digest, limit).await?)
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    // ---- manifests ----

    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
    ) -> Result<Arc<ManifestContent>> {
        if let Some(hit) = self.cache.get(repo, reference.as_key()) {
            return Ok(hit);
        }
        let generation = self.cache.generation.load(Ordering::Acquire);
        let unknown = || Error::ManifestUnknown(reference.as_key().to_owned());
        let digest = match reference {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(t) => {
                self.meta.resolve_tag(repo.as_str(), t).await?.ok_or_else(unknown)?
            }
        };
        let record = self.meta.manifest(repo.as_str(), &digest).await?.ok_or_else(unknown)?;
        let bytes = match self.manifest_bytes.get(&digest) {
            Some(b) => b,
            None => {
                let mut bytes = Vec::with_capacity(record.size as usize);
                let mut reader = self.blobs.get(&digest, None).await?;
                reader.read_to_end(&mut bytes).await.map_err(storage_io)?;
                let bytes = Bytes::from(bytes);
                self.manifest_bytes.insert(&digest, &bytes);
                bytes
            }
        };
        let content = Arc::new(ManifestContent {
            digest,
            media_type: record.media_type,
            bytes,
            subject: record.subject,
        });
        self.cache.insert(generation, repo, reference.as_key(), content.clone());
        Ok(content)
    }

    /// Verifies and stores a manifest; tags it when `reference` is a tag.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushedManifest> {
        self.put_manifest_tagged(repo, reference, &[], content_type, body).await
    }

    /// [`Registry::put_manifest`] with the `?tag=` parameters of a push by
    /// digest: each is validated before anything is stored, and the
    /// manifest and all its tags are recorded in one metadata transaction.
    pub async fn put_manifest_tagged(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
        extra_tags: &[String],
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushedManifest> {
        let extra_tags = check_extra_tags(reference, extra_tags)?;
        if body.len() > self.limits.manifest_max {
            return Err(Error::ManifestTooLarge(format!(
                "manifest exceeds {} bytes",
                self.limits.manifest_max
            )));
        }
        let digest = match reference {
            ManifestRef::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &body);
                if actual != *d {
                    return Err(Error::DigestInvalid(format!(
                        "manifest hashes to {actual}, not {d}"
                    )));
                }
                actual
            }
            ManifestRef::Tag(_) => Digest::sha256_of(&body),
        };
        let manifest = Manifest::parse(&body, content_type).map_err(|e| match e {
            ManifestError::MediaType(mt) => {
                Error::Unsupported(format!("manifest media type {mt:?}"))
            }
            other => Error::ManifestInvalid(other.to_string()),
        })?;
        let record = self.check_references(repo, &digest, &manifest, body.len() as u64).await?;
        self.blobs.put(&digest, bytes_stream(body), self.limits.manifest_max as u64).await?;
        let tags: Vec<&str> = match reference {
            ManifestRef::Tag(t) => vec![t.as_str()],
            ManifestRef::Digest(_) => extra_tags.iter().map(String::as_str).collect(),
        };
        self.meta.put_manifest(repo.as_str(), &record, &tags).await?;
        self.cache.invalidate(repo.as_str());
        if let (false, Manifest::Image(m)) = (tags.is_empty(), &manifest) {
            self.record_description(repo, &m.config).await;
        }
        Ok(PushedManifest { digest, subject: record.subject, extra_tags })
    }

    /// Takes the repository's search description from a tagged image's
    /// `org.opencontainers.image.description` label. Best effort: a config
    /// that is not an image config simply has none.
    async fn record_description(&self, repo: &RepoName, config: &Descriptor) {
        const CONFIG_MAX: u64 = 1 << 20;
        if config.size > CONFIG_MAX {
            return;
        }
        let Ok(mut reader) = self.blobs.get(&config.digest, None).await else { return };
        let mut bytes = Vec::new();
        if reader.read_to_end(&mut bytes).await.is_err() {
            return;
        }
        let Ok(parsed) = berth_oci::ImageConfig::parse(&bytes) else { return };
        if let Some(text) = parsed.labels().get(DESCRIPTION_LABEL) {
            let text: String = text.chars().take(1000).collect();
            if let Err(e) = self.meta.set_repository_description(repo.as_str(), Some(&text)).await {
                tracing::warn!(error = %e, "cannot record the repository description");
            }
        }
    }

    /// Removes a repository: its tags, manifests and blob links (the bytes
    /// go when garbage collection finds them unused).
    pub async fn delete_repository(&self, repo: &RepoName) -> Result<()> {
        let found = self.meta.delete_repository(repo.as_str()).await?;
        self.cache.invalidate(repo.as_str());
        if found { Ok(()) } else { Err(Error::NameUnknown(repo.to_string())) }
    }

    /// Checks that everything `manifest` points at is in `repo` with the
    /// declared size, and builds its record.
    async fn check_references(
        &self,
        repo: &RepoName,
        digest: &Digest,
        manifest: &Manifest,
        size: u64,
    ) -> Result<ManifestRecord> {
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        let artifact_type;
        let annotations;
        match manifest {
            Manifest::Image(m) => {
                for d in std::iter::once(&m.config).chain(&m.layers) {
                    if is_foreign(d) {
                        continue;
                    }
                    let linked = self.meta.blob_link(repo.as_str(), &d.digest).await?;
                    match linked {
                        None => return Err(Error::ManifestBlobUnknown(d.digest.to_string())),
                        Some(n) if n != d.size => {
                            return Err(Error::ManifestInvalid(format!(
                                "descriptor of {} says {} bytes, the blob has {n}",
                                d.digest, d.size
                            )));
                        }
                        Some(_) => blobs.push(d.digest.clone()),
                    }
                }
                artifact_type =
                    m.artifact_type.clone().or_else(|| Some(m.config.media_type.clone()));
                annotations = m.annotations.clone();
            }
            Manifest::Index(i) => {
                for d in &i.manifests {
                    let child = self.meta.manifest(repo.as_str(), &d.digest).await?;
                    match child {
                        // Recorded all the same: once pushed, the child is
                        // reached through this index, as GC walks children.
                        None if self.limits.sparse_indexes => children.push(d.digest.clone()),
                        None => return Err(Error::ManifestBlobUnknown(d.digest.to_string())),
                        Some(c) if c.size != d.size => {
                            return Err(Error::ManifestInvalid(format!(
                                "descriptor of {} says {} bytes, the manifest has {}",
                                d.digest, d.size, c.size
                            )));
                        }
                        Some(_) => children.push(d.digest.clone()),
                    }
                }
                artifact_type = i.artifact_type.clone();
                annotations = i.annotations.clone();
            }
        }
        Ok(ManifestRecord {
            digest: digest.clone(),
            media_type: manifest.media_type().to_owned(),
            size,
            subject: manifest.subject().map(|s| s.digest.clone()),
            artifact_type,
            annotations,
            blobs,
            children,
        })
    }

    /// Deletes a manifest (with its tags) by digest, or just a tag.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &ManifestRef) -> Result<()> {
        let found = match reference {
            ManifestRef::Digest(d) => self.meta.delete_manifest(repo.as_str(), d).await?,
            ManifestRef::Tag(t) => self.meta.delete_tag(repo.as_str(), t).await?,
        };
        self.cache.invalidate(repo.as_str());
        if found { Ok(()) } else { Err(Error::ManifestUnknown(reference.as_key().to_owned())) }
    }

    // ---- blobs ----

    /// The size of a blob `repo` holds.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let unknown = || Error::BlobUnknown(digest.to_string());
        let linked = self.meta.blob_link(repo.as_str(), digest).await?.ok_or_else(unknown)?;
        if !self.blobs.stat_is_cheap() {
            // Object storage: no HEAD per request. Blobs are stored before
            // they are linked and deleted only once unlinked, so the link
            // and its size are the truth.
            return Ok(linked);
        }
        // The link says the repository may read it; storage says it is there.
        let info = self.blobs.stat(digest).await?.ok_or_else(unknown)?;
        Ok(info.size)
    }

    /// Opens a blob (or a range of it) that `repo` holds; returns the reader and total size.
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobReader, u64)> {
        let size = self.stat_blob(repo, digest).await?;
        let reader = self.blobs.get(digest, range).await?;
        Ok((reader, size))
    }

    /// Removes a blob from a repository (its bytes go when GC finds them unused).
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo.as_str(), digest).await? {
            Ok(())
        } else {
            Err(Error::BlobUnknown(digest.to_string()))
        }
    }

    /// Links an existing blob into `repo` from `from` (or, if allowed and
    /// `from` is absent, from any repository). `false`: not mountable.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<bool> {
        let size = match from {
            Some(from) => match self.meta.blob_link(from.as_str(), digest).await? {
                Some(size) => size,
                None => return Ok(false),
            },
            // "Known to the registry" means linked somewhere: a stored blob
            // nothing links is garbage that collection may be removing.
            None if self.limits.mount_without_from => {
                match self.meta.blob_linked_anywhere(digest).await? {
                    Some(size) => size,
                    None => return Ok(false),
                }
            }
            None => return Ok(false),
        };
        // Touched, not just looked at: garbage collection may be deleting
        // it right now (its last link just went), and a touch either comes
        // first and keeps it for the grace period, or finds it gone.
        if !self.blobs.touch(digest).await? {
            return Ok(false);
        }
        self.meta.link_blob(repo.as_str(), digest, size).await?;
        Ok(true)
    }

    /// Stores a whole blob sent in one request (`POST ?digest=`).
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
        declared: Option<u64>,
    ) -> Result<()> {
        let limit = declared.unwrap_or(self.limits.blob_max).min(self.limits.blob_max);
        let size = self.blobs.put(digest, body, limit).await?;
        if let Some(declared) = declared.filter(|&d| d != size) {
            return Err(Error::SizeInvalid(format!("declared {declared} bytes, received {size}")));
        }
        self.meta.link_blob(repo.as_str(), digest, size).await?;
        Ok(())
    }

    // ---- uploads ----

    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadId> {
        let id = UploadId::generate();
        self.blobs.upload_start(&id).await?;
        let record = UploadRecord {
            id: id.clone(),
            repository: repo.as_str().to_owned(),
            started: now_secs(),
        };
        self.meta.create_upload(&record).await?;
        Ok(id)
    }

    /// Checks that upload `id` exists and belongs to `repo`.
    async fn own_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        match self.meta.upload(id).await? {
            Some(u) if u.repository == repo.as_str() => Ok(()),
            _ => Err(Error::BlobUploadUnknown),
        }
    }

    /// Bytes received so far.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<u64> {
        self.own_upload(repo, id).await?;
        Ok(self.blobs.upload_size(id).await?)
    }

    /// Appends a chunk. `start` is the first offset of a `Content-Range`
    /// (absent for a streamed upload); `declared` the chunk's length if known.
    /// Returns the new size.
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        declared: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.own_upload(repo, id).await?;
        let offset = match start {
            Some(s) => s,
            None => self.blobs.upload_size(id).await?,
        };
        let room = self.limits.blob_max.saturating_sub(offset);
        let length = match declared {
            Some(d) if d > room => {
                return Err(Error::SizeInvalid(format!(
                    "a blob may not exceed {} bytes",
                    self.limits.blob_max
                )));
            }
            Some(d) => ChunkLength::Exact(d),
            None => ChunkLength::AtMost(room),
        };
        Ok(self.blobs.upload_append(id, offset, body, length).await?)
    }

    /// Completes an upload (after appending `last_chunk`, if any) as `digest`.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, Option<u64>, ByteStream)>,
    ) -> Result<()> {
        self.own_upload(repo, id).await?;
        if let Some((start, declared, body)) = last_chunk {
            self.append_upload(repo, id, start, declared, body).await?;
        }
        let result = self.blobs.upload_commit(id, digest).await;
        // The upload is consumed whether or not the content matched.
        self.meta.delete_upload(id).await?;
        let size = result?;
        self.meta.link_blob(repo.as_str(), digest, size).await?;
        Ok(())
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.own_upload(repo, id).await?;
        self.meta.delete_upload(id).await?;
        self.blobs.upload_abort(id).await?;
        Ok(())
    }

    // ---- listings ----

    pub async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>> {
        if !self.meta.repository_exists(repo.as_str()).await? {
            return Err(Error::NameUnknown(repo.to_string()));
        }
        Ok(self.meta.list_tags(repo.as_str(), last, n).await?)
    }

    pub async fn catalog(&self, last: Option<&str>, n: usize) -> Result<Vec<String>> {
        Ok(self.meta.list_repositories(last, n).await?)
    }

    /// Descriptors of the manifests whose subject is `subject`, optionally
    /// only those of `artifact_type`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let records = self.meta.referrers(repo.as_str(), subject).await?;
        Ok(records
            .into_iter()
            .filter(|r| artifact_type.is_none() || r.artifact_type.as_deref() == artifact_type)
            .map(|r| Descriptor {
                artifact_type: r.artifact_type,
                annotations: r.annotations,
                ..Descriptor::new(&r.media_type, r.digest, r.size)
            })
            .collect())
    }
}

/// The `?tag=` parameters of a push, validated and without repeats. They
/// are defined for a push by digest only: with a tag in the path they are
/// refused rather than half applied.
fn check_extra_tags(reference: &ManifestRef, tags: &[String]) -> Result<Vec<String>> {
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    if let ManifestRef::Tag(t) = reference {
        return Err(Error::ManifestInvalid(format!(
            "tag parameters apply to a push by digest, not to tag {t:?}"
        )));
    }
    if tags.len() > TAGS_PER_PUSH_MAX {
        return Err(Error::TooManyTags(format!(
            "{} tags in one push, at most {TAGS_PER_PUSH_MAX}",
            tags.len()
        )));
    }
    let mut unique: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        validate_tag(tag).map_err(|_| Error::ManifestInvalid(format!("invalid tag {tag:?}")))?;
        if !unique.contains(tag) {
            unique.push(tag.clone());
        }
    }
    Ok(unique)
}

/// Layers that live elsewhere (`urls` on a non-distributable layer) need not be pushed.
fn is_foreign(d: &Descriptor) -> bool {
    d.urls.as_ref().is_some_and(|u| !u.is_empty())
        && (d.media_type == media_type::DOCKER_LAYER_FOREIGN_GZIP
            || d.media_type.starts_with("application/vnd.oci.image.layer.nondistributable"))
}

fn storage_io(e: std::io::Error) -> Error {
    Error::Storage(e.into())
}
