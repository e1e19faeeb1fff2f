//! `berth registry repo describe`: the owner's description, written on the
//! same root the server uses, wins over the image label in search.

use std::process::Command;

use berth_reference::Digest;

fn berth(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("BERTH_REGISTRY_ROOT")
        .output()
        .expect("run berth")
}

#[tokio::test]
async fn describe_sets_what_search_shows() {
    let dir = tempfile::tempdir().unwrap();
    let registry = berth_registry::open_local(&dir.path().join("registry"), Default::default())
        .expect("open the registry root");
    let meta = registry.metadata();
    // A repository whose image carries a description label.
    meta.link_blob("alice/app", &Digest::sha256_of(b"layer"), 5).await.unwrap();
    meta.set_repository_description("alice/app", Some("from the label")).await.unwrap();

    let out = berth(
        dir.path(),
        &[
            "registry",
            "repo",
            "describe",
            "alice/app",
            "Owner's words",
            "--full-description",
            "# App",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Description of alice/app set\n");
    let hits = meta.search_repositories("app", 10).await.unwrap();
    assert_eq!(hits[0].description.as_deref(), Some("Owner's words"));
    assert_eq!(hits[0].full_description.as_deref(), Some("# App"));

    // An empty description gives the label back; the long one stays.
    let out = berth(dir.path(), &["registry", "repo", "describe", "alice/app", ""]);
    assert!(out.status.success());
    let hit = meta.repository_summary("alice/app").await.unwrap().unwrap();
    assert_eq!(hit.description.as_deref(), Some("from the label"));
    assert_eq!(hit.full_description.as_deref(), Some("# App"));

    // Bad input: an error, a non-zero exit, nothing changed.
    let out = berth(dir.path(), &["registry", "repo", "describe", "Alice/App", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid repository name"));
    let long = "x".repeat(1001);
    let out = berth(dir.path(), &["registry", "repo", "describe", "alice/app", &long]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than 1000"));
    let hit = meta.repository_summary("alice/app").await.unwrap().unwrap();
    assert_eq!(hit.description.as_deref(), Some("from the label"));
}

#[test]
fn gc_sweeps_writes_a_crash_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    berth_registry::open_local(&root, Default::default()).expect("open the registry root");
    let stale = root.join("tmp").join(berth_registry::storage::UploadId::generate().as_str());
    std::fs::write(&stale, b"half a blob").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
    let out = berth(dir.path(), &["registry", "gc", "--grace-minutes", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 upload(s), 1 interrupted write(s)"), "{text}");
    assert!(text.ends_with("Total reclaimed space: 0 bytes\n"), "{text}");
    assert!(!stale.exists());
}

#[tokio::test]
async fn gc_refuses_to_run_beside_another_collection() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let registry = berth_registry::open_local(&root, Default::default()).expect("open the root");
    let lease = registry.metadata().lease_collection().await.expect("the lease is free");
    let out = berth(dir.path(), &["registry", "gc"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("garbage collection is already running on another replica"), "{err}");
    assert!(out.stdout.is_empty(), "nothing was collected");
    lease.release().await;
    let out = berth(dir.path(), &["registry", "gc", "--sweep-orphans"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("Deleted 0 orphaned object(s) (0 bytes)\n"), "{text}");
}

#[tokio::test]
async fn access_tokens_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(dir.path())
            .args(args)
            .env_remove("BERTH_REGISTRY_ROOT")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    let out = run(&["registry", "user", "add", "alice", "--password-stdin"], Some("pw\n"));
    assert!(out.status.success());
    let out = run(
        &["registry", "token", "create", "alice", "--scope", "write", "--description", "ci"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("berth_pat_") && token.len() == "berth_pat_".len() + 64, "{token}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not shown again"));
    let id = &token["berth_pat_".len()..][..16];
    let out = run(&["registry", "token", "ls", "alice"], None);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(id) && listed.contains("write") && listed.contains("never"),
        "{listed}"
    );
    assert!(!listed.contains(&token[20..]), "the secret is not listed");
    // Bad input: a clear error, non-zero exit, nothing created.
    let out = run(&["registry", "token", "create", "alice", "--scope", "admin"], None);
    assert!(!out.status.success());
    let out = run(&["registry", "token", "create", "nobody"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user: nobody"));
    let out = run(&["registry", "token", "rm", "alice", id], None);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Revoked access token {id} of alice\n")
    );
    let out = run(&["registry", "token", "rm", "alice", id], None);
    assert!(!out.status.success());
    let out = run(&["registry", "token", "ls", "alice"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "only the header is left");
}
