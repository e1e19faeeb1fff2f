//! Password hashes (bcrypt, so htpasswd files import as they are).

/// bcrypt work factor for new hashes: about 50 ms here; logins are cached
/// and throttled, so this is paid once per client, not per request.
const COST: u32 = 10;

pub fn hash(password: &str) -> String {
    bcrypt::hash(password, COST).expect("bcrypt with a valid cost cannot fail")
}

/// Whether `password` matches `hash` (a malformed hash matches nothing).
pub fn verify(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// Reads `user:hash` lines of an htpasswd file. Only bcrypt hashes
/// (`htpasswd -B`) are accepted: the others are too weak to keep.
pub fn parse_htpasswd(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) =
            line.split_once(':').ok_or_else(|| format!("line {}: expected user:hash", i + 1))?;
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            return Err(format!("line {}: {user:?} has no bcrypt hash (use htpasswd -B)", i + 1));
        }
        out.push((user.to_owned(), hash.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_htpasswd() {
        let h = hash("s3cret");
        assert!(verify("s3cret", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("s3cret", "not a hash"));
        // As written by `htpasswd -Bbn user pass`.
        let y = h.replacen("$2b$", "$2y$", 1);
        assert!(verify("s3cret", &y));
        let users = parse_htpasswd(&format!("# comment\nbob:{y}\n\n")).unwrap();
        assert_eq!(users, [("bob".to_owned(), y)]);
        assert!(parse_htpasswd("md5user:$apr1$abc$def").unwrap_err().contains("line 1"));
        assert!(parse_htpasswd("nocolon").is_err());
    }
}
