//! `berth ps`: docker's container list, with its `--filter` keys, `-n`/`-l`
//! and `--format` templates (the same formatter `images` uses).

use anyhow::bail;
use berth_store::{ContainerRecord, LabelFilter, Store, labels_match};

use super::{container_dir, reconcile, started_at, truncate};
use crate::commands::images::print_rows;
use crate::context::Context;
use crate::format::{self, V};

#[derive(clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", value_name = "N", allow_negative_numbers = true)]
    last: Option<i64>,
    /// Filter output based on conditions provided (id, name, label, status, exited, ancestor, before, since)
    #[arg(short, long = "filter", value_name = "filter")]
    filters: Vec<String>,
    /// Pretty-print containers using a Go template ('table ...', 'json', or a template)
    #[arg(long)]
    format: Option<String>,
}

/// The `--filter` conditions: values of one key are alternatives, keys
/// must all hold (docker's rule).
#[derive(Default)]
struct Filters {
    ids: Vec<String>,
    names: Vec<String>,
    labels: Vec<LabelFilter>,
    statuses: Vec<String>,
    exited: Vec<i64>,
    ancestors: Vec<String>,
    before: Option<(i64, u128)>,
    since: Option<(i64, u128)>,
}

const STATUSES: &[&str] =
    &["created", "restarting", "running", "removing", "paused", "exited", "dead"];

fn parse_filters(ctx: &Context, store: &Store, specs: &[String]) -> anyhow::Result<Filters> {
    let mut f = Filters::default();
    for spec in specs {
        let Some((key, value)) = spec.split_once('=') else {
            bail!("bad format of filter (expected name=value)");
        };
        match key {
            "id" => f.ids.push(value.to_owned()),
            "name" => f.names.push(value.trim_start_matches('/').to_owned()),
            "label" => f.labels.push(LabelFilter::parse(value, false)),
            "status" => {
                if !STATUSES.contains(&value) {
                    bail!("Invalid filter 'status={value}'");
                }
                f.statuses.push(value.to_owned());
            }
            "exited" => match value.parse() {
                Ok(code) => f.exited.push(code),
                Err(_) => bail!("invalid filter 'exited={value}'"),
            },
            "ancestor" => f.ancestors.push(value.to_owned()),
            "before" | "since" => {
                let other = store.container(value)?;
                let created = made_at(ctx, &other);
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

/// docker's `State`: created, running or exited.
pub(super) fn state(c: &ContainerRecord) -> &'static str {
    if c.running {
        "running"
    } else if c.finished.is_some() {
        "exited"
    } else {
        "created"
    }
}

impl Filters {
    fn matches(&self, ctx: &Context, store: &Store, c: &ContainerRecord) -> bool {
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|v| f(v))
        };
        let labels = labels_of(c);
        any(&self.ids, &|v| c.id.starts_with(v))
            && any(&self.names, &|v| name_matches(v, &c.name))
            && (self.labels.is_empty() || labels_match(&self.labels, &labels))
            && any(&self.statuses, &|v| v == state(c))
            && (self.exited.is_empty()
                || (!c.running && c.exit_code.is_some_and(|e| self.exited.contains(&e))))
            && any(&self.ancestors, &|v| is_ancestor(store, v, c))
            && self.before.is_none_or(|t| made_at(ctx, c) < t)
            && self.since.is_none_or(|t| made_at(ctx, c) > t)
    }
}

/// `name=`: docker matches a regular expression anywhere in the name;
/// berth takes the common part of that: literal text, anchored by a
/// leading `^` or a trailing `$`.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (start, rest) = match pattern.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, pattern),
    };
    let (end, text) = match rest.strip_suffix('$') {
        Some(t) => (true, t),
        None => (false, rest),
    };
    match (start, end) {
        (true, true) => name == text,
        (true, false) => name.starts_with(text),
        (false, true) => name.ends_with(text),
        (false, false) => name.contains(text),
    }
}

/// `ancestor=IMAGE`: the container's image named as it was run, or by ID,
/// or an image the container's image was built on (its layers a prefix of
/// the container's image's).
fn is_ancestor(store: &Store, image: &str, c: &ContainerRecord) -> bool {
    if c.image_name == image {
        return true;
    }
    let Ok(id) = store.resolve(image) else { return false };
    if id == c.image_id {
        return true;
    }
    let (Ok(a), Ok(mine)) = (store.image(&id), store.image(&c.image_id)) else { return false };
    let (a, mine) = (&a.config.rootfs.diff_ids, &mine.config.rootfs.diff_ids);
    !a.is_empty() && a.len() <= mine.len() && mine[..a.len()] == a[..]
}

pub(super) fn labels_of(c: &ContainerRecord) -> std::collections::BTreeMap<String, String> {
    serde_json::from_slice::<berth_oci::ContainerConfig>(&c.config)
        .ok()
        .and_then(|config| config.labels)
        .unwrap_or_default()
}

/// docker's STATUS: `Up 2 seconds`, `Exited (0) 3 seconds ago`, `Created`.
pub(super) fn status(ctx: &Context, c: &ContainerRecord, now: i64) -> String {
    match (c.running, c.exit_code, c.finished) {
        (true, _, _) => {
            let since = started_at(ctx, c).unwrap_or(c.created);
            format!("Up {}", format::human_duration(now - since))
        }
        (false, Some(code), Some(at)) => {
            format!("Exited ({code}) {} ago", format::human_duration(now - at))
        }
        _ => "Created".to_owned(),
    }
}

