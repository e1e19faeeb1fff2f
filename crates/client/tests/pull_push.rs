//! Pull and push against a fault-injecting registry on loopback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use berth_client::credentials::{Anonymous, Credential, CredentialSource, Fixed};
use berth_client::{Client, ClientError, ClientOptions, NoProgress, PullOptions, PushOptions};
use berth_oci::{BlobSink, BlobSource, Descriptor, Image, Layer, media_type};
use berth_reference::{Digest, Reference, Repository};
use support::{DirStore, Faults, make_image, start};

fn client(creds: Arc<dyn CredentialSource>) -> Client {
    Client::new(ClientOptions {
        credentials: creds,
        retries: 3,
        backoff: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap()
}

fn store() -> (tempfile::TempDir, Arc<DirStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(DirStore::new(dir.path().join("store")));
    (dir, s)
}

async fn pull(
    c: &Client,
    addr: &str,
    name: &str,
    s: &Arc<DirStore>,
) -> Result<berth_client::PulledImage, ClientError> {
    let r = Reference::parse_with_default_tag(&format!("{addr}/{name}")).unwrap();
    c.pull(&r, s.clone(), &PullOptions::default(), Arc::new(NoProgress)).await
}

async fn serve_image(faults: Faults) -> (String, support::Shared, support::TestImage) {
    let (addr, reg) = start(faults).await;
    let img = make_image(&[300_000, 200_000, 50_000]);
    reg.lock().unwrap().add_image("app", "latest", &img);
    (addr, reg, img)
}

#[tokio::test]
async fn pull_verifies_and_returns_the_commit_record() {
    let (addr, _reg, img) = serve_image(Faults::default()).await;
    let (_d, s) = store();
    let c = client(Arc::new(Anonymous));
    let p = pull(&c, &addr, "app", &s).await.unwrap();
    assert_eq!(p.image.config, img.config);
    assert_eq!(p.manifest_digest, img.manifest_digest);
    assert_eq!(p.repo_digest.to_string(), format!("{addr}/app@{}", img.manifest_digest));
    let kept = p.image.manifest.as_ref().expect("the manifest is kept");
    assert_eq!(kept.digest, img.manifest_digest);
    assert_eq!(Digest::sha256_of(&kept.bytes), img.manifest_digest);
    assert!(p.image.kept_manifest().is_some());
    assert!(p.downloaded_any);
    assert_eq!(p.image.layers.len(), 3);
    for (i, l) in p.image.layers.iter().enumerate() {
        assert_eq!(l.diff_id, img.diff_id(i));
        assert_eq!(l.blobs.len(), 1);
        assert_eq!(l.blobs[0].digest, img.layer_digest(i));
        assert_eq!(l.uncompressed_size, Some(img.layers[i].0.len() as u64));
        assert!(s.has_blob(&l.blobs[0].digest));
    }
    assert_eq!(s.blob_count(), 3);
}

#[tokio::test]
async fn layers_the_store_has_are_not_downloaded() {
    let (addr, reg, img) = serve_image(Faults::default()).await;
    let (_d, s) = store();
    s.put(&img.layers[0].1);
    s.layers.lock().unwrap().insert(
        img.layer_digest(0),
        berth_client::KnownLayer {
            diff_id: img.diff_id(0),
            uncompressed_size: Some(img.layers[0].0.len() as u64),
        },
    );
    let p = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap();
    assert!(p.downloaded_any);
    assert_eq!(p.image.layers[0].uncompressed_size, Some(img.layers[0].0.len() as u64));
    let log = reg.lock().unwrap().log.clone();
    assert!(!log.iter().any(|l| l.contains(img.layer_digest(0).as_str())), "{log:?}");
    assert!(log.iter().any(|l| l.contains(img.layer_digest(1).as_str())), "{log:?}");
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_range() {
    let (addr, reg, img) = serve_image(Faults { drop_mid_blob: true, ..Default::default() }).await;
    let (_d, s) = store();
    let p = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap();
    assert_eq!(p.image.layers[0].diff_id, img.diff_id(0));
    let log = reg.lock().unwrap().log.clone();
    let half = img.layers[0].1.len() / 2;
    let resumed = format!("GET /v2/app/blobs/{} bytes={half}-", img.layer_digest(0));
    assert!(log.contains(&resumed), "no resume request {resumed:?} in {log:?}");
}

#[tokio::test]
async fn too_many_requests_is_retried_after_the_delay() {
    let (addr, reg, _img) =
        serve_image(Faults { too_many_requests: 1, ..Default::default() }).await;
    let (_d, s) = store();
    let started = std::time::Instant::now();
    pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After: 1 was not honoured");
    let manifest_gets = reg
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|l| l.starts_with("GET /v2/app/manifests/latest"))
        .count();
    assert_eq!(manifest_gets, 2);
}

#[tokio::test]
async fn a_corrupted_byte_fails_and_nothing_is_kept() {
    let (addr, _reg, img) = serve_image(Faults { corrupt_byte: true, ..Default::default() }).await;
    let (_d, s) = store();
    let err = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::DigestMismatch { expected, .. } if *expected == img.layer_digest(0)),
        "{err}"
    );
    assert!(!s.has_blob(&img.layer_digest(0)));
    // Only intact blobs are kept, never the corrupted one under any name.
    let intact: Vec<_> = (0..3).map(|i| img.layer_digest(i)).collect();
    for entry in std::fs::read_dir(s.dir.join("blobs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(intact.iter().any(|d| d.hex() == name), "unexpected blob {name}");
    }
}

#[tokio::test]
async fn a_truncated_body_fails_after_retries() {
    let (addr, reg, img) = serve_image(Faults { truncate: true, ..Default::default() }).await;
    let (_d, s) = store();
    let err = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap_err();
    assert!(matches!(err, ClientError::Network { .. } | ClientError::Truncated { .. }), "{err}");
    assert!(!s.has_blob(&img.layer_digest(0)));
    let gets =
        reg.lock().unwrap().log.iter().filter(|l| l.contains(img.layer_digest(0).as_str())).count();
    assert!(gets > 1, "the truncated blob was not retried");
}

#[tokio::test]
async fn a_lying_media_type_is_refused() {
    let (addr, _reg, _img) =
        serve_image(Faults { lying_media_type: true, ..Default::default() }).await;
    let (_d, s) = store();
    let err = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap_err();
    assert!(err.to_string().contains("does not match its content"), "{err}");
    assert_eq!(s.blob_count(), 0);
}

#[tokio::test]
async fn a_redirect_loop_is_an_error() {
    let (addr, _reg, _img) =
        serve_image(Faults { redirect_loop: true, ..Default::default() }).await;
    let (_d, s) = store();
    let err = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap_err();
    assert!(err.to_string().contains("redirect loop"), "{err}");
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_declared_size() {
    let (addr, _reg, img) = serve_image(Faults { endless_body: true, ..Default::default() }).await;
    let (_d, s) = store();
    let err = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap_err();
    assert!(matches!(&err, ClientError::TooLarge { .. }), "{err}");
    assert!(!s.has_blob(&img.layer_digest(0)));
}

#[tokio::test]
async fn a_malformed_challenge_is_a_clear_error() {
    let (addr, _reg, _img) =
        serve_image(Faults { malformed_challenge: true, ..Default::default() }).await;
    let (_d, s) = store();
    let err = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap_err();
    assert!(err.to_string().contains("malformed WWW-Authenticate challenge"), "{err}");
    assert!(err.to_string().contains("realm"), "{err}");
}

#[tokio::test]
async fn basic_auth_with_right_and_wrong_logins() {
    let faults = Faults { basic: Some(("alice".into(), "s3cret".into())), ..Default::default() };
    let (addr, _reg, _img) = serve_image(faults).await;
    let (_d, s) = store();
    let good = Credential::Basic { username: "alice".into(), password: "s3cret".into() };
    let bad = Credential::Basic { username: "alice".into(), password: "nope".into() };
    let alice = client(Arc::new(Fixed(addr.clone(), good.clone())));
    let p = pull(&alice, &addr, "app", &s).await.unwrap();
    // A push starts with concurrent requests that all meet the challenge at once.
    let target = Reference::parse(&format!("{addr}/alice/copy:1")).unwrap();
    let local = p.image.clone();
    let opts = PushOptions::default();
    let fresh = client(Arc::new(Fixed(addr.clone(), good.clone())));
    fresh.push(&target, &local, s.clone(), &opts, Arc::new(NoProgress)).await.unwrap();
    let err = pull(&client(Arc::new(Fixed(addr.clone(), bad.clone()))), &addr, "app", &s)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unauthorized: authentication required");
    let err = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap_err();
    assert_eq!(err.to_string(), "unauthorized: authentication required");
    let c = client(Arc::new(Anonymous));
    assert_eq!(c.login(&addr, &good).await.unwrap(), None);
    assert_eq!(
        c.login(&addr, &bad).await.unwrap_err().to_string(),
        "unauthorized: authentication required"
    );
}

#[tokio::test]
async fn a_denied_name_shows_the_registry_message() {
    let faults = Faults { denied_prefix: Some("secret".into()), ..Default::default() };
    let (addr, _reg, _img) = serve_image(faults).await;
    let (_d, s) = store();
    let err = pull(&client(Arc::new(Anonymous)), &addr, "secret/app", &s).await.unwrap_err();
    assert_eq!(err.to_string(), "denied: requested access to the resource is denied");
    let err = pull(&client(Arc::new(Anonymous)), &addr, "missing", &s).await.unwrap_err();
    assert_eq!(err.to_string(), "manifest unknown: manifest unknown");
}

#[tokio::test]
async fn token_flow_pulls_anonymously_and_pushes_with_the_login() {
    let faults = Faults { token: Some(("bob".into(), "pw".into())), ..Default::default() };
    let (addr, reg, img) = serve_image(faults).await;
    let (_d, s) = store();
    // Anonymous tokens are enough to pull.
    let p = pull(&client(Arc::new(Anonymous)), &addr, "app", &s).await.unwrap();
    let log = reg.lock().unwrap().log.clone();
    assert!(log.iter().any(|l| l.starts_with("GET /token")), "{log:?}");
    // Anonymous push is refused; with the login it works and mounts from `app`.
    let target = Reference::parse(&format!("{addr}/bob/app:v1")).unwrap();
    let local = p.image.clone();
    let app = Repository::parse(&format!("{addr}/app")).unwrap();
    for l in &local.layers {
        s.sources.lock().unwrap().insert(l.diff_id.clone(), vec![app.clone()]);
    }
    let anon = client(Arc::new(Anonymous));
    let err = anon
        .push(&target, &local, s.clone(), &PushOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("unauthorized"), "{err}");
    let login = Credential::Basic { username: "bob".into(), password: "pw".into() };
    let bob = client(Arc::new(Fixed(addr.clone(), login.clone())));
    let pushed = bob
        .push(&target, &local, s.clone(), &PushOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap();
    let log = reg.lock().unwrap().log.clone();
    let mounts = log.iter().filter(|l| l.starts_with("POST /v2/bob/app/blobs/uploads/")).count();
    assert!(mounts >= 3, "layers were not mounted from app: {log:?}");
    let layer_uploads =
        log.iter().filter(|l| l.starts_with("PUT /v2/bob/app/blobs/uploads/")).count();
    assert_eq!(layer_uploads, 1, "only the config should be uploaded: {log:?}");
    for i in 0..3 {
        let key = ("bob/app".to_owned(), img.layer_digest(i).to_string());
        assert!(reg.lock().unwrap().repo_blobs.contains(&key));
    }
    let (_, manifest) =
        reg.lock().unwrap().manifests[&("bob/app".to_owned(), "v1".to_owned())].clone();
    assert_eq!(Digest::sha256_of(&manifest), pushed.manifest_digest);
    assert_eq!(pushed.manifest_size, manifest.len() as u64);
    // Nothing about the image changed, so the manifest went out byte for byte.
    assert!(pushed.kept_manifest);
    assert_eq!(pushed.manifest_digest, img.manifest_digest);
    assert_eq!(manifest, reg.lock().unwrap().manifests[&("app".to_owned(), "latest".to_owned())].1);
    // Wrong password at login.
    let bad = Credential::Basic { username: "bob".into(), password: "x".into() };
    let err = anon.login(&addr, &bad).await.unwrap_err();
    assert_eq!(err.to_string(), "unauthorized: incorrect username or password");
    bob.login(&addr, &login).await.unwrap();
}

#[tokio::test]
async fn push_then_pull_round_trips_and_compresses_once() {
    let (addr, reg) = start(Faults::default()).await;
    let (_d, s) = store();
    // An image stored only uncompressed (as `load` or `import` leave it).
    let raw1 = support::data(11, 9 << 20);
    let raw2 = support::data(12, 30_000);
    let d1 = s.put(&raw1);
    let d2 = s.put(&raw2);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [d1, d2]},
    }))
    .unwrap();
    let layer = |d: &Digest, n: usize| Layer {
        diff_id: d.clone(),
        uncompressed_size: Some(n as u64),
        blobs: vec![Descriptor::new(media_type::OCI_LAYER, d.clone(), n as u64)],
    };
    let local = Image {
        manifest: None,
        config: config.clone(),
        layers: vec![layer(&d1, raw1.len()), layer(&d2, raw2.len())],
        tags: vec![],
    };
    let target = Reference::parse(&format!("{addr}/team/app:1.0")).unwrap();
    let c = client(Arc::new(Anonymous));
    let opts = PushOptions { monolithic_limit: 1 << 20, ..Default::default() };
    let pushed = c.push(&target, &local, s.clone(), &opts, Arc::new(NoProgress)).await.unwrap();
    assert_eq!(pushed.manifest_media_type, media_type::DOCKER_MANIFEST);
    assert!(!pushed.kept_manifest);
    // Both layers were compressed once and recorded for the next push.
    let recorded = s.layer_blobs.lock().unwrap().clone();
    assert_eq!(recorded.len(), 2);
    assert!(
        recorded
            .iter()
            .all(|(_, b)| b.media_type == media_type::DOCKER_LAYER_GZIP && s.has_blob(&b.digest))
    );
    let log = reg.lock().unwrap().log.clone();
    assert!(
        log.iter().any(|l| l.starts_with("PATCH /v2/team/app/blobs/uploads/")),
        "large blob not streamed: {log:?}"
    );
    // A second push finds every blob there.
    let again = c.push(&target, &local, s.clone(), &opts, Arc::new(NoProgress)).await.unwrap();
    assert_eq!(again.manifest_digest, pushed.manifest_digest);
    // Pull it back into a fresh store: same config, same diff IDs.
    let (_d2, s2) = store();
    let p = pull(&c, &addr, "team/app:1.0", &s2).await.unwrap();
    assert_eq!(p.image.config, config);
    assert_eq!(p.image.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(), vec![d1, d2]);
    assert_eq!(p.manifest_digest, pushed.manifest_digest);
    assert_eq!(p.image.manifest.as_ref().unwrap().bytes, pushed.manifest.bytes);
    let first_blob = &p.image.layers[0].blobs[0];
    let mut first = Vec::new();
    std::io::Read::read_to_end(&mut s2.open_blob(&first_blob.digest).unwrap(), &mut first).unwrap();
    assert_eq!(first.len() as u64, first_blob.size);
}

