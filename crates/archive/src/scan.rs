//! One pass over an archive's tar stream.
//!
//! The order of members is arbitrary (`docker save` writes manifest.json
//! last), so nothing can be interpreted while streaming. Instead every
//! member is put where it can be found afterwards: small JSON documents stay
//! in memory (bounded), everything else goes through the [`BlobSink`] while
//! being hashed, and links are remembered. The format readers then resolve
//! paths against the resulting [`Scan`].

use std::collections::HashMap;
use std::io::{self, Read, Write};

use berth_oci::BlobSink;
use berth_reference::{Algorithm, Digest, HashingWriter};

use crate::archive_path;
use crate::compression::{Compression, peek};
use crate::error::ArchiveError;

/// The largest metadata member (manifest, index, config) kept in memory.
pub const METADATA_MEMBER_LIMIT: u64 = 8 << 20;
/// The most metadata kept in memory for one archive.
pub const METADATA_TOTAL_LIMIT: u64 = 64 << 20;

/// How many leading bytes decide whether a blob is a JSON document.
const SNIFF_LEN: usize = 512;

/// A member of the archive as the scan left it.
#[derive(Debug)]
pub(crate) enum Member {
    /// A small JSON document (or other metadata), in memory.
    Inline(Vec<u8>),
    /// Written to the sink.
    Blob(StoredBlob),
    /// A symlink or hard link to another member (normalised path).
    Link(String),
    /// Something berth has no use for (legacy per-layer json, devices, ...).
    Ignored,
}

/// A blob written to the sink, with what decompressing it showed.
#[derive(Debug, Clone)]
pub(crate) struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    pub layer: LayerContent,
}

/// What a blob is when read as a layer.
#[derive(Debug, Clone)]
pub(crate) enum LayerContent {
    /// Uncompressed: its digest is its diff ID.
    Plain,
    /// Compressed; `diff_id` and `size` are those of the decompressed bytes.
    Compressed { compression: Compression, diff_id: Digest, size: u64 },
    /// Cannot be a layer, and why.
    Invalid(String),
}

impl StoredBlob {
    /// The layer's diff ID and uncompressed size, or why this is no layer.
    pub fn diff_id(&self) -> Result<(Digest, u64, Compression), String> {
        match &self.layer {
            LayerContent::Plain => Ok((self.digest.clone(), self.size, Compression::None)),
            LayerContent::Compressed { compression, diff_id, size } => {
                Ok((diff_id.clone(), *size, *compression))
            }
            LayerContent::Invalid(why) => Err(why.clone()),
        }
    }
}

/// Every member of one archive, by normalised path.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    members: HashMap<String, Member>,
}

impl Scan {
    pub fn contains(&self, path: &str) -> bool {
        self.members.contains_key(path)
    }

    /// The member at `path`, following links. `Ok(None)` when absent.
    pub fn get(&self, path: &str) -> Result<Option<(&str, &Member)>, ArchiveError> {
        let mut path = path;
        for _ in 0..16 {
            match self.members.get_key_value(path) {
                None => return Ok(None),
                Some((_, Member::Link(target))) => path = target,
                Some((key, member)) => return Ok(Some((key.as_str(), member))),
            }
        }
        Err(ArchiveError::LinkLoop { path: path.to_owned() })
    }

    /// The member at `path` (after links) as a document in memory. Fails if
    /// it is absent, or too large or not JSON-like enough to have been kept.
    pub fn document(&self, path: &str, referrer: &str) -> Result<&[u8], ArchiveError> {
        match self.get(path)? {
            None => Err(missing(referrer, path)),
            Some((real, Member::Inline(bytes))) => {
                if let Some(named) = archive_path::blob_digest(real) {
                    let actual = Digest::of(named.algorithm(), bytes);
                    check_name(real, named, actual)?;
                }
                Ok(bytes)
            }
            Some((real, _)) => Err(ArchiveError::InvalidJson {
                path: real.to_owned(),
                message: format!("not a JSON document of at most {METADATA_MEMBER_LIMIT} bytes"),
            }),
        }
    }

