//! [`BlobStore`] on S3-compatible object storage, through `object_store`.
//!
//! ```text
//! <bucket>/
//!   blobs/<algorithm>/<hex>.<uuid>       a blob put whole (or an upload of one tail;
//!                                        older berths wrote blobs/<algorithm>/<hex>)
//!   objects/<upload uuid>                a blob that arrived as a multipart upload,
//!                                        completed where it was written
//!   uploads/<uuid>/tail-<from>-<to>      the bytes of an upload from <from> to <to>
//!                                        that do not yet fill a part
//! ```
//!
//! Which object holds which blob is recorded in the [`ObjectLedger`] (the
//! metadata database), beside every upload's multipart ID, part IDs, size,
//! tail and SHA-256 state ([`super::resumable`]): any replica can take the
//! next PATCH and commit without reading the upload back, a completed upload becomes
//! a blob without being copied, and no request path lists or HEADs the
//! bucket (the registry takes sizes from its metadata:
//! [`BlobStore::stat_is_cheap`] is false). Parts are [`PART_SIZE`] bytes;
//! what is left over at the end of a chunk (S3 refuses parts under 5 MiB
//! except the last) is kept as a tail object and joined to the next part.
//! Every change to an upload is a compare-and-swap on its ledger entry, and
//! a PATCH holds a lease in the entry while it streams, so two replicas
//! never write the same upload at once.
//!
//! Blobs appear whole and are never rewritten: a monolithic put is verified
//! in memory (small) or before its multipart upload is completed (large),
//! a chunked upload before it is recorded; new `blobs/` objects are created
//! conditionally (`If-None-Match: *`), and the ledger's record is the
//! commit: the first upload of a digest to be recorded wins, a later one's
//! object is deleted.
//!
//! Every object gets a key of its own, never used again: garbage collection
//! removes a blob's entry first and its object after, so a push of the same
//! digest in between must not write where the deletion is about to land. A
//! push that finds the blob recorded touches the entry instead (see
//! [`ObjectLedger::object_touch`]), which the collection's delete waits for.

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_reference::{Algorithm, Digest, Hasher};
use bytes::{Bytes, BytesMut};
use futures_util::stream::FuturesOrdered;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use serde::{Deserialize, Serialize};

use super::resumable::Sha256State;
use super::{
    BlobInfo, BlobReader, BlobStore, ByteRange, ByteStream, ChunkLength, ObjectEntry, ObjectLedger,
    StorageError, UploadId,
};

/// Bytes per multipart part: above S3's 5 MiB minimum, few requests per
/// blob (a 1 GiB layer is 64 parts), and 10,000 parts (S3's maximum) reach
/// 160 GiB, beyond the default blob limit.
pub const PART_SIZE: usize = 16 << 20;
/// Parts of one request sent at the same time (what an upload holds in
/// memory is about this many parts plus the one filling).
const PARTS_IN_FLIGHT: usize = 4;
/// How long a PATCH's claim on an upload lasts without renewal; a replica
/// that dies mid-PATCH blocks its upload for at most this long.
const LEASE: Duration = Duration::from_secs(30);
/// How presigned redirect URLs stay valid.
const PRESIGN_FOR: Duration = Duration::from_secs(600);

/// Where the bucket is and how to reach it.
#[derive(Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// `http://host:port` of an S3-compatible service; `None`: AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Answer blob GETs with a 307 to a presigned URL.
    pub redirect: bool,
    /// The endpoint clients reach, if not `endpoint`, for presigned URLs.
    pub public_endpoint: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("redirect", &self.redirect)
            .field("public_endpoint", &self.public_endpoint)
            .finish()
    }
}

impl S3Settings {
    fn client(&self, endpoint: Option<&str>) -> Result<AmazonS3, StorageError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            // The registry hashes every byte itself; signing the payload
            // would hash it a second time (TLS guards it on the way).
            .with_unsigned_payload(true);
        if let Some(e) = endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        // Unset keys fall back to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
        let key = self.access_key_id.clone().or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
        let secret =
            self.secret_access_key.clone().or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
        if let (Some(k), Some(s)) = (key, secret) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        }
        b.build().map_err(os_err)
    }
}