#[tokio::test]
async fn docker_hub_pulls_go_to_a_configured_mirror() {
    let (addr, reg) = start(Faults::default()).await;
    let img = make_image(&[20_000]);
    reg.lock().unwrap().add_image("library/app", "latest", &img);
    let mut config = berth_client::hosts::ClientConfig::default();
    config.mirrors.insert("docker.io".into(), vec![addr.clone()]);
    let c = Client::new(ClientOptions {
        config,
        backoff: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap();
    let (_d, s) = store();
    let r = Reference::parse("app").unwrap().with_default_tag();
    let p = c.pull(&r, s.clone(), &PullOptions::default(), Arc::new(NoProgress)).await.unwrap();
    assert_eq!(p.repo_digest.to_string(), format!("docker.io/library/app@{}", img.manifest_digest));
    assert!(reg.lock().unwrap().log.iter().any(|l| l == "GET /v2/library/app/manifests/latest"));
}

#[tokio::test]
async fn zstd_and_uncompressed_oci_layers_are_verified() {
    let (addr, reg) = start(Faults::default()).await;
    let raw_z = support::data(31, 150_000);
    let raw_t = support::data(32, 70_000);
    let zst = zstd::encode_all(&raw_z[..], 3).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(&raw_z), Digest::sha256_of(&raw_t)]},
    }))
    .unwrap();
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": Digest::sha256_of(b), "size": b.len()});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
        "config": desc(media_type::OCI_CONFIG, &config),
        "layers": [desc(media_type::OCI_LAYER_ZSTD, &zst), desc(media_type::OCI_LAYER, &raw_t)],
    }))
    .unwrap();
    {
        let mut r = reg.lock().unwrap();
        for b in [&zst, &raw_t, &config] {
            let d = Digest::sha256_of(b).to_string();
            r.blobs.insert(d.clone(), bytes::Bytes::from(b.clone()));
            r.repo_blobs.insert(("oci".into(), d));
        }
        let m = (media_type::OCI_MANIFEST.to_owned(), bytes::Bytes::from(manifest.clone()));
        r.manifests.insert(("oci".into(), "latest".into()), m);
    }
    let (_d, s) = store();
    let p = pull(&client(Arc::new(Anonymous)), &addr, "oci", &s).await.unwrap();
    assert_eq!(p.image.layers[0].diff_id, Digest::sha256_of(&raw_z));
    assert_eq!(p.image.layers[0].uncompressed_size, Some(raw_z.len() as u64));
    assert_eq!(p.image.layers[0].blobs[0].media_type, media_type::OCI_LAYER_ZSTD);
    assert_eq!(p.image.layers[1].diff_id, p.image.layers[1].blobs[0].digest);
    assert_eq!(p.manifest_digest, Digest::sha256_of(&manifest));
}

