//! The image configuration: the JSON document whose sha256 is an image's ID.
//!
//! Docker's and OCI's configs are the same document; Docker adds a few legacy
//! fields (`container`, `container_config`, `docker_version`). Every field
//! this struct does not name is kept in `extra`, but identity never depends on
//! that: an image's ID is the digest of the config bytes as stored.

use std::collections::BTreeMap;

use berth_reference::Digest;
use serde::{Deserialize, Serialize};

/// An image configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ImageConfig {
    /// Parses a config, refusing documents that are not JSON objects.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Layer diff IDs, bottom first.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.rootfs.diff_ids
    }

    /// The image's labels (empty when there are none).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default()
    }
}

/// `rootfs`: the layers' uncompressed digests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs { kind: "layers".to_owned(), diff_ids: Vec::new() }
    }
}

/// One step of an image's history. Steps with `empty_layer` made no layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The runtime defaults of an image (the config's `config`), Docker field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    /// Docker's legacy fields (Hostname, Image, AttachStdin, ...), kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `EXPOSE 80`, `80/udp`, `8000-8001/tcp` as the `ExposedPorts` key docker
/// writes (`port/proto`, the protocol lowercased, tcp by default); `None`
/// for what is not a port.
pub fn exposed_port_key(word: &str) -> Option<String> {
    let (ports, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let valid = |p: &str| p.parse::<u16>().is_ok_and(|n| n > 0);
    let ok = match ports.split_once('-') {
        Some((a, b)) => valid(a) && valid(b),
        None => valid(ports),
    };
    (ok && matches!(proto.as_str(), "tcp" | "udp" | "sctp")).then(|| format!("{ports}/{proto}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_ports_become_dockers_keys() {
        assert_eq!(exposed_port_key("80").as_deref(), Some("80/tcp"));
        assert_eq!(exposed_port_key("53/UDP").as_deref(), Some("53/udp"));
        assert_eq!(exposed_port_key("8000-8001/tcp").as_deref(), Some("8000-8001/tcp"));
        assert_eq!(exposed_port_key("http"), None);
        assert_eq!(exposed_port_key("0"), None);
        assert_eq!(exposed_port_key("80/icmp"), None);
    }

    #[test]
    fn docker_config_round_trips_its_fields() {
        let json = r#"{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05Z",
            "config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"Labels":{"a":"b"},"Hostname":""},
            "rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
            "history":[{"created_by":"COPY busybox /bin/busybox"},{"created_by":"CMD","empty_layer":true}],
            "docker_version":"20.10.24"}"#;
        let c = ImageConfig::parse(json.as_bytes()).unwrap();
        assert_eq!(c.diff_ids().len(), 1);
        assert_eq!(c.labels().get("a").map(String::as_str), Some("b"));
        assert!(c.history[1].empty_layer);
        assert_eq!(c.extra["docker_version"], "20.10.24");
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.cmd.as_deref(), Some(&["/bin/sh".to_owned()][..]));
        assert!(cc.extra.contains_key("Hostname"));
        let again: ImageConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }
}
