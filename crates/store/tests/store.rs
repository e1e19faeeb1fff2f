//! The store against real files and a real SQLite database in temp dirs.

mod common;

use berth_oci::{Descriptor, Image, Layer, media_type};
use berth_reference::{Digest, Reference};
use berth_store::{
    LabelFilter, NewImage, Problem, PruneOptions, RemoveEvent, Store, StoreError, chain_ids,
};
use common::*;

const T1: &str = "2024-01-01T00:00:00Z";
const T2: &str = "2024-02-01T00:00:00Z";

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

fn untagged(s: &str) -> RemoveEvent {
    RemoveEvent::Untagged(s.to_owned())
}

fn deleted(d: &Digest) -> RemoveEvent {
    RemoveEvent::Deleted(d.clone())
}

fn tag_names(store: &Store, id: &Digest) -> Vec<String> {
    store.image(id).unwrap().tags.iter().map(Reference::familiar).collect()
}

#[test]
fn blobs_are_content_addressed_and_idempotent() {
    let (_d, store) = store();
    let (d1, n1) = store.write_blob_bytes(b"hello").unwrap();
    let (d2, n2) = store.write_blob_bytes(b"hello").unwrap();
    assert_eq!((d1.clone(), n1), (d2, n2));
    assert_eq!(d1, Digest::sha256_of(b"hello"));
    assert!(store.has_blob(&d1));
    assert_eq!(std::fs::read(store.blob_path(&d1)).unwrap(), b"hello");
    assert_eq!(blob_files(&store), 1);
    assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    let missing = Digest::sha256_of(b"nope");
    assert!(!store.has_blob(&missing));
    assert_eq!(store.open_blob(&missing).unwrap_err().kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn a_failed_write_leaves_no_blob_and_no_temp_file() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("network went away"));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let (_d, store) = store();
    assert!(store.write_blob(&mut Failing(3)).is_err());
    assert_eq!(blob_files(&store), 0);
    assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn commit_lists_and_shares_layers() {
    let (_d, store) = store();
    let base = layer_tar("bin/busybox", b"busybox binary");
    let top = layer_tar("app", b"app");
    let a = commit(&store, std::slice::from_ref(&base), T1, &["busybox:musl"]);
    let b = commit(&store, &[base.clone(), top.clone()], T2, &["app:v1"]);
    // base layer once, top layer, two configs
    assert_eq!(blob_files(&store), 4);

    let rec = store.image(&b).unwrap();
    assert_eq!(rec.layers.len(), 2);
    // docker's SIZE: the files' content, not the tar length.
    assert_eq!(rec.size, (b"busybox binary".len() + b"app".len()) as u64);
    assert_eq!(rec.layers[0].uncompressed_size, base.len() as u64);
    assert_eq!(rec.layers[1].content_size, 3);
    assert_eq!(rec.created, Some(1_706_745_600));
    assert_eq!(rec.layers[0].blobs[0].media_type, media_type::DOCKER_LAYER);
    assert_eq!(
        rec.layers.iter().map(|l| l.chain_id.clone()).collect::<Vec<_>>(),
        chain_ids(&[rec.layers[0].diff_id.clone(), rec.layers[1].diff_id.clone()])
    );
    assert_eq!(rec.config_bytes, std::fs::read(store.blob_path(&b)).unwrap());

    let list = store.list_images().unwrap();
    assert_eq!(list.len(), 2);
    let la = list.iter().find(|i| i.id == a).unwrap();
    assert_eq!(la.tags[0].familiar(), "busybox:musl");
    assert!(la.repo_digests.is_empty());

    // Committing again is a no-op apart from names.
    let again = commit(&store, std::slice::from_ref(&base), T1, &["busybox:other"]);
    assert_eq!(again, a);
    assert_eq!(tag_names(&store, &a), ["busybox:musl", "busybox:other"]);
    assert_eq!(blob_files(&store), 4);
}

#[test]
fn commit_refuses_inconsistent_images_and_records_nothing() {
    let (_d, store) = store();
    let layer = write_layer(&store, &layer_tar("f", b"x"));
    let good_config = config(std::slice::from_ref(&layer), T1, &[]);
    let tag = vec![Reference::parse("bad:1").unwrap()];

    // Layer blob missing.
    let mut missing = layer.clone();
    missing.blobs[0].digest = Digest::sha256_of(b"absent");
    missing.blobs[0].media_type = media_type::DOCKER_LAYER_GZIP.to_owned();
    let err = store
        .commit_images(vec![NewImage {
            image: Image {
                manifest: None,
                config: good_config.clone(),
                layers: vec![missing],
                tags: tag.clone(),
            },
            repo_digests: vec![],
        }])
        .unwrap_err();
    assert!(matches!(err, StoreError::MissingBlob(_)), "{err}");

    // Wrong diff ID order / count.
    let other = write_layer(&store, &layer_tar("g", b"y"));
    let err = store
        .commit_images(vec![NewImage {
            image: Image {
                manifest: None,
                config: good_config.clone(),
                layers: vec![other.clone()],
                tags: tag.clone(),
            },
            repo_digests: vec![],
        }])
        .unwrap_err();
    assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err}");
    let err = store
        .commit_images(vec![NewImage {
            image: Image {
                manifest: None,
                config: good_config.clone(),
                layers: vec![layer.clone(), other],
                tags: tag.clone(),
            },
            repo_digests: vec![],
        }])
        .unwrap_err();
    assert!(matches!(err, StoreError::LayerCount { .. }), "{err}");

    // Wrong size.
    let mut short = layer.clone();
    short.blobs[0].size -= 1;
    let err = store
        .commit_images(vec![NewImage {
            image: Image {
                manifest: None,
                config: good_config.clone(),
                layers: vec![short],
                tags: tag.clone(),
            },
            repo_digests: vec![],
        }])
        .unwrap_err();
    assert!(matches!(err, StoreError::BlobSize { .. }), "{err}");

    // Not a config.
    let err = store
        .commit_images(vec![NewImage {
            image: Image {
                manifest: None,
                config: b"[1,2]".to_vec(),
                layers: vec![],
                tags: tag.clone(),
            },
            repo_digests: vec![],
        }])
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidConfig(_)), "{err}");

    // A batch with one bad image records none of them.
    let fine = NewImage {
        image: Image {
            manifest: None,
            config: good_config.clone(),
            layers: vec![layer.clone()],
            tags: vec![Reference::parse("fine:1").unwrap()],
        },
        repo_digests: vec![],
    };
    let mut bad = fine.clone();
    bad.image.config = b"{".to_vec();
    assert!(store.commit_images(vec![fine, bad]).is_err());
    assert!(store.list_images().unwrap().is_empty());
    assert!(matches!(store.resolve("fine:1"), Err(StoreError::NoSuchImage(_))));
}

