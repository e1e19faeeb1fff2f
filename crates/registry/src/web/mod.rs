//! The registry's website: server-rendered pages (maud templates compiled
//! into the binary), the tutorials' "head over to the hub" half of Docker
//! Hub. Pages call the services (`Registry`, `Hub`, `Auth`), never the
//! metadata directly, and every list is one paged query filtered by who is
//! looking, so a private repository is a 404, and absent from every list
//! and count, for anyone who may not pull it.
//!
//! - [`session`]: sessions, CSRF tokens, `Origin` checks, login throttling.
//! - [`markdown`]: overviews rendered, then sanitised.
//! - [`assets`]: the stylesheet and the small script, content-hashed.
//! - [`images`]: platforms, sizes, layers and history for the tags pages.
//! - `pages`: the pages themselves; `forms`: what their forms change.
//!
//! Without accounts (no `--auth`) the pages are read-only and show
//! everything, as the registry itself does.

pub mod assets;
mod forms;
pub mod images;
pub mod markdown;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;

use crate::api::AppState;
use crate::error::Error;

pub use session::{WebConfig, WebState};

/// Longest form body read.
const FORM_MAX: usize = 256 * 1024;

/// The website's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/search", get(pages::search))
        .route("/login", get(forms::login_page).post(forms::login))
        .route("/logout", axum::routing::post(forms::logout))
        .route("/signup", get(forms::signup_page).post(forms::signup))
        .route("/settings", get(forms::account_page).post(forms::account))
        .route("/admin", get(forms::admin_page).post(forms::admin))
        .route("/u/{name}", get(pages::namespace_page))
        .route("/_/{*name}", get(pages::official))
        .route("/r/{*rest}", get(pages::repository).post(forms::repository))
        .route("/static/{file}", get(static_file))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// The headers every page and asset carries.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' https:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    res
}

async fn static_file(req: Request) -> Response {
    match assets::find(req.uri().path()) {
        Some(a) => {
            let mut res = Response::new(Body::from(a.body));
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            res
        }
        None => {
            let mut res = Response::new(Body::from("not found\n"));
            *res.status_mut() = StatusCode::NOT_FOUND;
            res
        }
    }
}

/// An HTML answer with the visitor's cookies.
pub(crate) fn html(status: StatusCode, markup: maud::Markup, cookies: &[String]) -> Response {
    let body = markup.into_string();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    res
}

/// A `303 See Other` to `to` (a path of this site), with cookies.
pub(crate) fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SEE_OTHER;
    let location = if to.starts_with('/') && !to.starts_with("//") { to } else { "/" };
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
    );
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    res
}

/// An error as a page, with the status the error table gives it.
pub(crate) fn error_page(app: &AppState, err: &Error) -> Response {
    let status =
        StatusCode::from_u16(err.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(error = %err, "page failed");
    }
    let (title, text) = match status {
        StatusCode::NOT_FOUND => {
            ("Not found", "There is nothing here, or you may not see it.".to_owned())
        }
        StatusCode::FORBIDDEN => ("Forbidden", "You may not do that.".to_owned()),
        StatusCode::UNAUTHORIZED => ("Sign in required", "Sign in to do that.".to_owned()),
        s if s.is_server_error() => {
            ("Something went wrong", "The registry could not answer; try again.".to_owned())
        }
        _ => ("Cannot do that", err.detail().unwrap_or_else(|| err.to_string())),
    };
    let markup = pages::bare_layout(
        app,
        title,
        maud::html! {
            h1 { (title) }
            p { (text) }
            p { a href="/" { "Back to the start page" } }
        },
    );
    html(status, markup, &[])
}

/// The host the site is reached at, for `docker pull HOST/...`.
pub(crate) fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost")
        .to_owned()
}

/// A form body's fields, decoded.
pub(crate) async fn form(body: Body) -> Result<Vec<(String, String)>, Error> {
    let body = axum::body::to_bytes(body, FORM_MAX)
        .await
        .map_err(|_| Error::InvalidRequest("the form is too large".into()))?;
    Ok(String::from_utf8_lossy(&body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (crate::api::percent_decode(k), crate::api::percent_decode(v))
        })
        .collect())
}

pub(crate) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
