//! The registry server killed with SIGKILL in the middle of pushes restarts
//! consistent: every tag names a manifest whose blobs are all there and
//! verify, every push acknowledged before the kill survived, an upload the
//! client was told about resumes, and pushing works again.
//!
//! This drives the real `berth registry serve` process over loopback HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_reference::Digest;
use bytes::Bytes;
use reqwest::{Client, StatusCode};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const PUSHERS: usize = 8;
/// The upload still streaming when the server is killed.
const STREAM_TOTAL: u64 = 64 << 20;
const STREAM_PIECE: usize = 64 << 10;

/// A `berth registry serve` child, killed and reaped however the test ends.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the server on a free loopback port and waits until it answers.
    async fn start(root: &Path, log: PathBuf) -> Server {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let stderr = std::fs::File::options().create(true).append(true).open(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_berth"))
                .arg("--root")
                .arg(root)
                .args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}")])
                .args(["--log-level", "warn"])
                .env_remove("BERTH_REGISTRY_ROOT")
                .env_remove("BERTH_REGISTRY_CONFIG")
                .env_remove("BERTH_REGISTRY_ADDR")
                .env_remove("BERTH_REGISTRY_AUTH")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn berth");
            let mut server =
                Server { child, base: format!("http://127.0.0.1:{port}"), log: log.clone() };
            let client = Client::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if server.child.try_wait().unwrap().is_some() {
                    break; // The port was taken meanwhile: try another.
                }
                let res = client.get(format!("{}/healthz", server.base)).send().await;
                if res.is_ok_and(|r| r.status() == StatusCode::OK) {
                    return server;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            drop(server);
        }
        panic!(
            "the registry did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the registry");
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Deterministic bytes that do not repeat within a blob.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Byte `i` of the streamed upload, so it can be continued from any offset.
fn stream_byte(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

fn stream_bytes(from: u64, to: u64) -> Vec<u8> {
    (from..to).map(stream_byte).collect()
}

fn location(base: &str, res: &reqwest::Response) -> String {
    let loc = res.headers()["location"].to_str().unwrap();
    if loc.starts_with("http") { loc.to_owned() } else { format!("{base}{loc}") }
}

/// Moves an upload URL to another server (the port changes on restart).
fn rebase(url: &str, base: &str) -> String {
    let path = &url[url.find("/v2/").expect("an API URL")..];
    format!("{base}{path}")
}

fn range_end(res: &reqwest::Response) -> u64 {
    let range = res.headers()["range"].to_str().unwrap();
    range.strip_prefix("0-").expect("Range: 0-<end>").parse().unwrap()
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn expect(res: &reqwest::Response, status: StatusCode) -> Result<(), Failure> {
    if res.status() == status {
        Ok(())
    } else {
        Err(format!("{} {}", res.url(), res.status()).into())
    }
}

/// Pushes a blob: small ones monolithically, others as two chunks and a PUT.
async fn push_blob(c: &Client, base: &str, repo: &str, blob: &[u8]) -> Result<Digest, Failure> {
    let digest = Digest::sha256_of(blob);
    let uploads = format!("{base}/v2/{repo}/blobs/uploads/");
    if blob.len() < 4096 {
        let res = c.post(format!("{uploads}?digest={digest}")).body(blob.to_vec()).send().await?;
        expect(&res, StatusCode::CREATED)?;
        return Ok(digest);
    }
    let res = c.post(&uploads).send().await?;
    expect(&res, StatusCode::ACCEPTED)?;
    let loc = location(base, &res);
    let half = blob.len() / 2;
    let res = c
        .patch(&loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", half - 1))
        .body(blob[..half].to_vec())
        .send()
        .await?;
    expect(&res, StatusCode::ACCEPTED)?;
    let loc = location(base, &res);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let res = c
        .put(format!("{loc}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{half}-{}", blob.len() - 1))
        .body(blob[half..].to_vec())
        .send()
        .await?;
    expect(&res, StatusCode::CREATED)?;
    Ok(digest)
}

/// Pushes a config and two layers, then the manifest as `repo:tag`;
/// returns the manifest's digest.
async fn push_image(
    c: &Client,
    base: &str,
    repo: &str,
    tag: &str,
    seed: u64,
) -> Result<Digest, Failure> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
    let layers = [data(seed, 300 * 1024 + seed as usize % 977), data(seed + 1, 2048)];
    let config_digest = push_blob(c, base, repo, config.as_bytes()).await?;
    let mut descriptors = Vec::new();
    for layer in &layers {
        let d = push_blob(c, base, repo, layer).await?;
        descriptors.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{}}}"#,
            layer.len()
        ));
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descriptors.join(",")
    );
    let res = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await?;
    expect(&res, StatusCode::CREATED)?;
    Ok(Digest::sha256_of(manifest.as_bytes()))
}

