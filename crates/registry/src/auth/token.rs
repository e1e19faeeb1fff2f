//! Bearer tokens: JWTs signed with HMAC-SHA256 by a key kept under the
//! registry root. Only this registry verifies them (clients treat tokens as
//! opaque), so a shared-secret signature is enough; the key never leaves
//! the server.

use std::io::{self, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const ISSUER: &str = "berth-registry";

/// One `access` entry, as the Docker token specification words it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user, or empty for an anonymous token.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued for another service")]
    WrongAudience,
}

/// A refresh token's claims (`docker login` stores the token as its
/// `identitytoken` and trades it for access tokens without the password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub iss: String,
    /// The user it stands for.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    /// [`TokenKey::fingerprint`] of the user's password hash when issued: a
    /// password change, or removing and re-creating the user, revokes it.
    pub fp: String,
    /// The personal access token it was made from, if any: revoking the
    /// token revokes this too, and its scope still applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pat: Option<String>,
}

/// The signing key. Refresh tokens are signed with a key derived from it,
/// so neither kind of token ever verifies as the other.
pub struct TokenKey {
    key: [u8; 32],
    refresh: [u8; 32],
    kid: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

impl TokenKey {
    pub fn from_bytes(key: [u8; 32]) -> TokenKey {
        let kid = hex::encode(&<Sha256 as sha2::Digest>::digest(key)[..8]);
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(b"berth refresh tokens");
        let refresh = mac.finalize().into_bytes().into();
        TokenKey { key, refresh, kid }
    }

