//! `berth registry ...`: run and administer the registry server.
//!
//! The registry keeps its data under `<root>/registry` (the global `--root`,
//! i.e. beside the local store), unless `BERTH_REGISTRY_ROOT` or `root` in
//! the configuration file says otherwise. Precedence: flags, then
//! environment, then the configuration file, then defaults. `serve` reads
//! the file given with `--config`; `gc`, `user`, `org` and `repo` read the
//! one `BERTH_REGISTRY_CONFIG` names, so that with `[storage]` in S3 and
//! `[metadata]` in PostgreSQL they act on the same registry as the servers.

use std::path::PathBuf;

use anyhow::Context as _;
use berth_registry::RepoName;
use berth_registry::auth::{Auth, password};
use berth_registry::config::Config;
use berth_registry::gc::GcOptions;
use berth_registry::metadata::{MetadataStore, UserRecord};
use berth_registry::registry::{DESCRIPTION_MAX, FULL_DESCRIPTION_MAX};
use berth_registry::server;

use crate::context::Context;

pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";

/// The token service name clients echo back (`service=` in challenges).
pub const SERVICE: &str = "berth-registry";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run the registry server (OCI Distribution API) in the foreground
    Serve(ServeArgs),
    /// Manage accounts
    #[command(subcommand)]
    User(UserCommand),
    /// Manage organisations (namespaces with members)
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage repositories
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Manage personal access tokens (passwords for `docker login` that can be
    /// limited and revoked one by one)
    #[command(subcommand)]
    Token(TokenCommand),
    /// Delete blobs nothing uses (safe while the server runs)
    Gc(GcArgs),
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token for USER and print it (it is shown only this once)
    Create {
        user: String,
        /// What it may do: read (pull), write (pull, push) or delete (all three)
        #[arg(long, default_value = "read", value_parser = ["read", "write", "delete"])]
        scope: String,
        /// What the token is for
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List USER's tokens
    #[command(visible_alias = "ls")]
    List { user: String },
    /// Revoke one of USER's tokens
    #[command(visible_alias = "revoke", visible_alias = "remove")]
    Rm { user: String, id: String },
}

#[derive(clap::Args)]
pub struct GcArgs {
    /// Show what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Keep blobs younger than this many minutes (pushes in progress need them)
    #[arg(long, default_value_t = 30, value_name = "MINUTES")]
    grace_minutes: u64,
    /// Remove uploads idle for this many hours
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    upload_expiry_hours: u64,
    /// Also delete manifests that no tag reaches (children of tagged indexes stay)
    #[arg(long)]
    delete_untagged: bool,
    /// Also list the whole bucket for objects berth has no record of (left by a crash); slow on large buckets, run it rarely
    #[arg(long)]
    sweep_orphans: bool,
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create an account
    Add {
        name: String,
        /// May push official images (`library/...`) and manage everything
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account
    #[command(visible_alias = "remove")]
    Rm { name: String },
    /// List accounts
    #[command(visible_alias = "ls")]
    List,
    /// Change a password
    Passwd {
        name: String,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create accounts from an htpasswd file (bcrypt entries, `htpasswd -B`)
    ImportHtpasswd { file: PathBuf },
}

#[derive(clap::Subcommand)]
pub enum OrgCommand {
    /// Create an organisation
    Add {
        name: String,
        /// Mark it a verified publisher
        #[arg(long)]
        verified: bool,
    },
    /// Show an organisation and its members
    Show { name: String },
    /// Set or clear the verified-publisher flag
    Verify {
        name: String,
        #[arg(long)]
        unset: bool,
    },
    /// Manage members
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(clap::Subcommand)]
pub enum MemberCommand {
    /// Add USER to ORG
    Add { org: String, user: String },
    /// Remove USER from ORG
    #[command(visible_alias = "remove")]
    Rm { org: String, user: String },
}

#[derive(clap::Subcommand)]
pub enum RepoCommand {
    /// Make a repository private: only its namespace's members may pull it
    Private { name: String },
    /// Make a repository public (anyone may pull)
    Public { name: String },
    /// Set the repository's description, as its owner does on Docker Hub; search
    /// shows it instead of the image label's (empty: show the label's again)
    Describe {
        name: String,
        description: String,
        /// Also set the long description (Docker Hub's overview)
        #[arg(long, value_name = "TEXT")]
        full_description: Option<String>,
    },
    /// Delete a whole repository: tags, manifests and blob links
    #[command(visible_alias = "remove")]
    Rm { name: String },
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
    /// Let anyone create an account on the website (/signup); needs --auth
    #[arg(long, env = "BERTH_REGISTRY_SIGNUP")]
    signup: bool,
    /// Serve HTTPS with this PEM certificate (chain)
    #[arg(long, env = "BERTH_REGISTRY_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, env = "BERTH_REGISTRY_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log level: error, warn, info, debug or trace
    #[arg(long, env = "BERTH_LOG", default_value = "info", value_name = "LEVEL")]
    log_level: String,
}

pub fn run(ctx: &Context, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Serve(args) => serve(ctx, args),
        Command::User(c) => admin(ctx, |meta| Box::pin(user(meta, c))),
        Command::Org(c) => admin(ctx, |meta| Box::pin(org(meta, c))),
        Command::Repo(c) => admin(ctx, |meta| Box::pin(repo(meta, c))),
        Command::Token(c) => admin(ctx, |meta| Box::pin(token(meta, c))),
        Command::Gc(args) => gc(ctx, args),
    }
}

/// The configuration file `BERTH_REGISTRY_CONFIG` names, if any.
fn env_config() -> anyhow::Result<Config> {
    match std::env::var_os("BERTH_REGISTRY_CONFIG").filter(|v| !v.is_empty()) {
        Some(path) => Ok(Config::load(std::path::Path::new(&path))?),
        None => Ok(Config::default()),
    }
}

fn gc(ctx: &Context, args: GcArgs) -> anyhow::Result<()> {
    let config = env_config()?;
    let root = registry_root(ctx, &config);
    let opts = GcOptions {
        dry_run: args.dry_run,
        grace: std::time::Duration::from_secs(args.grace_minutes * 60),
        upload_expiry: std::time::Duration::from_secs(args.upload_expiry_hours * 3600),
        delete_untagged: args.delete_untagged,
        sweep_orphans: args.sweep_orphans,
        ..GcOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let registry = berth_registry::open(&config, &root, Default::default()).await?;
        anyhow::Ok(registry.collect_garbage(&opts).await?)
    })?;
    let verb = if args.dry_run { "Would delete" } else { "Deleted" };
    for (repo, digest) in &report.manifests_deleted {
        println!("{verb} manifest {repo}@{digest}");
    }
    for (digest, size) in &report.blobs_deleted {
        println!("{verb} blob {digest} ({size} bytes)");
    }
    println!(
        "{} {} blob(s), {} manifest(s), {} upload(s), {} interrupted write(s); {} unreferenced blob(s) kept (younger than {} minutes)",
        verb,
        report.blobs_deleted.len(),
        report.manifests_deleted.len(),
        report.uploads_expired,
        report.scratch_removed,
        report.blobs_kept_young,
        args.grace_minutes
    );
    let what = if args.dry_run { "Reclaimable space" } else { "Total reclaimed space" };
    println!("{what}: {} bytes", report.bytes_reclaimed);
    if args.sweep_orphans {
        println!(
            "{verb} {} orphaned object(s) ({} bytes)",
            report.orphans_removed, report.orphan_bytes
        );
    }
    Ok(())
}

type Meta = std::sync::Arc<dyn MetadataStore>;
type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>;

/// Runs an administrative command against the registry's metadata (safe
/// while the server runs: SQLite in WAL mode serialises writers).
fn admin(ctx: &Context, f: impl FnOnce(Meta) -> BoxFuture) -> anyhow::Result<()> {
    let config = env_config()?;
    let root = registry_root(ctx, &config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let meta: Meta = match &config.metadata.url {
            Some(url) => {
                std::sync::Arc::new(berth_registry::metadata::PostgresMetadata::connect(url).await?)
            }
            None => {
                std::fs::create_dir_all(&root)
                    .with_context(|| format!("cannot create registry root {}", root.display()))?;
                std::sync::Arc::new(berth_registry::metadata::SqliteMetadata::open(
                    &root.join("metadata.db"),
                )?)
            }
        };
        f(meta).await
    })
}