#[test]
fn resolve_follows_dockers_lookup() {
    let (_d, store) = store();
    let id = commit(&store, &[layer_tar("a", b"a")], T1, &["busybox", "127.0.0.1:5000/team/app:1"]);
    assert_eq!(store.resolve("busybox").unwrap(), id);
    assert_eq!(store.resolve("busybox:latest").unwrap(), id);
    assert_eq!(store.resolve("docker.io/library/busybox").unwrap(), id);
    assert_eq!(store.resolve("127.0.0.1:5000/team/app:1").unwrap(), id);
    assert_eq!(store.resolve(id.as_str()).unwrap(), id);
    assert_eq!(store.resolve(id.hex()).unwrap(), id);
    assert_eq!(store.resolve(id.short()).unwrap(), id);
    assert_eq!(store.resolve(&id.hex()[..1]).unwrap(), id);
    assert_eq!(store.resolve(&format!("sha256:{}", &id.hex()[..5])).unwrap(), id);
    assert!(
        matches!(store.resolve("busybox:1"), Err(StoreError::NoSuchImage(n)) if n == "busybox:1")
    );
    assert!(matches!(store.resolve("BusyBox"), Err(StoreError::InvalidReference(_))));
    let zeros = "0".repeat(64);
    assert!(matches!(store.resolve(&zeros), Err(StoreError::NoSuchImage(_))));

    // Repo digests resolve too.
    let manifest = Digest::sha256_of(b"manifest");
    let by_digest =
        Reference::digested(Reference::parse("busybox").unwrap().repository().clone(), manifest);
    store.add_repo_digest(&id, &by_digest).unwrap();
    assert_eq!(store.resolve(&by_digest.familiar()).unwrap(), id);
}

