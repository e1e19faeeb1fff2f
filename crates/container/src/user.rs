//! `-u` / the image's `USER`, resolved as docker resolves it: `name`,
//! `uid`, `name:group`, `uid:gid`, looked up in the image's own
//! `/etc/passwd` and `/etc/group` (never the host's).

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// The groups that list the user as a member (docker adds them).
    pub additional_gids: Vec<u32>,
    /// `HOME` for the environment, when the passwd entry gives one.
    pub home: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// Resolves `spec` (empty: root) with the image's `passwd` and `group`
/// files (empty if the image has none).
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<User, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let by_name = entries.iter().find(|f| f[0] == user_part);
    let numeric: Option<u32> = user_part.parse().ok();
    let entry =
        by_name.or_else(|| numeric.and_then(|n| entries.iter().find(|f| f[2].parse() == Ok(n))));
    let (uid, mut gid, name, home) = match (entry, numeric) {
        (Some(f), _) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            Some(f[0]),
            f.get(5).map(|h| (*h).to_owned()).filter(|h| !h.is_empty()),
        ),
        // A numeric user the image does not list runs as that uid, gid 0.
        (None, Some(n)) => (n, 0, None, None),
        (None, None) => return Err(UserError::NoUser(user_part.to_owned())),
    };
    if let Some(g) = group_part {
        gid = match groups.iter().find(|f| f[0] == g) {
            Some(f) => f[2].parse().unwrap_or(0),
            None => g.parse().map_err(|_| UserError::NoGroup(g.to_owned()))?,
        };
    }
    let mut additional_gids: Vec<u32> = match name {
        Some(name) if group_part.is_none() => groups
            .iter()
            .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|m| m == name)))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(User { uid, gid, additional_gids, home })
}