/// An account or organisation name: one lowercase path component.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.contains('/') && RepoName::parse(name).is_ok() && name != "library";
    anyhow::ensure!(
        ok,
        "invalid name {name:?}: use lowercase letters, digits and . _ - (not \"library\")"
    );
    Ok(())
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    anyhow::ensure!(from_stdin, "give the password on standard input with --password-stdin");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!password.is_empty(), "the password must not be empty");
    Ok(password)
}

async fn user(meta: Meta, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add { name, admin, password_stdin } => {
            check_name(&name)?;
            let password = read_password(password_stdin)?;
            let record =
                UserRecord { name: name.clone(), password_hash: password::hash(&password), admin };
            anyhow::ensure!(meta.create_user(&record).await?, "the name {name:?} is already taken");
            println!("Created user {name}{}", if admin { " (administrator)" } else { "" });
        }
        UserCommand::Rm { name } => {
            anyhow::ensure!(meta.delete_user(&name).await?, "no such user: {name}");
            println!("Removed user {name}");
        }
        UserCommand::List => {
            println!("{:<32} ADMIN", "NAME");
            for u in meta.list_users().await? {
                println!("{:<32} {}", u.name, if u.admin { "yes" } else { "no" });
            }
        }
        UserCommand::Passwd { name, password_stdin } => {
            let password = read_password(password_stdin)?;
            anyhow::ensure!(
                meta.set_password(&name, &password::hash(&password)).await?,
                "no such user: {name}"
            );
            // Signed-in browsers must sign in again with the new password.
            meta.delete_user_sessions(&name).await?;
            println!("Password changed for {name}");
        }
        UserCommand::ImportHtpasswd { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let entries = password::parse_htpasswd(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for (name, _) in &entries {
                check_name(name)?;
            }
            for (name, hash) in entries {
                let record =
                    UserRecord { name: name.clone(), password_hash: hash.clone(), admin: false };
                if meta.create_user(&record).await? {
                    println!("Created user {name}");
                } else if meta.set_password(&name, &hash).await? {
                    println!("Updated password of {name}");
                } else {
                    anyhow::bail!("the name {name:?} belongs to an organisation");
                }
            }
        }
    }
    Ok(())
}

