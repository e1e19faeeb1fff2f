//! COPY and ADD: which files a step selects, with docker's path rules, and
//! the layer they make, written straight from where the files are (the
//! context is never tarred up first).

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_dockerfile::{Ignore, PathPattern};
use berth_reference::{Algorithm, Digest, HashingReader};

/// Where a COPY reads: the build context (with its `.dockerignore`), or
/// another stage's or image's root filesystem (`--from`).
pub enum SourceRoot<'a> {
    Context { root: &'a Path, ignore: &'a Ignore },
    Rootfs(&'a Path),
}

/// What a COPY or ADD asks for, its words expanded.
pub struct CopyRequest<'a> {
    pub sources: &'a [String],
    /// Absolute in the image (relative ones already joined to WORKDIR).
    pub dest: &'a str,
    pub owner: Option<(u32, u32)>,
    /// ADD: a local tar archive is extracted at the destination.
    pub extract_archives: bool,
    /// `--exclude` patterns, matched like `.dockerignore` lines.
    pub exclude: Option<&'a Ignore>,
    /// `--parents`: each source keeps its path below the root under `dest`.
    pub parents: bool,
}

/// What went wrong selecting the files (messages as docker words them).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("forbidden path outside the build context: {0}")]
    OutsideContext(String),
    #[error(
        "file not found in build context or excluded by .dockerignore: stat {0}: file does not exist"
    )]
    NotFound(String),
    #[error("no source files were specified")]
    NoSources,
    #[error(
        "When using COPY with more than one source file, the destination must be a directory and end with a /"
    )]
    DestinationNotDirectory,
    #[error("invalid pattern {0:?}: {1}")]
    BadPattern(String, String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Io { path: path.display().to_string(), source }
}

/// One entry of the layer: where it goes and where it comes from.
#[derive(Debug)]
pub struct Item {
    /// In the layer, without a leading `/`.
    pub dest: String,
    pub source: ItemSource,
}

#[derive(Debug)]
pub enum ItemSource {
    /// A file, directory, link or device on disk (`lstat`ed).
    Path(PathBuf, Metadata),
    /// A directory the copy creates (a missing destination or parent).
    NewDir,
    /// A local archive ADD extracts here.
    Archive(PathBuf, Metadata),
}

/// Answers whether a path exists in the image being built (as a directory
/// or not), so that COPY knows whether `dest` names a directory and which
/// parents it must create.
pub trait LowerView {
    /// `Some(true)` a directory, `Some(false)` something else, `None` absent.
    fn kind(&self, path: &str) -> Option<bool>;
}

