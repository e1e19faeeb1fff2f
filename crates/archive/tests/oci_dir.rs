//! OCI layouts keep manifests byte for byte, and `write_oci_dir` adds to a
//! layout directory the way skopeo's `oci:DIR:REF` does.

mod common;

use std::fs::File;
use std::io::Cursor;
use std::path::Path;

use berth_archive::{SaveFormat, load, load_dir, oci_layout, save, write_oci_dir};
use berth_oci::{ImageIndex, media_type};
use common::*;

fn index_of(dir: &Path) -> ImageIndex {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

fn ref_names(dir: &Path) -> Vec<(String, String)> {
    index_of(dir)
        .manifests
        .iter()
        .map(|m| {
            let name = m.annotations.as_ref().and_then(|a| a.get(oci_layout::REF_NAME)).cloned();
            (name.unwrap_or_default(), m.digest.to_string())
        })
        .collect()
}

#[test]
fn an_oci_layout_keeps_its_manifest_through_save_and_load() {
    let blobs = DirBlobs::new();
    let a = load(File::open(fixture("skopeo-oci.tar")).unwrap(), &blobs).unwrap();
    let image = &a.images[0];
    let kept = image.kept_manifest().expect("the layout's manifest is kept").clone();
    assert_eq!(kept.media_type, media_type::OCI_MANIFEST);
    assert_eq!(berth_reference::Digest::sha256_of(&kept.bytes), kept.digest);

    // Written again as an OCI archive: the same bytes, so the same digest.
    let bytes = save(std::slice::from_ref(image), &blobs, SaveFormat::Oci, Vec::new()).unwrap();
    let again = load(Cursor::new(bytes), &DirBlobs::new()).unwrap();
    assert_eq!(again.images[0].manifest.as_ref(), Some(&kept));
}

#[test]
fn a_layout_directory_is_created_then_added_to() {
    let blobs = DirBlobs::new();
    let oci = load(File::open(fixture("skopeo-oci.tar")).unwrap(), &blobs).unwrap();
    let docker = load(File::open(fixture("docker-save-tiny.tar")).unwrap(), &blobs).unwrap();
    let first = oci.images[0].clone();
    let second = docker.images[0].clone();
    assert!(second.manifest.is_none());
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("layout");

    write_oci_dir(std::slice::from_ref(&first), &blobs, &dir, Some("v1")).unwrap();
    let kept = first.manifest.clone().unwrap();
    assert_eq!(ref_names(&dir), [("v1".to_owned(), kept.digest.to_string())]);
    let back = load_dir(&dir, &DirBlobs::new()).unwrap();
    assert_eq!(back.images[0].manifest.as_ref(), Some(&kept));

    // Another image under another name: added beside it, blobs shared.
    write_oci_dir(std::slice::from_ref(&second), &blobs, &dir, Some("v2")).unwrap();
    let names = ref_names(&dir);
    assert_eq!(names.len(), 2);
    assert_eq!(names[0], ("v1".to_owned(), kept.digest.to_string()));
    let made = names[1].1.clone();
    assert_ne!(made, kept.digest.to_string());
    let back = load_dir(&dir, &DirBlobs::new()).unwrap();
    assert_eq!(back.images.len(), 2);
    assert_eq!(back.images[1].id(), second.id());

    // The same name again: the entry is replaced, not duplicated.
    write_oci_dir(std::slice::from_ref(&first), &blobs, &dir, Some("v2")).unwrap();
    assert_eq!(
        ref_names(&dir),
        [("v1".to_owned(), kept.digest.to_string()), ("v2".to_owned(), kept.digest.to_string())]
    );
    // No temporary file is left in the layout.
    let stray: Vec<_> = walk(&dir).into_iter().filter(|p| p.contains(".berth-")).collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn a_directory_that_is_not_a_layout_is_refused_and_left_alone() {
    let blobs = DirBlobs::new();
    let a = load(File::open(fixture("skopeo-oci.tar")).unwrap(), &blobs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let err = write_oci_dir(&a.images, &blobs, dir.path(), None).unwrap_err();
    assert!(err.to_string().contains("is not an OCI image layout"), "{err}");
    assert_eq!(walk(dir.path()), ["notes.txt"]);
}

/// Every file under `dir`, relative, sorted.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
