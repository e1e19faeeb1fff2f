//! One HTTP session with registries: auth challenges answered, transient
//! failures retried with backoff, redirects followed with a limit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response};

use crate::ClientError;
use crate::auth::{Challenge, TokenCache, TokenResponse, parse_challenges};
use crate::credentials::{Anonymous, Credential, CredentialSource};
use crate::error::registry_error;
use crate::hosts::ClientConfig;

/// How a [`Client`] behaves.
#[derive(Clone)]
pub struct ClientOptions {
    pub config: ClientConfig,
    pub credentials: Arc<dyn CredentialSource>,
    /// Retries of a transient failure (connection reset, 5xx, 429) per request.
    pub retries: u32,
    /// First backoff; doubled after each retry.
    pub backoff: Duration,
    /// Longest `Retry-After` honoured; longer ones are cut to this.
    pub max_retry_after: Duration,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            config: ClientConfig::default(),
            credentials: Arc::new(Anonymous),
            retries: 5,
            backoff: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(60),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// A registry client. Cheap to share by reference; holds the connection
/// pool, the challenges learnt per registry and the token cache.
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) opts: ClientOptions,
    tokens: TokenCache,
    /// The challenge each registry base URL answered with.
    challenges: Mutex<HashMap<String, Challenge>>,
    /// Registries where anonymous tokens proved insufficient: log in at once.
    needs_login: Mutex<HashSet<String>>,
}

