//! A registry on loopback for the client's tests: serves and accepts images
//! in memory, with faults switched on per test, and a directory-backed store.
#![allow(dead_code, clippy::collapsible_if)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_client::{ImageStore, KnownLayer};
use berth_oci::{BlobSink, BlobSource, Descriptor, media_type};
use berth_reference::{Digest, HashingReader, Repository};
use bytes::Bytes;

/// What the server does wrong.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// First GET of the first layer sends half its bytes, then drops the connection.
    pub drop_mid_blob: bool,
    /// The first N manifest GETs answer 429 with `Retry-After: 1`.
    pub too_many_requests: u32,
    /// The first layer has one byte flipped.
    pub corrupt_byte: bool,
    /// Every GET of the first layer ends early (short body, truncated Content-Length).
    pub truncate: bool,
    /// Manifests are served with the Content-Type of an index.
    pub lying_media_type: bool,
    /// Blob GETs redirect in a circle.
    pub redirect_loop: bool,
    /// The first layer's body never ends.
    pub endless_body: bool,
    /// 401 with a challenge missing its realm.
    pub malformed_challenge: bool,
    /// Basic auth required with this user:password.
    pub basic: Option<(String, String)>,
    /// Bearer tokens from /token required; this login may push (anyone may pull).
    pub token: Option<(String, String)>,
    /// Repositories under this prefix are denied to everyone.
    pub denied_prefix: Option<String>,
    /// PATCHes carrying `Content-Range` are refused with 416 (a registry
    /// that takes a blob in one PATCH only).
    pub refuse_chunks: bool,
    /// PATCH answers carry no `Range` (and Content-Range is ignored).
    pub no_range_header: bool,
    /// The first N PATCHes answer 429 with `Retry-After` as an HTTP date
    /// `retry_after_date` seconds ahead.
    pub patch_too_many: u32,
    pub retry_after_date: u64,
    /// After this many PATCHes in all, the first upload is forgotten (as a
    /// registry that expired or lost it): its next request meets 404.
    pub lose_upload_after: Option<u32>,
    /// The first N closing PUTs carrying over 1 KiB (a layer, not a config)
    /// fail with 500 and drop the upload.
    pub fail_data_puts: u32,
}

#[derive(Default)]
pub struct Registry {
    pub faults: Faults,
    pub blobs: HashMap<String, Bytes>,
    /// (repo, tag or digest) -> (media type, bytes)
    pub manifests: HashMap<(String, String), (String, Bytes)>,
    uploads: HashMap<String, Vec<u8>>,
    /// Which repository holds which blob (repo, digest).
    pub repo_blobs: std::collections::HashSet<(String, String)>,
    /// Every request as "METHOD path [range]".
    pub log: Vec<String>,
    manifest_gets: u32,
    layer_gets: u32,
    patches: u32,
    uploads_started: u32,
    failed_data_puts: u32,
}

pub type Shared = Arc<Mutex<Registry>>;

/// A small image: its layers' uncompressed and gzip bytes, config and manifest.
pub struct TestImage {
    pub layers: Vec<(Vec<u8>, Vec<u8>)>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
}

impl TestImage {
    pub fn layer_digest(&self, i: usize) -> Digest {
        Digest::sha256_of(&self.layers[i].1)
    }
    pub fn diff_id(&self, i: usize) -> Digest {
        Digest::sha256_of(&self.layers[i].0)
    }
}

/// Pseudo-random but reproducible bytes that compress a little.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 { b'a' } else { (x & 0x3f) as u8 + b'0' }
        })
        .collect()
}

