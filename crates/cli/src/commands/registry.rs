//! `berth registry ...`: run and administer the registry server.
//!
//! The registry keeps its data under `<root>/registry` (the global `--root`,
//! i.e. beside the local store), unless `BERTH_REGISTRY_ROOT` or `root` in
//! the configuration file says otherwise. Precedence: flags, then
//! environment, then the configuration file, then defaults.

use std::path::PathBuf;

use anyhow::Context as _;
use berth_registry::config::Config;
use berth_registry::server;

use crate::context::Context;

pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run the registry server (OCI Distribution API) in the foreground
    Serve(ServeArgs),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long, env = "BERTH_REGISTRY_ADDR", value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Configuration file (TOML)
    #[arg(long, env = "BERTH_REGISTRY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Require accounts to push and to pull private repositories
    #[arg(long, env = "BERTH_REGISTRY_AUTH")]
    auth: bool,
    /// Log level: error, warn, info, debug or trace
    #[arg(long, env = "BERTH_LOG", default_value = "info", value_name = "LEVEL")]
    log_level: String,
}

pub fn run(ctx: &Context, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Serve(args) => serve(ctx, args),
    }
}

/// The registry root: `BERTH_REGISTRY_ROOT`, else the config file's, else `<root>/registry`.
fn registry_root(ctx: &Context, config: &Config) -> PathBuf {
    std::env::var_os("BERTH_REGISTRY_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| config.root.clone())
        .unwrap_or_else(|| ctx.root().join("registry"))
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let level: tracing::Level =
        level.parse().map_err(|_| anyhow::anyhow!("invalid log level {level:?}"))?;
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    Ok(())
}

fn serve(ctx: &Context, args: ServeArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let addr = args.addr.or_else(|| config.addr.clone()).unwrap_or_else(|| DEFAULT_ADDR.into());
    let auth = args.auth || config.auth.unwrap_or(false);
    if auth {
        anyhow::bail!("--auth is not available yet: accounts and tokens are still to come");
    }
    let root = registry_root(ctx, &config);
    init_logging(&args.log_level)?;
    let registry = berth_registry::open_local(&root, config.limits())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = server::bind(&addr).await?;
        tracing::info!(addr = %addr, root = %root.display(), "registry listening");
        server::serve(listener, registry, server::shutdown_signal()).await?;
        Ok::<(), anyhow::Error>(())
    })
}
