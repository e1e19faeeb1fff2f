//! The server's configuration file (TOML). Every key is optional; the
//! command line and environment override the file.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/srv/berth-registry"
//! auth = false
//! service = "berth-registry"
//!
//! [limits]
//! manifest_max = 4194304        # bytes
//! blob_max = 68719476736        # bytes
//! mount_without_from = true
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
    #[serde(default)]
    pub limits: LimitsConfig,
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
    }
}
