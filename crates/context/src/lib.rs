//! Build contexts, read as `docker build` reads them: where a build's files
//! come from, its Dockerfile, and the `.dockerignore` in force.
//!
//! [`open`] takes the context argument and `-f` as the user typed them:
//!
//! | context | what berth does |
//! |---|---|
//! | `-` | stdin: a tar (plain, gzip, bzip2, xz or zstd, told by its first bytes) unpacked into a temporary directory, or else a bare Dockerfile with an empty context |
//! | an existing path | the user's directory, read in place: never copied, never tarred |
//! | `git://…`, `git@…`, `github.com/…`, `http(s)://….git` with `#ref:subdir` | a shallow clone with the system `git` at the ref, submodules too, into a temporary directory |
//! | other `http(s)://…` | a downloaded tarball or plain Dockerfile, as for `-` |
//!
//! `-f FILE` is relative to the current directory for a directory context
//! (the Dockerfile may be outside the context; it is then never part of
//! it), and relative to the context root otherwise (and must stay inside).
//! `-f -` reads the Dockerfile from stdin with any context but `-`. Without
//! `-f`, `Dockerfile` at the context root, or `dockerfile` if only that
//! exists.
//!
//! Git refs: an empty ref means the remote's default branch (its `HEAD`;
//! docker 20.10's legacy builder hard-codes `master` instead). The clone's
//! `.git` is left out of the context, as BuildKit does.
//!
//! The `.dockerignore` in force is `<Dockerfile>.dockerignore` beside the
//! Dockerfile when it exists, else `.dockerignore` at the context root.
//! The Dockerfile itself is used even when the ignore file excludes it.
//!
//! [`walk`] lists a context's files as the ignore file leaves them;
//! [`StatCache`] remembers their content digests across builds.

mod error;
mod git;
mod remote;
mod stat_cache;
mod stream;
mod walk;

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_dockerfile::Ignore;

pub use error::ContextError;
pub use git::{checkout as git_checkout, is_git_url};
pub use remote::{Download, fetch_url};
pub use stat_cache::{Stamp, StatCache};
pub use walk::{Entry, ScopeError, entry, resolve_in_scope, walk};

/// The largest Dockerfile berth reads: far beyond any real one (heredoc
/// scripts included), small enough that a wrong file given as `-f` or a
/// stream that never ends is refused before it fills memory.
pub const MAX_DOCKERFILE_SIZE: u64 = 16 << 20;

/// Where a build reads its files from, ready to read.
#[derive(Debug)]
pub struct BuildContext {
    /// A directory holding the context's files, symlinks resolved: the
    /// user's own directory for a local context; a temporary directory
    /// (removed when this value is dropped) for the other kinds.
    pub root: PathBuf,
    /// The Dockerfile's text (invalid UTF-8 replaced).
    pub dockerfile: String,
    /// The Dockerfile's name for error messages, as the user gave it
    /// (`Dockerfile`, `docker/Dockerfile.dev`, `-` for stdin).
    pub dockerfile_name: String,
    /// The `.dockerignore` in force, compiled.
    pub ignore: Ignore,
    pub kind: ContextKind,
    _temp: Option<tempfile::TempDir>,
}

/// What the context was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// The user's directory, read in place.
    Directory,
    /// A tar from stdin or a URL, unpacked.
    Archive,
    /// A bare Dockerfile from stdin or a URL: no files at all.
    Empty,
    /// A git checkout.
    Git,
}

impl BuildContext {
    /// The context's entries below `dir` (relative; empty for all), as
    /// [`walk`] lists them with this context's ignore file.
    pub fn walk(&self, dir: &Path) -> Result<Vec<Entry>, ContextError> {
        walk(&self.root, dir, &self.ignore)
    }

    /// The context's entry at `path`, if present and not ignored (see
    /// [`entry`]).
    pub fn entry(&self, path: &Path) -> Result<Option<Entry>, ContextError> {
        entry(&self.root, path, &self.ignore)
    }

    /// Whether [`BuildContext::root`] is a temporary directory, which
    /// nothing should remember (a stat cache, for one) beyond the build.
    pub fn is_temporary(&self) -> bool {
        self._temp.is_some()
    }
}

/// Which Dockerfile `-f` asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DockerfileArg<'a> {
    Default,
    Stdin,
    Path(&'a str),
}

impl<'a> DockerfileArg<'a> {
    fn new(file: Option<&'a str>) -> Self {
        match file {
            None | Some("") => DockerfileArg::Default,
            Some("-") => DockerfileArg::Stdin,
            Some(p) => DockerfileArg::Path(p),
        }
    }
}

/// Opens the build context `spec` (the positional argument of `berth
/// build`) with the Dockerfile `file` (`-f`), reading `stdin` only when one
/// of them is `-`. See the crate documentation for the rules.
pub fn open(
    spec: &str,
    file: Option<&str>,
    stdin: &mut dyn Read,
) -> Result<BuildContext, ContextError> {
    let file = DockerfileArg::new(file);
    if spec == "-" {
        if matches!(file, DockerfileArg::Stdin) {
            return Err(ContextError::StdinConflict);
        }
        return stream::open(stdin, "the context from stdin", "-", file, &mut io::empty());
    }
    // As docker: anything that exists is a local context, even a
    // `github.com/...` path.
    if fs::metadata(spec).is_ok() {
        return open_directory(spec, file, stdin);
    }
    if git::is_git_url(spec) {
        return git::open(spec, file, stdin);
    }
    if remote::is_url(spec) {
        return remote::open(spec, file, stdin);
    }
    Err(ContextError::NotFound { path: spec.to_string() })
}

