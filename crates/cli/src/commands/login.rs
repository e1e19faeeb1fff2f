//! `berth login` and `berth logout`: logins kept where docker keeps them.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{Context as _, bail};
use berth_client::credentials::{Anonymous, Credential, DockerCredentials};
use berth_client::hosts::{ClientConfig, credentials_key, server_to_domain};
use berth_client::{Client, ClientOptions};

use crate::context::Context;
use crate::remote::runtime;

#[derive(clap::Args)]
pub struct Args {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Registry (default: Docker Hub)
    server: Option<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// Registry (default: Docker Hub)
    server: Option<String>,
}

pub fn run(_ctx: &Context, args: Args) -> anyhow::Result<()> {
    let domain = server_to_domain(args.server.as_deref().unwrap_or(""));
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        if args.password_stdin {
            bail!("--password and --password-stdin are mutually exclusive");
        }
    }
    let password = if args.password_stdin {
        if args.username.is_none() {
            bail!("Must provide --username with --password-stdin");
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        args.password.clone().unwrap_or_default()
    };
    let interactive = std::io::stdin().is_terminal();
    let username = match args.username.clone() {
        Some(u) => u,
        None if interactive => prompt("Username: ", true)?,
        None => bail!("Cannot perform an interactive login from a non TTY device"),
    };
    let password = if password.is_empty() && !args.password_stdin && args.password.is_none() {
        if !interactive {
            bail!("Cannot perform an interactive login from a non TTY device");
        }
        prompt("Password: ", false)?
    } else {
        password
    };
    if username.is_empty() || password.is_empty() {
        bail!("Error: Username and password required");
    }
    let cred = Credential::Basic { username: username.clone(), password };
    let client = Client::new(ClientOptions {
        config: ClientConfig::load()?,
        credentials: std::sync::Arc::new(Anonymous),
        ..Default::default()
    })?;
    let identity = runtime()?.block_on(client.login(&domain, &cred))?;
    let saved = match identity {
        Some(token) => Credential::IdentityToken { username, token },
        None => cred,
    };
    let creds = DockerCredentials::from_env();
    creds.store(&domain, &saved)?;
    if creds.helper_for(&domain)?.is_none() {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.\n\
             Configure a credential helper to remove this warning. See\n\
             https://docs.docker.com/engine/reference/commandline/login/#credentials-store\n",
            creds.config_file().display()
        );
    }
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(_ctx: &Context, args: LogoutArgs) -> anyhow::Result<()> {
    let domain = server_to_domain(args.server.as_deref().unwrap_or(""));
    let key = credentials_key(&domain);
    if DockerCredentials::from_env().erase(&domain)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(())
}

/// Reads one line from the terminal, without echo for secrets.
fn prompt(text: &str, echo: bool) -> anyhow::Result<String> {
    print!("{text}");
    std::io::stdout().flush()?;
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .ok();
    };
    if !echo {
        stty("-echo");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line).context("reading from the terminal");
    if !echo {
        stty("echo");
        println!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
