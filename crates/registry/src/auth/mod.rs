//! Accounts, permissions and tokens: Docker Hub's rules on the registry.
//!
//! Who may do what ([`policy`]):
//! - administrators: everything;
//! - a user: everything in the namespace `USER/...` and in the namespaces of
//!   organisations they belong to;
//! - official images (one-component names and `library/...`): pushed only by
//!   administrators;
//! - everyone, anonymous included: pull of public repositories.
//!   Private repositories are invisible to everyone else.
//!
//! Clients authenticate with Basic credentials on any request, or follow the
//! Docker token flow: a 401 names the realm (`/token`), the client asks it
//! for a token covering a scope, and the token lists the granted `access`
//! (the intersection of what was asked and what [`policy`] allows; a partial
//! grant is not an error). Wrong passwords are throttled per user name.
//! `docker login` also asks for a refresh token, which it stores instead of
//! the password and later trades for access tokens (`grant_type=refresh_token`);
//! it names its user and a fingerprint of the password hash, so removing
//! the user or changing the password revokes it.

pub mod password;
pub mod pat;
pub mod token;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use sha2::Digest as _;

pub use crate::error::Challenge;
use crate::error::{Error, Result};
use crate::metadata::{MetadataStore, UserRecord};
pub use token::{Access, Claims, RefreshClaims, TokenKey};

/// How long an issued token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
/// How long a refresh token (docker's stored `identitytoken`) is valid.
pub const REFRESH_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long a verified Basic credential is remembered (bcrypt is slow on
/// purpose). The account is still read on every login, so a removed user or
/// a changed password takes effect at once.
const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);
/// Failed logins allowed before throttling starts.
const FREE_FAILURES: u32 = 5;
/// The name of the token signing key among the metadata's shared secrets.
const TOKEN_KEY_SECRET: &str = "token-signing-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A personal access token's limit on what its user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCap {
    /// The token's ID (a refresh token made from it names it, so revoking
    /// the token revokes the refresh token too).
    pub id: String,
    pub actions: Vec<Action>,
}

/// A caller that proved who it is, with a password or an access token.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: UserRecord,
    /// Set when an access token stood in for the password.
    pub cap: Option<TokenCap>,
}

impl Login {
    /// What of `allowed` this login may use.
    pub fn limit(&self, mut allowed: Vec<Action>) -> Vec<Action> {
        if let Some(cap) = &self.cap {
            allowed.retain(|a| cap.actions.contains(a));
        }
        allowed
    }
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    /// Logged in with Basic credentials (a password).
    User(UserRecord),
    /// Basic credentials with a personal access token as the password.
    AccessToken(UserRecord, TokenCap),
    /// Presented a valid token (`sub` empty: anonymous).
    Token(Claims),
}

impl Identity {
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::User(u) | Identity::AccessToken(u, _) => Some(&u.name),
            Identity::Token(c) => (!c.sub.is_empty()).then_some(c.sub.as_str()),
        }
    }
}

/// The namespace that owns `repo`, or `None` for official images.
pub fn namespace(repo: &str) -> Option<&str> {
    match repo.split_once('/') {
        None => None,
        Some(("library", _)) => None,
        Some((ns, _)) => Some(ns),
    }
}

/// The name a repository has with accounts on: a one-component name is an
/// official image, `library/NAME`, as on Docker Hub ("official images just
/// have the repo name"), so `HOST/busybox` and `HOST/library/busybox` are
/// one repository. Longer names are unchanged. Without accounts (a plain
/// `registry:2`) names stay literal and this is not called.
pub fn official_name(
    repo: berth_reference::RepoName,
) -> std::result::Result<berth_reference::RepoName, berth_reference::InvalidRepoName> {
    if repo.as_str().contains('/') {
        return Ok(repo);
    }
    berth_reference::RepoName::parse(&format!("library/{repo}"))
}

