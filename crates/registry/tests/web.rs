//! The website over real HTTP: pages, headers, sessions, CSRF, privacy on
//! every list, the sanitiser on real pages, and the bare-name mapping.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use berth_registry::Limits;
use berth_registry::web::WebConfig;
use common::*;
use reqwest::StatusCode;

/// A browser: keeps cookies, sends `Origin` on POSTs, follows no redirects.
struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let at = self.body.find(r#"name="csrf" value=""#).expect("a form with a CSRF token");
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    fn location(&self) -> &str {
        self.headers["location"].to_str().unwrap()
    }
}

impl Browser {
    fn new(reg: &TestRegistry) -> Browser {
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { base: reg.base.clone(), client, cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn keep(&mut self, res: reqwest::Response) -> Page {
        for c in res.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(res).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("origin", &self.base)
            .form(fields)
            .send()
            .await
            .unwrap();
        self.keep(res).await
    }

    /// Signs in through the login form.
    async fn sign_in(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        let csrf = form.csrf();
        self.post("/login", &[("csrf", &csrf), ("username", user), ("password", password)]).await
    }
}

async fn signed_in(reg: &TestRegistry, user: &str) -> Browser {
    let mut b = Browser::new(reg);
    let res = b.sign_in(user, &format!("{user}-pw")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    b
}

fn basic_client(user: &str) -> reqwest::Client {
    use base64::Engine;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{user}-pw"));
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Basic {creds}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

async fn start_site(web: WebConfig) -> TestRegistry {
    let dir = tempfile::tempdir().unwrap();
    start_web(Backend::FsSqlite, dir, Limits::default(), true, web).await
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_hashed_assets() {
    let reg = start_site(WebConfig::default()).await;
    let mut b = Browser::new(&reg);
    for path in ["/", "/search?q=x", "/login", "/no/such/page", "/_/nothing"] {
        let page = b.get(path).await;
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(page.headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(page.headers["referrer-policy"], "same-origin", "{path}");
        assert!(page.body.len() < 50_000, "{path} is {} bytes", page.body.len());
    }
    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.headers["content-type"], "text/html; charset=utf-8");
    assert!(home.body.starts_with("<!DOCTYPE html><html lang=\"en\">"), "{}", &home.body[..60]);
    assert!(home.body.contains(r#"<label class="sr-only" for="site-search">"#), "labelled search");
    assert_eq!(b.get("/_/nothing").await.status, StatusCode::NOT_FOUND);
    // Assets under content-hashed names, cached forever; other names are 404.
    let css = &home.body[home.body.find("/static/app.").unwrap()..];
    let css = &css[..css.find('"').unwrap()];
    let res = reqwest::get(format!("{}{css}", reg.base)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    let res = reqwest::get(format!("{}/static/app.000000000000.css", reg.base)).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Without sign-up, /signup does not exist.
    assert_eq!(b.get("/signup").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_needs_the_csrf_token_and_a_same_site_origin() {
    let reg = start_site(WebConfig::default()).await;
    let mut b = Browser::new(&reg);
    let form = b.get("/login").await;
    let csrf = form.csrf();
    assert!(b.cookies.contains_key("berth_csrf"));
    // No token, a wrong token, a foreign Origin: 403, and no session.
    let res = b.post("/login", &[("username", "alice"), ("password", "alice-pw")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res =
        b.post("/login", &[("csrf", "0"), ("username", "alice"), ("password", "alice-pw")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = b
        .client
        .post(format!("{}/login", reg.base))
        .header("cookie", b.cookie_header())
        .header("origin", "http://evil.example")
        .form(&[("csrf", csrf.as_str()), ("username", "alice"), ("password", "alice-pw")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!b.cookies.contains_key("berth_session"));
    // A wrong password and an unknown user get the same message.
    let wrong =
        b.post("/login", &[("csrf", &csrf), ("username", "alice"), ("password", "nope")]).await;
    let nobody =
        b.post("/login", &[("csrf", &csrf), ("username", "nobody"), ("password", "x")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Incorrect username or password."));
    assert!(nobody.body.contains("Incorrect username or password."));
    // An access token is not a website password.
    let meta =
        berth_registry::metadata::SqliteMetadata::open(&reg.root().join("metadata.db")).unwrap();
    let (_, token) = berth_registry::auth::create_access_token(
        &meta,
        "alice",
        "t",
        berth_registry::auth::pat::TokenScope::Delete,
    )
    .await
    .unwrap();
    let res =
        b.post("/login", &[("csrf", &csrf), ("username", "alice"), ("password", &token)]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    // The right password: a new session in an HttpOnly, SameSite=Lax cookie.
    let res =
        b.post("/login", &[("csrf", &csrf), ("username", "alice"), ("password", "alice-pw")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/");
    let set = res
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    let session = set.iter().find(|c| c.starts_with("berth_session=")).expect("session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
    let home = b.get("/").await;
    assert!(home.body.contains("Your repositories"), "signed in");
    // The cookie never authenticates the registry API.
    let res = reqwest::Client::new()
        .get(format!("{}/v2/", reg.base))
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Logging out ends the session on the server, not only in the browser.
    let stolen = b.cookies["berth_session"].clone();
    let csrf = home.csrf();
    let res = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(!b.cookies.contains_key("berth_session"));
    b.cookies.insert("berth_session".into(), stolen);
    assert!(!b.get("/").await.body.contains("Your repositories"));
}

#[tokio::test]
async fn logins_are_throttled_per_address() {
    let reg = start_site(WebConfig::default()).await;
    let mut b = Browser::new(&reg);
    let csrf = b.get("/login").await.csrf();
    // Different user names from one address: the address is slowed down.
    for i in 0..10 {
        let name = format!("user{i}");
        let res =
            b.post("/login", &[("csrf", &csrf), ("username", &name), ("password", "x")]).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res =
        b.post("/login", &[("csrf", &csrf), ("username", "alice"), ("password", "alice-pw")]).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(res.body.contains("Incorrect username or password."), "one message for all");
}

#[tokio::test]
async fn sessions_expire_and_end_with_a_password_change_or_the_user() {
    let reg =
        start_site(WebConfig { session_ttl: Duration::from_secs(1), ..Default::default() }).await;
    let mut b = signed_in(&reg, "alice").await;
    assert!(b.get("/").await.body.contains("Your repositories"));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!b.get("/").await.body.contains("Your repositories"), "expired");

    let reg = start_site(WebConfig::default()).await;
    let mut here = signed_in(&reg, "alice").await;
    let mut there = signed_in(&reg, "alice").await;
    let page = here.get("/settings").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let res = here
        .post(
            "/settings",
            &[
                ("csrf", &csrf),
                ("do", "password"),
                ("current", "alice-pw"),
                ("new", "alice-new-pw"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("Password changed"));
    assert!(here.get("/").await.body.contains("Your repositories"), "this browser stays in");
    assert!(!there.get("/").await.body.contains("Your repositories"), "others are out");
    // Removing the user ends its sessions.
    let meta =
        berth_registry::metadata::SqliteMetadata::open(&reg.root().join("metadata.db")).unwrap();
    use berth_registry::metadata::prelude::*;
    assert!(meta.delete_user("alice").await.unwrap());
    assert!(!here.get("/").await.body.contains("Your repositories"));
}

#[tokio::test]
async fn a_private_repository_is_a_404_and_absent_from_every_list() {
    let mut reg = start_site(WebConfig::default()).await;
    reg.client = basic_client("alice");
    reg.push_image("alice/secret", "v1", "s").await;
    reg.push_image("alice/open", "v1", "o").await;
    let meta =
        berth_registry::metadata::SqliteMetadata::open(&reg.root().join("metadata.db")).unwrap();
    use berth_registry::metadata::prelude::*;
    meta.set_repository_private("alice/secret", true).await.unwrap();
    let paths = [
        "/r/alice/secret",
        "/r/alice/secret/tags",
        "/r/alice/secret/tags/v1",
        "/r/alice/secret/settings",
    ];
    let lists = ["/", "/search?q=alice", "/search?q=secret", "/u/alice"];
    for mut b in [Browser::new(&reg), signed_in(&reg, "bob").await] {
        for p in paths {
            assert_eq!(b.get(p).await.status, StatusCode::NOT_FOUND, "{p}");
        }
        for p in lists {
            let page = b.get(p).await;
            assert!(!page.body.contains("alice/secret"), "{p}");
        }
        assert!(b.get("/search?q=alice").await.body.contains("1 result<"), "counts leave it out");
        assert!(b.get("/u/alice").await.body.contains("1 repository"));
    }
    for user in ["alice", "admin"] {
        let mut b = signed_in(&reg, user).await;
        for p in &paths[..3] {
            assert_eq!(b.get(p).await.status, StatusCode::OK, "{user} {p}");
        }
        assert!(b.get("/search?q=alice").await.body.contains("2 results"), "{user}");
        let page = b.get("/u/alice").await;
        assert!(page.body.contains("alice/secret") && page.body.contains("Private"), "{user}");
    }
    // The owner sees the settings; others may not post to them.
    let mut alice = signed_in(&reg, "alice").await;
    assert_eq!(alice.get("/r/alice/secret/settings").await.status, StatusCode::OK);
    let mut bob = signed_in(&reg, "bob").await;
    let csrf = bob.get("/").await.csrf();
    let res = bob
        .post(
            "/r/alice/open/settings",
            &[("csrf", &csrf), ("do", "visibility"), ("private", "1"), ("confirm", "alice/open")],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(!meta.repository_private("alice/open").await.unwrap());
}

#[tokio::test]
async fn official_images_answer_by_their_bare_name_on_the_site() {
    let mut reg = start_site(WebConfig::default()).await;
    reg.client = basic_client("admin");
    reg.push_image("busybox", "musl", "b").await;
    let mut b = Browser::new(&reg);
    let page = b.get("/_/busybox").await;
    assert_eq!(page.status, StatusCode::OK);
    let host = reg.base.trim_start_matches("http://");
    assert!(page.body.contains(&format!("docker pull {host}/busybox")), "{}", page.body);
    assert!(page.body.contains("Official"));
    assert_eq!(b.get("/r/library/busybox").await.status, StatusCode::OK);
    assert_eq!(b.get("/r/busybox").await.status, StatusCode::OK);
    assert_eq!(b.get("/_/busybox/tags").await.status, StatusCode::OK);
    assert!(b.get("/search?q=busybox&official=1").await.body.contains(r#"href="/_/busybox""#));
}

#[tokio::test]
async fn tags_pages_show_platforms_and_deleting_a_tag_keeps_its_twin() {
    let mut reg = start_site(WebConfig::default()).await;
    reg.client = basic_client("alice");
    let (manifest, digest) = reg.push_image("alice/mynanoserver", "dev", "n").await;
    let res = reg.put_manifest("alice/mynanoserver", "1.0", OCI_MANIFEST, &manifest).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mut alice = signed_in(&reg, "alice").await;
    let tags = alice.get("/r/alice/mynanoserver/tags").await;
    assert_eq!(tags.status, StatusCode::OK);
    let short = &digest.to_string()[..19];
    assert!(tags.body.contains(short), "short digest {short}");
    assert!(tags.body.contains("linux/amd64"));
    assert!(tags.body.contains("by alice"));
    // Newest first: 1.0 was pushed after dev (same second: by name then).
    let (one, dev) = (tags.body.find(">1.0<").unwrap(), tags.body.find(">dev<").unwrap());
    assert!(one < dev, "1.0 listed first");
    let tag = alice.get("/r/alice/mynanoserver/tags/dev").await;
    assert_eq!(tag.status, StatusCode::OK);
    assert!(tag.body.contains("Layers") && tag.body.contains("History"));
    let settings = alice.get("/r/alice/mynanoserver/settings").await;
    let csrf = settings.csrf();
    let res = alice
        .post(
            "/r/alice/mynanoserver/settings",
            &[("csrf", &csrf), ("do", "delete-tags"), ("tag", "dev")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains("Deleted 1 tag."));
    let url = reg.url("/v2/alice/mynanoserver/tags/list");
    let list: serde_json::Value = reg.client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["tags"], serde_json::json!(["1.0"]));
    // Without the token the form is refused and nothing changes.
    let res = alice
        .post("/r/alice/mynanoserver/settings", &[("do", "delete-tags"), ("tag", "1.0")])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let list: serde_json::Value = reg
        .client
        .get(reg.url("/v2/alice/mynanoserver/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["tags"], serde_json::json!(["1.0"]));
}

#[tokio::test]
async fn overviews_are_sanitised_and_stars_count() {
    let mut reg = start_site(WebConfig::default()).await;
    reg.client = basic_client("alice");
    reg.push_image("alice/app", "v1", "a").await;
    let mut alice = signed_in(&reg, "alice").await;
    let csrf = alice.get("/r/alice/app/settings").await.csrf();
    let overview = "# Hello\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))\n";
    let preview = alice
        .post(
            "/r/alice/app/settings",
            &[
                ("csrf", &csrf),
                ("do", "describe"),
                ("mode", "preview"),
                ("description", "short"),
                ("overview", overview),
            ],
        )
        .await;
    assert!(preview.body.contains("<h1>Hello</h1>"), "preview renders");
    let res = alice
        .post(
            "/r/alice/app/settings",
            &[
                ("csrf", &csrf),
                ("do", "describe"),
                ("mode", "save"),
                ("description", "short"),
                ("overview", overview),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let page = alice.get("/r/alice/app").await;
    assert!(page.body.contains("<h1>Hello</h1>"));
    assert!(
        !page.body.contains("onerror=alert")
            || page.body.contains("&lt;img src=x onerror=alert(1)&gt;")
    );
    assert!(!page.body.contains("<img src=\"x\" onerror"));
    assert!(!page.body.contains("javascript:"));
    // A description over 100 characters is refused.
    let long = "x".repeat(101);
    let res = alice
        .post(
            "/r/alice/app/settings",
            &[
                ("csrf", &csrf),
                ("do", "describe"),
                ("mode", "save"),
                ("description", &long),
                ("overview", ""),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // Stars.
    let mut bob = signed_in(&reg, "bob").await;
    let page = bob.get("/r/alice/app").await;
    assert!(page.body.contains("0 stars"));
    let csrf = page.csrf();
    let res = bob.post("/r/alice/app/star", &[("csrf", &csrf), ("on", "1")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let page = bob.get("/r/alice/app").await;
    assert!(page.body.contains("1 star<") && page.body.contains("Unstar"), "{}", page.body);
}

#[tokio::test]
async fn signup_follows_docker_id_rules_when_open() {
    let reg = start_site(WebConfig { signup: true, ..Default::default() }).await;
    let mut b = Browser::new(&reg);
    let page = b.get("/signup").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    for bad in ["abc", "Upper1", "has-dash", "library", "admin", &"a".repeat(31)] {
        let res = b
            .post("/signup", &[("csrf", &csrf), ("username", bad), ("password", "long-enough")])
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let res =
        b.post("/signup", &[("csrf", &csrf), ("username", "carol1"), ("password", "short")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = b
        .post("/signup", &[("csrf", &csrf), ("username", "alice"), ("password", "long-enough")])
        .await;
    assert!(res.body.contains("taken"));
    let res = b
        .post("/signup", &[("csrf", &csrf), ("username", "carol1"), ("password", "long-enough")])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(b.get("/").await.body.contains("Your repositories"));
    // The new account pushes to its namespace with docker's Basic login.
    let res = reqwest::Client::new()
        .get(reg.url("/v2/"))
        .basic_auth("carol1", Some("long-enough"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_made_on_the_settings_page_work_for_clients() {
    let reg = start_site(WebConfig::default()).await;
    let mut alice = signed_in(&reg, "alice").await;
    let csrf = alice.get("/settings").await.csrf();
    let res = alice
        .post(
            "/settings",
            &[
                ("csrf", &csrf),
                ("do", "create-token"),
                ("description", "laptop"),
                ("scope", "write"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let at = res.body.find("berth_pat_").expect("the token is shown");
    let token = res.body[at..at + "berth_pat_".len() + 64].to_owned();
    let v2 = || {
        reqwest::Client::new().get(reg.url("/v2/")).basic_auth("alice", Some(token.clone())).send()
    };
    assert_eq!(v2().await.unwrap().status(), StatusCode::OK);
    let page = alice.get("/settings").await;
    assert!(page.body.contains("laptop") && !page.body.contains(&token), "shown once");
    let id = &token["berth_pat_".len()..][..16];
    let res = alice.post("/settings", &[("csrf", &csrf), ("do", "revoke"), ("id", id)]).await;
    assert!(res.body.contains("Token revoked."));
    assert_eq!(v2().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn multi_platform_tags_list_each_platform_but_not_attestations() {
    let mut reg = start_site(WebConfig::default()).await;
    reg.client = basic_client("alice");
    let repo = "alice/multi";
    let (amd, amd_digest) = reg.push_image(repo, "amd", "amd64 one").await;
    // An arm64 image: its own config says so.
    let config = br#"{"architecture":"arm64","os":"linux","variant":"v8"}"#;
    let c = reg.push_blob(repo, config).await;
    let l = reg.push_blob(repo, b"arm layer").await;
    let arm = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &c, config.len()), &[(&l, 9)], None);
    let res = reg.put_manifest(repo, "arm", OCI_MANIFEST, arm.as_bytes()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let arm_digest = berth_reference::Digest::sha256_of(arm.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{amd_digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{arm_digest}","size":{},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{arm_digest}","size":{},"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
        amd.len(),
        arm.len(),
        arm.len()
    );
    let res = reg.put_manifest(repo, "latest", OCI_INDEX, index.as_bytes()).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap());
    let mut b = Browser::new(&reg);
    let page = b.get("/r/alice/multi/tags/latest").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("linux/amd64") && page.body.contains("linux/arm64/v8"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("unknown/unknown"), "attestations are hidden");
    let tags = b.get("/r/alice/multi/tags?sort=name").await;
    assert!(tags.body.contains("linux/arm64/v8"));
    assert!(!tags.body.contains("unknown/unknown"));
    assert!(tags.body.contains(&arm_digest.to_string()[..19]));
    // Sorted by name: amd, arm, latest.
    let (a, r, l) = (
        tags.body.find(">amd<").unwrap(),
        tags.body.find(">arm<").unwrap(),
        tags.body.find(">latest<").unwrap(),
    );
    assert!(a < r && r < l);
}

#[tokio::test]
async fn administrators_manage_users_orgs_and_garbage_collection() {
    let mut reg = start_site(WebConfig::default()).await;
    let mut alice = signed_in(&reg, "alice").await;
    assert_eq!(alice.get("/admin").await.status, StatusCode::NOT_FOUND, "not for users");
    assert_eq!(Browser::new(&reg).get("/admin").await.status, StatusCode::SEE_OTHER);
    let mut admin = signed_in(&reg, "admin").await;
    let page = admin.get("/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(">alice<") && page.body.contains(">bob<"));
    let csrf = page.csrf();
    // An organisation, verified, with alice as a member: she pushes there.
    let res = admin
        .post(
            "/admin",
            &[
                ("csrf", &csrf),
                ("do", "org"),
                ("name", "widgets"),
                ("member", "alice"),
                ("verified", "1"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body.contains("Created widgets.")
            && res.body.contains("Added alice.")
            && res.body.contains("Marked verified.")
    );
    reg.client = basic_client("alice");
    reg.push_image("widgets/gear", "1", "g").await;
    let found = Browser::new(&reg).get("/search?q=gear&verified=1").await;
    assert!(found.body.contains("widgets/gear") && found.body.contains("Verified publisher"));
    assert!(Browser::new(&reg).get("/u/widgets").await.body.contains("Verified publisher"));
    // Garbage collection: a dry run, then the result is remembered.
    let res = admin.post("/admin", &[("csrf", &csrf), ("do", "gc"), ("dry", "1")]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.contains("dry run at"), "{}", res.body);
    assert!(admin.get("/admin").await.body.contains("Last run: dry run at"));
    // The owner deletes the repository from its settings, retyping the name.
    let csrf_a = alice.get("/r/widgets/gear/settings").await.csrf();
    let res = alice
        .post(
            "/r/widgets/gear/settings",
            &[("csrf", &csrf_a), ("do", "delete-repository"), ("confirm", "wrong")],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(alice.get("/r/widgets/gear").await.status, StatusCode::OK);
    let res = alice
        .post(
            "/r/widgets/gear/settings",
            &[("csrf", &csrf_a), ("do", "delete-repository"), ("confirm", "widgets/gear")],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(alice.get("/r/widgets/gear").await.status, StatusCode::NOT_FOUND);
    // Removing a user ends their sessions.
    let res =
        admin.post("/admin", &[("csrf", &csrf), ("do", "remove-user"), ("name", "alice")]).await;
    assert!(res.body.contains("Removed alice."));
    assert!(!alice.get("/").await.body.contains("Your repositories"));
}

#[tokio::test]
async fn the_admin_page_lists_users_a_page_at_a_time() {
    let reg = start_site(WebConfig::default()).await;
    // 3 users from the setup and 57 more: 60 users, three pages of 25.
    for n in 0..57 {
        let user = berth_registry::metadata::UserRecord {
            name: format!("user{n:02}"),
            password_hash: "$2b$04$unusedunusedunusedunuseOunusedunusedunusedunusedunused".into(),
            admin: false,
        };
        assert!(reg.meta.create_user(&user).await.unwrap());
    }
    let mut admin = signed_in(&reg, "admin").await;
    let first = admin.get("/admin").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.contains("60 users") && first.body.contains("Page 1 of 3"));
    assert!(first.body.contains(">admin<") && first.body.contains(">user21<"));
    assert!(!first.body.contains(">user22<"), "the first page holds 25 users");
    let last = admin.get("/admin?page=3").await;
    assert!(last.body.contains(">user47<") && last.body.contains(">user56<"));
    assert!(!last.body.contains(">admin<") && !last.body.contains(">user46<"));
    assert!(last.body.contains(r#"href="/admin?page=2""#), "a link back");
}
