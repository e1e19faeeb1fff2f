//! Every input format, whole-archive compression, and Docker 25+'s layout.

mod common;

use std::io::{Cursor, Write};

use berth_archive::{ArchiveFormat, Compression, LoadedArchive, load};
use common::*;

fn compress(kind: Compression, data: &[u8]) -> Vec<u8> {
    match kind {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

fn summary(a: &LoadedArchive) -> Vec<(String, Vec<String>, Vec<String>)> {
    a.images
        .iter()
        .map(|i| {
            (
                i.id().to_string(),
                i.layers.iter().map(|l| l.diff_id.to_string()).collect(),
                i.tags.iter().map(|t| t.familiar()).collect(),
            )
        })
        .collect()
}

const ALL: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Bzip2, Compression::Xz, Compression::Zstd];

#[test]
fn every_fixture_loads_in_every_compression() {
    for name in [
        "docker-save-tiny.tar",
        "podman-save-docker.tar",
        "podman-save-multi.tar",
        "podman-save-oci.tar",
        "skopeo-docker.tar",
        "skopeo-oci.tar",
        "skopeo-oci-zstd.tar",
    ] {
        let plain = fixture_bytes(name);
        let expected = summary(&load(Cursor::new(plain.clone()), &DirBlobs::new()).unwrap());
        for kind in ALL {
            let a = load(Cursor::new(compress(kind, &plain)), &DirBlobs::new())
                .unwrap_or_else(|e| panic!("{name} ({}): {e}", kind.name()));
            assert_eq!(a.compression, kind, "{name}");
            assert_eq!(summary(&a), expected, "{name} ({})", kind.name());
        }
    }
}

#[test]
fn docker25_layout_with_manifest_json_loads_with_docker_ids_and_tags() {
    let legacy =
        load(Cursor::new(fixture_bytes("docker-save-tiny.tar")), &DirBlobs::new()).unwrap();
    let a = load(Cursor::new(docker25_archive(true)), &DirBlobs::new()).unwrap();
    assert_eq!(a.format, ArchiveFormat::DockerArchive);
    assert_eq!(summary(&a), summary(&legacy));
    assert_eq!(a.images[0].id().as_str(), TINY_1_ID);
    assert_eq!(a.images[1].id().as_str(), TINY_2_ID);
}

#[test]
fn docker25_layout_without_manifest_json_uses_the_containerd_name() {
    let legacy =
        load(Cursor::new(fixture_bytes("docker-save-tiny.tar")), &DirBlobs::new()).unwrap();
    let a = load(Cursor::new(docker25_archive(false)), &DirBlobs::new()).unwrap();
    assert_eq!(a.format, ArchiveFormat::OciLayout);
    // The index has one entry per tag; they merge into one image each.
    assert_eq!(summary(&a), summary(&legacy));
}

#[test]
fn a_bare_tag_ref_name_tags_nothing() {
    // An OCI layout whose ref.name is only a tag names no repository.
    let files = members(&fixture_bytes("skopeo-oci.tar"));
    let files: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(p, d)| {
            if p == "index.json" {
                let text = String::from_utf8(d).unwrap().replace("\"tiny:1.0\"", "\"1.0\"");
                (p, text.into_bytes())
            } else {
                (p, d)
            }
        })
        .collect();
    let a = load(Cursor::new(tar_of(&files)), &DirBlobs::new()).unwrap();
    assert_eq!(a.images.len(), 1);
    assert_eq!(a.images[0].id().as_str(), TINY_OCI_ID);
    assert!(a.images[0].tags.is_empty());
}

#[test]
fn member_order_does_not_matter() {
    // manifest.json first, layers last: the opposite of docker's order.
    let mut files = members(&fixture_bytes("docker-save-tiny.tar"));
    files.reverse();
    let a = load(Cursor::new(tar_of(&files)), &DirBlobs::new()).unwrap();
    assert_eq!(a.images[0].id().as_str(), TINY_1_ID);
    assert_eq!(a.images[1].layers.len(), 3);
}

#[test]
fn gzip_compressed_layer_tar_in_a_docker_archive_is_verified_by_its_diff_id() {
    // docker load accepts compressed layer.tar files; the diff ID is that of
    // the uncompressed content, and the compressed blob is what is stored.
    let files: Vec<(String, Vec<u8>)> = members(&fixture_bytes("podman-save-docker.tar"))
        .into_iter()
        .map(
            |(p, d)| {
                if p.ends_with(".tar") { (p, compress(Compression::Gzip, &d)) } else { (p, d) }
            },
        )
        .collect();
    let a = load(Cursor::new(tar_of(&files)), &DirBlobs::new()).unwrap();
    assert_eq!(a.images[0].id().as_str(), TINY_1_ID);
    let layer = &a.images[0].layers[0];
    assert_eq!(layer.diff_id.as_str(), DIFF_1);
    assert_eq!(layer.blobs[0].media_type, berth_oci::media_type::OCI_LAYER_GZIP);
    assert_eq!(layer.uncompressed_size, Some(2048));
}

#[test]
fn an_oci_layout_directory_loads() {
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(&fixture_bytes("skopeo-oci.tar")[..]).unpack(dir.path()).unwrap();
    let a = berth_archive::load_dir(dir.path(), &DirBlobs::new()).unwrap();
    assert_eq!(a.format, ArchiveFormat::OciLayout);
    assert_eq!(a.images[0].id().as_str(), TINY_OCI_ID);
    assert_eq!(a.images[0].tags[0].familiar(), "tiny:1.0");

    // A symlink out of the directory is refused like any escaping member.
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("blobs/sha256/evil")).unwrap();
    let err = berth_archive::load_dir(dir.path(), &DirBlobs::new()).unwrap_err();
    assert!(err.to_string().contains("symlink to an absolute path"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = berth_archive::load_dir(empty.path(), &DirBlobs::new()).unwrap_err();
    assert!(matches!(err, berth_archive::ArchiveError::NotAnImageArchive), "{err}");
}
