//! Content digests of context files, remembered across builds by what
//! `stat` says of each file, so that an unchanged file is never read again.
//!
//! An entry is keyed by (context root, relative path) and holds the file's
//! [`Stamp`] (device, inode, size, ctime and mtime in nanoseconds) when it
//! was hashed, the sha256 of its content and the moment reading began. It
//! answers only for a file whose stamp is unchanged, and only if the file's
//! last change was older than that moment by more than the timestamps'
//! granularity: a file written in the same clock tick as it was read could
//! change again without its stamp changing (git's "racy" entries), so such
//! an entry is not trusted and the file is hashed again (and then, being
//! older, remembered for good).
//!
//! The cache lives in one file, `<dir>/build-stat-cache`, read whole at
//! [`StatCache::open`] and replaced atomically by [`StatCache::save`]; a
//! missing, foreign or damaged file is an empty cache. Two builds saving at
//! once lose one's new entries, never correctness: every entry stands on
//! its own stamp.
//!
//! ```text
//! "berth-stat-cache 1\n"
//! u32 roots, then per root:  u32 len, root path bytes, u64 last used (s),
//!                            u32 entries, then per entry:
//!                            u32 len, relative path bytes,
//!                            u64 dev, ino, size; i64 ctime_ns, mtime_ns,
//!                            recorded_ns; 32 bytes sha256
//! (all little-endian)
//! ```

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_reference::{Algorithm, Digest};

const FILE_NAME: &str = "build-stat-cache";
const MAGIC: &[u8] = b"berth-stat-cache 1\n";
/// A root no build has used for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
const USE_PRECISION: Duration = Duration::from_secs(24 * 3600);
/// How long after a file's last change its stamp is trusted, on a
/// filesystem with sub-second timestamps: well beyond the kernel's coarse
/// clock tick (1–10 ms), which is what stamps files.
const FINE_MARGIN_NS: i64 = 50_000_000;
/// The same where timestamps have whole seconds only (both nanosecond
/// fields zero): two of them, as FAT's are 2 s apart.
const COARSE_MARGIN_NS: i64 = 2_000_000_000;

/// What `stat` says of a file that would change with its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub ctime_ns: i64,
    pub mtime_ns: i64,
}

impl Stamp {
    pub fn of(metadata: &fs::Metadata) -> Stamp {
        Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            ctime_ns: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
            mtime_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
        }
    }

    /// Whether a digest taken when reading began at `recorded_ns` still
    /// holds for a file with this stamp (see the module docs).
    fn settled_before(&self, recorded_ns: i64) -> bool {
        let coarse = self.ctime_ns % 1_000_000_000 == 0 && self.mtime_ns % 1_000_000_000 == 0;
        let margin = if coarse { COARSE_MARGIN_NS } else { FINE_MARGIN_NS };
        self.ctime_ns.max(self.mtime_ns).saturating_add(margin) < recorded_ns
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    stamp: Stamp,
    recorded_ns: i64,
    sha256: [u8; 32],
}

#[derive(Debug, Default)]
struct Root {
    last_used: u64,
    entries: HashMap<PathBuf, Record>,
}

/// The persistent map (see the module docs). Shared by threads: every
/// method takes `&self`.
#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    roots: HashMap<PathBuf, Root>,
    dirty: bool,
}

