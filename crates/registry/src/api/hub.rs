//! Docker Hub's endpoints beyond the distribution API: `docker search`
//! (`/v1/_ping`, `/v1/search`), stars, deleting a whole repository, and
//! the repository settings of Docker Hub's web API
//! (`/v2/repositories/NAMESPACE/NAME/`: read, set descriptions, delete).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

use super::handlers::{App, json_response, plain};
use super::response::error_response;
use super::route::Route;
use super::{AppState, query_pairs};
use crate::auth::{Action, Identity, namespace};
use crate::error::{Error, Result};
use crate::metadata::browse::{RepoOrder, RepoQuery};
use berth_reference::RepoName;

const SEARCH_DEFAULT: usize = 25;
const SEARCH_MAX: usize = 100;

/// `GET /v1/_ping`: docker search checks it before searching.
pub async fn ping() -> Response {
    let mut res = json_response(StatusCode::OK, br#"{"standalone":true}"#.to_vec());
    res.headers_mut().insert("x-docker-registry-standalone", "true".parse().expect("static"));
    res
}

#[derive(Serialize)]
struct SearchResult {
    name: String,
    description: String,
    star_count: u64,
    is_official: bool,
    is_automated: bool,
}

#[derive(Serialize)]
struct SearchPage {
    num_pages: usize,
    num_results: usize,
    page: usize,
    page_size: usize,
    query: String,
    results: Vec<SearchResult>,
}

/// Who is calling, for endpoints outside `/v2/` (no credentials: anonymous;
/// bad credentials: 401).
async fn caller(app: &AppState, headers: &HeaderMap) -> Result<Identity> {
    let Some(auth) = &app.auth else { return Ok(Identity::Anonymous) };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    auth.identify(authorization).await
}

/// With accounts on, a bare name is the official `library/NAME`.
pub(crate) fn hub_name(app: &AppState, repo: RepoName) -> Result<RepoName> {
    if app.auth.is_some() { Ok(crate::auth::official_name(repo)?) } else { Ok(repo) }
}

/// `GET /v1/search?q=&n=&page=`: repositories whose name or description
/// contains `q`, visible to the caller.
pub async fn search(State(app): App, req: Request) -> Response {
    match search_inner(&app, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e, false),
    }
}

async fn search_inner(app: &AppState, req: Request) -> Result<Response> {
    let query = query_pairs(&req);
    let param = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let q = param("q").unwrap_or_default();
    let number =
        |k: &str, default: usize| -> Result<usize> {
            match param(k) {
                None => Ok(default),
                Some(v) => v.parse::<usize>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    Error::Unsupported(format!("{k}={v:?} is not a positive number"))
                }),
            }
        };
    let n = number("n", SEARCH_DEFAULT)?.min(SEARCH_MAX);
    let page = number("page", 1)?;
    let identity = caller(app, req.headers()).await?;
    let user = match &app.auth {
        Some(auth) => auth.user_of(&identity).await?,
        None => None,
    };
    let viewer = app.hub.viewer(app.auth.is_some(), user.as_ref()).await?;
    let found = app
        .hub
        .browse(&RepoQuery {
            text: Some(q.clone()),
            namespace: None,
            official: false,
            verified: false,
            viewer,
            order: RepoOrder::Stars,
            offset: (page - 1).saturating_mul(n),
            limit: n,
            count: true,
        })
        .await?;
    let total = found.total as usize;
    let results = found
        .items
        .into_iter()
        .map(|h| h.summary)
        .map(|h| SearchResult {
            is_official: namespace(&h.name).is_none(),
            name: h.name.strip_prefix("library/").unwrap_or(&h.name).to_owned(),
            description: h.description.unwrap_or_default(),
            star_count: h.stars,
            is_automated: false,
        })
        .collect();
    let body = SearchPage {
        num_pages: total.div_ceil(n),
        num_results: total,
        page,
        page_size: n,
        query: q,
        results,
    };
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&body).expect("json")))
}

/// `/v1/repositories/<name>/star` (PUT stars, DELETE unstars) and
/// `DELETE /v1/repositories/<name>/` (removes the whole repository).
pub async fn repositories(State(app): App, req: Request) -> Response {
    match repositories_inner(&app, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e, false),
    }
}

