//! [`BlobStore`] on a local filesystem.
//!
//! ```text
//! <root>/
//!   blobs/<algorithm>/<first two hex>/<hex>   complete, verified blobs
//!   uploads/<uuid>                            uploads in progress (appendable)
//!   tmp/<uuid>                                `put` in progress, renamed into blobs/
//!   tmp/gc-<algorithm>-<hex>                  a blob garbage collection is deleting
//! ```
//!
//! A blob appears by `rename(2)` from `tmp/` or `uploads/` (same filesystem),
//! so readers never see a partial blob. Durability, so that metadata written
//! after a call returns never names missing bytes even after a crash or power
//! loss: file contents are fsynced before the rename, and the directory
//! holding the new name (and any directory created for it) after it. An
//! acknowledged upload chunk is fsynced too, so the size a client was told
//! survives. Paths are built only from a validated [`Digest`] or [`UploadId`].

use std::collections::HashMap;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use berth_reference::{Algorithm, Digest, Hasher};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::{
    BlobInfo, BlobReader, BlobStore, ByteRange, ByteStream, ChunkLength, StorageError, UploadId,
};

const WRITE_BUFFER: usize = 1 << 20;

/// Running sha256 of an upload, so committing a large upload does not read
/// it back. Lost on restart (or unknown for sha512): commit then re-hashes.
struct UploadState {
    hasher: Option<Hasher>,
}

