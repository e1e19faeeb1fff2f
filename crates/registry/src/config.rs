//! The server's configuration file (TOML). Every key is optional; the
//! command line and environment override the file.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/srv/berth-registry"
//! auth = false
//! service = "berth-registry"
//! signup = false                # anyone may create an account at /signup
//!
//! [limits]
//! manifest_max = 4194304        # bytes
//! blob_max = 68719476736        # bytes
//! mount_without_from = true
//! sparse_indexes = true         # accept indexes naming children not pushed
//!
//! [gc]
//! interval_minutes = 60         # 0: no periodic collection
//! grace_minutes = 30
//! upload_expiry_hours = 24
//! delete_untagged = false
//!
//! [storage]                     # absent: blobs on the filesystem under root
//! kind = "s3"                   # "fs" (the default) or "s3"
//! bucket = "berth"
//! endpoint = "http://127.0.0.1:8333"   # absent: AWS
//! region = "us-east-1"
//! access_key_id = "..."         # or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
//! secret_access_key = "..."     # in the environment; never logged
//! redirect = false              # 307 blob GETs to presigned URLs
//! public_endpoint = "https://s3.example.com"   # host in those URLs
//!
//! [metadata]
//! url = "postgres://berth@127.0.0.1:5432/berth"   # absent: SQLite under root
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::registry::Limits;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub addr: Option<String>,
    pub root: Option<PathBuf>,
    pub auth: Option<bool>,
    /// The token service name (default `berth-registry`).
    pub service: Option<String>,
    /// Open sign-up on the website (default false; needs `auth`).
    pub signup: Option<bool>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub gc: GcConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub metadata: MetadataConfig,
}

/// Where blobs live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Files under the registry root (the embedded default).
    #[default]
    Fs,
    /// An S3-compatible bucket.
    S3,
}

/// `[storage]`: the blob store.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub kind: Option<StorageKind>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub redirect: Option<bool>,
    pub public_endpoint: Option<String>,
}

/// Shows everything but the secret.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("kind", &self.kind)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("redirect", &self.redirect)
            .field("public_endpoint", &self.public_endpoint)
            .finish()
    }
}

/// `[metadata]`: the database.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// `postgres://...`; absent: SQLite under the root.
    pub url: Option<String>,
}

/// The URL may carry a password: shown only as set or not.
impl std::fmt::Debug for MetadataConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataConfig").field("url", &self.url.as_ref().map(|_| "<set>")).finish()
    }
}

impl StorageConfig {
    /// The S3 settings when `kind = "s3"`, `None` for the filesystem.
    pub fn s3(&self) -> Result<Option<crate::storage::S3Settings>, String> {
        let kind = self.kind.unwrap_or_default();
        if kind == StorageKind::Fs {
            let s3_only = [
                ("bucket", self.bucket.is_some()),
                ("endpoint", self.endpoint.is_some()),
                ("region", self.region.is_some()),
                ("access_key_id", self.access_key_id.is_some()),
                ("secret_access_key", self.secret_access_key.is_some()),
                ("redirect", self.redirect.is_some()),
                ("public_endpoint", self.public_endpoint.is_some()),
            ];
            if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
                return Err(format!("storage.{key} needs storage.kind = \"s3\""));
            }
            return Ok(None);
        }
        let bucket = self.bucket.clone().filter(|b| !b.is_empty());
        let bucket = bucket.ok_or("storage.kind = \"s3\" needs storage.bucket")?;
        for (key, url) in [("endpoint", &self.endpoint), ("public_endpoint", &self.public_endpoint)]
        {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(format!("storage.{key} must be an http:// or https:// URL"));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err("storage.access_key_id and storage.secret_access_key go together".into());
        }
        Ok(Some(crate::storage::S3Settings {
            bucket,
            endpoint: self.endpoint.clone(),
            region: self.region.clone().unwrap_or_else(|| "us-east-1".into()),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            redirect: self.redirect.unwrap_or(false),
            public_endpoint: self.public_endpoint.clone(),
        }))
    }
}

