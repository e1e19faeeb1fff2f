//! The client's errors. Texts follow docker's where docker has one; a
//! registry's own error message is shown as the registry sent it.

use berth_reference::Digest;
use serde::Deserialize;

/// One entry of a registry error body (`{"errors":[{"code":..,"message":..}]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegistryErrorEntry {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A registry answered with an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub status: u16,
    /// What the registry said, if its body was a registry error document.
    pub errors: Vec<RegistryErrorEntry>,
    /// The request, for errors that carry no registry message.
    pub url: String,
}

impl RegistryError {
    /// Whether any entry has this code (`DENIED`, `UNAUTHORIZED`, `MANIFEST_UNKNOWN`, ...).
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code.eq_ignore_ascii_case(code))
    }
}

impl std::fmt::Display for RegistryError {
    /// docker's rendering: `denied: requested access to the resource is denied`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.errors.is_empty() {
            let text = match self.status {
                401 => "unauthorized: authentication required",
                403 => "denied: requested access to the resource is denied",
                404 => "not found",
                429 => "toomanyrequests: too many requests",
                _ => "",
            };
            return if text.is_empty() {
                write!(f, "unexpected status {} from {}", self.status, self.url)
            } else {
                f.write_str(text)
            };
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let code = e.code.to_ascii_lowercase().replace('_', " ");
            if e.message.is_empty() {
                f.write_str(&code)?;
            } else {
                write!(f, "{code}: {}", e.message)?;
            }
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry refused the request; its own message.
    #[error("{0}")]
    Registry(RegistryError),
    #[error("{method} \"{url}\": {message}")]
    Network { method: String, url: String, message: String },
    #[error("malformed WWW-Authenticate challenge from {url}: {detail}")]
    MalformedChallenge { url: String, detail: String },
    #[error("{url}: {what} is larger than the {limit} bytes it may be")]
    TooLarge { url: String, what: String, limit: u64 },
    #[error("{what} is truncated: got {got} of {expected} bytes")]
    Truncated { what: String, got: u64, expected: u64 },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error(
        "layer {blob} does not match the image config: diff ID {expected} expected, {actual} found"
    )]
    DiffIdMismatch { blob: Digest, expected: Digest, actual: Digest },
    #[error("invalid manifest from {url}: {source}")]
    Manifest { url: String, source: berth_oci::ManifestError },
    #[error("no matching manifest for {wanted} in the manifest list entries (available: {})", .available.join(", "))]
    PlatformNotFound { wanted: String, available: Vec<String> },
    #[error("invalid response from {url}: {detail}")]
    InvalidResponse { url: String, detail: String },
    #[error("unsupported layer media type {0:?}")]
    UnsupportedLayer(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("berth config {path}: {detail}")]
    Config { path: String, detail: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("layer {layer}: {detail}")]
    Layer { layer: String, detail: String },
}

impl ClientError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io { context: context.into(), source }
    }

    /// The registry's error, if that is what this is.
    pub fn registry(&self) -> Option<&RegistryError> {
        match self {
            ClientError::Registry(r) => Some(r),
            _ => None,
        }
    }
}

/// Reads a registry error body (at most 64 KiB) into a [`RegistryError`].
pub(crate) async fn registry_error(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let url = resp.url().to_string();
    let body = crate::client::read_limited(resp, 64 * 1024).await.unwrap_or_default();
    ClientError::Registry(RegistryError { status, errors: parse_error_body(&body), url })
}

pub(crate) fn parse_error_body(body: &[u8]) -> Vec<RegistryErrorEntry> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<RegistryErrorEntry>,
        // Token servers answer `{"details": "..."}` or `{"error": "..."}`.
        #[serde(default)]
        details: Option<String>,
        #[serde(default)]
        error: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) if !b.errors.is_empty() => b.errors,
        Ok(b) => b
            .details
            .or(b.error)
            .map(|m| vec![RegistryErrorEntry { code: "UNAUTHORIZED".into(), message: m }])
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_registry_message_like_docker() {
        let body = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
        let e = RegistryError { status: 403, errors: parse_error_body(body), url: String::new() };
        assert_eq!(e.to_string(), "denied: requested access to the resource is denied");
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let e = RegistryError { status: 404, errors: parse_error_body(body), url: String::new() };
        assert_eq!(e.to_string(), "manifest unknown: manifest unknown");
        assert!(e.has_code("manifest_unknown"));
        let e = RegistryError { status: 401, errors: parse_error_body(b"<html>"), url: "u".into() };
        assert_eq!(e.to_string(), "unauthorized: authentication required");
        let e = RegistryError { status: 418, errors: vec![], url: "http://x/v2/".into() };
        assert_eq!(e.to_string(), "unexpected status 418 from http://x/v2/");
    }
}
