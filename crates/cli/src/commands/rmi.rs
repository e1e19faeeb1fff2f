//! `berth rmi` / `berth image rm`: docker's untag-then-delete semantics.

use std::io::Write;

use berth_store::{RemoveEvent, StoreError};

use crate::context::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    /// Do not delete untagged parents
    // Accepted for docker's scripts: berth records no parent images, so
    // there are none to keep.
    #[arg(long)]
    #[allow(dead_code)]
    no_prune: bool,
    /// Images to remove: names, IDs or ID prefixes
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut errors = Vec::new();
    let mut fatal = false;
    let mut stdout = std::io::stdout().lock();
    for name in &args.images {
        match store.remove(name, args.force) {
            Ok(events) => {
                for event in events {
                    match event {
                        RemoveEvent::Untagged(r) => writeln!(stdout, "Untagged: {r}")?,
                        RemoveEvent::Deleted(d) => writeln!(stdout, "Deleted: {d}")?,
                    }
                }
            }
            Err(e) => {
                fatal |= !matches!(e, StoreError::NoSuchImage(_));
                errors.push(e.to_string());
            }
        }
    }
    stdout.flush()?;
    if errors.is_empty() {
        return Ok(());
    }
    // docker: with -f, images that do not exist are reported but not an error.
    if args.force && !fatal {
        for e in &errors {
            eprintln!("Error: {e}");
        }
        return Ok(());
    }
    // One "Error: " line per failure (main prefixes the first).
    anyhow::bail!(errors.join("\nError: "))
}
