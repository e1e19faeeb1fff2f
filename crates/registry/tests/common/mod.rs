//! A registry on a loopback port and helpers to talk to it, for the
//! conformance tests. `Backend` names the storage + metadata pair under
//! test; every backend runs the same tests.

#![allow(dead_code)]

use std::sync::Arc;

use berth_reference::{Algorithm, Digest};
use berth_registry::{Limits, Registry, server};
use reqwest::{Client, Response, StatusCode};
use tokio::net::TcpListener;

#[path = "../engines/mod.rs"]
pub mod engines;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// Filesystem blobs, SQLite metadata: the embedded default.
    FsSqlite,
    /// Blobs in S3 on a real SeaweedFS, metadata in a real PostgreSQL 15
    /// (a fresh database per registry), as replicas run.
    S3Postgres,
}

/// The embedded default only (for tests that look at files under the root).
pub const BACKENDS: &[Backend] = &[Backend::FsSqlite];

/// Every backend whose engines are installed. SeaweedFS and PostgreSQL are
/// started once per test binary, on first use, and stopped when it exits.
pub fn all_backends() -> Vec<Backend> {
    let mut out = vec![Backend::FsSqlite];
    if shared_engines().lock().unwrap_or_else(|e| e.into_inner()).is_some() {
        out.push(Backend::S3Postgres);
    }
    out
}

type Engines = (engines::SeaweedFs, engines::Postgres);

fn shared_engines() -> &'static std::sync::Mutex<Option<Engines>> {
    static ENGINES: std::sync::OnceLock<std::sync::Mutex<Option<Engines>>> =
        std::sync::OnceLock::new();
    ENGINES.get_or_init(|| {
        // Started on a plain thread: the engines' own start-up runs a runtime.
        let started = std::thread::spawn(|| {
            let s3 = engines::SeaweedFs::start()?;
            let pg = engines::Postgres::start()?;
            Some((s3, pg))
        })
        .join()
        .expect("start engines");
        if started.is_some() {
            // SAFETY: registers a plain function with no arguments.
            unsafe { libc::atexit(stop_engines) };
        }
        std::sync::Mutex::new(started)
    })
}

extern "C" fn stop_engines() {
    let engines = shared_engines().lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(engines);
}

