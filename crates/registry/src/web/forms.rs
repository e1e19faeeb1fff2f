//! What the website's forms change: signing in and out, signing up, an
//! account's password and tokens, a repository's settings and star, and the
//! administrators' page. Every POST passes [`post_allowed`] first.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use berth_reference::RepoName;
use maud::{Markup, PreEscaped, html};

use super::pages::{
    App, PAGE_SIZE, View, candidates, display, layout, may, official_candidates, page_number,
    pager, query, repo_url, resolve, when,
};
use super::session::{self, Visitor, post_allowed, visitor};
use super::{error_page, field, form, markdown, redirect};
use crate::api::AppState;
use crate::auth::pat::TokenScope;
use crate::auth::{Action, password};
use crate::error::{Error, Result};
use crate::metadata::browse::TagOrder;
use crate::metadata::{RepoSummary, UserRecord};
use crate::registry::ManifestRef;

/// The one message every failed login gets.
const LOGIN_FAILED: &str = "Incorrect username or password.";
/// The shortest password accepted on sign-up and password changes.
const PASSWORD_MIN: usize = 8;
/// Names no one may sign up with.
const RESERVED: &[&str] = &[
    "library",
    "admin",
    "administrator",
    "root",
    "berth",
    "docker",
    "dockerhub",
    "official",
    "registry",
    "support",
    "help",
    "about",
    "settings",
    "signup",
    "login",
    "logout",
    "search",
    "static",
    "token",
    "api",
    "www",
    "hub",
    "system",
    "security",
    "null",
    "none",
    "user",
    "users",
    "org",
    "orgs",
];
/// Docker Hub's limit on the short description set on the website.
const SHORT_DESCRIPTION_MAX: usize = 100;

fn forbidden() -> Error {
    Error::Denied
}

/// The accounts; the website's forms need them.
fn accounts(app: &AppState) -> Result<&crate::auth::Auth> {
    app.auth.as_ref().ok_or_else(|| Error::NameUnknown("this registry has no accounts".into()))
}

async fn run<F>(app: &AppState, f: F) -> Response
where
    F: std::future::Future<Output = Result<Response>>,
{
    match f.await {
        Ok(r) => r,
        Err(e) => error_page(app, &e),
    }
}

/// A checked form: the visitor, the fields, the peer's address and the host
/// the site was reached at.
type Checked = (Visitor, Vec<(String, String)>, Option<std::net::IpAddr>, String);

/// Reads a POST's form after checking its origin and CSRF token.
async fn checked_form(app: &AppState, req: Request) -> Result<Checked> {
    let (parts, body) = req.into_parts();
    let addr = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let f = form(body).await?;
    let v = visitor(app, &parts.headers).await?;
    let headers = &parts.headers;
    if !post_allowed(app, headers, &v, field(&f, "csrf")) {
        return Err(forbidden());
    }
    Ok((v, f, addr, super::host(headers)))
}

fn message(text: Option<&str>, error: bool) -> Markup {
    html! {
        @if let Some(t) = text {
            @if error { p.error role="alert" { (t) } } @else { p.notice role="status" { (t) } }
        }
    }
}

/// A path on this site to go back to after signing in.
fn next_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

// ---- sign in, sign out, sign up ----