/// An upload as the ledger keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UploadState {
    /// The multipart upload of `uploads/<id>/data`, once a part was sent.
    multipart: Option<String>,
    /// Part IDs (ETags) in order.
    parts: Vec<String>,
    /// Bytes received.
    size: u64,
    /// Bytes at the end not yet in a part, kept in `tail-<size - tail>-<size>`.
    tail: u64,
    /// Unix seconds until which a PATCH owns the upload.
    lease_until: i64,
    /// SHA-256 of the bytes in `parts` (not the tail), so that any replica
    /// can commit without reading the upload back; `None` only for state
    /// written without it.
    #[serde(default)]
    sha256: Option<Sha256State>,
}

impl UploadState {
    fn decode(bytes: &[u8]) -> Result<UploadState, StorageError> {
        serde_json::from_slice(bytes).map_err(|e| StorageError::Ledger(e.to_string()))
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("upload state serialises")
    }
}

pub struct S3BlobStore {
    store: AmazonS3,
    /// Signs redirect URLs for the public endpoint, when redirects are on.
    signer: Option<AmazonS3>,
    ledger: Arc<dyn ObjectLedger>,
}

fn os_err(e: object_store::Error) -> StorageError {
    StorageError::ObjectStore(e.to_string())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fresh key for a blob written whole.
fn blob_key(d: &Digest) -> Key {
    let unique = uuid::Uuid::new_v4().simple();
    Key::from(format!("blobs/{}/{}.{unique}", d.algorithm().as_str(), d.hex()))
}

fn data_key(id: &UploadId) -> Key {
    Key::from(format!("objects/{id}"))
}

/// The tail of an upload in `state`: named by where it starts and ends, so
/// a chunk never overwrites the tail of a state it has not yet replaced.
fn tail_key(id: &UploadId, state: &UploadState) -> Key {
    Key::from(format!("uploads/{id}/tail-{}-{}", state.size - state.tail, state.size))
}

impl S3BlobStore {
    /// A store on the bucket `settings` names; upload state goes to `ledger`.
    /// Connects lazily: nothing is sent until the first request.
    pub fn new(
        settings: &S3Settings,
        ledger: Arc<dyn ObjectLedger>,
    ) -> Result<S3BlobStore, StorageError> {
        let store = settings.client(settings.endpoint.as_deref())?;
        let signer = if settings.redirect {
            let public = settings.public_endpoint.as_deref().or(settings.endpoint.as_deref());
            Some(settings.client(public)?)
        } else {
            None
        };
        Ok(S3BlobStore { store, signer, ledger })
    }

    async fn state(&self, id: &UploadId) -> Result<(i64, UploadState), StorageError> {
        let entry = self.ledger.ledger_get(id).await?.ok_or(StorageError::UploadNotFound)?;
        Ok((entry.version, UploadState::decode(&entry.state)?))
    }

    /// Writes `state` if the entry is still at `version`; returns the new version.
    async fn swap(
        &self,
        id: &UploadId,
        version: i64,
        state: &UploadState,
    ) -> Result<i64, StorageError> {
        if self.ledger.ledger_replace(id, version, &state.encode()).await? {
            Ok(version + 1)
        } else {
            Err(StorageError::UploadBusy)
        }
    }

    /// The object holding `digest`; `NotFound` if none is recorded.
    async fn object_key(&self, digest: &Digest) -> Result<Key, StorageError> {
        let entry = self.ledger.object_get(digest).await?.ok_or(StorageError::NotFound)?;
        Ok(Key::from(entry.key))
    }

    /// Records `key` as `digest`'s object; `false` if another was recorded
    /// first, which is then touched (the caller deletes its own object).
    async fn record(&self, digest: &Digest, key: &Key, size: u64) -> Result<bool, StorageError> {
        let entry = ObjectEntry { key: key.to_string(), size, created: now_secs() };
        // Between a lost insert and the touch, collection may remove the
        // winner: then insert again.
        for _ in 0..8 {
            if self.ledger.object_insert(digest, &entry).await? {
                return Ok(true);
            }
            if self.ledger.object_touch(digest, now_secs()).await? {
                return Ok(false);
            }
        }
        Err(StorageError::Ledger(format!("{digest}: recorded and removed repeatedly")))
    }

    async fn read_object(&self, key: &Key) -> Result<Bytes, StorageError> {
        match self.store.get(key).await {
            Ok(r) => r.bytes().await.map_err(os_err),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
            Err(e) => Err(os_err(e)),
        }
    }

    /// Creates `key` unless it exists; content-addressed, so an existing
    /// object already holds these bytes.
    async fn create(&self, key: &Key, data: Bytes) -> Result<(), StorageError> {
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(key, PutPayload::from(data), opts).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(os_err(e)),
        }
    }

    /// Hashes a stored object by streaming it.
    async fn hash_object(&self, key: &Key, algorithm: Algorithm) -> Result<Digest, StorageError> {
        let mut stream = self.store.get(key).await.map_err(os_err)?.into_stream();
        let mut h = Hasher::new(algorithm);
        while let Some(chunk) = stream.next().await {
            h.update(&chunk.map_err(os_err)?);
        }
        Ok(h.finish())
    }

    /// Removes what an upload left in the bucket and its ledger entry.
    /// `completed`: its multipart upload was completed, and the object is
    /// to go (`Some(true)`) or stays as a blob (`Some(false)`).
    async fn clean_up(&self, id: &UploadId, state: &UploadState, completed: Option<bool>) {
        if state.tail > 0 {
            let _ = self.store.delete(&tail_key(id, state)).await;
        }
        match (completed, &state.multipart) {
            (Some(true), _) => {
                let _ = self.store.delete(&data_key(id)).await;
            }
            (Some(false), _) => {}
            (None, Some(m)) => {
                let _ = self.store.abort_multipart(&data_key(id), &m.clone()).await;
            }
            (None, None) => {}
        }
        let _ = self.ledger.ledger_remove(id).await;
    }

    async fn open_range(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        if let Some(r) = range
            && r.first > r.last
        {
            return Err(StorageError::InvalidRange);
        }
        let opts = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.first..r.last + 1)),
            ..GetOptions::default()
        };
        let key = self.object_key(digest).await?;
        let result = match self.store.get_opts(&key, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(StorageError::NotFound),
            // S3 answers 416 to a range starting past the end.
            Err(e) if range.is_some() && e.to_string().contains("416") => {
                return Err(StorageError::InvalidRange);
            }
            Err(e) => return Err(os_err(e)),
        };
        // S3 shortens a range that runs past the end; the contract refuses it.
        if let Some(r) = range
            && (result.range.start != r.first || result.range.end != r.last + 1)
        {
            return Err(StorageError::InvalidRange);
        }
        Ok(Box::pin(result.into_stream().map_err(io::Error::other)))
    }
}

