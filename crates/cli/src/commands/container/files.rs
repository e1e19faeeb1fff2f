//! `berth export` and `berth cp`: a container's files as a tar, and files
//! copied in and out, running or stopped (a stopped container's root
//! filesystem is mounted for the command's duration).
//!
//! `cp` follows docker's path rules: a file onto a missing path is saved
//! under that name (its directory must exist; a trailing `/` says the
//! destination is a directory, which must exist); onto a file it replaces
//! it; into a directory it keeps its name. A directory onto a missing path
//! becomes that directory; into a directory it goes inside it, or with
//! `SRC/.` only its contents do; onto a file it is refused. `-` is a tar on
//! stdin (extracted into a directory) or stdout. Paths in a container are
//! from its `/`, symlinks followed only inside it; files copied in are
//! owned by root, files copied out by the caller.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use berth_snapshot::{UnpackOptions, unpack_files, write_tree};
use berth_store::{ContainerRecord, Store};

use super::{container_dir, lock_container, mount_container, reconcile, resolve_in_root, unmount};
use crate::context::Context;

/// A container's root filesystem for as long as this lives: a running
/// container's own mount, or one made for this command.
struct RootFs {
    path: PathBuf,
    ours: bool,
    /// Held while our mount is up: the container is not started under us.
    _lock: Option<std::fs::File>,
}

impl RootFs {
    fn open(ctx: &Context, store: &Store, c: &mut ContainerRecord) -> anyhow::Result<RootFs> {
        let lock = lock_container(ctx, &c.id)?;
        *c = store.container(&c.id)?;
        reconcile(ctx, store, c);
        let dir = container_dir(ctx, &c.id);
        if c.running {
            return Ok(RootFs { path: dir.join("rootfs"), ours: false, _lock: None });
        }
        let record = store.image(&c.image_id)?;
        let path = mount_container(store, &record, &dir, &c.id[..12])?;
        Ok(RootFs { path, ours: true, _lock: Some(lock) })
    }
}

