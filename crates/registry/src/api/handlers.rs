//! One function per endpoint of the distribution API.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use berth_oci::{ImageIndex, media_type};
use futures_util::TryStreamExt;

use super::access;
use super::response::error_response;
use super::route::Route;
use super::{AppState, query_pairs};
use crate::auth::{Action, Identity};
use crate::error::{Error, Result};
use crate::registry::{ManifestRef, PushedManifest, parse_digest};
use crate::storage::{ByteRange, ByteStream, UploadId};
use berth_reference::RepoName;

const TAGS_PAGE_MAX: usize = 10_000;
const CATALOG_PAGE_DEFAULT: usize = 1_000;

pub(super) type App = State<Arc<AppState>>;
type Query = Vec<(String, String)>;

/// `GET /v2/`: the API version check. With auth on, it is also where
/// clients learn the challenge: anonymous callers get a 401.
pub async fn base(State(app): App, headers: HeaderMap) -> Response {
    if let Some(auth) = &app.auth {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let unauthorized = || {
            let c = access::challenge(auth, app.scheme, &headers, None);
            error_response(&Error::Unauthorized(Some(c)), false)
        };
        match auth.identify(authorization).await {
            Ok(Identity::Anonymous) | Err(Error::Unauthorized(_)) => return unauthorized(),
            Ok(_) => {}
            Err(e) => return error_response(&e, false),
        }
    }
    json_response(StatusCode::OK, b"{}".to_vec())
}

/// `GET /token`: the Docker token endpoint. Basic credentials (optional)
/// say who asks; `scope` parameters say for what. The token grants what
/// is both asked and allowed. With `offline_token=true` (what `docker
/// login` asks), a logged-in user also gets a refresh token.
pub async fn token(State(app): App, req: Request) -> Response {
    let Some(auth) = &app.auth else { return plain(StatusCode::NOT_FOUND) };
    let query = query_pairs(&req);
    let scopes: Vec<String> =
        query.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
    let offline = query.iter().any(|(k, v)| k == "offline_token" && v == "true");
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let user = match authorization {
        None => None,
        Some(value) => {
            let creds = value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
                .and_then(|b| crate::auth::decode_basic(b.trim()));
            let Some((name, password)) = creds else {
                return error_response(&Error::Unauthorized(None), false);
            };
            match auth.login(&name, &password).await {
                Ok(u) => Some(u),
                Err(e) => return error_response(&e, false),
            }
        }
    };
    match auth.issue(user.as_ref(), &scopes).await {
        Ok(mut t) => {
            if offline && let Some(login) = &user {
                t.refresh_token = Some(auth.issue_refresh(login));
            }
            json_response(StatusCode::OK, serde_json::to_vec(&t).expect("json"))
        }
        Err(e) => error_response(&e, false),
    }
}

/// `POST /token`: the OAuth2 form of the token endpoint (containerd and
/// BuildKit try it first; docker uses it with the refresh token it stored
/// at login). `grant_type=password` (with `access_type=offline`, a refresh
/// token too) and `grant_type=refresh_token`.
pub async fn token_oauth(State(app): App, req: Request) -> Response {
    let Some(auth) = &app.auth else { return plain(StatusCode::NOT_FOUND) };
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return error_response(&Error::Unsupported("token request too large".into()), false);
    };
    let form: Vec<(String, String)> = String::from_utf8_lossy(&body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (super::percent_decode(k), super::percent_decode(v))
        })
        .collect();
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let (user, offline) = match field("grant_type") {
        Some("password") => {
            let (Some(name), Some(password)) = (field("username"), field("password")) else {
                return error_response(&Error::Unauthorized(None), false);
            };
            match auth.login(name, password).await {
                Ok(u) => (u, field("access_type") == Some("offline")),
                Err(e) => return error_response(&e, false),
            }
        }
        Some("refresh_token") => {
            let Some(refresh) = field("refresh_token") else {
                return error_response(&Error::Unauthorized(None), false);
            };
            // The client keeps the token it has: no new one is issued.
            match auth.redeem_refresh(refresh).await {
                Ok(u) => (u, false),
                Err(e) => return error_response(&e, false),
            }
        }
        _ => {
            return error_response(
                &Error::Unsupported("grant_type must be password or refresh_token".into()),
                false,
            );
        }
    };
    let scopes: Vec<String> =
        field("scope").map(|s| s.split(' ').map(str::to_owned).collect()).unwrap_or_default();
    match auth.issue(Some(&user), &scopes).await {
        Ok(mut t) => {
            if offline {
                t.refresh_token = Some(auth.issue_refresh(&user));
            }
            json_response(StatusCode::OK, serde_json::to_vec(&t).expect("json"))
        }
        Err(e) => error_response(&e, false),
    }
}