/// What `user` (None: anonymous) may do on `repo`. `owns_namespace`: the
/// user is the namespace or a member of the organisation that is.
pub fn policy(user: Option<&UserRecord>, owns_namespace: bool, private: bool) -> Vec<Action> {
    match user {
        Some(u) if u.admin => Action::ALL.to_vec(),
        Some(_) if owns_namespace => Action::ALL.to_vec(),
        _ if private => Vec::new(),
        _ => vec![Action::Pull],
    }
}

#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub struct Auth {
    meta: Arc<dyn MetadataStore>,
    key: TokenKey,
    service: String,
    failures: Mutex<HashMap<String, Failures>>,
    basic_cache: Mutex<HashMap<[u8; 32], Instant>>,
}

/// A token as the token endpoint returns it.
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
    /// Asked for with `offline_token=true` or `access_type=offline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl Auth {
    /// Uses (or creates) the signing key `<root>/token.key`: the embedded default.
    pub fn open(root: &Path, meta: Arc<dyn MetadataStore>, service: &str) -> std::io::Result<Auth> {
        let key = TokenKey::load_or_create(&root.join("token.key"))?;
        Ok(Auth::with_key(key, meta, service))
    }

    /// Uses the signing key stored in the metadata (creating it on first
    /// start), so that every replica sharing the database signs and checks
    /// tokens with the same one.
    pub async fn open_shared(
        meta: Arc<dyn MetadataStore>,
        service: &str,
    ) -> Result<Auth, crate::metadata::MetadataError> {
        let mut candidate = [0u8; 32];
        getrandom::getrandom(&mut candidate)
            .map_err(|e| crate::metadata::MetadataError::Database(e.to_string()))?;
        let stored = meta.shared_secret(TOKEN_KEY_SECRET, &candidate).await?;
        let key = <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| {
            crate::metadata::MetadataError::Corrupt("the shared token key is not 32 bytes".into())
        })?;
        Ok(Auth::with_key(TokenKey::from_bytes(key), meta, service))
    }

    pub fn with_key(key: TokenKey, meta: Arc<dyn MetadataStore>, service: &str) -> Auth {
        Auth {
            meta,
            key,
            service: service.to_owned(),
            failures: Mutex::new(HashMap::new()),
            basic_cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// A keyed digest of `data` for `purpose` (see [`TokenKey::tag`]); the
    /// same on every replica that shares the key.
    pub fn tag(&self, purpose: &str, data: &[u8]) -> String {
        self.key.tag(purpose, data)
    }

    /// The metadata the accounts live in.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    /// Checks a user name and a password or personal access token,
    /// throttling repeated failures (one count for both).
    pub async fn login(&self, name: &str, password: &str) -> Result<Login> {
        if !pat::looks_like_token(password) {
            return Ok(Login { user: self.password_login(name, password).await?, cap: None });
        }
        self.check_throttle(name)?;
        match self.token_login(name, password).await? {
            Some(login) => {
                self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
                Ok(login)
            }
            None => {
                self.record_failure(name);
                Err(Error::Unauthorized(None))
            }
        }
    }

    /// The login an access token gives, if it is `name`'s and genuine.
    async fn token_login(&self, name: &str, text: &str) -> Result<Option<Login>> {
        let Some((id, secret)) = pat::split(text) else { return Ok(None) };
        let Some(record) = self.meta.access_token(id).await? else { return Ok(None) };
        if record.user != name || !pat::matches(&record, secret) {
            return Ok(None);
        }
        self.token_standing(record).await
    }

    /// The login a stored token gives its user now (`None`: the user or
    /// the scope is gone), noting the use.
    async fn token_standing(
        &self,
        record: crate::metadata::browse::AccessTokenRecord,
    ) -> Result<Option<Login>> {
        let Some(user) = self.meta.user(&record.user).await? else { return Ok(None) };
        let Some(scope) = pat::TokenScope::parse(&record.scope) else { return Ok(None) };
        let now = now_secs() as i64;
        // One write a minute at most: every request of a client may carry it.
        if record.last_used.is_none_or(|t| now - t >= 60) {
            self.meta.touch_access_token(&record.id, now).await?;
        }
        Ok(Some(Login { user, cap: Some(TokenCap { id: record.id, actions: scope.actions() }) }))
    }

    /// Creates a personal access token for an existing `user`; returns its
    /// record and the text, which is shown once and never stored.
    pub async fn create_access_token(
        &self,
        user: &str,
        description: &str,
        scope: pat::TokenScope,
    ) -> Result<(crate::metadata::browse::AccessTokenRecord, String)> {
        create_access_token(self.meta.as_ref(), user, description, scope).await
    }

    fn check_throttle(&self, name: &str) -> Result<()> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = failures.get(name)
            && f.count >= FREE_FAILURES
        {
            let wait = Duration::from_secs(1 << (f.count - FREE_FAILURES).min(6));
            if let Some(left) = f.last.and_then(|l| wait.checked_sub(l.elapsed())) {
                let retry_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                return Err(Error::TooManyRequests { retry_after });
            }
        }
        Ok(())
    }

    fn record_failure(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            failures.clear();
        }
        let f = failures.entry(name.to_owned()).or_default();
        f.count += 1;
        f.last = Some(Instant::now());
        tracing::warn!(user = name, failures = f.count, "failed login");
    }

    async fn password_login(&self, name: &str, password: &str) -> Result<UserRecord> {
        let user = self.meta.user(name).await?;
        // The stored hash is part of the key: a new password (or a new user
        // of the same name) never matches what was verified before.
        let cache_key: [u8; 32] = sha2::Sha256::new()
            .chain_update(name.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(user.as_ref().map_or("", |u| u.password_hash.as_str()).as_bytes())
            .finalize()
            .into();
        if let Some(u) = &user {
            let cache = self.basic_cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.get(&cache_key).is_some_and(|at| at.elapsed() < BASIC_CACHE_TTL) {
                return Ok(u.clone());
            }
        }
        self.check_throttle(name)?;
        let ok = match &user {
            Some(u) => {
                let (p, h) = (password.to_owned(), u.password_hash.clone());
                tokio::task::spawn_blocking(move || password::verify(&p, &h)).await.unwrap_or(false)
            }
            None => false,
        };
        match user {
            Some(user) if ok => {
                self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
                let mut cache = self.basic_cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(cache_key, Instant::now());
                Ok(user)
            }
            _ => {
                self.record_failure(name);
                Err(Error::Unauthorized(None))
            }
        }
    }

    /// A refresh token for a login, valid for [`REFRESH_TTL`] or until the
    /// user is removed and, for a password login, the password changes; for
    /// an access token's login, until the token is revoked.
    pub fn issue_refresh(&self, login: &Login) -> String {
        let user = &login.user;
        let now = now_secs();
        self.key.sign_refresh(&RefreshClaims {
            iss: token::ISSUER.into(),
            sub: user.name.clone(),
            aud: self.service.clone(),
            exp: now + REFRESH_TTL.as_secs(),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            fp: self.key.fingerprint(&user.password_hash),
            pat: login.cap.as_ref().map(|c| c.id.clone()),
        })
    }

    /// The user a refresh token stands for, if it is genuine, unexpired and
    /// the account is unchanged since it was issued; `UNAUTHORIZED` otherwise.
    pub async fn redeem_refresh(&self, refresh_token: &str) -> Result<Login> {
        let claims =
            self.key.verify_refresh(refresh_token, &self.service, now_secs()).map_err(|e| {
                tracing::info!(error = %e, "refused refresh token");
                Error::Unauthorized(None)
            })?;
        if let Some(id) = &claims.pat {
            let record = self.meta.access_token(id).await?.filter(|r| r.user == claims.sub);
            let login = match record {
                Some(record) => self.token_standing(record).await?,
                None => None,
            };
            return login.ok_or_else(|| {
                tracing::info!(
                    user = claims.sub,
                    "refused refresh token of a revoked access token"
                );
                Error::Unauthorized(None)
            });
        }
        match self.meta.user(&claims.sub).await? {
            Some(user) if self.key.fingerprint(&user.password_hash) == claims.fp => {
                Ok(Login { user, cap: None })
            }
            _ => {
                tracing::info!(user = claims.sub, "refused refresh token of a changed account");
                Err(Error::Unauthorized(None))
            }
        }
    }

    /// Reads the `Authorization` header. No header: anonymous. Bad
    /// credentials or an invalid token: `UNAUTHORIZED`.
    pub async fn identify(&self, authorization: Option<&str>) -> Result<Identity> {
        let Some(value) = authorization else { return Ok(Identity::Anonymous) };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let (name, pass) = decode_basic(rest.trim()).ok_or(Error::Unauthorized(None))?;
            let login = self.login(&name, &pass).await?;
            return Ok(match login.cap {
                None => Identity::User(login.user),
                Some(cap) => Identity::AccessToken(login.user, cap),
            });
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let claims = self.key.verify(rest.trim(), &self.service, now_secs()).map_err(|e| {
                tracing::info!(error = %e, "refused token");
                Error::Unauthorized(None)
            })?;
            return Ok(Identity::Token(claims));
        }
        Err(Error::Unauthorized(None))
    }

    /// What the (optional) user may do on `repo`.
    pub async fn allowed(&self, user: Option<&UserRecord>, repo: &str) -> Result<Vec<Action>> {
        let owns = match (user, namespace(repo)) {
            (Some(u), Some(ns)) if u.name == ns => true,
            (Some(u), Some(ns)) => {
                self.meta.org(ns).await?.is_some_and(|o| o.members.contains(&u.name))
            }
            _ => false,
        };
        let private = self.meta.repository_private(repo).await?;
        Ok(policy(user, owns, private))
    }

    /// Whether `identity` may do `action` on `repo`.
    pub async fn permits(&self, identity: &Identity, repo: &str, action: Action) -> Result<bool> {
        match identity {
            Identity::Token(c) => Ok(c.access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repo
                    && a.actions.iter().any(|x| x == action.as_str())
            })),
            Identity::User(u) => Ok(self.allowed(Some(u), repo).await?.contains(&action)),
            Identity::AccessToken(u, cap) => Ok(cap.actions.contains(&action)
                && self.allowed(Some(u), repo).await?.contains(&action)),
            Identity::Anonymous => Ok(self.allowed(None, repo).await?.contains(&action)),
        }
    }

    /// The user behind an identity (a token's subject is looked up again,
    /// so a deleted user's tokens lose their standing for listings).
    pub async fn user_of(&self, identity: &Identity) -> Result<Option<UserRecord>> {
        match identity {
            Identity::Anonymous => Ok(None),
            Identity::User(u) | Identity::AccessToken(u, _) => Ok(Some(u.clone())),
            Identity::Token(c) if c.sub.is_empty() => Ok(None),
            Identity::Token(c) => Ok(self.meta.user(&c.sub).await?),
        }
    }

    /// Issues a token for `scopes` (`repository:NAME:ACTIONS`); what is not
    /// allowed is left out, unknown scopes are ignored.
    pub async fn issue(&self, login: Option<&Login>, scopes: &[String]) -> Result<TokenResponse> {
        let user = login.map(|l| &l.user);
        let mut access: Vec<Access> = Vec::new();
        for scope in scopes {
            for (name, asked) in parse_scope(scope) {
                let mut allowed = self.allowed(user, &name).await?;
                if let Some(login) = login {
                    allowed = login.limit(allowed);
                }
                let granted: Vec<String> = asked
                    .iter()
                    .filter(|a| allowed.contains(a))
                    .map(|a| a.as_str().to_owned())
                    .collect();
                if granted.is_empty() {
                    continue;
                }
                match access.iter_mut().find(|a| a.name == name) {
                    Some(existing) => {
                        for g in granted {
                            if !existing.actions.contains(&g) {
                                existing.actions.push(g);
                            }
                        }
                    }
                    None => {
                        access.push(Access { kind: "repository".into(), name, actions: granted })
                    }
                }
            }
        }
        let now = now_secs();
        let claims = Claims {
            iss: token::ISSUER.into(),
            sub: user.map(|u| u.name.clone()).unwrap_or_default(),
            aud: self.service.clone(),
            exp: now + TOKEN_TTL.as_secs(),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
        };
        let token = self.key.sign(&claims);
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: TOKEN_TTL.as_secs(),
            issued_at: token::rfc3339(now),
            refresh_token: None,
        })
    }
}

