//! `import`: rootfs tarballs become one-layer images.

mod common;

use std::io::{Cursor, Write};
use std::time::{Duration, SystemTime};

use berth_archive::{ArchiveError, ImportOptions, import};
use berth_oci::{ImageConfig, Platform, media_type};
use berth_reference::Digest;
use common::*;

fn rootfs() -> Vec<u8> {
    tar_of(&[
        ("hello.txt".into(), b"hello from berth\n".to_vec()),
        ("etc/os-release".into(), b"NAME=tiny\n".to_vec()),
    ])
}

fn options(changes: &[&str], message: Option<&str>) -> ImportOptions {
    ImportOptions {
        changes: changes.iter().map(|s| s.to_string()).collect(),
        message: message.map(str::to_owned),
        source: "-".to_owned(),
        platform: Platform::parse("linux/amd64").unwrap(),
        created: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

#[test]
fn a_plain_or_compressed_rootfs_becomes_one_uncompressed_layer() {
    let plain = rootfs();
    let diff_id = Digest::sha256_of(&plain);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let inputs = [plain.clone(), gz.finish().unwrap(), zstd::encode_all(&plain[..], 3).unwrap()];
    for input in inputs {
        let blobs = DirBlobs::new();
        let image = import(Cursor::new(input), &blobs, &options(&[], None)).unwrap();
        assert_eq!(image.id(), Digest::sha256_of(&image.config));
        assert_eq!(image.layers.len(), 1);
        let layer = &image.layers[0];
        assert_eq!(layer.diff_id, diff_id, "the diff ID is the plain tar's digest, as docker's");
        assert_eq!(layer.blobs[0].digest, diff_id);
        assert_eq!(layer.blobs[0].media_type, media_type::OCI_LAYER);
        assert_eq!(layer.uncompressed_size, Some(plain.len() as u64));
        assert_eq!(blobs.read(&diff_id), plain);
        assert!(image.tags.is_empty());
    }
}

#[test]
fn the_config_records_platform_time_history_and_changes() {
    let image = import(
        Cursor::new(rootfs()),
        &DirBlobs::new(),
        &options(&[r#"CMD ["/bin/sh"]"#, "ENV A=B", "LABEL team=infra"], Some("first import")),
    )
    .unwrap();
    let config = ImageConfig::parse(&image.config).unwrap();
    assert_eq!(config.architecture, "amd64");
    assert_eq!(config.os, "linux");
    assert_eq!(config.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(config.diff_ids(), [image.layers[0].diff_id.clone()]);
    assert_eq!(config.history.len(), 1);
    assert_eq!(config.history[0].comment.as_deref(), Some("first import"));
    assert_eq!(config.history[0].created, config.created);
    assert_eq!(config.extra["comment"], "first import");
    let runtime = config.config.unwrap();
    assert_eq!(runtime.cmd.unwrap(), ["/bin/sh"]);
    assert_eq!(runtime.env.unwrap(), ["A=B"]);
    assert_eq!(runtime.labels.unwrap()["team"], "infra");

    let image = import(Cursor::new(rootfs()), &DirBlobs::new(), &options(&[], None)).unwrap();
    let config = ImageConfig::parse(&image.config).unwrap();
    assert_eq!(config.history[0].comment.as_deref(), Some("Imported from -"));
}

#[test]
fn bad_input_is_refused() {
    let err =
        import(Cursor::new(rootfs()), &DirBlobs::new(), &options(&["RUN make"], None)).unwrap_err();
    assert_eq!(err.to_string(), "run is not a valid change command");

    let err = import(Cursor::new(b"hello\n".repeat(200)), &DirBlobs::new(), &options(&[], None))
        .unwrap_err();
    assert!(matches!(err, ArchiveError::InvalidRootfs(_)), "{err}");

    let plain = rootfs();
    let err = import(Cursor::new(plain[..700].to_vec()), &DirBlobs::new(), &options(&[], None))
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    let err = import(Cursor::new(Vec::new()), &DirBlobs::new(), &options(&[], None)).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}
