//! Temporary files under `root/tmp`, and who owns them.
//!
//! Each [`crate::Store`] that writes blobs is an owner named `<pid>.<n>`
//! (`n` counts stores within the process). Before its first temp file it
//! creates and flocks `writers/<owner>.lock`; its temp files are
//! `tmp/<owner>-<k>`. A writer killed mid-write leaves its files behind, but
//! the kernel drops its flock: the next store that starts writing sweeps
//! the files of every owner whose lock it can take, so leftovers do not
//! wait for an `image prune`. Files named before owners had locks
//! (`<pid>-<k>-<nanos>`) go once that PID is gone.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

static OWNERS: AtomicU64 = AtomicU64::new(0);

pub(crate) struct TempOwner {
    tmp: PathBuf,
    writers: PathBuf,
    name: String,
    /// The flocked `<owner>.lock`, from the first temp file until drop.
    lock: Mutex<Option<File>>,
    next: AtomicU64,
}

impl TempOwner {
    pub(crate) fn new(tmp: PathBuf, writers: PathBuf) -> TempOwner {
        let name = format!("{}.{}", std::process::id(), OWNERS.fetch_add(1, Ordering::Relaxed));
        TempOwner { tmp, writers, name, lock: Mutex::new(None), next: AtomicU64::new(0) }
    }

    /// A fresh temp file path. The first call takes the owner lock and
    /// sweeps what dead owners left.
    pub(crate) fn temp_path(&self) -> io::Result<PathBuf> {
        let mut slot = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            // Locked under a name no sweeper looks at, then renamed into
            // place: a sweeper never sees this owner's lock file unlocked.
            let fresh = self.writers.join(format!(".{}.lock.new", self.name));
            let file = open_lock(&fresh)?;
            crate::lock::flock(&file, libc::LOCK_EX | libc::LOCK_NB)?;
            fs::rename(&fresh, self.writers.join(format!("{}.lock", self.name)))?;
            *slot = Some(file);
            drop(slot);
            // Best effort: a sweep that fails leaves files for the next one.
            let _ = sweep_dead_owners(&self.tmp, &self.writers, &self.name);
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(self.tmp.join(format!("{}-{k}", self.name)))
    }
}

impl Drop for TempOwner {
    fn drop(&mut self) {
        let slot = self.lock.get_mut().unwrap_or_else(|e| e.into_inner());
        if slot.take().is_some() {
            let _ = fs::remove_file(self.writers.join(format!("{}.lock", self.name)));
        }
    }
}

fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).truncate(false).write(true).open(path)
}

/// Whose a file under `tmp/` is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    /// `<pid>.<n>`: has (or had) a lock file.
    Locked(String),
    /// An older berth's `<pid>-<k>-<nanos>`: only the PID tells.
    Legacy(u32),
}

fn owner_of(name: &str) -> Option<Owner> {
    let (first, _) = name.split_once('-')?;
    if first.contains('.') {
        Some(Owner::Locked(first.to_owned()))
    } else {
        first.parse().ok().map(Owner::Legacy)
    }
}