/// Where a request goes and what access it needs.
pub(crate) struct Target<'a> {
    /// `https://registry-1.docker.io`
    pub base: &'a str,
    /// The registry's name, for credentials (`docker.io`).
    pub domain: &'a str,
    /// Token scopes (`repository:library/busybox:pull`).
    pub scopes: &'a [String],
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client, ClientError> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().iter().any(|u| u == attempt.url()) {
                let url = attempt.url().to_string();
                attempt.error(format!("redirect loop at {url}"))
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("stopped after {MAX_REDIRECTS} redirects"))
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .redirect(policy)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ClientError::Network {
                method: "INIT".into(),
                url: String::new(),
                message: error_chain(&e),
            })?;
        Ok(Client {
            http,
            opts,
            tokens: TokenCache::default(),
            challenges: Mutex::new(HashMap::new()),
            needs_login: Mutex::new(HashSet::new()),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.opts.config
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        self.opts.backoff.saturating_mul(1 << attempt.min(8))
    }

    /// Sends a request, answering auth challenges (at most twice: learn the
    /// challenge, then escalate from an anonymous token to the login) and
    /// retrying transient failures when `retry` allows (the body must then
    /// be rebuildable: `build` is called once per attempt).
    pub(crate) async fn send(
        &self,
        t: &Target<'_>,
        method: Method,
        url: &str,
        retry: bool,
        build: &(dyn Fn(RequestBuilder) -> RequestBuilder + Sync),
    ) -> Result<Response, ClientError> {
        let mut attempt = 0u32;
        let mut auth_rounds = 0u32;
        loop {
            let use_login = self.needs_login.lock().expect("lock").contains(t.base);
            let auth = self.authorization(t, use_login).await?;
            let mut rb = build(self.http.request(method.clone(), url));
            if let Some(a) = &auth {
                rb = rb.header(AUTHORIZATION, a);
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) if retry && attempt < self.opts.retries && is_transient(&e) => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(network_error(&method, url, &e)),
            };
            let status = resp.status().as_u16();
            if status == 401 && auth_rounds < 2 {
                let Some(header) = resp.headers().get(WWW_AUTHENTICATE) else {
                    return Err(registry_error(resp).await);
                };
                let header = header.to_str().unwrap_or_default().to_owned();
                let challenge = pick_challenge(&header).map_err(|detail| {
                    ClientError::MalformedChallenge { url: url.to_owned(), detail }
                })?;
                let known = self.challenges.lock().expect("lock").get(t.base).cloned();
                let has_login = self.opts.credentials.get(t.domain)?.is_some();
                // A request sent before the challenge was known (perhaps learnt
                // meanwhile by a concurrent request) just retries; one that
                // answered this very challenge was refused.
                if auth.is_some() && known.as_ref().is_some_and(|k| same_authority(k, &challenge)) {
                    // Only a login can change the outcome.
                    if use_login || !has_login || matches!(challenge, Challenge::Basic { .. }) {
                        return Err(registry_error(resp).await);
                    }
                    self.needs_login.lock().expect("lock").insert(t.base.to_owned());
                }
                self.tokens.forget(t.base, &t.scopes.join(" "), use_login);
                self.challenges.lock().expect("lock").insert(t.base.to_owned(), challenge);
                auth_rounds += 1;
                continue;
            }
            if retry && attempt < self.opts.retries && is_retryable_status(status) {
                let wait = retry_after(&resp)
                    .map(|d| d.min(self.opts.max_retry_after))
                    .unwrap_or_else(|| self.backoff(attempt));
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` value for a request to `t`, if any is needed.
    async fn authorization(
        &self,
        t: &Target<'_>,
        use_login: bool,
    ) -> Result<Option<String>, ClientError> {
        let challenge = self.challenges.lock().expect("lock").get(t.base).cloned();
        let login = self.opts.credentials.get(t.domain)?;
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic { .. }) => Ok(login.map(|c| basic_header(&c))),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let scope_key = t.scopes.join(" ");
                let with_login = use_login && login.is_some();
                if let Some(tok) = self.tokens.get(t.base, &scope_key, with_login) {
                    return Ok(Some(format!("Bearer {tok}")));
                }
                let cred = if with_login { login.as_ref() } else { None };
                let resp =
                    match self.fetch_token(&realm, service.as_deref(), t.scopes, cred, false).await
                    {
                        // The token service wants a login even for this: use it.
                        Err(ClientError::Registry(e))
                            if e.status == 401 && cred.is_none() && login.is_some() =>
                        {
                            self.needs_login.lock().expect("lock").insert(t.base.to_owned());
                            self.fetch_token(
                                &realm,
                                service.as_deref(),
                                t.scopes,
                                login.as_ref(),
                                false,
                            )
                            .await?
                        }
                        other => other?,
                    };
                let token = resp.bearer().ok_or_else(|| ClientError::InvalidResponse {
                    url: realm.clone(),
                    detail: "token response has no token".into(),
                })?;
                self.tokens.put(t.base, &scope_key, with_login, token.to_owned(), resp.lifetime());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Asks a token service for a token (docker's token flow, or OAuth2 with
    /// a refresh token when the login is an identity token).
    pub(crate) async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        cred: Option<&Credential>,
        offline: bool,
    ) -> Result<TokenResponse, ClientError> {
        let rb = match cred {
            Some(Credential::IdentityToken { token, .. }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", token.clone()),
                    ("client_id", "berth".to_owned()),
                ];
                form.extend(service.map(|s| ("service", s.to_owned())));
                if !scopes.is_empty() {
                    form.push(("scope", scopes.join(" ")));
                }
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", form_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                self.http
                    .post(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            _ => {
                let mut query: Vec<(&str, &str)> =
                    service.iter().map(|s| ("service", *s)).collect();
                query.extend(scopes.iter().map(|s| ("scope", s.as_str())));
                if offline {
                    query.extend([("offline_token", "true"), ("client_id", "berth")]);
                }
                let mut rb = self.http.get(realm).query(&query);
                if let Some(c) = cred {
                    rb = rb.header(AUTHORIZATION, basic_header(c));
                }
                rb
            }
        };
        let resp = rb.send().await.map_err(|e| network_error(&Method::GET, realm, &e))?;
        if !resp.status().is_success() {
            return Err(registry_error(resp).await);
        }
        let body = read_limited(resp, 1 << 20).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::InvalidResponse {
            url: realm.to_owned(),
            detail: format!("token response: {e}"),
        })
    }

    /// Verifies a login against registry `domain` (what `berth login` does
    /// before saving it). Returns an identity token when the registry issued one.
    pub async fn login(
        &self,
        domain: &str,
        cred: &Credential,
    ) -> Result<Option<String>, ClientError> {
        let base = self.opts.config.base_url(domain);
        let url = format!("{base}/v2/");
        let resp =
            self.http.get(&url).send().await.map_err(|e| network_error(&Method::GET, &url, &e))?;
        if resp.status().is_success() {
            return Ok(None); // open registry: nothing to verify against
        }
        if resp.status().as_u16() != 401 {
            return Err(registry_error(resp).await);
        }
        let header = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let challenge = pick_challenge(&header)
            .map_err(|detail| ClientError::MalformedChallenge { url: url.clone(), detail })?;
        match challenge {
            Challenge::Basic { .. } => {
                let resp = self
                    .http
                    .get(&url)
                    .header(AUTHORIZATION, basic_header(cred))
                    .send()
                    .await
                    .map_err(|e| network_error(&Method::GET, &url, &e))?;
                if resp.status().is_success() { Ok(None) } else { Err(registry_error(resp).await) }
            }
            Challenge::Bearer { realm, service, .. } => {
                let t = self.fetch_token(&realm, service.as_deref(), &[], Some(cred), true).await?;
                if t.bearer().is_none() {
                    return Err(ClientError::InvalidResponse {
                        url: realm,
                        detail: "token response has no token".into(),
                    });
                }
                Ok(t.refresh_token)
            }
        }
    }
}

/// Whether two challenges name the same authority (the scope a registry
/// mentions differs per request and does not matter here).
fn same_authority(a: &Challenge, b: &Challenge) -> bool {
    match (a, b) {
        (Challenge::Basic { .. }, Challenge::Basic { .. }) => true,
        (
            Challenge::Bearer { realm: r1, service: s1, .. },
            Challenge::Bearer { realm: r2, service: s2, .. },
        ) => r1 == r2 && s1 == s2,
        _ => false,
    }
}

/// The challenge berth answers: Bearer if offered, else Basic.
fn pick_challenge(header: &str) -> Result<Challenge, String> {
    let mut all = parse_challenges(header)?;
    all.sort_by_key(|c| matches!(c, Challenge::Basic { .. }));
    Ok(all.swap_remove(0))
}

fn basic_header(c: &Credential) -> String {
    let (u, p) = match c {
        Credential::Basic { username, password } => (username.as_str(), password.as_str()),
        Credential::IdentityToken { username, token } => (username.as_str(), token.as_str()),
    };
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Connection-level failures worth another try (not redirect or build errors).
pub(crate) fn is_transient(e: &reqwest::Error) -> bool {
    !e.is_redirect()
        && !e.is_builder()
        && (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode())
}

/// `Retry-After`: a number of seconds or an HTTP date (RFC 9110's
/// IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`); a date in the past is no
/// wait. The caller caps it.
pub(crate) fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(Duration::from_secs(at).saturating_sub(now))
}

/// An IMF-fixdate as seconds since the Unix epoch.
fn parse_http_date(s: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let (day, month, year, time, zone) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if zone != "GMT" || parts.next().is_some() || day.len() != 2 || year.len() != 4 {
        return None;
    }
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let day: u64 = day.parse().ok()?;
    let year: u64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|x| if x.len() == 2 { x.parse::<u64>().ok() } else { None });
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some()
        || !(1..=31).contains(&day)
        || year < 1970
        || h > 23
        || m > 59
        || sec > 60
    {
        return None;
    }
    let days =
        u64::try_from(berth_oci::time::days_from_civil(year as i64, month as i64, day as i64))
            .ok()?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

pub(crate) fn network_error(method: &Method, url: &str, e: &reqwest::Error) -> ClientError {
    ClientError::Network {
        method: method.to_string(),
        url: url.to_owned(),
        message: error_chain(e),
    }
}

/// An error and its causes, `a: b: c`, without repeats.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Reads a whole body of at most `limit` bytes.
pub(crate) async fn read_limited(resp: Response, limit: u64) -> Result<Vec<u8>, ClientError> {
    let url = resp.url().to_string();
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ClientError::TooLarge { url, what: "response body".into(), limit });
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| network_error(&Method::GET, &url, &e))?;
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(ClientError::TooLarge { url, what: "response body".into(), limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::parse_http_date;

    #[test]
    fn http_dates_in_imf_fixdate() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"), Some(1_835_481_599));
        for bad in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
