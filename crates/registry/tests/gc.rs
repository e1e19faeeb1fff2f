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

/// [`age_blob`] on either backend: on S3 the ledger entry is backdated.
async fn age(reg: &TestRegistry, d: &Digest) {
    match &reg.ledger {
        None => age_blob(reg.root(), d),
        Some(ledger) => {
            let mut entry = ledger.object_get(d).await.unwrap().expect("recorded");
            entry.created -= 3600;
            assert!(ledger.object_remove(d).await.unwrap());
            assert!(ledger.object_insert(d, &entry).await.unwrap());
        }
    }
}

fn now_opts(dry_run: bool) -> GcOptions {
    // Grace zero: everything unreferenced is old enough (no push is running).
    GcOptions { dry_run, grace: Duration::ZERO, ..Default::default() }
}

/// An old blob nothing links, on either backend.
async fn garbage(reg: &TestRegistry, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let body = bytes_stream(bytes::Bytes::copy_from_slice(data));
    reg.blobs.put(&d, body, 1 << 20).await.unwrap();
    age(reg, &d).await;
    d
}

#[tokio::test]
async fn collects_unreferenced_blobs_only() {
    for b in all_backends() {
        let reg = start(b).await;
        let local = reg.collector();
        let kept = Digest::sha256_of(b"linked");
        local
            .blob_store()
            .put(&kept, bytes_stream(bytes::Bytes::from_static(b"linked")), 100)
            .await
            .unwrap();
        reg.meta.link_blob("a/b", &kept, 6).await.unwrap();
        let gone = garbage(&reg, b"nobody links me").await;
        // Grace of half an hour: the garbage is an hour old, the link made
        // just now (with grace zero, a second boundary between the link and
        // the collection would make the link stale too).
        let opts =
            |dry_run| GcOptions { dry_run, grace: Duration::from_secs(1800), ..now_opts(dry_run) };

        let dry = local.collect_garbage(&opts(true)).await.unwrap();
        assert_eq!(dry.blobs_deleted, [(gone.clone(), 15)], "{b:?}");
        assert_eq!(dry.bytes_reclaimed, 15);
        assert!(local.blob_store().stat(&gone).await.unwrap().is_some(), "dry run deletes nothing");

        let report = local.collect_garbage(&opts(false)).await.unwrap();
        assert_eq!(report.bytes_reclaimed, 15);
        assert!(local.blob_store().stat(&gone).await.unwrap().is_none());
        // The link is young: kept.
        assert!(local.blob_store().stat(&kept).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn grace_period_protects_fresh_blobs() {
    for b in all_backends() {
        let reg = start(b).await;
        let local = reg.collector();
        let fresh = Digest::sha256_of(b"just uploaded, not linked yet");
        let body = bytes_stream(bytes::Bytes::from_static(b"just uploaded, not linked yet"));
        local.blob_store().put(&fresh, body, 100).await.unwrap();
        let report = local.collect_garbage(&GcOptions::default()).await.unwrap();
        assert!(report.blobs_deleted.is_empty(), "{b:?}");
        assert_eq!(report.blobs_kept_young, 1);
        assert!(local.blob_store().stat(&fresh).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn untagged_manifests_go_but_children_of_tagged_indexes_stay() {
    for b in all_backends() {
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

        let local = reg.collector();
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
    for b in all_backends() {
        let reg = start(b).await;
        let local = reg.collector();
        let d = garbage(&reg, b"layer of a deleted repository").await;
        reg.meta.link_blob("doomed/repo", &d, 29).await.unwrap();
        let name = berth_registry::RepoName::parse("doomed/repo").unwrap();
        local.delete_repository(&name).await.unwrap();
        let report = local.collect_garbage(&now_opts(false)).await.unwrap();
        assert_eq!(report.blobs_deleted, [(d.clone(), 29)], "{b:?}");
    }
}

/// More rows than a batch everywhere: stale links, unlinked blobs and
/// images that stay, read and removed a few at a time.
#[tokio::test]
async fn batches_smaller_than_the_data() {
    for b in all_backends() {
        let reg = start(b).await;
        let local = reg.collector();
        let mut images = Vec::new();
        for i in 0..6 {
            images.push(reg.push_image("batch/app", &format!("v{i}"), &format!("b{i}")).await);
        }
        // Linked, but no manifest uses them: the links go once old, then the blobs.
        let mut loose = Vec::new();
        for i in 0..9 {
            loose.push(reg.push_blob("batch/loose", format!("loose {i}").as_bytes()).await);
        }
        let mut doomed: Vec<Digest> = loose.clone();
        for i in 0..10 {
            doomed.push(garbage(&reg, format!("never linked {i}").as_bytes()).await);
        }
        for d in &loose {
            age(&reg, d).await;
        }
        // Links count whole seconds: let the ones just made grow old.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        doomed.sort();

        let dry = GcOptions { batch_size: 3, ..now_opts(true) };
        let report = local.collect_garbage(&dry).await.unwrap();
        assert_eq!(report.links_removed, 9, "{b:?}");
        let mut would: Vec<Digest> = report.blobs_deleted.iter().map(|(d, _)| d.clone()).collect();
        would.sort();
        assert_eq!(would, doomed, "{b:?}: a dry run sees through stale links");
        for d in &doomed {
            assert!(local.blob_store().stat(d).await.unwrap().is_some(), "dry run deletes nothing");
        }

        let real = GcOptions { batch_size: 4, ..now_opts(false) };
        let report = local.collect_garbage(&real).await.unwrap();
        assert_eq!(report.links_removed, 9, "{b:?}");
        let mut went: Vec<Digest> = report.blobs_deleted.iter().map(|(d, _)| d.clone()).collect();
        went.sort();
        assert_eq!(went, doomed, "{b:?}");
        for d in &doomed {
            assert!(local.blob_store().stat(d).await.unwrap().is_none());
        }
        // Nothing left to do.
        let again = local.collect_garbage(&real).await.unwrap();
        assert!(again.blobs_deleted.is_empty() && again.links_removed == 0, "{again:?}");
        for (i, (bytes, _)) in images.iter().enumerate() {
            verify_image(&reg, "batch/app", &format!("v{i}"), bytes).await;
        }
    }
}

/// One collection at a time across replicas: a second is refused with a
/// clear error, and runs once the first is done.
#[tokio::test]
async fn a_second_concurrent_collection_is_refused() {
    for b in all_backends() {
        let reg = start(b).await;
        let one = reg.replica().await;
        let two = reg.replica().await;
        let held = one.metadata().lease_collection().await.unwrap();
        let err = two.collect_garbage(&GcOptions::default()).await.unwrap_err();
        assert!(matches!(err, berth_registry::Error::CollectionRunning), "{b:?}: {err:?}");
        assert_eq!(err.to_string(), "garbage collection is already running on another replica");
        // The holder itself is another run too.
        assert!(one.collect_garbage(&GcOptions::default()).await.is_err());
        drop(held);
        let mut after = two.collect_garbage(&GcOptions::default()).await;
        for _ in 0..50 {
            // PostgreSQL ends the holder's session a moment after it closes.
            if after.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = two.collect_garbage(&GcOptions::default()).await;
        }
        after.unwrap();
        // Two runs started together: never both at once.
        let opts = GcOptions::default();
        let (a, b2) = tokio::join!(one.collect_garbage(&opts), two.collect_garbage(&opts));
        for r in [&a, &b2] {
            if let Err(e) = r {
                assert!(matches!(e, berth_registry::Error::CollectionRunning), "{e:?}");
            }
        }
        assert!(a.is_ok() || b2.is_ok(), "{b:?}: one of them runs");
    }
}

async fn verify_image(reg: &TestRegistry, repo: &str, tag: &str, bytes: &[u8]) {
    let res = reg.client.get(reg.url(&format!("/v2/{repo}/manifests/{tag}"))).send().await;
    assert_eq!(res.unwrap().bytes().await.unwrap().as_ref(), bytes, "{repo}:{tag}");
    let m: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
        let d = d["digest"].as_str().unwrap();
        let res = reg.client.get(reg.url(&format!("/v2/{repo}/blobs/{d}"))).send().await;
        let data = res.unwrap().bytes().await.unwrap();
        assert_eq!(Digest::sha256_of(&data).as_str(), d, "{repo}:{tag}");
    }
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
    for b in all_backends() {
        let reg = std::sync::Arc::new(start(b).await);
        // Another replica collects, as `berth registry gc` or a second server would.
        let local = reg.replica().await;
        // An old orphan that must go while pushes run.
        let old = garbage(&reg, b"old garbage").await;
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
        let mut runs = 0;
        while !pusher.is_finished() {
            // The default grace period: nothing a running push needs is old enough.
            let opts = GcOptions { batch_size: 2, ..GcOptions::default() };
            reclaimed += local.collect_garbage(&opts).await.unwrap().bytes_reclaimed;
            runs += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pushed = pusher.await.unwrap();
        reclaimed += local.collect_garbage(&GcOptions::default()).await.unwrap().bytes_reclaimed;
        assert!(runs > 0);
        assert_eq!(reclaimed, 11, "{b:?}: only the old orphan went");
        assert!(local.blob_store().stat(&old).await.unwrap().is_none());
        for (i, (bytes, _)) in pushed.iter().enumerate() {
            verify_image(&reg, "loop/app", &format!("v{i}"), bytes).await;
        }
    }
}

/// Pushes that reuse old garbage a collection is deleting at that moment: each push either finds its blob gone and stores it again,
/// or is refused and pushes again; every acknowledged image verifies.
#[tokio::test]
async fn pushes_reusing_garbage_during_collection_never_lose_a_blob() {
    for b in all_backends() {
        let reg = std::sync::Arc::new(start(b).await);
        let local = reg.replica().await;
        let rounds = 12;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let collector = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut deleted = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Long enough for a push's blobs to get from write to link.
                    let grace = Duration::from_secs(2);
                    let opts = GcOptions { batch_size: 3, grace, ..Default::default() };
                    deleted += local.collect_garbage(&opts).await.unwrap().blobs_deleted.len();
                }
                deleted
            })
        };
        let mut acknowledged = Vec::new();
        for i in 0..rounds {
            // The same content as a blob just left as garbage (unlinked, old).
            let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"r{i}"}}"#);
            let layer = format!("reused layer {i}");
            for data in [config.as_bytes(), layer.as_bytes()] {
                garbage(&reg, data).await;
            }
            // Every other round, the collection surely gets there first.
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            for attempt in 0.. {
                assert!(attempt < 20, "push never went through");
                let c = reg.push_blob("race/app", config.as_bytes()).await;
                let l = reg.push_blob("race/app", layer.as_bytes()).await;
                let manifest = image_manifest(
                    OCI_MANIFEST,
                    (OCI_CONFIG, &c, config.len()),
                    &[(&l, layer.len())],
                    None,
                );
                let tag = format!("r{i}");
                let res =
                    reg.put_manifest("race/app", &tag, OCI_MANIFEST, manifest.as_bytes()).await;
                if res.status() == StatusCode::CREATED {
                    acknowledged.push((tag, manifest));
                    break;
                }
                assert_error(res, StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN").await;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let deleted = collector.await.unwrap();
        assert!(deleted > 0, "{b:?}: the collection did delete the garbage");
        for (tag, manifest) in &acknowledged {
            verify_image(&reg, "race/app", tag, manifest.as_bytes()).await;
        }
    }
}

/// Objects in the bucket that the ledger does not know (a crash between
/// the write and its record) go only with `sweep_orphans`.
#[test]
fn orphaned_objects_are_swept_only_when_asked() {
    use berth_registry::metadata::prelude::*;
    use berth_registry::storage::{BlobStore, ObjectLedger, S3BlobStore};
    // A bucket of its own: the shared one holds every other test's objects.
    let Some(s3) = std::thread::spawn(common::engines::SeaweedFs::start).join().unwrap() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    rt.unwrap().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::sync::Arc::new(
            berth_registry::metadata::SqliteMetadata::open(&dir.path().join("metadata.db"))
                .unwrap(),
        );
        let store = std::sync::Arc::new(S3BlobStore::new(&s3.settings(), meta.clone()).unwrap());
        let reg = Registry::new(store.clone(), meta.clone(), Limits::default());
        let put = |data: &'static [u8]| {
            let d = Digest::sha256_of(data);
            let store = store.clone();
            async move {
                store.put(&d, bytes_stream(bytes::Bytes::from_static(data)), 100).await.unwrap();
                d
            }
        };
        let keep = put(b"recorded and linked").await;
        // Stored, then "crashed" before the record: the entry goes, the object stays.
        let lost = put(b"written, never recorded").await;
        assert!(meta.object_remove(&lost).await.unwrap());
        let grace = Duration::from_secs(1);
        let opts = |sweep_orphans, dry_run| GcOptions {
            sweep_orphans,
            dry_run,
            grace,
            ..Default::default()
        };
        // Too young to be an orphan: it may be a write about to be recorded.
        assert_eq!(reg.collect_garbage(&opts(true, false)).await.unwrap().orphans_removed, 0);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        meta.link_blob("o/k", &keep, 19).await.unwrap();

        let plain = reg.collect_garbage(&opts(false, false)).await.unwrap();
        assert_eq!(plain.orphans_removed, 0, "no listing unless asked");
        let dry = reg.collect_garbage(&opts(true, true)).await.unwrap();
        assert_eq!((dry.orphans_removed, dry.orphan_bytes), (1, 23));
        let report = reg.collect_garbage(&opts(true, false)).await.unwrap();
        assert_eq!((report.orphans_removed, report.orphan_bytes), (1, 23));
        assert_eq!(reg.collect_garbage(&opts(true, false)).await.unwrap().orphans_removed, 0);
        // The ledger path on SQLite: an old entry nothing keeps goes with its object.
        let old = put(b"old, in an SQLite ledger").await;
        let mut entry = meta.object_get(&old).await.unwrap().unwrap();
        entry.created -= 3600;
        assert!(meta.object_remove(&old).await.unwrap());
        assert!(meta.object_insert(&old, &entry).await.unwrap());
        let report = reg.collect_garbage(&opts(true, false)).await.unwrap();
        assert_eq!(report.blobs_deleted, [(old.clone(), 24)]);
        assert_eq!(report.orphans_removed, 0, "its object went with its entry");
        assert!(reg.blob_store().stat(&old).await.unwrap().is_none());
        // The recorded blob is untouched.
        let mut data = Vec::new();
        use tokio::io::AsyncReadExt;
        reg.blob_store().get(&keep, None).await.unwrap().read_to_end(&mut data).await.unwrap();
        assert_eq!(data, b"recorded and linked");
    });
}