async fn org(meta: Meta, cmd: OrgCommand) -> anyhow::Result<()> {
    match cmd {
        OrgCommand::Add { name, verified } => {
            check_name(&name)?;
            anyhow::ensure!(meta.create_org(&name).await?, "the name {name:?} is already taken");
            if verified {
                meta.set_org_verified(&name, true).await?;
            }
            println!("Created organisation {name}");
        }
        OrgCommand::Show { name } => {
            let org =
                meta.org(&name).await?.with_context(|| format!("no such organisation: {name}"))?;
            println!("{}{}", org.name, if org.verified { " (verified publisher)" } else { "" });
            for m in org.members {
                println!("  {m}");
            }
        }
        OrgCommand::Verify { name, unset } => {
            anyhow::ensure!(
                meta.set_org_verified(&name, !unset).await?,
                "no such organisation: {name}"
            );
        }
        OrgCommand::Member(MemberCommand::Add { org, user }) => {
            anyhow::ensure!(
                meta.add_org_member(&org, &user).await?,
                "no such organisation or user: {org}, {user}"
            );
            println!("Added {user} to {org}");
        }
        OrgCommand::Member(MemberCommand::Rm { org, user }) => {
            anyhow::ensure!(
                meta.remove_org_member(&org, &user).await?,
                "{user} is not a member of {org}"
            );
            println!("Removed {user} from {org}");
        }
    }
    Ok(())
}

async fn token(meta: Meta, cmd: TokenCommand) -> anyhow::Result<()> {
    use berth_registry::auth::pat::TokenScope;
    match cmd {
        TokenCommand::Create { user, scope, description } => {
            let scope =
                TokenScope::parse(&scope).context("the scope must be read, write or delete")?;
            anyhow::ensure!(
                description.chars().count() <= 100,
                "the description must not be longer than 100 characters"
            );
            anyhow::ensure!(meta.user(&user).await?.is_some(), "no such user: {user}");
            let (record, text) = berth_registry::auth::create_access_token(
                meta.as_ref(),
                &user,
                &description,
                scope,
            )
            .await?;
            eprintln!(
                "Created access token {} ({}) for {user}; copy it now, it is not shown again:",
                record.id,
                scope.as_str()
            );
            println!("{text}");
        }
        TokenCommand::List { user } => {
            anyhow::ensure!(meta.user(&user).await?.is_some(), "no such user: {user}");
            println!(
                "{:<18} {:<7} {:<21} {:<21} DESCRIPTION",
                "ID", "SCOPE", "CREATED", "LAST USED"
            );
            let when = |t: i64| berth_oci::time::rfc3339(t);
            for t in meta.list_access_tokens(&user).await? {
                let used = t.last_used.map_or_else(|| "never".to_owned(), when);
                println!(
                    "{:<18} {:<7} {:<21} {:<21} {}",
                    t.id,
                    t.scope,
                    when(t.created),
                    used,
                    t.description
                );
            }
        }
        TokenCommand::Rm { user, id } => {
            anyhow::ensure!(
                meta.delete_access_token(&user, &id).await?,
                "no such token for {user}: {id}"
            );
            println!("Revoked access token {id} of {user}");
        }
    }
    Ok(())
}

