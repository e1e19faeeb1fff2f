//! `berth import`: a rootfs tarball (file or stdin, plain or compressed)
//! becomes a one-layer image, as `docker import` makes it.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use berth_archive::ImportOptions;
use berth_oci::Platform;
use berth_reference::Reference;
use berth_store::StoreError;

use crate::commands::load::{Progress, discard_orphans, new_image};
use crate::context::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change", value_name = "CHANGE")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long, value_name = "MSG")]
    message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// The tarball: a file, or - for STDIN
    #[arg(value_name = "FILE|-")]
    source: String,
    /// Name (and tag) for the image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    repository: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    // Every argument is checked before the (possibly large) input is read.
    let tag = match &args.repository {
        Some(name) => {
            let reference =
                Reference::parse_with_default_tag(name).map_err(StoreError::InvalidReference)?;
            if reference.digest().is_some() {
                bail!("refusing to create a tag with a digest reference");
            }
            Some(reference)
        }
        None => None,
    };
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).with_context(|| format!("invalid platform: {p}"))?,
        None => Platform::host(),
    };
    let (input, total): (Box<dyn Read + Send>, Option<u64>) = if args.source == "-" {
        if io::stdin().is_terminal() {
            bail!("requested import from stdin, but stdin is a terminal");
        }
        (Box::new(io::stdin()), None)
    } else {
        let file = File::open(&args.source).with_context(|| format!("open {}", args.source))?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let input = Progress::wrap(input, "Importing", total, true);
    let options = ImportOptions {
        changes: args.change,
        message: args.message,
        source: args.source.clone(),
        platform,
        created: SystemTime::now(),
    };
    let store = ctx.store()?;
    let imported = berth_archive::import(input, &store, &options)
        .map_err(anyhow::Error::from)
        .and_then(|mut image| {
            image.tags.extend(tag);
            Ok(store.commit_images(vec![new_image(&image)])?)
        });
    drop(store);
    let committed = imported.inspect_err(|_| discard_orphans(ctx))?;
    println!("{}", committed[0].id);
    Ok(())
}