pub fn make_image(layer_sizes: &[usize]) -> TestImage {
    let layers: Vec<(Vec<u8>, Vec<u8>)> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let raw = data(i as u64 + 1, n);
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&raw).unwrap();
            (raw, enc.finish().unwrap())
        })
        .collect();
    let diff_ids: Vec<String> =
        layers.iter().map(|(raw, _)| Digest::sha256_of(raw).to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::DOCKER_MANIFEST,
        "config": {"mediaType": media_type::DOCKER_CONFIG, "digest": Digest::sha256_of(&config), "size": config.len()},
        "layers": layers.iter().map(|(_, gz)| serde_json::json!({
            "mediaType": media_type::DOCKER_LAYER_GZIP, "digest": Digest::sha256_of(gz), "size": gz.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest_digest = Digest::sha256_of(&manifest);
    TestImage { layers, config, manifest, manifest_digest }
}

impl Registry {
    pub fn add_image(&mut self, repo: &str, tag: &str, img: &TestImage) {
        for blob in img.layers.iter().map(|(_, gz)| gz).chain([&img.config]) {
            let d = Digest::sha256_of(blob).to_string();
            self.blobs.insert(d.clone(), Bytes::from(blob.clone()));
            self.repo_blobs.insert((repo.to_owned(), d));
        }
        let m = (media_type::DOCKER_MANIFEST.to_owned(), Bytes::from(img.manifest.clone()));
        self.manifests.insert((repo.to_owned(), tag.to_owned()), m.clone());
        self.manifests.insert((repo.to_owned(), img.manifest_digest.to_string()), m);
    }
}

/// Starts the registry on 127.0.0.1:0; returns its `host:port` and state.
pub async fn start(faults: Faults) -> (String, Shared) {
    let state: Shared = Arc::new(Mutex::new(Registry { faults, ..Default::default() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().fallback(handle).with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unauthorized(challenge: String) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
    r
}

fn basic_of(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
    let (u, p) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn query_param<'a>(query: &'a str, key: &str) -> Vec<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%2C", ",")
        .replace("%2c", ",")
        .replace("%2F", "/")
        .replace("%2f", "/")
        .replace('+', " ")
}

async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if parts.method == Method::PATCH && parts.uri.path().contains("/blobs/uploads/") {
        return patch_upload(state, parts, body).await;
    }
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let range = parts.headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let basic = state.lock().unwrap().faults.basic.clone();
    if let Some((user, pass)) = basic.filter(|_| path.starts_with("/v2/")) {
        if basic_of(&parts.headers) != Some((user, pass)) {
            // Slow refusals: concurrent first requests all meet the challenge.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            return unauthorized(r#"Basic realm="test""#.into());
        }
    }
    let mut reg = state.lock().unwrap();
    reg.log.push(format!(
        "{} {}{}",
        parts.method,
        path,
        range.as_ref().map(|r| format!(" {r}")).unwrap_or_default()
    ));
    let host =
        parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    let f = reg.faults.clone();

    if path == "/token" {
        let Some((user, pass)) = f.token.clone() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let login = basic_of(&parts.headers);
        if login.as_ref().is_some_and(|l| *l != (user.clone(), pass)) {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "incorrect username or password",
            );
        }
        // Anonymous tokens may pull; the login may also push.
        let scopes: Vec<String> = query_param(&query, "scope").into_iter().map(unescape).collect();
        let granted: Vec<String> = scopes
            .iter()
            .map(|s| {
                if login.is_some() {
                    s.clone()
                } else {
                    s.replace(",push", "").replace(":push", ":")
                }
            })
            .collect();
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("token {}", granted.join(" ")));
        return axum::Json(serde_json::json!({"token": token, "expires_in": 300})).into_response();
    }
    if path.starts_with("/loop/") {
        let next = if path == "/loop/a" { "/loop/b" } else { "/loop/a" };
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, next)]).into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };

    if f.malformed_challenge {
        return unauthorized(r#"Bearer service="registry""#.into());
    }
    // Which repository and action this is.
    let (repo, kind, tail) =
        match ["/manifests/", "/blobs/uploads/", "/blobs/"].iter().find_map(|k| {
            rest.find(k).map(|i| (rest[..i].to_owned(), *k, rest[i + k.len()..].to_owned()))
        }) {
            Some(x) => x,
            None if rest.is_empty() => (String::new(), "", String::new()),
            None => return StatusCode::NOT_FOUND.into_response(),
        };
    let push = matches!(parts.method, Method::PUT | Method::POST | Method::PATCH);
    if f.token.is_some() {
        let challenge = format!(r#"Bearer realm="http://{host}/token",service="test""#);
        let granted = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .map(|b| String::from_utf8(b).unwrap());
        let Some(granted) = granted else { return unauthorized(challenge) };
        if !repo.is_empty() {
            let need = if push { "push" } else { "pull" };
            let ok = granted.split(' ').any(|s| {
                s.strip_prefix(&format!("repository:{repo}:"))
                    .is_some_and(|acts| acts.split(',').any(|a| a == need))
            });
            if !ok {
                return unauthorized(format!(r#"{challenge},scope="repository:{repo}:{need}""#));
            }
        }
    }
    if f.denied_prefix.as_ref().is_some_and(|p| repo.starts_with(p.as_str())) {
        return error(
            StatusCode::FORBIDDEN,
            "DENIED",
            "requested access to the resource is denied",
        );
    }
    if rest.is_empty() {
        return axum::Json(serde_json::json!({})).into_response();
    }
    match (parts.method.clone(), kind) {
        (Method::GET | Method::HEAD, "/manifests/") => {
            reg.manifest_gets += 1;
            if reg.manifest_gets <= f.too_many_requests {
                let mut r = error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "slow down");
                r.headers_mut().insert(header::RETRY_AFTER, "1".parse().unwrap());
                return r;
            }
            let Some((mt, bytes)) = reg.manifests.get(&(repo.clone(), tail.clone())).cloned()
            else {
                return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown");
            };
            let mt = if f.lying_media_type { media_type::OCI_INDEX.to_owned() } else { mt };
            let digest = Digest::sha256_of(&bytes).to_string();
            (
                [(header::CONTENT_TYPE, mt), ("Docker-Content-Digest".parse().unwrap(), digest)],
                bytes,
            )
                .into_response()
        }
        (Method::PUT, "/manifests/") => {
            let mt = parts.headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().to_owned();
            let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for d in m["layers"].as_array().unwrap().iter().chain([&m["config"]]) {
                if !reg.blobs.contains_key(d["digest"].as_str().unwrap()) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_BLOB_UNKNOWN",
                        "blob unknown to registry",
                    );
                }
            }
            let digest = Digest::sha256_of(&body).to_string();
            reg.manifests.insert((repo.clone(), tail), (mt.clone(), body.clone()));
            reg.manifests.insert((repo, digest.clone()), (mt, body));
            (StatusCode::CREATED, [("Docker-Content-Digest", digest)]).into_response()
        }
        (Method::GET | Method::HEAD, "/blobs/") => {
            let held = reg.repo_blobs.contains(&(repo.clone(), tail.clone()));
            let Some(mut bytes) = reg.blobs.get(&tail).cloned().filter(|_| held) else {
                return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry");
            };
            if parts.method == Method::HEAD {
                return ([(header::CONTENT_LENGTH, bytes.len().to_string())], ()).into_response();
            }
            if f.redirect_loop {
                return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/loop/a")])
                    .into_response();
            }
            let first_layer = reg.manifests.values().next().and_then(|(_, m)| {
                let v: serde_json::Value = serde_json::from_slice(m).ok()?;
                v["layers"][0]["digest"].as_str().map(str::to_owned)
            });
            let is_first_layer = first_layer.as_deref() == Some(tail.as_str());
            if is_first_layer {
                reg.layer_gets += 1;
                if f.corrupt_byte {
                    let mut v = bytes.to_vec();
                    let i = v.len() / 2;
                    v[i] ^= 0x40;
                    bytes = Bytes::from(v);
                }
                if f.endless_body {
                    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
                    let s = futures_util::stream::repeat_with(move || {
                        Ok::<_, io::Error>(chunk.clone())
                    });
                    return Body::from_stream(s).into_response();
                }
            }
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
                .unwrap_or(0);
            let total = bytes.len();
            let part = bytes.slice(start.min(total)..);
            let status = if start > 0 { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
            let mut headers = vec![(header::CONTENT_LENGTH, part.len().to_string())];
            if start > 0 {
                headers
                    .push((header::CONTENT_RANGE, format!("bytes {start}-{}/{total}", total - 1)));
            }
            let cut = if is_first_layer && (f.truncate || (f.drop_mid_blob && reg.layer_gets == 1))
            {
                Some(part.len() / 2)
            } else {
                None
            };
            match cut {
                None => (status, [(header::CONTENT_LENGTH, part.len().to_string())], part)
                    .into_response(),
                Some(n) => {
                    // Promise the whole part, send half, then fail: the connection drops.
                    let half = part.slice(..n);
                    let s = futures_util::stream::unfold(0, move |step| {
                        let half = half.clone();
                        async move {
                            match step {
                                0 => Some((Ok(half), 1)),
                                1 => {
                                    // Let the half reach the client before the connection drops.
                                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                    Some((
                                        Err(io::Error::new(
                                            io::ErrorKind::ConnectionReset,
                                            "dropped",
                                        )),
                                        2,
                                    ))
                                }
                                _ => None,
                            }
                        }
                    });
                    let mut r = Body::from_stream(s).into_response();
                    *r.status_mut() = status;
                    for (k, v) in headers {
                        r.headers_mut().insert(k, v.parse().unwrap());
                    }
                    r
                }
            }
        }
        (Method::POST, "/blobs/uploads/") => {
            let mount = query_param(&query, "mount").first().map(|d| unescape(d));
            let from = query_param(&query, "from").first().map(|r| unescape(r)).unwrap_or_default();
            if let Some(d) = mount {
                if reg.repo_blobs.contains(&(from, d.clone())) {
                    reg.repo_blobs.insert((repo.clone(), d.clone()));
                    return (
                        StatusCode::CREATED,
                        [(header::LOCATION, format!("/v2/{repo}/blobs/{d}"))],
                    )
                        .into_response();
                }
            }
            reg.uploads_started += 1;
            let id = format!("u{}", reg.uploads_started);
            reg.uploads.insert(id.clone(), Vec::new());
            (StatusCode::ACCEPTED, [(header::LOCATION, format!("/v2/{repo}/blobs/uploads/{id}"))])
                .into_response()
        }
        (Method::GET, "/blobs/uploads/") => match reg.uploads.get(&tail) {
            None => error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown"),
            Some(data) => upload_accepted(StatusCode::NO_CONTENT, &repo, &tail, data.len(), true),
        },
        (Method::PUT, "/blobs/uploads/") => {
            let digest = unescape(query_param(&query, "digest")[0]);
            let Some(mut data) = reg.uploads.remove(&tail) else {
                return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown");
            };
            if body.len() > 1024 && reg.failed_data_puts < f.fail_data_puts {
                reg.failed_data_puts += 1;
                return error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", "disk on fire");
            }
            data.extend_from_slice(&body);
            if Digest::sha256_of(&data).to_string() != digest {
                return error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                );
            }
            reg.blobs.insert(digest.clone(), Bytes::from(data));
            reg.repo_blobs.insert((repo, digest));
            StatusCode::CREATED.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// `202 Accepted` (or the status's `204`) for an upload holding `len`
/// bytes, with a Location that changes as the upload grows (as
/// distribution's does), so a client must follow it.
fn upload_accepted(status: StatusCode, repo: &str, id: &str, len: usize, range: bool) -> Response {
    let mut r = status.into_response();
    let loc = format!("/v2/{repo}/blobs/uploads/{id}?_state={len}");
    r.headers_mut().insert(header::LOCATION, loc.parse().unwrap());
    if range {
        let last = len.saturating_sub(1);
        r.headers_mut().insert(header::RANGE, format!("0-{last}").parse().unwrap());
    }
    r
}

/// A PATCH: its body is appended as it arrives, so a connection that
/// drops mid-chunk leaves the bytes that came through (as distribution
/// keeps them). `Content-Range` must start where the upload ends.
async fn patch_upload(state: Shared, parts: axum::http::request::Parts, body: Body) -> Response {
    use futures_util::StreamExt;
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let content_range =
        parts.headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (repo, id) = path
        .strip_prefix("/v2/")
        .and_then(|r| r.split_once("/blobs/uploads/"))
        .map(|(r, i)| (r.to_owned(), i.to_owned()))
        .unwrap();
    let f = {
        let mut reg = state.lock().unwrap();
        reg.log.push(format!(
            "PATCH {path}{}",
            content_range.as_ref().map(|r| format!(" {r}")).unwrap_or_default()
        ));
        reg.patches += 1;
        let f = reg.faults.clone();
        if f.lose_upload_after.is_some_and(|n| reg.patches > n) && reg.uploads.contains_key("u1") {
            reg.uploads.remove("u1");
        }
        let Some(have) = reg.uploads.get(&id).map(Vec::len) else {
            return error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown");
        };
        if reg.patches <= f.patch_too_many {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + f.retry_after_date;
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "slow down");
            r.headers_mut().insert(header::RETRY_AFTER, http_date(at).parse().unwrap());
            return r;
        }
        if let Some(cr) = content_range.as_deref().filter(|_| !f.no_range_header) {
            let start = cr.split('-').next().and_then(|a| a.parse::<usize>().ok());
            if f.refuse_chunks || start != Some(have) {
                return error(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID", "invalid range");
            }
        }
        // A stale Location (an old `_state`) is refused, as distribution does.
        if let Some(st) = query_param(&query, "_state").first() {
            if st.parse::<usize>().ok() != Some(have) {
                return error(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", "stale upload state");
            }
        }
        f
    };
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let Ok(bytes) = frame else { break };
        let mut reg = state.lock().unwrap();
        match reg.uploads.get_mut(&id) {
            Some(data) => data.extend_from_slice(&bytes),
            None => break,
        }
    }
    let len = state.lock().unwrap().uploads.get(&id).map_or(0, Vec::len);
    upload_accepted(StatusCode::ACCEPTED, &repo, &id, len, !f.no_range_header)
}

/// Seconds since the epoch as an IMF-fixdate.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A TCP proxy in front of `upstream` that, once `cut_after` bytes in all
/// have gone from clients to the server, closes that connection mid-stream
/// (once). Returns the proxy's `host:port` and the count of bytes sent
/// towards the server.
pub async fn cutting_proxy(
    upstream: String,
    cut_after: u64,
) -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let (sent, cut) = (sent.clone(), cut.clone());
            // Dropped (or fired) when the client side ends: the answer to a
            // cut request must not reach the client either.
            let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let before = sent.fetch_add(n as u64, Ordering::SeqCst);
                    if before + n as u64 > cut_after && !cut.swap(true, Ordering::SeqCst) {
                        let keep = cut_after.saturating_sub(before) as usize;
                        let _ = sw.write_all(&buf[..keep]).await;
                        let _ = stop_tx.send(());
                        return; // both halves dropped: the connection is gone
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut stop_rx => return,
                        r = sr.read(&mut buf) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        },
                    }
                }
            });
        }
    });
    (addr, counter)
}