impl StatCache {
    /// The cache kept under `dir` (created at the first save if need be),
    /// empty if it has no readable cache file yet. A context in a temporary
    /// directory gains nothing from it (its files are new every time).
    pub fn open(dir: &Path) -> io::Result<StatCache> {
        let path = dir.join(FILE_NAME);
        let roots = match fs::read(&path) {
            Ok(bytes) => decode(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
        };
        Ok(StatCache { path, inner: Mutex::new(Inner { roots, dirty: false }) })
    }

    /// The digest remembered for `root/rel` if `metadata` (taken now) shows
    /// the file unchanged since it was hashed and the entry is trusted.
    pub fn lookup(&self, root: &Path, rel: &Path, metadata: &fs::Metadata) -> Option<Digest> {
        let stamp = Stamp::of(metadata);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let root = inner.roots.get_mut(root)?;
        let record = root.entries.get(rel)?;
        if record.stamp != stamp || !stamp.settled_before(record.recorded_ns) {
            return None;
        }
        let digest = Digest::from_bytes(Algorithm::Sha256, &record.sha256);
        // A day's precision is plenty to forget after 30: a rebuild that
        // changed nothing then need not rewrite the cache.
        let now = now_secs();
        if now.saturating_sub(root.last_used) > USE_PRECISION.as_secs() {
            root.last_used = now;
            inner.dirty = true;
        }
        Some(digest)
    }

    /// Remembers that `root/rel`, stamped as `metadata` says, holds content
    /// whose sha256 is `digest`. The contract for a caller that reads the
    /// file itself (to hash it while copying it): `metadata` was taken
    /// before reading began, and `read_started` is the clock just before.
    pub fn record(
        &self,
        root: &Path,
        rel: &Path,
        metadata: &fs::Metadata,
        digest: &Digest,
        read_started: SystemTime,
    ) {
        if digest.algorithm() != Algorithm::Sha256 {
            return;
        }
        let Ok(hash) = hex_to_bytes(digest.hex()) else { return };
        let record =
            Record { stamp: Stamp::of(metadata), recorded_ns: to_ns(read_started), sha256: hash };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner.roots.entry(root.to_path_buf()).or_default();
        entry.last_used = now_secs();
        entry.entries.insert(rel.to_path_buf(), record);
        inner.dirty = true;
    }

    /// The sha256 of the regular file `root/rel`, from the cache when
    /// `metadata` (its `lstat`, taken before this call) shows it unchanged,
    /// else read (never through a symlink) and remembered.
    pub fn hash(&self, root: &Path, rel: &Path, metadata: &fs::Metadata) -> io::Result<Digest> {
        if !metadata.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file", rel.display()),
            ));
        }
        if !rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a path inside the context", rel.display()),
            ));
        }
        if let Some(digest) = self.lookup(root, rel, metadata) {
            return Ok(digest);
        }
        let started = SystemTime::now();
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(root.join(rel))?;
        let before = file.metadata()?;
        let mut hasher = Algorithm::Sha256.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let digest = hasher.finish();
        // Changed while read: the digest is of whatever was read, and is
        // not remembered.
        if Stamp::of(&file.metadata()?) == Stamp::of(&before) {
            self.record(root, rel, &before, &digest, started);
        }
        Ok(digest)
    }

    /// Writes the cache back if anything changed, leaving out roots that no
    /// longer exist (temporary contexts) or that no build used for 30 days.
    pub fn save(&self) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.dirty {
            return Ok(());
        }
        let oldest = now_secs().saturating_sub(FORGET_AFTER.as_secs());
        inner.roots.retain(|root, r| r.last_used >= oldest && root.is_dir());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut temp = tempfile::Builder::new().prefix(".build-stat-cache-").tempfile_in(dir)?;
        {
            let mut out = BufWriter::new(temp.as_file_mut());
            encode(&inner.roots, &mut out)?;
            out.flush()?;
        }
        temp.persist(&self.path).map_err(|e| e.error)?;
        inner.dirty = false;
        Ok(())
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn hex_to_bytes(hex: &str) -> Result<[u8; 32], ()> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(());
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| ())?;
    }
    Ok(out)
}

