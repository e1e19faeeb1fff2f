//! What can go wrong while opening a context, in docker's words where docker
//! has some: each message is the whole line a user sees after `ERROR: `.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context is neither `-`, an existing path, a git URL nor a URL.
    #[error("unable to prepare context: path {path:?} not found")]
    NotFound { path: String },

    #[error("unable to prepare context: context must be a directory: {}", path.display())]
    NotADirectory { path: PathBuf },

    #[error("invalid argument: can't use stdin for both build context and dockerfile")]
    StdinConflict,

    /// The Dockerfile cannot be opened (`name` as the user gave it).
    #[error("failed to read dockerfile: open {name}: {}", go_error(source))]
    DockerfileOpen { name: String, source: io::Error },

    #[error("failed to read dockerfile: read {name}: {}", go_error(source))]
    DockerfileRead { name: String, source: io::Error },

    /// Refused before it is read whole (see [`crate::MAX_DOCKERFILE_SIZE`]).
    #[error("failed to read dockerfile: {name} is larger than the {limit_mib} MiB limit")]
    DockerfileTooLarge { name: String, limit_mib: u64 },

    /// `-f` names a file outside a context that is not the user's directory.
    #[error("unable to prepare context: the Dockerfile ({name}) must be within the build context")]
    DockerfileOutside { name: String },

    #[error("{file}:{line}: {message}")]
    Ignore { file: String, line: usize, message: String },

    #[error("failed to read {file}: {}", go_error(source))]
    IgnoreRead { file: String, source: io::Error },

    #[error("unable to prepare context: reading {what}: {}", go_error(source))]
    Stream { what: &'static str, source: io::Error },

    /// A tar context (stdin or URL) that cannot be unpacked.
    #[error("unable to prepare context: unpacking the context archive: {message}")]
    Archive { message: String },

    #[error("unable to prepare context: creating a temporary directory: {}", go_error(source))]
    TempDir { source: io::Error },

    #[error(
        "unable to prepare context: unable to find 'git': exec: \"git\": executable file not found in $PATH"
    )]
    GitMissing,

    #[error("unable to prepare context: invalid refspec: {0}")]
    GitRefspec(String),

    /// A git command failed; `output` is what git printed.
    #[error(
        "unable to prepare context: unable to 'git clone' to temporary context directory: {step}: {output}"
    )]
    Git { step: String, output: String },

    #[error("unable to prepare context: error setting git context, {subdir:?} not within git root")]
    GitSubdirOutside { subdir: String },

    #[error("unable to prepare context: error setting git context, not a directory: {subdir}")]
    GitSubdirNotADirectory { subdir: String },

    #[error("unable to prepare context: unable to download remote context {url}: {message}")]
    Download { url: String, message: String },

    /// The walk of a context directory hit something it cannot read.
    #[error("error checking context: can't stat '{}': {}", path.display(), go_error(source))]
    Walk { path: PathBuf, source: io::Error },
}

/// An I/O error as Go (and so docker) prints it: `no such file or
/// directory`, not `No such file or directory (os error 2)`.
pub(crate) fn go_error(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => text[..i].to_string(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if e.raw_os_error().is_some() => first.to_lowercase().chain(chars).collect(),
        _ => text,
    }
}

/// An error with its causes, which reqwest and tar keep apart.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_docker_prints_them() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(go_error(&e), "no such file or directory");
        let e = io::Error::other("Custom text");
        assert_eq!(go_error(&e), "Custom text");
        let err = ContextError::DockerfileOpen {
            name: "Dockerfile".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            err.to_string(),
            "failed to read dockerfile: open Dockerfile: no such file or directory"
        );
    }
}