/// The entries a COPY writes, sorted by their path in the layer.
pub fn select(
    req: &CopyRequest<'_>,
    from: &SourceRoot<'_>,
    lower: &dyn LowerView,
) -> Result<Vec<Item>, CopyError> {
    if req.sources.is_empty() {
        return Err(CopyError::NoSources);
    }
    // Each source as (relative path in its root, the path on disk).
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let mut wildcard = false;
    for source in req.sources {
        let rel = clean_source(source)?;
        if PathPattern::is_pattern(&rel) {
            wildcard = true;
            let pattern =
                PathPattern::new(&rel).map_err(|e| CopyError::BadPattern(source.clone(), e))?;
            let matches = glob(from, &pattern, req.exclude)?;
            if matches.is_empty() {
                return Err(CopyError::NotFound(source.clone()));
            }
            found.extend(matches);
        } else {
            let path = locate(from, &rel).ok_or_else(|| CopyError::NotFound(source.clone()))?;
            if excluded(from, req.exclude, &rel, false) {
                return Err(CopyError::NotFound(source.clone()));
            }
            found.push((rel, path));
        }
    }
    let dest_clean = clean_dest(req.dest);
    let several = found.len() > 1 || wildcard && req.sources.len() > 1;
    let dest_is_dir = req.dest.ends_with('/')
        || req.dest.ends_with("/.")
        || dest_clean.is_empty()
        || lower.kind(&dest_clean) == Some(true);
    if (found.len() > 1 || several) && !dest_is_dir {
        return Err(CopyError::DestinationNotDirectory);
    }
    let mut items: BTreeMap<String, ItemSource> = BTreeMap::new();
    if req.parents && !dest_is_dir {
        return Err(CopyError::DestinationNotDirectory);
    }
    for (rel, path) in found {
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        if req.parents {
            let target = join(&dest_clean, &rel);
            if meta.is_dir() {
                add_parents(&mut items, &target, lower, true);
                walk(from, req.exclude, &rel, &path, &target, &mut items)?;
            } else {
                add_parents(&mut items, parent_of(&target), lower, true);
                items.insert(target, ItemSource::Path(path, meta));
            }
            continue;
        }
        if meta.is_dir() {
            add_parents(&mut items, &dest_clean, lower, true);
            walk(from, req.exclude, &rel, &path, &dest_clean, &mut items)?;
        } else {
            let name = rel.rsplit('/').next().unwrap_or(&rel).to_owned();
            let target = if dest_is_dir { join(&dest_clean, &name) } else { dest_clean.clone() };
            if req.extract_archives && meta.is_file() && is_archive(&path) {
                add_parents(&mut items, &dest_clean, lower, true);
                // Keyed after the directory itself, which may be a new one.
                items.insert(format!("{dest_clean}/"), ItemSource::Archive(path, meta));
                continue;
            }
            add_parents(&mut items, parent_of(&target), lower, true);
            items.insert(target, ItemSource::Path(path, meta));
        }
    }
    Ok(items.into_iter().map(|(dest, source)| Item { dest, source }).collect())
}