fn open_directory(
    spec: &str,
    file: DockerfileArg,
    stdin: &mut dyn Read,
) -> Result<BuildContext, ContextError> {
    let not_found = || ContextError::NotFound { path: spec.to_string() };
    let root = fs::canonicalize(spec).map_err(|_| not_found())?;
    if !fs::metadata(&root).map_err(|_| not_found())?.is_dir() {
        return Err(ContextError::NotADirectory { path: root });
    }
    finish(root, None, ContextKind::Directory, file, stdin)
}

/// Finds and reads the Dockerfile and the ignore file of the context at
/// `root`. Only a [`ContextKind::Directory`] context is trusted to follow
/// its own symlinks anywhere (and names `-f` from the current directory):
/// the others resolve every path inside `root`.
pub(crate) fn finish(
    root: PathBuf,
    temp: Option<tempfile::TempDir>,
    kind: ContextKind,
    file: DockerfileArg,
    stdin: &mut dyn Read,
) -> Result<BuildContext, ContextError> {
    let local = kind == ContextKind::Directory;
    let in_scope = |rel: &str, name: &str| -> Result<PathBuf, ContextError> {
        match resolve_in_scope(&root, Path::new(rel)) {
            Ok(p) => Ok(root.join(p)),
            Err(ScopeError::Outside { .. }) => {
                Err(ContextError::DockerfileOutside { name: name.to_string() })
            }
            Err(ScopeError::Loop { .. }) => Err(ContextError::DockerfileOpen {
                name: name.to_string(),
                source: io::Error::from_raw_os_error(libc::ELOOP),
            }),
            Err(ScopeError::Io { source, .. }) => {
                Err(ContextError::DockerfileOpen { name: name.to_string(), source })
            }
        }
    };
    let locate = |rel: &str, name: &str| -> Result<PathBuf, ContextError> {
        if local { Ok(root.join(rel)) } else { in_scope(rel, name) }
    };
    let (dockerfile, dockerfile_name, beside) = match file {
        DockerfileArg::Stdin => (read_dockerfile(stdin, "-", None)?, "-".to_string(), None),
        DockerfileArg::Default => {
            let mut name = "Dockerfile";
            let mut path = locate(name, name)?;
            if fs::symlink_metadata(&path).is_err() {
                let lower = locate("dockerfile", "dockerfile")?;
                if fs::symlink_metadata(&lower).is_ok() {
                    (name, path) = ("dockerfile", lower);
                }
            }
            (read_dockerfile_file(&path, name)?, name.to_string(), Some(path))
        }
        DockerfileArg::Path(given) => {
            let path = if local { PathBuf::from(given) } else { in_scope(given, given)? };
            (read_dockerfile_file(&path, given)?, given.to_string(), Some(path))
        }
    };
    let beside = beside.map(|path| {
        let mut name = OsString::from(path.file_name().unwrap_or_default());
        name.push(".dockerignore");
        (path.with_file_name(name), format!("{dockerfile_name}.dockerignore"))
    });
    let mut ignore = None;
    if let Some((path, name)) = beside {
        // Outside a directory context the file must resolve inside it.
        let path = if local {
            Some(path)
        } else {
            path.strip_prefix(&root).ok().and_then(|rel| resolve_in_scope(&root, rel).ok())
        };
        if let Some(path) = path {
            ignore = read_ignore(&path, &name)?;
        }
    }
    if ignore.is_none()
        && let Ok(path) = locate(".dockerignore", ".dockerignore")
    {
        ignore = read_ignore(&path, ".dockerignore")?;
    }
    Ok(BuildContext {
        root,
        dockerfile,
        dockerfile_name,
        ignore: ignore.unwrap_or_default(),
        kind,
        _temp: temp,
    })
}

fn read_dockerfile_file(path: &Path, name: &str) -> Result<String, ContextError> {
    let open_err = |source| ContextError::DockerfileOpen { name: name.to_string(), source };
    let mut f = fs::File::open(path).map_err(open_err)?;
    let metadata = f.metadata().map_err(open_err)?;
    if metadata.is_dir() {
        let source = io::Error::from_raw_os_error(libc::EISDIR);
        return Err(ContextError::DockerfileRead { name: name.to_string(), source });
    }
    read_dockerfile(&mut f, name, metadata.is_file().then_some(metadata.len()))
}

/// Reads at most [`MAX_DOCKERFILE_SIZE`] bytes: a larger Dockerfile is
/// refused, by its size when known, else after the limit is passed.
pub(crate) fn read_dockerfile(
    reader: &mut dyn Read,
    name: &str,
    size: Option<u64>,
) -> Result<String, ContextError> {
    let too_large = || ContextError::DockerfileTooLarge {
        name: name.to_string(),
        limit_mib: MAX_DOCKERFILE_SIZE >> 20,
    };
    if size.is_some_and(|s| s > MAX_DOCKERFILE_SIZE) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    reader
        .take(MAX_DOCKERFILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ContextError::DockerfileRead { name: name.to_string(), source })?;
    if bytes.len() as u64 > MAX_DOCKERFILE_SIZE {
        return Err(too_large());
    }
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The compiled ignore file at `path`, `None` if there is none.
fn read_ignore(path: &Path, name: &str) -> Result<Option<Ignore>, ContextError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ContextError::IgnoreRead { file: name.to_string(), source }),
    };
    Ignore::parse(&String::from_utf8_lossy(&bytes)).map(Some).map_err(|e| ContextError::Ignore {
        file: name.to_string(),
        line: e.line,
        message: e.message,
    })
}
