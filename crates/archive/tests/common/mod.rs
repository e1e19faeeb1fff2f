//! A real, directory-backed blob store for tests: blobs are files named by
//! their sha256, written through a temp file and renamed, as the local
//! store does.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_oci::{BlobSink, BlobSource};
use berth_reference::{Algorithm, Digest, HashingWriter};

pub struct DirBlobs {
    _dir: tempfile::TempDir,
    root: PathBuf,
    counter: AtomicU64,
}

impl DirBlobs {
    pub fn new() -> DirBlobs {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        fs::create_dir_all(root.join("blobs")).unwrap();
        DirBlobs { _dir: dir, root, counter: AtomicU64::new(0) }
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.hex())
    }

    pub fn read(&self, digest: &Digest) -> Vec<u8> {
        fs::read(self.path(digest)).unwrap()
    }

    /// Every blob digest held, sorted.
    pub fn digests(&self) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.root.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    pub fn put(&self, bytes: &[u8]) -> Digest {
        self.write_blob(&mut &bytes[..]).unwrap().0
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl BlobSink for DirBlobs {
    fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join(format!("tmp-{n}"));
        let mut out = HashingWriter::new(File::create(&tmp)?, Algorithm::Sha256);
        io::copy(reader, &mut out)?;
        let (mut file, digest, size) = out.into_parts();
        file.flush()?;
        fs::rename(&tmp, self.path(&digest))?;
        Ok((digest, size))
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }
}

impl BlobSource for DirBlobs {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(self.path(digest))?))
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        Ok(fs::metadata(self.path(digest)).ok().map(|m| m.len()))
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

/// The IDs `docker images --no-trunc` showed for the fixture images.
pub const TINY_1_ID: &str =
    "sha256:10c8ad10f068440a28cb379771bad7e68d4379aaa436e528cbae203d604e339e";
pub const TINY_2_ID: &str =
    "sha256:1c8c98357ed21087a86b8e95f0f1ecca0e4c3786dc7fc86bfecea59491f47316";
/// The ID podman shows for tiny:1.0 after converting it to OCI (its config
/// is rewritten without docker's legacy fields, so the ID changes).
pub const TINY_OCI_ID: &str =
    "sha256:9eb3d5d0d4a5ce101cf796338543375917afe77fdf2d0c76ad0c77ad0aefb5d8";
pub const DIFF_1: &str = "sha256:9069693abddc2bf8a0eddba7fdca55978bd4a9e4598df97dc5f78f996bfc6c9e";
pub const DIFF_2: &str = "sha256:7992d0af562c1b65c78754360c16a530ef596fe3001a665048aa04189cb79309";
pub const DIFF_3: &str = "sha256:8a3a201aa0f1acca33ee07f94f46fd2fb740cde62fd7adce633d717b5dd5ca2a";