/// A source as a relative path in its root; `..` may not climb out.
fn clean_source(source: &str) -> Result<String, CopyError> {
    let mut parts: Vec<&str> = Vec::new();
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(CopyError::OutsideContext(source.to_owned()));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// The destination as a relative path in the layer (`..` stops at `/`).
fn clean_dest(dest: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// The directories up to and including `dir` that the image lacks.
fn add_parents(
    items: &mut BTreeMap<String, ItemSource>,
    dir: &str,
    lower: &dyn LowerView,
    _created: bool,
) {
    let mut path = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path = join(&path, part);
        if !items.contains_key(&path) && lower.kind(&path).is_none() {
            items.insert(path.clone(), ItemSource::NewDir);
        }
    }
}

/// Where `rel` is on disk: in the context, as written (a symlink is
/// copied as a link, never followed out); in a root filesystem, resolved
/// as the image would (its own absolute links stay inside it).
fn locate(from: &SourceRoot<'_>, rel: &str) -> Option<PathBuf> {
    match from {
        SourceRoot::Context { root, .. } => {
            let path = if rel.is_empty() { root.to_path_buf() } else { root.join(rel) };
            let meta = fs::symlink_metadata(&path).ok()?;
            // A source that is itself a link is followed, as docker does,
            // but only inside the context: one pointing out stays a link.
            if meta.file_type().is_symlink()
                && let Some(target) = berth_container::resolve_in_root(root, rel)
            {
                return Some(target);
            }
            Some(path)
        }
        SourceRoot::Rootfs(root) => berth_container::resolve_in_root(root, rel),
    }
}

/// Whether the context's `.dockerignore` (or `--exclude`) leaves `rel` out.
fn excluded(from: &SourceRoot<'_>, exclude: Option<&Ignore>, rel: &str, _dir: bool) -> bool {
    if rel.is_empty() {
        return false;
    }
    let ignored = match from {
        SourceRoot::Context { ignore, .. } => ignore.is_ignored(rel),
        SourceRoot::Rootfs(_) => false,
    };
    ignored || exclude.is_some_and(|e| e.is_ignored(rel))
}

/// Whether a directory that is itself left out may hold an entry brought
/// back by an exception (`!dir/keep`), so that it must still be walked.
fn may_reinclude(from: &SourceRoot<'_>, exclude: Option<&Ignore>, rel: &str) -> bool {
    let by_ignore = match from {
        SourceRoot::Context { ignore, .. } => ignore.may_reinclude_under(rel),
        SourceRoot::Rootfs(_) => false,
    };
    by_ignore || exclude.is_some_and(|e| e.may_reinclude_under(rel))
}

/// The paths (relative to the root) matching `pattern`, walking only as
/// deep as the pattern reaches.
fn glob(
    from: &SourceRoot<'_>,
    pattern: &PathPattern,
    exclude: Option<&Ignore>,
) -> Result<Vec<(String, PathBuf)>, CopyError> {
    let root = match from {
        SourceRoot::Context { root, .. } => root.to_path_buf(),
        SourceRoot::Rootfs(root) => root.to_path_buf(),
    };
    let mut level: Vec<String> = vec![String::new()];
    for depth in 0..pattern.depth() {
        let mut next = Vec::new();
        for dir in &level {
            let on_disk = if dir.is_empty() { root.clone() } else { root.join(dir) };
            let Ok(entries) = fs::read_dir(&on_disk) else { continue };
            let mut names: Vec<String> =
                entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            for name in names {
                let rel = join(dir, &name);
                let last = depth + 1 == pattern.depth();
                let wanted = if last {
                    pattern.matches(&rel) && !excluded(from, exclude, &rel, false)
                } else {
                    root.join(&rel).is_dir()
                };
                if wanted {
                    next.push(rel);
                }
            }
        }
        level = next;
    }
    Ok(level
        .into_iter()
        .filter(|r| pattern.matches(r))
        .filter_map(|r| locate(from, &r).map(|path| (r, path)))
        .collect())
}

/// Every entry under the directory `path` (relative `rel` in its root),
/// placed under `dest`: a directory's contents are copied, not the
/// directory itself.
fn walk(
    from: &SourceRoot<'_>,
    exclude: Option<&Ignore>,
    rel: &str,
    path: &Path,
    dest: &str,
    items: &mut BTreeMap<String, ItemSource>,
) -> Result<(), CopyError> {
    let entries = fs::read_dir(path).map_err(io_at(path))?;
    for entry in entries {
        let entry = entry.map_err(io_at(path))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child_rel = join(rel, &name);
        let child_path = entry.path();
        // Relative to the open directory: no path walk from the root per file.
        let meta = entry.metadata().map_err(io_at(&child_path))?;
        let child_dest = join(dest, &name);
        let left_out = excluded(from, exclude, &child_rel, meta.is_dir());
        if meta.is_dir() {
            if left_out && !may_reinclude(from, exclude, &child_rel) {
                continue;
            }
            if !left_out {
                items.insert(child_dest.clone(), ItemSource::Path(child_path.clone(), meta));
            }
            walk(from, exclude, &child_rel, &child_path, &child_dest, items)?;
        } else if !left_out {
            items.insert(child_dest, ItemSource::Path(child_path, meta));
        }
    }
    Ok(())
}

/// A file ADD extracts: a tar, plain or compressed with gzip, bzip2, xz
/// or zstd (docker's rule: by content, never by name).
fn is_archive(path: &Path) -> bool {
    let Ok(mut file) = File::open(path) else { return false };
    let mut head = [0u8; 6];
    let Ok(n) = read_full(&mut file, &mut head) else { return false };
    let media_type = match &head[..n] {
        [0x1f, 0x8b, ..] => berth_oci::media_type::OCI_LAYER_GZIP,
        [b'B', b'Z', b'h', ..] => "bzip2",
        [0xfd, b'7', b'z', b'X', b'Z', 0] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => berth_oci::media_type::OCI_LAYER_ZSTD,
        _ => berth_oci::media_type::OCI_LAYER,
    };
    let Ok(file) = File::open(path) else { return false };
    let Ok(mut reader) = open_compressed(file, media_type) else { return false };
    let mut block = [0u8; 512];
    matches!(read_full(&mut reader, &mut block), Ok(512)) && &block[257..262] == b"ustar"
}

fn open_compressed(file: File, kind: &str) -> io::Result<Box<dyn Read>> {
    let reader = io::BufReader::new(file);
    match kind {
        "bzip2" | "xz" => Err(io::Error::other(format!("{kind} archives are not supported"))),
        media_type => Ok(Box::new(berth_layer::decompress(reader, media_type)?)),
    }
}

fn archive_reader(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 4];
    let n = read_full(&mut file, &mut head)?;
    let kind = match &head[..n] {
        [0x1f, 0x8b, ..] => berth_oci::media_type::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => berth_oci::media_type::OCI_LAYER_ZSTD,
        _ => berth_oci::media_type::OCI_LAYER,
    };
    open_compressed(File::open(path)?, kind)
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `--chmod`: an octal mode (`755`) or chmod(1)'s symbolic clauses
/// (`u+x,go-w`, `a=rX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The permission bits the clause may touch (u, g, o or all).
    who: u32,
    op: char,
    perms: String,
}