    /// Reads the key at `path`, or creates one (mode 0600) on first start.
    pub fn load_or_create(path: &Path) -> io::Result<TokenKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| io::Error::other(format!("{} is not a key", path.display())))?;
                Ok(TokenKey::from_bytes(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::getrandom(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut f) => {
                        f.write_all(hex::encode(key).as_bytes())?;
                        f.sync_all()?;
                        Ok(TokenKey::from_bytes(key))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        TokenKey::load_or_create(path)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn mac(key: &[u8; 32]) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_with(&self.key, claims)
    }

    pub fn sign_refresh(&self, claims: &RefreshClaims) -> String {
        self.sign_with(&self.refresh, claims)
    }

    /// A keyed digest of `data` for `purpose` (the website's CSRF tokens),
    /// never equal to a signature or fingerprint made for another purpose.
    pub fn tag(&self, purpose: &str, data: &[u8]) -> String {
        let mut mac = Self::mac(&self.key);
        mac.update(b"tag:");
        mac.update(purpose.as_bytes());
        mac.update(b":");
        mac.update(data);
        hex::encode(&mac.finalize().into_bytes()[..20])
    }

    /// A short, keyed digest of a password hash for [`RefreshClaims::fp`]
    /// (the hash itself never goes into a token).
    pub fn fingerprint(&self, password_hash: &str) -> String {
        let mut mac = Self::mac(&self.refresh);
        mac.update(b"password:");
        mac.update(password_hash.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    fn sign_with(&self, key: &[u8; 32], claims: &impl Serialize) -> String {
        let header = Header { alg: "HS256".into(), typ: "JWT".into(), kid: self.kid.clone() };
        let h = B64.encode(serde_json::to_vec(&header).expect("json"));
        let c = B64.encode(serde_json::to_vec(claims).expect("json"));
        let mut mac = Self::mac(key);
        mac.update(format!("{h}.{c}").as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{h}.{c}.{sig}")
    }

    /// Checks signature, algorithm, audience and time (with a minute of leeway for `nbf`).
    pub fn verify(&self, token: &str, service: &str, now: u64) -> Result<Claims, TokenError> {
        let claims: Claims = Self::verify_with(&self.key, token)?;
        if claims.iss != ISSUER || claims.aud != service {
            return Err(TokenError::WrongAudience);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + 60 {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// Checks a refresh token's signature, audience and expiry (whether its
    /// user still exists with the same password is the caller's business).
    pub fn verify_refresh(
        &self,
        token: &str,
        service: &str,
        now: u64,
    ) -> Result<RefreshClaims, TokenError> {
        let claims: RefreshClaims = Self::verify_with(&self.refresh, token)?;
        if claims.iss != ISSUER || claims.aud != service {
            return Err(TokenError::WrongAudience);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat > now + 60 {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    fn verify_with<T: serde::de::DeserializeOwned>(
        key: &[u8; 32],
        token: &str,
    ) -> Result<T, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        // Only our algorithm: never "none", never a key the token names.
        if header.alg != "HS256" {
            return Err(TokenError::BadSignature);
        }
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let mut mac = Self::mac(key);
        mac.update(&token.as_bytes()[..h.len() + 1 + c.len()]);
        mac.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
        B64.decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (the token response's `issued_at`).
pub fn rfc3339(secs: u64) -> String {
    berth_oci::time::rfc3339(secs as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp,
            nbf: 100,
            iat: 100,
            jti: "j".into(),
            access: vec![Access {
                kind: "repository".into(),
                name: "alice/app".into(),
                actions: vec!["pull".into()],
            }],
        }
    }

    #[test]
    fn sign_verify_and_refuse() {
        let key = TokenKey::from_bytes([7; 32]);
        let t = key.sign(&claims(1000));
        assert_eq!(key.verify(&t, "svc", 500).unwrap(), claims(1000));
        assert_eq!(key.verify(&t, "svc", 1000), Err(TokenError::Expired));
        assert_eq!(key.verify(&t, "other", 500), Err(TokenError::WrongAudience));
        let other = TokenKey::from_bytes([8; 32]);
        assert_eq!(other.verify(&t, "svc", 500), Err(TokenError::BadSignature));
        // Widening the access without re-signing breaks the signature.
        let parts: Vec<&str> = t.split('.').collect();
        let mut forged = claims(1000);
        forged.access[0].actions.push("push".into());
        let c = B64.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{c}.{}", parts[0], parts[2]);
        assert_eq!(key.verify(&tampered, "svc", 500), Err(TokenError::BadSignature));
        // alg "none" is refused.
        let none = B64.encode(br#"{"alg":"none","typ":"JWT","kid":"x"}"#);
        let unsigned = format!("{none}.{}.", parts[1]);
        assert_eq!(key.verify(&unsigned, "svc", 500), Err(TokenError::BadSignature));
        assert_eq!(key.verify("garbage", "svc", 500), Err(TokenError::Malformed));
    }

    #[test]
    fn refresh_and_access_tokens_do_not_mix() {
        let key = TokenKey::from_bytes([7; 32]);
        let refresh = RefreshClaims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp: 1000,
            iat: 100,
            jti: "r".into(),
            fp: key.fingerprint("$2b$hash"),
            pat: None,
        };
        let r = key.sign_refresh(&refresh);
        assert_eq!(key.verify_refresh(&r, "svc", 500).unwrap(), refresh);
        assert_eq!(key.verify_refresh(&r, "svc", 1000), Err(TokenError::Expired));
        assert_eq!(key.verify_refresh(&r, "other", 500), Err(TokenError::WrongAudience));
        assert_eq!(key.verify(&r, "svc", 500), Err(TokenError::BadSignature));
        let a = key.sign(&claims(1000));
        assert_eq!(key.verify_refresh(&a, "svc", 500), Err(TokenError::BadSignature));
        let other = TokenKey::from_bytes([8; 32]);
        assert_eq!(other.verify_refresh(&r, "svc", 500), Err(TokenError::BadSignature));
        assert_ne!(key.fingerprint("$2b$hash"), key.fingerprint("$2b$other"));
        assert_ne!(key.fingerprint("$2b$hash"), other.fingerprint("$2b$hash"));
    }

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let a = TokenKey::load_or_create(&path).unwrap();
        let b = TokenKey::load_or_create(&path).unwrap();
        assert_eq!(a.key, b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
