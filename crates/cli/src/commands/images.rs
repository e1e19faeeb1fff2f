//! `berth images` / `berth image ls`: docker's image table.

use anyhow::{Context as _, bail};
use berth_reference::Reference;
use berth_store::{ImageSummary, LabelFilter, Store, labels_match};

use crate::context::Context;
use crate::format::{self, Table, Template, V};

#[derive(clap::Args)]
pub struct Args {
    /// Show all images (berth keeps no intermediate images, so the same as without)
    #[arg(short, long)]
    all: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided (dangling, reference, label, before, since)
    #[arg(short, long = "filter", value_name = "filter")]
    filters: Vec<String>,
    /// Pretty-print images using a Go template ('table ...', 'json', or a template)
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Only images of this repository (and tag); a glob like `reference=`
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

/// The `--filter` conditions docker's image list understands.
#[derive(Default)]
struct Filters {
    dangling: Option<bool>,
    references: Vec<String>,
    labels: Vec<LabelFilter>,
    before: Option<i64>,
    since: Option<i64>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let _ = args.all;
    let store = ctx.store()?;
    let mut filters = parse_filters(&store, &args.filters)?;
    if let Some(r) = &args.reference {
        filters.references.push(r.clone());
    }
    let show_digests =
        args.digests || args.format.as_deref().is_some_and(|f| f.contains(".Digest"));

    let mut images = store.list_images()?;
    images.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));

    let now = format::now_unix();
    let trunc = !args.no_trunc;
    let format = match &args.format {
        Some(f) => f.clone(),
        // The built-in layouts skip the template engine: a listing of
        // 10,000 tags must stay well under 100 ms.
        None => return print_builtin(&store, &images, &filters, &args, show_digests, now),
    };
    let mut rows = Vec::new();
    for image in &images {
        let Some((tags, digests)) = select(&store, image, &filters)? else { continue };
        for (repo, tag, digest) in entries(&tags, &digests, show_digests) {
            rows.push(row(image, &repo, &tag, &digest, trunc, now));
        }
    }
    print_rows(&format, &rows, &headers())
}