pub fn ps(ctx: &Context, args: PsArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let filters = parse_filters(ctx, &store, &args.filters)?;
    let now = format::now_unix();
    let limit = match (args.latest, args.last) {
        (true, _) => Some(1),
        (false, Some(n)) if n > 0 => Some(n as usize),
        _ => None,
    };
    // As docker: a limit, a status filter, before or since list every state.
    let all = args.all
        || limit.is_some()
        || !filters.statuses.is_empty()
        || filters.before.is_some()
        || filters.since.is_some();
    let mut listed = store.list_containers()?;
    for c in &mut listed {
        reconcile(ctx, &store, c);
    }
    // Newest first; within one second (the record's resolution) by when
    // the container's directory got its runtime file, in nanoseconds.
    listed.sort_by_cached_key(|c| std::cmp::Reverse(made_at(ctx, c)));
    let mut shown: Vec<ContainerRecord> = listed
        .into_iter()
        .filter(|c| all || c.running)
        .filter(|c| filters.matches(ctx, &store, c))
        .collect();
    if let Some(n) = limit {
        shown.truncate(n);
    }
    let short = |id: &str| if args.no_trunc { id.to_owned() } else { id[..12].to_owned() };
    if args.quiet {
        for c in &shown {
            println!("{}", short(&c.id));
        }
        return Ok(());
    }
    let format = args
        .format
        .clone()
        .unwrap_or_else(|| "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".into());
    // The size walks the container's upper directory: only when asked for.
    let sized = format.contains(".Size") || format.contains("json");
    let rows: Vec<V> = shown.iter().map(|c| row(ctx, c, args.no_trunc, sized, now)).collect();
    print_rows(&format, &rows, &headers())
}

/// When a container was made: the record's seconds, then (for containers
/// made within one second) when its directory got its runtime file.
fn made_at(ctx: &Context, c: &ContainerRecord) -> (i64, u128) {
    (c.created, made_nanos(ctx, c))
}

fn made_nanos(ctx: &Context, c: &ContainerRecord) -> u128 {
    std::fs::metadata(container_dir(ctx, &c.id).join("runtime"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// One container as docker's container context shows it to templates
/// (fields in the order docker's `{{json .}}` prints them).
fn row(ctx: &Context, c: &ContainerRecord, no_trunc: bool, sized: bool, now: i64) -> V {
    let config: berth_oci::ContainerConfig = serde_json::from_slice(&c.config).unwrap_or_default();
    let args =
        berth_container::spec::process_args(&config, &berth_container::RunOptions::default())
            .unwrap_or_default();
    let listed = if args.is_empty() { c.command.clone() } else { super::command_line(&args) };
    let command = if no_trunc { listed } else { truncate(&listed, 20) };
    let labels: Vec<String> = labels_of(c).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let size = if sized { super::tree_size(&container_dir(ctx, &c.id).join("upper")) } else { 0 };
    let mounts: Vec<String> =
        config.volumes.iter().flat_map(|v| v.keys().cloned()).collect::<Vec<_>>();
    V::Obj(vec![
        ("Command".into(), V::str(go_quote(&command))),
        ("CreatedAt".into(), V::str(format::go_time_string(c.created))),
        ("ID".into(), V::str(if no_trunc { c.id.clone() } else { c.id[..12].to_owned() })),
        ("Image".into(), V::str(c.image_name.clone())),
        ("Labels".into(), V::str(labels.join(","))),
        ("LocalVolumes".into(), V::str("0")),
        ("Mounts".into(), V::str(mounts.join(","))),
        ("Names".into(), V::str(c.name.clone())),
        ("Networks".into(), V::str("none")),
        ("Ports".into(), V::str("")),
        ("RunningFor".into(), V::str(format!("{} ago", format::human_duration(now - c.created)))),
        ("Size".into(), V::str(format::image_size(size))),
        ("State".into(), V::str(state(c))),
        ("Status".into(), V::str(status(ctx, c, now))),
    ])
}

/// Go's `strconv.Quote`, which docker's COMMAND column goes through.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn headers() -> V {
    V::Obj(
        [
            ("Command", "COMMAND"),
            ("CreatedAt", "CREATED AT"),
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Labels", "LABELS"),
            ("LocalVolumes", "LOCAL VOLUMES"),
            ("Mounts", "MOUNTS"),
            ("Names", "NAMES"),
            ("Networks", "NETWORKS"),
            ("Ports", "PORTS"),
            ("RunningFor", "CREATED"),
            ("Size", "SIZE"),
            ("State", "STATE"),
            ("Status", "STATUS"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), V::str(v)))
        .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn names_match_anywhere_or_anchored() {
        assert!(name_matches("web", "my-web-1"));
        assert!(name_matches("^my", "my-web-1"));
        assert!(!name_matches("^web", "my-web-1"));
        assert!(name_matches("1$", "my-web-1"));
        assert!(name_matches("^my-web-1$", "my-web-1"));
        assert!(!name_matches("^my-web$", "my-web-1"));
    }

    #[test]
    fn commands_are_quoted_as_go_quotes_them() {
        assert_eq!(super::go_quote("sh -c echo \"$F…"), "\"sh -c echo \\\"$F…\"");
        assert_eq!(super::go_quote("a\tb\\"), "\"a\\tb\\\\\"");
    }
}
