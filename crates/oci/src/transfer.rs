//! The contracts between places that hold images (the local store, archives,
//! registries). Readers of one format write into a [`BlobSink`]; writers of
//! another read from a [`BlobSource`]. Neither side knows the other's layout.

use std::io::{self, Read};

use berth_reference::{Digest, Hasher};

use crate::manifest::Descriptor;

/// Somewhere blobs can be read by digest.
pub trait BlobSource {
    /// Opens the blob. Contract: the bytes are those that hash to `digest`;
    /// a source that cannot promise this (a remote registry) verifies while
    /// streaming and fails the read on mismatch.
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>>;

    /// The blob's size, if the source has it.
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>>;

    /// The blob as a local file, when the source keeps it in one, so that a
    /// copy can let the kernel move the bytes (`copy_file_range`,
    /// `sendfile`). Same content contract as [`BlobSource::open_blob`].
    /// `Ok(None)` (the default) means: use `open_blob`.
    fn open_blob_file(&self, digest: &Digest) -> io::Result<Option<std::fs::File>> {
        let _ = digest;
        Ok(None)
    }

    /// The blob from byte `offset` on (a resumed upload). The default seeks
    /// in [`BlobSource::open_blob_file`]'s file when there is one, and only
    /// otherwise reads past the first `offset` bytes.
    fn open_blob_at(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        use std::io::{Seek, SeekFrom};
        if let Some(mut file) = self.open_blob_file(digest)? {
            file.seek(SeekFrom::Start(offset))?;
            return Ok(Box::new(file));
        }
        let mut src = self.open_blob(digest)?;
        let skipped = io::copy(&mut (&mut src).take(offset), &mut io::sink())?;
        if skipped != offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("blob {digest} is shorter than {offset} bytes"),
            ));
        }
        Ok(src)
    }
}

/// Somewhere blobs can be written.
pub trait BlobSink {
    /// Stores everything `reader` yields as one blob and returns its sha256
    /// digest and size. Contract: the sink computes the digest itself and
    /// never trusts a name given by the caller; the caller compares it with
    /// the digest it expected. A blob written but never made part of a
    /// committed image may be collected later: writing is not committing.
    fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)>;

    /// Stores `reader` as the blob `expected` names, or nothing: on a digest
    /// or size mismatch it fails with an `InvalidData` error wrapping
    /// [`BlobMismatch`]. The default hashes the stream on its way to
    /// `write_blob` and fails the read at its end on a mismatch (so, by
    /// `write_blob`'s contract, nothing is kept); a sink that hashes while
    /// writing anyway overrides it to spare the second hash.
    fn write_expected_blob(&self, reader: &mut dyn Read, expected: &Descriptor) -> io::Result<()> {
        let mut checking = CheckingReader {
            inner: reader,
            hasher: Some(Hasher::new(expected.digest.algorithm())),
            size: 0,
            expected,
        };
        self.write_blob(&mut checking).map(|_| ())
    }

    /// Whether the sink already holds this blob (so a copy can skip it).
    fn has_blob(&self, digest: &Digest) -> bool;
}

/// A local image store as a registry pull and push use it: blobs in and
/// out, and the layer facts that let a pull skip and a push reuse work.
///
/// Contract: `write_blob` (from [`BlobSink`]) is only ever handed readers
/// that fail unless the whole blob matched its digest (and, for layers, its
/// diff ID), so a failed read must leave nothing behind under that digest;
/// `write_expected_blob` is handed the raw stream and must check it.
pub trait ImageStore: BlobSource + BlobSink + Send + Sync {
    /// If `blob` is stored and known to carry a layer: the layer's diff ID
    /// and uncompressed size.
    fn known_layer(&self, blob: &Digest) -> Option<KnownLayer>;

    /// Records that layer `diff_id` is also available as `blob` (a gzip made
    /// for a push), so the next push does not compress again.
    fn add_layer_blob(&self, diff_id: &Digest, blob: &Descriptor) -> io::Result<()>;

    /// Repositories layer `diff_id` is known to exist in (from earlier pulls
    /// and pushes): candidates for a cross-repository mount on the same
    /// registry.
    fn layer_sources(&self, _diff_id: &Digest) -> Vec<berth_reference::Repository> {
        Vec::new()
    }
}

/// A layer an [`ImageStore`] already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLayer {
    pub diff_id: Digest,
    /// `None` while the store has not yet proven the diff ID (a layer
    /// pulled with its diff-ID check left to the store).
    pub uncompressed_size: Option<u64>,
}

/// Passes a blob through, failing its last read unless it is `expected`.
struct CheckingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Option<Hasher>,
    size: u64,
    expected: &'a Descriptor,
}

impl Read for CheckingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.size += n as u64;
        match &mut self.hasher {
            Some(h) if n > 0 => h.update(&buf[..n]),
            Some(_) => {
                let digest = self.hasher.take().expect("checked above").finish();
                BlobMismatch::check(self.expected, digest, self.size)?;
            }
            None => {}
        }
        Ok(n)
    }
}

/// What [`BlobSink::write_expected_blob`] found instead of the expected blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob {} has {actual_size} bytes hashing to {actual}, expected {} bytes", expected.digest, expected.size)]
pub struct BlobMismatch {
    pub expected: Descriptor,
    pub actual: Digest,
    pub actual_size: u64,
}

impl BlobMismatch {
    /// `Ok` if `digest` and `size` are those of `expected`, else the
    /// `InvalidData` error a sink returns.
    pub fn check(expected: &Descriptor, digest: Digest, size: u64) -> io::Result<()> {
        if digest == expected.digest && size == expected.size {
            return Ok(());
        }
        let mismatch =
            BlobMismatch { expected: expected.clone(), actual: digest, actual_size: size };
        Err(io::Error::new(io::ErrorKind::InvalidData, mismatch))
    }

    /// The mismatch inside an error a sink returned, if that is what it is.
    pub fn find(e: &io::Error) -> Option<&BlobMismatch> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<BlobMismatch>())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::media_type;

    /// A sink keeping blobs in memory, and nothing from a failed read.
    #[derive(Default)]
    struct MemSink(RefCell<HashMap<Digest, Vec<u8>>>);

    impl BlobSink for MemSink {
        fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
            let mut data = Vec::new();
            reader.read_to_end(&mut data)?;
            let digest = Digest::sha256_of(&data);
            let size = data.len() as u64;
            self.0.borrow_mut().insert(digest.clone(), data);
            Ok((digest, size))
        }
        fn has_blob(&self, digest: &Digest) -> bool {
            self.0.borrow().contains_key(digest)
        }
    }

    fn descriptor(data: &[u8]) -> Descriptor {
        Descriptor::new(media_type::OCI_LAYER, Digest::sha256_of(data), data.len() as u64)
    }

    #[test]
    fn the_default_keeps_only_the_expected_blob() {
        let sink = MemSink::default();
        let good = b"layer bytes".as_slice();
        sink.write_expected_blob(&mut { good }, &descriptor(good)).unwrap();
        assert!(sink.has_blob(&Digest::sha256_of(good)));

        let expected = descriptor(b"what was promised");
        let mut other = b"what was sent".as_slice();
        let err = sink.write_expected_blob(&mut other, &expected).unwrap_err();
        let mismatch = BlobMismatch::find(&err).expect("a BlobMismatch inside");
        assert_eq!(mismatch.actual, Digest::sha256_of(b"what was sent"));
        assert_eq!(mismatch.actual_size, 13);
        assert_eq!(sink.0.borrow().len(), 1, "the mismatching blob was kept");
    }
}