/// Every `/v2/<rest>` request.
pub async fn dispatch(State(app): App, req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    let rest = req.uri().path().strip_prefix("/v2/").unwrap_or_default().to_owned();
    if super::hub::is_repository_settings(&rest) {
        return super::hub::repository_settings(&app, req).await;
    }
    let route = match Route::parse(&rest) {
        None => return plain(StatusCode::NOT_FOUND),
        Some(Err(e)) => return error_response(&e, head),
        Some(Ok(route)) => route,
    };
    let shown = route.clone();
    let route = if app.auth.is_some() {
        match route.official() {
            Ok(r) => r,
            Err(e) => return error_response(&e, head),
        }
    } else {
        route
    };
    let mut req = req;
    if let Some(auth) = &app.auth {
        let (method, headers) = (req.method(), req.headers());
        match access::authorize(auth, app.scheme, &route, &shown, method, headers).await {
            Ok(identity) => {
                req.extensions_mut().insert(identity);
            }
            Err(e) => return error_response(&e, head),
        }
    }
    match handle(&app, route, req).await {
        Ok(res) => res,
        Err(e) => error_response(&e, head),
    }
}

async fn handle(app: &AppState, route: Route, req: Request) -> Result<Response> {
    let method = req.method().clone();
    match (route, method) {
        (Route::Catalog, Method::GET) => {
            let identity = req.extensions().get::<Identity>().cloned();
            catalog(app, query_pairs(&req), identity).await
        }
        (Route::Manifest(repo, r), Method::GET) => get_manifest(app, &repo, &r, false).await,
        (Route::Manifest(repo, r), Method::HEAD) => get_manifest(app, &repo, &r, true).await,
        (Route::Manifest(repo, r), Method::PUT) => {
            let user = req.extensions().get::<Identity>().and_then(|i| i.user_name());
            let user = user.unwrap_or_default().to_owned();
            let (res, pushed) = put_manifest(app, &repo, &r, req).await?;
            let path_tag = (!r.contains(':')).then_some(r.as_str());
            for tag in path_tag.into_iter().chain(pushed.extra_tags.iter().map(String::as_str)) {
                // Who pushed a tag, for the tags page; the push stands even
                // if this is lost.
                if let Err(e) = app.hub.record_push(&repo, tag, &user).await {
                    tracing::warn!(error = %e, repo = %repo, "cannot record the pusher");
                }
            }
            Ok(res)
        }
        (Route::Manifest(repo, r), Method::DELETE) => delete_manifest(app, &repo, &r).await,
        (Route::Blob(repo, d), Method::GET) => get_blob(app, &repo, &d, req.headers(), false).await,
        (Route::Blob(repo, d), Method::HEAD) => get_blob(app, &repo, &d, req.headers(), true).await,
        (Route::Blob(repo, d), Method::DELETE) => delete_blob(app, &repo, &d).await,
        (Route::Upload(repo, id), Method::POST) if id.is_empty() => {
            start_upload(app, &repo, req).await
        }
        (Route::Upload(repo, id), m) if !id.is_empty() => {
            let id = UploadId::parse(&id).ok_or(Error::BlobUploadUnknown)?;
            match m {
                Method::GET => upload_status(app, &repo, &id).await,
                Method::PATCH => patch_upload(app, &repo, &id, req).await,
                Method::PUT => finish_upload(app, &repo, &id, req).await,
                Method::DELETE => cancel_upload(app, &repo, &id).await,
                _ => Ok(plain(StatusCode::METHOD_NOT_ALLOWED)),
            }
        }
        (Route::Tags(repo), Method::GET) => tags(app, &repo, query_pairs(&req)).await,
        (Route::Referrers(repo, d), Method::GET) => {
            referrers(app, &repo, &d, query_pairs(&req)).await
        }
        _ => Ok(plain(StatusCode::METHOD_NOT_ALLOWED)),
    }
}

