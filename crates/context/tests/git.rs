//! Git contexts against repositories served on loopback by `git daemon`
//! and by `git http-backend` behind a small HTTP server.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use berth_context::{BuildContext, ContextError, ContextKind, open};
use common::{GitDaemon, HttpServer, git, have_git};

/// `base/repo.git` (default branch `trunk`, a `feature` branch, an
/// annotated tag `v1`, a submodule) and `base/sub.git`.
fn repositories(base: &Path) {
    let sub = base.join("sub-work");
    fs::create_dir_all(&sub).unwrap();
    git(&sub, &["init", "-q", "-b", "main"]);
    fs::write(sub.join("lib.txt"), "from the submodule\n").unwrap();
    git(&sub, &["add", "."]);
    git(&sub, &["commit", "-qm", "sub"]);
    git(base, &["clone", "-q", "--bare", "sub-work", "sub.git"]);

    git(base, &["init", "-q", "--bare", "-b", "trunk", "repo.git"]);
    let work = base.join("work");
    fs::create_dir_all(work.join("app")).unwrap();
    git(&work, &["init", "-q", "-b", "trunk"]);
    git(&work, &["remote", "add", "origin", base.join("repo.git").to_str().unwrap()]);
    fs::write(work.join("Dockerfile"), "FROM v1\n").unwrap();
    fs::write(work.join("app/Dockerfile"), "FROM trunk-app\n").unwrap();
    fs::write(work.join("notdir"), "a file\n").unwrap();
    symlink("../..", work.join("escape")).unwrap();
    symlink("app", work.join("applink")).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "one"]);
    git(&work, &["tag", "-a", "v1", "-m", "v1"]);
    fs::write(work.join("Dockerfile"), "FROM trunk\n").unwrap();
    // Relative: resolved against whatever remote the clone came from.
    git(
        &work,
        &["-c", "protocol.file.allow=always", "submodule", "add", "-q", "../sub.git", "vendor/sub"],
    );
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "two"]);
    git(&work, &["checkout", "-q", "-b", "feature"]);
    fs::write(work.join("Dockerfile"), "FROM feature\n").unwrap();
    fs::write(work.join("app/Dockerfile"), "FROM feature-app\n").unwrap();
    git(&work, &["commit", "-qam", "feature"]);
    git(&work, &["push", "-q", "origin", "trunk", "feature", "v1"]);
    // For dumb HTTP clients.
    git(&base.join("repo.git"), &["update-server-info"]);
    git(&base.join("sub.git"), &["update-server-info"]);
}

/// The commit `rev` names in the fixture.
fn commit_of(base: &Path, rev: &str) -> String {
    common::git_output(&base.join("repo.git"), &["rev-parse", &format!("{rev}^{{commit}}")])
}

fn served() -> Option<(tempfile::TempDir, GitDaemon)> {
    if !have_git() {
        return None;
    }
    let base = tempfile::tempdir().unwrap();
    repositories(base.path());
    let daemon = GitDaemon::start(base.path())?;
    Some((base, daemon))
}

fn listed(ctx: &BuildContext) -> Vec<String> {
    let entries = ctx.walk(Path::new("")).unwrap();
    entries.iter().map(|e| e.path.to_string_lossy().into_owned()).collect()
}

fn no_stdin() -> std::io::Empty {
    std::io::empty()
}

