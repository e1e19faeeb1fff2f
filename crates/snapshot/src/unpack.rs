//! One layer tar into one directory, with overlayfs whiteouts.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::SnapshotError;

const OPAQUE_MARKER: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &str = ".wh.";
const XATTR_PREFIX: &str = "SCHILY.xattr.";

#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Create whiteouts, device nodes and owners (root only). By default:
    /// whether this process runs as root.
    pub as_root: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        UnpackOptions { as_root: unsafe { libc::geteuid() } == 0 }
    }
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: u64,
    /// Deleted paths and opaque directories marked.
    pub whiteouts: u64,
    /// Device nodes left out (unpacking without root).
    pub skipped_devices: u64,
}

/// Unpacks the uncompressed layer tar `reader` into `dest` (an existing,
/// empty directory): files, directories, symlinks, hard links, fifos, and
/// as root device nodes, owners and every xattr; modes and mtimes as the
/// tar gives them; OCI whiteouts as overlayfs marks (see the crate docs).
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, SnapshotError> {
    unpack_into(reader, dest, opts, true)
}

/// [`unpack`] for files rather than a layer (`berth cp` into a container):
/// the same safety, but `.wh.` names are plain files and overlay's own
/// xattrs are never set.
pub fn unpack_files(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, SnapshotError> {
    unpack_into(reader, dest, opts, false)
}

fn unpack_into(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
    whiteouts: bool,
) -> Result<Unpacked, SnapshotError> {
    let mut archive = tar::Archive::new(reader);
    let mut stats = Unpacked::default();
    // Directory modes and mtimes are set last: a read-only directory must
    // still take its children, and writing children changes the mtime.
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for entry in archive.entries().map_err(SnapshotError::Read)? {
        let mut entry = entry.map_err(SnapshotError::Read)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let err = |source| SnapshotError::Entry { path: shown.clone(), source };
        let Some((parent_parts, name)) = clean(&raw, &shown)? else { continue };
        let parent = ensure_parent(dest, &parent_parts, &shown)?;
        stats.entries += 1;
        if whiteouts && name == OPAQUE_MARKER.as_bytes() {
            if !opts.as_root {
                return Err(SnapshotError::NeedsRoot(shown));
            }
            set_xattr(&parent, "trusted.overlay.opaque", b"y").map_err(err)?;
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()).filter(|_| whiteouts) {
            if !opts.as_root {
                return Err(SnapshotError::NeedsRoot(shown));
            }
            let target = parent.join(OsStr::from_bytes(hidden));
            remove_existing(&target).map_err(err)?;
            make_node(&target, libc::S_IFCHR, 0, 0).map_err(err)?;
            stats.whiteouts += 1;
            continue;
        }
        let target = parent.join(OsStr::from_bytes(&name));
        let header = entry.header().clone();
        let mode = header.mode().map_err(err)? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        match kind {
            EntryType::Directory => {
                if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    remove_existing(&target).map_err(err)?;
                    fs::create_dir(&target).map_err(err)?;
                }
                dirs.push((target.clone(), mode, mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                remove_existing(&target).map_err(err)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(err)?;
                io::copy(&mut entry, &mut file).map_err(err)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(err)?;
            }
            EntryType::Symlink => {
                let link = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                remove_existing(&target).map_err(err)?;
                // Created, never followed: an absolute target means the
                // container's root, whatever it names here.
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target).map_err(err)?;
            }
            EntryType::Link => {
                let link = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                let link_shown = String::from_utf8_lossy(&link).into_owned();
                let Some((link_parent, link_name)) = clean(&link, &shown)? else {
                    return Err(SnapshotError::Unsafe { path: shown, reason: "links to the root" });
                };
                let missing = || SnapshotError::Entry {
                    path: shown.clone(),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("hard link to {link_shown:?}, which this layer does not hold"),
                    ),
                };
                let source = existing_dir(dest, &link_parent, &shown)?
                    .ok_or_else(missing)?
                    .join(OsStr::from_bytes(&link_name));
                if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
                    return Err(missing());
                }
                remove_existing(&target).map_err(err)?;
                fs::hard_link(&source, &target).map_err(err)?;
                continue; // the link shares its target's metadata
            }
            EntryType::Char | EntryType::Block => {
                if !opts.as_root {
                    stats.skipped_devices += 1;
                    continue;
                }
                let (major, minor) = (
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                let kind = if kind == EntryType::Char { libc::S_IFCHR } else { libc::S_IFBLK };
                remove_existing(&target).map_err(err)?;
                make_node(&target, kind, major, minor).map_err(err)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(err)?;
            }
            EntryType::Fifo => {
                remove_existing(&target).map_err(err)?;
                make_node(&target, libc::S_IFIFO, 0, 0).map_err(err)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(err)?;
            }
            // PAX and GNU records are read by the tar reader itself; what is
            // left (global headers, unknown kinds) carries no file.
            _ => continue,
        }
        if let Some(extensions) = entry.pax_extensions().map_err(err)? {
            for ext in extensions {
                let ext = ext.map_err(err)?;
                let Some(key) = ext.key_bytes().strip_prefix(XATTR_PREFIX.as_bytes()) else {
                    continue;
                };
                let key = String::from_utf8_lossy(key).into_owned();
                let privileged = key.starts_with("trusted.") || key.starts_with("security.");
                if (privileged && !opts.as_root)
                    || (!whiteouts && key.starts_with("trusted.overlay."))
                {
                    continue;
                }
                set_xattr(&target, &key, ext.value_bytes()).map_err(err)?;
            }
        }
        if opts.as_root {
            let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
            lchown(&target, uid as u32, gid as u32).map_err(err)?;
        }
        if kind != EntryType::Directory {
            set_mtime(&target, mtime).map_err(err)?;
        }
    }
    for (dir, mode, mtime) in dirs.iter().rev() {
        let err = |source| SnapshotError::Entry { path: dir.display().to_string(), source };
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode)).map_err(err)?;
        set_mtime(dir, *mtime).map_err(err)?;
    }
    Ok(stats)
}

