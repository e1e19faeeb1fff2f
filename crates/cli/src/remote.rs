//! What the commands that talk to registries share: the client as berth's
//! config and the user's logins configure it, the async runtime, and
//! docker's progress display.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use berth_client::credentials::DockerCredentials;
use berth_client::hosts::ClientConfig;
use berth_client::{Client, ClientOptions, LayerEvent, Progress};
use berth_transfer::{Phase, Reporter, Transfer};

use crate::context::Context;

/// The registry client as the CLI configures it: berth's config file and
/// the user's docker/podman logins.
pub fn client() -> anyhow::Result<Client> {
    let config = ClientConfig::load()?;
    Ok(Client::new(ClientOptions {
        config,
        credentials: Arc::new(DockerCredentials::from_env()),
        ..Default::default()
    })?)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Progress as docker shows it: a bar per layer on a terminal, one line per
/// layer event when piped, nothing with `-q`.
pub struct Printer {
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

/// A copy's progress as docker shows it: `Pulling fs layer` while reading
/// from a registry, `Preparing` while pushing.
pub struct Bars {
    quiet: bool,
    current: Mutex<Option<Arc<Printer>>>,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        Bars { quiet, current: Mutex::new(None) }
    }
}

impl Reporter for Bars {
    fn begin(&self, phase: Phase) -> Arc<dyn Progress> {
        let waiting = match phase {
            Phase::Pull => "Pulling fs layer",
            Phase::Push => "Preparing",
        };
        let printer = Printer::new(self.quiet, waiting);
        *self.current.lock().expect("lock") = Some(printer.clone());
        printer
    }

    fn end(&self, _phase: Phase) {
        if let Some(printer) = self.current.lock().expect("lock").take() {
            printer.finish();
        }
    }
}

/// The copy engine over the registry client and the store at `ctx`'s root.
pub fn transfer(ctx: &Context) -> anyhow::Result<Transfer> {
    Ok(Transfer::new(client()?, Arc::new(ctx.store()?)))
}

/// Pulls `image` into the local store (a run or build of an image not yet
/// here), returning its image ID.
pub fn pull_into_store(ctx: &Context, image: &str) -> anyhow::Result<berth_reference::Digest> {
    let reference = berth_reference::Reference::parse(image)?.with_default_tag();
    let transfer = transfer(ctx)?;
    let opts = berth_transfer::CopyOptions {
        pull: berth_client::PullOptions { defer_diff_ids: true, ..Default::default() },
        ..Default::default()
    };
    let src = berth_transfer::Place::Registry(reference.clone());
    let bars = Bars::new(false);
    runtime()?.block_on(transfer.copy(&src, &berth_transfer::Place::Store(None), &opts, &bars))?;
    Ok(ctx.store()?.resolve(&reference.to_string())?)
}
