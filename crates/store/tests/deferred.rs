//! Deferred diff-ID verification: layers recorded as claims (as a pull does)
//! are proven before any image is read, and a lie removes what rested on it.

mod common;

use std::io::Write;

use berth_oci::{Descriptor, Image, Layer, media_type};
use berth_reference::{Digest, Reference};
use berth_store::{NewImage, Store, StoreError};
use common::*;

const T1: &str = "2024-01-01T00:00:00Z";

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Writes `tar` gzipped and returns a layer claiming `diff_id` for it,
/// unverified, as a pull records it.
fn claimed_layer(store: &Store, tar: &[u8], diff_id: &Digest) -> Layer {
    let (blob, size) = store.write_blob_bytes(&gzip(tar)).unwrap();
    Layer {
        diff_id: diff_id.clone(),
        blobs: vec![Descriptor::new(media_type::OCI_LAYER_GZIP, blob, size)],
        uncompressed_size: None,
    }
}

fn commit_layers(store: &Store, layers: Vec<Layer>, tag: &str) -> Digest {
    let image = NewImage {
        image: Image {
            manifest: None,
            config: config(&layers, T1, &[]),
            layers,
            tags: vec![Reference::parse_with_default_tag(tag).unwrap()],
        },
        repo_digests: Vec::new(),
    };
    store.commit_images(vec![image]).unwrap().remove(0).id
}

#[test]
fn a_claimed_layer_is_proven_and_measured_before_the_image_is_read() {
    let (_dir, store) = store();
    let base = layer_tar("bin/sh", &[7u8; 5000]);
    let top = layer_tar("etc/motd", b"hello");
    let layers = vec![
        claimed_layer(&store, &base, &Digest::sha256_of(&base)),
        claimed_layer(&store, &top, &Digest::sha256_of(&top)),
    ];
    let id = commit_layers(&store, layers, "app:v1");

    // Recorded, not yet proven: no sizes known.
    let pending = store.stored_layers().unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|l| !l.verified && l.content_size == 0 && l.uncompressed_size == 0));

    // The first read proves both and records docker's sizes.
    let listed = store.list_images().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, 5005);
    let rec = store.image(&id).unwrap();
    assert_eq!(rec.size, 5005);
    assert_eq!(rec.layers[0].uncompressed_size, base.len() as u64);
    assert_eq!(rec.layers[0].content_size, 5000);
    assert_eq!(rec.layers[1].content_size, 5);
    assert!(store.stored_layers().unwrap().iter().all(|l| l.verified));
}

#[test]
fn a_lying_layer_removes_the_images_resting_on_it_and_nothing_else() {
    let (_dir, store) = store();
    let good = layer_tar("bin/sh", b"good");
    let kept = commit(&store, std::slice::from_ref(&good), T1, &["base:1"]);
    let real = layer_tar("etc/motd", b"real content");
    let claimed = Digest::sha256_of(b"something else entirely");
    let liar = claimed_layer(&store, &real, &claimed);
    let liar_blob = liar.blobs[0].digest.clone();
    let shared = write_layer(&store, &good);
    let bad = commit_layers(&store, vec![shared, liar], "app:bad");
    store.end_ingest();

    let err = store.list_images().unwrap_err();
    let StoreError::CorruptLayers(corrupt) = &err else { panic!("unexpected error {err}") };
    assert_eq!(corrupt.len(), 1);
    assert_eq!(corrupt[0].diff_id, claimed);
    assert_eq!(corrupt[0].blob, liar_blob);
    assert_eq!(corrupt[0].removed_images, vec!["app:bad".to_owned()]);
    let text = err.to_string();
    assert!(text.contains("does not match its diff ID"), "{text}");
    assert!(text.contains(Digest::sha256_of(&real).as_str()), "{text}");

    // The lying image and its blob are gone; the other image is intact.
    let listed = store.list_images().unwrap();
    assert_eq!(listed.iter().map(|i| &i.id).collect::<Vec<_>>(), vec![&kept]);
    assert!(matches!(store.image(&bad), Err(StoreError::NoSuchImage(_))));
    assert!(matches!(store.resolve("app:bad"), Err(StoreError::NoSuchImage(_))));
    assert_eq!(store.image(&kept).unwrap().size, 4);
    // Its blob is garbage now, collected once no ingest holds the store.
    store.end_ingest();
    store.collect_garbage().unwrap().expect("the lock is free");
    assert!(!store.has_blob(&liar_blob));
    assert!(store.has_blob(&Digest::sha256_of(&good)));
    assert!(store.check(false).unwrap().is_consistent());
}

