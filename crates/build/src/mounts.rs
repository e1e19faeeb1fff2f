//! `RUN --mount=...`: what a RUN sees beside the image, never kept in its
//! layer: a bind of the context or of another stage (read-only unless
//! `rw`), a cache directory that outlives the build (kept in the store,
//! by `id`), a tmpfs, or a secret file from `--secret`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_reference::Digest;

/// One `--mount` flag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    Bind { target: String, source: String, from: Option<String>, rw: bool },
    Cache { target: String, id: String, mode: u32, uid: u32, gid: u32 },
    Tmpfs { target: String, size: Option<u64> },
    Secret { target: String, id: String, required: bool, mode: u32, uid: u32, gid: u32 },
}

impl MountSpec {
    /// Parses `type=cache,target=/root/.cache,id=x` (docker's CSV form).
    pub fn parse(value: &str) -> Result<MountSpec, String> {
        let mut fields: HashMap<String, String> = HashMap::new();
        let mut flags: Vec<String> = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((k, v)) => {
                    fields.insert(k.to_ascii_lowercase(), v.to_owned());
                }
                None => flags.push(part.to_ascii_lowercase()),
            }
        }
        let kind = fields.remove("type").unwrap_or_else(|| "bind".to_owned());
        let target = ["target", "dst", "destination"]
            .iter()
            .find_map(|k| fields.remove(*k))
            .filter(|t| !t.is_empty());
        let flag = |name: &str, fields: &HashMap<String, String>| {
            flags.iter().any(|f| f == name)
                || fields.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        let number = |key: &str, default: u32, radix: u32| -> Result<u32, String> {
            match fields.get(key) {
                Some(v) => {
                    u32::from_str_radix(v, radix).map_err(|_| format!("invalid {key} {v:?}"))
                }
                None => Ok(default),
            }
        };
        Ok(match kind.as_str() {
            "bind" => MountSpec::Bind {
                target: target.ok_or("mount type bind needs a target")?,
                source: fields.get("source").or(fields.get("src")).cloned().unwrap_or_default(),
                from: fields.get("from").cloned(),
                rw: flag("rw", &fields) || flag("readwrite", &fields),
            },
            "cache" => {
                let target = target.ok_or("mount type cache needs a target")?;
                MountSpec::Cache {
                    id: fields.get("id").cloned().unwrap_or_else(|| target.clone()),
                    target,
                    mode: number("mode", 0o755, 8)?,
                    uid: number("uid", 0, 10)?,
                    gid: number("gid", 0, 10)?,
                }
            }
            "tmpfs" => MountSpec::Tmpfs {
                target: target.ok_or("mount type tmpfs needs a target")?,
                size: match fields.get("size") {
                    Some(s) => Some(s.parse().map_err(|_| format!("invalid size {s:?}"))?),
                    None => None,
                },
            },
            "secret" => {
                let id = fields
                    .get("id")
                    .cloned()
                    .or_else(|| {
                        target.as_deref().and_then(|t| t.rsplit('/').next()).map(str::to_owned)
                    })
                    .ok_or("mount type secret needs an id or a target")?;
                MountSpec::Secret {
                    target: target.unwrap_or_else(|| format!("/run/secrets/{id}")),
                    id,
                    required: flag("required", &fields),
                    mode: number("mode", 0o400, 8)?,
                    uid: number("uid", 0, 10)?,
                    gid: number("gid", 0, 10)?,
                }
            }
            "ssh" => return Err("mount type ssh is not supported by berth yet".to_owned()),
            other => return Err(format!("unsupported mount type {other:?}")),
        })
    }

    pub fn target(&self) -> &str {
        match self {
            MountSpec::Bind { target, .. }
            | MountSpec::Cache { target, .. }
            | MountSpec::Tmpfs { target, .. }
            | MountSpec::Secret { target, .. } => target,
        }
    }
}

/// A cache mount's directory: `<root>/build-mounts/<sha256 of id>`, made
/// on first use with the mount's mode and owner.
pub fn cache_dir(
    store_root: &Path,
    id: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = store_root.join("build-mounts").join(Digest::sha256_of(id.as_bytes()).hex());
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    Ok(dir)
}

/// The runtime-spec mount entry for a bind of `source` at `target`.
pub fn bind(source: &Path, target: &str, rw: bool) -> serde_json::Value {
    let mut options = vec!["rbind", "rprivate"];
    if !rw {
        options.push("ro");
    }
    serde_json::json!({"destination": target, "type": "bind", "source": source, "options": options})
}

pub fn tmpfs(target: &str, size: Option<u64>) -> serde_json::Value {
    let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
    if let Some(s) = size {
        options.push(format!("size={s}"));
    }
    serde_json::json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_read_as_docker_writes_them() {
        assert_eq!(
            MountSpec::parse("type=cache,target=/root/.cache").unwrap(),
            MountSpec::Cache {
                target: "/root/.cache".into(),
                id: "/root/.cache".into(),
                mode: 0o755,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(
            MountSpec::parse("target=/src,source=app,rw").unwrap(),
            MountSpec::Bind { target: "/src".into(), source: "app".into(), from: None, rw: true }
        );
        assert_eq!(
            MountSpec::parse("type=secret,id=token").unwrap(),
            MountSpec::Secret {
                target: "/run/secrets/token".into(),
                id: "token".into(),
                required: false,
                mode: 0o400,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(MountSpec::parse("type=tmpfs,dst=/tmp,size=1048576").unwrap().target(), "/tmp");
        assert!(MountSpec::parse("type=cache").unwrap_err().contains("needs a target"));
        assert!(MountSpec::parse("type=ssh").unwrap_err().contains("not supported"));
        assert!(MountSpec::parse("type=volume,target=/x").unwrap_err().contains("unsupported"));
    }
}
