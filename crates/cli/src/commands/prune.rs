//! `berth image prune`: remove dangling (or, with -a, all unused) images.

use std::io::{BufRead, Write};

use anyhow::bail;
use berth_store::{LabelFilter, PruneOptions, RemoveEvent};

use crate::context::Context;
use crate::format;

#[derive(clap::Args)]
pub struct Args {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. 'until=<timestamp>', 'label=<key>=<value>')
    #[arg(long = "filter", value_name = "filter")]
    filters: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let mut options = PruneOptions { dangling_only: !args.all, until: None, labels: Vec::new() };
    for spec in &args.filters {
        let (key, value) = spec.split_once('=').unwrap_or((spec.as_str(), ""));
        match key {
            "until" => options.until = Some(parse_until(value, format::now_unix())?),
            "label" => options.labels.push(LabelFilter::parse(value, false)),
            "label!" => options.labels.push(LabelFilter::parse(value, true)),
            "dangling" => match value.to_ascii_lowercase().as_str() {
                "true" | "1" => options.dangling_only = true,
                "false" | "0" => options.dangling_only = false,
                _ => bail!("Invalid filter 'dangling=[{value}]'"),
            },
            _ => bail!("Invalid filter '{key}'"),
        }
    }
    if !args.force {
        let warning = if options.dangling_only {
            "WARNING! This will remove all dangling images."
        } else {
            "WARNING! This will remove all images without at least one container associated to them."
        };
        print!("{warning}\nAre you sure you want to continue? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y") {
            return Ok(());
        }
    }

    let store = ctx.store()?;
    let report = store.prune(&options)?;
    let mut out = String::new();
    if !report.events.is_empty() {
        out.push_str("Deleted Images:\n");
        for event in &report.events {
            match event {
                RemoveEvent::Untagged(r) => out.push_str(&format!("untagged: {r}\n")),
                RemoveEvent::Deleted(d) => out.push_str(&format!("deleted: {d}\n")),
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        format::human_size(report.space_reclaimed)
    ));
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// docker's `until=`: a Go duration before now (`24h`, `1h30m`), a unix
/// timestamp (`1700000000[.nanos]`), or an RFC 3339 date or date-time.
pub fn parse_until(value: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(d) = parse_go_duration(value) {
        return Ok(now - d);
    }
    let int_part = value.split('.').next().unwrap_or("");
    if !int_part.is_empty()
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && let Ok(secs) = int_part.parse::<i64>()
    {
        return Ok(secs);
    }
    if let Some(t) = berth_store::parse_rfc3339(value) {
        return Ok(t);
    }
    // Dates and date-times without a zone are UTC here.
    for suffix in ["T00:00:00Z", "Z", ":00Z"] {
        if let Some(t) = berth_store::parse_rfc3339(&format!("{value}{suffix}")) {
            return Ok(t);
        }
    }
    bail!("failed to parse value as time or duration: \"{value}\"")
}

/// Go's `time.ParseDuration`, in whole seconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    let secs = total as i64;
    Some(if neg { -secs } else { secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_accepts_dockers_forms() {
        let now = 1_700_000_000;
        assert_eq!(parse_until("24h", now).unwrap(), now - 86_400);
        assert_eq!(parse_until("1h30m", now).unwrap(), now - 5400);
        assert_eq!(parse_until("10m", now).unwrap(), now - 600);
        assert_eq!(parse_until("1600000000", now).unwrap(), 1_600_000_000);
        assert_eq!(parse_until("2024-01-02T03:04:05Z", now).unwrap(), 1_704_164_645);
        assert_eq!(parse_until("2024-01-02", now).unwrap(), 1_704_153_600);
        assert!(parse_until("yesterday", now).is_err());
    }
}
