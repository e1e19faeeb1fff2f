//! Garbage collection: what goes, what stays, and safety during pushes.

mod common;

use std::time::{Duration, SystemTime};

use berth_reference::Digest;
use berth_registry::gc::GcOptions;
use berth_registry::storage::bytes_stream;
use berth_registry::{Limits, Registry, open_local};
use common::*;
use reqwest::StatusCode;

/// Makes a stored blob look old, as if pushed an hour ago.
fn age_blob(root: &std::path::Path, d: &Digest) {
    let path = root.join("blobs").join(d.algorithm().as_str()).join(&d.hex()[..2]).join(d.hex());
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
}

fn now_opts(dry_run: bool) -> GcOptions {
    // Grace zero: everything unreferenced is old enough (no push is running).
    GcOptions { dry_run, grace: Duration::ZERO, ..Default::default() }
}

async fn orphan(reg: &Registry, root: &std::path::Path, data: &'static [u8]) -> Digest {
    let d = Digest::sha256_of(data);
    reg.blob_store().put(&d, bytes_stream(bytes::Bytes::from_static(data)), 1 << 20).await.unwrap();
    age_blob(root, &d);
    d
}

#[tokio::test]
async fn collects_unreferenced_blobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_local(dir.path(), Limits::default()).unwrap();
    let kept = Digest::sha256_of(b"linked");
    reg.blob_store()
        .put(&kept, bytes_stream(bytes::Bytes::from_static(b"linked")), 100)
        .await
        .unwrap();
    reg.metadata().link_blob("a/b", &kept, 6).await.unwrap();
    let gone = orphan(&reg, dir.path(), b"nobody links me").await;

    let dry = reg.collect_garbage(&now_opts(true)).await.unwrap();
    assert_eq!(dry.blobs_deleted, [(gone.clone(), 15)]);
    assert_eq!(dry.bytes_reclaimed, 15);
    assert!(reg.blob_store().stat(&gone).await.unwrap().is_some(), "dry run deletes nothing");

    let report = reg.collect_garbage(&now_opts(false)).await.unwrap();
    assert_eq!(report.bytes_reclaimed, 15);
    assert!(reg.blob_store().stat(&gone).await.unwrap().is_none());
    // The link is young (grace zero still counts "now" as young): kept.
    assert!(reg.blob_store().stat(&kept).await.unwrap().is_some());
}

#[tokio::test]
async fn grace_period_protects_fresh_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_local(dir.path(), Limits::default()).unwrap();
    let fresh = Digest::sha256_of(b"just uploaded, not linked yet");
    reg.blob_store()
        .put(&fresh, bytes_stream(bytes::Bytes::from_static(b"just uploaded, not linked yet")), 100)
        .await
        .unwrap();
    let report = reg.collect_garbage(&GcOptions::default()).await.unwrap();
    assert!(report.blobs_deleted.is_empty());
    assert_eq!(report.blobs_kept_young, 1);
    assert!(reg.blob_store().stat(&fresh).await.unwrap().is_some());
}