    /// The member at `path` (after links) as a blob in the sink. A document
    /// kept in memory is written to the sink now.
    pub fn blob(
        &self,
        path: &str,
        referrer: &str,
        sink: &dyn BlobSink,
    ) -> Result<StoredBlob, ArchiveError> {
        let (real, blob) = match self.get(path)? {
            None => return Err(missing(referrer, path)),
            Some((real, Member::Blob(blob))) => (real, blob.clone()),
            Some((real, Member::Inline(bytes))) => {
                let mut reader: &[u8] = bytes;
                (real, ingest(&mut reader, bytes, sink)?)
            }
            Some((real, _)) => {
                return Err(ArchiveError::InvalidLayer {
                    path: real.to_owned(),
                    message: "not a regular file".to_owned(),
                });
            }
        };
        if let Some(named) = archive_path::blob_digest(real) {
            if named.algorithm() != blob.digest.algorithm() {
                return Err(ArchiveError::Unsupported(format!(
                    "{real}: only sha256 blobs can be verified"
                )));
            }
            check_name(real, named, blob.digest.clone())?;
        }
        Ok(blob)
    }
}

/// A member named `blobs/<alg>/<hex>` must hash to that digest.
fn check_name(path: &str, named: Digest, actual: Digest) -> Result<(), ArchiveError> {
    if named != actual {
        return Err(ArchiveError::DigestMismatch {
            what: path.to_owned(),
            expected: named,
            actual,
        });
    }
    Ok(())
}

fn missing(referrer: &str, path: &str) -> ArchiveError {
    ArchiveError::MissingMember { referrer: referrer.to_owned(), path: path.to_owned() }
}

/// Reads the whole tar stream once. Blobs are written to `sink` (and stay
/// there even if the archive later turns out to be invalid: the sink's
/// contract makes uncommitted blobs collectable). Fails on unsafe paths,
/// duplicate members, oversized metadata and truncation.
pub(crate) fn scan(reader: impl Read, sink: &dyn BlobSink) -> Result<Scan, ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut scan = Scan::default();
    let mut metadata_bytes = 0u64;
    let entries = archive.entries().map_err(|e| ArchiveError::NotATar(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::NotATar(e.to_string()))?;
        let path = archive_path::member_path(&entry.path_bytes())?;
        let kind = entry.header().entry_type();
        let member = if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default();
            Member::Link(archive_path::symlink_target(&path, &target)?)
        } else if kind.is_hard_link() {
            let target = entry.link_name_bytes().unwrap_or_default();
            Member::Link(archive_path::hardlink_target(&path, &target)?)
        } else if kind.is_file() || kind.is_contiguous() {
            let size = entry.size();
            match classify(&path) {
                Class::Metadata => {
                    if size > METADATA_MEMBER_LIMIT {
                        return Err(ArchiveError::MemberTooLarge {
                            path,
                            size,
                            limit: METADATA_MEMBER_LIMIT,
                        });
                    }
                    metadata_bytes += size;
                    if metadata_bytes > METADATA_TOTAL_LIMIT {
                        return Err(ArchiveError::MetadataTooLarge { limit: METADATA_TOTAL_LIMIT });
                    }
                    Member::Inline(read_exact_member(&mut entry, &path, size)?)
                }
                Class::Ignored => Member::Ignored,
                Class::Blob => {
                    let (head, mut rest) = peek(&mut entry, SNIFF_LEN)?;
                    if size <= METADATA_MEMBER_LIMIT
                        && looks_like_json(&head)
                        && metadata_bytes + size <= METADATA_TOTAL_LIMIT
                    {
                        metadata_bytes += size;
                        Member::Inline(read_exact_member(&mut rest, &path, size)?)
                    } else {
                        let blob = ingest(&mut rest, &head, sink)?;
                        if blob.size != size {
                            return Err(ArchiveError::Truncated { path });
                        }
                        Member::Blob(blob)
                    }
                }
            }
        } else {
            Member::Ignored
        };
        if scan.members.insert(path.clone(), member).is_some() {
            return Err(ArchiveError::DuplicateEntry { path });
        }
    }
    Ok(scan)
}

