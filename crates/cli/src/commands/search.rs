//! `berth search`: the v1 search API, shown as docker shows it.

use anyhow::bail;
use berth_client::SearchResult;

use crate::context::Context;
use crate::remote::{client, runtime};

#[derive(clap::Args)]
pub struct Args {
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    limit: usize,
    /// Filter output based on conditions provided (is-official=true, is-automated=true, stars=N)
    #[arg(short, long)]
    filter: Vec<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Pretty-print search using a Go-style template ({{.Name}}, {{.Description}}, {{.StarCount}}, {{.IsOfficial}}, {{.IsAutomated}})
    #[arg(long)]
    format: Option<String>,
    /// [REGISTRY/]TERM
    term: String,
}

pub fn run(_ctx: &Context, args: Args) -> anyhow::Result<()> {
    if args.limit < 1 || args.limit > 100 {
        bail!("Limit {} is outside the range of [1, 100]", args.limit);
    }
    let (domain, term) = split_registry(&args.term);
    let mut min_stars = 0u64;
    let (mut official, mut automated) = (None, None);
    for f in &args.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
        let flag = || -> anyhow::Result<bool> {
            v.parse::<bool>().map_err(|_| anyhow::anyhow!("Invalid filter '{k}={v}'"))
        };
        match k {
            "stars" => {
                min_stars = v.parse().map_err(|_| anyhow::anyhow!("Invalid filter 'stars={v}'"))?
            }
            "is-official" => official = Some(flag()?),
            "is-automated" => automated = Some(flag()?),
            _ => bail!("Invalid filter '{k}'"),
        }
    }
    let client = client()?;
    let results = runtime()?.block_on(client.search(&domain, term, args.limit))?;
    let results: Vec<SearchResult> = results
        .into_iter()
        .filter(|r| r.star_count >= min_stars)
        .filter(|r| official.is_none_or(|o| r.is_official == o))
        .filter(|r| automated.is_none_or(|a| r.is_automated == a))
        .collect();
    print!("{}", render(&results, args.format.as_deref(), args.no_trunc));
    Ok(())
}

/// `registry.lan:5000/term` → (`registry.lan:5000`, `term`); `term` → Docker Hub.
fn split_registry(s: &str) -> (String, &str) {
    match s.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_owned(), rest)
        }
        _ => ("docker.io".to_owned(), s),
    }
}

fn ok(b: bool) -> &'static str {
    if b { "[OK]" } else { "" }
}

fn render(results: &[SearchResult], format: Option<&str>, no_trunc: bool) -> String {
    let describe = |r: &SearchResult| {
        let d = r.description.replace(['\n', '\r'], " ");
        if no_trunc || d.chars().count() <= 45 {
            d
        } else {
            format!("{}…", d.chars().take(44).collect::<String>())
        }
    };
    if let Some(f) = format.filter(|f| !f.starts_with("table")) {
        let mut out = String::new();
        for r in results {
            let line = f
                .replace("{{.Name}}", &r.name)
                .replace("{{.Description}}", &describe(r))
                .replace("{{.StarCount}}", &r.star_count.to_string())
                .replace("{{.IsOfficial}}", ok(r.is_official))
                .replace("{{.IsAutomated}}", ok(r.is_automated))
                .replace("\\t", "\t");
            out.push_str(&line);
            out.push('\n');
        }
        return out;
    }
    let mut rows =
        vec![["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"].map(str::to_owned)];
    for r in results {
        rows.push([
            r.name.clone(),
            describe(r),
            r.star_count.to_string(),
            ok(r.is_official).to_owned(),
            ok(r.is_automated).to_owned(),
        ]);
    }
    // docker's tabwriter: cells padded by 3, at least 20 wide (the last not padded).
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count() + 3).max().unwrap_or(0).max(20))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 4 {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_like_docker() {
        let r = SearchResult {
            name: "busybox".into(),
            description: "Busybox base image with a very long description that goes on".into(),
            star_count: 3000,
            is_official: true,
            is_automated: false,
        };
        let out = render(&[r], None, false);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME                DESCRIPTION"));
        assert!(lines[1].contains("Busybox base image with a very long descript…"));
        assert!(lines[1].contains("3000"));
        assert!(lines[1].contains("[OK]"));
        assert_eq!(split_registry("127.0.0.1:5000/app"), ("127.0.0.1:5000".into(), "app"));
        assert_eq!(split_registry("nginx"), ("docker.io".into(), "nginx"));
    }
}
