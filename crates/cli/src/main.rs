//! `berth`: argument parsing and dispatch. Each command lives in its own
//! module under `commands/` with its clap `Args` and a `run` function; the
//! libraries below do the work, this crate only talks to the user.

mod commands;
mod context;
mod format;
mod remote;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::*;
use crate::context::Context;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Container images without a daemon, and a registry to serve them"
)]
struct Cli {
    /// Local store directory (default: /var/lib/berth for root, else $XDG_DATA_HOME/berth).
    #[arg(long, global = true, env = "BERTH_ROOT", value_name = "DIR")]
    root: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage berth's store
    #[command(subcommand)]
    System(SystemCommand),
    /// List images
    Images(images::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::Args),
    /// Remove one or more images
    Rmi(rmi::Args),
    /// Show the history of an image
    History(history::Args),
    /// Return low-level information on images
    Inspect(inspect::Args),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(save::Args),
    /// Load an image from a tar archive or STDIN
    Load(load::Args),
    /// Import the contents from a tarball to create a filesystem image
    Import(import::Args),
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
    /// Log in to a registry
    Login(login::Args),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Search Docker Hub (or REGISTRY/) for images
    Search(search::Args),
    /// Run and administer an image registry
    #[command(subcommand)]
    Registry(registry::Command),
    /// Build an image from a Dockerfile
    Build(Box<build::Args>),
    /// Create and run a new container from an image
    Run(container::RunArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container::DiffArgs),
    /// Create a new image from a container's changes
    Commit(container::CommitArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::WaitArgs),
    /// Execute a command in a running container
    Exec(container::ExecArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Create a new container
    Create(container::RunArgs),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Restart one or more containers
    Restart(container::RestartArgs),
    /// Display the running processes of a container
    Top(container::TopArgs),
    /// Export a container's filesystem as a tar archive
    Export(container::ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(container::CpArgs),
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Create and run a new container from an image
    Run(container::RunArgs),
    /// List containers
    #[command(visible_alias = "list", visible_alias = "ps")]
    Ls(container::PsArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Remove all stopped containers
    Prune(container::PruneArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container::DiffArgs),
    /// Create a new image from a container's changes
    Commit(container::CommitArgs),
    /// Display detailed information on one or more containers
    Inspect(inspect::Args),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::WaitArgs),
    /// Execute a command in a running container
    Exec(container::ExecArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Create a new container
    Create(container::RunArgs),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Restart one or more containers
    Restart(container::RestartArgs),
    /// Display the running processes of a container
    Top(container::TopArgs),
    /// Export a container's filesystem as a tar archive
    Export(container::ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(container::CpArgs),
    /// Runs a detached container (started by `run -d`)
    #[command(hide = true)]
    Monitor(container::MonitorArgs),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(images::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::Args),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(rmi::Args),
    /// Remove unused images
    Prune(prune::Args),
    /// Show the history of an image
    History(history::Args),
    /// Display detailed information on one or more images
    Inspect(inspect::Args),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(save::Args),
    /// Load an image from a tar archive or STDIN
    Load(load::Args),
    /// Import the contents from a tarball to create a filesystem image
    Import(import::Args),
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
    /// Build an image from a Dockerfile
    Build(Box<build::Args>),
    /// Copy an image between registries, the store and archives
    Copy(copy::Args),
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Show disk usage
    Df(system::DfArgs),
    /// Verify every blob and reference in the store
    Check(system::CheckArgs),
    /// Prove the diff IDs of pulled layers (what a pull starts in the background)
    #[command(hide = true)]
    ProveLayers,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Context::new(cli.root);
    let result = match cli.command {
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::run(&ctx, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => tag::run(&ctx, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi::run(&ctx, a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => history::run(&ctx, a),
        Command::Inspect(a) => inspect::run_any(&ctx, a),
        Command::Image(ImageCommand::Inspect(a)) => inspect::run(&ctx, a),
        Command::Image(ImageCommand::Prune(a)) => prune::run(&ctx, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => save::run(&ctx, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => load::run(&ctx, a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => import::run(&ctx, a),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull::run(&ctx, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => push::run(&ctx, a),
        Command::Image(ImageCommand::Copy(a)) => copy::run(&ctx, a),
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => build::run(&ctx, *a),
        Command::Login(a) => login::run(&ctx, a),
        Command::Logout(a) => login::logout(&ctx, a),
        Command::Search(a) => search::run(&ctx, a),
        Command::Registry(c) => registry::run(&ctx, c),
        Command::System(SystemCommand::Df(a)) => system::df(&ctx, a),
        Command::System(SystemCommand::Check(a)) => system::check(&ctx, a),
        Command::System(SystemCommand::ProveLayers) => system::prove_layers(&ctx),
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => container::run(&ctx, a),
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => container::ps(&ctx, a),
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => container::rm(&ctx, a),
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => {
            container::diff(&ctx, a)
        }
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            container::commit(&ctx, a)
        }
        Command::Container(ContainerCommand::Prune(a)) => container::prune(&ctx, a),
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            container::logs(&ctx, a)
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            container::stop(&ctx, a)
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            container::kill(&ctx, a)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            container::wait(&ctx, a)
        }
        Command::Container(ContainerCommand::Monitor(a)) => container::monitor(&ctx, a),
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            container::exec(&ctx, a)
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            container::rename(&ctx, a)
        }
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            container::create(&ctx, a)
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            container::start(&ctx, a)
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            container::restart(&ctx, a)
        }
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => container::top(&ctx, a),
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => {
            container::export(&ctx, a)
        }
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => container::cp(&ctx, a),
        Command::Container(ContainerCommand::Inspect(a)) => inspect::run_any(&ctx, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`berth logs c | head`): done, quietly.
        Err(err)
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        // The message (if any) is out already; the code is the container's.
        Err(err) if err.downcast_ref::<container::Exit>().is_some() => {
            ExitCode::from(err.downcast_ref::<container::Exit>().map_or(1, |e| e.0))
        }
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