/// The server's periodic garbage collection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// Minutes between runs (default 60; 0 turns it off).
    pub interval_minutes: Option<u64>,
    /// Blobs younger than this are never collected (default 30).
    pub grace_minutes: Option<u64>,
    /// Uploads idle this long are removed (default 24).
    pub upload_expiry_hours: Option<u64>,
    /// Also delete manifests no tag reaches (default false).
    pub delete_untagged: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub manifest_max: Option<usize>,
    pub blob_max: Option<u64>,
    pub mount_without_from: Option<bool>,
    pub sparse_indexes: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid configuration {path}: {message}")]
    Parse { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: shown.clone(), message: e.to_string() })?;
        config
            .storage
            .s3()
            .map_err(|message| ConfigError::Parse { path: shown.clone(), message })?;
        if let Some(url) = &config.metadata.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            let message = "metadata.url must be a postgres:// URL".to_owned();
            return Err(ConfigError::Parse { path: shown, message });
        }
        Ok(config)
    }

    /// The periodic collection's options and interval (`None`: off).
    pub fn gc(&self) -> Option<(crate::gc::GcOptions, std::time::Duration)> {
        let minutes = self.gc.interval_minutes.unwrap_or(60);
        if minutes == 0 {
            return None;
        }
        let d = crate::gc::GcOptions::default();
        let opts = crate::gc::GcOptions {
            dry_run: false,
            grace: self
                .gc
                .grace_minutes
                .map_or(d.grace, |m| std::time::Duration::from_secs(m * 60)),
            upload_expiry: self
                .gc
                .upload_expiry_hours
                .map_or(d.upload_expiry, |h| std::time::Duration::from_secs(h * 3600)),
            delete_untagged: self.gc.delete_untagged.unwrap_or(false),
            ..d
        };
        Some((opts, std::time::Duration::from_secs(minutes * 60)))
    }

    /// The limits, defaults filled in.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            manifest_max: self.limits.manifest_max.unwrap_or(d.manifest_max),
            blob_max: self.limits.blob_max.unwrap_or(d.blob_max),
            mount_without_from: self.limits.mount_without_from.unwrap_or(d.mount_without_from),
            sparse_indexes: self.limits.sparse_indexes.unwrap_or(d.sparse_indexes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_unknown_keys() {
        let c: Config = toml::from_str("addr = \"0.0.0.0:80\"\n[limits]\nblob_max = 10\n").unwrap();
        assert_eq!(c.addr.as_deref(), Some("0.0.0.0:80"));
        assert_eq!(c.limits().blob_max, 10);
        assert_eq!(c.limits().manifest_max, crate::registry::MANIFEST_MAX);
        assert!(c.limits().sparse_indexes);
        let strict: Config = toml::from_str("[limits]\nsparse_indexes = false\n").unwrap();
        assert!(!strict.limits().sparse_indexes);
        assert!(toml::from_str::<Config>("adr = 1").is_err());
        assert_eq!(c.gc().unwrap().1.as_secs(), 3600);
        let off: Config = toml::from_str("[gc]\ninterval_minutes = 0\n").unwrap();
        assert!(off.gc().is_none());
        let g: Config = toml::from_str("[gc]\ngrace_minutes = 5\ndelete_untagged = true").unwrap();
        assert_eq!(g.gc().unwrap().0.grace.as_secs(), 300);
        assert!(g.gc().unwrap().0.delete_untagged);
        // Nothing configured: filesystem and SQLite.
        assert!(c.storage.s3().unwrap().is_none());
        assert!(c.metadata.url.is_none());
    }

    #[test]
    fn s3_and_postgres_keys() {
        let text = r#"
            [storage]
            kind = "s3"
            bucket = "berth"
            endpoint = "http://127.0.0.1:8333"
            region = "eu-west-1"
            access_key_id = "AKIDEXAMPLE"
            secret_access_key = "very-secret"
            redirect = true
            [metadata]
            url = "postgres://berth:pw@127.0.0.1:5432/berth"
        "#;
        let c: Config = toml::from_str(text).unwrap();
        let s3 = c.storage.s3().unwrap().unwrap();
        assert_eq!(s3.bucket, "berth");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(s3.region, "eu-west-1");
        assert!(s3.redirect);
        // Secrets never reach a log line through Debug.
        let shown = format!("{c:?} {s3:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("pw@"), "{shown}");
        let no_bucket: Config = toml::from_str("[storage]\nkind = \"s3\"").unwrap();
        assert!(no_bucket.storage.s3().unwrap_err().contains("bucket"));
        let fs_with_bucket: Config = toml::from_str("[storage]\nbucket = \"b\"").unwrap();
        assert!(fs_with_bucket.storage.s3().is_err());
        assert!(toml::from_str::<Config>("[storage]\nkind = \"gcs\"").is_err());
        assert!(toml::from_str::<Config>("[metadata]\nuri = \"x\"").is_err());
        let half: Config =
            toml::from_str("[storage]\nkind = \"s3\"\nbucket = \"b\"\naccess_key_id = \"k\"")
                .unwrap();
        assert!(half.storage.s3().is_err());
    }
}