/// Creates a personal access token for an existing `user` in `meta` (the
/// CLI does this without a server); returns its record and its text.
pub async fn create_access_token(
    meta: &dyn MetadataStore,
    user: &str,
    description: &str,
    scope: pat::TokenScope,
) -> Result<(crate::metadata::browse::AccessTokenRecord, String)> {
    let (record, text) = pat::generate(user, description, scope, now_secs() as i64)
        .map_err(|e| Error::Storage(crate::storage::StorageError::Io(e)))?;
    if !meta.create_access_token(&record).await? {
        return Err(Error::NameUnknown(format!("no such user: {user}")));
    }
    Ok((record, text))
}

/// `repository:NAME:pull,push` → `(NAME, [Pull, Push])`; `*` means every
/// action. Anything else (other resource types, bad names) yields nothing.
pub fn parse_scope(scope: &str) -> Vec<(String, Vec<Action>)> {
    scope
        .split(' ')
        .filter_map(|s| {
            let rest = s.strip_prefix("repository:")?;
            let (name, actions) = rest.rsplit_once(':')?;
            let name = official_name(berth_reference::RepoName::parse(name).ok()?).ok()?;
            let actions: Vec<Action> = if actions == "*" {
                Action::ALL.to_vec()
            } else {
                actions.split(',').filter_map(Action::parse).collect()
            };
            Some((name.as_str().to_owned(), actions))
        })
        .collect()
}