/// Checks everything the registry lists (or only `only`): each tag's manifest
/// and every blob it references GET, with the right digest and size.
/// Returns the tags seen.
async fn verify_everything(
    c: &Client,
    base: &str,
    only: Option<&str>,
) -> Vec<(String, String, Digest)> {
    let catalog: serde_json::Value = serde_json::from_slice(
        &c.get(format!("{base}/v2/_catalog?n=10000")).send().await.unwrap().bytes().await.unwrap(),
    )
    .unwrap();
    let mut seen = Vec::new();
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        if only.is_some_and(|o| o != repo) {
            continue;
        }
        let res = c.get(format!("{base}/v2/{repo}/tags/list")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "tags of {repo}");
        let tags: serde_json::Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        for tag in tags["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap();
            let res = c
                .get(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{repo}:{tag} names a missing manifest");
            let header = res.headers()["docker-content-digest"].to_str().unwrap().to_owned();
            let body = res.bytes().await.unwrap();
            let digest = Digest::sha256_of(&body);
            assert_eq!(digest.as_str(), header, "{repo}:{tag}");
            let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let refs = std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap());
            for d in refs {
                let want = d["digest"].as_str().unwrap();
                let res = c.get(format!("{base}/v2/{repo}/blobs/{want}")).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "{repo}:{tag} needs {want}");
                let blob = res.bytes().await.unwrap();
                assert_eq!(blob.len() as u64, d["size"].as_u64().unwrap(), "{want}");
                assert_eq!(Digest::sha256_of(&blob).as_str(), want, "{repo}:{tag}");
            }
            seen.push((repo.to_owned(), tag.to_owned(), digest));
        }
    }
    seen
}

