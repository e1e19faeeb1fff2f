//! `berth push`: upload an image from the local store to a registry.

use anyhow::bail;
use std::sync::Arc;

use berth_client::PushOptions;
use berth_reference::Reference;
use berth_store::StoreError;

use crate::commands::pull::{Printer, client, runtime};
use crate::context::Context;

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
    let store = Arc::new(ctx.store()?);
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
    let client = client()?;
    let opts = PushOptions {
        concurrency: client.config().max_concurrent_uploads,
        chunk_size: client.config().upload_chunk_size,
        ..Default::default()
    };
    if !args.quiet {
        println!("The push refers to repository [{}]", targets[0].repository().full_name());
    }
    runtime()?.block_on(async {
        for target in &targets {
            let id = match store.resolve(&target.full()) {
                Ok(id) => id,
                Err(StoreError::NoSuchImage(_)) => {
                    bail!("An image does not exist locally with the tag: {}", target.familiar())
                }
                Err(e) => return Err(e.into()),
            };
            let record = store.image(&id)?;
            // With the manifest it was pulled or last pushed with, when that
            // still names its blobs: the registry then gets the same digest.
            let image = record.to_image(vec![target.clone()]);
            let progress = Printer::new(args.quiet, "Preparing");
            let pushed = client.push(target, &image, store.clone(), &opts, progress.clone()).await;
            progress.finish();
            let pushed = pushed?;
            store.add_repo_digest(&id, &pushed.repo_digest)?;
            store.add_manifest(&id, &pushed.manifest)?;
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