enum Class {
    Metadata,
    Ignored,
    Blob,
}

/// Which members are metadata by name: the top-level documents of every
/// format, and docker's `<config-id>.json`. Legacy per-layer `json` and
/// `VERSION` files are not needed to recreate an image.
fn classify(path: &str) -> Class {
    match path.split_once('/') {
        None if path.ends_with(".json") || path == "repositories" || path == "oci-layout" => {
            Class::Metadata
        }
        Some((_, "json" | "VERSION")) => Class::Ignored,
        _ => Class::Blob,
    }
}

fn looks_like_json(head: &[u8]) -> bool {
    head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn read_exact_member(
    reader: &mut impl Read,
    path: &str,
    size: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let mut bytes = Vec::with_capacity(size as usize);
    reader.take(size).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != size {
        return Err(ArchiveError::Truncated { path: path.to_owned() });
    }
    Ok(bytes)
}

/// Writes `reader` to the sink as one blob and, when `head` (the blob's first
/// bytes) shows gzip or zstd, decompresses a copy on the way to learn the
/// diff ID, so every byte is read once.
pub(crate) fn ingest(
    reader: &mut dyn Read,
    head: &[u8],
    sink: &dyn BlobSink,
) -> io::Result<StoredBlob> {
    let compression = Compression::detect(head);
    let mut tee = DecompressingTee::new(reader, compression);
    let (digest, size) = sink.write_blob(&mut tee)?;
    let layer = tee.finish();
    Ok(StoredBlob { digest, size, layer })
}

type UncompressedHash = HashingWriter<io::Sink>;

enum Decoder {
    Gzip(Box<flate2::write::MultiGzDecoder<UncompressedHash>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, UncompressedHash>>),
}

/// Passes bytes through unchanged while feeding them to a decompressor that
/// hashes its output.
struct DecompressingTee<'a> {
    inner: &'a mut dyn Read,
    compression: Compression,
    decoder: Option<Decoder>,
    failure: Option<String>,
}

impl<'a> DecompressingTee<'a> {
    fn new(inner: &'a mut dyn Read, compression: Compression) -> Self {
        let hash = || HashingWriter::new(io::sink(), Algorithm::Sha256);
        let mut failure = None;
        let decoder = match compression {
            Compression::None => None,
            Compression::Gzip => {
                Some(Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(hash()))))
            }
            Compression::Zstd => match zstd::stream::write::Decoder::new(hash()) {
                Ok(d) => Some(Decoder::Zstd(Box::new(d))),
                Err(e) => {
                    failure = Some(format!("zstd: {e}"));
                    None
                }
            },
            other => {
                failure = Some(format!("{}-compressed layers are not supported", other.name()));
                None
            }
        };
        DecompressingTee { inner, compression, decoder, failure }
    }

    fn finish(mut self) -> LayerContent {
        if let Some(why) = self.failure {
            return LayerContent::Invalid(why);
        }
        let finished = match self.decoder.take() {
            None => return LayerContent::Plain,
            Some(Decoder::Gzip(d)) => d.finish(),
            Some(Decoder::Zstd(mut d)) => d.flush().map(|()| d.into_inner()),
        };
        match finished {
            Ok(hash) => {
                let (_, diff_id, size) = hash.into_parts();
                LayerContent::Compressed { compression: self.compression, diff_id, size }
            }
            Err(e) => LayerContent::Invalid(format!("{}: {e}", self.compression.name())),
        }
    }
}

impl Read for DecompressingTee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let written = match &mut self.decoder {
                None => Ok(()),
                Some(Decoder::Gzip(d)) => d.write_all(&buf[..n]),
                Some(Decoder::Zstd(d)) => d.write_all(&buf[..n]),
            };
            if let Err(e) = written {
                // Not a valid stream after all: the blob is still stored, but
                // it cannot serve as a layer.
                self.failure = Some(format!("{}: {e}", self.compression.name()));
                self.decoder = None;
            }
        }
        Ok(n)
    }
}