// ---- manifests ----

async fn get_manifest(app: &AppState, repo: &RepoName, r: &str, head: bool) -> Result<Response> {
    let reference = ManifestRef::parse(r)
        .map_err(|_| Error::ManifestUnknown(format!("{r:?} is neither a tag nor a digest")))?;
    let m = app.registry.get_manifest(repo, &reference).await?;
    let body = if head { Body::empty() } else { Body::from(m.bytes.clone()) };
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, value(&m.media_type)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(m.bytes.len()));
    h.insert("docker-content-digest", value(m.digest.as_str())?);
    h.insert(header::ETAG, value(&format!("\"{}\"", m.digest))?);
    Ok(res)
}

async fn put_manifest(
    app: &AppState,
    repo: &RepoName,
    r: &str,
    req: Request,
) -> Result<(Response, PushedManifest)> {
    let reference = ManifestRef::parse(r)?;
    let extra_tags: Vec<String> =
        query_pairs(&req).into_iter().filter(|(k, _)| k == "tag").map(|(_, v)| v).collect();
    let content_type = header_str(req.headers(), header::CONTENT_TYPE.as_str())
        .map(|c| c.split(';').next().unwrap_or("").trim().to_owned());
    let limit = app.registry.limits().manifest_max;
    let too_large = || Error::ManifestTooLarge(format!("a manifest may not exceed {limit} bytes"));
    if content_length(req.headers())?.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Past the check above, only a chunked body can overflow (or a client
    // that hung up, which hears no answer anyway).
    let body = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| too_large())?;
    let pushed = app
        .registry
        .put_manifest_tagged(repo, &reference, &extra_tags, content_type.as_deref(), body)
        .await?;
    let mut res = status_only(StatusCode::CREATED);
    let h = res.headers_mut();
    h.insert(header::LOCATION, value(&format!("/v2/{repo}/manifests/{}", pushed.digest))?);
    h.insert("docker-content-digest", value(pushed.digest.as_str())?);
    if let Some(subject) = &pushed.subject {
        h.insert("oci-subject", value(subject.as_str())?);
    }
    for tag in &pushed.extra_tags {
        h.append("oci-tag", value(tag)?);
    }
    Ok((res, pushed))
}

async fn delete_manifest(app: &AppState, repo: &RepoName, r: &str) -> Result<Response> {
    let reference = ManifestRef::parse(r)
        .map_err(|_| Error::ManifestUnknown(format!("{r:?} is neither a tag nor a digest")))?;
    app.registry.delete_manifest(repo, &reference).await?;
    Ok(status_only(StatusCode::ACCEPTED))
}

// ---- blobs ----

async fn get_blob(
    app: &AppState,
    repo: &RepoName,
    d: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let digest = parse_digest(d)?;
    let size = app.registry.stat_blob(repo, &digest).await?;
    let range = match header_str(headers, header::RANGE.as_str()) {
        Some(r) if !head => parse_range(r, size)?,
        _ => None,
    };
    // A presigned URL hands the bytes to the object store (GET only: a
    // HEAD is answered here, as clients expect its headers).
    if !head && let Some(url) = app.registry.blob_store().redirect_url(&digest).await? {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        res.headers_mut().insert(header::LOCATION, value(&url)?);
        res.headers_mut().insert("docker-content-digest", value(digest.as_str())?);
        return Ok(res);
    }
    let length = range.map_or(size, |r| r.len());
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(app.registry.blob_store().get_stream(&digest, range).await?)
    };
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("docker-content-digest", value(digest.as_str())?);
    h.insert(header::ETAG, value(&format!("\"{digest}\""))?);
    if let Some(r) = range {
        h.insert(header::CONTENT_RANGE, value(&format!("bytes {}-{}/{size}", r.first, r.last))?);
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(res)
}

