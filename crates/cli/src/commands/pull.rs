//! `berth pull`: fetch an image from a registry into the local store.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use berth_client::credentials::DockerCredentials;
use berth_client::hosts::ClientConfig;
use berth_client::{Client, ClientOptions, LayerEvent, Progress, PullOptions};
use berth_oci::{Image, Platform};
use berth_reference::Reference;
use berth_store::{NewImage, Store};

use crate::context::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// NAME[:TAG|@DIGEST]
    name: String,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let platform = match &args.platform {
        Some(p) => Some(
            Platform::parse(p)
                .with_context(|| format!("invalid platform {p:?}: want os/arch[/variant]"))?,
        ),
        None => None,
    };
    let reference = Reference::parse(&args.name)?;
    let store = Arc::new(ctx.store()?);
    let client = client()?;
    // The store proves every layer's diff ID before an image is first read
    // (see berth_store's verify module), so the pull only checks digests.
    let opts = PullOptions {
        platform,
        concurrency: client.config().max_concurrent_downloads,
        defer_diff_ids: true,
    };
    runtime()?.block_on(async {
        let refs = if args.all_tags {
            if reference.tag().is_some() || reference.digest().is_some() {
                bail!("tag can't be used with --all-tags/-a");
            }
            let mut tags = client.list_tags(reference.repository()).await?;
            tags.sort();
            tags.into_iter()
                .map(|t| Reference::tagged(reference.repository().clone(), &t))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![reference.clone().with_default_tag()]
        };
        for r in &refs {
            pull_one(&client, &store, r, &opts, args.quiet).await?;
        }
        if args.all_tags && !args.quiet {
            println!("{}", reference.repository().full_name());
        }
        Ok(())
    })
}

async fn pull_one(
    client: &Client,
    store: &Arc<Store>,
    r: &Reference,
    opts: &PullOptions,
    quiet: bool,
) -> anyhow::Result<()> {
    let label = r
        .tag()
        .map(str::to_owned)
        .or_else(|| r.digest().map(|d| d.to_string()))
        .unwrap_or_default();
    if !quiet {
        println!("{label}: Pulling from {}", r.path());
    }
    let progress = Printer::new(quiet, "Pulling fs layer");
    let previous = store.resolve(&r.full()).ok();
    let pulled = client.pull(r, store.clone(), opts, progress.clone()).await;
    progress.finish();
    let pulled = pulled?;
    let tags = r.tag().map(|_| r.clone()).into_iter().collect();
    let image = NewImage {
        image: Image { tags, ..pulled.image },
        repo_digests: vec![pulled.repo_digest.clone()],
    };
    let committed = store.commit_images(vec![image])?;
    let id = &committed[0].id;
    if !quiet {
        println!("Digest: {}", pulled.manifest_digest);
        if previous.as_ref() == Some(id) && !pulled.downloaded_any {
            println!("Status: Image is up to date for {}", r.familiar());
        } else {
            println!("Status: Downloaded newer image for {}", r.familiar());
        }
    }
    println!("{}", r.full());
    Ok(())
}

/// The registry client as the CLI configures it: berth's config file and
/// the user's docker/podman logins.
pub(crate) fn client() -> anyhow::Result<Client> {
    let config = ClientConfig::load()?;
    Ok(Client::new(ClientOptions {
        config,
        credentials: Arc::new(DockerCredentials::from_env()),
        ..Default::default()
    })?)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Progress as docker shows it: a bar per layer on a terminal, one line per
/// layer event when piped, nothing with `-q`.
pub(crate) struct Printer {
    quiet: bool,
    /// docker's word for a queued layer: `Pulling fs layer` / `Preparing`.
    waiting: &'static str,
    bars: Option<(indicatif::MultiProgress, Mutex<HashMap<String, indicatif::ProgressBar>>)>,
}

impl Printer {
    pub fn new(quiet: bool, waiting: &'static str) -> Arc<Printer> {
        let bars = (!quiet && std::io::stdout().is_terminal())
            .then(|| (indicatif::MultiProgress::new(), Mutex::new(HashMap::new())));
        Arc::new(Printer { quiet, waiting, bars })
    }

    pub fn finish(&self) {
        if let Some((multi, _)) = &self.bars {
            multi.clear().ok();
        }
    }
}

impl Progress for Printer {
    fn layer(&self, id: &str, event: LayerEvent<'_>) {
        if self.quiet || id == "config" {
            return;
        }
        let Some((multi, bars)) = &self.bars else {
            match event {
                LayerEvent::Waiting { .. } => println!("{id}: {}", self.waiting),
                LayerEvent::Done(status) => println!("{id}: {status}"),
                LayerEvent::Retrying { attempt, reason } => {
                    println!("{id}: Retrying ({attempt}): {reason}")
                }
                LayerEvent::Advance { .. } => {}
            }
            return;
        };
        let mut bars = bars.lock().expect("lock");
        let bar = bars.entry(id.to_owned()).or_insert_with(|| {
            let b = multi.add(indicatif::ProgressBar::new(0));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix}: {msg:<16} [{bar:40}] {bytes}/{total_bytes}",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            b.set_prefix(id.to_owned());
            b
        });
        match event {
            LayerEvent::Waiting { total } => {
                bar.set_length(total);
                bar.set_message(self.waiting);
            }
            LayerEvent::Advance { done, total } => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message("Downloading");
            }
            LayerEvent::Retrying { attempt, .. } => {
                bar.set_message(format!("Retrying ({attempt})"))
            }
            LayerEvent::Done(status) => {
                bar.finish_and_clear();
                multi.println(format!("{id}: {status}")).ok();
            }
        }
    }
}
