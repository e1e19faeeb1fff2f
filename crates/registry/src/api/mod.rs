//! The HTTP face of the registry: the OCI Distribution API under `/v2/`.
//!
//! Repository names contain slashes, so axum only hands us the path after
//! `/v2/`; [`route::Route::parse`] splits it on the spec's fixed suffixes
//! (`/manifests/<ref>`, `/blobs/<digest>`, `/blobs/uploads/<id>`,
//! `/tags/list`, `/referrers/<digest>`). Handlers turn requests into
//! [`Registry`] calls; errors become OCI error bodies in [`response`].

mod access;
mod handlers;
mod hub;
mod response;
mod route;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::any;

use crate::registry::Registry;

pub(crate) use hub::hub_name as hub_name_for;
pub use response::error_response;
pub use route::Route;

/// What every request handler can reach.
pub struct AppState {
    pub registry: Registry,
    pub hub: crate::hub::Hub,
    pub metrics: crate::metrics::Metrics,
    /// `None`: an open registry (anonymous pull and push, like `registry:2`).
    pub auth: Option<crate::auth::Auth>,
    /// `http` or `https`, for the token realm URL.
    pub scheme: &'static str,
    /// The website's settings and in-memory state.
    pub web: crate::web::WebState,
    /// Platform facts of manifests, for the tags pages.
    pub images: crate::web::images::ImageFacts,
}

/// The `/v2/` API as an axum router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", any(handlers::base))
        .route("/v2/", any(handlers::base))
        .route("/v2/{*rest}", any(handlers::dispatch))
        .route("/token", axum::routing::get(handlers::token).post(handlers::token_oauth))
        .route("/v1/_ping", axum::routing::get(hub::ping))
        .route("/v1/search", axum::routing::get(hub::search))
        .route("/v1/repositories/{*rest}", any(hub::repositories))
        .layer(axum::middleware::map_response(api_version_header))
        .with_state(state)
}

async fn api_version_header(mut res: Response) -> Response {
    res.headers_mut()
        .insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    res
}

/// Splits a raw query string into decoded `(key, value)` pairs.
pub(crate) fn query_pairs(req: &Request) -> Vec<(String, String)> {
    let Some(q) = req.uri().query() else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (as a space, form style).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |x: u8| (x as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("a%2Bb%2fc"), "a+b/c");
        assert_eq!(percent_decode("x+y"), "x y");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }
}
