//! Content-addressed blob files: `blobs/sha256/<hex>`, written via `tmp/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use berth_oci::{BlobMismatch, Descriptor};
use berth_reference::{Algorithm, Digest, Hasher};

use crate::Store;

/// Large enough that hashing, not syscalls, dominates a layer write.
const COPY_BUFFER: usize = 256 * 1024;

impl Store {
    /// Streams `reader` into the store as one blob and returns its sha256
    /// digest and size. The data goes to a temp file under `root/tmp` while
    /// being hashed, is fsynced, then renamed to `blobs/sha256/<hex>`; if that
    /// blob already exists it is kept and the copy discarded. Idempotent.
    ///
    /// The store computes the digest itself; callers compare it with the one
    /// they expected. From this call until this `Store` is dropped, no blob
    /// is deleted by any berth process (the shared lease), so the caller can
    /// commit an image referencing it. Writing is not committing: a blob no
    /// committed image references is collected later.
    pub fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        self.write_checked(reader, None)
    }

    /// Like [`Store::write_blob`], but keeps the blob only if it is exactly
    /// `expected` (checked before the rename, so a mismatch leaves nothing):
    /// one hash of the stream serves both the store and the caller's check.
    /// Fails with `InvalidData` wrapping [`berth_oci::BlobMismatch`].
    pub fn write_expected_blob(
        &self,
        reader: &mut dyn Read,
        expected: &Descriptor,
    ) -> io::Result<()> {
        self.write_checked(reader, Some(expected)).map(|_| ())
    }

    fn write_checked(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Descriptor>,
    ) -> io::Result<(Digest, u64)> {
        self.locks.hold_shared()?;
        let temp = self.temps.temp_path()?;
        let result = self.write_temp(&temp, reader, expected);
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn write_temp(
        &self,
        temp: &PathBuf,
        reader: &mut dyn Read,
        expected: Option<&Descriptor>,
    ) -> io::Result<(Digest, u64)> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
        let mut hasher = Hasher::new(Algorithm::Sha256);
        let mut size = 0u64;
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])?;
            size += n as u64;
        }
        file.sync_all()?;
        drop(file);
        let digest = hasher.finish();
        if let Some(expected) = expected {
            BlobMismatch::check(expected, digest.clone(), size)?;
        }
        let dest = self.blob_path(&digest);
        if dest.exists() {
            fs::remove_file(temp)?;
        } else {
            fs::rename(temp, &dest)?;
            sync_dir(&self.root.join("blobs/sha256"))?;
        }
        Ok((digest, size))
    }

    /// A blob written piece by piece, for producers that push bytes (a tar
    /// writer) rather than offer a reader. Same guarantees as
    /// [`Store::write_blob`]: nothing appears under `blobs/` before
    /// [`BlobWriter::commit`]; dropping the writer discards the bytes.
    pub fn create_blob(&self) -> io::Result<BlobWriter<'_>> {
        self.locks.hold_shared()?;
        let temp = self.temps.temp_path()?;
        let file = OpenOptions::new().write(true).create_new(true).open(&temp)?;
        Ok(BlobWriter {
            store: self,
            file: Some(io::BufWriter::with_capacity(COPY_BUFFER, file)),
            temp,
            hasher: Hasher::new(Algorithm::Sha256),
            size: 0,
        })
    }

    /// Stores `data` as a blob (see [`Store::write_blob`]).
    pub fn write_blob_bytes(&self, data: &[u8]) -> io::Result<(Digest, u64)> {
        let mut reader = data;
        self.write_blob(&mut reader)
    }

    /// Opens a stored blob for reading. The content was verified when it was
    /// written; `system check` re-verifies it. `NotFound` if absent.
    pub fn open_blob(&self, digest: &Digest) -> io::Result<File> {
        File::open(self.blob_path(digest))
    }

    /// Where the blob lives (or would live), for `copy_file_range`/`sendfile`
    /// fast paths. Only read it; never write or rename over it.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm().as_str()).join(digest.hex())
    }

    /// Whether the blob is stored. No side effects. A copy may skip writing
    /// a blob this says is present; should another process remove the last
    /// image using it before the copy commits, `commit_images` fails with
    /// `MissingBlob` and records nothing (the copy can simply be retried).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Takes the shared lease without writing: from now until
    /// [`Store::end_ingest`] or drop, no berth process deletes blob files.
    /// For readers that stream several blobs of an image (`save`, `push`)
    /// and must not see one vanish half-way because of a concurrent `rmi`.
    /// Cheap and idempotent; [`Store::write_blob`] takes it implicitly.
    pub fn hold_blobs(&self) -> io::Result<()> {
        self.locks.hold_shared()
    }

    /// Ends this store's ingest lease: the caller declares that every blob
    /// it wrote or probed is now committed or abandoned. Until then (or until
    /// the `Store` is dropped) no berth process deletes blob files, this one
    /// included: removals made meanwhile leave their files as orphans for
    /// the next collection. The next `write_blob`/`has_blob` takes a new lease.
    pub fn end_ingest(&self) {
        self.locks.release_shared();
    }

    /// Temporary files under `root/tmp` and their bytes: what killed
    /// writers left (swept by the next writer) and what live ones are
    /// writing. `system df` counts them as reclaimable.
    pub fn temp_usage(&self) -> io::Result<(usize, u64)> {
        crate::temp::usage(&self.root.join("tmp"))
    }
}

/// See [`Store::create_blob`].
pub struct BlobWriter<'s> {
    store: &'s Store,
    file: Option<io::BufWriter<File>>,
    temp: PathBuf,
    hasher: Hasher,
    size: u64,
}

impl BlobWriter<'_> {
    /// Makes the bytes written a blob and returns its digest and size.
    pub fn commit(mut self) -> io::Result<(Digest, u64)> {
        let file = self.file.take().expect("committed once");
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let digest = std::mem::replace(&mut self.hasher, Hasher::new(Algorithm::Sha256)).finish();
        let dest = self.store.blob_path(&digest);
        if dest.exists() {
            fs::remove_file(&self.temp)?;
        } else {
            fs::rename(&self.temp, &dest)?;
            sync_dir(&self.store.root.join("blobs/sha256"))?;
        }
        Ok((digest, self.size))
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("not committed").write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Makes a rename durable.
fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Hashes a file's content; used by `check`.
pub(crate) fn digest_file(path: &std::path::Path) -> io::Result<(Digest, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finish(), size))
}
