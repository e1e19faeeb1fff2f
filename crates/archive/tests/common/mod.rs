//! A real, directory-backed blob store for tests: blobs are files named by
//! their sha256, written through a temp file and renamed, as the local
//! store does.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_oci::{BlobSink, BlobSource};
use berth_reference::{Algorithm, Digest, HashingWriter};

pub struct DirBlobs {
    _dir: tempfile::TempDir,
    root: PathBuf,
    counter: AtomicU64,
}

impl DirBlobs {
    pub fn new() -> DirBlobs {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        fs::create_dir_all(root.join("blobs")).unwrap();
        DirBlobs { _dir: dir, root, counter: AtomicU64::new(0) }
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.hex())
    }

    pub fn read(&self, digest: &Digest) -> Vec<u8> {
        fs::read(self.path(digest)).unwrap()
    }

    /// Every blob digest held, sorted.
    pub fn digests(&self) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.root.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    pub fn put(&self, bytes: &[u8]) -> Digest {
        self.write_blob(&mut &bytes[..]).unwrap().0
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl BlobSink for DirBlobs {
    fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join(format!("tmp-{n}"));
        let mut out = HashingWriter::new(File::create(&tmp)?, Algorithm::Sha256);
        io::copy(reader, &mut out)?;
        let (mut file, digest, size) = out.into_parts();
        file.flush()?;
        fs::rename(&tmp, self.path(&digest))?;
        Ok((digest, size))
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }
}

impl BlobSource for DirBlobs {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(self.path(digest))?))
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        Ok(fs::metadata(self.path(digest)).ok().map(|m| m.len()))
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

/// The IDs `docker images --no-trunc` showed for the fixture images.
pub const TINY_1_ID: &str =
    "sha256:10c8ad10f068440a28cb379771bad7e68d4379aaa436e528cbae203d604e339e";
pub const TINY_2_ID: &str =
    "sha256:1c8c98357ed21087a86b8e95f0f1ecca0e4c3786dc7fc86bfecea59491f47316";
/// The ID podman shows for tiny:1.0 after converting it to OCI (its config
/// is rewritten without docker's legacy fields, so the ID changes).
pub const TINY_OCI_ID: &str =
    "sha256:9eb3d5d0d4a5ce101cf796338543375917afe77fdf2d0c76ad0c77ad0aefb5d8";
pub const DIFF_1: &str = "sha256:9069693abddc2bf8a0eddba7fdca55978bd4a9e4598df97dc5f78f996bfc6c9e";
pub const DIFF_2: &str = "sha256:7992d0af562c1b65c78754360c16a530ef596fe3001a665048aa04189cb79309";
pub const DIFF_3: &str = "sha256:8a3a201aa0f1acca33ee07f94f46fd2fb740cde62fd7adce633d717b5dd5ca2a";

/// Every regular member of a tar, by path, with symlinks resolved to their
/// target's content (as docker's layer symlinks mean), in archive order.
pub fn members(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut links = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            let target = entry.link_name().unwrap().unwrap().to_string_lossy().into_owned();
            let dir = Path::new(&path).parent().unwrap().to_owned();
            let resolved = dir.join(target);
            // Normalise `dir/../x` to `x`.
            let mut parts: Vec<String> = Vec::new();
            for c in resolved.components() {
                match c {
                    std::path::Component::ParentDir => {
                        parts.pop();
                    }
                    std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into()),
                    _ => {}
                }
            }
            links.push((path, parts.join("/")));
        } else if kind.is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push((path, data));
        }
    }
    for (path, target) in links {
        let data = out.iter().find(|(p, _)| *p == target).unwrap().1.clone();
        out.push((path, data));
    }
    out
}

pub fn member<'a>(members: &'a [(String, Vec<u8>)], path: &str) -> &'a [u8] {
    &members.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("no {path}")).1
}

/// A tar of regular files, in the order given.
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append_data(&mut header, path, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    fs::read(fixture(name)).unwrap()
}

/// The archive Docker 25+ writes for the images of `docker-save-tiny.tar`:
/// an OCI image layout (uncompressed layers, index.json with the
/// containerd name and a tag-only ref.name) plus manifest.json pointing
/// into blobs/. With `with_manifest_json` false, only the OCI layout.
pub fn docker25_archive(with_manifest_json: bool) -> Vec<u8> {
    use serde_json::json;
    let legacy = members(&fixture_bytes("docker-save-tiny.tar"));
    let manifest: serde_json::Value =
        serde_json::from_slice(member(&legacy, "manifest.json")).unwrap();
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |data: &[u8]| -> (String, usize) {
        let d = Digest::sha256_of(data);
        let path = format!("blobs/sha256/{}", d.hex());
        if !blobs.iter().any(|(p, _)| *p == path) {
            blobs.push((path, data.to_vec()));
        }
        (d.to_string(), data.len())
    };
    let mut index = Vec::new();
    let mut new_manifest = Vec::new();
    for image in manifest.as_array().unwrap() {
        let config = member(&legacy, image["Config"].as_str().unwrap());
        let (config_digest, config_size) = add(config);
        let mut layers = Vec::new();
        for l in image["Layers"].as_array().unwrap() {
            let (d, size) = add(member(&legacy, l.as_str().unwrap()));
            layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size}));
        }
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layers,
        }))
        .unwrap();
        let (md, msize) = add(&m);
        for tag in image["RepoTags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let full = berth_reference::Reference::parse(tag).unwrap().full();
            index.push(json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": msize,
                "annotations": {"io.containerd.image.name": full,
                                "org.opencontainers.image.ref.name": tag.rsplit(':').next().unwrap()},
            }));
        }
        new_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", &config_digest[7..]),
            "RepoTags": image["RepoTags"],
            "Layers": layers.iter().map(|l| format!("blobs/sha256/{}", &l["digest"].as_str().unwrap()[7..])).collect::<Vec<_>>(),
        }));
    }
    let mut files = blobs;
    files.push((
        "index.json".into(),
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index})).unwrap(),
    ));
    if with_manifest_json {
        files.push(("manifest.json".into(), serde_json::to_vec(&new_manifest).unwrap()));
    }
    files.push(("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    tar_of(&files)
}