/// A tar path as its parent components and last name; `None` for the root
/// itself (`./`). `..` is refused; `.` and empty components are dropped.
#[allow(clippy::type_complexity)]
fn clean(raw: &[u8], shown: &str) -> Result<Option<(Vec<Vec<u8>>, Vec<u8>)>, SnapshotError> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(SnapshotError::Unsafe {
                    path: shown.to_owned(),
                    reason: "climbs out of the layer (..)",
                });
            }
            p => parts.push(p.to_vec()),
        }
    }
    Ok(parts.pop().map(|name| (parts, name)))
}

/// `dest` joined with `parts`, each a directory: created when missing (a
/// file in the way is replaced), refused when a symlink, which would lead
/// the entry anywhere.
fn ensure_parent(dest: &Path, parts: &[Vec<u8>], shown: &str) -> Result<PathBuf, SnapshotError> {
    let mut path = dest.to_owned();
    for part in parts {
        path.push(OsStr::from_bytes(part));
        let err = |source| SnapshotError::Entry { path: shown.to_owned(), source };
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(SnapshotError::Unsafe {
                    path: shown.to_owned(),
                    reason: "goes through a symlink",
                });
            }
            Ok(_) => {
                fs::remove_file(&path).map_err(err)?;
                fs::create_dir(&path).map_err(err)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&path).map_err(err)?,
            Err(e) => return Err(err(e)),
        }
    }
    Ok(path)
}

/// `dest` joined with `parts` if each is a directory already there;
/// `None` if one is missing; refused if one is a symlink or a file.
fn existing_dir(
    dest: &Path,
    parts: &[Vec<u8>],
    shown: &str,
) -> Result<Option<PathBuf>, SnapshotError> {
    let mut path = dest.to_owned();
    for part in parts {
        path.push(OsStr::from_bytes(part));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SnapshotError::Unsafe {
                    path: shown.to_owned(),
                    reason: "links through something that is not a directory of the layer",
                });
            }
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(path))
}

/// Clears the way for a new entry (a directory with all it holds).
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn make_node(path: &Path, kind: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: `p` is a valid NUL-terminated path for the call's duration.
    check(unsafe { libc::mknod(p.as_ptr(), kind | 0o600, libc::makedev(major, minor)) })
}

fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: as above.
    check(unsafe { libc::lchown(p.as_ptr(), uid, gid) })
}

fn set_xattr(path: &Path, key: &str, value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let k = CString::new(key)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an xattr name"))?;
    // SAFETY: both strings are NUL-terminated and `value` is valid for its length.
    check(unsafe { libc::lsetxattr(p.as_ptr(), k.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

/// Sets access and modification time to `secs`, never following a symlink.
fn set_mtime(path: &Path, secs: u64) -> io::Result<()> {
    let p = c_path(path)?;
    let t = libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: 0 };
    let times = [t, t];
    // SAFETY: `p` is NUL-terminated and `times` holds the two entries utimensat reads.
    check(unsafe {
        libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    })
}
