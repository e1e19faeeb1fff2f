//! `berth build` / `berth image build`: docker's flags over `berth_build`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use berth_build::progress::Mode as ProgressMode;
use berth_build::{Build, BuildOptions, ContextFiles, Hooks, Progress};
use berth_reference::{Digest, Reference};
use berth_transfer::Place;

use crate::context::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short, long = "tag")]
    tag: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short, long)]
    file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Set metadata for an image
    #[arg(long)]
    label: Vec<String>,
    /// Set platform if server is multi-platform capable (the host's only)
    #[arg(long)]
    platform: Option<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set the networking mode for the RUN instructions during build (default: host; none)
    #[arg(long)]
    network: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Do not cache specified stages
    #[arg(long = "no-cache-filter", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Type of progress output (auto, plain, quiet)
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Output destination (type=oci|docker,dest=FILE)
    #[arg(short, long)]
    output: Option<String>,
    /// Push the image to its registry once built
    #[arg(long)]
    push: bool,
    /// Secret to expose to the build (id=mysecret,src=/local/secret)
    #[arg(long)]
    secret: Vec<String>,
    /// The OCI runtime RUN uses: runc, crun, or a path (default: `runtime` in berth's config file, else runc)
    #[arg(long)]
    runtime: Option<String>,
    /// The build context: a directory, a git repository (URL#ref:dir), a tarball or Dockerfile URL, or - (stdin)
    #[arg(value_name = "PATH | URL | -")]
    context: String,
}

struct CliHooks<'c> {
    ctx: &'c Context,
}

impl Hooks for CliHooks<'_> {
    fn pull(&self, reference: &str) -> Result<Digest, String> {
        crate::remote::pull_into_store(self.ctx, reference).map_err(|e| format!("{e:#}"))
    }
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    if let Some(p) = &args.platform {
        let host = format!("linux/{}", berth_oci::Platform::host().architecture);
        if p != &host {
            bail!(
                "berth builds for the host's platform only ({host}): --platform={p} is not supported"
            );
        }
    }
    // Secrets given by environment variable are written to a private file
    // that lives as long as the build.
    let secret_dir = tempfile::tempdir()?;
    let mut secrets = HashMap::new();
    for spec in &args.secret {
        let (id, path) = parse_secret(spec, secret_dir.path())?;
        secrets.insert(id, path);
    }
    let quiet = args.quiet || args.progress == "quiet";
    if !matches!(args.progress.as_str(), "auto" | "plain" | "quiet" | "tty") {
        bail!("invalid progress mode {:?}: use auto, plain or quiet", args.progress);
    }
    let network = match args.network.as_deref() {
        None | Some("default") => None,
        Some("host") => Some(berth_container::Network::Host),
        Some("none") => Some(berth_container::Network::Private),
        Some(other) => bail!("network mode {other:?} not supported: use host or none"),
    };
    let output = args.output.as_deref().map(parse_output).transpose()?;
    let mut tags = Vec::new();
    for t in &args.tag {
        let r = Reference::parse(t).with_context(|| format!("invalid tag {t:?}"))?;
        if r.digest().is_some() {
            bail!("invalid tag {t:?}: a tag cannot name a digest");
        }
        tags.push(r.with_default_tag());
    }
    if args.push && tags.is_empty() {
        bail!("--push needs a name to push to: give one with -t");
    }
    let mut build_args = HashMap::new();
    for a in &args.build_arg {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_owned(), v.to_owned()),
            // A bare NAME takes the caller's value, or stays unset.
            None => match std::env::var(a) {
                Ok(v) => build_args.insert(a.clone(), v),
                Err(_) => continue,
            },
        };
    }
    let mut labels = BTreeMap::new();
    for l in &args.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => {
            Some(v.parse::<i64>().with_context(|| format!("invalid SOURCE_DATE_EPOCH {v:?}"))?)
        }
        _ => None,
    };
    let options = BuildOptions {
        tags: tags.clone(),
        build_args,
        target: args.target.clone(),
        labels,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        pull: args.pull,
        network,
        runtime: Some(crate::commands::container::runtime_name(args.runtime.as_deref())?),
        secrets,
        source_date_epoch,
    };
    let context =
        berth_context::open(&args.context, args.file.as_deref(), &mut std::io::stdin().lock())?;
    let store = ctx.store()?;
    let stat_dir = store.root().join("build-cache");
    std::fs::create_dir_all(&stat_dir)?;
    let stat_cache = if context.is_temporary() {
        None
    } else {
        Some(berth_context::StatCache::open(&stat_dir)?)
    };
    let mode = match args.progress.as_str() {
        _ if quiet => ProgressMode::Quiet,
        "plain" => ProgressMode::Plain,
        "tty" => ProgressMode::Live,
        _ if std::io::IsTerminal::is_terminal(&std::io::stderr()) => ProgressMode::Live,
        _ => ProgressMode::Plain,
    };
    let mut progress = Progress::new(Box::new(std::io::stderr()), mode);
    let hooks = CliHooks { ctx };
    let build = Build {
        store: &store,
        dockerfile: &context.dockerfile,
        file_name: &context.dockerfile_name,
        context: ContextFiles {
            root: &context.root,
            ignore: &context.ignore,
            stat_cache: stat_cache.as_ref(),
        },
        options: &options,
        hooks: &hooks,
        progress: &progress,
    };
    let built = build.run();
    // The live view's last frame stays above whatever comes next.
    progress.finish();
    if let Some(cache) = &stat_cache {
        // What was hashed stays known even if a later step failed.
        cache.save()?;
    }
    let built = built?;
    if let Some(path) = &args.iidfile {
        std::fs::write(path, built.id.as_str())
            .with_context(|| format!("writing the image ID to {}", path.display()))?;
    }
    if let Some(place) = output {
        let transfer = crate::remote::transfer(ctx)?;
        let src = Place::Store(Some(built.id.to_string()));
        crate::remote::runtime()?.block_on(transfer.copy(
            &src,
            &place,
            &Default::default(),
            &crate::remote::Bars::new(true),
        ))?;
    }
    if args.push {
        let transfer = crate::remote::transfer(ctx)?;
        for t in &built.tags {
            let src = Place::Store(Some(t.to_string()));
            crate::remote::runtime()?.block_on(transfer.copy(
                &src,
                &Place::Registry(t.clone()),
                &Default::default(),
                &crate::remote::Bars::new(quiet),
            ))?;
        }
    }
    if quiet {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", built.id)?;
    }
    Ok(())
}