/// A store in a directory: blobs under `blobs/<hex>`, written via temp + rename
/// only when the reader succeeded; layer facts in memory; every opening of
/// a blob logged with its offset.
pub struct DirStore {
    pub dir: PathBuf,
    pub layers: Mutex<HashMap<Digest, KnownLayer>>,
    pub layer_blobs: Mutex<Vec<(Digest, Descriptor)>>,
    /// What `layer_sources` answers, by diff ID.
    pub sources: Mutex<HashMap<Digest, Vec<Repository>>>,
    /// `(blob, offset)` of each `open_blob` (offset 0) and `open_blob_at`.
    pub opens: Mutex<Vec<(Digest, u64)>>,
}

impl DirStore {
    pub fn new(dir: PathBuf) -> DirStore {
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        DirStore {
            dir,
            layers: Mutex::new(HashMap::new()),
            layer_blobs: Mutex::new(Vec::new()),
            sources: Mutex::new(HashMap::new()),
            opens: Mutex::new(Vec::new()),
        }
    }
    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.dir.join("blobs")).unwrap().count()
    }
    pub fn put(&self, data: &[u8]) -> Digest {
        self.write_blob(&mut &data[..]).unwrap().0
    }
}

impl BlobSource for DirStore {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        self.open_blob_at(digest, 0)
    }
    fn open_blob_at(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        use std::io::Seek;
        let mut file = std::fs::File::open(self.dir.join("blobs").join(digest.hex()))?;
        file.seek(io::SeekFrom::Start(offset))?;
        self.opens.lock().unwrap().push((digest.clone(), offset));
        Ok(Box::new(file))
    }
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        Ok(std::fs::metadata(self.dir.join("blobs").join(digest.hex())).ok().map(|m| m.len()))
    }
}

impl BlobSink for DirStore {
    fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        let mut r = HashingReader::new(reader, berth_reference::Algorithm::Sha256);
        io::copy(&mut r, &mut tmp)?;
        let (d, n) = r.finish();
        tmp.persist(self.dir.join("blobs").join(d.hex())).map_err(|e| e.error)?;
        Ok((d, n))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.dir.join("blobs").join(digest.hex()).exists()
    }
}

impl ImageStore for DirStore {
    fn known_layer(&self, blob: &Digest) -> Option<KnownLayer> {
        self.has_blob(blob).then(|| self.layers.lock().unwrap().get(blob).cloned()).flatten()
    }
    fn add_layer_blob(&self, diff_id: &Digest, blob: &Descriptor) -> io::Result<()> {
        self.layer_blobs.lock().unwrap().push((diff_id.clone(), blob.clone()));
        Ok(())
    }
    fn layer_sources(&self, diff_id: &Digest) -> Vec<Repository> {
        self.sources.lock().unwrap().get(diff_id).cloned().unwrap_or_default()
    }
}