/// The default table, `--digests` and `-q`, written straight to the table.
fn print_builtin(
    store: &Store,
    images: &[ImageSummary],
    filters: &Filters,
    args: &Args,
    show_digests: bool,
    now: i64,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut table = Table::new();
    let mut quiet = String::new();
    if !args.quiet {
        if show_digests {
            table.push_cells(&["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]);
        } else {
            table.push_cells(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
        }
    }
    for image in images {
        let Some((tags, digests)) = select(store, image, filters)? else { continue };
        let id =
            if args.no_trunc { image.id.as_str() } else { format::truncate_id(image.id.as_str()) };
        let created = image.created.unwrap_or(0);
        let since = format!("{} ago", format::human_duration(now - created));
        let size = format::image_size(image.size);
        for (repo, tag, digest) in entries(&tags, &digests, show_digests) {
            if args.quiet {
                quiet.push_str(id);
                quiet.push('\n');
            } else if show_digests {
                table.push_cells(&[&repo, &tag, &digest, id, &since, &size]);
            } else {
                table.push_cells(&[&repo, &tag, id, &since, &size]);
            }
        }
    }
    let out = if args.quiet { quiet } else { table.render() };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Applies the filters to one image; returns the names to show (docker
/// lists only the names matching a `reference` filter), or `None` to skip it.
fn select(
    store: &Store,
    image: &ImageSummary,
    filters: &Filters,
) -> anyhow::Result<Option<(Vec<Reference>, Vec<Reference>)>> {
    if filters.before.is_some_and(|t| image.created.unwrap_or(i64::MIN) >= t)
        || filters.since.is_some_and(|t| image.created.unwrap_or(i64::MIN) <= t)
    {
        return Ok(None);
    }
    if !filters.labels.is_empty() {
        let labels = store.image(&image.id)?.config.labels();
        if !labels_match(&filters.labels, &labels) {
            return Ok(None);
        }
    }
    let matches = |r: &Reference| {
        filters.references.is_empty()
            || filters.references.iter().any(|p| {
                glob_match(p, &r.familiar()) || glob_match(p, &r.repository().familiar_name())
            })
    };
    let tags: Vec<Reference> = image.tags.iter().filter(|r| matches(r)).cloned().collect();
    let digests: Vec<Reference> =
        image.repo_digests.iter().filter(|r| matches(r)).cloned().collect();
    if tags.is_empty() && digests.is_empty() {
        // Dangling: shown as <none>, unless a name or dangling=false was asked for.
        if !filters.references.is_empty() || filters.dangling == Some(false) {
            return Ok(None);
        }
    } else if filters.dangling == Some(true) && !tags.is_empty() {
        return Ok(None);
    }
    Ok(Some((tags, digests)))
}

/// docker's `imageEntries`: one row per repository tag (per digest too with
/// `--digests`), and rows for repositories known only by digest.
fn entries(
    tags: &[Reference],
    digests: &[Reference],
    show_digests: bool,
) -> Vec<(String, String, String)> {
    if tags.is_empty() && digests.is_empty() {
        return vec![("<none>".into(), "<none>".into(), "<none>".into())];
    }
    let tag_names: Vec<(String, &str)> = tags
        .iter()
        .map(|t| (t.repository().familiar_name(), t.tag().unwrap_or("latest")))
        .collect();
    let digest_names: Vec<(String, String)> = digests
        .iter()
        .filter_map(|d| Some((d.repository().familiar_name(), d.digest()?.to_string())))
        .collect();
    let digests_of = |repo: &str| -> Vec<&str> {
        digest_names.iter().filter(|(r, _)| r == repo).map(|(_, d)| d.as_str()).collect()
    };
    let mut out = Vec::new();
    let mut tagged_repos: Vec<&str> = tag_names.iter().map(|(r, _)| r.as_str()).collect();
    tagged_repos.sort_unstable();
    tagged_repos.dedup();
    for repo in &tagged_repos {
        let repo_digests = if show_digests { digests_of(repo) } else { Vec::new() };
        for (_, tag) in tag_names.iter().filter(|(r, _)| r == repo) {
            if repo_digests.is_empty() {
                out.push((repo.to_string(), tag.to_string(), "<none>".into()));
            }
            for d in &repo_digests {
                out.push((repo.to_string(), tag.to_string(), d.to_string()));
            }
        }
    }
    let mut digest_only: Vec<&str> = digest_names
        .iter()
        .map(|(r, _)| r.as_str())
        .filter(|r| !tagged_repos.contains(r))
        .collect();
    digest_only.sort_unstable();
    digest_only.dedup();
    for repo in digest_only {
        if show_digests {
            for d in digests_of(repo) {
                out.push((repo.to_owned(), "<none>".into(), d.to_owned()));
            }
        } else {
            out.push((repo.to_owned(), "<none>".into(), "<none>".into()));
        }
    }
    out
}

/// One row as docker's image context exposes it to templates.
fn row(image: &ImageSummary, repo: &str, tag: &str, digest: &str, trunc: bool, now: i64) -> V {
    let created = image.created.unwrap_or(0);
    let id = if trunc {
        format::truncate_id(image.id.as_str()).to_owned()
    } else {
        image.id.to_string()
    };
    V::Obj(vec![
        ("Containers".into(), V::str("N/A")),
        ("CreatedAt".into(), V::str(format::go_time_string(created))),
        ("CreatedSince".into(), V::str(format!("{} ago", format::human_duration(now - created)))),
        ("Digest".into(), V::str(digest)),
        ("ID".into(), V::str(id)),
        ("Repository".into(), V::str(repo)),
        ("SharedSize".into(), V::str("N/A")),
        ("Size".into(), V::str(format::image_size(image.size))),
        ("Tag".into(), V::str(tag)),
        ("UniqueSize".into(), V::str("N/A")),
        ("VirtualSize".into(), V::str(format::human_size(image.size))),
    ])
}

fn headers() -> V {
    V::Obj(
        [
            ("Containers", "CONTAINERS"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedSince", "CREATED"),
            ("Digest", "DIGEST"),
            ("ID", "IMAGE ID"),
            ("Repository", "REPOSITORY"),
            ("SharedSize", "SHARED SIZE"),
            ("Size", "SIZE"),
            ("Tag", "TAG"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("VirtualSize", "VIRTUAL SIZE"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), V::str(v)))
        .collect(),
    )
}

/// docker's formatter: `table ...` renders a header and aligns columns;
/// `json` prints each row as a JSON object; anything else is a template
/// printed once per row. `\t` and `\n` in the format are escapes.
pub fn print_rows(format: &str, rows: &[V], headers: &V) -> anyhow::Result<()> {
    use std::io::Write;
    let (table, body) = match format.strip_prefix("table") {
        Some(rest) if rest.is_empty() || rest.starts_with([' ', '\t']) => (true, rest),
        _ if format == "json" => (false, "{{json .}}"),
        _ => (false, format),
    };
    let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
    let template =
        Template::parse(&body).map_err(anyhow::Error::msg).context("Template parsing error")?;
    let mut out = String::new();
    if table {
        let mut t = Table::new();
        t.push(&template.render_header(headers).map_err(anyhow::Error::msg)?);
        for row in rows {
            t.push(&template.render(row).map_err(anyhow::Error::msg)?);
        }
        out = t.render();
    } else {
        for row in rows {
            out.push_str(&template.render(row).map_err(anyhow::Error::msg)?);
            out.push('\n');
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn parse_filters(store: &Store, specs: &[String]) -> anyhow::Result<Filters> {
    let mut f = Filters::default();
    for spec in specs {
        let (key, value) = spec.split_once('=').unwrap_or((spec.as_str(), ""));
        match key {
            "dangling" => {
                f.dangling = Some(match value.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("Invalid filter 'dangling=[{value}]'"),
                })
            }
            "reference" => f.references.push(value.to_owned()),
            "label" => f.labels.push(LabelFilter::parse(value, false)),
            "before" | "since" => {
                let id = store.resolve(value)?;
                let created = store.image(&id)?.created.unwrap_or(i64::MIN);
                if key == "before" {
                    f.before = Some(created);
                } else {
                    f.since = Some(created);
                }
            }
            _ => bail!("Invalid filter '{key}'"),
        }
    }
    Ok(f)
}

/// Go's `path.Match`: `*` and `?` never match `/`; `[...]` classes with
/// ranges and `^` negation; `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, length consumed incl. ']').
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let mut lo = p[i];
            if lo == '\\' {
                i += 1;
                lo = *p.get(i)?;
            }
            i += 1;
            let mut hi = lo;
            if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
                hi = p[i + 1];
                if hi == '\\' {
                    hi = *p.get(i + 2)?;
                    i += 1;
                }
                i += 2;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&k| k == 0 || n[k - 1] != '/')
                .any(|k| go(&p[1..], &n[k..])),
            Some('?') => n.first().is_some_and(|&c| c != '/') && go(&p[1..], &n[1..]),
            Some('[') => match n.first() {
                Some(&c) if c != '/' => match class(&p[1..], c) {
                    Some((true, used)) => go(&p[1 + used..], &n[1..]),
                    _ => false,
                },
                _ => false,
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_like_go_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("*:musl", "busybox:musl"));
        assert!(!glob_match("*", "library/busybox"));
        assert!(glob_match("*/*", "user/app"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
        assert!(!glob_match("[^b]usybox", "busybox"));
        assert!(glob_match("busybox", "busybox"));
        assert!(!glob_match("busybox", "busybox:musl"));
    }
}
