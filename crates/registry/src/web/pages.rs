//! The pages: start page, search, namespaces, repositories, tags, a tag.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use berth_reference::RepoName;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::{Visitor, visitor};
use super::{assets, error_page, host, markdown};
use crate::api::AppState;
use crate::auth::{Action, namespace};
use crate::error::{Error, Result};
use crate::metadata::browse::{RepoListing, RepoOrder, RepoQuery, TagOrder, Viewer};
use crate::registry::ManifestRef;

pub(super) type App = State<Arc<AppState>>;

/// Items per page of every list.
pub const PAGE_SIZE: usize = 25;
/// Pages beyond this are not served (deep offsets are slow and nobody reads them).
const PAGE_MAX: usize = 400;

// ---- layout and small parts ----

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · berth" }
        link rel="stylesheet" href=(assets::CSS.path);
        script src=(assets::JS.path) defer {}
    }
}

/// A page without the visitor's menu (error pages).
pub(super) fn bare_layout(_app: &AppState, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                header { a.brand href="/" { "berth" } }
                main { (body) }
            }
        }
    }
}

pub(super) fn layout(
    app: &AppState,
    v: &Visitor,
    title: &str,
    query: &str,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                header {
                    a.brand href="/" { "berth" }
                    form.search role="search" aria-label="Site search" method="get" action="/search" {
                        label.sr-only for="site-search" { "Search repositories" }
                        input #site-search type="search" name="q" value=(query) placeholder="Search repositories";
                        button type="submit" { "Search" }
                    }
                    nav aria-label="Account" {
                        @if let Some(name) = v.name() {
                            a href={ "/u/" (name) } { "Your repositories" }
                            a href="/settings" { "Account" }
                            @if v.admin() { a href="/admin" { "Admin" } }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button.secondary type="submit" { "Sign out " (name) }
                            }
                        } @else if app.auth.is_some() {
                            a href="/login" { "Sign in" }
                            @if app.web.config.signup { a.button href="/signup" { "Sign up" } }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A repository's short name: official images without `library/`.
pub(super) fn display(name: &str) -> &str {
    name.strip_prefix("library/").unwrap_or(name)
}

/// The page of a repository.
pub(super) fn repo_url(name: &str) -> String {
    match name.strip_prefix("library/") {
        Some(short) => format!("/_/{short}"),
        None if !name.contains('/') => format!("/_/{name}"),
        None => format!("/r/{name}"),
    }
}

pub(super) fn when(t: i64) -> String {
    let (y, mo, d, h, mi, _) = berth_oci::time::civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}

pub(super) fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn short(d: &berth_reference::Digest) -> String {
    let s = d.to_string();
    let (alg, hex) = s.split_once(':').unwrap_or(("", &s));
    format!("{alg}:{}", &hex[..hex.len().min(12)])
}

fn badges(name: &str, verified: bool, private: bool) -> Markup {
    html! {
        @if namespace(name).is_none() { span.badge.official { "Official" } }
        @if verified { span.badge.verified { "Verified publisher" } }
        @if private { span.badge.private { "Private" } }
    }
}

fn repo_cards(items: &[RepoListing]) -> Markup {
    html! {
        ul.cards {
            @for r in items {
                li {
                    a.name href=(repo_url(&r.summary.name)) { (display(&r.summary.name)) }
                    (badges(&r.summary.name, r.verified, r.summary.private))
                    @if let Some(d) = &r.summary.description { div { (d) } }
                    div.meta {
                        "★ " (r.summary.stars) " · updated " (when(r.updated))
                    }
                }
            }
        }
    }
}

/// Previous/next links keeping the other query parameters.
pub(super) fn pager(base: &str, params: &[(&str, String)], page: usize, total: u64) -> Markup {
    let pages = (total as usize).div_ceil(PAGE_SIZE).clamp(1, PAGE_MAX);
    let link = |p: usize| {
        let mut q: Vec<String> = params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        q.push(format!("page={p}"));
        format!("{base}?{}", q.join("&"))
    };
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 { a href=(link(page - 1)) rel="prev" { "← Previous" } }
                span { "Page " (page) " of " (pages) }
                @if page < pages { a href=(link(page + 1)) rel="next" { "Next →" } }
            }
        }
    }
}

