//! Who is browsing: sessions, CSRF tokens, the `Origin` check and the
//! login throttle per address.
//!
//! A session is a random ID in an `HttpOnly; SameSite=Lax` cookie
//! (`Secure` and the `__Host-` prefix over TLS); only its SHA-256 is
//! stored. A new one is made at every login; logout, a password change and
//! removing the user end it. The cookie is read only by the website: the
//! `/v2`, `/v1` and `/token` handlers never look at cookies.
//!
//! Every form carries a CSRF token: a keyed digest of the session ID, or
//! for visitors not signed in, of a random `berth_csrf` cookie. A POST must
//! carry the token of its cookie, and a browser's `Origin` must be this
//! site.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use sha2::Digest as _;

use crate::api::AppState;
use crate::error::Result;
use crate::metadata::UserRecord;
use crate::metadata::browse::{SessionRecord, Viewer};

/// The website's settings.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Whether anyone may create an account at `/signup` (off by default).
    pub signup: bool,
    /// How long a session lasts after login.
    pub session_ttl: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { signup: false, session_ttl: Duration::from_secs(7 * 24 * 3600) }
    }
}

#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<Instant>,
}

/// Failed logins from one address allowed before it is slowed down.
const ADDRESS_FREE_FAILURES: u32 = 10;

/// What the website keeps in memory.
pub struct WebState {
    pub config: WebConfig,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// The last garbage collection run from the admin page.
    pub last_gc: Mutex<Option<String>>,
}

impl WebState {
    pub fn new(config: WebConfig) -> WebState {
        WebState { config, failures: Mutex::new(HashMap::new()), last_gc: Mutex::new(None) }
    }

    /// Whether logins from `addr` must wait.
    pub fn address_throttled(&self, addr: Option<IpAddr>) -> bool {
        let Some(addr) = addr else { return false };
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = failures.get(&addr) else { return false };
        if f.count < ADDRESS_FREE_FAILURES {
            return false;
        }
        let wait = Duration::from_secs(1 << (f.count - ADDRESS_FREE_FAILURES).min(6));
        f.last.is_some_and(|l| l.elapsed() < wait)
    }

    pub fn address_failed(&self, addr: Option<IpAddr>) {
        let Some(addr) = addr else { return };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            failures.clear();
        }
        let f = failures.entry(addr).or_default();
        f.count += 1;
        f.last = Some(Instant::now());
    }

    pub fn address_succeeded(&self, addr: Option<IpAddr>) {
        if let Some(addr) = addr {
            self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&addr);
        }
    }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(bytes))
}

fn hash(id: &str) -> String {
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

/// The cookie names: `__Host-` prefixed over TLS.
fn names(tls: bool) -> (&'static str, &'static str) {
    if tls {
        ("__Host-berth_session", "__Host-berth_csrf")
    } else {
        ("berth_session", "berth_csrf")
    }
}

fn attributes(tls: bool) -> &'static str {
    if tls {
        "; Path=/; HttpOnly; SameSite=Lax; Secure"
    } else {
        "; Path=/; HttpOnly; SameSite=Lax"
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The person behind a request to the website.
pub struct Visitor {
    pub user: Option<UserRecord>,
    /// The raw session ID, when signed in.
    session_id: Option<String>,
    /// The token every form of this page carries.
    pub csrf: String,
    /// Cookies to set with the answer.
    pub set_cookies: Vec<String>,
    /// Which private repositories listings may show.
    pub viewer: Viewer,
}

impl Visitor {
    pub fn admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.admin)
    }

    pub fn name(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }
}

/// Reads the session and CSRF cookies.
pub async fn visitor(app: &AppState, headers: &HeaderMap) -> Result<Visitor> {
    let Some(auth) = &app.auth else {
        let viewer = app.hub.viewer(false, None).await?;
        return Ok(Visitor {
            user: None,
            session_id: None,
            csrf: String::new(),
            set_cookies: Vec::new(),
            viewer,
        });
    };
    let tls = app.scheme == "https";
    let (session_name, csrf_name) = names(tls);
    let meta = auth.metadata();
    let mut user = None;
    let mut session_id = None;
    if let Some(id) = cookie(headers, session_name)
        && let Some(s) = meta.session(&hash(&id), now()).await?
    {
        user = meta.user(&s.user).await?;
        if user.is_some() {
            session_id = Some(id);
        }
    }
    let mut set_cookies = Vec::new();
    let csrf = match &session_id {
        Some(id) => auth.tag("csrf-session", id.as_bytes()),
        None => {
            let anon = match cookie(headers, csrf_name) {
                Some(a) => a,
                None => {
                    let a = random_id().map_err(crate::storage::StorageError::Io)?;
                    set_cookies.push(format!("{csrf_name}={a}{}", attributes(tls)));
                    a
                }
            };
            auth.tag("csrf-anonymous", anon.as_bytes())
        }
    };
    let viewer = app.hub.viewer(true, user.as_ref()).await?;
    Ok(Visitor { user, session_id, csrf, set_cookies, viewer })
}

/// Starts a session for `user` (ending `visitor`'s old one); returns the
/// `Set-Cookie` value.
pub async fn start(app: &AppState, visitor: &Visitor, user: &str) -> Result<String> {
    let auth = app.auth.as_ref().expect("sessions need accounts");
    end(app, visitor).await?;
    let id = random_id().map_err(crate::storage::StorageError::Io)?;
    let created = now();
    let ttl = app.web.config.session_ttl.as_secs() as i64;
    let record =
        SessionRecord { hash: hash(&id), user: user.to_owned(), created, expires: created + ttl };
    auth.metadata().create_session(&record).await?;
    let tls = app.scheme == "https";
    Ok(format!("{}={id}{}; Max-Age={ttl}", names(tls).0, attributes(tls)))
}

/// Ends `visitor`'s session, if any.
pub async fn end(app: &AppState, visitor: &Visitor) -> Result<()> {
    if let (Some(auth), Some(id)) = (&app.auth, &visitor.session_id) {
        auth.metadata().delete_session(&hash(id)).await?;
    }
    Ok(())
}

/// The `Set-Cookie` that removes the session cookie.
pub fn clear(app: &AppState) -> String {
    let tls = app.scheme == "https";
    format!("{}={}; Max-Age=0", names(tls).0, attributes(tls))
}

/// Whether a POST may be acted on: a browser's `Origin` (or, lacking it,
/// `Sec-Fetch-Site`) says it comes from this site, and the form carries the
/// visitor's CSRF token.
pub fn post_allowed(
    app: &AppState,
    headers: &HeaderMap,
    visitor: &Visitor,
    token: Option<&str>,
) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) => {
            if origin != format!("{}://{host}", app.scheme) {
                return false;
            }
        }
        None => {
            let site = headers.get("sec-fetch-site").and_then(|s| s.to_str().ok());
            if site.is_some_and(|s| s != "same-origin" && s != "none") {
                return false;
            }
        }
    }
    let Some(token) = token else { return false };
    !visitor.csrf.is_empty()
        && token.len() == visitor.csrf.len()
        && token.bytes().zip(visitor.csrf.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}