/// Deletes the temp files (and lock files) of every owner other than `me`
/// that is provably gone: its lock can be taken, or, for a file without a
/// lock, its PID no longer exists. Returns the temp files deleted and their
/// bytes.
pub(crate) fn sweep_dead_owners(tmp: &Path, writers: &Path, me: &str) -> io::Result<(usize, u64)> {
    let mut by_owner: BTreeMap<Owner, Vec<PathBuf>> = BTreeMap::new();
    for entry in fs::read_dir(tmp)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(owner) = owner_of(&name) {
            by_owner.entry(owner).or_default().push(entry.path());
        }
    }
    // Locks of owners that left no files: stale once free.
    for entry in fs::read_dir(writers)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(owner) = name.strip_suffix(".lock").filter(|o| !o.starts_with('.')) {
            by_owner.entry(Owner::Locked(owner.to_owned())).or_default();
        }
    }
    let (mut count, mut bytes) = (0, 0);
    for (owner, files) in by_owner {
        let lock_path = match &owner {
            Owner::Locked(name) if name == me => continue,
            Owner::Locked(name) => writers.join(format!("{name}.lock")),
            Owner::Legacy(pid) if pid_exists(*pid) => continue,
            Owner::Legacy(_) => PathBuf::new(),
        };
        // Held while deleting, so the owner's lock is the last file to go.
        let held = match &owner {
            Owner::Locked(name) => match File::open(&lock_path) {
                Ok(file) => match crate::lock::flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                    Ok(()) => Some(file),
                    Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => continue,
                    Err(e) => return Err(e),
                },
                // Files without their lock: the PID decides.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let pid = name.split('.').next().and_then(|p| p.parse().ok());
                    if pid.is_none_or(pid_exists) {
                        continue;
                    }
                    None
                }
                Err(e) => return Err(e),
            },
            Owner::Legacy(_) => None,
        };
        for path in &files {
            let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(path) {
                Ok(()) => {
                    count += 1;
                    bytes += len;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if held.is_some() {
            let _ = fs::remove_file(&lock_path);
        }
    }
    Ok((count, bytes))
}

/// The files under `tmp/` and their bytes: what killed writers left, plus
/// what live ones are writing.
pub(crate) fn usage(tmp: &Path) -> io::Result<(usize, u64)> {
    let (mut count, mut bytes) = (0, 0);
    for entry in fs::read_dir(tmp)? {
        let entry = entry?;
        count += 1;
        bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
    }
    Ok((count, bytes))
}

fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists; no signal is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PID above Linux's largest possible (2^22): never alive.
    const DEAD_PID: u32 = 9_999_999;

    fn names(tmp: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn what_dead_owners_left_is_swept_and_live_owners_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let writers = dir.path().join("writers");
        fs::create_dir(&tmp).unwrap();
        fs::create_dir(&writers).unwrap();
        // A killed writer: its lock file is there but no one holds it.
        fs::write(writers.join(format!("{DEAD_PID}.0.lock")), b"").unwrap();
        // And one that died before writing anything.
        fs::write(writers.join(format!("{DEAD_PID}.1.lock")), b"").unwrap();
        fs::write(tmp.join(format!("{DEAD_PID}.0-0")), vec![0u8; 1000]).unwrap();
        // A killed writer of an older berth, and one whose lock is gone.
        fs::write(tmp.join(format!("{DEAD_PID}-3-12345")), b"old").unwrap();
        fs::write(tmp.join(format!("{DEAD_PID}.7-2")), b"x").unwrap();
        // A live writer in this process (another store), mid-write.
        let live = TempOwner::new(tmp.clone(), writers.clone());
        let writing = live.temp_path().unwrap();
        fs::write(&writing, b"partial").unwrap();
        // An older berth's file whose PID is alive (ours) stays too.
        let ours = format!("{}-1-1", std::process::id());
        fs::write(tmp.join(&ours), b"y").unwrap();

        let me = TempOwner::new(tmp.clone(), writers.clone());
        let mine = me.temp_path().unwrap(); // the first temp file sweeps
        let mut expected = vec![writing.file_name().unwrap().to_string_lossy().into_owned(), ours];
        expected.sort();
        assert_eq!(names(&tmp), expected);
        let mut locks = vec![format!("{}.lock", live.name), format!("{}.lock", me.name)];
        locks.sort();
        assert_eq!(names(&writers), locks);
        assert!(!mine.exists(), "a path, not a file, until written");
        assert_eq!(usage(&tmp).unwrap(), (2, 8));

        // A store that ends removes its lock. A file it left (it never
        // does: each write renames or removes its file) would stay while
        // its process lives, since nothing proves the writer gone.
        drop(live);
        assert_eq!(sweep_dead_owners(&tmp, &writers, &me.name).unwrap().0, 0);
        assert!(writing.exists());
        fs::remove_file(&writing).unwrap();
        drop(me);
        assert_eq!(names(&tmp), [format!("{}-1-1", std::process::id())]);
        assert!(names(&writers).is_empty());
    }
}