/// Percent-encodes a query value.
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn query(uri: &axum::http::Uri) -> Vec<(String, String)> {
    let Some(q) = uri.query() else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (crate::api::percent_decode(k), crate::api::percent_decode(v))
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

pub(super) fn page_number(q: &[(String, String)]) -> usize {
    param(q, "page").and_then(|p| p.parse().ok()).filter(|&p| p >= 1).unwrap_or(1).min(PAGE_MAX)
}

/// Runs a page, turning errors into error pages.
async fn run<F>(app: &AppState, f: F) -> Response
where
    F: std::future::Future<Output = Result<Response>>,
{
    match f.await {
        Ok(r) => r,
        Err(e) => error_page(app, &e),
    }
}

/// What `v` may do on `repo`. Without accounts, pages only read.
pub(super) async fn may(
    app: &AppState,
    v: &Visitor,
    repo: &RepoName,
    action: Action,
) -> Result<bool> {
    match &app.auth {
        None => Ok(action == Action::Pull),
        Some(auth) => Ok(auth.allowed(v.user.as_ref(), repo.as_str()).await?.contains(&action)),
    }
}

// ---- start page and search ----

pub async fn home(State(app): App, req: Request) -> Response {
    run(&app, async {
        let (parts, _body) = req.into_parts();
        let v = visitor(&app, &parts.headers).await?;
        let recent = app
            .hub
            .browse(&RepoQuery {
                text: None,
                namespace: None,
                official: false,
                verified: false,
                // Public ones only: the start page is the same for everyone.
                viewer: if app.auth.is_some() { Viewer::Namespaces(Vec::new()) } else { Viewer::Everything },
                order: RepoOrder::Updated,
                offset: 0,
                limit: 10,
                count: false,
            })
            .await?;
        let mine = match v.name() {
            Some(name) => Some(
                app.hub
                    .browse(&RepoQuery {
                        text: None,
                        namespace: Some(name.to_owned()),
                        official: false,
                        verified: false,
                        viewer: v.viewer.clone(),
                        order: RepoOrder::Updated,
                        offset: 0,
                        limit: 10,
                        count: true,
                    })
                    .await?,
            ),
            None => None,
        };
        let body = html! {
            h1 { "Container images" }
            form role="search" aria-label="Image search" method="get" action="/search" {
                label for="home-search" { "Search for an image" }
                div.row {
                    input #home-search type="search" name="q" placeholder="e.g. busybox";
                    button type="submit" { "Search" }
                }
            }
            @if let (Some(mine), Some(name)) = (&mine, v.name()) {
                h2 { "Your repositories" }
                @if mine.items.is_empty() {
                    p.hint { "None yet. Push one with " code { "docker push " (host(&parts.headers)) "/" (name) "/NAME:TAG" } "." }
                } @else {
                    (repo_cards(&mine.items))
                    @if mine.total > mine.items.len() as u64 { p { a href={ "/u/" (name) } { "All " (mine.total) " of your repositories" } } }
                }
            }
            h2 { "Recently updated" }
            @if recent.items.is_empty() { p.hint { "No public repositories yet." } }
            (repo_cards(&recent.items))
        };
        Ok(super::html(StatusCode::OK, layout(&app, &v, "Start", "", body), &v.set_cookies))
    })
    .await
}

pub async fn search(State(app): App, req: Request) -> Response {
    run(&app, async {
        let (parts, _body) = req.into_parts();
        let v = visitor(&app, &parts.headers).await?;
        let q = query(&parts.uri);
        let text = param(&q, "q").unwrap_or("").trim().to_owned();
        let official = param(&q, "official").is_some_and(|x| !x.is_empty());
        let verified = param(&q, "verified").is_some_and(|x| !x.is_empty());
        let page = page_number(&q);
        let found = app
            .hub
            .browse(&RepoQuery {
                text: Some(text.clone()),
                namespace: None,
                official,
                verified,
                viewer: v.viewer.clone(),
                order: RepoOrder::Stars,
                offset: (page - 1) * PAGE_SIZE,
                limit: PAGE_SIZE,
                count: true,
            })
            .await?;
        let params = [
            ("q", text.clone()),
            ("official", if official { "1".into() } else { String::new() }),
            ("verified", if verified { "1".into() } else { String::new() }),
        ];
        let body = html! {
            h1 { @if text.is_empty() { "All repositories" } @else { "Results for “" (text) "”" } }
            form method="get" action="/search" {
                input type="hidden" name="q" value=(text);
                fieldset {
                    legend { "Filters" }
                    input #f-official type="checkbox" name="official" value="1" checked[official];
                    label.inline for="f-official" { "Official images" }
                    " "
                    input #f-verified type="checkbox" name="verified" value="1" checked[verified];
                    label.inline for="f-verified" { "Verified publishers" }
                    " "
                    button.secondary type="submit" { "Apply" }
                }
            }
            p.meta { (found.total) " result" @if found.total != 1 { "s" } }
            (repo_cards(&found.items))
            (pager("/search", &params, page, found.total))
        };
        Ok(super::html(StatusCode::OK, layout(&app, &v, "Search", &text, body), &v.set_cookies))
    })
    .await
}

/// `/u/NAME`: a user's or organisation's repositories.
pub async fn namespace_page(State(app): App, Path(name): Path<String>, req: Request) -> Response {
    run(&app, async {
        let (parts, _body) = req.into_parts();
        let v = visitor(&app, &parts.headers).await?;
        if name.contains('/') || RepoName::parse(&name).is_err() {
            return Err(Error::NameUnknown(name.clone()));
        }
        let q = query(&parts.uri);
        let page = page_number(&q);
        let found = app
            .hub
            .browse(&RepoQuery {
                text: None,
                namespace: Some(name.clone()),
                official: false,
                verified: false,
                viewer: v.viewer.clone(),
                order: RepoOrder::Updated,
                offset: (page - 1) * PAGE_SIZE,
                limit: PAGE_SIZE,
                count: true,
            })
            .await?;
        let verified = app.hub.verified_publisher(&name).await?;
        if found.total == 0 && !app.hub.account_exists(&name).await? {
            return Err(Error::NameUnknown(name.clone()));
        }
        let body = html! {
            h1 { (name) @if verified { span.badge.verified { "Verified publisher" } } }
            p.meta { (found.total) " repositor" @if found.total == 1 { "y" } @else { "ies" } }
            (repo_cards(&found.items))
            (pager(&format!("/u/{name}"), &[], page, found.total))
        };
        Ok(super::html(StatusCode::OK, layout(&app, &v, &name, "", body), &v.set_cookies))
    })
    .await
}

// ---- repositories ----

/// What a path under `/r/` (or `/_/`) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum View {
    Repo,
    Tags,
    Tag(String),
    Settings,
    Star,
}

