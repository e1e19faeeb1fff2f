//! Which URL a registry name means.
//!
//! - `docker.io` (and `index.docker.io`) is Docker Hub, whose API lives on
//!   `registry-1.docker.io`; its credentials are filed under
//!   `https://index.docker.io/v1/`, as docker files them.
//! - HTTPS by default; plain HTTP for `localhost`, `127.0.0.0/8`, `::1` and
//!   for registries listed as insecure in berth's config file (what docker
//!   does with `insecure-registries`).
//! - Mirrors are tried before the registry itself, for pulls only.
//!
//! berth's config file is TOML, read from the first of `$BERTH_CONFIG`,
//! `$XDG_CONFIG_HOME/berth/config.toml` (default `~/.config/berth/config.toml`)
//! and `/etc/berth/config.toml` that exists:
//!
//! ```toml
//! insecure-registries = ["registry.lan:5000", "10.0.0.7"]
//! max-concurrent-downloads = 6
//! max-concurrent-uploads = 5
//! upload-chunk-size = "64MiB"   # or bytes; 0 sends each blob in one PATCH
//! runtime = "crun"              # the OCI runtime of `berth run` (a name or a path)
//! [mirrors]
//! "docker.io" = ["https://mirror.lan"]
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ClientError;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Docker Hub's search (v1) host.
pub const DOCKER_HUB_INDEX: &str = "index.docker.io";
/// The key docker files Docker Hub credentials under.
pub const DOCKER_HUB_CREDENTIALS_KEY: &str = "https://index.docker.io/v1/";

/// berth's client settings (see the module documentation for the file).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClientConfig {
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    #[serde(default)]
    pub mirrors: HashMap<String, Vec<String>>,
    #[serde(default = "default_downloads")]
    pub max_concurrent_downloads: usize,
    #[serde(default = "default_uploads")]
    pub max_concurrent_uploads: usize,
    /// Size of the PATCH chunks a large blob is pushed in.
    #[serde(default = "default_chunk_size", deserialize_with = "byte_size")]
    pub upload_chunk_size: u64,
    /// The OCI runtime new containers get when `--runtime` is not given
    /// (a name looked up in PATH, or a path); runc when unset. The one
    /// setting here that is not the client's: berth has one config file.
    #[serde(default)]
    pub runtime: Option<String>,
}

/// Large enough that per-request overhead does not show, small enough that
/// a failure costs little: what is resent is at most one chunk.
pub const DEFAULT_UPLOAD_CHUNK_SIZE: u64 = 64 << 20;

fn default_chunk_size() -> u64 {
    DEFAULT_UPLOAD_CHUNK_SIZE
}

/// A size as a number of bytes or a string with a unit (`512KiB`, `64MiB`,
/// `1GB`).
fn byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let text = match Size::deserialize(d)? {
        Size::Bytes(n) => return Ok(n),
        Size::Text(t) => t,
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(serde::de::Error::custom(format!("invalid size {text:?}"))),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| serde::de::Error::custom(format!("invalid size {text:?}")))
}

fn default_downloads() -> usize {
    6
}
fn default_uploads() -> usize {
    5
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            mirrors: HashMap::new(),
            max_concurrent_downloads: default_downloads(),
            max_concurrent_uploads: default_uploads(),
            upload_chunk_size: default_chunk_size(),
            runtime: None,
        }
    }
}