/// Parses `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of
/// `size` bytes. Forms we do not serve (several ranges) are ignored, as
/// HTTP allows; a range outside the blob is `RANGE_INVALID` (416).
fn parse_range(header: &str, size: u64) -> Result<Option<ByteRange>> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let invalid = || Error::RangeInvalid(format!("{header:?} does not fit a blob of {size} bytes"));
    let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(first), Some(last)) if first <= last => {
            ByteRange { first, last: last.min(size.saturating_sub(1)) }
        }
        (Some(first), None) if b.is_empty() => ByteRange { first, last: size.saturating_sub(1) },
        (None, Some(n)) if a.is_empty() && n > 0 => {
            ByteRange { first: size.saturating_sub(n), last: size.saturating_sub(1) }
        }
        _ if a.is_empty() || b.is_empty() || a.parse::<u64>().is_ok() => return Err(invalid()),
        _ => return Ok(None),
    };
    if size == 0 || range.first >= size || range.first > range.last {
        return Err(invalid());
    }
    Ok(Some(range))
}

async fn delete_blob(app: &AppState, repo: &RepoName, d: &str) -> Result<Response> {
    let digest = parse_digest(d)?;
    app.registry.delete_blob(repo, &digest).await?;
    Ok(status_only(StatusCode::ACCEPTED))
}

// ---- uploads ----

fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(io::Error::other))
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>> {
    match header_str(headers, header::CONTENT_LENGTH.as_str()) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::SizeInvalid(format!("Content-Length {v:?}"))),
    }
}

/// Parses `Content-Range: <start>-<end>` (the spec's form; `bytes ` tolerated).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = header_str(headers, header::CONTENT_RANGE.as_str()) else { return Ok(None) };
    let spec = v.trim().trim_start_matches("bytes").trim_start_matches([' ', '=']);
    let spec = spec.split('/').next().unwrap_or("");
    let parsed = spec.split_once('-').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    match parsed {
        Some((a, b)) if a <= b => Ok(Some((a, b))),
        _ => Err(Error::RangeInvalid(format!("Content-Range {v:?}"))),
    }
}

/// The chunk a PATCH or final PUT carries: `(start, declared length, body)`.
fn chunk(req: Request) -> Result<(Option<u64>, Option<u64>, ByteStream)> {
    let length = content_length(req.headers())?;
    let range = content_range(req.headers())?;
    if let (Some((a, b)), Some(len)) = (range, length)
        && b - a + 1 != len
    {
        return Err(Error::RangeInvalid(format!(
            "Content-Range {a}-{b} does not match Content-Length {len}"
        )));
    }
    let declared = length.or(range.map(|(a, b)| b - a + 1));
    Ok((range.map(|r| r.0), declared, body_stream(req.into_body())))
}

