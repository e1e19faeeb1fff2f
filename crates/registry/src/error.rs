//! The registry's errors, and the one table that maps them to the OCI
//! Distribution error codes and HTTP statuses.
//!
//! Backends report their own typed errors ([`StorageError`],
//! [`MetadataError`]); the [`crate::Registry`] turns them into [`Error`], and
//! only [`ErrorCode`] knows what a client sees. Nothing else in the crate
//! picks a status code for an error.

use crate::metadata::MetadataError;
use crate::storage::StorageError;

/// The error codes of the OCI Distribution Specification (plus `UNKNOWN` for
/// server faults), with their message and HTTP status: the single table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    /// A manifest over the size limit: `413 Payload Too Large`, as the
    /// spec asks of registries that enforce one.
    ManifestTooLarge,
    /// More `?tag=` parameters than one push takes: `414 URI Too Long`,
    /// the status the spec allows for it.
    TooManyTags,
    Unauthorized,
    Denied,
    /// A token without the access asked for: `DENIED` with a 401 and a
    /// challenge, which docker prints as "denied: requested access to the
    /// resource is denied".
    InsufficientScope,
    /// An unsupported manifest or content type.
    Unsupported,
    /// An unsupported digest algorithm in a request parameter.
    UnsupportedAlgorithm,
    TooManyRequests,
    RangeInvalid,
    /// A malformed request to an endpoint outside the distribution API
    /// (Docker Hub's repository settings).
    InvalidRequest,
    Unknown,
}

impl ErrorCode {
    /// `(code, message, HTTP status)`.
    pub fn entry(self) -> (&'static str, &'static str, u16) {
        use ErrorCode::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", "blob unknown to registry", 404),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", "blob upload invalid", 400),
            BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404),
            DigestInvalid => {
                ("DIGEST_INVALID", "provided digest did not match uploaded content", 400)
            }
            ManifestBlobUnknown => ("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", 404),
            ManifestInvalid => ("MANIFEST_INVALID", "manifest invalid", 400),
            ManifestUnknown => ("MANIFEST_UNKNOWN", "manifest unknown", 404),
            NameInvalid => ("NAME_INVALID", "invalid repository name", 400),
            NameUnknown => ("NAME_UNKNOWN", "repository name not known to registry", 404),
            SizeInvalid => ("SIZE_INVALID", "provided length did not match content length", 400),
            ManifestTooLarge => ("SIZE_INVALID", "manifest too large", 413),
            TooManyTags => ("MANIFEST_INVALID", "too many tags in one push", 414),
            Unauthorized => ("UNAUTHORIZED", "authentication required", 401),
            Denied => ("DENIED", "requested access to the resource is denied", 403),
            InsufficientScope => ("DENIED", "requested access to the resource is denied", 401),
            Unsupported => ("UNSUPPORTED", "The operation is unsupported.", 415),
            UnsupportedAlgorithm => ("UNSUPPORTED", "unsupported digest algorithm", 400),
            TooManyRequests => ("TOOMANYREQUESTS", "too many requests", 429),
            RangeInvalid => ("RANGE_INVALID", "invalid content range", 416),
            InvalidRequest => ("INVALID_REQUEST", "invalid request", 400),
            Unknown => ("UNKNOWN", "unknown error", 500),
        }
    }

    pub fn code(self) -> &'static str {
        self.entry().0
    }

    pub fn message(self) -> &'static str {
        self.entry().1
    }

    pub fn status(self) -> u16 {
        self.entry().2
    }
}