async fn repositories_inner(app: &AppState, req: Request) -> Result<Response> {
    let rest = req.uri().path().strip_prefix("/v1/repositories/").unwrap_or_default();
    let rest = rest.trim_end_matches('/');
    let (name, star) = match rest.strip_suffix("/star") {
        Some(name) => (name, true),
        None => (rest, false),
    };
    let repo = hub_name(app, RepoName::parse(name)?)?;
    let identity = caller(app, req.headers()).await?;
    match (star, req.method().clone()) {
        (true, m @ (Method::PUT | Method::DELETE)) => {
            let auth = app.auth.as_ref().ok_or_else(|| {
                Error::Unsupported("stars need accounts: run the registry with --auth".into())
            })?;
            let user = auth.user_of(&identity).await?.ok_or(Error::Unauthorized(None))?;
            if !auth.allowed(Some(&user), repo.as_str()).await?.contains(&Action::Pull) {
                return Err(Error::NameUnknown(repo.to_string()));
            }
            app.hub.star(&user.name, &repo, m == Method::PUT).await?;
            Ok(plain(StatusCode::OK))
        }
        (false, Method::DELETE) => {
            if let Some(auth) = &app.auth {
                if matches!(identity, Identity::Anonymous) {
                    return Err(Error::Unauthorized(None));
                }
                if !auth.permits(&identity, repo.as_str(), Action::Delete).await? {
                    return Err(Error::Denied);
                }
            }
            app.registry.delete_repository(&repo).await?;
            Ok(plain(StatusCode::ACCEPTED))
        }
        _ => Ok(plain(StatusCode::METHOD_NOT_ALLOWED)),
    }
}

/// The largest repository settings body.
const SETTINGS_BODY_MAX: usize = 1 << 20;

/// Whether `/v2/<rest>` is Docker Hub's repository settings path rather
/// than a distribution route of a repository whose name starts with
/// `repositories/`: distribution paths never end in `/` except to start an
/// upload.
pub fn is_repository_settings(rest: &str) -> bool {
    rest.starts_with("repositories/")
        && (Route::parse(rest).is_none()
            || (rest.ends_with('/') && !rest.ends_with("/blobs/uploads/")))
}

#[derive(Serialize)]
struct RepositorySettings {
    user: String,
    namespace: String,
    name: String,
    repository_type: &'static str,
    description: String,
    full_description: String,
    is_private: bool,
    is_official: bool,
    star_count: u64,
}

#[derive(serde::Deserialize)]
struct SettingsPatch {
    description: Option<String>,
    full_description: Option<String>,
}

/// `GET`, `PATCH` (description, full_description) and `DELETE` of
/// `/v2/repositories/<name>/`.
pub async fn repository_settings(app: &AppState, req: Request) -> Response {
    match repository_settings_inner(app, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e, false),
    }
}

async fn repository_settings_inner(app: &AppState, req: Request) -> Result<Response> {
    let rest = req.uri().path().strip_prefix("/v2/repositories/").unwrap_or_default();
    let repo = hub_name(app, RepoName::parse(rest.trim_end_matches('/'))?)?;
    let identity = caller(app, req.headers()).await?;
    let user = match &app.auth {
        Some(auth) => auth.user_of(&identity).await?,
        None => None,
    };
    let allowed = match &app.auth {
        Some(auth) => auth.allowed(user.as_ref(), repo.as_str()).await?,
        None => Action::ALL.to_vec(),
    };
    let unknown = || Error::NameUnknown(repo.to_string());
    match req.method().clone() {
        Method::GET => {
            if !allowed.contains(&Action::Pull) {
                return Err(unknown());
            }
        }
        Method::PATCH => {
            // Only the namespace's owner (user or organisation member) or an
            // administrator: exactly those policy lets push.
            if app.auth.is_some() && user.is_none() {
                return Err(Error::Unauthorized(None));
            }
            if !allowed.contains(&Action::Push) {
                return Err(Error::Denied);
            }
            let body = axum::body::to_bytes(req.into_body(), SETTINGS_BODY_MAX)
                .await
                .map_err(|_| Error::InvalidRequest("body too large".into()))?;
            let patch: SettingsPatch = serde_json::from_slice(&body)
                .map_err(|e| Error::InvalidRequest(format!("expected a JSON object: {e}")))?;
            if patch.description.is_none() && patch.full_description.is_none() {
                return Err(Error::InvalidRequest(
                    "nothing to change: give description or full_description".into(),
                ));
            }
            let (description, full) = (patch.description, patch.full_description);
            app.hub.describe(&repo, description.as_deref(), full.as_deref()).await?;
        }
        Method::DELETE => {
            if app.auth.is_some() && matches!(identity, Identity::Anonymous) {
                return Err(Error::Unauthorized(None));
            }
            if let Some(auth) = &app.auth
                && !auth.permits(&identity, repo.as_str(), Action::Delete).await?
            {
                return Err(Error::Denied);
            }
            app.registry.delete_repository(&repo).await?;
            return Ok(plain(StatusCode::ACCEPTED));
        }
        _ => return Ok(plain(StatusCode::METHOD_NOT_ALLOWED)),
    }
    let summary = app.hub.summary(&repo).await?;
    let (namespace, name) = match repo.as_str().split_once('/') {
        Some((ns, name)) => (ns, name),
        None => ("library", repo.as_str()),
    };
    let body = RepositorySettings {
        user: namespace.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        repository_type: "image",
        description: summary.description.unwrap_or_default(),
        full_description: summary.full_description.unwrap_or_default(),
        is_private: summary.private,
        is_official: crate::auth::namespace(repo.as_str()).is_none(),
        star_count: summary.stars,
    };
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&body).expect("json")))
}
