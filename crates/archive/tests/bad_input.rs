//! Malformed and hostile archives: each fails with a clear error.

mod common;

use std::io::{self, Cursor, Read};

use berth_archive::{ArchiveError, load};
use common::*;

fn load_err(bytes: Vec<u8>) -> ArchiveError {
    match load(Cursor::new(bytes), &DirBlobs::new()) {
        Ok(a) => panic!("loaded {} images from a bad archive", a.images.len()),
        Err(e) => e,
    }
}

fn replace(files: &[(String, Vec<u8>)], path: &str, data: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|(p, d)| (p.clone(), if p == path { data.clone() } else { d.clone() }))
        .collect()
}

fn docker_files() -> Vec<(String, Vec<u8>)> {
    members(&fixture_bytes("podman-save-docker.tar"))
}

const FIRST_LAYER: &str = "9069693abddc2bf8a0eddba7fdca55978bd4a9e4598df97dc5f78f996bfc6c9e.tar";

#[test]
fn truncated_archives_fail() {
    let bytes = fixture_bytes("docker-save-tiny.tar");
    for cut in [bytes.len() / 2, 700, 100] {
        let err = load_err(bytes[..cut].to_vec());
        let text = err.to_string();
        assert!(text.starts_with("invalid archive"), "{cut}: {text}");
    }
    // Inside a member's data: named as truncation.
    let err = load_err(bytes[..512 + 1000].to_vec());
    assert!(matches!(err, ArchiveError::Truncated { .. }), "{err}");
}

