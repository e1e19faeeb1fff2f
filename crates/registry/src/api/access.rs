//! Authentication and authorisation of `/v2/` requests: which access a
//! route needs, and the 401/403 answers when it is missing.

use axum::http::{HeaderMap, Method, header};

use super::route::Route;
use crate::auth::{Action, Auth, Challenge, Identity};
use crate::error::{Error, Result};
use berth_reference::RepoName;

/// The token realm for a request that reached us as `Host`.
pub fn challenge(
    auth: &Auth,
    scheme: &str,
    headers: &HeaderMap,
    scope: Option<String>,
) -> Challenge {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    Challenge {
        realm: format!("{scheme}://{host}/token"),
        service: auth.service().to_owned(),
        scope,
        insufficient_scope: false,
    }
}

/// The repository actions a route needs.
pub fn needs(route: &Route, method: &Method) -> Vec<(RepoName, Action)> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        Route::Catalog => Vec::new(),
        Route::Manifest(r, _) | Route::Blob(r, _) if *method == Method::DELETE => {
            vec![(r.clone(), Action::Delete)]
        }
        Route::Manifest(r, _) | Route::Blob(r, _) | Route::Tags(r) | Route::Referrers(r, _)
            if read =>
        {
            vec![(r.clone(), Action::Pull)]
        }
        Route::Manifest(r, _) | Route::Blob(r, _) | Route::Upload(r, _) => {
            vec![(r.clone(), Action::Pull), (r.clone(), Action::Push)]
        }
        Route::Tags(r) | Route::Referrers(r, _) => vec![(r.clone(), Action::Pull)],
    }
}

/// Identifies the caller and checks that it may do what `route` needs.
/// A challenge names the repository as the client spelled it (`shown`), so
/// the token it asks for is for the name it uses.
pub async fn authorize(
    auth: &Auth,
    scheme: &str,
    route: &Route,
    shown: &Route,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Identity> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let identity = auth.identify(authorization).await.map_err(|e| match e {
        Error::Unauthorized(None) => {
            Error::Unauthorized(Some(challenge(auth, scheme, headers, None)))
        }
        other => other,
    })?;
    let needed = needs(route, method);
    for (repo, action) in &needed {
        if auth.permits(&identity, repo.as_str(), *action).await? {
            continue;
        }
        let actions: Vec<&str> =
            needed.iter().filter(|(r, _)| r == repo).map(|(_, a)| a.as_str()).collect();
        let spelled = shown.repo().unwrap_or(repo);
        let scope = format!("repository:{spelled}:{}", actions.join(","));
        let mut c = challenge(auth, scheme, headers, Some(scope));
        return Err(match identity {
            Identity::Anonymous => Error::Unauthorized(Some(c)),
            Identity::Token(_) => {
                c.insufficient_scope = true;
                Error::InsufficientScope(c)
            }
            Identity::User(_) | Identity::AccessToken(..) => Error::Denied,
        });
    }
    Ok(identity)
}
