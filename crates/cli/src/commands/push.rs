//! `berth push`: upload an image from the local store to a registry.

use anyhow::bail;
use berth_client::PushOptions;
use berth_reference::Reference;
use berth_store::StoreError;
use berth_transfer::{CopyOptions, Place};

use crate::context::Context;
use crate::remote::{Bars, runtime, transfer};

#[derive(clap::Args)]
pub struct Args {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// NAME[:TAG]
    name: String,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.name)?;
    if reference.digest().is_some() {
        bail!("cannot push a digest reference");
    }
    let transfer = transfer(ctx)?;
    let store = transfer.store();
    let targets: Vec<Reference> = if args.all_tags {
        if reference.tag().is_some() {
            bail!("tag can't be used with --all-tags/-a");
        }
        let mut tags: Vec<Reference> = store
            .list_images()?
            .into_iter()
            .flat_map(|i| i.tags)
            .filter(|t| t.repository() == reference.repository())
            .collect();
        tags.sort_by(|a, b| a.tag().cmp(&b.tag()));
        if tags.is_empty() {
            bail!(
                "An image does not exist locally with the tag: {}",
                reference.repository().familiar_name()
            );
        }
        tags
    } else {
        vec![reference.with_default_tag()]
    };
    let config = transfer.client().config();
    let opts = CopyOptions {
        push: PushOptions {
            concurrency: config.max_concurrent_uploads,
            chunk_size: config.upload_chunk_size,
            ..Default::default()
        },
        ..Default::default()
    };
    if !args.quiet {
        println!("The push refers to repository [{}]", targets[0].repository().full_name());
    }
    runtime()?.block_on(async {
        for target in &targets {
            match store.resolve(&target.full()) {
                Ok(_) => {}
                Err(StoreError::NoSuchImage(_)) => {
                    bail!("An image does not exist locally with the tag: {}", target.familiar())
                }
                Err(e) => return Err(e.into()),
            }
            // The image goes with the manifest it was pulled or last pushed
            // with while that still names its blobs: the same digest.
            let src = Place::Store(Some(target.full()));
            let dst = Place::Registry(target.clone());
            let copied = transfer.copy(&src, &dst, &opts, &Bars::new(args.quiet)).await?;
            let pushed = copied.pushed.expect("a registry destination reports its push");
            if args.quiet {
                println!("{}", target.familiar());
            } else {
                let tag = target.tag().unwrap_or("latest");
                println!(
                    "{tag}: digest: {} size: {}",
                    pushed.manifest_digest, pushed.manifest_size
                );
            }
        }
        Ok(())
    })?;
    Ok(())
}