/// One part on its way to the bucket.
type PartFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<PartId, StorageError>> + Send>>;

/// Reads `body` into parts of [`PART_SIZE`], sending each as it fills;
/// returns the bytes left over.
struct PartSender<'a> {
    store: &'a S3BlobStore,
    id: &'a UploadId,
    multipart: Option<String>,
    next_index: usize,
    /// Advanced by every part sent.
    sha256: Option<Sha256State>,
    in_flight: FuturesOrdered<PartFuture>,
    done: Vec<String>,
}

impl PartSender<'_> {
    async fn send(&mut self, part: Bytes) -> Result<(), StorageError> {
        let key = data_key(self.id);
        let multipart = match &self.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self.store.store.create_multipart(&key).await.map_err(os_err)?;
                self.multipart = Some(m.clone());
                m
            }
        };
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.collect_one().await?;
        }
        if let Some(h) = self.sha256.as_mut() {
            h.update_blocks(&part);
        }
        let store = self.store.store.clone();
        let index = self.next_index;
        self.next_index += 1;
        self.in_flight.push_back(Box::pin(async move {
            store.put_part(&key, &multipart, index, PutPayload::from(part)).await.map_err(os_err)
        }));
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), StorageError> {
        if let Some(part) = self.in_flight.next().await {
            self.done.push(part?.content_id);
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<Vec<String>, StorageError> {
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        Ok(std::mem::take(&mut self.done))
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    /// From the ledger: no request to the bucket.
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StorageError> {
        Ok(self.ledger.object_get(digest).await?.map(|e| BlobInfo {
            digest: digest.clone(),
            size: e.size,
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(e.created.max(0) as u64),
        }))
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobReader, StorageError> {
        let stream = self.open_range(digest, range).await?;
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }

    async fn get_stream(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        self.open_range(digest, range).await
    }

    async fn put(
        &self,
        digest: &Digest,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<u64, StorageError> {
        let key = blob_key(digest);
        // Already stored: verify the body, store nothing. Touched first, so
        // that collection leaves it to the link this put is followed by.
        let present = self.ledger.object_touch(digest, now_secs()).await?;
        let mut hasher = Hasher::new(digest.algorithm());
        let mut buf = BytesMut::new();
        let mut size = 0u64;
        let mut upload: Option<object_store::WriteMultipart> = None;
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(StorageError::TooLarge { limit });
                }
                hasher.update(&chunk);
                if present {
                    continue;
                }
                buf.extend_from_slice(&chunk);
                if buf.len() >= PART_SIZE {
                    // Large: stream it as a multipart upload to the blob's
                    // own key, completed only once the digest is verified.
                    let w = match &mut upload {
                        Some(w) => w,
                        None => {
                            let m = self.store.put_multipart(&key).await.map_err(os_err)?;
                            upload.insert(object_store::WriteMultipart::new_with_chunk_size(
                                m, PART_SIZE,
                            ))
                        }
                    };
                    w.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(os_err)?;
                    w.put(buf.split().freeze());
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if let Some(w) = upload {
                let _ = w.abort().await;
            }
            return Err(e);
        }
        let actual = hasher.finish();
        if actual != *digest {
            if let Some(w) = upload {
                let _ = w.abort().await;
            }
            return Err(StorageError::DigestMismatch { expected: digest.clone(), actual });
        }
        if present {
            return Ok(size);
        }
        match upload {
            None => self.create(&key, buf.freeze()).await?,
            Some(mut w) => {
                w.put(buf.freeze());
                w.finish().await.map_err(os_err)?;
            }
        }
        // Recorded already by a concurrent put of the same bytes: this copy goes.
        if !self.record(digest, &key, size).await? {
            let _ = self.store.delete(&key).await;
        }
        Ok(size)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StorageError> {
        let Some(entry) = self.ledger.object_get(digest).await? else { return Ok(false) };
        match self.store.delete(&Key::from(entry.key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(os_err(e)),
        }
        self.ledger.object_remove(digest).await
    }

    async fn touch(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.ledger.object_touch(digest, now_secs()).await
    }

    fn ledger_backed(&self) -> bool {
        true
    }

    /// `DeleteObjects`, up to 1,000 keys a request.
    async fn delete_objects(&self, keys: Vec<String>) -> Result<(), StorageError> {
        let keys = futures_util::stream::iter(keys.into_iter().map(|k| Ok(Key::from(k)))).boxed();
        let mut results = self.store.delete_stream(keys);
        let mut failed = Vec::new();
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => failed.push(e.to_string()),
            }
        }
        match failed.first() {
            None => Ok(()),
            Some(e) => {
                Err(StorageError::ObjectStore(format!("{} deletes failed: {e}", failed.len())))
            }
        }
    }

    /// Lists `blobs/`, `objects/` and `uploads/`; an object is an orphan
    /// when no blob entry names it (or, under `uploads/`, no upload entry
    /// has its ID). The ledger is read after the listing, so an object
    /// recorded meanwhile is known; `before` leaves writes in flight alone.
    async fn sweep_orphans(
        &self,
        before: SystemTime,
        dry_run: bool,
    ) -> Result<(usize, u64), StorageError> {
        let before =
            before.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let mut listed = Vec::new();
        for prefix in ["blobs", "objects", "uploads"] {
            let mut objects = self.store.list(Some(&Key::from(prefix)));
            while let Some(meta) = objects.next().await {
                let meta = meta.map_err(os_err)?;
                if meta.last_modified.timestamp() < before {
                    listed.push((meta.location.to_string(), meta.size));
                }
            }
        }
        let known: std::collections::HashSet<String> =
            self.ledger.object_list().await?.into_iter().map(|(_, e)| e.key).collect();
        let uploads: std::collections::HashSet<String> = self
            .ledger
            .ledger_list()
            .await?
            .into_iter()
            .map(|(id, _)| id.as_str().to_owned())
            .collect();
        let orphans: Vec<(String, u64)> = listed
            .into_iter()
            .filter(|(key, _)| match key.strip_prefix("uploads/") {
                Some(rest) => !uploads.contains(rest.split('/').next().unwrap_or_default()),
                None => !known.contains(key),
            })
            .collect();
        let count = orphans.len();
        let bytes = orphans.iter().map(|(_, n)| n).sum();
        if !dry_run {
            self.delete_objects(orphans.into_iter().map(|(k, _)| k).collect()).await?;
        }
        Ok((count, bytes))
    }

    /// From the ledger: the bucket is never listed.
    async fn list(&self) -> Result<Vec<BlobInfo>, StorageError> {
        Ok(self
            .ledger
            .object_list()
            .await?
            .into_iter()
            .map(|(digest, e)| BlobInfo {
                digest,
                size: e.size,
                modified: SystemTime::UNIX_EPOCH + Duration::from_secs(e.created.max(0) as u64),
            })
            .collect())
    }

    async fn upload_start(&self, id: &UploadId) -> Result<(), StorageError> {
        let state = UploadState { sha256: Some(Sha256State::default()), ..UploadState::default() };
        if !self.ledger.ledger_insert(id, &state.encode()).await? {
            return Err(StorageError::Ledger(format!("upload {id} exists")));
        }
        Ok(())
    }

    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        mut body: ByteStream,
        length: ChunkLength,
    ) -> Result<u64, StorageError> {
        let (version, state) = self.state(id).await?;
        if state.size != offset {
            return Err(StorageError::OffsetMismatch { expected: state.size, given: offset });
        }
        if state.lease_until > now_secs() {
            return Err(StorageError::UploadBusy);
        }
        let mut leased = state.clone();
        leased.lease_until = now_secs() + LEASE.as_secs() as i64;
        let mut version = self.swap(id, version, &leased).await?;

        let mut buf = BytesMut::new();
        if state.tail > 0 {
            buf.extend_from_slice(&self.read_object(&tail_key(id, &state)).await?);
        }
        let mut sender = PartSender {
            store: self,
            id,
            multipart: state.multipart.clone(),
            next_index: state.parts.len(),
            sha256: state.sha256.clone(),
            in_flight: FuturesOrdered::new(),
            done: Vec::new(),
        };
        let mut received = 0u64;
        let streamed = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                received += chunk.len() as u64;
                if received > length.max() {
                    return Err(StorageError::TooLarge { limit: length.max() });
                }
                buf.extend_from_slice(&chunk);
                while buf.len() >= PART_SIZE {
                    sender.send(buf.split_to(PART_SIZE).freeze()).await?;
                }
                // Keep the lease while a long chunk streams.
                if leased.lease_until - now_secs() < (LEASE.as_secs() as i64) * 2 / 3 {
                    leased.lease_until = now_secs() + LEASE.as_secs() as i64;
                    version = self.swap(id, version, &leased).await?;
                }
            }
            if let ChunkLength::Exact(expected) = length
                && received != expected
            {
                return Err(StorageError::Short { expected, received });
            }
            let parts = sender.finish().await?;
            let multipart = sender.multipart.clone();
            let next = UploadState {
                multipart,
                parts: state.parts.iter().cloned().chain(parts).collect(),
                size: offset + received,
                tail: buf.len() as u64,
                lease_until: 0,
                sha256: sender.sha256.clone(),
            };
            if next.tail > 0 {
                let key = tail_key(id, &next);
                self.store
                    .put(&key, PutPayload::from(buf.split().freeze()))
                    .await
                    .map_err(os_err)?;
            }
            version = self.swap(id, version, &next).await?;
            Ok(next)
        }
        .await;
        match streamed {
            Ok(next) => {
                if state.tail > 0 && (next.tail == 0 || tail_key(id, &next) != tail_key(id, &state))
                {
                    let _ = self.store.delete(&tail_key(id, &state)).await;
                }
                Ok(next.size)
            }
            Err(e) => {
                // The upload stays where it was; parts sent past it are
                // overwritten by the next chunk. Release the lease.
                let mut back = state.clone();
                back.lease_until = 0;
                // Keep a multipart upload this chunk began, for the next one.
                back.multipart = sender.multipart.clone();
                let _ = self.swap(id, version, &back).await;
                Err(e)
            }
        }
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64, StorageError> {
        Ok(self.state(id).await?.1.size)
    }

    async fn upload_commit(&self, id: &UploadId, digest: &Digest) -> Result<u64, StorageError> {
        let (version, state) = self.state(id).await?;
        if state.lease_until > now_secs() {
            return Err(StorageError::UploadBusy);
        }
        // Claim the upload for good: no PATCH may follow a commit.
        let mut claimed = state.clone();
        claimed.lease_until = i64::MAX;
        self.swap(id, version, &claimed).await?;
        let tail = if state.tail > 0 {
            self.read_object(&tail_key(id, &state)).await?
        } else {
            Bytes::new()
        };
        // The saved state plus the tail: the digest, whichever replica
        // received the bytes (sha512 uploads are hashed from the object).
        let known = match &state.sha256 {
            Some(h) if digest.algorithm() == Algorithm::Sha256 => Some(h.clone().finish(&tail)),
            _ => None,
        };
        let Some(multipart) = state.multipart.clone() else {
            // Everything is in the tail: one conditional create.
            let actual = known.unwrap_or_else(|| Digest::of(digest.algorithm(), &tail));
            let result = async {
                if actual != *digest {
                    return Err(StorageError::DigestMismatch { expected: digest.clone(), actual });
                }
                if !self.ledger.object_touch(digest, now_secs()).await? {
                    let key = blob_key(digest);
                    self.create(&key, tail).await?;
                    if !self.record(digest, &key, state.size).await? {
                        let _ = self.store.delete(&key).await;
                    }
                }
                Ok(state.size)
            }
            .await;
            self.clean_up(id, &state, None).await;
            return result;
        };
        let result = async {
            let key = data_key(id);
            let mut parts: Vec<PartId> =
                state.parts.iter().map(|p| PartId { content_id: p.clone() }).collect();
            if !tail.is_empty() {
                let p = self
                    .store
                    .put_part(&key, &multipart, parts.len(), PutPayload::from(tail))
                    .await
                    .map_err(os_err)?;
                parts.push(p);
            }
            self.store.complete_multipart(&key, &multipart, parts).await.map_err(os_err)?;
            Ok::<_, StorageError>(())
        }
        .await;
        if let Err(e) = result {
            self.clean_up(id, &state, None).await;
            return Err(e);
        }
        let data = data_key(id);
        let result = async {
            let actual = match known {
                Some(d) => d,
                None => self.hash_object(&data, digest.algorithm()).await?,
            };
            if actual != *digest {
                return Err(StorageError::DigestMismatch { expected: digest.clone(), actual });
            }
            // The completed object is the blob; `false`: another upload of
            // the same bytes was recorded first, so this copy goes.
            self.record(digest, &data, state.size).await
        }
        .await;
        let keep = matches!(result, Ok(true));
        self.clean_up(id, &state, Some(!keep)).await;
        result.map(|_| state.size)
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<(), StorageError> {
        let (_, state) = self.state(id).await?;
        self.clean_up(id, &state, None).await;
        Ok(())
    }

    async fn upload_list(&self) -> Result<Vec<(UploadId, SystemTime)>, StorageError> {
        Ok(self
            .ledger
            .ledger_list()
            .await?
            .into_iter()
            .map(|(id, t)| (id, SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64)))
            .collect())
    }

    fn stat_is_cheap(&self) -> bool {
        false
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, StorageError> {
        let Some(signer) = &self.signer else { return Ok(None) };
        let url = signer
            .signed_url(axum::http::Method::GET, &self.object_key(digest).await?, PRESIGN_FOR)
            .await
            .map_err(os_err)?;
        Ok(Some(url.to_string()))
    }
}
