//! The step cache: what each step produced, named by the step's key.
//!
//! A key is a digest over the parent step's key and everything the step's
//! result depends on (the normalised instruction, the values of the args
//! and env it sees, and for COPY/ADD the content and resulting metadata of
//! the files it selects, never their mtimes alone). It lives in the store
//! (`<root>/build-cache/<hex>.json`), one small file per step, written
//! atomically; an entry whose layer blob was collected since is a miss.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use berth_reference::Digest;
use serde::{Deserialize, Serialize};

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The history entry's `created` (a rebuild from cache keeps it, so the
    /// image ID stays the same).
    pub created: String,
    /// The layer's diff ID and length (the blob is the uncompressed tar);
    /// `None`: the step changed no files.
    pub layer: Option<(Digest, u64)>,
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(store_root: &Path) -> io::Result<Cache> {
        let dir = store_root.join("build-cache");
        fs::create_dir_all(&dir)?;
        Ok(Cache { dir })
    }

    /// The entry for `key`, if it is whole and its layer is still stored.
    pub fn get(&self, key: &Digest, has_blob: impl Fn(&Digest) -> bool) -> Option<Entry> {
        let bytes = fs::read(self.path(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        match &entry.layer {
            Some((diff_id, _)) if !has_blob(diff_id) => None,
            _ => Some(entry),
        }
    }

    pub fn put(&self, key: &Digest, entry: &Entry) -> io::Result<()> {
        let path = self.path(key);
        let temp = path.with_extension(format!("tmp.{}", std::process::id()));
        fs::write(&temp, serde_json::to_vec(entry).map_err(io::Error::other)?)?;
        fs::rename(&temp, &path)
    }

    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }
}

/// Builds a key from its parts, each length-prefixed so that no two
/// different sequences of parts give the same bytes.
pub struct KeyBuilder {
    bytes: Vec<u8>,
}

impl KeyBuilder {
    pub fn new(parent: &Digest, kind: &str) -> KeyBuilder {
        let mut k = KeyBuilder { bytes: Vec::new() };
        k.part(parent.as_str());
        k.part(kind);
        k
    }

    pub fn part(&mut self, s: &str) -> &mut Self {
        self.bytes.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.bytes.extend_from_slice(s.as_bytes());
        self
    }

    pub fn finish(&self) -> Digest {
        Digest::sha256_of(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_collected_layer_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = KeyBuilder::new(&Digest::sha256_of(b"parent"), "RUN").part("true").finish();
        let layer = Digest::sha256_of(b"tar");
        let entry = Entry { created: "2026-01-01T00:00:00Z".into(), layer: Some((layer, 3)) };
        assert_eq!(cache.get(&key, |_| true), None);
        cache.put(&key, &entry).unwrap();
        assert_eq!(cache.get(&key, |_| true), Some(entry));
        assert_eq!(cache.get(&key, |_| false), None, "its layer is gone");
    }

    #[test]
    fn keys_differ_when_parts_move_between_fields() {
        let p = Digest::sha256_of(b"p");
        let a = KeyBuilder::new(&p, "COPY").part("ab").part("c").finish();
        let b = KeyBuilder::new(&p, "COPY").part("a").part("bc").finish();
        assert_ne!(a, b);
        assert_ne!(
            a,
            KeyBuilder::new(&Digest::sha256_of(b"q"), "COPY").part("ab").part("c").finish()
        );
    }
}