impl ClientConfig {
    /// Parses a config file's text.
    pub fn from_toml(text: &str, path: &Path) -> Result<ClientConfig, ClientError> {
        toml::from_str(text).map_err(|e| ClientError::Config {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// The config file berth reads, if one exists.
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("BERTH_CONFIG").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("berth/config.toml"));
        user.into_iter().chain([PathBuf::from("/etc/berth/config.toml")]).find(|p| p.exists())
    }

    /// Loads the config file, or the defaults when there is none.
    pub fn load() -> Result<ClientConfig, ClientError> {
        let Some(path) = Self::path() else { return Ok(ClientConfig::default()) };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_toml(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
            Err(e) => {
                Err(ClientError::Config { path: path.display().to_string(), detail: e.to_string() })
            }
        }
    }

    /// Whether `domain` is spoken to over plain HTTP.
    pub fn is_insecure(&self, domain: &str) -> bool {
        is_loopback(domain)
            || self.insecure_registries.iter().any(|r| r == domain || r == host_of(domain))
    }

    /// The base URL of the registry API for `domain` (`https://registry-1.docker.io`).
    pub fn base_url(&self, domain: &str) -> String {
        let host = api_host(domain);
        let scheme = if self.is_insecure(domain) { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    /// Base URLs to pull from, mirrors first, the registry itself last.
    pub fn pull_endpoints(&self, domain: &str) -> Vec<String> {
        let domain = canonical_domain(domain);
        let mut out: Vec<String> = self
            .mirrors
            .get(domain)
            .into_iter()
            .flatten()
            .map(|m| {
                let m = m.trim_end_matches('/');
                if m.contains("://") {
                    m.to_owned()
                } else {
                    let scheme = if self.is_insecure(m) { "http" } else { "https" };
                    format!("{scheme}://{m}")
                }
            })
            .collect();
        out.push(self.base_url(domain));
        out
    }
}

/// `index.docker.io` → `docker.io`; other names unchanged.
pub fn canonical_domain(domain: &str) -> &str {
    if domain == DOCKER_HUB_INDEX || domain == DOCKER_HUB_API { DOCKER_HUB } else { domain }
}

/// The host serving the registry API for a reference's domain.
pub fn api_host(domain: &str) -> &str {
    if canonical_domain(domain) == DOCKER_HUB { DOCKER_HUB_API } else { domain }
}

/// The key credentials for `domain` are filed under in docker's config.
pub fn credentials_key(domain: &str) -> String {
    if canonical_domain(domain) == DOCKER_HUB {
        DOCKER_HUB_CREDENTIALS_KEY.to_owned()
    } else {
        domain.to_owned()
    }
}

/// A `SERVER` argument of login/logout (`https://host:5000/v2/`, `host:5000`,
/// empty for Docker Hub) as a registry domain.
pub fn server_to_domain(server: &str) -> String {
    let s = server.trim();
    if s.is_empty() {
        return DOCKER_HUB.to_owned();
    }
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let host = s.split('/').next().unwrap_or(s);
    canonical_domain(host).to_owned()
}

/// The host part of `host[:port]` (brackets kept off IPv6 literals).
fn host_of(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match domain.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => domain,
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(domain: &str) -> bool {
    let host = host_of(domain);
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_and_loopback_mapping() {
        let c = ClientConfig::default();
        assert_eq!(c.base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(c.base_url("index.docker.io"), "https://registry-1.docker.io");
        assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(c.base_url("127.8.9.10"), "http://127.8.9.10");
        assert_eq!(c.base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(c.base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(c.base_url("quay.io"), "https://quay.io");
        assert_eq!(c.base_url("128.0.0.1:5000"), "https://128.0.0.1:5000");
        assert_eq!(credentials_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(credentials_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(server_to_domain("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(server_to_domain(""), "docker.io");
        assert_eq!(server_to_domain("http://reg.lan:5000/v2/"), "reg.lan:5000");
    }

    #[test]
    fn config_file_marks_insecure_registries_and_mirrors() {
        let text = r#"
            insecure-registries = ["reg.lan:5000", "10.1.2.3"]
            max-concurrent-downloads = 8
            [mirrors]
            "docker.io" = ["mirror.lan:5000", "https://m2.example/"]
        "#;
        let c = ClientConfig::from_toml(text, Path::new("x")).unwrap();
        assert_eq!(c.base_url("reg.lan:5000"), "http://reg.lan:5000");
        assert_eq!(c.base_url("10.1.2.3:443"), "http://10.1.2.3:443");
        assert_eq!(c.base_url("reg.lan:5001"), "https://reg.lan:5001");
        assert_eq!(c.max_concurrent_downloads, 8);
        assert_eq!(c.max_concurrent_uploads, 5);
        assert_eq!(c.upload_chunk_size, DEFAULT_UPLOAD_CHUNK_SIZE);
        for (text, size) in
            [("1048576", 1 << 20), ("\"8MiB\"", 8 << 20), ("\"2 GB\"", 2_000_000_000)]
        {
            let c = ClientConfig::from_toml(&format!("upload-chunk-size = {text}"), Path::new("x"));
            assert_eq!(c.unwrap().upload_chunk_size, size, "{text}");
        }
        let bad = ClientConfig::from_toml("upload-chunk-size = \"8 parsecs\"", Path::new("x"));
        assert!(bad.unwrap_err().to_string().contains("invalid size \"8 parsecs\""));
        assert_eq!(
            c.pull_endpoints("docker.io"),
            ["https://mirror.lan:5000", "https://m2.example", "https://registry-1.docker.io"]
        );
        assert_eq!(c.pull_endpoints("quay.io"), ["https://quay.io"]);
        let bad = ClientConfig::from_toml("insecure = 1", Path::new("/etc/berth/config.toml"));
        assert!(bad.unwrap_err().to_string().starts_with("berth config /etc/berth/config.toml"));
    }
}
