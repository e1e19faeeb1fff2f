//! Manifests kept byte for byte, and the layer facts a pull and push ask of
//! the store as their `ImageStore`.

mod common;

use berth_oci::{Descriptor, Image, ImageStore, Layer, RawManifest, media_type};
use berth_reference::{Digest, Reference, Repository};
use berth_store::{NewImage, Store, StoreError};
use common::*;

const T1: &str = "2024-01-01T00:00:00Z";

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// A manifest for `config` and `layers`, in spacing no serialiser would
/// choose: only these exact bytes carry its digest.
fn manifest_of(config: &[u8], layers: &[Descriptor]) -> RawManifest {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"{}","size":{},"digest":"{}"}}"#,
                l.media_type, l.size, l.digest
            )
        })
        .collect();
    let text = format!(
        "{{\n  \"schemaVersion\" : 2,\n  \"mediaType\" : \"{}\",\n  \"config\" : {{\"mediaType\":\"{}\",\"size\":{},\"digest\":\"{}\"}},\n  \"layers\" : [ {} ]\n}}",
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_CONFIG,
        config.len(),
        Digest::sha256_of(config),
        layers.join(", ")
    );
    RawManifest::new(media_type::DOCKER_MANIFEST, text.into_bytes())
}

fn one_layer_image(store: &Store) -> (Image, RawManifest) {
    let layer = write_layer(store, &layer_tar("etc/motd", b"hello"));
    let config = config(std::slice::from_ref(&layer), T1, &[]);
    let manifest = manifest_of(&config, &layer.blobs);
    let image = Image {
        manifest: Some(manifest.clone()),
        config,
        layers: vec![layer],
        tags: vec![Reference::parse("app:1").unwrap()],
    };
    (image, manifest)
}

#[test]
fn a_committed_manifest_comes_back_byte_for_byte() {
    let (_dir, store) = store();
    let (image, manifest) = one_layer_image(&store);
    let repo_digest = Reference::parse(&format!("example.com/app@{}", manifest.digest)).unwrap();
    let id = store
        .commit_images(vec![NewImage { image: image.clone(), repo_digests: vec![repo_digest] }])
        .unwrap()
        .remove(0)
        .id;
    let record = store.image(&id).unwrap();
    assert_eq!(record.manifests, vec![manifest.clone()]);
    let back = record.to_image(vec![]);
    assert_eq!(back.manifest.as_ref(), Some(&manifest));
    assert!(back.kept_manifest().is_some());
    assert_eq!(back.config, image.config);
    // Committing the same image again keeps one copy.
    store.commit_images(vec![NewImage { image: image.clone(), repo_digests: vec![] }]).unwrap();
    assert_eq!(store.image(&id).unwrap().manifests.len(), 1);
}

#[test]
fn a_manifest_naming_another_config_is_refused_and_nothing_recorded() {
    let (_dir, store) = store();
    let (mut image, _) = one_layer_image(&store);
    image.manifest = Some(manifest_of(b"{\"other\":1}", &image.layers[0].blobs));
    let err = store.commit_images(vec![NewImage { image, repo_digests: vec![] }]).unwrap_err();
    assert!(matches!(err, StoreError::ManifestNotForImage { .. }), "{err}");
    assert!(store.list_images().unwrap().is_empty());

    // Nor does add_manifest accept one for a different image.
    let (image, manifest) = one_layer_image(&store);
    let id = store
        .commit_images(vec![NewImage {
            image: Image { manifest: None, ..image },
            repo_digests: vec![],
        }])
        .unwrap()
        .remove(0)
        .id;
    let stranger = manifest_of(b"{}", &[]);
    assert!(matches!(
        store.add_manifest(&id, &stranger),
        Err(StoreError::ManifestNotForImage { .. })
    ));
    assert!(store.image(&id).unwrap().manifests.is_empty());
    store.add_manifest(&id, &manifest).unwrap();
    assert_eq!(store.image(&id).unwrap().manifests, vec![manifest]);
}