pub struct FsBlobStore {
    root: PathBuf,
    uploads: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<UploadState>>>>,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsBlobStore> {
        let root = root.into();
        for dir in ["blobs", "uploads", "tmp"] {
            let dir = root.join(dir);
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir)?;
                sync_dir(&root)?;
            }
        }
        Ok(FsBlobStore { root, uploads: Mutex::new(HashMap::new()) })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join(digest.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    /// Where garbage collection moves a blob before it deletes it.
    fn aside_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("tmp").join(format!("gc-{}-{}", digest.algorithm().as_str(), digest.hex()))
    }

    fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.as_str())
    }

    fn upload_state(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<UploadState>> {
        let mut map = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(UploadState { hasher: None })))
            .clone()
    }

    fn forget_upload(&self, id: &UploadId) {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Puts back a blob a collection moved aside and did not delete (it
    /// was being judged: keeping it is always safe).
    async fn restore_aside(&self, name: &str, aside: &Path) -> Result<(), StorageError> {
        let Some((alg, hex)) = name.split_once('-') else { return Ok(()) };
        let Ok(digest) = Digest::parse(&format!("{alg}:{hex}")) else { return Ok(()) };
        match self.install(aside, &digest).await {
            Err(StorageError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Moves a verified file, whose content is already synced, into place
    /// durably.
    async fn install(&self, from: &Path, digest: &Digest) -> Result<(), StorageError> {
        let to = self.blob_path(digest);
        let blobs = self.root.join("blobs");
        let from = from.to_owned();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let parent = to.parent().expect("blob paths have a parent");
            create_dirs_durably(&blobs, parent)?;
            std::fs::rename(&from, &to)?;
            sync_dir(parent)
        })
        .await
        .map_err(io::Error::other)?
        .map_err(StorageError::from)
    }
}

/// fsyncs a directory, making the names created or removed in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing ancestors below `base`, syncing the parent
/// of each directory created so the new names survive a crash.
fn create_dirs_durably(base: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() || dir == base {
        return Ok(());
    }
    let parent = dir.parent().ok_or_else(|| io::Error::other("no parent directory"))?;
    create_dirs_durably(base, parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        // A concurrent write created it: it synced the parent itself.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes written between two starts of writeback.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Starts writing a file's dirty pages to disk while more data arrives, so
/// the fsync that makes a large blob durable waits only for the last few
/// megabytes instead of the whole blob.
struct Writeback {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
    pending: u64,
}

impl Writeback {
    /// For `file`, which must stay open for as long as this is used.
    fn new(file: &tokio::fs::File) -> Writeback {
        #[cfg(not(target_os = "linux"))]
        let _ = file;
        Writeback {
            #[cfg(target_os = "linux")]
            fd: std::os::fd::AsRawFd::as_raw_fd(file),
            pending: 0,
        }
    }

    fn wrote(&mut self, n: u64) {
        self.pending += n;
        if self.pending < WRITEBACK_EVERY {
            return;
        }
        self.pending = 0;
        // SAFETY: the descriptor belongs to a file the caller keeps open;
        // SYNC_FILE_RANGE_WRITE only queues writeback and touches no memory.
        // Failure is harmless: the fsync that follows the copy does it all.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::sync_file_range(self.fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

/// Copies `body` to `out`, hashing with `hasher` and refusing more than `limit` bytes.
async fn copy_limited<W: tokio::io::AsyncWrite + Unpin>(
    mut body: ByteStream,
    out: &mut W,
    writeback: &mut Writeback,
    hasher: &mut Option<Hasher>,
    limit: u64,
) -> Result<u64, StorageError> {
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(StorageError::TooLarge { limit });
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        out.write_all(&chunk).await?;
        writeback.wrote(chunk.len() as u64);
    }
    out.flush().await?;
    Ok(written)
}

/// Bytes read per step when streaming a blob out.
const READ_CHUNK: usize = 1 << 20;

/// Reads `len` bytes at `offset`; a blob shorter than its listed size is an
/// error. On Linux the buffer is not zeroed first: `pread` fills it, which
/// saves a pass over every byte served.
#[cfg(target_os = "linux")]
fn read_exactly_at(file: &std::fs::File, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
    use std::os::fd::AsRawFd;
    let mut buf = Vec::<u8>::with_capacity(len);
    while buf.len() < len {
        let filled = buf.len();
        let at = libc::off_t::try_from(offset + filled as u64).map_err(io::Error::other)?;
        // SAFETY: the destination is the vector's spare capacity, which holds
        // at least `len - filled` bytes; pread writes no more than that.
        let n = unsafe {
            libc::pread(file.as_raw_fd(), buf.as_mut_ptr().add(filled).cast(), len - filled, at)
        };
        match n {
            n if n > 0 => {
                // SAFETY: pread initialised the `n` bytes after `filled`.
                unsafe { buf.set_len(filled + n as usize) };
            }
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf.into())
}

#[cfg(not(target_os = "linux"))]
fn read_exactly_at(file: &std::fs::File, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf.into())
}

/// Hashes a whole file with `algorithm` (off the async threads).
async fn hash_file(path: PathBuf, algorithm: Algorithm) -> Result<Digest, StorageError> {
    tokio::task::spawn_blocking(move || -> io::Result<Digest> {
        let file = std::fs::File::open(path)?;
        let mut reader = berth_reference::HashingReader::new(file, algorithm);
        io::copy(&mut reader, &mut io::sink())?;
        Ok(reader.finish().0)
    })
    .await
    .map_err(io::Error::other)?
    .map_err(StorageError::from)
}

fn not_found_as(e: io::Error, as_: StorageError) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound { as_ } else { StorageError::Io(e) }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(BlobInfo {
                digest: digest.clone(),
                size: m.len(),
                modified: m.modified()?,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobReader, StorageError> {
        let mut file = tokio::fs::File::open(self.blob_path(digest))
            .await
            .map_err(|e| not_found_as(e, StorageError::NotFound))?;
        let Some(range) = range else { return Ok(Box::pin(file)) };
        let size = file.metadata().await?.len();
        if range.first > range.last || range.last >= size {
            return Err(StorageError::InvalidRange);
        }
        file.seek(SeekFrom::Start(range.first)).await?;
        Ok(Box::pin(file.take(range.len())))
    }

    /// Positioned reads of `READ_CHUNK` bytes straight into the buffers sent,
    /// each on the blocking pool (one copy, no thread held between reads),
    /// one read ahead of the sending.
    async fn get_stream(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        let path = self.blob_path(digest);
        let file = tokio::task::spawn_blocking(move || std::fs::File::open(path))
            .await
            .map_err(io::Error::other)?
            .map_err(|e| not_found_as(e, StorageError::NotFound))?;
        let size = file.metadata()?.len();
        let (first, end) = match range {
            None => (0, size),
            Some(r) if r.first > r.last || r.last >= size => {
                return Err(StorageError::InvalidRange);
            }
            Some(r) => (r.first, r.last + 1),
        };
        let file = Arc::new(file);
        // The next read runs while the previous buffer is being sent.
        let stream = futures_util::stream::iter((first..end).step_by(READ_CHUNK))
            .map(move |at| {
                let file = file.clone();
                let want = (end - at).min(READ_CHUNK as u64) as usize;
                async move {
                    tokio::task::spawn_blocking(move || read_exactly_at(&file, at, want))
                        .await
                        .map_err(io::Error::other)?
                }
            })
            .buffered(2);
        Ok(Box::pin(stream))
    }

    async fn put(
        &self,
        digest: &Digest,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, StorageError> {
        let tmp = self.root.join("tmp").join(UploadId::generate().as_str());
        let result = async {
            let file = tokio::fs::File::create(&tmp).await?;
            let mut writeback = Writeback::new(&file);
            let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
            let mut hasher = Some(Hasher::new(digest.algorithm()));
            let size = copy_limited(body, &mut out, &mut writeback, &mut hasher, limit).await?;
            let actual = hasher.take().map(Hasher::finish).expect("hasher present");
            if actual != *digest {
                return Err(StorageError::DigestMismatch { expected: digest.clone(), actual });
            }
            out.get_ref().sync_all().await?;
            drop(out);
            self.install(&tmp, digest).await?;
            Ok(size)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StorageError> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A new modification time: `put` renames a new file into place, which
    /// has one already.
    async fn touch(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.blob_path(digest);
        tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(f) => f.set_modified(SystemTime::now()).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
        .map_err(io::Error::other)?
        .map_err(StorageError::from)
    }

    /// Renames the blob aside first, then judges the file it moved: a put
    /// renames a new file into place and a touch changes the time of the
    /// one there, so either the racing write is what was moved (fresh: put
    /// back) or it comes after the move (and stores the blob again).
    async fn delete_unless_touched(
        &self,
        digest: &Digest,
        before: SystemTime,
    ) -> Result<Option<u64>, StorageError> {
        let (path, aside) = (self.blob_path(digest), self.aside_path(digest));
        tokio::task::spawn_blocking(move || -> io::Result<Option<u64>> {
            match std::fs::rename(&path, &aside) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
            let meta = std::fs::metadata(&aside)?;
            if meta.modified()? >= before {
                std::fs::rename(&aside, &path)?;
                return Ok(None);
            }
            std::fs::remove_file(&aside)?;
            Ok(Some(meta.len()))
        })
        .await
        .map_err(io::Error::other)?
        .map_err(StorageError::from)
    }

    async fn list(&self) -> Result<Vec<BlobInfo>, StorageError> {
        let root = self.root.join("blobs");
        tokio::task::spawn_blocking(move || -> io::Result<Vec<BlobInfo>> {
            let mut out = Vec::new();
            for alg in std::fs::read_dir(&root)? {
                let alg = alg?;
                let alg_name = alg.file_name().to_string_lossy().into_owned();
                for prefix in std::fs::read_dir(alg.path())? {
                    for entry in std::fs::read_dir(prefix?.path())? {
                        let entry = entry?;
                        let name = entry.file_name().to_string_lossy().into_owned();
                        // Anything that is not a well-formed digest is not ours.
                        let Ok(digest) = Digest::parse(&format!("{alg_name}:{name}")) else {
                            continue;
                        };
                        let meta = entry.metadata()?;
                        out.push(BlobInfo { digest, size: meta.len(), modified: meta.modified()? });
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
        .map_err(StorageError::from)
    }

    async fn upload_start(&self, id: &UploadId) -> Result<(), StorageError> {
        tokio::fs::File::create(self.upload_path(id)).await?;
        // The client is about to be told this upload exists.
        let uploads = self.root.join("uploads");
        tokio::task::spawn_blocking(move || sync_dir(&uploads))
            .await
            .map_err(io::Error::other)??;
        let state = self.upload_state(id);
        state.lock().await.hasher = Some(Hasher::new(Algorithm::Sha256));
        Ok(())
    }

    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        body: ByteStream,
        length: ChunkLength,
    ) -> Result<u64, StorageError> {
        let state = self.upload_state(id);
        let mut state = state.lock().await;
        let path = self.upload_path(id);
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(|e| not_found_as(e, StorageError::UploadNotFound))?;
        let size = file.metadata().await?.len();
        if size != offset {
            return Err(StorageError::OffsetMismatch { expected: size, given: offset });
        }
        let mut writeback = Writeback::new(&file);
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let copied = async {
            let n = copy_limited(body, &mut out, &mut writeback, &mut state.hasher, length.max())
                .await?;
            if let ChunkLength::Exact(expected) = length
                && n != expected
            {
                return Err(StorageError::Short { expected, received: n });
            }
            out.get_ref().sync_data().await?;
            Ok(n)
        }
        .await;
        match copied {
            Ok(n) => Ok(offset + n),
            Err(e) => {
                // Part of the chunk may be on disk: drop it so the upload stays
                // at a size the client was told, and forget the running hash.
                let _ = out.flush().await;
                let file = out.into_inner();
                let _ = file.set_len(offset).await;
                state.hasher = None;
                Err(e)
            }
        }
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64, StorageError> {
        let meta = tokio::fs::metadata(self.upload_path(id))
            .await
            .map_err(|e| not_found_as(e, StorageError::UploadNotFound))?;
        Ok(meta.len())
    }

    async fn upload_commit(&self, id: &UploadId, digest: &Digest) -> Result<u64, StorageError> {
        let state = self.upload_state(id);
        let mut state = state.lock().await;
        self.forget_upload(id);
        let path = self.upload_path(id);
        let size = match tokio::fs::metadata(&path).await {
            Ok(m) => m.len(),
            Err(e) => return Err(not_found_as(e, StorageError::UploadNotFound)),
        };
        let actual = match state.hasher.take() {
            Some(h) if digest.algorithm() == Algorithm::Sha256 => h.finish(),
            _ => hash_file(path.clone(), digest.algorithm()).await?,
        };
        if actual != *digest {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(StorageError::DigestMismatch { expected: digest.clone(), actual });
        }
        // Chunks were synced as they came; this covers data written by a
        // process that crashed before it could sync.
        let file = tokio::fs::File::open(&path).await?;
        file.sync_all().await?;
        // The upload may have been idle for long: the blob is new now, and
        // garbage collection's grace period must cover it until it is linked.
        file.into_std().await.set_modified(SystemTime::now())?;
        self.install(&path, digest).await?;
        Ok(size)
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<(), StorageError> {
        let state = self.upload_state(id);
        let _guard = state.lock().await;
        self.forget_upload(id);
        tokio::fs::remove_file(self.upload_path(id))
            .await
            .map_err(|e| not_found_as(e, StorageError::UploadNotFound))
    }

    async fn upload_list(&self) -> Result<Vec<(UploadId, SystemTime)>, StorageError> {
        let mut out = Vec::new();
        let mut dir = tokio::fs::read_dir(self.root.join("uploads")).await?;
        while let Some(entry) = dir.next_entry().await? {
            if let Some(id) = UploadId::parse(&entry.file_name().to_string_lossy()) {
                // Committed or cancelled since the listing: not an upload any more.
                match entry.metadata().await {
                    Ok(m) => out.push((id, m.modified()?)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out)
    }

    /// `tmp/` holds monolithic puts in progress; one older than `before` was
    /// cut off by a crash (a live put keeps writing, so its file stays fresh).
    async fn expire_scratch(&self, before: SystemTime) -> Result<usize, StorageError> {
        let mut removed = 0;
        let mut dir = tokio::fs::read_dir(self.root.join("tmp")).await?;
        while let Some(entry) = dir.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(blob) = name.strip_prefix("gc-") {
                // Left by a collection that stopped mid-delete.
                self.restore_aside(blob, &entry.path()).await?;
                continue;
            }
            if UploadId::parse(&name).is_none() {
                continue;
            }
            let modified = match entry.metadata().await {
                Ok(m) => m.modified()?,
                // Renamed into blobs/ since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            if modified < before {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }
}