impl Chmod {
    pub fn parse(text: &str) -> Result<Chmod, String> {
        let bad = || format!("invalid chmod parameter: {text:?}");
        if !text.is_empty() && text.chars().all(|c| c.is_digit(8)) {
            let mode = u32::from_str_radix(text, 8).map_err(|_| bad())?;
            return if mode <= 0o7777 { Ok(Chmod::Octal(mode)) } else { Err(bad()) };
        }
        let mut clauses = Vec::new();
        for clause in text.split(',') {
            let at = clause.find(['+', '-', '=']).ok_or_else(bad)?;
            let (who_text, rest) = clause.split_at(at);
            let mut who = 0;
            for c in who_text.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(bad()),
                };
            }
            let who = if who == 0 { 0o7777 } else { who };
            let op = rest.chars().next().ok_or_else(bad)?;
            let perms = rest[1..].to_owned();
            if !perms.chars().all(|c| "rwxXst".contains(c)) {
                return Err(bad());
            }
            clauses.push(Clause { who, op, perms });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode an entry of `mode` gets (`X`: execute for directories and
    /// for files some execute bit is already set on).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => clauses.iter().fold(mode, |mode, c| {
                let mut bits = 0;
                for p in c.perms.chars() {
                    bits |= match p {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' if is_dir || mode & 0o111 != 0 => 0o111,
                        's' => 0o6000,
                        't' => 0o1000,
                        _ => 0,
                    };
                }
                let bits = bits & c.who;
                match c.op {
                    '+' => mode | bits,
                    '-' => mode & !bits,
                    _ => (mode & !(c.who & 0o7777)) | bits,
                }
            }),
        }
    }
}

fn mode_of(opts: &WriteOptions, mode: u32, is_dir: bool) -> u32 {
    opts.chmod.as_ref().map_or(mode, |c| c.apply(mode, is_dir))
}

/// How the written entries look: owner, mode, and the time given to the
/// directories the copy creates.
pub struct WriteOptions {
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    pub new_dir_mtime: u64,
}

/// What the cache key needs of one item: its path, type, mode, owner,
/// size, link target and (for a file or an archive) content digest; never
/// its mtime alone.
pub fn describe(item: &Item, opts: &WriteOptions, digest: Option<&Digest>) -> String {
    let (uid, gid) = opts.owner.unwrap_or((0, 0));
    let digest = digest.map_or(String::new(), Digest::to_string);
    match &item.source {
        ItemSource::NewDir => format!("new-dir {} {:?}", item.dest, opts.owner),
        ItemSource::Archive(_, meta) => format!("archive {} {} {digest}", item.dest, meta.len()),
        ItemSource::Path(path, meta) => {
            let mode = mode_of(opts, meta.mode() & 0o7777, meta.is_dir());
            let ft = meta.file_type();
            if ft.is_dir() {
                format!("dir {} {mode:o} {uid}:{gid}", item.dest)
            } else if ft.is_symlink() {
                let target = fs::read_link(path).unwrap_or_default();
                format!("link {} {} {uid}:{gid}", item.dest, target.display())
            } else if ft.is_file() {
                format!("file {} {mode:o} {uid}:{gid} {} {digest}", item.dest, meta.len())
            } else {
                format!("other {} {mode:o} {uid}:{gid}", item.dest)
            }
        }
    }
}