#[test]
fn the_newest_manifest_that_still_names_held_blobs_is_the_one_sent() {
    let (_dir, store) = store();
    let (image, first) = one_layer_image(&store);
    let layer = image.layers[0].clone();
    let id = store
        .commit_images(vec![NewImage { image: image.clone(), repo_digests: vec![] }])
        .unwrap()
        .remove(0)
        .id;
    // A newer manifest for the same blobs (other bytes: another registry's).
    let second = RawManifest::new(media_type::DOCKER_MANIFEST, [&first.bytes[..], b"\n"].concat());
    store.add_manifest(&id, &second).unwrap();
    let record = store.image(&id).unwrap();
    assert_eq!(record.manifests, vec![second.clone(), first.clone()]);
    assert_eq!(record.to_image(vec![]).manifest, Some(second));
    // A newer one naming a gzip blob the store does not hold is not sent.
    let gz = Descriptor::new(media_type::DOCKER_LAYER_GZIP, Digest::sha256_of(b"gz"), 2);
    let foreign = manifest_of(&image.config, &[gz]);
    store.add_manifest(&id, &foreign).unwrap();
    let record = store.image(&id).unwrap();
    assert_eq!(record.manifests[0], foreign);
    let chosen = record.to_image(vec![]);
    assert_ne!(chosen.manifest.as_ref(), Some(&foreign));
    assert!(chosen.kept_manifest().is_some());
    assert_eq!(chosen.layers[0].blobs, layer.blobs);
}

#[test]
fn removing_an_image_removes_its_manifests() {
    let (dir, store) = store();
    let (image, _) = one_layer_image(&store);
    store.commit_images(vec![NewImage { image, repo_digests: vec![] }]).unwrap();
    store.remove("app:1", false).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("berth.db")).unwrap();
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM manifests", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_version_2_store_gains_the_manifests_table() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = Store::open(dir.path()).unwrap();
        commit(&store, &[layer_tar("a", b"abc")], T1, &["old:1"])
    };
    let conn = rusqlite::Connection::open(dir.path().join("berth.db")).unwrap();
    conn.execute_batch(concat!(
        "DROP TABLE manifests; ",
        "ALTER TABLE containers DROP COLUMN image_name; ALTER TABLE containers DROP COLUMN command; ALTER TABLE containers DROP COLUMN exit_code; ALTER TABLE containers DROP COLUMN finished; ALTER TABLE containers DROP COLUMN config; ",
        "PRAGMA user_version = 2;"
    ))
    .unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    let record = store.image(&id).unwrap();
    assert!(record.manifests.is_empty());
    assert_eq!(record.to_image(vec![]).manifest, None);
    let manifest = manifest_of(&record.config_bytes, &record.layers[0].blobs);
    store.add_manifest(&id, &manifest).unwrap();
    assert_eq!(store.image(&id).unwrap().manifests, vec![manifest]);
    let conn = rusqlite::Connection::open(dir.path().join("berth.db")).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 4, "migrated to the current schema");
}

#[test]
fn layer_facts_are_answered_per_blob() {
    let (_dir, store) = store();
    let (image, manifest) = one_layer_image(&store);
    let layer: Layer = image.layers[0].clone();
    let repo_digest =
        Reference::parse(&format!("example.com/team/app@{}", manifest.digest)).unwrap();
    store.commit_images(vec![NewImage { image, repo_digests: vec![repo_digest] }]).unwrap();
    let blob = &layer.blobs[0].digest;
    let known = ImageStore::known_layer(&store, blob).unwrap();
    assert_eq!(known.diff_id, layer.diff_id);
    assert_eq!(known.uncompressed_size, layer.uncompressed_size);
    assert_eq!(ImageStore::known_layer(&store, &Digest::sha256_of(b"nothing")), None);
    assert_eq!(
        store.layer_sources(&layer.diff_id),
        vec![Repository::parse("example.com/team/app").unwrap()]
    );
    assert!(store.layer_sources(&Digest::sha256_of(b"nothing")).is_empty());
    // A resumed push reads from the middle of a stored blob.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(
        &mut berth_oci::BlobSource::open_blob_at(&store, blob, 10).unwrap(),
        &mut rest,
    )
    .unwrap();
    assert_eq!(rest.len() as u64, layer.blobs[0].size - 10);
}