#[tokio::test]
async fn a_layer_whose_diff_id_lies_is_refused_and_not_kept() {
    let (addr, reg) = start(Faults::default()).await;
    let img = make_image(&[60_000]);
    let wrong = Digest::sha256_of(b"something else");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [wrong]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type::DOCKER_MANIFEST,
        "config": {"mediaType": media_type::DOCKER_CONFIG, "digest": Digest::sha256_of(&config), "size": config.len()},
        "layers": [{"mediaType": media_type::DOCKER_LAYER_GZIP, "digest": img.layer_digest(0), "size": img.layers[0].1.len()}],
    }))
    .unwrap();
    {
        let mut r = reg.lock().unwrap();
        for b in [&img.layers[0].1, &config] {
            let d = Digest::sha256_of(b).to_string();
            r.blobs.insert(d.clone(), bytes::Bytes::from(b.clone()));
            r.repo_blobs.insert(("liar".into(), d));
        }
        let m = (media_type::DOCKER_MANIFEST.to_owned(), bytes::Bytes::from(manifest));
        r.manifests.insert(("liar".into(), "latest".into()), m);
    }
    let (_d, s) = store();
    let err = pull(&client(Arc::new(Anonymous)), &addr, "liar", &s).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::DiffIdMismatch { expected, .. } if *expected == wrong),
        "{err}"
    );
    assert_eq!(s.blob_count(), 0, "a layer that failed verification was kept");
}