#[test]
fn a_lying_compressed_copy_of_a_proven_layer_is_dropped_alone() {
    let (_dir, store) = store();
    let tar = layer_tar("bin/sh", b"the real layer");
    let id = commit(&store, std::slice::from_ref(&tar), T1, &["app:1"]);
    // A registry later serves another blob claiming the same diff ID.
    let other = layer_tar("bin/sh", b"not the real layer");
    let liar = claimed_layer(&store, &other, &Digest::sha256_of(&tar));
    let liar_blob = liar.blobs[0].digest.clone();
    commit_layers(&store, vec![liar], "app:1");

    let err = store.image(&id).unwrap_err();
    let StoreError::CorruptLayers(corrupt) = err else { panic!("unexpected error {err}") };
    assert!(corrupt[0].removed_images.is_empty());
    let rec = store.image(&id).unwrap();
    assert_eq!(rec.layers[0].blobs.len(), 1);
    assert_eq!(rec.layers[0].blobs[0].digest, Digest::sha256_of(&tar));
    assert!(!rec.layers[0].blobs.iter().any(|b| b.digest == liar_blob));
}

#[test]
fn a_blob_that_does_not_decompress_is_corrupt_not_fatal() {
    let (_dir, store) = store();
    let (blob, size) = store.write_blob_bytes(b"\x1f\x8b\x08\x00 not really gzip").unwrap();
    let layer = Layer {
        diff_id: Digest::sha256_of(b"whatever"),
        blobs: vec![Descriptor::new(media_type::DOCKER_LAYER_GZIP, blob, size)],
        uncompressed_size: None,
    };
    commit_layers(&store, vec![layer], "broken:1");
    let err = store.list_images().unwrap_err();
    assert!(err.to_string().contains("cannot decompress"), "{err}");
    assert!(store.list_images().unwrap().is_empty());
}

#[test]
fn loading_a_layer_proves_a_pending_claim_and_fixes_sizes() {
    let (_dir, store) = store();
    let tar = layer_tar("bin/sh", &[1u8; 300]);
    let claim = claimed_layer(&store, &tar, &Digest::sha256_of(&tar));
    commit_layers(&store, vec![claim], "pulled:1");
    // Another image brings the same layer, verified (as load does).
    commit(&store, std::slice::from_ref(&tar), "2024-02-01T00:00:00Z", &["loaded:1"]);
    let layers = store.stored_layers().unwrap();
    assert_eq!(layers.len(), 1);
    assert!(layers[0].verified);
    assert_eq!(layers[0].content_size, 300);
    // The compressed claim itself is still proven on the next read.
    let listed = store.list_images().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|i| i.size == 300));
}

#[test]
fn a_version_1_store_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = Store::open(dir.path()).unwrap();
        commit(&store, &[layer_tar("a", b"abc")], T1, &["old:1"])
    };
    // Turn the database back into the version 1 schema.
    let conn = rusqlite::Connection::open(dir.path().join("berth.db")).unwrap();
    conn.execute_batch(
        "DROP TABLE manifests;
         ALTER TABLE containers DROP COLUMN image_name; ALTER TABLE containers DROP COLUMN command; ALTER TABLE containers DROP COLUMN exit_code; ALTER TABLE containers DROP COLUMN finished; ALTER TABLE containers DROP COLUMN config; 
         DROP INDEX layer_blobs_unverified;
         ALTER TABLE layer_blobs DROP COLUMN verified;
         ALTER TABLE layers DROP COLUMN verified;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.image(&id).unwrap().size, 3);
    assert!(store.stored_layers().unwrap()[0].verified);
    let tar = layer_tar("b", b"defg");
    let claim = claimed_layer(&store, &tar, &Digest::sha256_of(&tar));
    commit_layers(&store, vec![claim], "new:1");
    assert_eq!(store.list_images().unwrap().len(), 2);
}

