//! Listing a context's files as `.dockerignore` leaves them, and resolving a
//! path inside a context without ever leaving it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use berth_dockerfile::Ignore;

use crate::ContextError;

/// One file, directory, link or special file of a context.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the context root, never empty, without `.` or `..`.
    pub path: PathBuf,
    /// The entry itself (`lstat`): a symlink is described, not followed.
    pub metadata: fs::Metadata,
    /// A symlink's target as written, which may point anywhere (even out of
    /// the context): it is only ever copied as a link.
    pub link_target: Option<PathBuf>,
}

/// Everything below `dir` (relative to `root`; empty for the whole context)
/// that `ignore` leaves in, depth first, each directory's children in byte
/// order of their names, a directory before its contents. `dir` itself is
/// not listed.
///
/// An ignored directory is skipped whole unless an exception could re-include
/// something inside it ([`Ignore::may_reinclude_under`]); then it is walked,
/// but only the re-included entries are listed (their ignored parents are
/// not). Symlinks are never followed, `dir` included: it must be a real
/// directory inside the context (see [`resolve_in_scope`]).
pub fn walk(root: &Path, dir: &Path, ignore: &Ignore) -> Result<Vec<Entry>, ContextError> {
    let refuse = |why: &str| ContextError::Walk {
        path: root.join(dir),
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    };
    let dir = clean_relative(dir).ok_or_else(|| refuse("the path leaves the context"))?;
    // read_dir would follow a symlink: the caller resolves it first.
    match resolve_in_scope(root, &dir) {
        Ok(resolved) if resolved == dir => {}
        _ => return Err(refuse("the path goes through a symlink")),
    }
    let mut out = Vec::new();
    walk_dir(root, &dir, ignore, &mut out, &mut |_| {})?;
    Ok(out)
}

/// `opened` sees every directory the walk reads, so tests can tell a
/// pruned directory was never entered.
fn walk_dir(
    root: &Path,
    rel: &Path,
    ignore: &Ignore,
    out: &mut Vec<Entry>,
    opened: &mut dyn FnMut(&Path),
) -> Result<(), ContextError> {
    opened(rel);
    let abs = root.join(rel);
    let walk_err = |path: PathBuf| move |source| ContextError::Walk { path, source };
    let mut children: Vec<(OsString, fs::Metadata)> = Vec::new();
    for child in fs::read_dir(&abs).map_err(walk_err(abs.clone()))? {
        let child = child.map_err(walk_err(abs.clone()))?;
        // DirEntry::metadata does not follow symlinks. A file removed
        // since the listing is simply not there.
        let metadata = match child.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(walk_err(child.path())(e)),
        };
        children.push((child.file_name(), metadata));
    }
    children.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, metadata) in children {
        let path = rel.join(&name);
        let key = path.to_string_lossy();
        let is_dir = metadata.is_dir();
        if ignore.is_ignored(&key) {
            if is_dir && ignore.may_reinclude_under(&key) {
                walk_dir(root, &path, ignore, out, opened)?;
            }
            continue;
        }
        let link_target = if metadata.file_type().is_symlink() {
            let abs = root.join(&path);
            Some(fs::read_link(&abs).map_err(walk_err(abs))?)
        } else {
            None
        };
        out.push(Entry { path: path.clone(), metadata, link_target });
        if is_dir {
            walk_dir(root, &path, ignore, out, opened)?;
        }
    }
    Ok(())
}

/// The entry at `path` (relative to `root`) if it exists and `ignore`
/// leaves it in: its parent directories resolved inside the context
/// ([`resolve_in_scope`]), the entry itself not followed. The returned
/// [`Entry::path`] is the resolved one. An ignored directory that an
/// exception could reach into is returned too: what it re-includes is part
/// of the context, and [`walk`] lists just that.
pub fn entry(root: &Path, path: &Path, ignore: &Ignore) -> Result<Option<Entry>, ContextError> {
    let scope_err = |e: ScopeError| {
        let source = match e {
            ScopeError::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
        };
        ContextError::Walk { path: root.join(path), source }
    };
    let cleaned = clean_relative(path)
        .ok_or_else(|| scope_err(ScopeError::Outside { path: path.to_path_buf() }))?;
    let Some(name) = cleaned.file_name().map(|n| n.to_os_string()) else {
        return Ok(None); // the root itself is no entry
    };
    let parent = cleaned.parent().unwrap_or(Path::new(""));
    let rel = resolve_in_scope(root, parent).map_err(scope_err)?.join(name);
    let abs = root.join(&rel);
    let metadata = match fs::symlink_metadata(&abs) {
        Ok(m) => m,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(None);
        }
        Err(source) => return Err(ContextError::Walk { path: abs, source }),
    };
    let key = rel.to_string_lossy();
    if ignore.is_ignored(&key) && !(metadata.is_dir() && ignore.may_reinclude_under(&key)) {
        return Ok(None);
    }
    let link_target = if metadata.file_type().is_symlink() {
        Some(
            fs::read_link(&abs)
                .map_err(|source| ContextError::Walk { path: abs.clone(), source })?,
        )
    } else {
        None
    };
    Ok(Some(Entry { path: rel, metadata, link_target }))
}

