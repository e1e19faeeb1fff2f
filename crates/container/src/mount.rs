//! The kernel overlay mount a container's root filesystem is.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

/// An overlay's layers: read-only lowers (topmost first), and the upper
/// and work directories that take the writes.
pub struct Overlay<'a> {
    pub lowers: &'a [PathBuf],
    pub upper: &'a Path,
    pub work: &'a Path,
}

/// Mounts `overlay` at `target` (root only).
pub fn mount_overlay(target: &Path, overlay: &Overlay<'_>) -> io::Result<()> {
    let lowerdir: Vec<String> = overlay.lowers.iter().map(|l| l.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        overlay.upper.display(),
        overlay.work.display()
    );
    mount(target, &options, 0)
}

/// Mounts `lowers` (at least two, topmost first) read-only at `target`:
/// an image's files as they are, for reading.
pub fn mount_lowers(target: &Path, lowers: &[PathBuf]) -> io::Result<()> {
    let lowerdir: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    mount(target, &format!("lowerdir={}", lowerdir.join(":")), libc::MS_RDONLY)
}

fn mount(target: &Path, options: &str, flags: libc::c_ulong) -> io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(|_| io::Error::other(format!("a NUL byte in {s:?}")));
    let (src, fstype, data) = (c("overlay")?, c("overlay")?, c(options)?);
    let at = c(&target.display().to_string())?;
    // SAFETY: valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::mount(src.as_ptr(), at.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Detaches whatever is mounted at `target`; nothing mounted is fine.
pub fn unmount(target: &Path) {
    if let Ok(c) = CString::new(target.display().to_string()) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}
