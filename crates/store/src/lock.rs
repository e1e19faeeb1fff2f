//! The store-wide advisory lock on `root/lock` (flock(2)).
//!
//! Writers of blobs hold it shared, so any number of them run at once; the
//! collector takes it exclusive, and only with a non-blocking attempt, so a
//! removal never waits behind a long pull: when the lock is busy the blob
//! files stay as orphans for the next collection.
//!
//! flock locks belong to an open file description, so the ingest lease and an
//! exclusive attempt made by the same process conflict like two processes do.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

pub(crate) struct StoreLock {
    path: PathBuf,
    /// The shared lease, taken on the first blob write/probe, held until drop.
    ingest: Mutex<Option<File>>,
}

/// An exclusive hold on the store lock; released on drop (the fd closes).
pub(crate) struct Exclusive {
    _file: File,
}

impl StoreLock {
    pub(crate) fn new(path: PathBuf) -> StoreLock {
        StoreLock { path, ingest: Mutex::new(None) }
    }

    fn open(&self) -> io::Result<File> {
        OpenOptions::new().create(true).truncate(false).write(true).open(&self.path)
    }

    /// Makes sure this store holds the shared lease (blocking while a
    /// collector holds the lock exclusively, which is brief).
    pub(crate) fn hold_shared(&self) -> io::Result<()> {
        let mut slot = self.ingest.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let file = self.open()?;
            flock(&file, libc::LOCK_SH)?;
            *slot = Some(file);
        }
        Ok(())
    }

    /// Drops the shared lease (if held).
    pub(crate) fn release_shared(&self) {
        self.ingest.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Whether this store currently holds the shared lease.
    pub(crate) fn holds_shared(&self) -> bool {
        self.ingest.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Tries to take the lock exclusively without waiting. `None` when
    /// another holder (possibly this store's own lease) has it.
    pub(crate) fn try_exclusive(&self) -> io::Result<Option<Exclusive>> {
        let file = self.open()?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(Exclusive { _file: file })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The lock one prover of pending layers holds at a time
    /// (`writers/proof.lock`), waiting while another process proves.
    pub(crate) fn proof(&self) -> io::Result<Exclusive> {
        let file = self.open_proof()?;
        flock(&file, libc::LOCK_EX)?;
        Ok(Exclusive { _file: file })
    }

    /// The proof lock if free now; `None` while another prover holds it.
    pub(crate) fn try_proof(&self) -> io::Result<Option<Exclusive>> {
        let file = self.open_proof()?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(Exclusive { _file: file })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open_proof(&self) -> io::Result<File> {
        let path = self.path.with_file_name("writers").join("proof.lock");
        OpenOptions::new().create(true).truncate(false).write(true).open(path)
    }

    /// Takes the lock exclusively, waiting for holders to finish. Only for
    /// explicit maintenance (`system check --repair`), never on a hot path.
    pub(crate) fn exclusive(&self) -> io::Result<Exclusive> {
        let file = self.open()?;
        flock(&file, libc::LOCK_EX)?;
        Ok(Exclusive { _file: file })
    }
}

pub(crate) fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: the fd is valid for the lifetime of `file`; flock has no
        // other preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
