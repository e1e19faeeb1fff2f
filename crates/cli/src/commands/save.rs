//! `berth save`: images from the store into a docker-archive or OCI layout
//! tar, to a file (atomically: a temp file renamed on success) or stdout.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::bail;
use berth_archive::SaveFormat;
use berth_reference::{Digest, Reference};
use berth_store::{Store, StoreError};

use crate::context::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive format: docker (docker-archive) or oci (OCI image layout)
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    format: Format,
    /// Images to save: NAME[:TAG] (a name alone saves all its tags), or an ID
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Docker,
    Oci,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    if args.output.is_none() && io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let store = ctx.store()?;
    // Resolve everything before creating any file, so a bad name leaves no trace.
    let mut images = Vec::new();
    for name in &args.images {
        for (id, tags) in select(&store, name)? {
            images.push(save_image(&store, &id, tags)?);
        }
    }
    let format = match args.format {
        Format::Docker => SaveFormat::Docker,
        Format::Oci => SaveFormat::Oci,
    };
    // The store hands out its files, so layers are copied by the kernel
    // (`copy_file_range`) rather than through memory.
    match &args.output {
        Some(path) => Ok(berth_transfer::write_archive_file(&images, &store, format, path)?),
        None => {
            let _stdout = berth_archive::save(&images, &store, format, io::stdout().lock())?;
            Ok(())
        }
    }
}

/// The images (and the tags to record for each) that `name` selects, as
/// `docker save` does: `repo:tag` that tag; `repo` alone every tag of the
/// repository; an ID or digest reference the image, without tags.
fn select(store: &Store, name: &str) -> anyhow::Result<Vec<(Digest, Vec<Reference>)>> {
    let reference = match Reference::parse(name) {
        Ok(r) => r,
        // Not a name: maybe an ID (`sha256:...`); otherwise the parse error
        // (docker's "invalid reference format") is the one to show.
        Err(parse_error) => {
            return match store.resolve(name) {
                Ok(id) => Ok(vec![(id, Vec::new())]),
                Err(StoreError::NoSuchImage(_)) => {
                    Err(StoreError::InvalidReference(parse_error).into())
                }
                Err(e) => Err(e.into()),
            };
        }
    };
    if reference.tag().is_some() {
        return Ok(vec![(store.resolve(name)?, vec![reference])]);
    }
    if reference.digest().is_some() {
        return Ok(vec![(store.resolve(name)?, Vec::new())]);
    }
    let mut selected: Vec<(Digest, Vec<Reference>)> = Vec::new();
    for summary in store.list_images()? {
        for tag in summary.tags.iter().filter(|t| t.repository() == reference.repository()) {
            match selected.iter_mut().find(|(id, _)| *id == summary.id) {
                Some((_, tags)) => tags.push(tag.clone()),
                None => selected.push((summary.id.clone(), vec![tag.clone()])),
            }
        }
    }
    if selected.is_empty() {
        // Perhaps an ID prefix that also parses as a name (`10c8ad`).
        selected.push((store.resolve(name)?, Vec::new()));
    }
    Ok(selected)
}

fn save_image(
    store: &Store,
    id: &Digest,
    tags: Vec<Reference>,
) -> anyhow::Result<berth_oci::Image> {
    Ok(store.image(id)?.to_image(tags))
}
