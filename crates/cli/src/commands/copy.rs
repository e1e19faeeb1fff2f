//! `berth image copy SRC DST`: one image (or, with `--all`, a
//! multi-platform image whole) from any place berth knows to any other,
//! with skopeo's transport names (see `berth_transfer::place`).

use anyhow::Context as _;
use berth_client::{PullOptions, PushOptions};
use berth_oci::Platform;
use berth_transfer::{CopyOptions, Place};

use crate::context::Context;
use crate::remote::{Bars, runtime, transfer};

#[derive(clap::Args)]
pub struct Args {
    /// Suppress output
    #[arg(short, long)]
    quiet: bool,
    /// Copy every platform of a multi-platform image, index and all
    #[arg(short, long)]
    all: bool,
    /// The platform to copy from a multi-platform image (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Where the image comes from (docker://, berth:, oci:, oci-archive:, docker-archive:)
    #[arg(value_name = "SOURCE")]
    source: String,
    /// Where it goes
    #[arg(value_name = "DESTINATION")]
    destination: String,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let src = Place::parse(&args.source)?;
    let dst = Place::parse(&args.destination)?;
    let platform = match &args.platform {
        Some(p) => Some(
            Platform::parse(p)
                .with_context(|| format!("invalid platform {p:?}: want os/arch[/variant]"))?,
        ),
        None => None,
    };
    let transfer = transfer(ctx)?;
    let config = transfer.client().config();
    let opts = CopyOptions {
        all: args.all,
        platform,
        pull: PullOptions { concurrency: config.max_concurrent_downloads, ..Default::default() },
        push: PushOptions {
            concurrency: config.max_concurrent_uploads,
            chunk_size: config.upload_chunk_size,
            ..Default::default()
        },
    };
    let copied = runtime()?.block_on(transfer.copy(&src, &dst, &opts, &Bars::new(args.quiet)))?;
    if args.quiet {
        return Ok(());
    }
    if copied.manifest_rewritten {
        println!("Note: the layers changed, so the manifest was written anew");
    }
    match (&dst, &copied.pushed) {
        (Place::Registry(target), Some(pushed)) => {
            println!("Copied to {}@{}", target.familiar(), pushed.manifest_digest)
        }
        _ => {
            if copied.images > 1 {
                println!("Copied {} images", copied.images);
            }
            if let Some(id) = &copied.image_id {
                println!("Copied image ID: {id}");
            }
        }
    }
    Ok(())
}
