//! Docker's output conventions: human sizes and durations (go-units), the
//! tab-aligned tables of docker's formatter (text/tabwriter, 3 spaces of
//! padding), Go-template `--format` strings, and Go's JSON escaping.

mod table;
mod template;
mod value;

pub use table::Table;
pub use template::Template;
pub use value::{V, go_json_pretty};

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// go-units `HumanDuration`: "Less than a second", "About an hour", "3 weeks".
pub fn human_duration(seconds: i64) -> String {
    let s = seconds;
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = ((s as f64) / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", s / 3600 / 24 / 365)
}

/// go-units `HumanSizeWithPrecision`: decimal units, `%.*g`.
pub fn human_size_precision(size: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_format_g(value, precision), UNITS[unit])
}

/// go-units `HumanSize` (4 significant digits): `system df`, prune totals.
pub fn human_size(size: u64) -> String {
    human_size_precision(size, 4)
}

/// docker's image SIZE column (3 significant digits): "1.99MB", "177MB".
pub fn image_size(size: u64) -> String {
    human_size_precision(size, 3)
}

/// Go's `fmt.Sprintf("%.*g", precision, x)` for non-negative finite `x`.
fn go_format_g(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let p = precision.max(1);
    // Round to p significant digits first; the exponent is that of the
    // rounded value (999.5 -> 1.00e3).
    let sci = format!("{:.*e}", p - 1, x);
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    if exp < -4 || exp >= p as i32 {
        let m = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (p as i32 - 1 - exp).max(0) as usize;
    trim_fraction(&format!("{x:.decimals$}")).to_owned()
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { s }
}

/// A unix time as Go's `time.Time.String()` in UTC: `2024-01-02 03:04:05 +0000 UTC`.
pub fn go_time_string(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000 UTC")
}

use berth_oci::time::civil;
pub use berth_oci::time::{rfc3339, rfc3339_nano};

/// docker's `stringid.TruncateID`: drop `algo:`, keep 12 characters.
pub fn truncate_id(id: &str) -> &str {
    let id = id.split_once(':').map_or(id, |(_, hex)| hex);
    if id.len() > 12 { &id[..12] } else { id }
}

/// docker's `formatter.Ellipsis`: at most `max` display columns, the last
/// one "…" when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_go_units() {
        assert_eq!(image_size(0), "0B");
        assert_eq!(image_size(1850), "1.85kB");
        assert_eq!(image_size(1_985_542), "1.99MB");
        assert_eq!(human_size(1_985_542), "1.986MB");
        assert_eq!(image_size(177_000_000), "177MB");
        assert_eq!(image_size(999_600), "1e+03kB");
        assert_eq!(image_size(70), "70B");
        assert_eq!(image_size(3216), "3.22kB");
        assert_eq!(human_size(1_985_472), "1.985MB");
        assert_eq!(image_size(1_400_000), "1.4MB");
    }

    #[test]
    fn durations_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(45 * 60), "45 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5400), "2 hours");
        assert_eq!(human_duration(2 * 86_400), "2 days");
        assert_eq!(human_duration(21 * 86_400), "3 weeks");
        assert_eq!(human_duration(70 * 86_400), "2 months");
        assert_eq!(human_duration(800 * 86_400), "2 years");
    }

    #[test]
    fn times_match_go() {
        assert_eq!(go_time_string(1_704_164_645), "2024-01-02 03:04:05 +0000 UTC");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(1_704_164_645_120_000_000), "2024-01-02T03:04:05.12Z");
        assert_eq!(rfc3339(-62_135_596_800), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(truncate_id("sha256:a2e664b69a19155cbacad34c8d2c"), "a2e664b69a19");
        assert_eq!(truncate_id("<missing>"), "<missing>");
        let long = "/bin/sh -c echo hello > /hello.txt && echo \"a very long command";
        assert_eq!(ellipsis(long, 45), "/bin/sh -c echo hello > /hello.txt && echo \"…");
        assert_eq!(ellipsis("short", 45), "short");
    }
}