/// What went wrong in a registry operation. The string is the `detail` shown
/// to the client: it names the offending digest, tag or header, never paths.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob unknown: {0}")]
    BlobUnknown(String),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown")]
    BlobUploadUnknown,
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("size invalid: {0}")]
    SizeInvalid(String),
    #[error("manifest too large: {0}")]
    ManifestTooLarge(String),
    #[error("too many tags: {0}")]
    TooManyTags(String),
    /// No or bad credentials; the challenge tells the client where to log in.
    #[error("authentication required")]
    Unauthorized(Option<Challenge>),
    #[error("requested access to the resource is denied")]
    Denied,
    #[error("requested access to the resource is denied")]
    InsufficientScope(Challenge),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("unsupported digest algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// Too many failed logins; the client may retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after: u64 },
    #[error("range invalid: {0}")]
    RangeInvalid(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Another process holds the collection lease.
    #[error("garbage collection is already running on another replica")]
    CollectionRunning,
    #[error("storage: {0}")]
    Storage(StorageError),
    #[error("metadata: {0}")]
    Metadata(MetadataError),
}

impl Error {
    /// The table row for this error.
    pub fn code(&self) -> ErrorCode {
        use Error::*;
        match self {
            BlobUnknown(_) => ErrorCode::BlobUnknown,
            BlobUploadInvalid(_) => ErrorCode::BlobUploadInvalid,
            BlobUploadUnknown => ErrorCode::BlobUploadUnknown,
            DigestInvalid(_) => ErrorCode::DigestInvalid,
            ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            NameInvalid(_) => ErrorCode::NameInvalid,
            NameUnknown(_) => ErrorCode::NameUnknown,
            SizeInvalid(_) => ErrorCode::SizeInvalid,
            ManifestTooLarge(_) => ErrorCode::ManifestTooLarge,
            TooManyTags(_) => ErrorCode::TooManyTags,
            Unauthorized(_) => ErrorCode::Unauthorized,
            Denied => ErrorCode::Denied,
            InsufficientScope(_) => ErrorCode::InsufficientScope,
            Unsupported(_) => ErrorCode::Unsupported,
            UnsupportedAlgorithm(_) => ErrorCode::UnsupportedAlgorithm,
            TooManyRequests { .. } => ErrorCode::TooManyRequests,
            RangeInvalid(_) => ErrorCode::RangeInvalid,
            InvalidRequest(_) => ErrorCode::InvalidRequest,
            CollectionRunning | Storage(_) | Metadata(_) => ErrorCode::Unknown,
        }
    }

    /// The detail a client may see (server faults stay in the log).
    /// The `WWW-Authenticate` challenge to send with this error, if any.
    pub fn challenge(&self) -> Option<&Challenge> {
        match self {
            Error::Unauthorized(c) => c.as_ref(),
            Error::InsufficientScope(c) => Some(c),
            _ => None,
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Error::Storage(_) | Error::Metadata(_) => None,
            Error::Unauthorized(_) | Error::Denied | Error::TooManyRequests { .. } => None,
            Error::InsufficientScope(_) => None,
            Error::BlobUploadUnknown => None,
            other => Some(other.to_string()),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        match e {
            StorageError::NotFound => Error::BlobUnknown("not found".into()),
            StorageError::UploadNotFound => Error::BlobUploadUnknown,
            StorageError::DigestMismatch { expected, actual } => {
                Error::DigestInvalid(format!("expected {expected}, content hashes to {actual}"))
            }
            StorageError::TooLarge { limit } => {
                Error::SizeInvalid(format!("content exceeds {limit} bytes"))
            }
            StorageError::Short { expected, received } => {
                Error::SizeInvalid(format!("declared {expected} bytes, received {received}"))
            }
            StorageError::OffsetMismatch { expected, given } => Error::RangeInvalid(format!(
                "upload is at offset {expected}, chunk starts at {given}"
            )),
            StorageError::InvalidRange => Error::RangeInvalid("range not satisfiable".into()),
            // 416: the client asks where the upload stands and resumes.
            StorageError::UploadBusy => {
                Error::RangeInvalid("another request is writing this upload".into())
            }
            other => Error::Storage(other),
        }
    }
}

impl From<MetadataError> for Error {
    fn from(e: MetadataError) -> Error {
        match e {
            MetadataError::MissingBlob(d) => Error::ManifestBlobUnknown(d.to_string()),
            MetadataError::CollectionRunning => Error::CollectionRunning,
            other => Error::Metadata(other),
        }
    }
}

impl From<berth_reference::InvalidRepoName> for Error {
    fn from(e: berth_reference::InvalidRepoName) -> Error {
        Error::NameInvalid(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a 401 tells the client to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub service: String,
    /// `repository:NAME:pull,push`, when a repository was involved.
    pub scope: Option<String>,
    /// The token lacked the access: `error="insufficient_scope"`.
    pub insufficient_scope: bool,
}

impl Challenge {
    /// The `WWW-Authenticate` value.
    pub fn header_value(&self) -> String {
        let mut v = format!("Bearer realm=\"{}\",service=\"{}\"", self.realm, self.service);
        if let Some(scope) = &self.scope {
            v.push_str(&format!(",scope=\"{scope}\""));
        }
        if self.insufficient_scope {
            v.push_str(",error=\"insufficient_scope\"");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_statuses() {
        assert_eq!(ErrorCode::BlobUnknown.status(), 404);
        assert_eq!(ErrorCode::RangeInvalid.status(), 416);
        assert_eq!(ErrorCode::Denied.code(), "DENIED");
        assert_eq!(Error::from(StorageError::UploadNotFound).code(), ErrorCode::BlobUploadUnknown);
    }
}