#[test]
fn an_ambiguous_prefix_names_no_image() {
    let (_d, store) = store();
    // Make images until two share a first hex digit.
    let mut ids: Vec<Digest> = Vec::new();
    for i in 0..40 {
        ids.push(commit(&store, &[layer_tar("f", format!("{i}").as_bytes())], T1, &[]));
        let c = ids.last().unwrap().hex().as_bytes()[0];
        if ids[..ids.len() - 1].iter().any(|d| d.hex().as_bytes()[0] == c) {
            let prefix = (c as char).to_string();
            assert!(matches!(store.resolve(&prefix), Err(StoreError::NoSuchImage(_))));
            return;
        }
    }
    panic!("no shared prefix in 40 images");
}

#[test]
fn tag_is_a_pointer_and_moves() {
    let (_d, store) = store();
    let a = commit(&store, &[layer_tar("a", b"a")], T1, &["busybox:musl"]);
    let b = commit(&store, &[layer_tar("b", b"b")], T2, &["other:1"]);
    let blobs = blob_files(&store);
    assert_eq!(store.tag(&a, &Reference::parse("busybox:local").unwrap()).unwrap(), None);
    assert_eq!(blob_files(&store), blobs);
    assert_eq!(store.resolve("busybox:local").unwrap(), a);
    assert!(store.image(&a).unwrap().last_tag_time.is_some());
    // Moving a tag reports where it came from.
    assert_eq!(
        store.tag(&b, &Reference::parse("busybox:local").unwrap()).unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.resolve("busybox:local").unwrap(), b);
    // A tag without a tag is :latest; a digest is refused.
    store.tag(&b, &Reference::parse("plain").unwrap()).unwrap();
    assert_eq!(store.resolve("plain:latest").unwrap(), b);
    let digested = Reference::parse(&format!("x@{}", Digest::sha256_of(b"m"))).unwrap();
    assert!(matches!(store.tag(&b, &digested), Err(StoreError::TagWithDigest)));

    // Committing an image with a tag another image has moves it too.
    let c = store
        .commit_images(vec![NewImage {
            image: Image {
                manifest: None,
                config: config(&[], T2, &[("x", "y")]),
                layers: vec![],
                tags: vec![Reference::parse("other:1").unwrap()],
            },
            repo_digests: vec![],
        }])
        .unwrap()
        .remove(0);
    assert_eq!(c.moved_tags, vec![(Reference::parse("other:1").unwrap(), b.clone())]);
}

