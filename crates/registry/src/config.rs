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
//!
//! [gc]
//! interval_minutes = 60         # 0: no periodic collection
//! grace_minutes = 30
//! upload_expiry_hours = 24
//! delete_untagged = false
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
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: shown, message: e.to_string() })
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
        assert!(toml::from_str::<Config>("adr = 1").is_err());
        assert_eq!(c.gc().unwrap().1.as_secs(), 3600);
        let off: Config = toml::from_str("[gc]\ninterval_minutes = 0\n").unwrap();
        assert!(off.gc().is_none());
        let g: Config = toml::from_str("[gc]\ngrace_minutes = 5\ndelete_untagged = true").unwrap();
        assert_eq!(g.gc().unwrap().0.grace.as_secs(), 300);
        assert!(g.gc().unwrap().0.delete_untagged);
    }
}
