//! Personal access tokens, as Docker Hub has them: a random secret a user
//! gives instead of the password (`docker login -u USER` with the token as
//! the password), shown once, kept only as a hash, limited to a scope and
//! revocable one by one.
//!
//! The text is `berth_pat_` + a 16-hex-digit public ID + a 48-hex-digit
//! secret. The ID finds the record; the secret's SHA-256 must match it.

use sha2::Digest as _;

use super::Action;
use crate::metadata::browse::AccessTokenRecord;

pub const PREFIX: &str = "berth_pat_";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 48;

/// What a token may do, at most (the account's own rights still apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenScope {
    /// Pull.
    Read,
    /// Pull and push.
    Write,
    /// Pull, push and delete.
    Delete,
}

impl TokenScope {
    pub const ALL: [TokenScope; 3] = [TokenScope::Read, TokenScope::Write, TokenScope::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
            TokenScope::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<TokenScope> {
        TokenScope::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn actions(self) -> Vec<Action> {
        match self {
            TokenScope::Read => vec![Action::Pull],
            TokenScope::Write => vec![Action::Pull, Action::Push],
            TokenScope::Delete => Action::ALL.to_vec(),
        }
    }
}

/// The hex SHA-256 of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Splits a token's text into its ID and secret; `None` if it is not one.
pub fn split(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(PREFIX)?;
    let ok = rest.len() == ID_LEN + SECRET_LEN && rest.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| rest.split_at(ID_LEN))
}

/// Whether a password is shaped like a token (so it is checked as one).
pub fn looks_like_token(password: &str) -> bool {
    password.starts_with(PREFIX)
}

/// Whether `secret` is the one `record` was made for (constant time).
pub fn matches(record: &AccessTokenRecord, secret: &str) -> bool {
    let (a, b) = (hash(secret), &record.hash);
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new token for `user`: its record (to store) and its text (to show once).
pub fn generate(
    user: &str,
    description: &str,
    scope: TokenScope,
    now: i64,
) -> std::io::Result<(AccessTokenRecord, String)> {
    let mut bytes = [0u8; (ID_LEN + SECRET_LEN) / 2];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let hexed = hex::encode(bytes);
    let (id, secret) = hexed.split_at(ID_LEN);
    let record = AccessTokenRecord {
        id: id.to_owned(),
        user: user.to_owned(),
        description: description.to_owned(),
        scope: scope.as_str().to_owned(),
        hash: hash(secret),
        created: now,
        last_used: None,
    };
    Ok((record, format!("{PREFIX}{hexed}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_split_and_match() {
        let (rec, text) = generate("alice", "laptop", TokenScope::Write, 5).unwrap();
        let (id, secret) = split(&text).unwrap();
        assert_eq!(id, rec.id);
        assert!(matches(&rec, secret));
        assert!(!matches(&rec, &"0".repeat(SECRET_LEN)));
        assert!(!text.contains(&rec.hash), "the stored hash is not the secret");
        assert!(split("berth_pat_short").is_none());
        assert!(split(&format!("{PREFIX}{}", "g".repeat(64))).is_none());
        assert_eq!(TokenScope::parse("delete"), Some(TokenScope::Delete));
        assert_eq!(TokenScope::parse("admin"), None);
        assert_eq!(TokenScope::Read.actions(), [Action::Pull]);
    }
}