/// `path` without `.` components, leading `/` or `..` that stays inside;
/// `None` when a `..` would climb above the start.
fn clean_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Why [`resolve_in_scope`] refused a path.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// A `..` or a symlink would leave the root (absolute link targets count
    /// as leaving: a context cannot know where it will be unpacked).
    #[error("{} leaves the context", path.display())]
    Outside { path: PathBuf },
    #[error("{}: too many levels of symbolic links", path.display())]
    Loop { path: PathBuf },
    #[error("{}: {}", path.display(), crate::error::go_error(source))]
    Io { path: PathBuf, source: io::Error },
}

/// Resolves `path` (relative to `root`; a leading `/` means the root) with
/// every symlink on the way followed inside `root`, refusing any `..` or
/// link that would leave it. Returns the resolved path relative to `root`,
/// free of symlinks up to its first missing component (the rest is kept as
/// given, cleaned).
pub fn resolve_in_scope(root: &Path, path: &Path) -> Result<PathBuf, ScopeError> {
    const MAX_LINKS: usize = 40;
    let outside = || ScopeError::Outside { path: path.to_path_buf() };
    // Components still to walk, last one on top.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path, &outside)?;
    let mut resolved = PathBuf::new();
    let mut links = 0;
    let mut missing = false;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if !resolved.pop() {
                return Err(outside());
            }
            continue;
        }
        resolved.push(&part);
        if missing {
            continue;
        }
        let abs = root.join(&resolved);
        let metadata = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing = true;
                continue;
            }
            Err(source) => return Err(ScopeError::Io { path: abs, source }),
        };
        if !metadata.file_type().is_symlink() {
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(ScopeError::Loop { path: path.to_path_buf() });
        }
        let target = fs::read_link(&abs).map_err(|source| ScopeError::Io { path: abs, source })?;
        if target.is_absolute() {
            return Err(outside());
        }
        resolved.pop();
        push_components(&mut pending, &target, &outside)?;
    }
    Ok(resolved)
}