#[test]
fn rmi_untags_then_deletes_with_chain_ids() {
    let (_d, store) = store();
    let base = layer_tar("base", b"base");
    let top = layer_tar("top", b"top");
    let a = commit(&store, std::slice::from_ref(&base), T1, &["busybox:musl", "busybox:local"]);
    let b = commit(&store, &[base.clone(), top.clone()], T2, &["app:v1"]);
    let rb = store.image(&b).unwrap();

    // One of several tags: untag only.
    assert_eq!(store.remove("busybox:local", false).unwrap(), vec![untagged("busybox:local")]);
    assert_eq!(tag_names(&store, &a), ["busybox:musl"]);

    // Last tag of app: the image and its top chain go; the base chain stays.
    let before = blob_files(&store);
    assert_eq!(
        store.remove("app:v1", false).unwrap(),
        vec![untagged("app:v1"), deleted(&b), deleted(&rb.layers[1].chain_id)]
    );
    assert_eq!(blob_files(&store), before - 2, "config and top layer deleted");
    assert!(store.has_blob(&rb.layers[0].diff_id));
    assert!(!store.has_blob(&rb.layers[1].diff_id));

    // Missing image.
    let err = store.remove("app:v1", false).unwrap_err();
    assert_eq!(err.to_string(), "No such image: app:v1");

    // Last one: everything goes.
    assert_eq!(
        store.remove("busybox:musl", false).unwrap(),
        vec![untagged("busybox:musl"), deleted(&a), deleted(&rb.layers[0].chain_id)]
    );
    assert_eq!(blob_files(&store), 0);
    assert!(store.list_images().unwrap().is_empty());
}

#[test]
fn rmi_by_id_follows_dockers_conflict_rules() {
    let (_d, store) = store();
    let id = commit(&store, &[layer_tar("a", b"a")], T1, &["busybox:musl", "busybox:local"]);
    // Two tags, even in one repository: docker refuses without -f.
    let err = store.remove(id.short(), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            id.short()
        )
    );
    assert_eq!(tag_names(&store, &id).len(), 2, "a refused removal changes nothing");
    store.tag(&id, &Reference::parse("other/bb:1").unwrap()).unwrap();
    assert!(store.remove(&id.hex()[..4], false).is_err());
    // -f untags every name (sorted by full name) and deletes.
    let events = store.remove(&id.hex()[..4], true).unwrap();
    assert_eq!(
        &events[..4],
        &[
            untagged("busybox:local"),
            untagged("busybox:musl"),
            untagged("other/bb:1"),
            deleted(&id)
        ]
    );

    // One tag plus a digest of the same repository: untag both and delete.
    let id = commit(&store, &[layer_tar("b", b"b")], T1, &["centos:6"]);
    let manifest = Digest::sha256_of(b"manifest");
    let rd = Reference::parse(&format!("centos@{manifest}")).unwrap();
    store.add_repo_digest(&id, &rd).unwrap();
    let events = store.remove(id.short(), false).unwrap();
    assert_eq!(
        &events[..3],
        &[untagged("centos:6"), untagged(&format!("centos@{manifest}")), deleted(&id)]
    );
}

#[test]
fn removing_the_last_tag_of_a_repository_drops_its_digests() {
    let (_d, store) = store();
    let id = commit(&store, &[layer_tar("a", b"a")], T1, &["centos:6", "mycentos:v1"]);
    let manifest = Digest::sha256_of(b"manifest");
    store.add_repo_digest(&id, &Reference::parse(&format!("centos@{manifest}")).unwrap()).unwrap();
    // The seed's transcript: untag, then the repo digest, image kept.
    assert_eq!(
        store.remove("centos:6", false).unwrap(),
        vec![untagged("centos:6"), untagged(&format!("centos@{manifest}"))]
    );
    let events = store.remove("mycentos:v1", false).unwrap();
    assert_eq!(events[..2], [untagged("mycentos:v1"), deleted(&id)]);
    assert_eq!(events.len(), 3);
}