/// The repository an administrator means: a bare NAME is `library/NAME`
/// (what it is with --auth) unless a repository of that literal name exists
/// (a root served without --auth).
async fn repo_name(meta: &Meta, name: &str) -> anyhow::Result<String> {
    let parsed =
        RepoName::parse(name).map_err(|e| anyhow::anyhow!("invalid repository name: {e}"))?;
    if name.contains('/') || meta.repository_exists(name).await? {
        return Ok(parsed.as_str().to_owned());
    }
    Ok(berth_registry::auth::official_name(parsed)
        .map_err(|e| anyhow::anyhow!("invalid repository name: {e}"))?
        .as_str()
        .to_owned())
}

async fn repo(meta: Meta, cmd: RepoCommand) -> anyhow::Result<()> {
    let cmd = match cmd {
        RepoCommand::Private { name } => {
            RepoCommand::Private { name: repo_name(&meta, &name).await? }
        }
        RepoCommand::Public { name } => {
            RepoCommand::Public { name: repo_name(&meta, &name).await? }
        }
        RepoCommand::Describe { name, description, full_description } => RepoCommand::Describe {
            name: repo_name(&meta, &name).await?,
            description,
            full_description,
        },
        RepoCommand::Rm { name } => RepoCommand::Rm { name: repo_name(&meta, &name).await? },
    };
    let (name, private) = match cmd {
        RepoCommand::Private { name } => (name, true),
        RepoCommand::Public { name } => (name, false),
        RepoCommand::Describe { name, description, full_description } => {
            RepoName::parse(&name).map_err(|e| anyhow::anyhow!("invalid repository name: {e}"))?;
            // The same limits as the HTTP API (PATCH /v2/repositories/NAME/).
            anyhow::ensure!(
                description.chars().count() <= DESCRIPTION_MAX,
                "the description must not be longer than {DESCRIPTION_MAX} characters"
            );
            anyhow::ensure!(
                full_description.as_ref().is_none_or(|f| f.chars().count() <= FULL_DESCRIPTION_MAX),
                "the full description must not be longer than {FULL_DESCRIPTION_MAX} characters"
            );
            meta.set_repository_owner_description(
                &name,
                Some(&description),
                full_description.as_deref(),
            )
            .await?;
            println!("Description of {name} set");
            return Ok(());
        }
        RepoCommand::Rm { name } => {
            RepoName::parse(&name).map_err(|e| anyhow::anyhow!("invalid repository name: {e}"))?;
            anyhow::ensure!(meta.delete_repository(&name).await?, "no such repository: {name}");
            println!("Deleted repository {name}");
            return Ok(());
        }
    };
    RepoName::parse(&name).map_err(|e| anyhow::anyhow!("invalid repository name: {e}"))?;
    meta.set_repository_private(&name, private).await?;
    println!("{name} is now {}", if private { "private" } else { "public" });
    Ok(())
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
    let signup = args.signup || config.signup.unwrap_or(false);
    anyhow::ensure!(!signup || auth, "sign-up needs accounts: add --auth");
    let root = registry_root(ctx, &config);
    init_logging(&args.log_level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let registry = runtime.block_on(berth_registry::open(&config, &root, config.limits()))?;
    let auth = if auth {
        let service = config.service.clone().unwrap_or_else(|| SERVICE.into());
        let meta = registry.metadata().clone();
        // Replicas sharing a database share its key; one server keeps it in its root.
        let auth = if config.metadata.url.is_some() {
            runtime
                .block_on(Auth::open_shared(meta, &service))
                .context("cannot set up the token key in the database")?
        } else {
            Auth::open(&root, meta, &service)
                .with_context(|| format!("cannot set up the token key under {}", root.display()))?
        };
        Some(auth)
    } else {
        None
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls_config(cert, key)?),
        _ => None,
    };
    let storage = if config.storage.s3().ok().flatten().is_some() { "s3" } else { "fs" };
    let metadata = if config.metadata.url.is_some() { "postgres" } else { "sqlite" };
    runtime.block_on(async move {
        if auth.is_some() {
            // With accounts, NAME means library/NAME: bring roots made
            // without --auth in line before serving, or refuse to serve.
            let hub = berth_registry::Hub::new(registry.metadata().clone());
            for name in hub.merge_official_names().await? {
                tracing::info!(from = %name, to = %format!("library/{name}"), "merged into the official name");
            }
        }
        let listener = server::bind(&addr).await?;
        tracing::info!(addr = %addr, root = %root.display(), storage, metadata, auth = auth.is_some(), tls = tls.is_some(), "registry listening");
        let web = berth_registry::web::WebConfig { signup, ..Default::default() };
        let options = server::Options { auth, gc: config.gc(), tls: tls.is_some(), web };
        let app = server::build(registry, options);
        match tls {
            Some(tls) => server::serve_tls(listener, app, tls, server::shutdown_signal()).await?,
            None => server::serve(listener, app, server::shutdown_signal()).await?,
        }
        Ok::<(), anyhow::Error>(())
    })
}
