//! `import -c`: the Dockerfile instructions `docker import` and `docker
//! commit` accept to change an image's runtime config (CMD, ENTRYPOINT,
//! ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR).

use std::collections::BTreeMap;

use berth_oci::ContainerConfig;

use crate::error::ArchiveError;

/// Applies changes in order, as docker does (an ENTRYPOINT clears a CMD
/// that no earlier change set).
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<(), ArchiveError> {
    let mut cmd_set = false;
    for change in changes {
        apply(config, change, &mut cmd_set)?;
    }
    Ok(())
}

fn invalid(message: String) -> ArchiveError {
    ArchiveError::InvalidChange(message)
}

fn apply(
    config: &mut ContainerConfig,
    change: &str,
    cmd_set: &mut bool,
) -> Result<(), ArchiveError> {
    let change = change.trim();
    let (instruction, rest) = match change.split_once(char::is_whitespace) {
        Some((i, r)) => (i, r.trim()),
        None => (change, ""),
    };
    let upper = instruction.to_ascii_uppercase();
    if rest.is_empty() && !upper.is_empty() {
        return Err(invalid(format!("{upper} requires at least one argument")));
    }
    match upper.as_str() {
        "CMD" => {
            config.cmd = Some(command(rest));
            *cmd_set = true;
        }
        "ENTRYPOINT" => {
            config.entrypoint = Some(command(rest));
            if !*cmd_set {
                config.cmd = None;
            }
        }
        "ENV" => {
            for (key, value) in pairs(rest, "ENV", true)? {
                let env = config.env.get_or_insert_with(Vec::new);
                let prefix = format!("{key}=");
                let entry = format!("{key}={value}");
                match env.iter_mut().find(|e| e.starts_with(&prefix) || **e == key) {
                    Some(existing) => *existing = entry,
                    None => env.push(entry),
                }
            }
        }
        "LABEL" => {
            for (key, value) in pairs(rest, "LABEL", false)? {
                config.labels.get_or_insert_with(BTreeMap::new).insert(key, value);
            }
        }
        "EXPOSE" => {
            for word in rest.split_whitespace() {
                let port = exposed_port(word)?;
                config
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new)
                    .insert(port, serde_json::json!({}));
            }
        }
        "VOLUME" => {
            let volumes = json_array(rest)
                .unwrap_or_else(|| rest.split_whitespace().map(str::to_owned).collect());
            for volume in volumes {
                if volume.is_empty() {
                    return Err(invalid("VOLUME specified can not be an empty string".to_owned()));
                }
                config
                    .volumes
                    .get_or_insert_with(BTreeMap::new)
                    .insert(volume, serde_json::json!({}));
            }
        }
        "WORKDIR" => {
            let dir = if rest.starts_with('/') {
                rest.to_owned()
            } else {
                let base = config.working_dir.as_deref().unwrap_or("/");
                format!("{}/{rest}", base.trim_end_matches('/'))
            };
            config.working_dir = Some(dir);
        }
        "USER" => config.user = Some(rest.to_owned()),
        "STOPSIGNAL" => config.stop_signal = Some(rest.to_owned()),
        "ONBUILD" => config.on_build.get_or_insert_with(Vec::new).push(rest.to_owned()),
        "" => return Err(invalid("empty change".to_owned())),
        _ => {
            return Err(invalid(format!(
                "{} is not a valid change command",
                instruction.to_ascii_lowercase()
            )));
        }
    }
    Ok(())
}

/// Exec form (`["a", "b"]`) or shell form (`a b` runs under `/bin/sh -c`).
fn command(rest: &str) -> Vec<String> {
    json_array(rest).unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned(), rest.to_owned()])
}

fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str(rest).ok()
}

fn exposed_port(word: &str) -> Result<String, ArchiveError> {
    berth_oci::config::exposed_port_key(word)
        .ok_or_else(|| invalid(format!("invalid containerPort: {word}")))
}

/// `k=v k2="v 2"` pairs; with `legacy`, also `ENV key value with spaces`.
fn pairs(
    rest: &str,
    instruction: &str,
    legacy: bool,
) -> Result<Vec<(String, String)>, ArchiveError> {
    let words = split_words(rest).map_err(|e| invalid(format!("{instruction}: {e}")))?;
    if legacy && words.first().is_some_and(|w| !w.contains('=')) {
        let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return Ok(vec![(key.to_owned(), value.trim().to_owned())]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            Some(_) => Err(invalid(format!("{instruction} names can not be blank"))),
            None => Err(invalid(format!(
                "{instruction} must have two arguments: {word:?} has no \"=\""
            ))),
        })
        .collect()
}

/// Splits on whitespace outside quotes, removing the quotes; a backslash
/// escapes the next character (outside single quotes).
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("unterminated double quote".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &changes).unwrap();
        c
    }

    fn err(change: &str) -> String {
        let mut c = ContainerConfig::default();
        apply_changes(&mut c, &[change.to_owned()]).unwrap_err().to_string()
    }

    #[test]
    fn cmd_and_entrypoint_in_both_forms() {
        let c = applied(&[r#"CMD ["/bin/sh"]"#]);
        assert_eq!(c.cmd.unwrap(), ["/bin/sh"]);
        let c = applied(&["CMD echo hi"]);
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        let c = applied(&[r#"ENTRYPOINT ["/app"]"#, "cmd --help"]);
        assert_eq!(c.entrypoint.unwrap(), ["/app"]);
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "--help"]);
        // An ENTRYPOINT after a CMD keeps it.
        let c = applied(&[r#"CMD ["x"]"#, r#"ENTRYPOINT ["/app"]"#]);
        assert_eq!(c.cmd.unwrap(), ["x"]);
    }

    #[test]
    fn env_and_labels() {
        let c = applied(&["ENV A=B", r#"ENV C="d e" F=g"#, "ENV A=z", "ENV LEGACY some value"]);
        assert_eq!(c.env.unwrap(), ["A=z", "C=d e", "F=g", "LEGACY=some value"]);
        let c = applied(&[r#"LABEL a=b "c d"='e f'"#]);
        let labels = c.labels.unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["c d"], "e f");
    }

    #[test]
    fn the_other_instructions() {
        let c = applied(&[
            "EXPOSE 80 53/udp",
            r#"VOLUME ["/data"]"#,
            "VOLUME /a /b",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER nobody",
            "STOPSIGNAL SIGTERM",
            "ONBUILD RUN make",
        ]);
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        let volumes: Vec<_> = c.volumes.unwrap().into_keys().collect();
        assert_eq!(volumes, ["/a", "/b", "/data"]);
        assert_eq!(c.working_dir.unwrap(), "/srv/app");
        assert_eq!(c.user.unwrap(), "nobody");
        assert_eq!(c.stop_signal.unwrap(), "SIGTERM");
        assert_eq!(c.on_build.unwrap(), ["RUN make"]);
    }

    #[test]
    fn invalid_changes_are_refused() {
        assert_eq!(err("RUN echo hi"), "run is not a valid change command");
        assert_eq!(err("FROM scratch"), "from is not a valid change command");
        assert_eq!(err("CMD"), "CMD requires at least one argument");
        assert!(err("EXPOSE http").contains("invalid containerPort"));
        assert!(err("LABEL novalue").contains("must have two arguments"));
        assert!(err(r#"ENV A="unterminated"#).contains("unterminated"));
    }
}
