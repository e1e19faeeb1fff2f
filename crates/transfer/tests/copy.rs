//! The copy engine between berth's own registry (in process, on a loopback
//! port), the local store and OCI layouts: digests kept, indexes whole.

use std::sync::Arc;

use berth_client::{Client, ClientOptions, NoProgress, PushOptions};
use berth_oci::{Descriptor, Image, Layer, Platform, RawManifest, media_type};
use berth_reference::Reference;
use berth_store::Store;
use berth_transfer::{CopyOptions, Place, Silent, Transfer, TransferError};

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

fn client() -> Client {
    Client::new(ClientOptions {
        backoff: std::time::Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    transfer: Transfer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    Fixture { transfer: Transfer::new(client(), store), _dir: dir }
}

/// A real one-file tar.
fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// Pushes a two-platform image to `addr/multi:1` through the client, with
/// its index in spacing no serialiser would pick; returns the index.
async fn push_multi_platform(addr: &str, store: &Arc<Store>) -> RawManifest {
    let c = client();
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let tar = layer_tar("arch", arch.as_bytes());
        let (d, n) = store.write_blob(&mut &tar[..]).unwrap();
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
                uncompressed_size: Some(n),
                blobs: vec![Descriptor::new(media_type::OCI_LAYER, d.clone(), n)],
            }],
            tags: vec![],
        };
        // Held as the store holds images (a push records the gzip it makes).
        let new = berth_store::NewImage { image: image.clone(), repo_digests: vec![] };
        store.commit_images(vec![new]).unwrap();
        let by_arch = Reference::parse(&format!("{addr}/multi:{arch}")).unwrap();
        let pushed = c
            .push(&by_arch, &image, store.clone(), &PushOptions::default(), Arc::new(NoProgress))
            .await
            .unwrap();
        // The push gzipped the layer; the manifest names that blob.
        let gz = match pushed.manifest.parse().unwrap() {
            berth_oci::Manifest::Image(m) => m.layers[0].clone(),
            _ => unreachable!(),
        };
        image.layers[0].blobs.push(gz);
        image.manifest = Some(pushed.manifest);
        children.push((arch, image));
    }
    let entries: Vec<String> = children
        .iter()
        .map(|(arch, i)| {
            let m = i.manifest.as_ref().unwrap();
            format!(
                "{{ \"mediaType\": \"{}\", \"digest\": \"{}\", \"size\": {}, \"platform\": {{ \"architecture\": \"{arch}\", \"os\": \"linux\" }} }}",
                m.media_type,
                m.digest,
                m.bytes.len()
            )
        })
        .collect();
    let text = format!(
        "{{\n    \"schemaVersion\": 2,\n    \"mediaType\": \"{}\",\n    \"manifests\": [\n        {}\n    ]\n}}\n",
        media_type::OCI_INDEX,
        entries.join(",\n        ")
    );
    let index = RawManifest::new(media_type::OCI_INDEX, text.into_bytes());
    let images: Vec<Image> = children.into_iter().map(|(_, i)| i).collect();
    let target = Reference::parse(&format!("{addr}/multi:1")).unwrap();
    c.push_index(
        &target,
        &index,
        &images,
        store.clone(),
        &PushOptions::default(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    index
}

fn registry(addr: &str, name: &str) -> Place {
    Place::parse(&format!("docker://{addr}/{name}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_platforms_copy_between_registries_with_the_index_digest() {
    let (addr, _reg) = start_registry().await;
    let f = fixture();
    let index = push_multi_platform(&addr, f.transfer.store()).await;

    let all = CopyOptions { all: true, ..Default::default() };
    let copied = f
        .transfer
        .copy(&registry(&addr, "multi:1"), &registry(&addr, "mirror/multi:1"), &all, &Silent)
        .await
        .unwrap();
    assert_eq!(copied.images, 2);
    let pushed = copied.pushed.unwrap();
    assert_eq!(pushed.manifest_digest, index.digest);
    assert_eq!(pushed.manifest.bytes, index.bytes);
    assert!(!copied.manifest_rewritten);

    // Without --all, one platform (the one asked for), its manifest kept.
    let arm = CopyOptions { platform: Platform::parse("linux/arm64"), ..Default::default() };
    let copied = f
        .transfer
        .copy(&registry(&addr, "multi:1"), &registry(&addr, "arm/only:1"), &arm, &Silent)
        .await
        .unwrap();
    assert_eq!(copied.images, 1);
    let arm_entry = match RawManifest::parse(&index).unwrap() {
        berth_oci::Manifest::Index(i) => i.manifests[1].digest.clone(),
        _ => unreachable!(),
    };
    assert_eq!(copied.pushed.unwrap().manifest_digest, arm_entry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_platforms_elsewhere_is_refused_before_anything_is_written() {
    let (addr, _reg) = start_registry().await;
    let f = fixture();
    push_multi_platform(&addr, f.transfer.store()).await;
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let all = CopyOptions { all: true, ..Default::default() };
    let dst = Place::parse(&format!("oci:{}", layout.display())).unwrap();
    let err = f.transfer.copy(&registry(&addr, "multi:1"), &dst, &all, &Silent).await.unwrap_err();
    assert!(matches!(err, TransferError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("--platform"), "{err}");
    assert!(!layout.exists());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_to_layout_to_store_to_registry_keeps_the_digest() {
    let (addr, _reg) = start_registry().await;
    let f = fixture();
    let index = push_multi_platform(&addr, f.transfer.store()).await;
    let amd = match RawManifest::parse(&index).unwrap() {
        berth_oci::Manifest::Index(i) => i.manifests[0].digest.clone(),
        _ => unreachable!(),
    };
    let out = tempfile::tempdir().unwrap();
    let layout = Place::parse(&format!("oci:{}:v1", out.path().join("l").display())).unwrap();
    let amd64 = CopyOptions { platform: Platform::parse("linux/amd64"), ..Default::default() };
    f.transfer.copy(&registry(&addr, "multi:1"), &layout, &amd64, &Silent).await.unwrap();

    // The layout holds a Docker manifest converted to OCI (as skopeo does):
    // a new digest, which from then on is kept, into the store and out.
    let store_name = Place::Store(Some("local/amd:1".into()));
    let copied =
        f.transfer.copy(&layout, &store_name, &CopyOptions::default(), &Silent).await.unwrap();
    let id = copied.image_id.unwrap();
    let record = f.transfer.store().image(&id).unwrap();
    let layout_digest = record.manifests[0].digest.clone();
    assert_ne!(layout_digest, amd);
    let copied = f
        .transfer
        .copy(&store_name, &registry(&addr, "from-store:1"), &CopyOptions::default(), &Silent)
        .await
        .unwrap();
    assert_eq!(copied.pushed.unwrap().manifest_digest, layout_digest);
    // And straight from the registry into the store: the registry's digest.
    let copied = f
        .transfer
        .copy(&registry(&addr, "multi:1"), &Place::Store(Some("direct:1".into())), &amd64, &Silent)
        .await
        .unwrap();
    let record = f.transfer.store().image(&copied.image_id.unwrap()).unwrap();
    assert!(record.manifests.iter().any(|m| m.digest == amd));
    let repo_digest = copied.repo_digest.unwrap();
    assert_eq!(repo_digest.digest(), Some(&index.digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn between_two_registries_layers_stream_across_and_digests_stay() {
    let (a, _ra) = start_registry().await;
    let (b, _rb) = start_registry().await;
    let f = fixture();
    let index = push_multi_platform(&a, f.transfer.store()).await;
    let all = CopyOptions { all: true, ..Default::default() };
    let copied = f
        .transfer
        .copy(&registry(&a, "multi:1"), &registry(&b, "m:1"), &all, &Silent)
        .await
        .unwrap();
    assert_eq!(copied.images, 2);
    assert_eq!(copied.pushed.as_ref().unwrap().manifest_digest, index.digest);
    // What B serves is A's index, byte for byte, and every child by digest.
    let c = client();
    let back = tempfile::tempdir().unwrap();
    let fresh = Arc::new(Store::open(back.path()).unwrap());
    let pulled = c
        .pull_all(
            &Reference::parse(&format!("{b}/m:1")).unwrap(),
            fresh,
            &Default::default(),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    assert_eq!(pulled.index.unwrap().bytes, index.bytes);
    assert_eq!(pulled.images.len(), 2);
    // Again: B has every blob, so nothing is downloaded or sent.
    let again = f
        .transfer
        .copy(&registry(&a, "multi:1"), &registry(&b, "m:2"), &all, &Silent)
        .await
        .unwrap();
    assert_eq!(again.pushed.unwrap().manifest_digest, index.digest);
}