/// Whether the item's content is hashed (a file, or an archive ADD extracts).
pub fn has_content(item: &Item) -> bool {
    match &item.source {
        ItemSource::Path(_, meta) => meta.is_file(),
        ItemSource::Archive(..) => true,
        ItemSource::NewDir => false,
    }
}

/// Writes `items` as a layer tar to `out` (PAX headers, entries in path
/// order, source mtimes kept, no atime or ctime) and returns, per item,
/// the content digest of a file or archive: `known[i]` where the caller
/// has it (from the stat cache), else hashed as it is written.
pub fn write_layer(
    items: &[Item],
    known: &[Option<Digest>],
    opts: &WriteOptions,
    out: &mut dyn Write,
) -> Result<Vec<Option<Digest>>, CopyError> {
    let mut tar = tar::Builder::new(out);
    let mut digests = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let (ItemSource::Path(path, meta), Some(Some(digest))) = (&item.source, known.get(i))
            && meta.is_file()
        {
            write_known_file(&mut tar, &item.dest, path, meta, opts)?;
            digests.push(Some(digest.clone()));
            continue;
        }
        digests.push(match &item.source {
            ItemSource::NewDir => {
                let mut h = header(tar::EntryType::Directory, 0o755, opts.new_dir_mtime);
                if let Some((uid, gid)) = opts.owner {
                    h.set_uid(uid.into());
                    h.set_gid(gid.into());
                }
                append(&mut tar, &mut h, &format!("{}/", item.dest), io::empty())?;
                None
            }
            ItemSource::Path(path, meta) => write_path(&mut tar, &item.dest, path, meta, opts)?,
            ItemSource::Archive(path, _) => {
                Some(extract_into(&mut tar, path, item.dest.trim_end_matches('/'), opts)?)
            }
        });
    }
    tar.into_inner()
        .and_then(|w| w.flush())
        .map_err(|e| CopyError::Io { path: "layer".into(), source: e })?;
    Ok(digests)
}