fn login_form(app: &AppState, v: &Visitor, next: &str, error: Option<&str>) -> Markup {
    layout(
        app,
        v,
        "Sign in",
        "",
        html! {
            h1 { "Sign in" }
            (message(error, true))
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(v.csrf);
                input type="hidden" name="next" value=(next);
                div.field { label for="username" { "Username" } input #username type="text" name="username" autocomplete="username" required; }
                div.field { label for="password" { "Password" } input #password type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
            @if app.web.config.signup { p { "No account? " a href="/signup" { "Sign up" } } }
        },
    )
}

pub async fn login_page(State(app): App, req: Request) -> Response {
    run(&app, async {
        let (parts, _body) = req.into_parts();
        accounts(&app)?;
        let v = visitor(&app, &parts.headers).await?;
        let q = query(&parts.uri);
        let next = next_path(q.iter().find(|(k, _)| k == "next").map(|(_, v)| v.as_str()));
        Ok(super::html(StatusCode::OK, login_form(&app, &v, &next, None), &v.set_cookies))
    })
    .await
}

pub async fn login(State(app): App, req: Request) -> Response {
    run(&app, async {
        let auth = accounts(&app)?;
        let (v, f, addr, _) = checked_form(&app, req).await?;
        let next = next_path(field(&f, "next"));
        let name = field(&f, "username").unwrap_or("").trim().to_owned();
        let pass = field(&f, "password").unwrap_or("");
        let failed = |status| {
            super::html(status, login_form(&app, &v, &next, Some(LOGIN_FAILED)), &v.set_cookies)
        };
        if app.web.address_throttled(addr) {
            return Ok(failed(StatusCode::TOO_MANY_REQUESTS));
        }
        // Access tokens are for clients, not for the website.
        if crate::auth::pat::looks_like_token(pass) {
            app.web.address_failed(addr);
            return Ok(failed(StatusCode::UNAUTHORIZED));
        }
        match auth.login(&name, pass).await {
            Ok(login) => {
                app.web.address_succeeded(addr);
                let cookie = session::start(&app, &v, &login.user.name).await?;
                Ok(redirect(&next, &[cookie]))
            }
            Err(Error::TooManyRequests { .. }) => Ok(failed(StatusCode::TOO_MANY_REQUESTS)),
            Err(Error::Unauthorized(_)) => {
                app.web.address_failed(addr);
                Ok(failed(StatusCode::UNAUTHORIZED))
            }
            Err(e) => Err(e),
        }
    })
    .await
}

pub async fn logout(State(app): App, req: Request) -> Response {
    run(&app, async {
        accounts(&app)?;
        let (v, _, _, _) = checked_form(&app, req).await?;
        session::end(&app, &v).await?;
        Ok(redirect("/", &[session::clear(&app)]))
    })
    .await
}

/// Docker ID rules: 4 to 30 lowercase letters and digits, not reserved.
pub fn valid_docker_id(name: &str) -> std::result::Result<(), &'static str> {
    if !(4..=30).contains(&name.len()) {
        return Err("A username has 4 to 30 characters.");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err("A username has only lowercase letters and digits.");
    }
    if RESERVED.contains(&name) {
        return Err("That username is reserved.");
    }
    Ok(())
}

fn signup_form(app: &AppState, v: &Visitor, name: &str, error: Option<&str>) -> Markup {
    layout(
        app,
        v,
        "Sign up",
        "",
        html! {
            h1 { "Create an account" }
            (message(error, true))
            form method="post" action="/signup" {
                input type="hidden" name="csrf" value=(v.csrf);
                div.field {
                    label for="username" { "Username (your Docker ID)" }
                    input #username type="text" name="username" value=(name) autocomplete="username" required minlength="4" maxlength="30" pattern="[a-z0-9]+" aria-describedby="username-hint";
                    p.hint #username-hint { "4 to 30 lowercase letters and digits. Your repositories are USERNAME/NAME." }
                }
                div.field {
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="new-password" required minlength=(PASSWORD_MIN) aria-describedby="password-hint";
                    p.hint #password-hint { "At least " (PASSWORD_MIN) " characters." }
                }
                button type="submit" { "Sign up" }
            }
        },
    )
}

fn signup_open(app: &AppState) -> Result<()> {
    accounts(app)?;
    if !app.web.config.signup {
        return Err(Error::NameUnknown("sign-up is closed".into()));
    }
    Ok(())
}

pub async fn signup_page(State(app): App, req: Request) -> Response {
    run(&app, async {
        let (parts, _body) = req.into_parts();
        signup_open(&app)?;
        let v = visitor(&app, &parts.headers).await?;
        Ok(super::html(StatusCode::OK, signup_form(&app, &v, "", None), &v.set_cookies))
    })
    .await
}

pub async fn signup(State(app): App, req: Request) -> Response {
    run(&app, async {
        signup_open(&app)?;
        let auth = accounts(&app)?;
        let (v, f, _, _) = checked_form(&app, req).await?;
        let name = field(&f, "username").unwrap_or("").trim().to_owned();
        let pass = field(&f, "password").unwrap_or("").to_owned();
        let refuse = |why: &str| {
            Ok(super::html(
                StatusCode::BAD_REQUEST,
                signup_form(&app, &v, &name, Some(why)),
                &v.set_cookies,
            ))
        };
        if let Err(why) = valid_docker_id(&name) {
            return refuse(why);
        }
        if pass.chars().count() < PASSWORD_MIN {
            return refuse("The password is too short.");
        }
        let hash =
            tokio::task::spawn_blocking(move || password::hash(&pass)).await.map_err(|e| {
                Error::Storage(crate::storage::StorageError::Io(std::io::Error::other(
                    e.to_string(),
                )))
            })?;
        let user = UserRecord { name: name.clone(), password_hash: hash, admin: false };
        if !auth.metadata().create_user(&user).await? {
            return refuse("That username is taken.");
        }
        let cookie = session::start(&app, &v, &name).await?;
        Ok(redirect("/", &[cookie]))
    })
    .await
}

// ---- account settings: password and tokens ----

fn signed_in(v: &Visitor) -> Result<&UserRecord> {
    v.user.as_ref().ok_or(Error::Unauthorized(None))
}

async fn account_body(
    app: &AppState,
    v: &Visitor,
    host: &str,
    notice: Option<&str>,
    error: Option<&str>,
    new_token: Option<&str>,
) -> Result<Markup> {
    let user = signed_in(v)?;
    let tokens = accounts(app)?.metadata().list_access_tokens(&user.name).await?;
    Ok(html! {
        h1 { "Account settings" }
        (message(notice, false))
        (message(error, true))
        @if let Some(t) = new_token {
            div role="status" {
                p.notice { "Copy your new access token now: it is not shown again." }
                div.pull {
                    label.sr-only for="new-token" { "New access token" }
                    input #new-token type="text" readonly value=(t);
                    button.secondary type="button" hidden data-copy=(t) { "Copy" }
                }
                p.hint { "Use it as the password: " code { "docker login -u " (user.name) " " (host) } }
            }
        }
        h2 { "Password" }
        form method="post" action="/settings" {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="do" value="password";
            div.field { label for="current" { "Current password" } input #current type="password" name="current" autocomplete="current-password" required; }
            div.field { label for="new" { "New password" } input #new type="password" name="new" autocomplete="new-password" required minlength=(PASSWORD_MIN); }
            button type="submit" { "Change password" }
        }
        h2 { "Access tokens" }
        p.hint { "A token stands in for your password with docker login, limited to what you choose." }
        form method="post" action="/settings" {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="do" value="create-token";
            div.field { label for="token-description" { "Description" } input #token-description type="text" name="description" maxlength="100"; }
            div.field {
                label for="token-scope" { "Access" }
                select #token-scope name="scope" {
                    option value="read" { "Read (pull)" }
                    option value="write" { "Read and write (pull, push)" }
                    option value="delete" { "Read, write and delete" }
                }
            }
            button type="submit" { "Create token" }
        }
        @if !tokens.is_empty() {
            table {
                caption.sr-only { "Your access tokens" }
                thead { tr { th scope="col" { "Description" } th scope="col" { "Access" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { span.sr-only { "Revoke" } } } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td { (t.description) } td { (t.scope) } td { (when(t.created)) }
                            td { @match t.last_used { Some(u) => { (when(u)) } None => { "never" } } }
                            td {
                                form.inline method="post" action="/settings" data-confirm="Revoke this token? Clients using it lose access." {
                                    input type="hidden" name="csrf" value=(v.csrf);
                                    input type="hidden" name="do" value="revoke";
                                    input type="hidden" name="id" value=(t.id);
                                    button.danger type="submit" aria-label={ "Revoke " (t.description) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

pub async fn account_page(State(app): App, req: Request) -> Response {
    run(&app, async {
        let (parts, _body) = req.into_parts();
        accounts(&app)?;
        let v = visitor(&app, &parts.headers).await?;
        if v.user.is_none() {
            return Ok(redirect("/login?next=/settings", &v.set_cookies));
        }
        let body = account_body(&app, &v, &super::host(&parts.headers), None, None, None).await?;
        Ok(super::html(StatusCode::OK, layout(&app, &v, "Account", "", body), &v.set_cookies))
    })
    .await
}

pub async fn account(State(app): App, req: Request) -> Response {
    run(&app, async {
        let auth = accounts(&app)?;
        let (v, f, _, host) = checked_form(&app, req).await?;
        let user = signed_in(&v)?.clone();
        let meta = auth.metadata();
        let mut cookies = v.set_cookies.clone();
        let (mut notice, mut error, mut token) = (None, None, None);
        match field(&f, "do") {
            Some("password") => {
                let current = field(&f, "current").unwrap_or("");
                let new = field(&f, "new").unwrap_or("").to_owned();
                if new.chars().count() < PASSWORD_MIN {
                    error = Some("The new password is too short.".to_owned());
                } else if auth
                    .login(&user.name, current)
                    .await
                    .ok()
                    .filter(|l| l.cap.is_none())
                    .is_none()
                {
                    error = Some("The current password is not right.".to_owned());
                } else {
                    let hash = tokio::task::spawn_blocking(move || password::hash(&new))
                        .await
                        .map_err(|e| {
                            Error::Storage(crate::storage::StorageError::Io(std::io::Error::other(
                                e.to_string(),
                            )))
                        })?;
                    meta.set_password(&user.name, &hash).await?;
                    // Every session ends; this browser gets a new one.
                    meta.delete_user_sessions(&user.name).await?;
                    cookies.push(session::start(&app, &v, &user.name).await?);
                    notice = Some("Password changed. Other browsers were signed out.".to_owned());
                }
            }
            Some("create-token") => {
                let description = field(&f, "description").unwrap_or("").trim().to_owned();
                let scope = field(&f, "scope").and_then(TokenScope::parse);
                match scope {
                    _ if description.chars().count() > 100 => {
                        error = Some("The description is too long.".into())
                    }
                    None => error = Some("Choose what the token may do.".into()),
                    Some(scope) => {
                        let (_, text) =
                            auth.create_access_token(&user.name, &description, scope).await?;
                        token = Some(text);
                    }
                }
            }
            Some("revoke") => {
                let id = field(&f, "id").unwrap_or("");
                if meta.delete_access_token(&user.name, id).await? {
                    notice = Some("Token revoked.".to_owned());
                } else {
                    error = Some("No such token.".to_owned());
                }
            }
            _ => return Err(Error::InvalidRequest("unknown action".into())),
        }
        // A password change made a new session: read the visitor again so the
        // page's forms carry the new CSRF token.
        let v = if notice.as_deref().is_some_and(|n| n.starts_with("Password")) {
            let mut headers = axum::http::HeaderMap::new();
            if let Some(c) = cookies.last().and_then(|c| c.split(';').next())
                && let Ok(value) = c.parse()
            {
                headers.insert(axum::http::header::COOKIE, value);
            }
            visitor(&app, &headers).await?
        } else {
            v
        };
        let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
        let body =
            account_body(&app, &v, &host, notice.as_deref(), error.as_deref(), token.as_deref())
                .await?;
        Ok(super::html(status, layout(&app, &v, "Account", "", body), &cookies))
    })
    .await
}

// ---- repository settings and stars ----

/// The settings page's content (owners only).
pub(super) async fn settings_body(
    app: &AppState,
    v: &Visitor,
    repo: &RepoName,
    summary: &RepoSummary,
    q: &[(String, String)],
    notice: Option<&str>,
    preview: Option<(&str, &str)>,
) -> Result<Markup> {
    let url = repo_url(repo.as_str());
    let page = q
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, p)| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let tags = app.hub.tags(repo, TagOrder::Newest, (page - 1) * 100, 100).await?;
    let (description, overview) = match preview {
        Some((d, o)) => (d.to_owned(), o.to_owned()),
        None => (
            summary.description.clone().unwrap_or_default(),
            summary.full_description.clone().unwrap_or_default(),
        ),
    };
    let name = display(repo.as_str());
    Ok(html! {
        h1 { "Settings of " a href=(url) { (name) } }
        (message(notice, false))
        h2 { "Description and overview" }
        form method="post" action={ (url) "/settings" } {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="do" value="describe";
            div.field {
                label for="description" { "Short description" }
                input #description type="text" name="description" maxlength=(SHORT_DESCRIPTION_MAX) value=(description) aria-describedby="description-hint";
                p.hint #description-hint { "Up to " (SHORT_DESCRIPTION_MAX) " characters; search shows it." }
            }
            div.field {
                label for="overview" { "Overview (Markdown)" }
                textarea #overview name="overview" { (overview) }
            }
            div.row {
                button.secondary type="submit" name="mode" value="preview" { "Preview" }
                button type="submit" name="mode" value="save" { "Save" }
            }
        }
        @if preview.is_some() {
            section.overview aria-label="Preview" {
                h3 { "Preview" }
                (PreEscaped(markdown::render(&overview)))
            }
        }
        h2 { "Visibility" }
        p { "This repository is " strong { @if summary.private { "private" } @else { "public" } } "." }
        form method="post" action={ (url) "/settings" } {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="do" value="visibility";
            input type="hidden" name="private" value=(if summary.private { "0" } else { "1" });
            div.field {
                label for="confirm-visibility" { "Type " code { (name) } " to confirm" }
                input #confirm-visibility type="text" name="confirm" required autocomplete="off";
            }
            button type="submit" { @if summary.private { "Make public" } @else { "Make private" } }
        }
        h2 { "Delete tags" }
        @if tags.items.is_empty() { p.hint { "No tags." } } @else {
            form method="post" action={ (url) "/settings" } data-confirm="Delete the selected tags?" {
                input type="hidden" name="csrf" value=(v.csrf);
                input type="hidden" name="do" value="delete-tags";
                fieldset {
                    legend { "Tags (" (tags.total) ")" }
                    @for (i, t) in tags.items.iter().enumerate() {
                        div {
                            input id={ "tag-" (i) } type="checkbox" name="tag" value=(t.name);
                            label.inline for={ "tag-" (i) } { (t.name) span.meta { " · " (when(t.updated)) } }
                        }
                    }
                }
                button.danger type="submit" { "Delete selected tags" }
            }
            @if tags.total > (page * 100) as u64 { p { a href={ (url) "/settings?page=" (page + 1) } { "More tags" } } }
        }
        h2 { "Delete repository" }
        form method="post" action={ (url) "/settings" } data-confirm="Delete the repository and all its tags?" {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="do" value="delete-repository";
            div.field {
                label for="confirm-delete" { "Type " code { (name) } " to confirm" }
                input #confirm-delete type="text" name="confirm" required autocomplete="off";
            }
            button.danger type="submit" { "Delete repository" }
        }
    })
}

/// POSTs under `/r/` and `/_/`: `.../star` and `.../settings`.
pub async fn repository(State(app): App, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let names = if let Some(rest) = path.strip_prefix("/_/") {
        official_candidates(&app, rest)
    } else {
        candidates(path.strip_prefix("/r/").unwrap_or(""))
    };
    run(&app, async {
        let auth = accounts(&app)?;
        let (v, f, _, _) = checked_form(&app, req).await?;
        let names: Vec<(String, View)> = names
            .into_iter()
            .filter(|(_, view)| matches!(view, View::Star | View::Settings))
            .collect();
        let (repo, view, summary) = resolve(&app, &v, names).await?;
        let user = signed_in(&v)?.clone();
        let url = repo_url(repo.as_str());
        if view == View::Star {
            app.hub.star(&user.name, &repo, field(&f, "on") != Some("0")).await?;
            return Ok(redirect(&url, &v.set_cookies));
        }
        if !may(&app, &v, &repo, Action::Push).await? {
            return Err(forbidden());
        }
        let confirmed = field(&f, "confirm")
            .is_some_and(|c| c.trim() == display(repo.as_str()) || c.trim() == repo.as_str());
        let notice: String = match field(&f, "do") {
            Some("describe") => {
                let description = field(&f, "description").unwrap_or("").to_owned();
                let overview = field(&f, "overview").unwrap_or("").replace("\r\n", "\n");
                if description.chars().count() > SHORT_DESCRIPTION_MAX {
                    return Err(Error::InvalidRequest(format!(
                        "the description is longer than {SHORT_DESCRIPTION_MAX} characters"
                    )));
                }
                if field(&f, "mode") == Some("preview") {
                    let body = settings_body(
                        &app,
                        &v,
                        &repo,
                        &summary,
                        &[],
                        None,
                        Some((&description, &overview)),
                    )
                    .await?;
                    return Ok(super::html(
                        StatusCode::OK,
                        layout(&app, &v, display(repo.as_str()), "", body),
                        &v.set_cookies,
                    ));
                }
                app.hub.describe(&repo, Some(&description), Some(&overview)).await?;
                "Description and overview saved.".into()
            }
            Some("visibility") => {
                if !confirmed {
                    return Err(Error::InvalidRequest(
                        "type the repository's name to confirm".into(),
                    ));
                }
                let private = field(&f, "private") == Some("1");
                app.hub.set_private(&repo, private).await?;
                format!("The repository is now {}.", if private { "private" } else { "public" })
            }
            Some("delete-tags") => {
                let tags: Vec<&str> =
                    f.iter().filter(|(k, _)| k == "tag").map(|(_, t)| t.as_str()).collect();
                if !auth
                    .permits(
                        &crate::auth::Identity::User(user.clone()),
                        repo.as_str(),
                        Action::Delete,
                    )
                    .await?
                {
                    return Err(forbidden());
                }
                let mut deleted = 0;
                for t in &tags {
                    let Ok(reference @ ManifestRef::Tag(_)) = ManifestRef::parse(t) else {
                        continue;
                    };
                    // Only the tag goes: another tag on the same digest stays.
                    match app.registry.delete_manifest(&repo, &reference).await {
                        Ok(()) => deleted += 1,
                        Err(Error::ManifestUnknown(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                format!("Deleted {deleted} tag{}.", if deleted == 1 { "" } else { "s" })
            }
            Some("delete-repository") => {
                if !confirmed {
                    return Err(Error::InvalidRequest(
                        "type the repository's name to confirm".into(),
                    ));
                }
                if !auth
                    .permits(
                        &crate::auth::Identity::User(user.clone()),
                        repo.as_str(),
                        Action::Delete,
                    )
                    .await?
                {
                    return Err(forbidden());
                }
                app.registry.delete_repository(&repo).await?;
                return Ok(redirect(
                    &format!("/u/{}", crate::auth::namespace(repo.as_str()).unwrap_or(&user.name)),
                    &v.set_cookies,
                ));
            }
            _ => return Err(Error::InvalidRequest("unknown action".into())),
        };
        let summary = app.hub.summary(&repo).await?;
        let body = settings_body(&app, &v, &repo, &summary, &[], Some(&notice), None).await?;
        Ok(super::html(
            StatusCode::OK,
            layout(&app, &v, display(repo.as_str()), "", body),
            &v.set_cookies,
        ))
    })
    .await
}

// ---- administrators ----

async fn admin_body(
    app: &AppState,
    v: &Visitor,
    page: usize,
    notice: Option<&str>,
) -> Result<Markup> {
    let (users, total) =
        accounts(app)?.metadata().users_page((page - 1) * PAGE_SIZE, PAGE_SIZE).await?;
    let last_gc = app.web.last_gc.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(html! {
        h1 { "Administration" }
        (message(notice, false))
        h2 { "Users" }
        table {
            caption.sr-only { "Users" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Administrator" } th scope="col" { span.sr-only { "Remove" } } } }
            tbody {
                @for u in &users {
                    tr {
                        td { a href={ "/u/" (u.name) } { (u.name) } }
                        td { @if u.admin { "yes" } @else { "no" } }
                        td {
                            @if Some(u.name.as_str()) != v.name() {
                                form.inline method="post" action="/admin" data-confirm="Remove this user?" {
                                    input type="hidden" name="csrf" value=(v.csrf);
                                    input type="hidden" name="do" value="remove-user";
                                    input type="hidden" name="name" value=(u.name);
                                    button.danger type="submit" aria-label={ "Remove " (u.name) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        p.meta { (total) " user" @if total != 1 { "s" } }
        (pager("/admin", &[], page, total))
        h2 { "Organisations" }
        form method="post" action="/admin" {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="do" value="org";
            div.field { label for="org-name" { "Organisation" } input #org-name type="text" name="name" required; }
            div.field { label for="org-member" { "Add member (optional)" } input #org-member type="text" name="member"; }
            div.field {
                label for="org-verified" { "Verified publisher" }
                select #org-verified name="verified" { option value="" { "unchanged" } option value="1" { "yes" } option value="0" { "no" } }
            }
            button type="submit" { "Create or update" }
        }
        h2 { "Garbage collection" }
        @if let Some(r) = &last_gc { p { "Last run: " (r) } }
        form method="post" action="/admin" {
            input type="hidden" name="csrf" value=(v.csrf);
            input type="hidden" name="do" value="gc";
            div.row {
                button.secondary type="submit" name="dry" value="1" { "Dry run" }
                button.danger type="submit" name="dry" value="0" { "Collect garbage" }
            }
        }
    })
}

fn admin_only(v: &Visitor) -> Result<()> {
    match &v.user {
        None => Err(Error::Unauthorized(None)),
        Some(u) if u.admin => Ok(()),
        // Not an administrator: the page does not exist for them.
        Some(_) => Err(Error::NameUnknown("no such page".into())),
    }
}

pub async fn admin_page(State(app): App, req: Request) -> Response {
    run(&app, async {
        let (parts, _body) = req.into_parts();
        accounts(&app)?;
        let v = visitor(&app, &parts.headers).await?;
        if v.user.is_none() {
            return Ok(redirect("/login?next=/admin", &v.set_cookies));
        }
        admin_only(&v)?;
        let body = admin_body(&app, &v, page_number(&query(&parts.uri)), None).await?;
        Ok(super::html(
            StatusCode::OK,
            layout(&app, &v, "Administration", "", body),
            &v.set_cookies,
        ))
    })
    .await
}

pub async fn admin(State(app): App, req: Request) -> Response {
    run(&app, async {
        let auth = accounts(&app)?;
        let (v, f, _, _) = checked_form(&app, req).await?;
        admin_only(&v)?;
        let meta = auth.metadata();
        let notice = match field(&f, "do") {
            Some("remove-user") => {
                let name = field(&f, "name").unwrap_or("");
                if Some(name) == v.name() {
                    return Err(Error::InvalidRequest("you cannot remove yourself".into()));
                }
                if meta.delete_user(name).await? {
                    format!("Removed {name}.")
                } else {
                    format!("No such user: {name}.")
                }
            }
            Some("org") => {
                let name = field(&f, "name").unwrap_or("").trim().to_owned();
                if name.contains('/') || RepoName::parse(&name).is_err() || name == "library" {
                    return Err(Error::InvalidRequest(format!(
                        "invalid organisation name {name:?}"
                    )));
                }
                let mut said = Vec::new();
                if meta.org(&name).await?.is_none() {
                    if !meta.create_org(&name).await? {
                        return Err(Error::InvalidRequest(format!(
                            "the name {name:?} is taken by a user"
                        )));
                    }
                    said.push(format!("Created {name}."));
                }
                if let Some(member) = field(&f, "member").map(str::trim).filter(|m| !m.is_empty()) {
                    if meta.add_org_member(&name, member).await? {
                        said.push(format!("Added {member}."));
                    } else {
                        said.push(format!("No such user: {member}."));
                    }
                }
                match field(&f, "verified") {
                    Some("1") => {
                        meta.set_org_verified(&name, true).await?;
                        said.push("Marked verified.".into());
                    }
                    Some("0") => {
                        meta.set_org_verified(&name, false).await?;
                        said.push("Verification removed.".into());
                    }
                    _ => {}
                }
                said.join(" ")
            }
            Some("gc") => {
                let dry_run = field(&f, "dry") != Some("0");
                let opts = crate::gc::GcOptions { dry_run, ..Default::default() };
                let r = app.registry.collect_garbage(&opts).await?;
                let text = format!(
                    "{} at {}: {} blob(s), {} manifest(s), {} bytes{}",
                    if dry_run { "dry run" } else { "collection" },
                    when(session::now()),
                    r.blobs_deleted.len(),
                    r.manifests_deleted.len(),
                    r.bytes_reclaimed,
                    if dry_run { " reclaimable" } else { " reclaimed" }
                );
                *app.web.last_gc.lock().unwrap_or_else(|e| e.into_inner()) = Some(text.clone());
                text
            }
            _ => return Err(Error::InvalidRequest("unknown action".into())),
        };
        let body = admin_body(&app, &v, 1, Some(&notice)).await?;
        Ok(super::html(
            StatusCode::OK,
            layout(&app, &v, "Administration", "", body),
            &v.set_cookies,
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_id_rules() {
        assert!(valid_docker_id("alice1").is_ok());
        assert!(valid_docker_id("abc").is_err());
        assert!(valid_docker_id(&"a".repeat(31)).is_err());
        assert!(valid_docker_id("Alice").is_err());
        assert!(valid_docker_id("al-ice").is_err());
        assert!(valid_docker_id("library").is_err());
        assert!(valid_docker_id("admin").is_err());
    }

    #[test]
    fn next_stays_on_the_site() {
        assert_eq!(next_path(Some("/settings")), "/settings");
        assert_eq!(next_path(Some("//evil.example")), "/");
        assert_eq!(next_path(Some("https://evil.example")), "/");
        assert_eq!(next_path(Some("/\\evil")), "/");
        assert_eq!(next_path(None), "/");
    }
}
