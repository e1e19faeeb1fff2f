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