static NEXT_DATABASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub struct TestRegistry {
    pub base: String,
    pub client: Client,
    pub addr: std::net::SocketAddr,
    /// The registry's own metadata store, whichever the backend.
    pub meta: Arc<dyn berth_registry::metadata::MetadataStore>,
    /// Its blob store.
    pub blobs: Arc<dyn berth_registry::storage::BlobStore>,
    /// Object storage's ledger, on S3 (the metadata store again).
    pub ledger: Option<Arc<dyn berth_registry::storage::ObjectLedger>>,
    /// Where the S3 + PostgreSQL engines are, for another replica.
    engines_at: Option<(berth_registry::storage::S3Settings, String)>,
    limits: Limits,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Opened = (
    Registry,
    Option<Arc<dyn berth_registry::storage::ObjectLedger>>,
    Option<(berth_registry::storage::S3Settings, String)>,
);

async fn open(backend: Backend, dir: &std::path::Path, limits: Limits) -> Opened {
    match backend {
        Backend::FsSqlite => {
            (berth_registry::open_local(dir, limits).expect("open registry"), None, None)
        }
        Backend::S3Postgres => {
            let (settings, url) = {
                let guard = shared_engines().lock().unwrap_or_else(|e| e.into_inner());
                let (s3, pg) = guard.as_ref().expect("S3Postgres is listed only when running");
                let n = NEXT_DATABASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (s3.settings(), pg.database(&format!("conformance{n}")))
            };
            let (registry, ledger) = replica(&settings, &url, limits).await;
            (registry, Some(ledger), Some((settings, url)))
        }
    }
}

/// A replica on the S3 bucket and PostgreSQL database given.
async fn replica(
    settings: &berth_registry::storage::S3Settings,
    url: &str,
    limits: Limits,
) -> (Registry, Arc<dyn berth_registry::storage::ObjectLedger>) {
    let meta =
        Arc::new(berth_registry::metadata::PostgresMetadata::connect(url).await.expect("connect"));
    let blobs =
        berth_registry::storage::S3BlobStore::new(settings, meta.clone()).expect("S3 store");
    let registry =
        Registry::new(Arc::new(blobs), meta.clone(), limits).with_shared_metadata().await;
    (registry, meta)
}

pub async fn start(backend: Backend) -> TestRegistry {
    start_with(backend, Limits::default()).await
}

pub async fn start_with(backend: Backend, limits: Limits) -> TestRegistry {
    start_full(backend, limits, None).await
}

pub const SERVICE: &str = "test-registry";

/// A registry with accounts: `admin` (administrator), `alice`, `bob`, all
/// with password `<name>-pw`, and organisation `acme` with member `bob`.
pub async fn start_auth(backend: Backend) -> TestRegistry {
    start_full(backend, Limits::default(), Some(())).await
}

async fn start_full(backend: Backend, limits: Limits, auth: Option<()>) -> TestRegistry {
    let dir = tempfile::tempdir().expect("tempdir");
    start_in(backend, dir, limits, auth.is_some()).await
}

/// A registry on the root `dir` (which may hold data already), with or
/// without accounts (created if missing, as in [`start_auth`]).
pub async fn start_in(
    backend: Backend,
    dir: tempfile::TempDir,
    limits: Limits,
    auth: bool,
) -> TestRegistry {
    start_web(backend, dir, limits, auth, berth_registry::web::WebConfig::default()).await
}

/// [`start_in`] with the website's settings.
pub async fn start_web(
    backend: Backend,
    dir: tempfile::TempDir,
    limits: Limits,
    auth: bool,
    web: berth_registry::web::WebConfig,
) -> TestRegistry {
    let auth = auth.then_some(());
    let (registry, ledger, engines_at) = open(backend, dir.path(), limits.clone()).await;
    let auth = match auth {
        None => None,
        Some(()) => {
            let meta = registry.metadata().clone();
            for (name, admin) in [("admin", true), ("alice", false), ("bob", false)] {
                let hash = berth_registry::auth::password::hash(&format!("{name}-pw"));
                let user = berth_registry::metadata::UserRecord {
                    name: name.into(),
                    password_hash: hash,
                    admin,
                };
                if meta.user(name).await.unwrap().is_none() {
                    assert!(meta.create_user(&user).await.unwrap());
                }
            }
            if meta.org("acme").await.unwrap().is_none() {
                assert!(meta.create_org("acme").await.unwrap());
                assert!(meta.add_org_member("acme", "bob").await.unwrap());
            }
            Some(berth_registry::auth::Auth::open(dir.path(), meta, SERVICE).unwrap())
        }
    };
    let meta = registry.metadata().clone();
    let blobs = registry.blob_store().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = server::build(registry, server::Options { auth, web, ..Default::default() });
    tokio::spawn(server::serve(listener, app, async {
        let _ = rx.await;
    }));
    TestRegistry {
        base: format!("http://{addr}"),
        client: Client::new(),
        addr,
        meta,
        blobs,
        ledger,
        engines_at,
        limits,
        _dir: dir,
        stop: Some(tx),
    }
}

impl TestRegistry {
    /// Stops the server and hands back its root, to start another on it.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self._dir, dir)
    }

    /// Another [`Registry`] on the server's storage and metadata, to call
    /// directly (as `berth registry gc` does beside a running server).
    pub fn beside(&self) -> Registry {
        Registry::new(self.blobs.clone(), self.meta.clone(), self.limits.clone())
    }

    pub fn root(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// A [`Registry`] on the same storage and metadata objects as the
    /// server's (as `berth registry gc` opens beside a running server).
    pub fn collector(&self) -> Registry {
        Registry::new(self.blobs.clone(), self.meta.clone(), Limits::default())
    }

    /// Another replica: on SQLite a second open of the root, on PostgreSQL
    /// a second connection pool (and S3 client) to the same engines.
    pub async fn replica(&self) -> Registry {
        match &self.engines_at {
            None => berth_registry::open_local(self.root(), Limits::default()).expect("open"),
            Some((settings, url)) => replica(settings, url, Limits::default()).await.0,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Resolves a `Location` header (relative or absolute).
    pub fn location(&self, res: &Response) -> String {
        let loc = res.headers()["location"].to_str().unwrap().to_owned();
        if loc.starts_with("http") { loc } else { self.url(&loc) }
    }

    /// Pushes a blob monolithically; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        self.push_blob_with(repo, data, Algorithm::Sha256).await
    }

    pub async fn push_blob_with(&self, repo: &str, data: &[u8], alg: Algorithm) -> Digest {
        let digest = Digest::of(alg, data);
        let res = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "push blob: {}", res.text().await.unwrap());
        digest
    }

    /// Pushes a manifest; returns the response.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.client
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a config and one layer, then an image manifest tagged `tag`;
    /// returns the manifest bytes and digest.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (Vec<u8>, Digest) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer of {seed}");
        let c = self.push_blob(repo, config.as_bytes()).await;
        let l = self.push_blob(repo, layer.as_bytes()).await;
        let manifest = image_manifest(
            OCI_MANIFEST,
            (OCI_CONFIG, &c, config.len()),
            &[(&l, layer.len())],
            None,
        );
        let res = self.put_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes()).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
        let digest = Digest::sha256_of(manifest.as_bytes());
        (manifest.into_bytes(), digest)
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// An image manifest document (`subject`: an optional `(mediaType, digest, size)`).
pub fn image_manifest(
    media_type: &str,
    config: (&str, &Digest, usize),
    layers: &[(&Digest, usize)],
    extra: Option<&str>,
) -> String {
    let layer_type = if media_type == DOCKER_MANIFEST { DOCKER_LAYER } else { OCI_LAYER };
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, n)| format!(r#"{{"mediaType":"{layer_type}","digest":"{d}","size":{n}}}"#))
        .collect();
    let extra = extra.map(|e| format!(",{e}")).unwrap_or_default();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{}]{extra}}}"#,
        config.0,
        config.1,
        config.2,
        layers.join(",")
    )
}

/// An index / manifest list over `(digest, size)` image manifests.
pub fn index(media_type: &str, child_type: &str, children: &[(&Digest, usize)]) -> String {
    let items: Vec<String> = children
        .iter()
        .map(|(d, n)| {
            format!(
                r#"{{"mediaType":"{child_type}","digest":"{d}","size":{n},"platform":{{"architecture":"amd64","os":"linux"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{}]}}"#, items.join(","))
}

/// Asserts an OCI error response: status and the first error's code.
pub async fn assert_error(res: Response, status: StatusCode, code: &str) {
    assert_eq!(res.status(), status, "expected {code}");
    let body: serde_json::Value = res.json().await.expect("error body is JSON");
    assert_eq!(body["errors"][0]["code"], code, "{body}");
    assert!(body["errors"][0]["message"].is_string(), "{body}");
}

pub fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Sends a raw HTTP/1.1 request (for paths an HTTP client would normalise)
/// and returns the status code.
pub async fn raw_status(reg: &TestRegistry, request_line: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(reg.addr).await.unwrap();
    let req = format!("{request_line}\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
