//! `berth load`: images from a tar archive (docker save, podman save,
//! skopeo; plain or compressed) into the store, all or nothing.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use berth_archive::LoadedArchive;
use berth_store::{Committed, NewImage, Store};

use crate::context::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Read from tar archive file (or OCI layout directory), instead of STDIN
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let loaded = load_and_commit(&store, &args);
    drop(store);
    let (archive, committed) = loaded.inspect_err(|_| discard_orphans(ctx))?;

    let mut out = io::stdout().lock();
    for (image, committed) in archive.images.iter().zip(&committed) {
        for tag in &image.tags {
            if let Some((_, old)) = committed.moved_tags.iter().find(|(moved, _)| moved == tag) {
                writeln!(
                    out,
                    "The image {} already exists, renaming the old one with ID {old} to empty string",
                    tag.familiar()
                )?;
            }
            writeln!(out, "Loaded image: {}", tag.familiar())?;
        }
        if image.tags.is_empty() {
            writeln!(out, "Loaded image ID: {}", committed.id)?;
        }
    }
    Ok(())
}

/// Reads the archive and commits its images in one transaction.
fn load_and_commit(store: &Store, args: &Args) -> anyhow::Result<(LoadedArchive, Vec<Committed>)> {
    let archive = match &args.input {
        // An OCI image layout directory (`oci:`), or an unpacked archive.
        Some(dir) if dir.is_dir() => berth_archive::load_dir(dir, store)?,
        _ => load_stream(args, store)?,
    };
    let images: Vec<NewImage> = archive.images.iter().map(new_image).collect();
    let committed = store.commit_images(images)?;
    Ok((archive, committed))
}

/// After a failed load or import, removes the blobs it wrote that no image
/// references, so bad input leaves the store exactly as it was. Skipped
/// (the garbage collector gets them later) while another berth process is
/// ingesting, since its blobs are not committed yet either.
pub(crate) fn discard_orphans(ctx: &Context) {
    if let Ok(store) = ctx.store() {
        let _ = store.collect_garbage();
    }
}

/// Reads an archive file, or stdin, showing progress on a terminal.
fn load_stream(args: &Args, store: &Store) -> anyhow::Result<LoadedArchive> {
    let (input, total): (Box<dyn Read + Send>, Option<u64>) = match &args.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
            let len = file.metadata().ok().map(|m| m.len());
            (Box::new(file), len)
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            (Box::new(io::stdin()), None)
        }
    };
    let input = Progress::wrap(input, "Loading", total, !args.quiet);
    Ok(berth_archive::load(input, store)?)
}

/// What the store records for a verified image from an archive.
pub(crate) fn new_image(image: &berth_oci::Image) -> NewImage {
    NewImage { image: image.clone(), repo_digests: Vec::new() }
}

/// Counts the bytes read through it and, when stderr is a terminal, shows
/// a one-line progress indicator there (cleared at the end).
pub(crate) struct Progress<R> {
    inner: R,
    label: &'static str,
    total: Option<u64>,
    done: u64,
    shown: bool,
    last: Instant,
}

impl<R: Read> Progress<R> {
    pub fn wrap(inner: R, label: &'static str, total: Option<u64>, enabled: bool) -> Progress<R> {
        let shown = enabled && io::stderr().is_terminal();
        Progress { inner, label, total, done: 0, shown, last: Instant::now() }
    }

    fn draw(&self) {
        let line = match self.total {
            Some(total) if total > 0 => {
                format!("{} {}/{}", self.label, human(self.done), human(total))
            }
            _ => format!("{} {}", self.label, human(self.done)),
        };
        eprint!("\r\x1b[K{line}");
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.shown {
            if n == 0 {
                eprint!("\r\x1b[K");
                self.shown = false;
            } else if self.last.elapsed() >= Duration::from_millis(100) {
                self.last = Instant::now();
                self.draw();
            }
        }
        Ok(n)
    }
}

impl<R> Drop for Progress<R> {
    fn drop(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}

/// Docker's size units (powers of 1000).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes}B") } else { format!("{value:.3}{}", UNITS[unit]) }
}
