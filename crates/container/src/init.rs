//! The init layer: what docker puts between an image and a container's
//! writable layer, so that the runtime's mount points and the files berth
//! writes for the container exist without showing up as changes.

use std::fs;
use std::io;
use std::path::Path;

/// Directories of the init layer.
const DIRS: &[&str] = &["dev", "dev/pts", "dev/shm", "proc", "sys", "etc"];
/// Empty files of the init layer (mount targets and per-container files).
const FILES: &[&str] =
    &[".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console"];

/// Writes an init layer into the empty directory `dir`.
pub fn write_init_layer(dir: &Path) -> io::Result<()> {
    for d in DIRS {
        fs::create_dir_all(dir.join(d))?;
    }
    for f in FILES {
        fs::write(dir.join(f), b"")?;
    }
    std::os::unix::fs::symlink("/proc/mounts", dir.join("etc/mtab"))?;
    Ok(())
}