#[test]
fn truncated_compressed_archive_fails() {
    let bytes = fixture_bytes("docker-save-tiny.tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    io::Write::write_all(&mut gz, &bytes).unwrap();
    let gz = gz.finish().unwrap();
    let err = load_err(gz[..gz.len() / 2].to_vec());
    assert!(err.to_string().starts_with("invalid archive"), "{err}");
}

#[test]
fn things_that_are_not_image_archives_fail() {
    let random: Vec<u8> =
        (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert!(matches!(load_err(random), ArchiveError::NotATar(_)));
    assert!(matches!(load_err(b"just some text\n".to_vec()), ArchiveError::NotATar(_)));
    assert!(matches!(load_err(Vec::new()), ArchiveError::NotAnImageArchive));
    let plain = tar_of(&[("README".into(), b"not an image\n".to_vec())]);
    assert!(matches!(load_err(plain), ArchiveError::NotAnImageArchive));
    let legacy = tar_of(&[("repositories".into(), b"{}".to_vec())]);
    assert!(matches!(load_err(legacy), ArchiveError::LegacyWithoutManifest));
}

#[test]
fn a_missing_layer_file_fails() {
    let files: Vec<_> =
        docker_files().into_iter().filter(|(p, _)| !p.ends_with(FIRST_LAYER)).collect();
    let err = load_err(tar_of(&files));
    assert!(matches!(err, ArchiveError::MissingMember { .. }), "{err}");
    assert!(err.to_string().contains("manifest.json names"), "{err}");
}

#[test]
fn a_layer_with_the_wrong_content_fails() {
    let evil = tar_of(&[("evil.txt".into(), b"not the layer\n".to_vec())]);
    let err = load_err(tar_of(&replace(&docker_files(), FIRST_LAYER, evil)));
    assert!(matches!(err, ArchiveError::DiffIdMismatch { index: 0, .. }), "{err}");
}

#[test]
fn an_oci_blob_that_does_not_match_its_name_fails() {
    let files = members(&fixture_bytes("skopeo-oci.tar"));
    // Swap the content of the two layer blobs.
    let a = "blobs/sha256/4934dd81acae00fa8c49186128b3b36c6e1c2b8eb24fe2a7d93db7970a037630";
    let b = "blobs/sha256/67dbc986eec48fc3b56d6057d694b9e2ad20668ad65507e8d24ac2f7448bd73b";
    let swapped =
        replace(&replace(&files, a, member(&files, b).to_vec()), b, member(&files, a).to_vec());
    let err = load_err(tar_of(&swapped));
    assert!(matches!(err, ArchiveError::DigestMismatch { .. }), "{err}");
    // A config edited in place (so it no longer matches its name).
    let config = "blobs/sha256/9eb3d5d0d4a5ce101cf796338543375917afe77fdf2d0c76ad0c77ad0aefb5d8";
    let edited = String::from_utf8(member(&files, config).to_vec())
        .unwrap()
        .replace("GREETING=hi", "GREETING=ho");
    let err = load_err(tar_of(&replace(&files, config, edited.into_bytes())));
    assert!(matches!(err, ArchiveError::DigestMismatch { .. }), "{err}");
}

#[test]
fn a_config_with_a_different_layer_count_fails() {
    let files = docker_files();
    let manifest = String::from_utf8(member(&files, "manifest.json").to_vec()).unwrap();
    let second = "\"7992d0af562c1b65c78754360c16a530ef596fe3001a665048aa04189cb79309.tar\"";
    let fewer = manifest.replace(&format!(",{second}"), "");
    assert_ne!(fewer, manifest);
    let err = load_err(tar_of(&replace(&files, "manifest.json", fewer.into_bytes())));
    assert!(matches!(err, ArchiveError::LayerCount { diff_ids: 2, layers: 1, .. }), "{err}");
}

#[test]
fn invalid_repo_tags_fail() {
    let files = docker_files();
    let manifest = String::from_utf8(member(&files, "manifest.json").to_vec()).unwrap();
    for bad in ["Localhost/Tiny:1.0", "tiny:bad tag", "tiny", "tiny@sha256:abc"] {
        let edited = manifest.replace("localhost/tiny:1.0", bad);
        let err = load_err(tar_of(&replace(&files, "manifest.json", edited.into_bytes())));
        let text = err.to_string();
        assert!(text.contains(bad), "{bad}: {text}");
    }
    let edited = manifest.replace("localhost/tiny:1.0", "Tiny:1.0");
    let err = load_err(tar_of(&replace(&files, "manifest.json", edited.into_bytes())));
    assert!(err.to_string().starts_with("invalid reference format"), "{err}");
}

/// A tar holding the podman fixture plus one raw member written with a
/// hand-made header (tar::Builder refuses these names itself).
fn with_raw_member(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let base = fixture_bytes("podman-save-docker.tar");
    // Drop the end-of-archive blocks, append the member, end again.
    let end = base.len() - 1024;
    let mut out = base[..end].to_vec();
    while out.len() >= 512 && out[out.len() - 512..].iter().all(|&b| b == 0) {
        out.truncate(out.len() - 512);
    }
    let data = b"escaped\n";
    let mut header = tar::Header::new_old();
    {
        let bytes = header.as_old_mut();
        bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            bytes.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
    }
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.set_size(if kind.is_file() { data.len() as u64 } else { 0 });
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    if kind.is_file() {
        out.extend_from_slice(data);
        out.resize(out.len() + 512 - data.len(), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn escaping_paths_and_links_are_refused() {
    for (name, kind, link) in [
        ("../../../tmp/escape", tar::EntryType::Regular, None),
        ("/tmp/escape", tar::EntryType::Regular, None),
        ("ok/../../escape", tar::EntryType::Regular, None),
        ("x/layer.tar", tar::EntryType::Symlink, Some("../../etc/passwd")),
        ("x/layer.tar", tar::EntryType::Symlink, Some("/etc/passwd")),
        ("x/layer.tar", tar::EntryType::Link, Some("../etc/passwd")),
    ] {
        let err = load_err(with_raw_member(name, kind, link));
        assert!(matches!(err, ArchiveError::UnsafePath { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "{err}");
    }
    // The same archive with a harmless member loads.
    let ok = with_raw_member("extra.txt", tar::EntryType::Regular, None);
    assert!(load(Cursor::new(ok), &DirBlobs::new()).is_ok());
}

#[test]
fn a_layer_symlinked_to_itself_fails() {
    let mut base = fixture_bytes("podman-save-docker.tar");
    base.truncate(base.len() - 1024);
    let archive = {
        let mut files = docker_files();
        files.retain(|(p, _)| !p.ends_with(FIRST_LAYER));
        let mut builder = tar::Builder::new(Vec::new());
        for (p, d) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, p, &d[..]).unwrap();
        }
        for (from, to) in [(FIRST_LAYER, "loop-b"), ("loop-b", FIRST_LAYER)] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_cksum();
            builder.append_link(&mut h, from, to).unwrap();
        }
        builder.into_inner().unwrap()
    };
    let err = load_err(archive);
    assert!(matches!(err, ArchiveError::LinkLoop { .. }), "{err}");
}

#[test]
fn duplicate_members_are_refused() {
    let mut files = docker_files();
    files.push(("manifest.json".into(), b"[]".to_vec()));
    let err = load_err(tar_of(&files));
    assert!(matches!(err, ArchiveError::DuplicateEntry { .. }), "{err}");
}

/// A tar stream whose first member claims `size` bytes of spaces, produced
/// on the fly (never materialised); counts how much was read.
struct HugeMember {
    header: Vec<u8>,
    size: u64,
    sent: u64,
}

impl HugeMember {
    fn new(name: &str, size: u64) -> HugeMember {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        HugeMember { header: h.as_bytes().to_vec(), size, sent: 0 }
    }
}

impl Read for HugeMember {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let total = 512 + self.size;
        if self.sent >= total {
            return Ok(0);
        }
        let n = buf.len().min((total - self.sent) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let pos = self.sent + i as u64;
            *b = if pos < 512 { self.header[pos as usize] } else { b' ' };
        }
        self.sent += n as u64;
        Ok(n)
    }
}

#[test]
fn a_one_gigabyte_manifest_fails_fast_without_being_read() {
    let huge = HugeMember::new("manifest.json", 1 << 30);
    let start = std::time::Instant::now();
    let err = load(huge, &DirBlobs::new()).unwrap_err();
    assert!(matches!(err, ArchiveError::MemberTooLarge { size: 1073741824, .. }), "{err}");
    assert!(err.to_string().contains("manifest.json"), "{err}");
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
}

#[test]
fn a_json_blob_over_the_limit_is_no_config() {
    // A 9 MiB JSON document in blobs/ is streamed to the sink like any
    // blob; an index that names it as a config is refused.
    let files = members(&fixture_bytes("skopeo-oci.tar"));
    let mut big = b"{\"x\":\"".to_vec();
    big.resize(9 << 20, b'a');
    big.extend_from_slice(b"\"}");
    let digest = berth_reference::Digest::sha256_of(&big);
    let manifest_path =
        "blobs/sha256/4bc579bbd35b12330e06cb628df48ccc608cc7e420b643855a63e60ad3b35275";
    let manifest = String::from_utf8(member(&files, manifest_path).to_vec()).unwrap();
    let manifest = manifest
        .replace(
            "sha256:9eb3d5d0d4a5ce101cf796338543375917afe77fdf2d0c76ad0c77ad0aefb5d8",
            digest.as_str(),
        )
        .replace("\"size\":1133", &format!("\"size\":{}", big.len()));
    let md = berth_reference::Digest::sha256_of(manifest.as_bytes());
    let index = String::from_utf8(member(&files, "index.json").to_vec())
        .unwrap()
        .replace(
            "sha256:4bc579bbd35b12330e06cb628df48ccc608cc7e420b643855a63e60ad3b35275",
            md.as_str(),
        )
        .replace("\"size\":556", &format!("\"size\":{}", manifest.len()));
    let mut files = replace(&files, "index.json", index.into_bytes());
    files.push((format!("blobs/sha256/{}", md.hex()), manifest.into_bytes()));
    files.push((format!("blobs/sha256/{}", digest.hex()), big));
    let err = load_err(tar_of(&files));
    assert!(matches!(err, ArchiveError::InvalidJson { .. }), "{err}");
    assert!(err.to_string().contains("not a JSON document of at most"), "{err}");
}

#[test]
fn oci_media_type_must_match_the_content() {
    let files = members(&fixture_bytes("skopeo-oci.tar"));
    let manifest_path =
        "blobs/sha256/4bc579bbd35b12330e06cb628df48ccc608cc7e420b643855a63e60ad3b35275";
    let manifest = String::from_utf8(member(&files, manifest_path).to_vec()).unwrap().replacen(
        "layer.v1.tar+gzip",
        "layer.v1.tar+zstd",
        1,
    );
    let md = berth_reference::Digest::sha256_of(manifest.as_bytes());
    let index = String::from_utf8(member(&files, "index.json").to_vec())
        .unwrap()
        .replace("4bc579bbd35b12330e06cb628df48ccc608cc7e420b643855a63e60ad3b35275", md.hex());
    let mut files = replace(&files, "index.json", index.into_bytes());
    files.push((format!("blobs/sha256/{}", md.hex()), manifest.into_bytes()));
    let err = load_err(tar_of(&files));
    assert!(matches!(err, ArchiveError::InvalidLayer { .. }), "{err}");
    assert!(err.to_string().contains("does not match its gzip content"), "{err}");
}
