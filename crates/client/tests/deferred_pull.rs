//! Pulls that leave the diff-ID check to the store (`defer_diff_ids`): every
//! blob is still checked against its digest and size while it streams, and
//! nothing that fails is kept.

mod support;

use std::sync::Arc;
use std::time::Duration;

use berth_client::credentials::Anonymous;
use berth_client::{Client, ClientError, ClientOptions, NoProgress, PullOptions};
use berth_oci::BlobSink;
use berth_reference::Reference;
use support::{DirStore, Faults, make_image, start};

fn client() -> Client {
    Client::new(ClientOptions {
        credentials: Arc::new(Anonymous),
        retries: 3,
        backoff: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap()
}

async fn deferred_pull(
    faults: Faults,
) -> (
    support::TestImage,
    Arc<DirStore>,
    tempfile::TempDir,
    Result<berth_client::PulledImage, ClientError>,
) {
    let (addr, reg) = start(faults).await;
    let img = make_image(&[300_000, 200_000, 50_000]);
    reg.lock().unwrap().add_image("app", "latest", &img);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::new(dir.path().join("store")));
    let r = Reference::parse_with_default_tag(&format!("{addr}/app")).unwrap();
    let opts = PullOptions { defer_diff_ids: true, ..Default::default() };
    let pulled = client().pull(&r, store.clone(), &opts, Arc::new(NoProgress)).await;
    (img, store, dir, pulled)
}

#[tokio::test]
async fn a_deferred_pull_stores_every_blob_and_returns_the_claims() {
    let (img, store, _dir, pulled) = deferred_pull(Faults::default()).await;
    let p = pulled.unwrap();
    assert!(p.downloaded_any);
    assert_eq!(p.image.layers.len(), 3);
    for (i, l) in p.image.layers.iter().enumerate() {
        assert_eq!(l.diff_id, img.diff_id(i));
        assert_eq!(l.blobs[0].digest, img.layer_digest(i));
        assert_eq!(l.uncompressed_size, None, "the diff ID was not meant to be checked");
        assert!(store.has_blob(&img.layer_digest(i)));
    }
}

#[tokio::test]
async fn a_deferred_pull_still_refuses_a_corrupted_byte() {
    let (img, store, _dir, pulled) =
        deferred_pull(Faults { corrupt_byte: true, ..Default::default() }).await;
    let err = pulled.unwrap_err();
    assert!(
        matches!(&err, ClientError::DigestMismatch { expected, .. } if *expected == img.layer_digest(0)),
        "{err}"
    );
    let intact: Vec<_> = (0..3).map(|i| img.layer_digest(i)).collect();
    for entry in std::fs::read_dir(store.dir.join("blobs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(intact.iter().any(|d| d.hex() == name), "unexpected blob {name}");
    }
}

#[tokio::test]
async fn a_deferred_pull_resumes_a_dropped_connection() {
    let (img, store, _dir, pulled) =
        deferred_pull(Faults { drop_mid_blob: true, ..Default::default() }).await;
    pulled.unwrap();
    assert!(store.has_blob(&img.layer_digest(0)));
}

#[tokio::test]
async fn a_deferred_pull_keeps_nothing_of_a_truncated_blob() {
    let (img, store, _dir, pulled) =
        deferred_pull(Faults { truncate: true, ..Default::default() }).await;
    let err = pulled.unwrap_err();
    assert!(matches!(err, ClientError::Network { .. } | ClientError::Truncated { .. }), "{err}");
    assert!(!store.has_blob(&img.layer_digest(0)));
}