fn encode(roots: &HashMap<PathBuf, Root>, out: &mut impl Write) -> io::Result<()> {
    let len = |n: usize| u32::try_from(n).map_err(|_| io::Error::other("stat cache too large"));
    out.write_all(MAGIC)?;
    out.write_all(&len(roots.len())?.to_le_bytes())?;
    for (root, r) in roots {
        let bytes = root.as_os_str().as_bytes();
        out.write_all(&len(bytes.len())?.to_le_bytes())?;
        out.write_all(bytes)?;
        out.write_all(&r.last_used.to_le_bytes())?;
        out.write_all(&len(r.entries.len())?.to_le_bytes())?;
        for (rel, rec) in &r.entries {
            let bytes = rel.as_os_str().as_bytes();
            out.write_all(&len(bytes.len())?.to_le_bytes())?;
            out.write_all(bytes)?;
            let s = &rec.stamp;
            for v in [s.dev, s.ino, s.size] {
                out.write_all(&v.to_le_bytes())?;
            }
            for v in [s.ctime_ns, s.mtime_ns, rec.recorded_ns] {
                out.write_all(&v.to_le_bytes())?;
            }
            out.write_all(&rec.sha256)?;
        }
    }
    Ok(())
}

/// `None` for anything but a whole, well-formed cache file.
fn decode(bytes: &[u8]) -> Option<HashMap<PathBuf, Root>> {
    let mut r = Reader { bytes: bytes.strip_prefix(MAGIC)? };
    let mut roots = HashMap::new();
    for _ in 0..r.u32()? {
        let root = r.path()?;
        let last_used = r.u64()?;
        let count = r.u32()?;
        let mut entries = HashMap::with_capacity((count as usize).min(r.bytes.len() / 80));
        for _ in 0..count {
            let rel = r.path()?;
            let stamp = Stamp {
                dev: r.u64()?,
                ino: r.u64()?,
                size: r.u64()?,
                ctime_ns: r.u64()? as i64,
                mtime_ns: r.u64()? as i64,
            };
            let recorded_ns = r.u64()? as i64;
            let sha256 = r.take(32)?.try_into().ok()?;
            entries.insert(rel, Record { stamp, recorded_ns, sha256 });
        }
        roots.insert(root, Root { last_used, entries });
    }
    r.bytes.is_empty().then_some(roots)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn path(&mut self) -> Option<PathBuf> {
        let n = self.u32()? as usize;
        Some(PathBuf::from(OsStr::from_bytes(self.take(n)?)))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    /// Sets a file's mtime (and so, as a side effect, its ctime to now).
    fn set_mtime(path: &Path, t: SystemTime) {
        File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn an_unchanged_file_is_answered_from_the_cache_across_saves() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = ctx.path();
        let file = root.join("f");
        fs::write(&file, "content").unwrap();
        // Pretend the file was last changed well before it is hashed.
        std::thread::sleep(Duration::from_millis(120));
        let md = fs::symlink_metadata(&file).unwrap();
        let cache = StatCache::open(store.path()).unwrap();
        assert!(cache.lookup(root, Path::new("f"), &md).is_none());
        let digest = cache.hash(root, Path::new("f"), &md).unwrap();
        assert_eq!(digest, Digest::sha256_of(b"content"));
        cache.save().unwrap();

        let cache = StatCache::open(store.path()).unwrap();
        assert_eq!(cache.lookup(root, Path::new("f"), &md), Some(digest.clone()));
        // Hits alone leave the file as it was.
        fs::remove_file(store.path().join(FILE_NAME)).unwrap();
        cache.save().unwrap();
        assert!(!store.path().join(FILE_NAME).exists(), "a cache of hits only was rewritten");
        // A hit never reads the file: a digest recorded for this stamp is
        // what comes back.
        let other = Digest::sha256_of(b"recorded by a copy");
        cache.record(root, Path::new("f"), &md, &other, SystemTime::now());
        assert_eq!(cache.hash(root, Path::new("f"), &md).unwrap(), other);
    }

    #[test]
    fn a_changed_file_is_hashed_again_even_with_its_mtime_and_size_restored() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = ctx.path();
        let file = root.join("f");
        fs::write(&file, "aaaa").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        set_mtime(&file, old);
        std::thread::sleep(Duration::from_millis(120));
        let cache = StatCache::open(store.path()).unwrap();
        let md = fs::symlink_metadata(&file).unwrap();
        assert_eq!(cache.hash(root, Path::new("f"), &md).unwrap(), Digest::sha256_of(b"aaaa"));
        assert!(cache.lookup(root, Path::new("f"), &md).is_some());
        // Same size, same mtime, other content: only the ctime tells.
        fs::write(&file, "bbbb").unwrap();
        set_mtime(&file, old);
        let md2 = fs::symlink_metadata(&file).unwrap();
        assert_eq!(md2.mtime(), md.mtime());
        assert_eq!(md2.len(), md.len());
        assert!(cache.lookup(root, Path::new("f"), &md2).is_none());
        assert_eq!(cache.hash(root, Path::new("f"), &md2).unwrap(), Digest::sha256_of(b"bbbb"));
        // Another file in the old one's place (a new inode).
        fs::remove_file(&file).unwrap();
        fs::write(&file, "cccc").unwrap();
        let md3 = fs::symlink_metadata(&file).unwrap();
        assert!(cache.lookup(root, Path::new("f"), &md3).is_none());
        // And the same relative path under another root is another entry.
        assert!(cache.lookup(store.path(), Path::new("f"), &md2).is_none());
    }

    #[test]
    fn a_file_changed_in_the_tick_it_was_read_is_not_trusted() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = ctx.path();
        let file = root.join("f");
        fs::write(&file, "fresh").unwrap();
        let md = fs::symlink_metadata(&file).unwrap();
        let cache = StatCache::open(store.path()).unwrap();
        // Hashed right after it was written: remembered, but not trusted.
        assert_eq!(cache.hash(root, Path::new("f"), &md).unwrap(), Digest::sha256_of(b"fresh"));
        assert!(cache.lookup(root, Path::new("f"), &md).is_none());
        // A recording older than the file's change is never trusted either,
        // however long ago the change was.
        let recorded_before = SystemTime::now() - Duration::from_secs(10);
        let digest = Digest::sha256_of(b"fresh");
        cache.record(root, Path::new("f"), &md, &digest, recorded_before);
        assert!(cache.lookup(root, Path::new("f"), &md).is_none());
        // Once settled, hashing again makes it trusted.
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.hash(root, Path::new("f"), &md).unwrap(), digest);
        assert_eq!(cache.lookup(root, Path::new("f"), &md), Some(digest));
        // Whole-second timestamps need a wider margin.
        let coarse = Stamp { ctime_ns: 5_000_000_000, mtime_ns: 5_000_000_000, ..Stamp::of(&md) };
        assert!(!coarse.settled_before(5_500_000_000));
        assert!(coarse.settled_before(7_500_000_000));
        let fine = Stamp { ctime_ns: 5_000_000_001, mtime_ns: 5_000_000_001, ..coarse };
        assert!(fine.settled_before(5_500_000_000));
    }

    #[test]
    fn a_damaged_cache_file_is_an_empty_cache_and_gone_roots_are_dropped() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = ctx.path().to_path_buf();
        fs::write(root.join("f"), "x").unwrap();
        std::thread::sleep(Duration::from_millis(120));
        let md = fs::symlink_metadata(root.join("f")).unwrap();
        let cache = StatCache::open(store.path()).unwrap();
        cache.hash(&root, Path::new("f"), &md).unwrap();
        cache.save().unwrap();
        let bytes = fs::read(store.path().join(FILE_NAME)).unwrap();
        assert!(decode(&bytes).is_some());
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        fs::write(store.path().join(FILE_NAME), &bytes[..bytes.len() - 3]).unwrap();
        let cache = StatCache::open(store.path()).unwrap();
        assert!(cache.lookup(&root, Path::new("f"), &md).is_none());
        cache.hash(&root, Path::new("f"), &md).unwrap();
        drop(ctx);
        cache.save().unwrap();
        let roots = decode(&fs::read(store.path().join(FILE_NAME)).unwrap()).unwrap();
        assert!(roots.is_empty(), "a root that is gone is forgotten");
    }
}
