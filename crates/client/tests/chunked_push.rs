//! Chunked uploads of large blobs: resumed from the registry's `Range`
//! after a dropped connection, delayed by an HTTP-date `Retry-After`,
//! restarted when the registry loses the upload, and falling back to one
//! PATCH for registries that refuse chunks.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_client::credentials::Anonymous;
use berth_client::{Client, ClientOptions, NoProgress, PushOptions};
use berth_oci::{Descriptor, Image, Layer, media_type};
use berth_reference::{Digest, Reference};
use support::{DirStore, Faults, Shared, start};

const CHUNK: u64 = 256 << 10;

fn client(max_retry_after: Duration) -> Client {
    Client::new(ClientOptions {
        credentials: Arc::new(Anonymous),
        retries: 4,
        backoff: Duration::from_millis(10),
        max_retry_after,
        ..Default::default()
    })
    .unwrap()
}

fn opts() -> PushOptions {
    PushOptions { monolithic_limit: 64 << 10, chunk_size: CHUNK, ..Default::default() }
}

/// A one-layer image whose gzip blob (about 1.6 MB: several chunks) is in a
/// fresh store.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<DirStore>,
    image: Image,
    blob: Vec<u8>,
    digest: Digest,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::new(dir.path().join("s")));
    let img = support::make_image(&[3 << 20]);
    let (raw, gz) = img.layers[0].clone();
    let digest = store.put(&gz);
    let image = Image {
        manifest: None,
        config: img.config.clone(),
        layers: vec![Layer {
            diff_id: Digest::sha256_of(&raw),
            uncompressed_size: Some(raw.len() as u64),
            blobs: vec![Descriptor::new(
                media_type::DOCKER_LAYER_GZIP,
                digest.clone(),
                gz.len() as u64,
            )],
        }],
        tags: vec![],
    };
    assert!(gz.len() as u64 > 4 * CHUNK, "the layer must take several chunks");
    Fixture { _dir: dir, store, image, blob: gz, digest }
}

async fn push(c: &Client, addr: &str, f: &Fixture) -> Result<(), berth_client::ClientError> {
    let target = Reference::parse(&format!("{addr}/app:v1")).unwrap();
    c.push(&target, &f.image, f.store.clone(), &opts(), Arc::new(NoProgress)).await.map(|_| ())
}

/// The registry holds the layer, byte for byte, and the manifest naming it.
fn assert_stored(reg: &Shared, f: &Fixture) {
    let reg = reg.lock().unwrap();
    let stored = reg.blobs.get(f.digest.as_str()).expect("layer stored");
    assert_eq!(Digest::sha256_of(stored), f.digest);
    assert_eq!(stored.as_ref(), &f.blob[..]);
    let (_, manifest) = &reg.manifests[&("app".to_owned(), "v1".to_owned())];
    assert!(std::str::from_utf8(manifest).unwrap().contains(f.digest.as_str()));
}

