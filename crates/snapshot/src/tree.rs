//! A directory tree as a tar: what `berth export` and `berth cp` send.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Writes `src` (never following a symlink, itself included) as a tar:
/// under `name` (`name`, `name/child`, ...), or with `name` empty its
/// children alone (`child`, ...). Entries come in path order, hard links
/// within the tree as links, modes and mtimes kept; owners kept, or all
/// set to `owner` when given.
pub fn write_tree(
    src: &Path,
    name: &str,
    owner: Option<(u32, u32)>,
    out: impl Write,
) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut links = std::collections::HashMap::new();
    let meta = fs::symlink_metadata(src)?;
    if name.is_empty() {
        if !meta.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory"));
        }
        walk(&mut tar, src, "", owner, &mut links)?;
    } else {
        append(&mut tar, src, &meta, name, owner, &mut links)?;
        if meta.is_dir() {
            walk(&mut tar, src, name, owner, &mut links)?;
        }
    }
    tar.into_inner()?.flush()
}

type Links = std::collections::HashMap<(u64, u64), String>;

fn walk<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    owner: Option<(u32, u32)>,
    links: &mut Links,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let file_name = e.file_name();
        let name = file_name.to_string_lossy();
        let rel = if prefix.is_empty() { name.into_owned() } else { format!("{prefix}/{name}") };
        let path = e.path();
        let meta = fs::symlink_metadata(&path)?;
        append(tar, &path, &meta, &rel, owner, links)?;
        if meta.is_dir() {
            walk(tar, &path, &rel, owner, links)?;
        }
    }
    Ok(())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    meta: &fs::Metadata,
    rel: &str,
    owner: Option<(u32, u32)>,
    links: &mut Links,
) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_socket() {
        return Ok(()); // tar has no sockets (as docker, they are left out)
    }
    let (uid, gid) = owner.unwrap_or((meta.uid(), meta.gid()));
    if meta.is_file() && meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Link);
            h.set_mode(meta.mode() & 0o7777);
            h.set_uid(u64::from(uid));
            h.set_gid(u64::from(gid));
            h.set_mtime(meta.mtime().max(0) as u64);
            h.set_size(0);
            return tar.append_link(&mut h, rel, first);
        }
        links.insert((meta.dev(), meta.ino()), rel.to_owned());
    }
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    if !meta.is_file() {
        h.set_size(0);
    }
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path)?;
        return tar.append_link(&mut h, rel, target);
    }
    if meta.is_dir() {
        return tar.append_data(&mut h, format!("{rel}/"), io::empty());
    }
    if meta.is_file() {
        return tar.append_data(&mut h, rel, fs::File::open(path)?);
    }
    // Devices and fifos: the header says it all.
    if meta.file_type().is_char_device() || meta.file_type().is_block_device() {
        let rdev = meta.rdev();
        h.set_device_major(libc::major(rdev))?;
        h.set_device_minor(libc::minor(rdev))?;
    }
    tar.append_data(&mut h, rel, io::empty())
}
