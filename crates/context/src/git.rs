//! Git contexts: what docker treats as a git URL, cloned shallowly at the
//! ref with the system `git`.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{BuildContext, ContextError, ContextKind, DockerfileArg, ScopeError, finish};

/// docker's rule: `git://`, `git@` and `github.com/` prefixes, or an
/// http(s) URL whose part before `#` ends in `.git`.
pub fn is_git_url(spec: &str) -> bool {
    let before_fragment = spec.split('#').next().unwrap_or(spec);
    (crate::remote::is_url(spec) && before_fragment.ends_with(".git"))
        || ["git://", "git@", "github.com/"].iter().any(|p| spec.starts_with(p))
}

/// A git context split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitSpec {
    /// What `git fetch` is given: `github.com/...` gains `https://`.
    pub remote: String,
    /// Empty: the remote's default branch.
    pub reference: String,
    /// Empty: the checkout's root.
    pub subdir: String,
}

pub(crate) fn parse(spec: &str) -> Result<GitSpec, ContextError> {
    let (remote, fragment) = spec.split_once('#').unwrap_or((spec, ""));
    let remote = if crate::remote::is_url(remote)
        || remote.starts_with("git://")
        || remote.starts_with("git@")
    {
        remote.to_string()
    } else {
        format!("https://{remote}")
    };
    let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
    if reference.starts_with('-') {
        return Err(ContextError::GitRefspec(reference.to_string()));
    }
    Ok(GitSpec { remote, reference: reference.to_string(), subdir: subdir.to_string() })
}

pub(crate) fn open(
    spec: &str,
    file: DockerfileArg,
    stdin: &mut dyn Read,
) -> Result<BuildContext, ContextError> {
    let temp = tempfile::Builder::new()
        .prefix("berth-build-git-")
        .tempdir()
        .map_err(|source| ContextError::TempDir { source })?;
    let root = checkout(spec, temp.path())?;
    finish(root, Some(temp), ContextKind::Git, file, stdin)
}

/// Clones the git URL `spec` (`URL#ref:subdir`) into the empty directory
/// `dir`, as a git context is cloned, and returns the directory the spec
/// names: the checkout, or its subdirectory. What `ADD <git URL>` copies.
pub fn checkout(spec: &str, dir: &Path) -> Result<std::path::PathBuf, ContextError> {
    let spec = parse(spec)?;
    let checkout = dir.canonicalize().map_err(|source| ContextError::TempDir { source })?;
    clone(&spec, &checkout)?;
    if spec.subdir.is_empty() {
        return Ok(checkout);
    }
    let outside = || ContextError::GitSubdirOutside { subdir: spec.subdir.clone() };
    let rel = match crate::resolve_in_scope(&checkout, Path::new(&spec.subdir)) {
        Ok(rel) => rel,
        Err(ScopeError::Outside { .. } | ScopeError::Loop { .. }) => return Err(outside()),
        Err(ScopeError::Io { source, .. }) => {
            return Err(ContextError::Git {
                step: "error setting git context".into(),
                output: crate::error::go_error(&source),
            });
        }
    };
    let root = checkout.join(rel);
    if !fs::metadata(&root).is_ok_and(|m| m.is_dir()) {
        return Err(ContextError::GitSubdirNotADirectory { subdir: spec.subdir.clone() });
    }
    Ok(root)
}

/// Fetches `spec.reference` (or the remote's `HEAD`) at depth 1 into
/// `dir`, checks it out, brings in submodules, then removes every `.git`
/// (git never tracks a path named so, so nothing of the checkout is lost).
fn clone(spec: &GitSpec, dir: &Path) -> Result<(), ContextError> {
    git(dir, ["init", "--quiet"], "failed to init repo")?;
    git(dir, ["remote", "add", "origin", &spec.remote], "failed to add origin repo")?;
    let reference = if spec.reference.is_empty() { "HEAD" } else { &spec.reference };
    let shallow = ["fetch", "--quiet", "--no-tags", "--depth", "1", "origin", "--", reference];
    if let Err(e) = git(dir, shallow, "error fetching") {
        // A dumb HTTP server cannot serve a shallow fetch; docker falls back
        // to a full one there too.
        let dumb = matches!(&e, ContextError::Git { output, .. } if output.contains("shallow"));
        if !dumb {
            return Err(e);
        }
        git(dir, ["fetch", "--quiet", "--no-tags", "origin", "--", reference], "error fetching")?;
    }
    let checkout = ["-c", "advice.detachedHead=false", "checkout", "--quiet", "FETCH_HEAD"];
    git(dir, checkout, &format!("error checking out {reference}"))?;
    let submodules = ["submodule", "update", "--quiet", "--init", "--recursive"];
    let step = "error initializing submodules";
    if let Err(e) = git(dir, submodules.iter().chain(&["--depth", "1"]), step) {
        let dumb = matches!(&e, ContextError::Git { output, .. } if output.contains("shallow"));
        if !dumb {
            return Err(e);
        }
        git(dir, submodules, step)?;
    }
    remove_git_dirs(dir).map_err(|e| ContextError::Git {
        step: "removing .git from the checkout".into(),
        output: crate::error::go_error(&e),
    })
}

/// Runs git in `dir` with the user's own configuration (credential helpers,
/// and on a terminal its prompts, as with `git clone`); its output becomes
/// the error.
fn git<I, S>(dir: &Path, args: I, step: &str) -> Result<(), ContextError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContextError::GitMissing,
            _ => ContextError::Git { step: step.to_string(), output: crate::error::go_error(&e) },
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        text = format!("{}\n{text}", stdout.trim());
    }
    let status = match output.status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    Err(ContextError::Git { step: step.to_string(), output: format!("{text}: {status}") })
}

fn remove_git_dirs(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if entry.file_name() == ".git" {
            if kind.is_dir() {
                fs::remove_dir_all(entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
        } else if kind.is_dir() {
            remove_git_dirs(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_are_recognised_as_docker_does() {
        for yes in [
            "git://host/repo",
            "git@github.com:user/repo.git",
            "github.com/user/repo",
            "https://host/repo.git",
            "http://host/repo.git#main:sub",
        ] {
            assert!(is_git_url(yes), "{yes}");
        }
        for no in ["https://host/repo", "https://host/ctx.tar.gz", "./repo.git", "repo"] {
            assert!(!is_git_url(no), "{no}");
        }
    }

    #[test]
    fn fragments_give_the_ref_and_the_subdir() {
        let p = |s: &str| parse(s).unwrap();
        assert_eq!(
            p("github.com/u/r"),
            GitSpec {
                remote: "https://github.com/u/r".into(),
                reference: "".into(),
                subdir: "".into()
            }
        );
        let s = p("git://h/r#v1.0:docker/app");
        assert_eq!(
            (s.remote.as_str(), s.reference.as_str(), s.subdir.as_str()),
            ("git://h/r", "v1.0", "docker/app")
        );
        let s = p("git@h:r.git#:sub");
        assert_eq!(
            (s.remote.as_str(), s.reference.as_str(), s.subdir.as_str()),
            ("git@h:r.git", "", "sub")
        );
        let err = parse("git://h/r#--upload-pack=x").unwrap_err();
        assert_eq!(err.to_string(), "unable to prepare context: invalid refspec: --upload-pack=x");
    }
}