#[test]
fn prune_removes_dangling_or_all_with_filters() {
    let (_d, store) = store();
    let kept = commit(&store, &[layer_tar("a", b"a")], T1, &["keep:1"]);
    let dangling = commit(&store, &[layer_tar("b", b"bb")], T1, &[]);
    let labeled =
        commit_labeled(&store, &[layer_tar("c", b"ccc")], T2, &["lab:1"], &[("env", "prod")]);

    let report = store.prune(&PruneOptions { dangling_only: true, ..Default::default() }).unwrap();
    assert_eq!(report.events[0], deleted(&dangling));
    assert_eq!(report.space_reclaimed, 2);
    assert!(store.resolve(dangling.hex()).is_err());
    assert!(store.resolve("keep:1").is_ok());

    // -a with a label filter only takes the labeled image.
    let opts = PruneOptions {
        dangling_only: false,
        until: None,
        labels: vec![LabelFilter::parse("env=prod", false)],
    };
    let report = store.prune(&opts).unwrap();
    assert_eq!(report.events[..2], [untagged("lab:1"), deleted(&labeled)]);
    assert!(store.resolve("keep:1").is_ok());

    // until= before the image was created keeps it.
    let opts = PruneOptions { dangling_only: false, until: Some(0), labels: vec![] };
    assert!(store.prune(&opts).unwrap().events.is_empty());
    let opts = PruneOptions { dangling_only: false, until: None, labels: vec![] };
    let report = store.prune(&opts).unwrap();
    assert_eq!(report.events[..2], [untagged("keep:1"), deleted(&kept)]);
    assert_eq!(blob_files(&store), 0);
}

#[test]
fn an_image_used_by_a_container_is_not_removed() {
    let (dir, store) = store();
    let id = commit(&store, &[layer_tar("a", b"a")], T1, &["busybox:musl"]);
    // Containers are a later capability; pin the image the way they will.
    let conn = rusqlite::Connection::open(dir.path().join("store/berth.db")).unwrap();
    conn.execute(
        "INSERT INTO containers (id, name, image_id, running, created) VALUES (?1, 'c', ?2, 1, 0)",
        rusqlite::params!["c0ffee".repeat(10), id.as_str()],
    )
    .unwrap();
    let err = store.remove("busybox:musl", false).unwrap_err();
    assert!(err.to_string().starts_with("conflict: unable to remove repository reference \"busybox:musl\" (must force) - container c0ffeec0ffee is using its referenced image"), "{err}");
    let err = store.remove(id.short(), true).unwrap_err();
    assert!(
        err.to_string()
            .contains("(cannot be forced) - image is being used by running container c0ffeec0ffee"),
        "{err}"
    );
    assert!(store.prune(&PruneOptions::default()).unwrap().events.is_empty());
    assert!(store.resolve("busybox:musl").is_ok());
}

#[test]
fn add_layer_blob_records_a_compressed_variant() {
    let (_d, store) = store();
    let id = commit(&store, &[layer_tar("a", b"a")], T1, &["x:1"]);
    let diff = store.image(&id).unwrap().layers[0].diff_id.clone();
    let (gz, size) = store.write_blob_bytes(b"pretend gzip").unwrap();
    store
        .add_layer_blob(&diff, &Descriptor::new(media_type::OCI_LAYER_GZIP, gz.clone(), size))
        .unwrap();
    let blobs = &store.image(&id).unwrap().layers[0].blobs;
    assert_eq!(blobs.len(), 2);
    assert_eq!(blobs[0].digest, diff, "uncompressed first");
    assert_eq!(blobs[1].digest, gz);
    let unknown = Digest::sha256_of(b"no layer");
    assert!(matches!(
        store.add_layer_blob(&unknown, &Descriptor::new(media_type::OCI_LAYER_GZIP, gz, size)),
        Err(StoreError::NoSuchLayer(_))
    ));
    store.end_ingest();
    // Removing the image deletes both blobs.
    store.remove("x:1", false).unwrap();
    assert_eq!(blob_files(&store), 0);
}