#[tokio::test]
async fn a_copy_between_registries_streams_each_layer_once_and_keeps_the_manifest() {
    // The source drops the connection half-way through the first layer:
    // the download resumes with Range and the upload never notices.
    let (src, src_reg, img) =
        serve_image(Faults { drop_mid_blob: true, ..Default::default() }).await;
    let (dst, dst_reg) = start(Faults::default()).await;
    let (_d, scratch) = store();
    let c = client(Arc::new(Anonymous));
    let from = Reference::parse(&format!("{src}/app:latest")).unwrap();
    let to = Reference::parse(&format!("{dst}/copy:1")).unwrap();
    let copied = c
        .copy(
            &from,
            &to,
            false,
            scratch.clone(),
            &PullOptions::default(),
            &PushOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    assert_eq!(copied.pushed.manifest_digest, img.manifest_digest);
    assert_eq!(copied.images, 1);
    let (_, manifest) =
        dst_reg.lock().unwrap().manifests[&("copy".to_owned(), "1".to_owned())].clone();
    assert_eq!(manifest, img.manifest);
    let dst_log = dst_reg.lock().unwrap().log.clone();
    // One upload session per blob (three layers, the config): every layer
    // went up in the stream, none had to be sent again from a file.
    let posts = dst_log.iter().filter(|l| l.starts_with("POST /v2/copy/blobs/uploads/")).count();
    assert_eq!(posts, 4, "{dst_log:?}");
    assert!(!dst_log.iter().any(|l| l.starts_with("PATCH")), "{dst_log:?}");
    for i in 0..3 {
        let key = ("copy".to_owned(), img.layer_digest(i).to_string());
        assert!(dst_reg.lock().unwrap().repo_blobs.contains(&key));
    }
    assert_eq!(scratch.blob_count(), 0, "streamed, nothing was kept on the way");
    let src_log = src_reg.lock().unwrap().log.clone();
    let resumed = format!("GET /v2/app/blobs/{} bytes=", img.layer_digest(0));
    assert!(src_log.iter().any(|l| l.starts_with(&resumed)), "{src_log:?}");

    // Again: the destination has every blob; nothing is fetched.
    let before = src_reg.lock().unwrap().log.len();
    let to2 = Reference::parse(&format!("{dst}/copy:2")).unwrap();
    let (_d2, scratch2) = store();
    c.copy(
        &from,
        &to2,
        false,
        scratch2,
        &PullOptions::default(),
        &PushOptions::default(),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let src_log = src_reg.lock().unwrap().log.clone();
    assert!(
        !src_log[before..].iter().any(|l| l.starts_with("GET /v2/app/blobs/")),
        "{:?}",
        &src_log[before..]
    );
}

#[tokio::test]
async fn a_streamed_upload_that_fails_is_sent_again_from_a_file() {
    let (src, _src_reg, img) = serve_image(Faults::default()).await;
    // The destination fails the first data-carrying PUT (the first layer's
    // stream): that layer goes again through the scratch file.
    let (dst, dst_reg) = start(Faults { fail_data_puts: 1, ..Default::default() }).await;
    let (_d, scratch) = store();
    let c = client(Arc::new(Anonymous));
    let from = Reference::parse(&format!("{src}/app:latest")).unwrap();
    let to = Reference::parse(&format!("{dst}/copy:1")).unwrap();
    let copied = c
        .copy(
            &from,
            &to,
            false,
            scratch.clone(),
            &PullOptions { concurrency: 1, ..Default::default() },
            &PushOptions::default(),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    assert_eq!(copied.pushed.manifest_digest, img.manifest_digest);
    for i in 0..3 {
        let key = ("copy".to_owned(), img.layer_digest(i).to_string());
        assert!(dst_reg.lock().unwrap().repo_blobs.contains(&key), "layer {i} missing");
    }
    // Exactly one layer needed the file.
    assert_eq!(scratch.blob_count(), 1);
    let log = dst_reg.lock().unwrap().log.clone();
    let posts = log.iter().filter(|l| l.starts_with("POST /v2/copy/blobs/uploads/")).count();
    assert_eq!(posts, 5, "three layers, one again, the config: {log:?}");
}
