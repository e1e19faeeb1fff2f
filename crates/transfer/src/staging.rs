//! Scratch blobs for a copy that does not involve the local store: a
//! temporary directory, removed when the copy ends. Blobs are hashed while
//! written and renamed into place, like the store's.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_oci::{BlobSink, BlobSource, Descriptor, ImageStore, KnownLayer};
use berth_reference::{Algorithm, Digest, HashingReader};

use crate::TransferError;

pub(crate) struct Staging {
    dir: tempfile::TempDir,
}

impl Staging {
    /// In `near` (the destination's directory, so the blobs stay on its
    /// disk), else the system's temporary directory.
    pub fn new(near: Option<&Path>) -> Result<Arc<Staging>, TransferError> {
        let builder = tempfile::Builder::new().prefix(".berth-copy.").clone();
        let dir = match near.filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => builder
                .tempdir_in(p)
                .map_err(TransferError::io(format!("create a directory in {}", p.display())))?,
            None => builder.tempdir().map_err(TransferError::io("create a scratch directory"))?,
        };
        std::fs::create_dir(dir.path().join("blobs"))
            .map_err(TransferError::io("create a scratch directory"))?;
        Ok(Arc::new(Staging { dir }))
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.path().join("blobs").join(digest.hex())
    }
}

impl BlobSource for Staging {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(self.path(digest))?))
    }
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match std::fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn open_blob_file(&self, digest: &Digest) -> io::Result<Option<File>> {
        File::open(self.path(digest)).map(Some)
    }
}

impl BlobSink for Staging {
    fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.path())?;
        let mut hashing = HashingReader::new(reader, Algorithm::Sha256);
        io::copy(&mut hashing, &mut tmp)?;
        let (digest, size) = hashing.finish();
        tmp.persist(self.path(&digest)).map_err(|e| e.error)?;
        Ok((digest, size))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }
}

/// Nothing is known ahead of a copy, and nothing needs remembering after
/// it: the directory goes when the copy ends.
impl ImageStore for Staging {
    fn known_layer(&self, _blob: &Digest) -> Option<KnownLayer> {
        None
    }
    fn add_layer_blob(&self, _diff_id: &Digest, _blob: &Descriptor) -> io::Result<()> {
        Ok(())
    }
}