#[test]
fn an_empty_ref_is_the_remotes_default_branch_with_submodules_and_no_git_dir() {
    let Some((_base, daemon)) = served() else { return };
    let ctx = open(&daemon.url("repo.git"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.kind, ContextKind::Git);
    assert!(ctx.is_temporary());
    assert_eq!(ctx.dockerfile, "FROM trunk\n", "trunk, not master");
    let files = listed(&ctx);
    assert!(files.contains(&"vendor/sub/lib.txt".to_string()), "{files:?}");
    assert!(files.contains(&".gitmodules".to_string()), "{files:?}");
    assert!(!files.iter().any(|f| f == ".git" || f.ends_with("/.git")), "{files:?}");
    assert_eq!(
        fs::read_to_string(ctx.root.join("vendor/sub/lib.txt")).unwrap(),
        "from the submodule\n"
    );
    let escape =
        ctx.walk(Path::new("")).unwrap().into_iter().find(|e| e.path == Path::new("escape"));
    assert_eq!(escape.unwrap().link_target.as_deref(), Some(Path::new("../..")));
    let root = ctx.root.clone();
    drop(ctx);
    assert!(!root.exists(), "the clone is removed on drop");
}

#[test]
fn a_branch_a_tag_and_a_subdir_are_checked_out() {
    let Some((base, daemon)) = served() else { return };
    let url = daemon.url("repo.git");
    let ctx = open(&format!("{url}#feature"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM feature\n");
    let ctx = open(&format!("{url}#v1"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM v1\n");
    assert!(!listed(&ctx).contains(&".gitmodules".to_string()), "v1 predates the submodule");
    // A commit, as BuildKit allows.
    let ctx =
        open(&format!("{url}#{}", commit_of(base.path(), "v1")), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM v1\n");
    let ctx = open(&format!("{url}#refs/heads/feature"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM feature\n");

    let ctx = open(&format!("{url}#feature:app"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM feature-app\n");
    assert!(ctx.root.ends_with("app"));
    assert_eq!(listed(&ctx), ["Dockerfile"]);
    let ctx = open(&format!("{url}#:app"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM trunk-app\n");
    // A symlink that stays inside the clone is followed.
    let ctx = open(&format!("{url}#:applink"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM trunk-app\n");
    // -f is relative to the context (the subdir), and stays in it.
    let ctx = open(&url, Some("app/Dockerfile"), &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM trunk-app\n");
    assert_eq!(ctx.dockerfile_name, "app/Dockerfile");
    let err = open(&format!("{url}#:app"), Some("../Dockerfile"), &mut no_stdin()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to prepare context: the Dockerfile (../Dockerfile) must be within the build context"
    );
    // -f - with a git context.
    let ctx = open(&url, Some("-"), &mut &b"FROM stdin\n"[..]).unwrap();
    assert_eq!(ctx.dockerfile, "FROM stdin\n");
}

#[test]
fn a_subdir_that_escapes_the_clone_is_refused() {
    let Some((_base, daemon)) = served() else { return };
    let url = daemon.url("repo.git");
    for subdir in ["..", "app/../..", "escape", "escape/x", "/../.."] {
        let err = open(&format!("{url}#:{subdir}"), None, &mut no_stdin()).unwrap_err();
        assert!(matches!(err, ContextError::GitSubdirOutside { .. }), "{subdir}: {err}");
        assert_eq!(
            err.to_string(),
            format!(
                "unable to prepare context: error setting git context, {subdir:?} not within git root"
            )
        );
    }
    let err = open(&format!("{url}#:notdir"), None, &mut no_stdin()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to prepare context: error setting git context, not a directory: notdir"
    );
}

#[test]
fn an_unreachable_remote_or_a_missing_ref_reports_gits_own_words() {
    if !have_git() {
        return;
    }
    let port = common::free_port();
    let err = open(&format!("git://127.0.0.1:{port}/repo.git"), None, &mut no_stdin()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "unable to prepare context: unable to 'git clone' to temporary context directory: error fetching: "
        ),
        "{text}"
    );
    assert!(text.contains("unable to connect") || text.contains("refused"), "{text}");
    assert!(text.ends_with("exit status 128"), "{text}");

    let Some((_base, daemon)) = served() else { return };
    let err = open(&format!("{}#no-such-branch", daemon.url("repo.git")), None, &mut no_stdin())
        .unwrap_err();
    assert!(err.to_string().contains("couldn't find remote ref no-such-branch"), "{err}");
    let err = open(&daemon.url("nothing-here.git"), None, &mut no_stdin()).unwrap_err();
    assert!(matches!(err, ContextError::Git { .. }), "{err}");
}

#[test]
fn git_over_smart_http_behind_a_cgi_server() {
    if !have_git() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    repositories(base.path());
    let server = HttpServer::start(common::git_http_backend(base.path().to_path_buf()));
    let ctx = open(&server.url("/repo.git"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.kind, ContextKind::Git);
    assert_eq!(ctx.dockerfile, "FROM trunk\n");
    assert!(listed(&ctx).contains(&"vendor/sub/lib.txt".to_string()));
    let ctx = open(&server.url("/repo.git#feature:app"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM feature-app\n");
    let ctx = open(&server.url("/repo.git#v1"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM v1\n");
    let err = open(&server.url("/missing.git"), None, &mut no_stdin()).unwrap_err();
    assert!(matches!(err, ContextError::Git { .. }), "{err}");
}

#[test]
fn git_over_dumb_http_falls_back_to_a_full_fetch() {
    if !have_git() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    repositories(base.path());
    let server = HttpServer::start(common::static_files(base.path().to_path_buf()));
    let ctx = open(&server.url("/repo.git#feature:app"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM feature-app\n");
    let ctx = open(&server.url("/repo.git"), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM trunk\n");
    assert!(listed(&ctx).contains(&"vendor/sub/lib.txt".to_string()));
}
