//! save → load round trips: IDs, diff IDs and tags survive, in both formats.

mod common;

use std::fs::File;
use std::io::Cursor;

use berth_archive::{ArchiveFormat, LoadedArchive, SaveFormat, load, save};
use berth_oci::Image;
use common::*;

/// A loaded image as a writer takes it: the manifest left out, so the
/// writer makes its own.
fn to_save(image: &Image) -> Image {
    Image { manifest: None, ..image.clone() }
}

fn load_fixture(name: &str, blobs: &DirBlobs) -> LoadedArchive {
    load(File::open(fixture(name)).unwrap(), blobs).unwrap()
}

fn save_bytes(images: &[Image], blobs: &DirBlobs, format: SaveFormat) -> Vec<u8> {
    save(images, blobs, format, Vec::new()).unwrap()
}

/// What identifies an image across a round trip.
fn identity(a: &LoadedArchive) -> Vec<(String, Vec<String>, Vec<String>)> {
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

#[test]
fn docker_archive_round_trip_keeps_everything() {
    let blobs = DirBlobs::new();
    let original = load_fixture("docker-save-tiny.tar", &blobs);
    let images: Vec<Image> = original.images.iter().map(to_save).collect();
    for format in [SaveFormat::Docker, SaveFormat::Oci] {
        let bytes = save_bytes(&images, &blobs, format);
        let again = DirBlobs::new();
        let reloaded = load(Cursor::new(bytes), &again).unwrap();
        assert_eq!(
            reloaded.format,
            ArchiveFormat::DockerArchive,
            "{format:?}: manifest.json is read"
        );
        assert_eq!(identity(&reloaded), identity(&original), "{format:?}");
    }
}

#[test]
fn saving_twice_gives_identical_bytes() {
    let blobs = DirBlobs::new();
    let original = load_fixture("docker-save-tiny.tar", &blobs);
    let images: Vec<Image> = original.images.iter().map(to_save).collect();
    assert_eq!(
        save_bytes(&images, &blobs, SaveFormat::Docker),
        save_bytes(&images, &blobs, SaveFormat::Docker)
    );
}

#[test]
fn compressed_layers_are_decompressed_for_docker_and_kept_for_oci() {
    for fixture_name in ["skopeo-oci.tar", "skopeo-oci-zstd.tar"] {
        let blobs = DirBlobs::new();
        let original = load_fixture(fixture_name, &blobs);
        let images: Vec<Image> = original.images.iter().map(to_save).collect();

        let docker = save_bytes(&images, &blobs, SaveFormat::Docker);
        let again = DirBlobs::new();
        let reloaded = load(Cursor::new(docker), &again).unwrap();
        assert_eq!(identity(&reloaded), identity(&original), "{fixture_name}");
        for layer in &reloaded.images[0].layers {
            assert_eq!(
                layer.blobs[0].digest, layer.diff_id,
                "{fixture_name}: uncompressed in docker-archive"
            );
        }

        let oci = save_bytes(&images, &blobs, SaveFormat::Oci);
        let again = DirBlobs::new();
        let reloaded = load(Cursor::new(oci), &again).unwrap();
        assert_eq!(identity(&reloaded), identity(&original), "{fixture_name}");
        let kept: Vec<_> = reloaded.images[0].layers.iter().map(|l| &l.blobs[0]).collect();
        let stored: Vec<_> = original.images[0].layers.iter().map(|l| &l.blobs[0]).collect();
        assert_eq!(kept, stored, "{fixture_name}: OCI keeps the compressed blobs");
    }
}

#[test]
fn oci_save_without_manifest_json_is_read_through_the_index() {
    // Strip manifest.json from berth's OCI archive: what remains is a plain
    // oci-archive, read through index.json and its annotations.
    let blobs = DirBlobs::new();
    let original = load_fixture("docker-save-tiny.tar", &blobs);
    let images: Vec<Image> = original.images.iter().map(to_save).collect();
    let bytes = save_bytes(&images, &blobs, SaveFormat::Oci);
    let mut archive = tar::Archive::new(Cursor::new(bytes));
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("manifest.json") {
            continue;
        }
        let header = entry.header().clone();
        builder.append(&header, &mut entry).unwrap();
    }
    let stripped = builder.into_inner().unwrap();
    let reloaded = load(Cursor::new(stripped), &DirBlobs::new()).unwrap();
    assert_eq!(reloaded.format, ArchiveFormat::OciLayout);
    assert_eq!(identity(&reloaded), identity(&original));
}

#[test]
fn a_corrupt_compressed_blob_fails_the_save() {
    let blobs = DirBlobs::new();
    let original = load_fixture("skopeo-oci.tar", &blobs);
    let images: Vec<Image> = original.images.iter().map(to_save).collect();
    // Replace a gzip layer blob's file with another valid gzip stream.
    let victim = &original.images[0].layers[1].blobs[0].digest;
    let other = &original.images[0].layers[0].blobs[0].digest;
    std::fs::copy(blobs.path(other), blobs.path(victim)).unwrap();
    let err = save(&images, &blobs, SaveFormat::Docker, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("layer sha256:"), "{err}");
}