/// Decodes `base64(user:password)`.
pub fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, admin: bool) -> UserRecord {
        UserRecord { name: name.into(), password_hash: String::new(), admin }
    }

    #[test]
    fn namespaces() {
        assert_eq!(namespace("mynanoserver"), None);
        assert_eq!(namespace("library/busybox"), None);
        assert_eq!(namespace("alice/app"), Some("alice"));
        assert_eq!(namespace("acme/team/app"), Some("acme"));
    }

    #[test]
    fn rules() {
        let alice = user("alice", false);
        let admin = user("root", true);
        assert_eq!(policy(Some(&alice), true, true), Action::ALL);
        assert_eq!(policy(Some(&alice), false, false), [Action::Pull]);
        assert!(policy(Some(&alice), false, true).is_empty());
        assert_eq!(policy(None, false, false), [Action::Pull]);
        assert!(policy(None, false, true).is_empty());
        assert_eq!(policy(Some(&admin), false, true), Action::ALL);
    }

    #[test]
    fn scopes() {
        assert_eq!(
            parse_scope("repository:alice/app:pull,push"),
            [("alice/app".to_owned(), vec![Action::Pull, Action::Push])]
        );
        assert_eq!(parse_scope("repository:x:*")[0].1, Action::ALL);
        assert!(parse_scope("registry:catalog:*").is_empty());
        assert!(parse_scope("repository:Bad/Name:pull").is_empty());
        assert_eq!(decode_basic("YWxpY2U6cDpzcw=="), Some(("alice".to_owned(), "p:ss".to_owned())));
    }
}