fn has_body(headers: &HeaderMap) -> bool {
    match header_str(headers, header::CONTENT_LENGTH.as_str()) {
        Some(v) => v.trim() != "0",
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

fn upload_response(
    status: StatusCode,
    repo: &RepoName,
    id: &UploadId,
    size: u64,
) -> Result<Response> {
    let mut res = status_only(status);
    let h = res.headers_mut();
    h.insert(header::LOCATION, value(&format!("/v2/{repo}/blobs/uploads/{id}"))?);
    h.insert(header::RANGE, value(&format!("0-{}", size.saturating_sub(1)))?);
    h.insert("docker-upload-uuid", value(id.as_str())?);
    Ok(res)
}

fn blob_created(repo: &RepoName, digest: &berth_reference::Digest) -> Result<Response> {
    let mut res = status_only(StatusCode::CREATED);
    let h = res.headers_mut();
    h.insert(header::LOCATION, value(&format!("/v2/{repo}/blobs/{digest}"))?);
    h.insert("docker-content-digest", value(digest.as_str())?);
    Ok(res)
}

async fn start_upload(app: &AppState, repo: &RepoName, req: Request) -> Result<Response> {
    let query = query_pairs(&req);
    let param = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if let Some(mount) = param("mount") {
        let digest = parse_digest(&mount)?;
        let mut from = param("from").map(|f| RepoName::parse(&f)).transpose()?;
        if app.auth.is_some() {
            from = from.map(crate::auth::official_name).transpose()?;
        }
        let identity = req.extensions().get::<Identity>();
        // With accounts, a mount needs pull access to the source. Without
        // `from`, the source is any repository holding the blob that the
        // caller may pull; if there is none, the answer (an ordinary upload)
        // is the same as for a blob the registry does not have, so nothing
        // leaks about repositories the caller cannot read.
        let source = match (&app.auth, identity, from) {
            (None, _, from) => Some(from),
            (Some(auth), Some(identity), Some(from)) => {
                auth.permits(identity, from.as_str(), Action::Pull).await?.then_some(Some(from))
            }
            (Some(auth), Some(identity), None) if app.registry.limits().mount_without_from => {
                readable_source(app, auth, identity, &digest).await?.map(Some)
            }
            (Some(_), _, _) => None,
        };
        if let Some(source) = source
            && app.registry.mount_blob(repo, &digest, source.as_ref()).await?
        {
            return blob_created(repo, &digest);
        }
    } else if let Some(d) = param("digest") {
        let digest = parse_digest(&d)?;
        let declared = content_length(req.headers())?;
        app.registry.put_blob(repo, &digest, body_stream(req.into_body()), declared).await?;
        return blob_created(repo, &digest);
    }
    let id = app.registry.start_upload(repo).await?;
    upload_response(StatusCode::ACCEPTED, repo, &id, 0)
}

/// How many repositories holding a blob are considered as a mount source.
const MOUNT_SOURCES_MAX: usize = 100;

/// A repository holding `digest` that `identity` may pull. A token stands
/// for its subject here: it was issued for the mount's target, and the
/// subject's own right to read the source is what makes mounting safe.
async fn readable_source(
    app: &AppState,
    auth: &crate::auth::Auth,
    identity: &Identity,
    digest: &berth_reference::Digest,
) -> Result<Option<RepoName>> {
    let user = auth.user_of(identity).await?;
    let holders = app.registry.blob_holders(digest, MOUNT_SOURCES_MAX).await?;
    for holder in holders {
        if auth.allowed(user.as_ref(), &holder).await?.contains(&Action::Pull)
            && let Ok(name) = RepoName::parse(&holder)
        {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

async fn upload_status(app: &AppState, repo: &RepoName, id: &UploadId) -> Result<Response> {
    let size = app.registry.upload_status(repo, id).await?;
    upload_response(StatusCode::NO_CONTENT, repo, id, size)
}

async fn patch_upload(
    app: &AppState,
    repo: &RepoName,
    id: &UploadId,
    req: Request,
) -> Result<Response> {
    let (start, declared, body) = chunk(req)?;
    let size = app.registry.append_upload(repo, id, start, declared, body).await?;
    upload_response(StatusCode::ACCEPTED, repo, id, size)
}

async fn finish_upload(
    app: &AppState,
    repo: &RepoName,
    id: &UploadId,
    req: Request,
) -> Result<Response> {
    let query = query_pairs(&req);
    let d = query
        .iter()
        .find(|(k, _)| k == "digest")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| Error::DigestInvalid("the digest parameter is required".into()))?;
    let digest = parse_digest(&d)?;
    let last = if has_body(req.headers()) { Some(chunk(req)?) } else { None };
    app.registry.finish_upload(repo, id, &digest, last).await?;
    blob_created(repo, &digest)
}

async fn cancel_upload(app: &AppState, repo: &RepoName, id: &UploadId) -> Result<Response> {
    app.registry.cancel_upload(repo, id).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

// ---- listings ----

/// Reads `n` and `last`; `n` is capped at `max`.
fn page(query: Query, default: usize, max: usize) -> Result<(usize, Option<String>)> {
    let mut n = default;
    let mut last = None;
    for (k, v) in query {
        match k.as_str() {
            "n" => {
                n = v.parse::<usize>().map_err(|_| {
                    Error::Unsupported(format!("pagination number {v:?} is not a number"))
                })?;
                n = n.min(max);
            }
            "last" => last = Some(v),
            _ => {}
        }
    }
    Ok((n, last))
}

/// Fetches one more than asked to know whether a next page exists.
fn paginate(mut items: Vec<String>, n: usize) -> (Vec<String>, Option<String>) {
    if items.len() > n {
        items.truncate(n);
        let last = items.last().cloned();
        (items, last)
    } else {
        (items, None)
    }
}

fn link_next(res: &mut Response, path: &str, n: usize, last: Option<String>) -> Result<()> {
    if let Some(last) = last {
        let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
        res.headers_mut().insert(header::LINK, value(&link)?);
    }
    Ok(())
}

async fn tags(app: &AppState, repo: &RepoName, query: Query) -> Result<Response> {
    let (n, last) = page(query, TAGS_PAGE_MAX, TAGS_PAGE_MAX)?;
    let items = if n == 0 {
        // Still answer NAME_UNKNOWN for a repository that does not exist.
        app.registry.list_tags(repo, last.as_deref(), 0).await?
    } else {
        app.registry.list_tags(repo, last.as_deref(), n + 1).await?
    };
    let (tags, next) = paginate(items, n);
    let body = serde_json::json!({ "name": repo.as_str(), "tags": tags });
    let mut res = json_response(StatusCode::OK, serde_json::to_vec(&body).expect("json"));
    link_next(&mut res, &format!("/v2/{repo}/tags/list"), n, next)?;
    Ok(res)
}

async fn catalog(app: &AppState, query: Query, identity: Option<Identity>) -> Result<Response> {
    let (n, last) = page(query, CATALOG_PAGE_DEFAULT, TAGS_PAGE_MAX)?;
    let items = match (&app.auth, n) {
        (_, 0) => Vec::new(),
        (None, _) => app.registry.catalog(last.as_deref(), n + 1).await?,
        (Some(auth), _) => {
            // Only what the caller may pull, fetched page by page.
            let user = match &identity {
                Some(i) => auth.user_of(i).await?,
                None => None,
            };
            let mut visible = Vec::new();
            let mut cursor = last.clone();
            loop {
                let batch = app.registry.catalog(cursor.as_deref(), n + 1).await?;
                let done = batch.len() <= n;
                cursor = batch.last().cloned();
                for repo in batch {
                    if auth.allowed(user.as_ref(), &repo).await?.contains(&Action::Pull) {
                        visible.push(repo);
                    }
                }
                if done || visible.len() > n {
                    break;
                }
            }
            visible.truncate(n + 1);
            visible
        }
    };
    let (repos, next) = paginate(items, n);
    let body = serde_json::json!({ "repositories": repos });
    let mut res = json_response(StatusCode::OK, serde_json::to_vec(&body).expect("json"));
    link_next(&mut res, "/v2/_catalog", n, next)?;
    Ok(res)
}

async fn referrers(app: &AppState, repo: &RepoName, d: &str, query: Query) -> Result<Response> {
    let subject = parse_digest(d)?;
    let filter = query.iter().find(|(k, _)| k == "artifactType").map(|(_, v)| v.clone());
    let manifests = app.registry.referrers(repo, &subject, filter.as_deref()).await?;
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_owned()),
        artifact_type: None,
        manifests,
        subject: None,
        annotations: None,
    };
    let mut res = json_response(StatusCode::OK, serde_json::to_vec(&index).expect("json"));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type::OCI_INDEX));
    if filter.is_some() {
        res.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
    }
    Ok(res)
}

// ---- helpers ----

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header value from text we built (digests, names, media types we accepted).
fn value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s)
        .map_err(|_| Error::ManifestInvalid(format!("{s:?} is not a valid header value")))
}

fn status_only(status: StatusCode) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    res
}

pub(super) fn plain(status: StatusCode) -> Response {
    status_only(status)
}

pub(super) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let len = body.len();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    res
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        let r = parse_range("bytes=0-9", 100).unwrap().unwrap();
        assert_eq!((r.first, r.last), (0, 9));
        let r = parse_range("bytes=90-", 100).unwrap().unwrap();
        assert_eq!((r.first, r.last), (90, 99));
        let r = parse_range("bytes=-10", 100).unwrap().unwrap();
        assert_eq!((r.first, r.last), (90, 99));
        let r = parse_range("bytes=50-500", 100).unwrap().unwrap();
        assert_eq!((r.first, r.last), (50, 99));
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-2", 100).is_err());
        assert!(parse_range("bytes=0-1,5-6", 100).unwrap().is_none());
        assert!(parse_range("items=0-1", 100).unwrap().is_none());
    }
}