/// The ways to read `rest`, most literal first: a repository may itself be
/// called `.../tags`.
pub(super) fn candidates(rest: &str) -> Vec<(String, View)> {
    let rest = rest.trim_end_matches('/');
    let mut out = vec![(rest.to_owned(), View::Repo)];
    if let Some(p) = rest.strip_suffix("/tags") {
        out.push((p.to_owned(), View::Tags));
    }
    if let Some((p, tag)) = rest.rsplit_once("/tags/")
        && !tag.is_empty()
    {
        out.push((p.to_owned(), View::Tag(tag.to_owned())));
    }
    if let Some(p) = rest.strip_suffix("/settings") {
        out.push((p.to_owned(), View::Settings));
    }
    if let Some(p) = rest.strip_suffix("/star") {
        out.push((p.to_owned(), View::Star));
    }
    out
}

/// The repository and view a path names, if the visitor may pull it;
/// `NAME_UNKNOWN` (a 404) otherwise, whether or not it exists.
pub(super) async fn resolve(
    app: &AppState,
    v: &Visitor,
    names: Vec<(String, View)>,
) -> Result<(RepoName, View, crate::metadata::RepoSummary)> {
    for (name, view) in names {
        let Ok(repo) = RepoName::parse(&name) else { continue };
        let Ok(repo) = crate::api::hub_name_for(app, repo) else { continue };
        let summary = match app.hub.summary(&repo).await {
            Ok(s) => s,
            Err(Error::NameUnknown(_)) => continue,
            Err(e) => return Err(e),
        };
        if !may(app, v, &repo, Action::Pull).await? {
            break;
        }
        return Ok((repo, view, summary));
    }
    Err(Error::NameUnknown("no such repository".into()))
}

/// The `/_/NAME...` paths: official images.
pub(super) fn official_candidates(app: &AppState, rest: &str) -> Vec<(String, View)> {
    let mut out = candidates(&format!("library/{rest}"));
    if app.auth.is_none() {
        // A plain registry keeps names literal: `busybox` may exist as is.
        let mut literal = candidates(rest);
        literal.append(&mut out);
        out = literal;
    }
    out
}

pub async fn official(State(app): App, Path(rest): Path<String>, req: Request) -> Response {
    let names = official_candidates(&app, &rest);
    show(&app, names, req).await
}

pub async fn repository(State(app): App, Path(rest): Path<String>, req: Request) -> Response {
    show(&app, candidates(&rest), req).await
}

