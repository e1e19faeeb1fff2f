//! Registry logins, kept where docker and podman keep them, so a `docker
//! login` works for berth and the other way round.
//!
//! - `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): `auths`
//!   maps a server to `{"auth": base64("user:pass")}` or
//!   `{"identitytoken": "..."}`; `credHelpers` (per server) and `credsStore`
//!   (default) name a `docker-credential-<name>` program spoken to over
//!   stdin/stdout (`get`, `store`, `erase`).
//! - podman's `auth.json` (`$REGISTRY_AUTH_FILE`, else
//!   `$XDG_RUNTIME_DIR/containers/auth.json`), read only, same `auths` shape.
//!
//! Writes keep every key berth does not know, leave the file mode 0600, and
//! replace the file atomically (temp file in the same directory, fsync, rename).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use crate::ClientError;
use crate::hosts::{credentials_key, server_to_domain};

/// A login for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token a registry issued at login (docker's `identitytoken`).
    IdentityToken {
        username: String,
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    /// Never prints secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username}, ***)")
            }
        }
    }
}

impl Credential {
    pub fn username(&self) -> &str {
        match self {
            Credential::Basic { username, .. } | Credential::IdentityToken { username, .. } => {
                username
            }
        }
    }
}

/// Where credentials are looked up, for [`crate::Client`].
pub trait CredentialSource: Send + Sync {
    /// The login for registry `domain` (`docker.io`, `127.0.0.1:5000`), if any.
    fn get(&self, domain: &str) -> Result<Option<Credential>, ClientError>;
}

/// No credentials at all (anonymous access only).
pub struct Anonymous;

impl CredentialSource for Anonymous {
    fn get(&self, _domain: &str) -> Result<Option<Credential>, ClientError> {
        Ok(None)
    }
}

/// A fixed login, e.g. the one `berth login` is about to verify.
pub struct Fixed(pub String, pub Credential);

impl CredentialSource for Fixed {
    fn get(&self, domain: &str) -> Result<Option<Credential>, ClientError> {
        Ok((server_to_domain(&self.0) == server_to_domain(domain)).then(|| self.1.clone()))
    }
}

/// docker's `config.json` plus podman's `auth.json`.
#[derive(Debug, Clone)]
pub struct DockerCredentials {
    config_file: PathBuf,
    podman_files: Vec<PathBuf>,
}

impl DockerCredentials {
    /// The files named by the environment, as docker and podman find them.
    pub fn from_env() -> DockerCredentials {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".docker")
            });
        let mut podman = Vec::new();
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
            podman.push(PathBuf::from(f));
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            podman.push(PathBuf::from(d).join("containers/auth.json"));
        }
        DockerCredentials { config_file: dir.join("config.json"), podman_files: podman }
    }

    pub fn new(config_file: PathBuf, podman_files: Vec<PathBuf>) -> DockerCredentials {
        DockerCredentials { config_file, podman_files }
    }

    /// docker's `config.json` path.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// The credential helper configured for `domain`, if any.
    pub fn helper_for(&self, domain: &str) -> Result<Option<String>, ClientError> {
        let config = read_json(&self.config_file)?;
        let key = credentials_key(domain);
        let per_server = config
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| h.iter().find(|(k, _)| same_server(k, &key)).map(|(_, v)| v.clone()));
        let helper = per_server.or_else(|| config.get("credsStore").cloned());
        Ok(helper.and_then(|v| v.as_str().map(str::to_owned)).filter(|s| !s.is_empty()))
    }

    /// Saves a login for `domain`: through the configured helper, else in
    /// `auths` of config.json.
    pub fn store(&self, domain: &str, cred: &Credential) -> Result<(), ClientError> {
        let key = credentials_key(domain);
        let mut config = read_json(&self.config_file)?;
        let auths = auths_mut(&mut config);
        auths.retain(|k, _| !same_server(k, &key));
        if let Some(helper) = self.helper_for(domain)? {
            let (username, secret) = match cred {
                Credential::Basic { username, password } => (username.as_str(), password.as_str()),
                Credential::IdentityToken { token, .. } => ("<token>", token.as_str()),
            };
            let input =
                serde_json::json!({"ServerURL": key, "Username": username, "Secret": secret});
            run_helper(&helper, "store", input.to_string().as_bytes())?;
            // docker lists helper-held logins with an empty entry.
            auths.insert(key, Value::Object(Map::new()));
        } else {
            let entry = match cred {
                Credential::Basic { username, password } => serde_json::json!({
                    "auth": base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                }),
                Credential::IdentityToken { username, token } => serde_json::json!({
                    "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:")),
                    "identitytoken": token
                }),
            };
            auths.insert(key, entry);
        }
        write_json_atomically(&self.config_file, &config)
    }

    /// Removes the login for `domain`. Returns whether there was one.
    pub fn erase(&self, domain: &str) -> Result<bool, ClientError> {
        let key = credentials_key(domain);
        let mut config = read_json(&self.config_file)?;
        let mut found = false;
        if let Some(helper) = self.helper_for(domain)? {
            found = run_helper(&helper, "erase", key.as_bytes()).is_ok();
        }
        let auths = auths_mut(&mut config);
        let before = auths.len();
        auths.retain(|k, _| !same_server(k, &key));
        if auths.len() != before {
            found = true;
            write_json_atomically(&self.config_file, &config)?;
        }
        Ok(found)
    }
}