/// Every file under `blobs/` holds exactly the content its name promises.
fn verify_blob_files(dir: &Path) -> usize {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            checked += verify_blob_files(&path);
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let content = std::fs::read(&path).unwrap();
        assert_eq!(Digest::sha256_of(&content).hex(), name, "{} is incomplete", path.display());
        checked += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_pushes_restarts_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let log = dir.path().join("server.log");
    let mut server = Server::start(&root, log.clone()).await;
    let base = server.base.clone();
    let client = Client::new();

    // An upload whose first chunk the server acknowledged before the kill.
    let acked = data(7, 100_000);
    let rest = data(8, 50_000);
    let res = client.post(server.url("/v2/crash/acked/blobs/uploads/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let loc = location(&base, &res);
    let res = client
        .patch(&loc)
        .header("content-range", format!("0-{}", acked.len() - 1))
        .body(acked.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(range_end(&res), acked.len() as u64 - 1);
    let acked_upload = location(&base, &res);

    // An upload still streaming its one big PATCH when the kill comes.
    let res = client.post(server.url("/v2/crash/streamed/blobs/uploads/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let streamed_upload = location(&base, &res);
    let streamed = Arc::new(AtomicU64::new(0));
    let streaming = {
        let (client, url, streamed) = (client.clone(), streamed_upload.clone(), streamed.clone());
        tokio::spawn(async move {
            let body = futures_util::stream::unfold(0u64, move |sent| {
                let streamed = streamed.clone();
                async move {
                    if sent >= STREAM_TOTAL {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let end = (sent + STREAM_PIECE as u64).min(STREAM_TOTAL);
                    streamed.store(end, Ordering::SeqCst);
                    Some((Ok::<_, std::io::Error>(Bytes::from(stream_bytes(sent, end))), end))
                }
            });
            client.patch(url).body(reqwest::Body::wrap_stream(body)).send().await
        })
    };

    // Pushers: each its own repository (unique tags) and one shared tag.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<(String, String, Digest)>>> = Arc::default();
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (client, base) = (client.clone(), base.clone());
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        pushers.push(tokio::spawn(async move {
            let repo = format!("crash/p{p}");
            for k in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let seed = (p as u64) << 32 | k;
                let tag = format!("t{k}");
                let Ok(digest) = push_image(&client, &base, &repo, &tag, seed).await else {
                    break; // The server is gone.
                };
                acknowledged.lock().unwrap().push((repo.clone(), tag, digest));
                if push_image(&client, &base, "crash/shared", "latest", seed ^ 0xABCD)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }

    // Kill once pushes are well under way and the stream is deep in its PATCH.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 3 * PUSHERS
        || streamed.load(Ordering::SeqCst) < 16 << 20
    {
        assert!(Instant::now() < deadline, "pushes did not progress:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for p in pushers {
        p.await.unwrap();
    }
    let cut = streaming.await.unwrap();
    assert!(
        cut.is_err() || cut.as_ref().is_ok_and(|r| !r.status().is_success()),
        "the streamed PATCH should have been cut off by the kill"
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "killed after {} acknowledged pushes, {} MiB streamed",
        acknowledged.len(),
        streamed.load(Ordering::SeqCst) >> 20
    );

    // Restart on the same root.
    let server = Server::start(&root, log).await;
    let base = server.base.clone();

    // No tag points at missing or damaged content, and every push the server
    // acknowledged is there.
    let seen = verify_everything(&client, &base, None).await;
    for (repo, tag, digest) in &acknowledged {
        assert!(
            seen.iter().any(|(r, t, d)| r == repo && t == tag && d == digest),
            "{repo}:{tag} ({digest}) was acknowledged before the kill but is gone"
        );
    }
    assert!(seen.iter().any(|(r, t, _)| r == "crash/shared" && t == "latest"));

    // The acknowledged chunk is still there: the upload resumes.
    let acked_upload = rebase(&acked_upload, &base);
    let res = client.get(&acked_upload).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(range_end(&res), acked.len() as u64 - 1);
    let res = client
        .patch(&acked_upload)
        .header("content-range", format!("{}-{}", acked.len(), acked.len() + rest.len() - 1))
        .body(rest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let whole = [acked.clone(), rest].concat();
    let digest = Digest::sha256_of(&whole);
    let res = client.put(format!("{acked_upload}?digest={digest}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{}", server.log());
    let res = client.get(server.url(&format!("/v2/crash/acked/blobs/{digest}"))).send().await;
    assert_eq!(res.unwrap().bytes().await.unwrap().as_ref(), &whole[..]);

    // The cut-off PATCH: either it resumes from what reached the disk (a
    // prefix of what was sent), or the upload is cleanly unknown.
    let streamed_upload = rebase(&streamed_upload, &base);
    let res = client.get(&streamed_upload).send().await.unwrap();
    match res.status() {
        StatusCode::NO_CONTENT => {
            let have = range_end(&res) + 1;
            assert!(have <= streamed.load(Ordering::SeqCst), "more on disk than was sent");
            let digest = Digest::sha256_of(&stream_bytes(0, STREAM_TOTAL));
            let res = client
                .put(format!("{streamed_upload}?digest={digest}"))
                .header("content-range", format!("{have}-{}", STREAM_TOTAL - 1))
                .body(stream_bytes(have, STREAM_TOTAL))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::CREATED, "resumed at {have}: {}", server.log());
            eprintln!("the cut-off upload resumed at {have} bytes");
        }
        StatusCode::NOT_FOUND => {
            let body: serde_json::Value =
                serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
            assert_eq!(body["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
        }
        other => panic!("upload status after restart: {other}"),
    }

    // Pushing works again, and what was pushed reads back.
    let digest = push_image(&client, &base, "crash/after", "v1", 99).await.unwrap();
    let seen = verify_everything(&client, &base, Some("crash/after")).await;
    assert!(seen.iter().any(|(r, t, d)| r == "crash/after" && t == "v1" && *d == digest));

    // No blob file is partial, whatever the kill interrupted.
    let files = verify_blob_files(&root.join("registry").join("blobs"));
    assert!(files >= acknowledged.len() * 2, "only {files} blob files");
}
