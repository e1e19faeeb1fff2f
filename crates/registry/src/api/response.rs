//! Turning [`Error`]s into OCI error responses: the only place that does.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::error::Error;

/// `{"errors":[{"code","message","detail"}]}` with the table's status.
/// `head`: the request was HEAD, so no body is sent.
pub fn error_response(err: &Error, head: bool) -> Response {
    let code = err.code();
    if code.status() >= 500 {
        tracing::error!(error = %err, "request failed");
    }
    let body = serde_json::json!({
        "errors": [{
            "code": code.code(),
            "message": code.message(),
            "detail": err.detail(),
        }]
    });
    let bytes = serde_json::to_vec(&body).expect("json serialises");
    let len = bytes.len();
    let mut res = Response::new(if head { Body::empty() } else { Body::from(bytes) });
    *res.status_mut() = StatusCode::from_u16(code.status()).expect("table holds valid statuses");
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Error::TooManyRequests { retry_after } = err {
        h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
    }
    if let Some(challenge) = err.challenge()
        && let Ok(v) = HeaderValue::from_str(&challenge.header_value())
    {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    res
}