#[test]
fn check_finds_and_repairs_corruption() {
    let (_d, store) = store();
    let good = commit(&store, &[layer_tar("a", b"a")], T1, &["good:1"]);
    let bad = commit(&store, &[layer_tar("b", b"b")], T1, &["bad:1", "bad:2"]);
    let clean = store.check(false).unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.images_checked, 2);

    // Corrupt bad's layer, leave an orphan blob and a temp file.
    let bad_layer = store.image(&bad).unwrap().layers[0].diff_id.clone();
    std::fs::write(store.blob_path(&bad_layer), b"bit rot!").unwrap();
    store.end_ingest();
    std::fs::write(store.root().join("tmp/123-0-0"), b"partial").unwrap();
    let orphan = Digest::sha256_of(b"orphan");
    std::fs::write(store.blob_path(&orphan), b"orphan").unwrap();

    let report = store.check(false).unwrap();
    let has = |p: &dyn Fn(&Problem) -> bool| report.problems.iter().any(p);
    assert!(has(&|p| matches!(p, Problem::CorruptBlob { name } if name == bad_layer.hex())));
    assert!(has(&|p| matches!(p, Problem::BrokenImage { id, .. } if id == bad.as_str())));
    assert!(has(&|p| matches!(p, Problem::OrphanBlob { digest } if digest == orphan.as_str())));
    assert!(has(&|p| matches!(p, Problem::TempFile { .. })));
    assert!(!report.repaired);
    assert!(store.resolve("bad:1").is_ok(), "check without repair changes nothing");

    let repaired = store.check(true).unwrap();
    assert!(repaired.repaired);
    assert!(store.resolve("bad:1").is_err());
    assert!(store.resolve("bad:2").is_err());
    assert_eq!(store.resolve("good:1").unwrap(), good);
    assert!(!store.has_blob(&orphan));
    store.end_ingest();
    let after = store.check(false).unwrap();
    assert!(after.problems.is_empty(), "{:?}", after.problems);
}

#[test]
fn concurrent_stores_commit_and_remove_safely() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    Store::open(&root).unwrap();
    let shared = layer_tar("shared", b"shared base layer");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                for i in 0..15 {
                    // A store per iteration, as separate processes would.
                    let store = Store::open(&root).unwrap();
                    let own = layer_tar("own", format!("{t}-{i}").as_bytes());
                    let tag = format!("t{t}:{i}");
                    commit(&store, &[shared.clone(), own], T1, &[&tag]);
                    drop(store);
                    if i % 2 == 0 {
                        let store = Store::open(&root).unwrap();
                        store.remove(&tag, false).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = Store::open(&root).unwrap();
    assert_eq!(store.list_images().unwrap().len(), 4 * 7);
    // Removals that raced an ingest leave orphan files, never worse.
    let report = store.check(false).unwrap();
    assert!(
        report.problems.iter().all(|p| matches!(p, Problem::OrphanBlob { .. })),
        "{:?}",
        report.problems
    );
    store.collect_garbage().unwrap().expect("nobody holds the lock now");
    let report = store.check(false).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    for t in 0..4 {
        assert!(store.resolve(&format!("t{t}:1")).is_ok());
        assert!(store.resolve(&format!("t{t}:0")).is_err());
    }
}

/// Run by `kill_mid_write_leaves_a_consistent_store` in a child process:
/// writes and commits images in a loop until killed.
#[test]
#[ignore = "helper process for the kill test"]
fn child_writer_loop() {
    let Some(root) = std::env::var_os("BERTH_STORE_KILL_TEST_ROOT") else { return };
    let store = Store::open(std::path::Path::new(&root)).unwrap();
    let big = vec![7u8; 4 << 20];
    for i in 0.. {
        let mut layer = big.clone();
        layer.extend_from_slice(format!("{i}").as_bytes());
        let id = commit(&store, &[layer_tar("big", &layer)], T1, &[&format!("k:{i}")]);
        if i % 3 == 0 {
            store.remove(id.as_str(), true).unwrap();
        }
    }
}

#[test]
fn kill_mid_write_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    Store::open(&root).unwrap();
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer_loop", "--ignored", "--nocapture"])
            .env("BERTH_STORE_KILL_TEST_ROOT", &root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400 + 150 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(&root).unwrap();
        // Every name leads to an image whose blobs are all there.
        for image in store.list_images().unwrap() {
            let rec = store.image(&image.id).unwrap();
            assert!(store.has_blob(&rec.id));
            for layer in &rec.layers {
                assert!(layer.blobs.iter().all(|b| store.has_blob(&b.digest)));
            }
        }
        drop(store);
        let store = Store::open(&root).unwrap();
        let report = store.check(false).unwrap();
        for p in &report.problems {
            assert!(
                matches!(p, Problem::OrphanBlob { .. } | Problem::TempFile { .. }),
                "a kill left more than orphans: {p}"
            );
        }
        store.check(true).unwrap();
        assert!(store.check(false).unwrap().problems.is_empty());
    }
}