/// `(start, end)` of every PATCH that carried a Content-Range, in order.
fn patch_ranges(reg: &Shared) -> Vec<(u64, u64)> {
    reg.lock()
        .unwrap()
        .log
        .iter()
        .filter_map(|l| l.strip_prefix("PATCH "))
        .filter_map(|l| l.split_once(' '))
        .map(|(_, r)| {
            let (a, b) = r.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

fn log_count(reg: &Shared, prefix: &str) -> usize {
    reg.lock().unwrap().log.iter().filter(|l| l.starts_with(prefix)).count()
}

#[tokio::test]
async fn a_large_blob_goes_in_chunks_that_follow_location() {
    let (addr, reg) = start(Faults::default()).await;
    let f = fixture();
    push(&client(Duration::from_secs(60)), &addr, &f).await.unwrap();
    assert_stored(&reg, &f);
    let ranges = patch_ranges(&reg);
    let size = f.blob.len() as u64;
    assert_eq!(ranges.len() as u64, size.div_ceil(CHUNK), "{ranges:?}");
    // Contiguous chunks of the configured size, from 0 to the end. (The
    // server refuses a stale `_state` Location: following each one is proven.)
    let mut next = 0;
    for (a, b) in &ranges {
        assert_eq!(*a, next);
        assert!(b - a + 1 == CHUNK || *b == size - 1, "{ranges:?}");
        next = b + 1;
    }
    assert_eq!(next, size);
}

#[tokio::test]
async fn a_connection_dropped_mid_chunk_resumes_from_the_registry_range() {
    let (upstream, reg) = start(Faults::default()).await;
    let f = fixture();
    // Cut while the second chunk is under way.
    let (addr, sent) = support::cutting_proxy(upstream, CHUNK + CHUNK / 2).await;
    push(&client(Duration::from_secs(60)), &addr, &f).await.unwrap();
    assert_stored(&reg, &f);
    let log = reg.lock().unwrap().log.clone();
    // One upload session for the layer (one more for the config): resumed, not restarted.
    assert_eq!(log_count(&reg, "POST /v2/app/blobs/uploads/"), 2, "{log:?}");
    assert!(log_count(&reg, "GET /v2/app/blobs/uploads/u1") >= 1, "no status asked: {log:?}");
    let ranges = patch_ranges(&reg);
    assert!(
        ranges.iter().any(|(a, _)| a % CHUNK != 0),
        "no resume from a partial chunk: {ranges:?}"
    );
    // Less than one extra chunk went over the wire.
    let size = f.blob.len() as u64;
    let total = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(total < size + CHUNK, "sent {total} bytes for a {size} byte blob");
    // The store was opened again at the resume offset, not read from the start.
    let resumed_at = ranges.iter().find(|(a, _)| a % CHUNK != 0).unwrap().0;
    let opens = f.store.opens.lock().unwrap().clone();
    assert_eq!(opens[0], (f.digest.clone(), 0));
    assert!(opens[1..].iter().all(|(d, at)| *d == f.digest && *at > 0), "{opens:?}");
    assert!(opens.contains(&(f.digest.clone(), resumed_at)), "{opens:?}");
}

#[tokio::test]
async fn too_many_requests_waits_for_an_http_date_retry_after() {
    let faults = Faults { patch_too_many: 1, retry_after_date: 2, ..Default::default() };
    let (addr, reg) = start(faults).await;
    let f = fixture();
    let began = Instant::now();
    push(&client(Duration::from_secs(60)), &addr, &f).await.unwrap();
    // The date is two seconds ahead, to the second: at least one second
    // waited, where the 10 ms backoff alone would not.
    assert!(began.elapsed() >= Duration::from_secs(1), "{:?}", began.elapsed());
    assert_stored(&reg, &f);
    assert_eq!(log_count(&reg, "POST /v2/app/blobs/uploads/"), 2);

    // A date an hour away is cut to the client's cap.
    let faults = Faults { patch_too_many: 1, retry_after_date: 3600, ..Default::default() };
    let (addr, reg) = start(faults).await;
    let began = Instant::now();
    push(&client(Duration::from_millis(300)), &addr, &f).await.unwrap();
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(30), "{took:?}");
    assert_stored(&reg, &f);
}

#[tokio::test]
async fn a_lost_upload_restarts_the_blob_once() {
    let faults = Faults { lose_upload_after: Some(2), ..Default::default() };
    let (addr, reg) = start(faults).await;
    let f = fixture();
    push(&client(Duration::from_secs(60)), &addr, &f).await.unwrap();
    assert_stored(&reg, &f);
    let log = reg.lock().unwrap().log.clone();
    // Layer, its restart, config.
    assert_eq!(log_count(&reg, "POST /v2/app/blobs/uploads/"), 3, "{log:?}");
    assert!(log.iter().any(|l| l.starts_with("PATCH /v2/app/blobs/uploads/u2 0-")), "{log:?}");
}

#[tokio::test]
async fn a_registry_that_refuses_chunks_gets_one_patch() {
    let (addr, reg) = start(Faults { refuse_chunks: true, ..Default::default() }).await;
    let f = fixture();
    push(&client(Duration::from_secs(60)), &addr, &f).await.unwrap();
    assert_stored(&reg, &f);
    let log = reg.lock().unwrap().log.clone();
    let patches: Vec<&String> = log.iter().filter(|l| l.starts_with("PATCH")).collect();
    assert_eq!(patches.len(), 2, "{log:?}");
    assert!(patches[0].ends_with(&format!(" 0-{}", CHUNK - 1)), "{log:?}");
    assert_eq!(*patches[1], "PATCH /v2/app/blobs/uploads/u2");
}

#[tokio::test]
async fn a_registry_that_reports_no_range_gets_the_rest_in_one_patch() {
    let (addr, reg) = start(Faults { no_range_header: true, ..Default::default() }).await;
    let f = fixture();
    push(&client(Duration::from_secs(60)), &addr, &f).await.unwrap();
    assert_stored(&reg, &f);
    let log = reg.lock().unwrap().log.clone();
    let patches: Vec<&String> = log.iter().filter(|l| l.starts_with("PATCH")).collect();
    assert_eq!(patches.len(), 2, "{log:?}");
    assert!(!patches[1].contains('-'), "{log:?}");
}

#[tokio::test]
async fn a_registry_that_always_fails_gives_up_with_its_error() {
    let faults = Faults { patch_too_many: 100, retry_after_date: 0, ..Default::default() };
    let (addr, reg) = start(faults).await;
    let f = fixture();
    let err = push(&client(Duration::from_secs(60)), &addr, &f).await.unwrap_err();
    assert_eq!(err.to_string(), "toomanyrequests: slow down");
    // The first try and four retries, each resumed from the registry's status.
    assert_eq!(log_count(&reg, "PATCH"), 5);
    assert_eq!(log_count(&reg, "GET /v2/app/blobs/uploads/u1"), 4);
    assert!(reg.lock().unwrap().manifests.is_empty());
}