/// Pushes `path`'s components onto `pending` so that the first is on top.
fn push_components(
    pending: &mut Vec<OsString>,
    path: &Path,
    outside: &dyn Fn() -> ScopeError,
) -> Result<(), ScopeError> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => return Err(outside()),
        }
    }
    pending.extend(parts.into_iter().rev());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn names(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(|e| e.path.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_walk_lists_depth_first_in_byte_order_and_prunes_ignored_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in ["a", "a/deep", "b", "node_modules/pkg", "keep/x", "keep/y"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["a.txt", "a/deep/f", "b/g", "node_modules/pkg/i.js", "keep/x/1", "keep/y/2", "Z"]
        {
            fs::write(root.join(f), f).unwrap();
        }
        let ignore = Ignore::parse("node_modules\nkeep\n!keep/y/2\n*.txt\n").unwrap();
        let all = walk(root, Path::new(""), &ignore).unwrap();
        assert_eq!(names(&all), ["Z", "a", "a/deep", "a/deep/f", "b", "b/g", "keep/y/2"]);
        let under = walk(root, Path::new("a"), &ignore).unwrap();
        assert_eq!(names(&under), ["a/deep", "a/deep/f"]);
        assert!(walk(root, Path::new("../x"), &ignore).is_err());
        symlink("a", root.join("alink")).unwrap();
        let err = walk(root, Path::new("alink"), &ignore).unwrap_err();
        assert!(err.to_string().contains("through a symlink"), "{err}");
    }

    #[test]
    fn one_entry_is_found_through_parent_links_unless_ignored() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f"), "f").unwrap();
        fs::write(root.join("a/b/skip.log"), "").unwrap();
        symlink("a/b", root.join("ab")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        let ignore = Ignore::parse("**/*.log\na\n!a/b/f").unwrap();
        let e = |p: &str| entry(root, Path::new(p), &ignore);
        let f = e("ab/f").unwrap().unwrap();
        assert_eq!(f.path, Path::new("a/b/f"));
        assert!(f.metadata.is_file());
        assert!(e("a/b/skip.log").unwrap().is_none());
        // `a` is ignored, but `!a/b/f` reaches into it.
        assert!(e("a").unwrap().unwrap().metadata.is_dir());
        fs::create_dir(root.join("c")).unwrap();
        let only_c = Ignore::parse("c").unwrap();
        assert!(entry(root, Path::new("c"), &only_c).unwrap().is_none());
        assert!(e("a/b/missing").unwrap().is_none());
        assert!(e("a/b/f/under-a-file").unwrap().is_none());
        let link = e("ab").unwrap().unwrap();
        assert_eq!(link.link_target.as_deref(), Some(Path::new("a/b")));
        assert!(e("etc/passwd").is_err(), "a parent link out of the context");
        assert!(e("../x").is_err());
        assert!(e("").unwrap().is_none());
    }

    #[test]
    fn an_ignored_directory_without_exceptions_is_never_opened() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in ["node_modules/a/b", "build/keep", "build/drop/deep", "src"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("build/keep/k"), "").unwrap();
        let opened_by = |patterns: &str| {
            let ignore = Ignore::parse(patterns).unwrap();
            let mut opened = Vec::new();
            let mut out = Vec::new();
            walk_dir(root, Path::new(""), &ignore, &mut out, &mut |p| {
                opened.push(p.to_string_lossy().into_owned())
            })
            .unwrap();
            (opened, names(&out))
        };
        let (opened, listed) = opened_by("node_modules\nbuild\n!build/keep\n");
        assert_eq!(opened, ["", "build", "build/keep", "src"]);
        assert_eq!(listed, ["build/keep", "build/keep/k", "src"]);
        let (opened, _) = opened_by("**/node_modules\nbuild\n");
        assert_eq!(opened, ["", "src"]);
    }

    #[test]
    fn an_unreadable_directory_is_an_error_naming_it() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("skipped: root reads an unreadable directory");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("secret/inner")).unwrap();
        fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
        let result = walk(root, Path::new(""), &Ignore::default());
        fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o755)).unwrap();
        let err = result.unwrap_err().to_string();
        assert!(err.starts_with("error checking context: can't stat '"), "{err}");
        assert!(err.ends_with("secret': permission denied"), "{err}");
    }

    #[test]
    fn symlinks_are_listed_as_links_and_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("passwd"), "secret").unwrap();
        let root = t.path();
        fs::create_dir(root.join("dir")).unwrap();
        fs::write(root.join("dir/f"), "f").unwrap();
        symlink(outside.path(), root.join("out")).unwrap();
        symlink("dir", root.join("in")).unwrap();
        let all = walk(root, Path::new(""), &Ignore::default()).unwrap();
        assert_eq!(names(&all), ["dir", "dir/f", "in", "out"]);
        let out = &all[3];
        assert!(out.metadata.file_type().is_symlink());
        assert_eq!(out.link_target.as_deref(), Some(outside.path()));
        assert_eq!(all[2].link_target.as_deref(), Some(Path::new("dir")));
        assert!(all[0].link_target.is_none());
    }

    #[test]
    fn paths_resolve_inside_the_root_or_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("a/b", root.join("ab")).unwrap();
        symlink("../../a", root.join("a/b/up")).unwrap();
        symlink("../..", root.join("a/b/top")).unwrap();
        symlink("../../..", root.join("a/b/esc")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let r = |p: &str| resolve_in_scope(root, Path::new(p));
        assert_eq!(r("ab").unwrap(), Path::new("a/b"));
        assert_eq!(r("/ab/up/b/.").unwrap(), Path::new("a/b"));
        assert_eq!(r("a/../ab/missing/x").unwrap(), Path::new("a/b/missing/x"));
        assert_eq!(r("a/b/top/a").unwrap(), Path::new("a"));
        assert!(matches!(r("a/b/esc"), Err(ScopeError::Outside { .. })));
        assert!(matches!(r("ab/esc/x"), Err(ScopeError::Outside { .. })));
        assert!(matches!(r("abs"), Err(ScopeError::Outside { .. })));
        assert!(matches!(r(".."), Err(ScopeError::Outside { .. })));
        assert!(matches!(r("loop"), Err(ScopeError::Loop { .. })));
    }
}