/// `id=ID,src=FILE` or `id=ID,env=VAR` (docker's `--secret`; a bare `id`
/// with neither reads the variable of that name).
fn parse_secret(spec: &str, dir: &std::path::Path) -> anyhow::Result<(String, PathBuf)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_owned()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => env = Some(v.to_owned()),
            Some(("type", "file" | "env")) => {}
            _ => bail!("invalid secret {spec:?}: use id=ID,src=FILE or id=ID,env=VAR"),
        }
    }
    let id = id.ok_or_else(|| anyhow::anyhow!("invalid secret {spec:?}: it needs an id"))?;
    if let Some(src) = src {
        if !src.is_file() {
            bail!("failed to stat {}: no such file or directory", src.display());
        }
        return Ok((id, src));
    }
    let var = env.unwrap_or_else(|| id.clone());
    let value = std::env::var(&var)
        .map_err(|_| anyhow::anyhow!("secret {id}: the environment variable {var} is not set"))?;
    let path = dir.join(format!("secret-{}", id.replace('/', "_")));
    std::fs::write(&path, value)?;
    Ok((id, path))
}

/// `type=oci,dest=FILE` or `type=docker,dest=FILE` (a bare path: docker).
fn parse_output(spec: &str) -> anyhow::Result<Place> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_owned()),
            Some(("dest", v)) => dest = Some(v.to_owned()),
            Some((k, _)) => bail!("unsupported --output key {k:?}: berth takes type and dest"),
            None if dest.is_none() && kind.is_none() => dest = Some(part.to_owned()),
            None => bail!("invalid --output {spec:?}"),
        }
    }
    let dest = dest.ok_or_else(|| anyhow::anyhow!("--output needs dest=FILE"))?;
    let place = match kind.as_deref().unwrap_or("docker") {
        "oci" => format!("oci-archive:{dest}"),
        "docker" | "tar" => format!("docker-archive:{dest}"),
        other => bail!("unsupported --output type {other:?}: use oci or docker"),
    };
    Ok(Place::parse(&place)?)
}
