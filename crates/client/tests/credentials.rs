//! docker's config.json and credential helpers, on real files and a real
//! helper program. One test function: it changes PATH for the process.

use std::os::unix::fs::PermissionsExt;

use berth_client::credentials::{Credential, CredentialSource, DockerCredentials};

#[test]
fn config_json_helpers_and_podman_auth() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("docker/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // A config written by docker, with keys berth does not know.
    std::fs::write(
        &config,
        r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"}},"psFormat":"table {{.ID}}","proxies":{"default":{"httpProxy":"x"}}}"#,
    )
    .unwrap();
    let podman = dir.path().join("auth.json");
    std::fs::write(&podman, r#"{"auths":{"quay.io":{"auth":"cG9kOnBvZHB3"}}}"#).unwrap();
    let creds = DockerCredentials::new(config.clone(), vec![podman]);

    let hub = Credential::Basic { username: "hub".into(), password: "hubpw".into() };
    assert_eq!(creds.get("docker.io").unwrap(), Some(hub));
    let pod = Credential::Basic { username: "pod".into(), password: "podpw".into() };
    assert_eq!(creds.get("quay.io").unwrap(), Some(pod));
    assert_eq!(creds.get("127.0.0.1:5000").unwrap(), None);

    // Round trip through the file: mode 0600, unknown keys kept.
    let local = Credential::Basic { username: "u".into(), password: "p:w".into() };
    creds.store("127.0.0.1:5000", &local).unwrap();
    assert_eq!(creds.get("127.0.0.1:5000").unwrap(), Some(local));
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(json["psFormat"], "table {{.ID}}");
    assert_eq!(json["proxies"]["default"]["httpProxy"], "x");
    assert_eq!(json["auths"]["127.0.0.1:5000"]["auth"], "dTpwOnc=");
    assert!(creds.erase("127.0.0.1:5000").unwrap());
    assert!(!creds.erase("127.0.0.1:5000").unwrap());
    assert_eq!(creds.get("127.0.0.1:5000").unwrap(), None);
    let leftovers: Vec<_> = std::fs::read_dir(config.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temp files left behind");

    // A credential helper on PATH: keeps logins in a directory, one file per server.
    let bin = dir.path().join("bin");
    let vault = dir.path().join("vault");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&vault).unwrap();
    let helper = bin.join("docker-credential-testvault");
    std::fs::write(
        &helper,
        format!(
            r#"#!/bin/sh
set -e
V={vault}
read -r line || true
key=$(printf '%s' "$line" | sed -e 's/.*"ServerURL":"\([^"]*\)".*/\1/' | tr '/:' '__')
case "$1" in
  store) printf '%s' "$line" > "$V/$key" ;;
  get)   key=$(printf '%s' "$line" | tr '/:' '__'); [ -f "$V/$key" ] || {{ echo "credentials not found in native keychain"; exit 1; }}; cat "$V/$key" ;;
  erase) key=$(printf '%s' "$line" | tr '/:' '__'); rm "$V/$key" ;;
esac
"#,
            vault = vault.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // SAFETY: this test binary runs this one test only; no other thread reads the environment.
    unsafe { std::env::set_var("PATH", path) };

    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    json["credHelpers"] = serde_json::json!({"reg.example:5000": "testvault"});
    std::fs::write(&config, json.to_string()).unwrap();
    let secret = Credential::Basic { username: "helper-user".into(), password: "helper-pw".into() };
    creds.store("reg.example:5000", &secret).unwrap();
    assert!(vault.join("reg.example_5000").exists(), "the helper did not store the login");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        json["auths"]["reg.example:5000"],
        serde_json::json!({}),
        "no secret in config.json"
    );
    assert_eq!(creds.get("reg.example:5000").unwrap(), Some(secret));
    assert!(creds.erase("reg.example:5000").unwrap());
    assert_eq!(creds.get("reg.example:5000").unwrap(), None);
    // Other servers still come from the file.
    assert!(creds.get("docker.io").unwrap().is_some());
}
