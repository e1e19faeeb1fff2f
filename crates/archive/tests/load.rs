//! Loading the archives real tools wrote (see tests/fixtures/README.md).

mod common;

use std::fs::File;

use berth_archive::{ArchiveFormat, Compression, LoadedArchive, load};
use berth_oci::media_type;
use common::*;

fn load_fixture(name: &str, blobs: &DirBlobs) -> LoadedArchive {
    load(File::open(fixture(name)).unwrap(), blobs).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn tags(archive: &LoadedArchive, index: usize) -> Vec<String> {
    archive.images[index].tags.iter().map(|t| t.familiar()).collect()
}

fn diff_ids(archive: &LoadedArchive, index: usize) -> Vec<String> {
    archive.images[index].layers.iter().map(|l| l.diff_id.to_string()).collect()
}

#[test]
fn docker_save_keeps_docker_ids_tags_and_layers() {
    let blobs = DirBlobs::new();
    let a = load_fixture("docker-save-tiny.tar", &blobs);
    assert_eq!(a.format, ArchiveFormat::DockerArchive);
    assert_eq!(a.compression, Compression::None);
    assert_eq!(a.images.len(), 2);
    assert_eq!(a.images[0].id().as_str(), TINY_1_ID);
    assert_eq!(tags(&a, 0), ["tiny:1.0", "example.com/team/tiny:latest"]);
    assert_eq!(diff_ids(&a, 0), [DIFF_1, DIFF_2]);
    assert_eq!(a.images[1].id().as_str(), TINY_2_ID);
    assert_eq!(tags(&a, 1), ["tiny:2.0"]);
    // The second image's middle layer is a symlink to the first image's.
    assert_eq!(diff_ids(&a, 1), [DIFF_1, DIFF_2, DIFF_3]);
    for image in &a.images {
        assert_eq!(berth_reference::Digest::sha256_of(&image.config), image.id());
        for layer in &image.layers {
            assert_eq!(layer.blobs[0].media_type, media_type::OCI_LAYER);
            assert_eq!(layer.blobs[0].digest, layer.diff_id, "uncompressed: blob is the diff");
            assert_eq!(
                Some(blobs.read(&layer.blobs[0].digest).len() as u64),
                layer.uncompressed_size
            );
        }
    }
}

#[test]
fn podman_and_skopeo_docker_archives_load() {
    for (name, expected) in [
        ("podman-save-docker.tar", vec![vec!["localhost/tiny:1.0"]]),
        ("skopeo-docker.tar", vec![vec!["tiny:1.0"]]),
        ("podman-save-multi.tar", vec![vec!["localhost/tiny:1.0"], vec!["localhost/tiny:2.0"]]),
    ] {
        let blobs = DirBlobs::new();
        let a = load_fixture(name, &blobs);
        assert_eq!(a.format, ArchiveFormat::DockerArchive, "{name}");
        assert_eq!(a.images.len(), expected.len(), "{name}");
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(&tags(&a, i), want, "{name}");
        }
        assert_eq!(a.images[0].id().as_str(), TINY_1_ID, "{name}");
        assert_eq!(diff_ids(&a, 0), [DIFF_1, DIFF_2], "{name}");
        if a.images.len() > 1 {
            assert_eq!(a.images[1].id().as_str(), TINY_2_ID, "{name}");
        }
    }
}

#[test]
fn oci_archives_with_gzip_and_zstd_layers_load() {
    for (name, tag, compressed_type) in [
        ("podman-save-oci.tar", "localhost/tiny:1.0", media_type::OCI_LAYER_GZIP),
        ("skopeo-oci.tar", "tiny:1.0", media_type::OCI_LAYER_GZIP),
        ("skopeo-oci-zstd.tar", "tiny:zstd", media_type::OCI_LAYER_ZSTD),
    ] {
        let blobs = DirBlobs::new();
        let a = load_fixture(name, &blobs);
        assert_eq!(a.format, ArchiveFormat::OciLayout, "{name}");
        assert_eq!(a.images.len(), 1, "{name}");
        assert_eq!(a.images[0].id().as_str(), TINY_OCI_ID, "{name}");
        assert_eq!(tags(&a, 0), [tag], "{name}");
        assert_eq!(diff_ids(&a, 0), [DIFF_1, DIFF_2], "{name}");
        for layer in &a.images[0].layers {
            assert_eq!(layer.blobs[0].media_type, compressed_type, "{name}");
            assert_ne!(layer.blobs[0].digest, layer.diff_id, "{name}: compressed blob kept as is");
            assert!(berth_oci::BlobSink::has_blob(&blobs, &layer.blobs[0].digest), "{name}");
        }
        // The uncompressed sizes are those of the docker-archive's layer.tar files.
        let sizes: Vec<u64> =
            a.images[0].layers.iter().map(|l| l.uncompressed_size.unwrap()).collect();
        assert_eq!(sizes, [2048, 2560], "{name}");
    }
}
