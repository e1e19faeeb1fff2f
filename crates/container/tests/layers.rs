//! An image's layers unpacked from a real store, once.

use std::io::Write;

use berth_container::{lower_dirs, snapshots_of};
use berth_oci::{Descriptor, Image, Layer, media_type};
use berth_reference::Digest;
use berth_snapshot::UnpackOptions;
use berth_store::{NewImage, Store};

fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn every_layer_is_unpacked_once_and_listed_topmost_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A plain layer and a gzip one.
    let base = tar_of("etc/os-release", b"ID=test\n");
    let top = tar_of("app/run", b"#!/bin/sh\n");
    let (base_digest, base_size) = store.write_blob_bytes(&base).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&top).unwrap();
    let (gz_digest, gz_size) = store.write_blob_bytes(&gz.finish().unwrap()).unwrap();
    let diff_ids = [Digest::sha256_of(&base), Digest::sha256_of(&top)];
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let image = Image {
        manifest: None,
        config,
        layers: vec![
            Layer {
                diff_id: diff_ids[0].clone(),
                blobs: vec![Descriptor::new(media_type::OCI_LAYER, base_digest, base_size)],
                uncompressed_size: Some(base.len() as u64),
            },
            Layer {
                diff_id: diff_ids[1].clone(),
                blobs: vec![Descriptor::new(
                    media_type::OCI_LAYER_GZIP,
                    gz_digest.clone(),
                    gz_size,
                )],
                uncompressed_size: Some(top.len() as u64),
            },
        ],
        tags: vec![],
    };
    let id =
        store.commit_images(vec![NewImage { image, repo_digests: vec![] }]).unwrap()[0].id.clone();
    let record = store.image(&id).unwrap();
    let snapshots = snapshots_of(&store).unwrap();
    let opts = UnpackOptions { as_root: false };
    let lowers = lower_dirs(&store, &snapshots, &record, &opts).unwrap();
    assert_eq!(lowers.len(), 2);
    assert_eq!(std::fs::read(lowers[0].join("app/run")).unwrap(), b"#!/bin/sh\n", "topmost first");
    assert_eq!(std::fs::read(lowers[1].join("etc/os-release")).unwrap(), b"ID=test\n");
    assert_eq!(lowers[0], snapshots.path(&record.layers[1].chain_id));
    // Already there: not unpacked again (the blob is not even read).
    std::fs::remove_file(store.blob_path(&gz_digest)).unwrap();
    assert_eq!(lower_dirs(&store, &snapshots, &record, &opts).unwrap(), lowers);
}