#[test]
fn a_claim_whose_blob_was_deleted_by_hand_does_not_block_every_read() {
    let (dir, store) = store();
    let tar = layer_tar("a", b"abc");
    let claim = claimed_layer(&store, &tar, &Digest::sha256_of(&tar));
    let blob = claim.blobs[0].digest.clone();
    commit_layers(&store, vec![claim], "gone:1");
    std::fs::remove_file(dir.path().join("blobs/sha256").join(blob.hex())).unwrap();
    let err = store.list_images().unwrap_err();
    assert!(err.to_string().contains("its blob file is missing"), "{err}");
    assert!(store.list_images().unwrap().is_empty());
}

#[test]
fn two_stores_proving_the_same_claims_at_once_agree() {
    let (dir, store) = store();
    let good = layer_tar("bin/sh", &[3u8; 2000]);
    let claim = claimed_layer(&store, &good, &Digest::sha256_of(&good));
    commit_layers(&store, vec![claim], "good:1");
    let real = layer_tar("etc/motd", b"real");
    let liar = claimed_layer(&store, &real, &Digest::sha256_of(b"a lie"));
    commit_layers(&store, vec![liar], "bad:1");
    store.end_ingest();
    drop(store);

    let barrier = std::sync::Barrier::new(2);
    let outcomes: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let store = Store::open(dir.path()).unwrap();
                    barrier.wait();
                    match store.list_images() {
                        Ok(list) => Ok(list.len()),
                        Err(StoreError::CorruptLayers(c)) => Err(c[0].detail.clone()),
                        Err(e) => panic!("unexpected error {e}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Exactly one dropped the lie and reported it; the other saw a clean store.
    let reported: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(reported.len(), 1, "{outcomes:?}");
    assert!(reported.iter().all(|d| d.starts_with("does not match its diff ID")), "{outcomes:?}");
    let store = Store::open(dir.path()).unwrap();
    let listed = store.list_images().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, 2000);
    assert!(matches!(store.resolve("bad:1"), Err(StoreError::NoSuchImage(_))));
}

#[test]
fn provers_take_turns_and_report_their_progress() {
    let (dir, store) = store();
    let tar = layer_tar("bin/sh", &[5u8; 3000]);
    let claim = claimed_layer(&store, &tar, &Digest::sha256_of(&tar));
    commit_layers(&store, vec![claim], "good:1");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    store.on_proof_progress(Box::new(move |p| log.lock().unwrap().push(p)));
    // Another process proving right now: this one waits for it.
    let other = Store::open(dir.path()).unwrap();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.path().join("writers/proof.lock"))
        .unwrap();
    // SAFETY: flock on a valid descriptor.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) }, 0);
    let waiting = std::thread::spawn(move || store.verify_pending_layers().map(|()| store));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!waiting.is_finished(), "the second prover did not wait");
    // The other prover is done (it proved nothing here): this one goes on.
    drop(held);
    let store = waiting.join().unwrap().unwrap();
    assert!(store.stored_layers().unwrap().iter().all(|l| l.verified));
    drop(other);
    // Progress: waiting, then 0 of 1, then 1 of 1 with its bytes.
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].waiting, "{seen:?}");
    let last = seen.last().unwrap();
    assert_eq!((last.layers_done, last.layers), (1, 1));
    assert_eq!(last.bytes_done, last.bytes);
    assert!(last.bytes > 0);
    assert!(seen.iter().any(|p| p.layers == 1 && p.layers_done == 0));
}
