//! Registry authentication: `WWW-Authenticate` challenges and tokens.
//!
//! A registry answers an unauthenticated request with 401 and a challenge:
//! `Basic realm="..."` (send the login with every request) or
//! `Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"`
//! (fetch a token from the realm for the scopes the request needs, then send
//! `Authorization: Bearer <token>`). Tokens are cached per (registry, scope)
//! until they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic { realm: Option<String> },
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses a `WWW-Authenticate` value into the challenges berth can answer.
/// Unknown schemes are skipped; a header with none berth can answer, or
/// whose syntax is broken, is an error describing what is wrong.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, String> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    if rest.is_empty() {
        return Err("empty challenge".into());
    }
    while !rest.is_empty() {
        let end = rest.find([' ', '\t', ',']).unwrap_or(rest.len());
        let scheme = &rest[..end];
        if scheme.is_empty()
            || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(format!("invalid auth scheme {scheme:?}"));
        }
        rest = rest[end..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            // A scheme without parameters, followed by another challenge.
            rest = r.trim_start();
        }
        let mut params: HashMap<String, String> = HashMap::new();
        // key=value pairs until the next scheme (a token not followed by '=').
        loop {
            let eq = match rest.find('=') {
                Some(i) if !rest[..i].contains([' ', ',', '"']) && i > 0 => i,
                _ => break,
            };
            let key = rest[..eq].to_ascii_lowercase();
            rest = &rest[eq + 1..];
            let value = if let Some(quoted) = rest.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut close = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            close = Some(i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let close =
                    close.ok_or_else(|| format!("unterminated quoted value for {key:?}"))?;
                rest = &quoted[close + 1..];
                value
            } else {
                let end = rest.find([',', ' ']).unwrap_or(rest.len());
                let v = rest[..end].to_owned();
                rest = &rest[end..];
                v
            };
            params.insert(key, value);
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(r) => rest = r.trim_start(),
                None => break,
            }
        }
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => out.push(Challenge::Basic { realm: params.remove("realm") }),
            "bearer" => {
                let realm = params.remove("realm").ok_or("Bearer challenge without a realm")?;
                if !(realm.starts_with("http://") || realm.starts_with("https://")) {
                    return Err(format!("Bearer realm {realm:?} is not an http(s) URL"));
                }
                out.push(Challenge::Bearer {
                    realm,
                    service: params.remove("service"),
                    scope: params.remove("scope"),
                });
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(format!("no supported auth scheme in {header:?}"));
    }
    Ok(out)
}

/// What a token endpoint answers.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Issued when asked with `offline_token=true`: docker's `identitytoken`.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    pub fn bearer(&self) -> Option<&str> {
        self.token.as_deref().or(self.access_token.as_deref()).filter(|t| !t.is_empty())
    }

    /// How long to keep the token: its lifetime less a margin (60 s by default, per the spec).
    pub fn lifetime(&self) -> Duration {
        let secs = self.expires_in.unwrap_or(60).max(1);
        Duration::from_secs(secs.saturating_sub(secs.min(10) / 2))
    }
}

/// (registry, scope, obtained with the login?)
type TokenKey = (String, String, bool);

/// Tokens per (registry, scope, login) until they expire.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, registry: &str, scope: &str, with_login: bool) -> Option<String> {
        let mut map = self.tokens.lock().expect("token cache lock");
        let key = (registry.to_owned(), scope.to_owned(), with_login);
        match map.get(&key) {
            Some((t, until)) if *until > Instant::now() => Some(t.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn put(
        &self,
        registry: &str,
        scope: &str,
        with_login: bool,
        token: String,
        life: Duration,
    ) {
        let mut map = self.tokens.lock().expect("token cache lock");
        map.insert(
            (registry.to_owned(), scope.to_owned(), with_login),
            (token, Instant::now() + life),
        );
    }

    pub fn forget(&self, registry: &str, scope: &str, with_login: bool) {
        let mut map = self.tokens.lock().expect("token cache lock");
        map.remove(&(registry.to_owned(), scope.to_owned(), with_login));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            [Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#).unwrap(),
            [Challenge::Basic { realm: Some("Registry Realm".into()) }]
        );
        let two = parse_challenges(r#"Negotiate, Basic realm=r , Bearer realm="http://a/t""#);
        assert_eq!(two.unwrap().len(), 2);
        let escaped = parse_challenges(r#"Bearer realm="http://a/t",scope="a\"b""#).unwrap();
        assert!(matches!(&escaped[0], Challenge::Bearer { scope: Some(s), .. } if s == "a\"b"));
    }

    #[test]
    fn malformed_challenges_are_errors() {
        for bad in [
            "",
            "Bearer",
            r#"Bearer service="x""#,
            r#"Bearer realm="https://a/t"#,
            r#"Bearer realm="ftp://a/t""#,
            "Negotiate abc",
            r#""quoted" realm=x"#,
        ] {
            assert!(parse_challenges(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn cached_tokens_expire() {
        let cache = TokenCache::default();
        cache.put("r", "s", false, "t".into(), Duration::from_secs(60));
        assert_eq!(cache.get("r", "s", false).as_deref(), Some("t"));
        assert_eq!(cache.get("r", "other", false), None);
        assert_eq!(cache.get("r", "s", true), None);
        cache.put("r", "s", false, "t".into(), Duration::ZERO);
        assert_eq!(cache.get("r", "s", false), None);
    }
}