#[tokio::test]
async fn untagged_manifests_go_but_children_of_tagged_indexes_stay() {
    for &b in BACKENDS {
        let reg = start(b).await;
        let (child, cd) = reg.push_image("multi/app", "child", "c").await;
        let idx = index(OCI_INDEX, OCI_MANIFEST, &[(&cd, child.len())]);
        let res = reg.put_manifest("multi/app", "latest", OCI_INDEX, idx.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        // The child loses its own tag; only the index reaches it now.
        let res = reg.client.delete(reg.url("/v2/multi/app/manifests/child")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        // An image whose tag is deleted: untagged, collectable.
        let (_, lonely) = reg.push_image("multi/app", "old", "o").await;
        reg.client.delete(reg.url("/v2/multi/app/manifests/old")).send().await.unwrap();

        let local = open_local(reg.root(), Limits::default()).unwrap();
        let opts = GcOptions { delete_untagged: true, ..now_opts(false) };
        let report = local.collect_garbage(&opts).await.unwrap();
        assert_eq!(report.manifests_deleted, [("multi/app".to_owned(), lonely.clone())]);
        // Its layers stay linked until the links outlive the grace period.
        let get = |r: String| reg.client.get(reg.url(&r)).send();
        let res = get(format!("/v2/multi/app/manifests/{cd}")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "child of a tagged index survives");
        let res = get(format!("/v2/multi/app/manifests/{lonely}")).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let res = get("/v2/multi/app/manifests/latest".into()).await.unwrap();
        let m: serde_json::Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        assert_eq!(m["manifests"][0]["digest"], cd.as_str());
        // Every blob of the kept image still verifies.
        let child_json: serde_json::Value = serde_json::from_slice(&child).unwrap();
        for layer in child_json["layers"].as_array().unwrap() {
            let d = layer["digest"].as_str().unwrap();
            let data =
                get(format!("/v2/multi/app/blobs/{d}")).await.unwrap().bytes().await.unwrap();
            assert_eq!(Digest::sha256_of(&data).as_str(), d);
        }
    }
}

#[tokio::test]
async fn a_sparse_index_keeps_the_child_pushed_after_it() {
    for b in all_backends() {
        let reg = start(b).await;
        let config = br#"{"architecture":"arm64","os":"linux"}"#;
        let c = reg.push_blob("sparse/app", config).await;
        let child = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &c, config.len()), &[], None);
        let cd = Digest::sha256_of(child.as_bytes());
        // The index first, naming a child not pushed yet; then the child, untagged.
        let idx = index(OCI_INDEX, OCI_MANIFEST, &[(&cd, child.len())]);
        let res = reg.put_manifest("sparse/app", "latest", OCI_INDEX, idx.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = reg.put_manifest("sparse/app", cd.as_str(), OCI_MANIFEST, child.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let (_, lonely) = reg.push_image("sparse/app", "old", "o").await;
        reg.client.delete(reg.url("/v2/sparse/app/manifests/old")).send().await.unwrap();

        let opts = GcOptions { delete_untagged: true, ..now_opts(false) };
        let report = reg.beside().collect_garbage(&opts).await.unwrap();
        assert_eq!(report.manifests_deleted, [("sparse/app".to_owned(), lonely)]);
        let res = reg.client.get(reg.url(&format!("/v2/sparse/app/manifests/{cd}"))).send();
        let res = res.await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "the tagged index reaches its late child");
        assert_eq!(res.bytes().await.unwrap().as_ref(), child.as_bytes());
        let res = reg.client.get(reg.url(&format!("/v2/sparse/app/blobs/{c}"))).send().await;
        assert_eq!(res.unwrap().bytes().await.unwrap().as_ref(), config);
    }
}

#[tokio::test]
async fn deleted_repositories_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_local(dir.path(), Limits::default()).unwrap();
    let d = orphan(&reg, dir.path(), b"layer of a deleted repository").await;
    reg.metadata().link_blob("doomed/repo", &d, 29).await.unwrap();
    let name = berth_registry::RepoName::parse("doomed/repo").unwrap();
    reg.delete_repository(&name).await.unwrap();
    let report = reg.collect_garbage(&now_opts(false)).await.unwrap();
    assert_eq!(report.blobs_deleted, [(d.clone(), 29)]);
}