/// A regular file whose digest is already known: copied, not hashed.
fn write_known_file(
    tar: &mut tar::Builder<&mut dyn Write>,
    dest: &str,
    path: &Path,
    meta: &Metadata,
    opts: &WriteOptions,
) -> Result<(), CopyError> {
    let (uid, gid) = opts.owner.unwrap_or((0, 0));
    let mut h = header(
        tar::EntryType::Regular,
        mode_of(opts, meta.mode() & 0o7777, false),
        meta.mtime().max(0) as u64,
    );
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_size(meta.len());
    let file = File::open(path).map_err(io_at(path))?;
    let mut counted = CountingReader { inner: file, n: 0 };
    append(tar, &mut h, dest, &mut counted)?;
    if counted.n != meta.len() {
        return Err(CopyError::Io {
            path: path.display().to_string(),
            source: io::Error::other("the file changed while it was copied"),
        });
    }
    Ok(())
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

/// Appends one entry; a path or link target too long for the ustar fields
/// goes in a PAX extended header before it.
fn append(
    tar: &mut tar::Builder<&mut dyn Write>,
    h: &mut tar::Header,
    path: &str,
    data: impl Read,
) -> Result<(), CopyError> {
    let wrap = |e: io::Error| CopyError::Io { path: path.to_owned(), source: e };
    let mut pax: Vec<(&str, &[u8])> = Vec::new();
    if h.set_path(path).is_err() || path.len() > 100 {
        pax.push(("path", path.as_bytes()));
        let short: String =
            path.chars().rev().take(90).collect::<Vec<_>>().into_iter().rev().collect();
        h.set_path(short.trim_start_matches('/')).map_err(wrap)?;
    }
    let link = h.link_name_bytes().map(|l| l.into_owned());
    if let Some(link) = link.as_ref().filter(|l| l.len() > 100) {
        pax.push(("linkpath", link.as_slice()));
    }
    if !pax.is_empty() {
        tar.append_pax_extensions(pax).map_err(wrap)?;
    }
    h.set_cksum();
    tar.append(h, data).map_err(wrap)
}

fn write_path(
    tar: &mut tar::Builder<&mut dyn Write>,
    dest: &str,
    path: &Path,
    meta: &Metadata,
    opts: &WriteOptions,
) -> Result<Option<Digest>, CopyError> {
    let mode = mode_of(opts, meta.mode() & 0o7777, meta.is_dir());
    let mtime = meta.mtime().max(0) as u64;
    let ft = meta.file_type();
    let (uid, gid) = opts.owner.unwrap_or((0, 0));
    let kind = if ft.is_dir() {
        tar::EntryType::Directory
    } else if ft.is_symlink() {
        tar::EntryType::Symlink
    } else if ft.is_file() {
        tar::EntryType::Regular
    } else if ft.is_fifo() {
        tar::EntryType::Fifo
    } else {
        // Sockets and devices in a context are not copied (docker skips
        // sockets; devices have no place in a context).
        return Ok(None);
    };
    let mut h = header(kind, mode, mtime);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    match kind {
        tar::EntryType::Directory => {
            append(tar, &mut h, &format!("{dest}/"), io::empty())?;
            Ok(None)
        }
        tar::EntryType::Symlink => {
            let target = fs::read_link(path).map_err(io_at(path))?;
            let target = target.to_string_lossy().into_owned();
            if h.set_link_name(&target).is_err() {
                h.set_link_name("x").map_err(io_at(path))?;
            }
            append(tar, &mut h, dest, io::empty())?;
            Ok(None)
        }
        tar::EntryType::Fifo => {
            append(tar, &mut h, dest, io::empty())?;
            Ok(None)
        }
        _ => {
            let file = File::open(path).map_err(io_at(path))?;
            h.set_size(meta.len());
            let mut hashing = HashingReader::new(file, Algorithm::Sha256);
            append(tar, &mut h, dest, &mut hashing)?;
            let (digest, n) = hashing.finish();
            if n != meta.len() {
                return Err(CopyError::Io {
                    path: path.display().to_string(),
                    source: io::Error::other("the file changed while it was copied"),
                });
            }
            Ok(Some(digest))
        }
    }
}

/// ADD of a local archive: its entries under `dest` (their own owners and
/// modes kept unless `--chown`/`--chmod`), paths that would climb out of
/// `dest` refused. Returns the archive's digest, for the cache key.
fn extract_into(
    tar: &mut tar::Builder<&mut dyn Write>,
    path: &Path,
    dest: &str,
    opts: &WriteOptions,
) -> Result<Digest, CopyError> {
    let raw = File::open(path).map_err(io_at(path))?;
    let mut hashing = HashingReader::new(raw, Algorithm::Sha256);
    {
        let reader = archive_reader(path).map_err(io_at(path))?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(io_at(path))? {
            let mut entry = entry.map_err(io_at(path))?;
            let name = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&name).into_owned();
            let mut parts: Vec<&str> = Vec::new();
            for p in name.split('/') {
                match p {
                    "" | "." => {}
                    ".." => {
                        return Err(CopyError::Io {
                            path: path.display().to_string(),
                            source: io::Error::other(format!("{name:?} climbs out of the archive")),
                        });
                    }
                    p => parts.push(p),
                }
            }
            if parts.is_empty() {
                continue;
            }
            let target = join(dest, &parts.join("/"));
            let mut h = entry.header().clone();
            if let Some((uid, gid)) = opts.owner {
                h.set_uid(uid.into());
                h.set_gid(gid.into());
            }
            if opts.chmod.is_some() {
                let mode = h.mode().map_err(io_at(path))?;
                h.set_mode(mode_of(opts, mode, h.entry_type().is_dir()));
            }
            if let (tar::EntryType::Link, Ok(Some(link))) = (h.entry_type(), entry.link_name()) {
                let link = join(dest, link.to_string_lossy().trim_start_matches('/'));
                h.set_link_name(&link).map_err(io_at(path))?;
            }
            let shown = if h.entry_type().is_dir() { format!("{target}/") } else { target };
            append(tar, &mut h, &shown, &mut entry)?;
        }
    }
    io::copy(&mut hashing, &mut io::sink()).map_err(io_at(path))?;
    Ok(hashing.finish().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Empty;
    impl LowerView for Empty {
        fn kind(&self, _: &str) -> Option<bool> {
            None
        }
    }

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("src/sub")).unwrap();
        fs::write(r.join("src/a.txt"), "a").unwrap();
        fs::write(r.join("src/sub/b.txt"), "b").unwrap();
        fs::write(r.join("top.md"), "t").unwrap();
        fs::write(r.join("secret.key"), "k").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("outside")).unwrap();
        dir
    }

    fn dests(items: &[Item]) -> Vec<String> {
        items.iter().map(|i| i.dest.clone()).collect()
    }

    fn req<'a>(sources: &'a [String], dest: &'a str) -> CopyRequest<'a> {
        CopyRequest {
            sources,
            dest,
            owner: None,
            extract_archives: false,
            exclude: None,
            parents: false,
        }
    }

    #[test]
    fn a_directory_copies_its_contents_and_files_follow_the_slash_rule() {
        let dir = context();
        let ignore = Ignore::parse("*.key\n").unwrap();
        let from = SourceRoot::Context { root: dir.path(), ignore: &ignore };
        let s = vec!["src".to_owned()];
        let items = select(&req(&s, "/app/"), &from, &Empty).unwrap();
        assert_eq!(dests(&items), ["app", "app/a.txt", "app/sub", "app/sub/b.txt"]);
        let s = vec!["top.md".to_owned()];
        assert_eq!(
            dests(&select(&req(&s, "/docs/"), &from, &Empty).unwrap()),
            ["docs", "docs/top.md"]
        );
        assert_eq!(dests(&select(&req(&s, "/renamed.md"), &from, &Empty).unwrap()), ["renamed.md"]);
        let s = vec![".".to_owned()];
        let all = dests(&select(&req(&s, "/"), &from, &Empty).unwrap());
        assert!(all.contains(&"outside".to_owned()), "a link is copied as a link");
        assert!(!all.contains(&"secret.key".to_owned()), "ignored files stay out");
    }

    #[test]
    fn wildcards_several_sources_and_bad_paths() {
        let dir = context();
        let ignore = Ignore::parse("").unwrap();
        let from = SourceRoot::Context { root: dir.path(), ignore: &ignore };
        let s = vec!["src/*.txt".to_owned(), "top.md".to_owned()];
        assert_eq!(
            dests(&select(&req(&s, "/x/"), &from, &Empty).unwrap()),
            ["x", "x/a.txt", "x/top.md"]
        );
        assert!(matches!(
            select(&req(&s, "/x"), &from, &Empty),
            Err(CopyError::DestinationNotDirectory)
        ));
        let s = vec!["../etc/passwd".to_owned()];
        assert!(matches!(select(&req(&s, "/"), &from, &Empty), Err(CopyError::OutsideContext(_))));
        let s = vec!["missing".to_owned()];
        let e = select(&req(&s, "/"), &from, &Empty).unwrap_err().to_string();
        assert!(e.contains("stat missing: file does not exist"), "{e}");
        let s = vec!["*.none".to_owned()];
        assert!(matches!(select(&req(&s, "/"), &from, &Empty), Err(CopyError::NotFound(_))));
    }

    #[test]
    fn parents_keeps_each_source_path() {
        let dir = context();
        let ignore = Ignore::parse("").unwrap();
        let from = SourceRoot::Context { root: dir.path(), ignore: &ignore };
        let s = vec!["src/sub/b.txt".to_owned(), "src/a.txt".to_owned()];
        let mut r = req(&s, "/out/");
        r.parents = true;
        let items = select(&r, &from, &Empty).unwrap();
        assert_eq!(
            dests(&items),
            ["out", "out/src", "out/src/a.txt", "out/src/sub", "out/src/sub/b.txt"]
        );
    }

    #[test]
    fn the_layer_is_deterministic_and_carries_owner_and_mode() {
        let dir = context();
        let ignore = Ignore::parse("").unwrap();
        let from = SourceRoot::Context { root: dir.path(), ignore: &ignore };
        let s = vec!["src".to_owned()];
        let items = select(&req(&s, "/app"), &from, &Empty).unwrap();
        let opts = WriteOptions {
            owner: Some((1000, 1000)),
            chmod: Some(Chmod::Octal(0o600)),
            new_dir_mtime: 0,
        };
        let (mut one, mut two) = (Vec::new(), Vec::new());
        let digests = write_layer(&items, &[], &opts, &mut one).unwrap();
        write_layer(&items, &[], &opts, &mut two).unwrap();
        assert_eq!(one, two);
        let i = items.iter().position(|i| i.dest == "app/a.txt").unwrap();
        assert_eq!(digests[i], Some(Digest::sha256_of(b"a")));
        let fact = describe(&items[i], &opts, digests[i].as_ref());
        assert_eq!(fact, format!("file app/a.txt 600 1000:1000 1 {}", Digest::sha256_of(b"a")));
        let mut archive = tar::Archive::new(&one[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            seen.push((
                e.path().unwrap().display().to_string(),
                h.uid().unwrap(),
                h.mode().unwrap(),
            ));
        }
        assert_eq!(seen[0], ("app/".to_owned(), 1000, 0o755));
        assert!(seen.contains(&("app/sub/b.txt".to_owned(), 1000, 0o600)));
    }

    #[test]
    fn chmod_takes_octal_and_symbolic_modes() {
        let m = |s: &str, mode: u32, dir: bool| Chmod::parse(s).unwrap().apply(mode, dir);
        assert_eq!(m("755", 0o600, false), 0o755);
        assert_eq!(m("u+x", 0o644, false), 0o744);
        assert_eq!(m("go-w,u+x", 0o666, false), 0o744);
        assert_eq!(m("a=rX", 0o640, true), 0o555);
        assert_eq!(m("a=rX", 0o640, false), 0o444);
        assert_eq!(m("=r", 0o777, false), 0o444);
        assert_eq!(m("+t", 0o777, true), 0o1777);
        assert!(Chmod::parse("u+q").is_err());
        assert!(Chmod::parse("99999").is_err());
        assert!(Chmod::parse("").is_err());
    }

    #[test]
    fn add_extracts_a_local_archive_and_refuses_one_that_climbs_out() {
        let dir = context();
        let mut built = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        built.append_data(&mut h, "inner/f", &b"hi"[..]).unwrap();
        fs::write(dir.path().join("a.tar"), built.into_inner().unwrap()).unwrap();
        let ignore = Ignore::parse("").unwrap();
        let from = SourceRoot::Context { root: dir.path(), ignore: &ignore };
        let s = vec!["a.tar".to_owned()];
        let mut r = req(&s, "/opt/");
        r.extract_archives = true;
        let items = select(&r, &from, &Empty).unwrap();
        let mut out = Vec::new();
        let opts = WriteOptions { owner: None, chmod: None, new_dir_mtime: 0 };
        write_layer(&items, &[], &opts, &mut out).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["opt/", "opt/inner/f"]);

        let mut evil = tar::Header::new_ustar();
        evil.as_old_mut().name[..9].copy_from_slice(b"../escape");
        evil.set_size(0);
        evil.set_mode(0o644);
        evil.set_cksum();
        let mut bytes = evil.as_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 1024]);
        fs::write(dir.path().join("a.tar"), bytes).unwrap();
        let items = select(&r, &from, &Empty).unwrap();
        let e = write_layer(&items, &[], &opts, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("climbs out"), "{e}");
    }
}