impl Drop for RootFs {
    fn drop(&mut self) {
        if self.ours {
            unmount(&self.path);
        }
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The container
    container: String,
}

/// `export`: the container's whole root filesystem as one tar.
pub fn export(ctx: &Context, args: ExportArgs) -> anyhow::Result<()> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let store = ctx.store()?;
    let mut c = store.container(&args.container)?;
    let rootfs = RootFs::open(ctx, &store, &mut c)?;
    match &args.output {
        None => write_tree(&rootfs.path, "", None, std::io::stdout().lock())?,
        Some(out) => {
            // Written beside its place, renamed when whole: a failed export
            // leaves no partial file.
            let parent =
                out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(parent)
                .with_context(|| format!("creating {}", out.display()))?;
            write_tree(&rootfs.path, "", None, std::io::BufWriter::new(tmp.as_file()))?;
            tmp.persist(out).with_context(|| format!("writing {}", out.display()))?;
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct CpArgs {
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// CONTAINER:SRC_PATH, a local path, or - (a tar on stdin)
    src: String,
    /// CONTAINER:DEST_PATH, a local path, or - (a tar on stdout)
    dest: String,
}

/// docker's split of a `cp` argument: `CONTAINER:PATH`, unless it is an
/// absolute path or starts with `.` (then it is local, colons and all).
fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') && !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

pub fn cp(ctx: &Context, args: CpArgs) -> anyhow::Result<()> {
    match (split_arg(&args.src), split_arg(&args.dest)) {
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        ((None, _), (None, _)) => bail!("must specify at least one container source"),
        ((Some(name), src), (None, dest)) => copy_out(ctx, name, src, dest, args.follow_link),
        ((None, src), (Some(name), dest)) => {
            copy_in(ctx, name, src, dest, args.follow_link, args.archive)
        }
    }
}

/// Where a copy lands: the directory it is extracted into and the name its
/// top entry takes there (empty: only the source's contents).
#[derive(Debug, PartialEq, Eq)]
struct Placement {
    into: PathBuf,
    name: String,
}

/// docker's rules (see the module doc). `dest` is the destination as a
/// path on this machine, `dest_is_dir` whether something is there and
/// whether it is a directory.
fn place(
    src_is_dir: bool,
    contents_only: bool,
    src_name: &str,
    dest: &Path,
    dest_is_dir: Option<bool>,
    dest_shown: &str,
) -> anyhow::Result<Placement> {
    let parent_and_name = || -> anyhow::Result<Placement> {
        let name = dest
            .file_name()
            .ok_or_else(|| anyhow!("invalid destination path {dest_shown:?}"))?
            .to_string_lossy()
            .into_owned();
        let into = dest.parent().unwrap_or(Path::new("/")).to_owned();
        Ok(Placement { into, name })
    };
    match dest_is_dir {
        Some(true) if src_is_dir && contents_only => {
            Ok(Placement { into: dest.to_owned(), name: String::new() })
        }
        Some(true) => Ok(Placement { into: dest.to_owned(), name: src_name.to_owned() }),
        Some(false) if src_is_dir => {
            bail!("cannot copy a directory to a file: {dest_shown} is not a directory")
        }
        Some(false) => parent_and_name(),
        None if !src_is_dir && dest_shown.ends_with('/') => {
            bail!("destination directory {dest_shown} must exist: no such directory")
        }
        None => parent_and_name(),
    }
}

/// A path's last name as docker names a copy's top entry.
fn base_name(path: &str) -> String {
    Path::new(path.trim_end_matches("/.").trim_end_matches('/'))
        .file_name()
        .map_or_else(|| "/".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// A path inside `rootfs`: parents resolved inside it, the last name
/// followed too when `follow` (a trailing `/`, `/.`, or `-L`). `None` when
/// a parent is missing.
fn in_container(rootfs: &Path, path: &str, follow: bool) -> Option<PathBuf> {
    let path = format!("/{}", path.trim_start_matches('/'));
    if follow || path.trim_end_matches('/').is_empty() {
        return resolve_in_root(rootfs, &path);
    }
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    if name == ".." || name == "." {
        return resolve_in_root(rootfs, &path);
    }
    Some(resolve_in_root(rootfs, if parent.is_empty() { "/" } else { parent })?.join(name))
}

fn copy_out(ctx: &Context, name: &str, src: &str, dest: &str, follow: bool) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut c = store.container(name)?;
    let rootfs = RootFs::open(ctx, &store, &mut c)?;
    // The root itself: its contents (it has no name to keep).
    let contents_only = src.ends_with("/.") || src.trim_end_matches('/').is_empty();
    let follow = follow || src.ends_with('/') || contents_only;
    let missing = || anyhow!("Could not find the file {src} in container {name}");
    let from = in_container(&rootfs.path, src, follow).ok_or_else(missing)?;
    let meta = std::fs::symlink_metadata(&from).map_err(|_| missing())?;
    if src.ends_with('/') && !meta.is_dir() {
        bail!("{src}: not a directory");
    }
    if dest == "-" {
        let top = if contents_only { String::new() } else { base_name(src) };
        write_tree(&from, &top, None, std::io::stdout().lock())?;
        return Ok(());
    }
    let dest_path = PathBuf::from(dest);
    let dest_is_dir = std::fs::metadata(&dest_path).ok().map(|m| m.is_dir());
    let at = place(meta.is_dir(), contents_only, &base_name(src), &dest_path, dest_is_dir, dest)?;
    let into = if at.into.as_os_str().is_empty() { PathBuf::from(".") } else { at.into };
    if !into.is_dir() {
        bail!("destination directory {} must exist: no such directory", into.display());
    }
    stream(&from, &at.name, None, |tar| {
        let mut archive = tar::Archive::new(tar);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(&into).with_context(|| format!("copying into {}", into.display()))
    })
}

fn copy_in(
    ctx: &Context,
    name: &str,
    src: &str,
    dest: &str,
    follow: bool,
    archive: bool,
) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut c = store.container(name)?;
    let rootfs = RootFs::open(ctx, &store, &mut c)?;
    let opts = UnpackOptions::default();
    let dest_shown = format!("{name}:{dest}");
    if src == "-" {
        let into = in_container(&rootfs.path, dest, true)
            .filter(|p| p.is_dir())
            .ok_or_else(|| anyhow!("destination \"{dest_shown}\" must be a directory"))?;
        unpack_files(std::io::stdin().lock(), &into, &opts)?;
        return Ok(());
    }
    let contents_only = src.ends_with("/.");
    let follow = follow || src.ends_with('/') || contents_only;
    let from = PathBuf::from(src);
    let meta = if follow { std::fs::metadata(&from) } else { std::fs::symlink_metadata(&from) }
        .map_err(|e| anyhow!("lstat {src}: {}", io_text(&e)))?;
    let no_dir = || anyhow!("destination directory {dest_shown} must exist: no such directory");
    let to = in_container(&rootfs.path, dest, true)
        .or_else(|| in_container(&rootfs.path, dest, false))
        .ok_or_else(no_dir)?;
    let dest_is_dir = std::fs::symlink_metadata(&to).ok().map(|m| m.is_dir());
    let at = place(meta.is_dir(), contents_only, &base_name(src), &to, dest_is_dir, &dest_shown)?;
    if !std::fs::symlink_metadata(&at.into).is_ok_and(|m| m.is_dir()) {
        return Err(no_dir());
    }
    // As docker: root owns what is copied in, unless -a keeps the owners.
    let owner = if archive { None } else { Some((0, 0)) };
    stream(&from, &at.name, owner, |tar| {
        unpack_files(tar, &at.into, &opts).map(|_| ()).map_err(Into::into)
    })
}

/// `src` as a tar (top entry `name`) handed to `sink` through a pipe, the
/// writer on a thread of its own: nothing is held whole in memory.
fn stream(
    src: &Path,
    name: &str,
    owner: Option<(u32, u32)>,
    sink: impl FnOnce(std::io::PipeReader) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (reader, writer) = std::io::pipe()?;
    let (src, name) = (src.to_owned(), name.to_owned());
    let writing = std::thread::spawn(move || write_tree(&src, &name, owner, writer));
    let read = sink(reader);
    let written = writing.join().map_err(|_| anyhow!("the copy's tar writer panicked"))?;
    read?;
    written?;
    Ok(())
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(into: &str, name: &str) -> Placement {
        Placement { into: into.into(), name: name.into() }
    }

    #[test]
    fn paths_land_where_docker_puts_them() {
        let p = |src_dir, contents, dest: &str, kind| {
            place(src_dir, contents, "src", Path::new(dest), kind, dest)
        };
        // A file.
        assert_eq!(p(false, false, "/d/new", None).unwrap(), at("/d", "new"));
        assert!(p(false, false, "/d/new/", None).unwrap_err().to_string().contains("must exist"));
        assert_eq!(p(false, false, "/d/file", Some(false)).unwrap(), at("/d", "file"));
        assert_eq!(p(false, false, "/d", Some(true)).unwrap(), at("/d", "src"));
        // A directory.
        assert_eq!(p(true, false, "/d/new", None).unwrap(), at("/d", "new"));
        assert_eq!(p(true, false, "/d/new/", None).unwrap(), at("/d", "new"));
        assert!(p(true, false, "/d/file", Some(false)).is_err());
        assert_eq!(p(true, false, "/d", Some(true)).unwrap(), at("/d", "src"));
        assert_eq!(p(true, true, "/d", Some(true)).unwrap(), at("/d", ""));
    }

    #[test]
    fn arguments_split_as_docker_splits_them() {
        assert_eq!(split_arg("c1:/etc/motd"), (Some("c1"), "/etc/motd"));
        assert_eq!(split_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_arg("plain"), (None, "plain"));
        assert_eq!(split_arg("-"), (None, "-"));
        assert_eq!(base_name("/etc/"), "etc");
        assert_eq!(base_name("/etc/."), "etc");
        assert_eq!(base_name("/"), "/");
    }

    #[test]
    fn container_paths_stay_inside_the_container() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/", root.path().join("etc/up")).unwrap();
        std::os::unix::fs::symlink("../../..", root.path().join("etc/rel")).unwrap();
        // Followed: the container's root, never this machine's.
        assert_eq!(
            in_container(root.path(), "/etc/up/etc", true).unwrap(),
            root.path().join("etc")
        );
        assert_eq!(
            in_container(root.path(), "/etc/rel/etc", true).unwrap(),
            root.path().join("etc")
        );
        // Not followed: the link itself.
        assert_eq!(
            in_container(root.path(), "/etc/up", false).unwrap(),
            root.path().join("etc/up")
        );
        assert!(in_container(root.path(), "/nope/x", false).is_none());
    }
}
