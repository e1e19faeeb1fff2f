//! Builders for test images: real tar layers written into a real store.
#![allow(dead_code)]

use berth_oci::{Descriptor, Image, Layer, media_type};
use berth_reference::{Digest, Reference};
use berth_store::{NewImage, Store};

/// A real tar archive holding one file.
pub fn layer_tar(file: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    builder.append_data(&mut header, file, content).unwrap();
    builder.into_inner().unwrap()
}

/// Writes an uncompressed layer into the store.
pub fn write_layer(store: &Store, tar: &[u8]) -> Layer {
    let (digest, size) = store.write_blob_bytes(tar).unwrap();
    Layer {
        diff_id: digest.clone(),
        blobs: vec![Descriptor::new(media_type::DOCKER_LAYER, digest, size)],
        uncompressed_size: Some(size),
    }
}

/// A config for `layers`, created at `created`, with optional labels.
pub fn config(layers: &[Layer], created: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| serde_json::json!({"created": created, "created_by": format!("/bin/sh -c step {i}")}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Cmd": ["/bin/sh"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap()
}

/// Commits an image made of the given tar layers, tagged with `tags`.
pub fn commit(store: &Store, tars: &[Vec<u8>], created: &str, tags: &[&str]) -> Digest {
    commit_labeled(store, tars, created, tags, &[])
}

pub fn commit_labeled(
    store: &Store,
    tars: &[Vec<u8>],
    created: &str,
    tags: &[&str],
    labels: &[(&str, &str)],
) -> Digest {
    let layers: Vec<Layer> = tars.iter().map(|t| write_layer(store, t)).collect();
    let config = config(&layers, created, labels);
    let image = NewImage {
        image: Image {
            manifest: None,
            config,
            layers,
            tags: tags.iter().map(|t| Reference::parse_with_default_tag(t).unwrap()).collect(),
        },
        repo_digests: Vec::new(),
    };
    let id = store.commit_images(vec![image]).unwrap().remove(0).id;
    store.end_ingest();
    id
}

pub fn blob_files(store: &Store) -> usize {
    std::fs::read_dir(store.root().join("blobs/sha256")).unwrap().count()
}