async fn show(app: &AppState, names: Vec<(String, View)>, req: Request) -> Response {
    run(app, async {
        let (parts, _body) = req.into_parts();
        let v = visitor(app, &parts.headers).await?;
        let (repo, view, summary) = resolve(app, &v, names).await?;
        let q = query(&parts.uri);
        let body = match view {
            View::Repo => repo_page(app, &v, &repo, &summary, &parts.headers).await?,
            View::Tags => tags_page(app, &repo, &q, &parts.headers).await?,
            View::Tag(tag) => tag_page(app, &repo, &tag, &parts.headers).await?,
            View::Settings => {
                if !may(app, &v, &repo, Action::Push).await? {
                    return Err(Error::Denied);
                }
                super::forms::settings_body(app, &v, &repo, &summary, &q, None, None).await?
            }
            View::Star => return Err(Error::NameUnknown("no such page".into())),
        };
        let title = display(repo.as_str()).to_owned();
        Ok(super::html(StatusCode::OK, layout(app, &v, &title, "", body), &v.set_cookies))
    })
    .await
}

fn pull_command(headers: &HeaderMap, repo: &RepoName, tag: Option<&str>) -> Markup {
    let name = display(repo.as_str());
    let cmd = match tag {
        Some(t) => format!("docker pull {}/{name}:{t}", host(headers)),
        None => format!("docker pull {}/{name}", host(headers)),
    };
    html! {
        div.pull {
            label.sr-only for="pull-command" { "Pull command" }
            input #pull-command type="text" readonly value=(cmd);
            button.secondary type="button" hidden data-copy=(cmd) { "Copy" }
        }
    }
}

fn repo_header(
    app: &AppState,
    repo: &RepoName,
    summary: &crate::metadata::RepoSummary,
    verified: bool,
    current: &str,
) -> Markup {
    let url = repo_url(repo.as_str());
    let _ = app;
    html! {
        h1 { (display(repo.as_str())) (badges(repo.as_str(), verified, summary.private)) }
        @if let Some(d) = &summary.description { p { (d) } }
        nav.row aria-label="Repository" {
            @if current == "repo" { strong { "Overview" } } @else { a href=(url) { "Overview" } }
            @if current == "tags" { strong { "Tags" } } @else { a href={ (url) "/tags" } { "Tags" } }
        }
    }
}

async fn repo_page(
    app: &AppState,
    v: &Visitor,
    repo: &RepoName,
    summary: &crate::metadata::RepoSummary,
    headers: &HeaderMap,
) -> Result<Markup> {
    let verified = match namespace(repo.as_str()) {
        Some(ns) => app.hub.verified_publisher(ns).await?,
        None => false,
    };
    let starred = match v.name() {
        Some(u) => app.hub.starred(u, repo).await?,
        None => false,
    };
    let owner = may(app, v, repo, Action::Push).await? && app.auth.is_some();
    let recent = app.hub.tags(repo, TagOrder::Newest, 0, 10).await?;
    let url = repo_url(repo.as_str());
    let overview = summary.full_description.as_deref().filter(|t| !t.trim().is_empty());
    Ok(html! {
        (repo_header(app, repo, summary, verified, "repo"))
        div.row {
            span.meta #stars { "★ " (summary.stars) " star" @if summary.stars != 1 { "s" } }
            @if v.user.is_some() {
                form.inline method="post" action={ (url) "/star" } {
                    input type="hidden" name="csrf" value=(v.csrf);
                    input type="hidden" name="on" value=(if starred { "0" } else { "1" });
                    button.secondary type="submit" { @if starred { "Unstar" } @else { "Star" } }
                }
            }
            @if owner { a href={ (url) "/settings" } { "Settings" } }
        }
        h2 { "Pull this image" }
        (pull_command(headers, repo, None))
        h2 { "Recent tags" }
        @if recent.items.is_empty() { p.hint { "No tags." } }
        ul {
            @for t in &recent.items {
                li {
                    a href={ (url) "/tags/" (t.name) } { (t.name) }
                    span.meta { " · pushed " (when(t.updated)) }
                }
            }
        }
        @if recent.total > recent.items.len() as u64 { p { a href={ (url) "/tags" } { "All " (recent.total) " tags" } } }
        section.overview aria-label="Overview" {
            h2 { "Overview" }
            @match overview {
                Some(text) => { (PreEscaped(markdown::render(text))) }
                None => { p.hint { "No overview yet." } }
            }
        }
    })
}

