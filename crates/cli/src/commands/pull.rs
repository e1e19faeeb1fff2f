//! `berth pull`: fetch an image from a registry into the local store.

use anyhow::{Context as _, bail};
use berth_client::PullOptions;
use berth_oci::Platform;
use berth_reference::Reference;
use berth_transfer::{CopyOptions, Place, Transfer};

use crate::context::Context;
use crate::remote::{Bars, runtime, transfer};

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
    let transfer = transfer(ctx)?;
    // The store proves every layer's diff ID before an image is first read
    // (see berth_store's verify module), so the pull only checks digests.
    let opts = CopyOptions {
        platform,
        pull: PullOptions {
            concurrency: transfer.client().config().max_concurrent_downloads,
            defer_diff_ids: true,
            ..Default::default()
        },
        ..Default::default()
    };
    runtime()?.block_on(async {
        let refs = if args.all_tags {
            if reference.tag().is_some() || reference.digest().is_some() {
                bail!("tag can't be used with --all-tags/-a");
            }
            let mut tags = transfer.client().list_tags(reference.repository()).await?;
            tags.sort();
            tags.into_iter()
                .map(|t| Reference::tagged(reference.repository().clone(), &t))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![reference.clone().with_default_tag()]
        };
        let mut downloaded = false;
        for r in &refs {
            downloaded |= pull_one(&transfer, r, &opts, args.quiet).await?;
        }
        // The layers' diff IDs are proven from here on, in the background:
        // the pull is done once the blobs are in.
        if downloaded {
            crate::commands::system::start_prover(ctx);
        }
        if args.all_tags && !args.quiet {
            println!("{}", reference.repository().full_name());
        }
        Ok(())
    })
}

async fn pull_one(
    transfer: &Transfer,
    r: &Reference,
    opts: &CopyOptions,
    quiet: bool,
) -> anyhow::Result<bool> {
    let label = r
        .tag()
        .map(str::to_owned)
        .or_else(|| r.digest().map(|d| d.to_string()))
        .unwrap_or_default();
    if !quiet {
        println!("{label}: Pulling from {}", r.path());
    }
    let previous = transfer.store().resolve(&r.full()).ok();
    let copied = transfer
        .copy(&Place::Registry(r.clone()), &Place::Store(None), opts, &Bars::new(quiet))
        .await?;
    if !quiet {
        let repo_digest = copied.repo_digest.as_ref().and_then(|d| d.digest().cloned());
        if let Some(digest) = repo_digest {
            println!("Digest: {digest}");
        }
        if previous.is_some() && previous == copied.image_id && !copied.downloaded_any {
            println!("Status: Image is up to date for {}", r.familiar());
        } else {
            println!("Status: Downloaded newer image for {}", r.familiar());
        }
    }
    println!("{}", r.full());
    Ok(copied.downloaded_any)
}
