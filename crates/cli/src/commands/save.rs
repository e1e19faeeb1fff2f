//! `berth save`: images from the store into a docker-archive or OCI layout
//! tar, to a file (atomically: a temp file renamed on success) or stdout.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use berth_archive::{SaveFormat, SaveImage, SaveLayer};
use berth_oci::BlobSource;
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
    let source = StoreFiles(&store);
    match &args.output {
        Some(path) => save_to_file(&images, &source, format, path),
        None => {
            let _stdout = berth_archive::save(&images, &source, format, io::stdout().lock())?;
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

fn save_image(store: &Store, id: &Digest, tags: Vec<Reference>) -> anyhow::Result<SaveImage> {
    Ok(save_image_of(store.image(id)?, tags))
}

/// A stored image as the archive writers take it, named `tags`.
pub(crate) fn save_image_of(record: berth_store::ImageRecord, tags: Vec<Reference>) -> SaveImage {
    SaveImage {
        config: record.config_bytes,
        layers: record
            .layers
            .into_iter()
            .map(|l| SaveLayer {
                diff_id: l.diff_id,
                uncompressed_size: l.uncompressed_size,
                blobs: l.blobs,
            })
            .collect(),
        tags,
    }
}

/// Writes to a temp file beside `path` and renames it into place only when
/// the archive is complete; on error the temp file is removed.
pub(crate) fn save_to_file(
    images: &[SaveImage],
    source: &dyn BlobSource,
    format: SaveFormat,
    path: &Path,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("failed to save image: create a file in {}", dir.display()))?;
    let file: File = temp.reopen()?;
    let file = berth_archive::save(images, source, format, file)?;
    file.sync_all()?;
    temp.persist(path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// The store as a blob source that hands out its files, so layers are
/// copied by the kernel (`copy_file_range`) rather than through memory.
struct StoreFiles<'a>(&'a Store);

impl BlobSource for StoreFiles<'_> {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn io::Read + Send + '_>> {
        Ok(Box::new(self.0.open_blob(digest)?))
    }

    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        BlobSource::blob_size(self.0, digest)
    }

    fn open_blob_file(&self, digest: &Digest) -> io::Result<Option<File>> {
        self.0.open_blob(digest).map(Some)
    }
}
