//! `berth inspect` / `berth image inspect`: docker's `ImageInspect` JSON.
//!
//! Field names and order are Docker 20.10's. `GraphDriver` describes berth's
//! own storage honestly: `{"Data": null, "Name": "berth"}` (layers are
//! content-addressed blobs in the store, there is no graph driver).
//! `Parent` is always empty: berth records no parent images.

use std::io::Write;

use berth_store::{ImageRecord, StoreError};

use crate::context::Context;
use crate::format::{self, Template, V, go_json_pretty};

#[derive(clap::Args)]
pub struct Args {
    /// Format the output using the given Go template
    #[arg(short, long, value_name = "string")]
    format: Option<String>,
    /// Images to inspect: names, IDs or ID prefixes
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// `berth image inspect`: only images.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    inspect(ctx, args, "image")
}

/// `berth inspect`: docker's generic inspect; images are the only objects
/// berth has so far, and a miss is reported as docker does for any object.
pub fn run_any(ctx: &Context, args: Args) -> anyhow::Result<()> {
    inspect(ctx, args, "object")
}

fn inspect(ctx: &Context, args: Args, kind: &str) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let template = match &args.format {
        Some(f) => {
            Some(Template::parse(f).map_err(|e| anyhow::anyhow!("Template parsing error: {e}"))?)
        }
        None => None,
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.images {
        match store.resolve(name).and_then(|id| store.image(&id)) {
            Ok(image) => found.push(inspect_value(&image)),
            // `berth inspect` finds containers too (`image inspect` does not).
            Err(StoreError::NoSuchImage(_))
                if kind == "object" && store.container(name).is_ok() =>
            {
                let c = store.container(name)?;
                let value = crate::commands::container::inspect_value(ctx, &c);
                found.push(serde_json::from_value(value)?);
            }
            Err(StoreError::NoSuchImage(_)) => errors.push(format!("No such {kind}: {name}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let mut stdout = std::io::stdout().lock();
    match &template {
        None => writeln!(stdout, "{}", go_json_pretty(&V::Arr(found)))?,
        Some(t) => {
            for value in &found {
                let text = t.render(value).map_err(anyhow::Error::msg)?;
                writeln!(stdout, "{text}")?;
            }
        }
    }
    stdout.flush()?;
    if errors.is_empty() { Ok(()) } else { anyhow::bail!(errors.join("\nError: ")) }
}

/// Docker 20.10's `types.ImageInspect` for a stored image.
pub fn inspect_value(image: &ImageRecord) -> V {
    let raw: V = serde_json::from_slice(&image.config_bytes).unwrap_or(V::Obj(Vec::new()));
    let text = |key: &str| match raw.get(key) {
        Some(V::Str(s)) => V::str(s.clone()),
        _ => V::str(""),
    };
    let created = match raw.get("created") {
        Some(V::Str(s)) => V::str(normalize_created(s)),
        _ => V::str("0001-01-01T00:00:00Z"),
    };
    let mut fields: Vec<(String, V)> = vec![
        ("Id".into(), V::str(image.id.to_string())),
        ("RepoTags".into(), V::Arr(image.tags.iter().map(|r| V::str(r.familiar())).collect())),
        (
            "RepoDigests".into(),
            V::Arr(image.repo_digests.iter().map(|r| V::str(r.familiar())).collect()),
        ),
        ("Parent".into(), V::str("")),
        ("Comment".into(), text("comment")),
        ("Created".into(), created),
        ("Container".into(), text("container")),
        (
            "ContainerConfig".into(),
            container_config(raw.get("container_config").filter(|v| !v.is_null()), true),
        ),
        ("DockerVersion".into(), text("docker_version")),
        ("Author".into(), text("author")),
        ("Config".into(), container_config(raw.get("config").filter(|v| !v.is_null()), false)),
        ("Architecture".into(), text("architecture")),
    ];
    if let Some(V::Str(v)) = raw.get("variant").filter(|v| !matches!(v, V::Str(s) if s.is_empty()))
    {
        fields.push(("Variant".into(), V::str(v.clone())));
    }
    fields.push(("Os".into(), text("os")));
    if let Some(V::Str(v)) =
        raw.get("os.version").filter(|v| !matches!(v, V::Str(s) if s.is_empty()))
    {
        fields.push(("OsVersion".into(), V::str(v.clone())));
    }
    let size = V::int(image.size as i64);
    fields.extend([
        ("Size".into(), size.clone()),
        ("VirtualSize".into(), size),
        (
            "GraphDriver".into(),
            V::Obj(vec![("Data".into(), V::Null), ("Name".into(), V::str("berth"))]),
        ),
        (
            "RootFS".into(),
            V::Obj(vec![
                ("Type".into(), V::str(image.config.rootfs.kind.clone())),
                (
                    "Layers".into(),
                    V::Arr(image.layers.iter().map(|l| V::str(l.diff_id.to_string())).collect()),
                ),
            ]),
        ),
        (
            "Metadata".into(),
            V::Obj(vec![(
                "LastTagTime".into(),
                V::str(match image.last_tag_time {
                    Some(nanos) => format::rfc3339_nano(nanos),
                    None => "0001-01-01T00:00:00Z".to_owned(),
                }),
            )]),
        ),
    ]);
    if image.layers.is_empty() {
        // Go's omitempty drops an empty layer list.
        if let Some((_, V::Obj(rootfs))) = fields.iter_mut().find(|(k, _)| k == "RootFS") {
            rootfs.retain(|(k, _)| k != "Layers");
        }
    }
    V::Obj(fields)
}

/// Go prints times with trailing zeros of the fraction trimmed.
fn normalize_created(s: &str) -> String {
    let Some(dot) = s.find('.') else { return s.to_owned() };
    let frac_end =
        s[dot + 1..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |i| dot + 1 + i);
    let frac = s[dot + 1..frac_end].trim_end_matches('0');
    if frac.is_empty() {
        format!("{}{}", &s[..dot], &s[frac_end..])
    } else {
        format!("{}.{}{}", &s[..dot], frac, &s[frac_end..])
    }
}

/// Docker's `container.Config` in its field order, filled from the image
/// config's `config` (or legacy `container_config`). A missing `config` is
/// `null`; a missing `container_config` is an empty struct (as in docker).
fn container_config(source: Option<&V>, always: bool) -> V {
    let empty = V::Obj(Vec::new());
    let src = match source {
        Some(v) => v,
        None if always => &empty,
        None => return V::Null,
    };
    let get = |k: &str| src.get(k).cloned();
    let string = |k: &str| get(k).filter(|v| matches!(v, V::Str(_))).unwrap_or(V::str(""));
    let boolean = |k: &str| get(k).filter(|v| matches!(v, V::Bool(_))).unwrap_or(V::Bool(false));
    let nullable = |k: &str| get(k).unwrap_or(V::Null);
    let mut out: Vec<(String, V)> = vec![
        ("Hostname".into(), string("Hostname")),
        ("Domainname".into(), string("Domainname")),
        ("User".into(), string("User")),
        ("AttachStdin".into(), boolean("AttachStdin")),
        ("AttachStdout".into(), boolean("AttachStdout")),
        ("AttachStderr".into(), boolean("AttachStderr")),
    ];
    let omitempty = |out: &mut Vec<(String, V)>, k: &str| {
        if let Some(v) = get(k).filter(|v| !is_empty(v)) {
            out.push((k.to_owned(), v));
        }
    };
    omitempty(&mut out, "ExposedPorts");
    out.push(("Tty".into(), boolean("Tty")));
    out.push(("OpenStdin".into(), boolean("OpenStdin")));
    out.push(("StdinOnce".into(), boolean("StdinOnce")));
    out.push(("Env".into(), nullable("Env")));
    out.push(("Cmd".into(), nullable("Cmd")));
    omitempty(&mut out, "Healthcheck");
    omitempty(&mut out, "ArgsEscaped");
    out.push(("Image".into(), string("Image")));
    out.push(("Volumes".into(), nullable("Volumes")));
    out.push(("WorkingDir".into(), string("WorkingDir")));
    out.push(("Entrypoint".into(), nullable("Entrypoint")));
    omitempty(&mut out, "NetworkDisabled");
    omitempty(&mut out, "MacAddress");
    out.push(("OnBuild".into(), nullable("OnBuild")));
    out.push(("Labels".into(), nullable("Labels")));
    omitempty(&mut out, "StopSignal");
    omitempty(&mut out, "StopTimeout");
    omitempty(&mut out, "Shell");
    V::Obj(out)
}

fn is_empty(v: &V) -> bool {
    match v {
        V::Null => true,
        V::Bool(b) => !b,
        V::Str(s) => s.is_empty(),
        V::Arr(a) => a.is_empty(),
        V::Obj(o) => o.is_empty(),
        V::Num(n) => n.as_f64() == Some(0.0),
    }
}