async fn tags_page(
    app: &AppState,
    repo: &RepoName,
    q: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Markup> {
    let by_name = param(q, "sort") == Some("name");
    let order = if by_name { TagOrder::Name } else { TagOrder::Newest };
    let page = page_number(q);
    let tags = app.hub.tags(repo, order, (page - 1) * PAGE_SIZE, PAGE_SIZE).await?;
    let summary = app.hub.summary(repo).await?;
    let verified = match namespace(repo.as_str()) {
        Some(ns) => app.hub.verified_publisher(ns).await?,
        None => false,
    };
    let url = repo_url(repo.as_str());
    let mut rows = Vec::with_capacity(tags.items.len());
    for t in &tags.items {
        let platforms = app.images.platforms(&app.registry, repo, &t.digest).await?;
        rows.push((t, platforms));
    }
    let sort = if by_name { "name" } else { "newest" };
    Ok(html! {
        (repo_header(app, repo, &summary, verified, "tags"))
        p.meta {
            (tags.total) " tag" @if tags.total != 1 { "s" } " · sort by "
            @if by_name { a href={ (url) "/tags?sort=newest" } { "newest" } " · " strong { "name" } }
            @else { strong { "newest" } " · " a href={ (url) "/tags?sort=name" } { "name" } }
        }
        table {
            caption.sr-only { "Tags of " (display(repo.as_str())) }
            thead { tr { th scope="col" { "Tag" } th scope="col" { "Last pushed" } th scope="col" { "Digest" } th scope="col" { "OS/Arch" } th scope="col" { "Compressed size" } } }
            tbody {
                @for (t, platforms) in &rows {
                    @let n = platforms.len().max(1);
                    tr {
                        td rowspan=(n) { a href={ (url) "/tags/" (t.name) } { (t.name) } }
                        td rowspan=(n) {
                            (when(t.updated))
                            @if let Some(by) = &t.pushed_by { br; span.meta { "by " (by) } }
                        }
                        @match platforms.first() {
                            Some(p) => { td.mono { (short(&p.digest)) } td { (p.platform()) } td { (size(p.size)) } }
                            None => { td.mono { (short(&t.digest)) } td { "—" } td { "—" } }
                        }
                    }
                    @for p in platforms.iter().skip(1) {
                        tr { td.mono { (short(&p.digest)) } td { (p.platform()) } td { (size(p.size)) } }
                    }
                }
            }
        }
        (pager(&format!("{url}/tags"), &[("sort", sort.to_owned())], page, tags.total))
        (pull_command(headers, repo, None))
    })
}

async fn tag_page(
    app: &AppState,
    repo: &RepoName,
    tag: &str,
    headers: &HeaderMap,
) -> Result<Markup> {
    let reference = ManifestRef::parse(tag).map_err(|_| Error::NameUnknown(tag.to_owned()))?;
    if !matches!(reference, ManifestRef::Tag(_)) {
        return Err(Error::NameUnknown(tag.to_owned()));
    }
    let content = app
        .registry
        .get_manifest(repo, &reference)
        .await
        .map_err(|_| Error::NameUnknown(tag.to_owned()))?;
    let platforms = app.images.platforms(&app.registry, repo, &content.digest).await?;
    let url = repo_url(repo.as_str());
    Ok(html! {
        h1 { a href=(url) { (display(repo.as_str())) } ":" (tag) }
        p { "Digest " code.mono { (content.digest) } }
        (pull_command(headers, repo, Some(tag)))
        @for p in platforms.iter() {
            section aria-label=(p.platform()) {
                h2 { (p.platform()) " · " (size(p.size)) }
                p.meta { "Manifest " code.mono { (p.digest) } }
                h3 { "Layers" }
                table {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Digest" } th scope="col" { "Size" } } }
                    tbody {
                        @for (i, (d, s)) in p.layers.iter().enumerate() {
                            tr { td { (i + 1) } td.mono { (short(d)) } td { (size(*s)) } }
                        }
                    }
                }
                h3 { "History" }
                table {
                    thead { tr { th scope="col" { "Created" } th scope="col" { "Created by" } } }
                    tbody {
                        @for h in &p.history {
                            tr {
                                td { (h.created.as_deref().unwrap_or("")) }
                                td.mono { (h.created_by.as_deref().unwrap_or("")) @if h.empty_layer { span.meta { " (no layer)" } } }
                            }
                        }
                    }
                }
                @if !p.labels.is_empty() {
                    h3 { "Labels" }
                    table {
                        thead { tr { th scope="col" { "Label" } th scope="col" { "Value" } } }
                        tbody { @for (k, val) in &p.labels { tr { td.mono { (k) } td { (val) } } } }
                    }
                }
            }
        }
    })
}
