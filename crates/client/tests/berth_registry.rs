//! Push and pull round trips against berth's own registry, in process on a
//! loopback port.

mod support;

use std::sync::Arc;
use std::time::Duration;

use berth_client::credentials::Anonymous;
use berth_client::{Client, ClientOptions, NoProgress, Progress, PullOptions, PushOptions};
use berth_oci::{Descriptor, Image, Layer, media_type};
use berth_reference::{Digest, Reference, Repository};
use support::DirStore;

async fn start_registry() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        berth_registry::open_local(dir.path(), berth_registry::Limits::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = berth_registry::server::app(registry, None);
    tokio::spawn(berth_registry::server::serve(listener, app, std::future::pending()));
    (addr, dir)
}

/// Records docker-style status lines.
#[derive(Default)]
struct Lines(std::sync::Mutex<Vec<String>>);

impl Progress for Lines {
    fn layer(&self, id: &str, event: berth_client::LayerEvent<'_>) {
        if let berth_client::LayerEvent::Done(s) = event {
            self.0.lock().unwrap().push(format!("{id}: {s}"));
        }
    }
}

#[tokio::test]
async fn push_pull_and_mount_against_berth_registry() {
    let (addr, _dir) = start_registry().await;
    let store_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::new(store_dir.path().join("s")));
    let client = Client::new(ClientOptions {
        credentials: Arc::new(Anonymous),
        backoff: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap();

    // An uncompressed image (as `load` leaves one): compressed for the push.
    let raw: Vec<Vec<u8>> = vec![support::data(21, 6 << 20), support::data(22, 40_000)];
    let diff_ids: Vec<Digest> = raw.iter().map(|r| store.put(r)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let image = Image {
        manifest: None,
        config: config.clone(),
        layers: raw
            .iter()
            .zip(&diff_ids)
            .map(|(r, d)| Layer {
                diff_id: d.clone(),
                uncompressed_size: Some(r.len() as u64),
                blobs: vec![Descriptor::new(media_type::OCI_LAYER, d.clone(), r.len() as u64)],
            })
            .collect(),
        tags: vec![],
    };
    let target = Reference::parse(&format!("{addr}/team/app:1")).unwrap();
    let opts = PushOptions { monolithic_limit: 1 << 20, ..Default::default() };
    let lines = Arc::new(Lines::default());
    let pushed = client.push(&target, &image, store.clone(), &opts, lines.clone()).await.unwrap();
    let pushed_lines = lines.0.lock().unwrap().clone();
    assert_eq!(
        pushed_lines.iter().filter(|l| l.ends_with(": Pushed")).count(),
        2,
        "{pushed_lines:?}"
    );

    // Pull it back: same config, same diff IDs, same manifest digest.
    let pull_dir = tempfile::tempdir().unwrap();
    let fresh = Arc::new(DirStore::new(pull_dir.path().join("s")));
    let pulled = client
        .pull(&target, fresh.clone(), &PullOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(pulled.image.config, config);
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    assert_eq!(
        pulled.image.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
        diff_ids.iter().collect::<Vec<_>>()
    );
    // Pushed on from the fresh store, the pulled image keeps its digest.
    let onward = Reference::parse(&format!("{addr}/team/copy:1")).unwrap();
    let copied = client
        .push(&onward, &pulled.image, fresh.clone(), &opts, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(copied.kept_manifest);
    assert_eq!(copied.manifest.bytes, pulled.image.manifest.as_ref().unwrap().bytes);
    assert_eq!(copied.manifest_digest, pushed.manifest_digest);

    // Another repository of the same registry: every layer is mounted.
    let recorded = store.layer_blobs.lock().unwrap().clone();
    assert_eq!(recorded.len(), 2, "each layer compressed once");
    let team_app = Repository::parse(&format!("{addr}/team/app")).unwrap();
    for d in &diff_ids {
        store.sources.lock().unwrap().insert(d.clone(), vec![team_app.clone()]);
    }
    let mounted_image = Image {
        manifest: None,
        config: config.clone(),
        layers: diff_ids
            .iter()
            .zip(&raw)
            .map(|(d, r)| Layer {
                diff_id: d.clone(),
                uncompressed_size: Some(r.len() as u64),
                blobs: recorded.iter().filter(|(id, _)| id == d).map(|(_, b)| b.clone()).collect(),
            })
            .collect(),
        tags: vec![],
    };
    let other = Reference::parse(&format!("{addr}/other/app:2")).unwrap();
    let lines = Arc::new(Lines::default());
    let again =
        client.push(&other, &mounted_image, store.clone(), &opts, lines.clone()).await.unwrap();
    let mount_lines = lines.0.lock().unwrap().clone();
    assert!(mount_lines.iter().all(|l| l.ends_with(": Mounted from team/app")), "{mount_lines:?}");
    assert_eq!(again.manifest_digest, pushed.manifest_digest);

    // A missing tag: the registry's own error.
    let missing = Reference::parse(&format!("{addr}/team/app:nope")).unwrap();
    let err = client
        .pull(&missing, fresh, &PullOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("manifest unknown"), "{err}");
}

/// Counts retries.
#[derive(Default)]
struct Retries(std::sync::atomic::AtomicU32);

impl Progress for Retries {
    fn layer(&self, _id: &str, event: berth_client::LayerEvent<'_>) {
        if let berth_client::LayerEvent::Retrying { .. } = event {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn chunked_push_resumes_against_berth_registry() {
    let (upstream, _dir) = start_registry().await;
    const CHUNK: u64 = 512 << 10;
    // The connection drops in the middle of the third chunk.
    let (addr, sent) = support::cutting_proxy(upstream, 2 * CHUNK + CHUNK / 3).await;
    let store_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::new(store_dir.path().join("s")));
    let img = support::make_image(&[5 << 20]);
    let (raw, gz) = img.layers[0].clone();
    let blob = store.put(&gz);
    assert!(gz.len() as u64 > 4 * CHUNK, "several chunks");
    let image = Image {
        manifest: None,
        config: img.config.clone(),
        layers: vec![Layer {
            diff_id: Digest::sha256_of(&raw),
            uncompressed_size: Some(raw.len() as u64),
            blobs: vec![Descriptor::new(media_type::DOCKER_LAYER_GZIP, blob, gz.len() as u64)],
        }],
        tags: vec![],
    };
    let client = Client::new(ClientOptions {
        credentials: Arc::new(Anonymous),
        backoff: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap();
    let target = Reference::parse(&format!("{addr}/big/app:1")).unwrap();
    let opts = PushOptions { monolithic_limit: 64 << 10, chunk_size: CHUNK, ..Default::default() };
    let retries = Arc::new(Retries::default());
    let pushed = client.push(&target, &image, store.clone(), &opts, retries.clone()).await.unwrap();
    // At least the cut chunk was retried (a second retry may follow if the
    // status raced the server's reading of the cut chunk).
    assert!(retries.0.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // Resumed, not restarted: less than a chunk more than the blob went up.
    let total = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(total < gz.len() as u64 + CHUNK, "sent {total} for {} bytes", gz.len());

    // The registry verified the digest; pulling back gives the same bytes.
    let pull_dir = tempfile::tempdir().unwrap();
    let fresh = Arc::new(DirStore::new(pull_dir.path().join("s")));
    let pulled = client
        .pull(&target, fresh.clone(), &PullOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    let mut back = Vec::new();
    std::io::Read::read_to_end(
        &mut berth_oci::BlobSource::open_blob(&*fresh, &pulled.image.layers[0].blobs[0].digest)
            .unwrap(),
        &mut back,
    )
    .unwrap();
    assert_eq!(back, gz);
}

#[tokio::test]
async fn a_multi_platform_image_is_pulled_and_pushed_whole() {
    let (addr, _dir) = start_registry().await;
    let store_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::new(store_dir.path().join("s")));
    let client = Client::new(ClientOptions {
        credentials: Arc::new(Anonymous),
        backoff: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap();
    let opts = PushOptions::default();
    // Two single-platform images, pushed by digest into `multi`.
    let mut children = Vec::new();
    for (seed, arch) in [(41, "amd64"), (42, "arm64")] {
        let raw = support::data(seed, 50_000);
        let d = store.put(&raw);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [d]},
        }))
        .unwrap();
        let mut image = Image {
            manifest: None,
            config,
            layers: vec![Layer {
                diff_id: d.clone(),
                uncompressed_size: Some(raw.len() as u64),
                blobs: vec![Descriptor::new(media_type::OCI_LAYER, d.clone(), raw.len() as u64)],
            }],
            tags: vec![],
        };
        let staging = Reference::parse(&format!("{addr}/multi:{arch}")).unwrap();
        let pushed = client
            .push(&staging, &image, store.clone(), &opts, Arc::new(NoProgress))
            .await
            .unwrap();
        image.manifest = Some(pushed.manifest);
        // The pushed manifest names the gzip made for the push: held now too.
        let gz = store.layer_blobs.lock().unwrap().last().unwrap().1.clone();
        image.layers[0].blobs.push(gz);
        assert!(image.kept_manifest().is_some());
        children.push((arch, image));
    }
    // An index in unusual spacing: only its exact bytes carry its digest.
    let entries: Vec<String> = children
        .iter()
        .map(|(arch, i)| {
            let m = i.manifest.as_ref().unwrap();
            format!(
                "{{\"mediaType\": \"{}\", \"digest\": \"{}\", \"size\": {}, \"platform\": {{\"architecture\": \"{arch}\", \"os\": \"linux\"}}}}",
                m.media_type,
                m.digest,
                m.bytes.len()
            )
        })
        .collect();
    let index_bytes = format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{}\",\n   \"manifests\": [ {} ]\n}}\n",
        media_type::OCI_INDEX,
        entries.join(",\n      ")
    );
    let index = berth_oci::RawManifest::new(media_type::OCI_INDEX, index_bytes.into_bytes());
    let images: Vec<Image> = children.iter().map(|(_, i)| i.clone()).collect();
    let target = Reference::parse(&format!("{addr}/multi:1")).unwrap();
    let pushed = client
        .push_index(&target, &index, &images, store.clone(), &opts, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(pushed.manifest_digest, index.digest);

    // All of it comes back, the index byte for byte.
    let pull_dir = tempfile::tempdir().unwrap();
    let fresh = Arc::new(DirStore::new(pull_dir.path().join("s")));
    let all = client
        .pull_all(&target, fresh.clone(), &PullOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(all.index.as_ref().unwrap().bytes, index.bytes);
    assert_eq!(all.images.len(), 2);
    for (got, want) in all.images.iter().zip(&images) {
        assert_eq!(got.image.config, want.config);
        assert_eq!(got.image.manifest, want.manifest);
        assert_eq!(got.manifest_digest, index.digest);
    }
    // One platform when asked for one.
    let arm = PullOptions {
        platform: Some(berth_oci::Platform::parse("linux/arm64").unwrap()),
        ..Default::default()
    };
    let one = client.pull(&target, fresh.clone(), &arm, Arc::new(NoProgress)).await.unwrap();
    assert_eq!(one.image.config, images[1].config);
    assert_eq!(one.index.as_ref().unwrap().digest, index.digest);

    // Pushed on whole from the fresh store: the same index digest elsewhere.
    let pulled: Vec<Image> = all.images.into_iter().map(|p| p.image).collect();
    let onward = Reference::parse(&format!("{addr}/mirror/multi:1")).unwrap();
    let copied = client
        .push_index(
            &onward,
            all.index.as_ref().unwrap(),
            &pulled,
            fresh,
            &opts,
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    assert_eq!(copied.manifest_digest, index.digest);
}