#[tokio::test]
async fn abandoned_uploads_expire() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_local(dir.path(), Limits::default()).unwrap();
    let name = berth_registry::RepoName::parse("up/loads").unwrap();
    let id = reg.start_upload(&name).await.unwrap();
    let keep = GcOptions { upload_expiry: Duration::from_secs(3600), ..now_opts(false) };
    assert_eq!(reg.collect_garbage(&keep).await.unwrap().uploads_expired, 0);
    assert_eq!(reg.upload_status(&name, &id).await.unwrap(), 0);
    // A second later, with no expiry allowance, the upload is abandoned.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expire = GcOptions { upload_expiry: Duration::ZERO, ..now_opts(false) };
    assert_eq!(reg.collect_garbage(&expire).await.unwrap().uploads_expired, 1);
    assert!(reg.upload_status(&name, &id).await.is_err());
    assert!(reg.blob_store().upload_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_old_upload_that_still_receives_data_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_local(dir.path(), Limits::default()).unwrap();
    let name = berth_registry::RepoName::parse("slow/upload").unwrap();
    // Started two days ago, as a record says; its data was written just now.
    let id = berth_registry::storage::UploadId::generate();
    reg.blob_store().upload_start(&id).await.unwrap();
    let record = berth_registry::metadata::UploadRecord {
        id: id.clone(),
        repository: name.to_string(),
        started: 0,
    };
    reg.metadata().create_upload(&record).await.unwrap();
    let day = GcOptions { upload_expiry: Duration::from_secs(24 * 3600), ..now_opts(false) };
    assert_eq!(reg.collect_garbage(&day).await.unwrap().uploads_expired, 0);
    assert_eq!(reg.upload_status(&name, &id).await.unwrap(), 0);
    // Once its data is as old as the expiry, it goes.
    let path = dir.path().join("uploads").join(id.as_str());
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(25 * 3600)).unwrap();
    assert_eq!(reg.collect_garbage(&day).await.unwrap().uploads_expired, 1);
    assert!(reg.upload_status(&name, &id).await.is_err());
    assert!(!path.exists());
}

#[tokio::test]
async fn writes_cut_off_by_a_crash_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open_local(dir.path(), Limits::default()).unwrap();
    // What a killed server leaves in tmp/: a half-written monolithic put.
    let stale = dir.path().join("tmp").join(berth_registry::storage::UploadId::generate().as_str());
    std::fs::write(&stale, b"half a blob").unwrap();
    let f = std::fs::File::options().write(true).open(&stale).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(25 * 3600)).unwrap();
    // A put in progress right now.
    let live = dir.path().join("tmp").join(berth_registry::storage::UploadId::generate().as_str());
    std::fs::write(&live, b"being written").unwrap();
    let day = GcOptions { upload_expiry: Duration::from_secs(24 * 3600), ..now_opts(false) };
    let dry = reg.collect_garbage(&GcOptions { dry_run: true, ..day.clone() }).await.unwrap();
    assert_eq!(dry.scratch_removed, 0);
    assert!(stale.exists());
    assert_eq!(reg.collect_garbage(&day).await.unwrap().scratch_removed, 1);
    assert!(!stale.exists());
    assert!(live.exists());
}

#[tokio::test]
async fn collection_during_a_push_loop_keeps_every_pushed_image() {
    for &b in BACKENDS {
        let reg = std::sync::Arc::new(start(b).await);
        let local = open_local(reg.root(), Limits::default()).unwrap();
        // An old orphan that must go while pushes run.
        let old = orphan(&local, reg.root(), b"old garbage").await;
        let pusher = {
            let reg = reg.clone();
            tokio::spawn(async move {
                let mut pushed = Vec::new();
                for i in 0..15 {
                    pushed
                        .push(reg.push_image("loop/app", &format!("v{i}"), &format!("s{i}")).await);
                }
                pushed
            })
        };
        let mut reclaimed = 0;
        while !pusher.is_finished() {
            // The default grace period: nothing a running push needs is old enough.
            reclaimed +=
                local.collect_garbage(&GcOptions::default()).await.unwrap().bytes_reclaimed;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pushed = pusher.await.unwrap();
        reclaimed += local.collect_garbage(&GcOptions::default()).await.unwrap().bytes_reclaimed;
        assert_eq!(reclaimed, 11, "only the old orphan went");
        assert!(local.blob_store().stat(&old).await.unwrap().is_none());
        for (i, (bytes, digest)) in pushed.iter().enumerate() {
            let res = reg.client.get(reg.url(&format!("/v2/loop/app/manifests/v{i}"))).send().await;
            assert_eq!(res.unwrap().bytes().await.unwrap().as_ref(), &bytes[..]);
            let m: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
                let d = d["digest"].as_str().unwrap();
                let res = reg.client.get(reg.url(&format!("/v2/loop/app/blobs/{d}"))).send().await;
                let data = res.unwrap().bytes().await.unwrap();
                assert_eq!(Digest::sha256_of(&data).as_str(), d, "image {digest}");
            }
        }
    }
}