impl CredentialSource for DockerCredentials {
    fn get(&self, domain: &str) -> Result<Option<Credential>, ClientError> {
        let key = credentials_key(domain);
        if let Some(helper) = self.helper_for(domain)? {
            return helper_get(&helper, &key);
        }
        let files = std::iter::once(&self.config_file).chain(&self.podman_files);
        for file in files {
            let config = read_json(file)?;
            let Some(auths) = config.get("auths").and_then(Value::as_object) else { continue };
            let entry = auths.iter().find(|(k, _)| same_server(k, &key)).map(|(_, e)| e);
            if let Some(c) = entry.map(decode_entry).transpose()?.flatten() {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

/// Whether two `auths` keys name the same registry (`https://host/v1/` ==
/// `host`; every Docker Hub spelling is one).
fn same_server(a: &str, b: &str) -> bool {
    server_to_domain(a) == server_to_domain(b)
}

fn decode_entry(entry: &Value) -> Result<Option<Credential>, ClientError> {
    let identity = entry.get("identitytoken").and_then(Value::as_str).filter(|t| !t.is_empty());
    let (mut username, mut password) = (
        entry.get("username").and_then(Value::as_str).unwrap_or_default().to_owned(),
        entry.get("password").and_then(Value::as_str).unwrap_or_default().to_owned(),
    );
    if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| ClientError::Credentials("invalid base64 in an \"auth\" entry".into()))?;
        let text = String::from_utf8(raw)
            .map_err(|_| ClientError::Credentials("\"auth\" entry is not UTF-8".into()))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| ClientError::Credentials("invalid auth configuration file".into()))?;
        (username, password) = (u.to_owned(), p.to_owned());
    }
    Ok(match identity {
        Some(token) => Some(Credential::IdentityToken { username, token: token.to_owned() }),
        None if !username.is_empty() => Some(Credential::Basic { username, password }),
        None => None,
    })
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credential>, ClientError> {
    let out = match run_helper(helper, "get", key.as_bytes()) {
        Ok(out) => out,
        // The protocol's way of saying "no login here".
        Err(ClientError::Credentials(msg)) if msg.contains("credentials not found") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_slice(&out).map_err(|e| {
        ClientError::Credentials(format!("docker-credential-{helper} get: invalid output: {e}"))
    })?;
    let username = v.get("Username").and_then(Value::as_str).unwrap_or_default().to_owned();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(match (username.as_str(), secret.is_empty()) {
        (_, true) => None,
        ("<token>", false) => {
            Some(Credential::IdentityToken { username: String::new(), token: secret })
        }
        (_, false) => Some(Credential::Basic { username, password: secret }),
    })
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin.
fn run_helper(helper: &str, action: &str, input: &[u8]) -> Result<Vec<u8>, ClientError> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ClientError::Credentials(format!("{program}: {e}")))?;
    child.stdin.take().expect("piped").write_all(input).ok();
    let out = child
        .wait_with_output()
        .map_err(|e| ClientError::Credentials(format!("{program}: {e}")))?;
    if !out.status.success() {
        let msg =
            String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout })
                .trim()
                .to_owned();
        return Err(ClientError::Credentials(format!("{program} {action}: {msg}")));
    }
    Ok(out.stdout)
}

fn read_json(path: &Path) -> Result<Map<String, Value>, ClientError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => {
                Err(ClientError::Credentials(format!("{}: not a JSON object", path.display())))
            }
            Err(e) => Err(ClientError::Credentials(format!("{}: {e}", path.display()))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(ClientError::io(path.display().to_string(), e)),
    }
}

fn auths_mut(config: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let auths = config.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    auths.as_object_mut().expect("object")
}

/// Replaces `path` with `config` atomically, mode 0600.
fn write_json_atomically(path: &Path, config: &Map<String, Value>) -> Result<(), ClientError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let ctx = || path.display().to_string();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ClientError::io(ctx(), e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json")
        .tempfile_in(dir)
        .map_err(|e| ClientError::io(ctx(), e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ClientError::io(ctx(), e))?;
    let mut text = serde_json::to_vec_pretty(config).expect("JSON values serialise");
    text.push(b'\n');
    tmp.write_all(&text).map_err(|e| ClientError::io(ctx(), e))?;
    tmp.as_file().sync_all().map_err(|e| ClientError::io(ctx(), e))?;
    tmp.persist(path).map_err(|e| ClientError::io(ctx(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_basic_and_identity_tokens() {
        let e = serde_json::json!({"auth": "dXNlcjpwYTpzcw=="}); // user:pa:ss
        assert_eq!(
            decode_entry(&e).unwrap(),
            Some(Credential::Basic { username: "user".into(), password: "pa:ss".into() })
        );
        let e = serde_json::json!({"auth": "dXNlcjo=", "identitytoken": "tok"});
        assert_eq!(
            decode_entry(&e).unwrap(),
            Some(Credential::IdentityToken { username: "user".into(), token: "tok".into() })
        );
        assert_eq!(decode_entry(&serde_json::json!({})).unwrap(), None);
        assert!(decode_entry(&serde_json::json!({"auth": "!!"})).is_err());
        assert!(same_server("https://index.docker.io/v1/", "docker.io"));
        assert!(same_server("http://127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!same_server("127.0.0.1:5000", "127.0.0.1:5001"));
    }
}