#[test]
fn a_compressed_layer_is_measured_by_its_content() {
    use std::io::Write;
    let (_d, store) = store();
    let tar = layer_tar("bin/busybox", &[9u8; 5000]);
    let diff_id = Digest::sha256_of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let (blob, size) = store.write_blob_bytes(&gz).unwrap();
    let layer = Layer {
        diff_id: diff_id.clone(),
        blobs: vec![Descriptor::new(media_type::OCI_LAYER_GZIP, blob, size)],
        uncompressed_size: Some(tar.len() as u64),
    };
    let cfg = config(std::slice::from_ref(&layer), T1, &[]);
    let id = store
        .commit_images(vec![NewImage {
            image: Image { manifest: None, config: cfg, layers: vec![layer], tags: vec![] },
            repo_digests: vec![],
        }])
        .unwrap()
        .remove(0)
        .id;
    let rec = store.image(&id).unwrap();
    assert_eq!(rec.size, 5000);
    assert_eq!(rec.layers[0].uncompressed_size, tar.len() as u64);
}

#[test]
fn a_reader_holding_blobs_keeps_them_until_it_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let writer = Store::open(&root).unwrap();
    let id = commit(&writer, &[layer_tar("a", b"a")], T1, &["x:1"]);
    drop(writer);

    // Like `save` streaming the image while another process runs `rmi`.
    let reader = Store::open(&root).unwrap();
    reader.hold_blobs().unwrap();
    let layer = reader.image(&id).unwrap().layers[0].diff_id.clone();
    let other = Store::open(&root).unwrap();
    assert_eq!(other.remove("x:1", false).unwrap()[1], RemoveEvent::Deleted(id.clone()));
    assert!(reader.open_blob(&layer).is_ok(), "blob kept while held");
    assert!(reader.open_blob(&id).is_ok());

    reader.end_ingest();
    other.prune(&PruneOptions::default()).unwrap();
    assert_eq!(blob_files(&other), 0, "collected once released");
}

#[test]
fn stored_layers_lists_blobs_and_source_repositories() {
    let (_d, store) = store();
    let base = layer_tar("base", b"base");
    let a = commit(&store, std::slice::from_ref(&base), T1, &["a:1"]);
    commit(&store, &[base.clone(), layer_tar("top", b"top")], T2, &["b:1"]);
    let manifest = Digest::sha256_of(b"manifest");
    store
        .add_repo_digest(
            &a,
            &Reference::parse(&format!("127.0.0.1:5000/team/a@{manifest}")).unwrap(),
        )
        .unwrap();
    let layers = store.stored_layers().unwrap();
    assert_eq!(layers.len(), 2);
    let base_diff = Digest::sha256_of(&base);
    let l = layers.iter().find(|l| l.diff_id == base_diff).unwrap();
    assert_eq!(l.blobs.len(), 1);
    assert_eq!(l.blobs[0].digest, base_diff);
    assert_eq!(l.content_size, 4);
    assert_eq!(l.repositories.len(), 1);
    assert_eq!(l.repositories[0].familiar_name(), "127.0.0.1:5000/team/a");
    let top = layers.iter().find(|l| l.diff_id != base_diff).unwrap();
    assert!(top.repositories.is_empty());
}
