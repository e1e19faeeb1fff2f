//! What a container changed, read from its overlay upper directory alone
//! (never by walking the whole root filesystem), with docker's rules, and
//! the layer `commit` makes of it.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One line of `diff`: `A /path`, `C /path` or `D /path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute, as the container sees it (`/etc/motd`).
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path)
    }
}

/// The layers under a container's upper directory, topmost first: the
/// init layer (whose files never count as changes), then the image's
/// snapshots.
pub struct Lowers<'a> {
    pub init: Option<&'a Path>,
    pub image: &'a [PathBuf],
}

/// The changes in `upper` over `lowers`, sorted by path (a directory
/// before what it holds), with docker's rules:
/// - `A` for a path no lower has, and for every entry of a new tree;
/// - `D` for a deleted path (the top of a deleted tree only);
/// - `C` for a file whose mode, owner, size, mtime or device differs, and
///   for every directory holding a change (never `/`); a directory deleted
///   and re-created (opaque) is `C`, its new children `A` and the ones it
///   lost `D`;
/// - nothing for what was created and deleted again, or for the init
///   layer's files.
pub fn changes(upper: &Path, lowers: &Lowers<'_>) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(upper, &mut Vec::new(), lowers, false, &mut out)?;
    out.sort_by(|a, b| {
        let key = |c: &Change| c.path.split('/').map(str::to_owned).collect::<Vec<_>>();
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// Visits the upper directory at `rel`; returns whether it holds a change.
/// `fresh`: the directory is new (or re-created), so everything is `A`.
fn walk(
    upper: &Path,
    rel: &mut Vec<OsString>,
    lowers: &Lowers<'_>,
    fresh: bool,
    out: &mut Vec<Change>,
) -> io::Result<bool> {
    let dir = join(upper, rel);
    let mut names: Vec<OsString> =
        fs::read_dir(&dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    names.sort();
    let mut changed = false;
    for name in &names {
        rel.push(name.clone());
        let path = absolute(rel);
        let meta = fs::symlink_metadata(join(upper, rel))?;
        let in_init = lowers.init.is_some_and(|init| fs::symlink_metadata(join(init, rel)).is_ok());
        if is_whiteout(&meta) {
            if !fresh && image_entry(lowers.image, rel).is_some() && !in_init {
                out.push(Change { kind: ChangeKind::Deleted, path });
                changed = true;
            }
        } else if meta.is_dir() {
            let below = if fresh { None } else { image_entry(lowers.image, rel) };
            let opaque = is_opaque(&join(upper, rel));
            match below {
                Some(lower) if lower.is_dir() && !opaque => {
                    // Copied up: a change only through what it holds.
                    if walk(upper, rel, lowers, false, out)? || differs(&meta, &lower, false) {
                        out.push(Change { kind: ChangeKind::Changed, path });
                        changed = true;
                    }
                }
                Some(_) => {
                    // Deleted and re-created, or a file become a directory.
                    walk(upper, rel, lowers, true, out)?;
                    lost_children(upper, rel, lowers, out)?;
                    out.push(Change { kind: ChangeKind::Changed, path });
                    changed = true;
                }
                None if in_init => {
                    // A directory of the init layer (`/etc`): it is there
                    // below, so it changes only through what it holds.
                    if walk(upper, rel, lowers, false, out)? {
                        out.push(Change { kind: ChangeKind::Changed, path });
                        changed = true;
                    }
                }
                None => {
                    walk(upper, rel, lowers, true, out)?;
                    out.push(Change { kind: ChangeKind::Added, path });
                    changed = true;
                }
            }
        } else if !in_init {
            let below = if fresh { None } else { image_entry(lowers.image, rel) };
            match below {
                Some(lower) if !differs(&meta, &lower, true) => {}
                Some(_) => {
                    out.push(Change { kind: ChangeKind::Changed, path });
                    changed = true;
                }
                None => {
                    out.push(Change { kind: ChangeKind::Added, path });
                    changed = true;
                }
            }
        }
        rel.pop();
    }
    Ok(changed)
}

/// For a re-created directory: what the image had there and the new one
/// lacks, each `D` (its top only).
fn lost_children(
    upper: &Path,
    rel: &[OsString],
    lowers: &Lowers<'_>,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for lower in lowers.image {
        let dir = join(lower, rel);
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let name = entry?.file_name();
            if !seen.insert(name.clone()) {
                continue;
            }
            let mut child = rel.to_vec();
            child.push(name);
            let in_upper = fs::symlink_metadata(join(upper, &child)).is_ok();
            if !in_upper && image_entry(lowers.image, &child).is_some() {
                out.push(Change { kind: ChangeKind::Deleted, path: absolute(&child) });
            }
        }
        if is_opaque(&dir) {
            break;
        }
    }
    Ok(())
}

/// What the image's layers show at `rel`, topmost first: `None` when no
/// layer has it, or the topmost one that mentions it deletes it.
fn image_entry(layers: &[PathBuf], rel: &[OsString]) -> Option<Metadata> {
    for layer in layers {
        match fs::symlink_metadata(join(layer, rel)) {
            Ok(m) if is_whiteout(&m) => return None,
            Ok(m) => return Some(m),
            Err(_) => {
                // An opaque ancestor here hides every layer below.
                if (1..rel.len()).any(|n| is_opaque(&join(layer, &rel[..n]))) {
                    return None;
                }
            }
        }
    }
    None
}

/// Docker's notion of a changed entry (directories: mode and owner only).
fn differs(upper: &Metadata, lower: &Metadata, file: bool) -> bool {
    let kind = |m: &Metadata| m.mode() & libc::S_IFMT;
    let base = kind(upper) != kind(lower)
        || upper.mode() != lower.mode()
        || upper.uid() != lower.uid()
        || upper.gid() != lower.gid();
    if !file {
        return base;
    }
    base || upper.size() != lower.size()
        || upper.mtime() != lower.mtime()
        || upper.mtime_nsec() != lower.mtime_nsec()
        || upper.rdev() != lower.rdev()
}

fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut value = [0u8; 1];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

fn join(base: &Path, rel: &[OsString]) -> PathBuf {
    let mut p = base.to_owned();
    p.extend(rel);
    p
}

fn absolute(rel: &[OsString]) -> String {
    let mut s = String::new();
    for part in rel {
        s.push('/');
        s.push_str(&part.to_string_lossy());
    }
    s
}

/// Writes `changes` (from [`changes`]) as a layer tar, the way `commit`
/// needs it: entries in path order, the files as they are in `upper`, a
/// deletion as an empty `.wh.NAME`, a re-created directory followed by
/// `.wh..wh..opq`. Owners, modes and mtimes are kept; xattrs are not
/// carried (overlay's own must never be).
pub fn write_layer(upper: &Path, changes: &[Change], out: impl Write) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut links: std::collections::HashMap<(u64, u64), String> = Default::default();
    let mut written: std::collections::BTreeSet<String> = Default::default();
    for change in changes {
        let rel = change.path.trim_start_matches('/');
        if change.kind == ChangeKind::Deleted {
            let (parent, name) = match rel.rsplit_once('/') {
                Some((p, n)) => (format!("{p}/"), n),
                None => (String::new(), rel),
            };
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o644);
            tar.append_data(&mut h, format!("{parent}.wh.{name}"), io::empty())?;
            continue;
        }
        let path = upper.join(rel);
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_file() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                let mut h = header_of(&meta, tar::EntryType::Link);
                tar.append_link(&mut h, rel, first)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), rel.to_owned());
        }
        if written.insert(rel.to_owned()) {
            tar.append_path_with_name(&path, rel)?;
        }
        if meta.is_dir() && is_opaque(&path) && change.kind == ChangeKind::Changed {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o644);
            tar.append_data(&mut h, format!("{rel}/.wh..wh..opq"), io::empty())?;
        }
    }
    tar.into_inner()?.flush()
}

fn header_of(meta: &Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}
