//! berth's copy engine: one image, or a multi-platform image whole, from
//! any place berth knows to any other ([`Place`]: a registry, the local
//! store, an OCI layout directory or archive, a docker-archive).
//!
//! A copy reads the source into a blob holder and describes what it read
//! as [`berth_oci::Image`]s (config bytes, layers, and the manifest exactly
//! as the source had it); the destination's writer takes those images and
//! reads the blobs back. The holder is the local store when the image goes
//! there or comes from there (so blobs are written once), else a scratch
//! directory beside the destination, removed when the copy ends. Between
//! two registries nothing is held: each layer streams from one to the other.
//!
//! Digests are kept: configs travel byte for byte (the image ID never
//! changes), and a manifest is sent unchanged whenever the blobs it names
//! are those being sent, so the destination has the source's manifest
//! digest, as `skopeo copy` keeps it. Only when the blobs change (a layer
//! stored uncompressed is gzipped for a registry) is a manifest written
//! anew, and [`Copied::manifest_rewritten`] says so.
//!
//! `berth pull`, `push` and `image copy` are calls of [`Transfer::copy`];
//! `commit` and `build` hand their images to the same path.

mod error;
pub mod place;
mod staging;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use berth_archive::{LoadedArchive, SaveFormat};
use berth_client::{Client, Progress, PullOptions, PushOptions, PushedImage};
use berth_oci::{ImageIndex, ImageStore, Manifest, Platform};
use berth_reference::{Digest, Reference};
use berth_store::{NewImage, Store, StoreError};

pub use berth_oci::Image;
pub use error::TransferError;
pub use place::Place;

use staging::Staging;

/// The parts of a copy that show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading from a registry.
    Pull,
    /// Writing to a registry.
    Push,
}

/// Where a copy reports its progress, phase by phase.
pub trait Reporter: Send + Sync {
    fn begin(&self, phase: Phase) -> Arc<dyn Progress>;
    /// The phase begun last is over (successfully or not).
    fn end(&self, phase: Phase);
}

/// Reports nothing.
pub struct Silent;

impl Reporter for Silent {
    fn begin(&self, _phase: Phase) -> Arc<dyn Progress> {
        Arc::new(berth_client::NoProgress)
    }
    fn end(&self, _phase: Phase) {}
}

#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Every platform of a multi-platform source, index and all.
    pub all: bool,
    /// The platform to pick from a multi-platform source (default: the host's).
    pub platform: Option<Platform>,
    /// How to read from a registry. With `defer_diff_ids`, layers a
    /// registry sends go into the store with their diff IDs unproven (the
    /// store proves them at the first read); only for the store as
    /// destination.
    pub pull: PullOptions,
    pub push: PushOptions,
}

/// What a copy did.
#[derive(Debug, Clone, Default)]
pub struct Copied {
    /// The image copied (the first platform's, for a multi-platform copy).
    pub image_id: Option<Digest>,
    /// How many images were copied.
    pub images: usize,
    /// Read from a registry: the digest the reference resolved to (the
    /// index's for a multi-platform image), as `repository@digest`.
    pub repo_digest: Option<Reference>,
    /// Read from a registry: whether any layer had to be downloaded.
    pub downloaded_any: bool,
    /// Written to a registry: what it now has.
    pub pushed: Option<PushedImage>,
    /// The source's manifest could not be sent unchanged (its blobs are not
    /// those the destination got), so a new one was written.
    pub manifest_rewritten: bool,
}

/// What a source yielded: a verified image whose blobs are in the holder.
struct Held {
    image: Image,
    repo_digest: Option<Reference>,
    downloaded_any: bool,
}

/// The copy engine over one registry client and the local store.
pub struct Transfer {
    client: Client,
    store: Arc<Store>,
}

impl Transfer {
    pub fn new(client: Client, store: Arc<Store>) -> Transfer {
        Transfer { client, store }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Copies `src` to `dst`. On error nothing is committed to the store
    /// and no destination file or directory entry is left half-written;
    /// blobs written into the store for an image that was not committed
    /// are collected again.
    pub async fn copy(
        &self,
        src: &Place,
        dst: &Place,
        opts: &CopyOptions,
        reporter: &dyn Reporter,
    ) -> Result<Copied, TransferError> {
        if matches!(src, Place::Store(None)) {
            return Err(TransferError::InvalidPlace(
                "invalid source \"berth:\": name the image (berth:NAME or an image ID)".into(),
            ));
        }
        if opts.all && !(matches!(src, Place::Registry(_)) && matches!(dst, Place::Registry(_))) {
            return Err(TransferError::Unsupported(
                "--all copies every platform between registries (docker:// to docker://); \
                 elsewhere pick one platform with --platform"
                    .into(),
            ));
        }
        let dst_tag = dst.destination_tag()?;
        let copied = self.copy_checked(src, dst, dst_tag, opts, reporter).await;
        if copied.is_err() && matches!(dst, Place::Store(_)) {
            // Once this process holds the store no more, the blobs it
            // wrote for an image it did not commit can go.
            self.store.end_ingest();
            let _ = self.store.collect_garbage();
        }
        copied
    }

    async fn copy_checked(
        &self,
        src: &Place,
        dst: &Place,
        dst_tag: Option<Reference>,
        opts: &CopyOptions,
        reporter: &dyn Reporter,
    ) -> Result<Copied, TransferError> {
        if let (Place::Registry(from), Place::Registry(to)) = (src, dst) {
            return self.relay(from, to, opts, reporter).await;
        }
        let staging = match (src, dst) {
            (Place::Store(_), _) | (_, Place::Store(_)) => None,
            (_, Place::OciDir(p, _) | Place::OciArchive(p, _) | Place::DockerArchive(p, _)) => {
                Some(Staging::new(p.parent())?)
            }
            _ => Some(Staging::new(None)?),
        };
        let blobs: Arc<dyn ImageStore> = match &staging {
            Some(s) => s.clone(),
            None => self.store.clone(),
        };
        let mut held = self.read(src, &blobs, opts, reporter).await?;
        if let Some(tag) = &dst_tag {
            held.image.tags = vec![tag.clone()];
        }
        let image = held.image;
        let mut copied = Copied {
            image_id: Some(image.id()),
            images: 1,
            repo_digest: held.repo_digest.clone(),
            downloaded_any: held.downloaded_any,
            ..Copied::default()
        };
        let images = std::slice::from_ref(&image);
        match dst {
            Place::Store(_) => {
                let repo_digests = held.repo_digest.into_iter().collect();
                self.store.commit_images(vec![NewImage { image, repo_digests }])?;
            }
            Place::Registry(target) => {
                let progress = reporter.begin(Phase::Push);
                let pushed = self.client.push(target, &image, blobs, &opts.push, progress).await;
                reporter.end(Phase::Push);
                let pushed = pushed?;
                copied.manifest_rewritten = image.manifest.is_some() && !pushed.kept_manifest;
                if let Place::Store(_) = src {
                    self.store.add_repo_digest(&image.id(), &pushed.repo_digest)?;
                    self.store.add_manifest(&image.id(), &pushed.manifest)?;
                }
                copied.pushed = Some(pushed);
            }
            Place::OciArchive(path, _) => {
                write_archive_file(images, &*blobs, SaveFormat::Oci, path)?
            }
            Place::DockerArchive(path, _) => {
                write_archive_file(images, &*blobs, SaveFormat::Docker, path)?
            }
            Place::OciDir(dir, name) => {
                berth_archive::write_oci_dir(images, &*blobs, dir, name.as_deref())?
            }
        }
        drop(staging);
        Ok(copied)
    }

    /// Registry to registry: blob by blob, each layer streamed from the
    /// source's GET into the destination's PUT (see [`berth_client::copy`]);
    /// the scratch directory is used only where a stream breaks.
    async fn relay(
        &self,
        from: &Reference,
        to: &Reference,
        opts: &CopyOptions,
        reporter: &dyn Reporter,
    ) -> Result<Copied, TransferError> {
        let scratch = Staging::new(None)?;
        let pull = PullOptions { platform: opts.platform.clone(), ..opts.pull.clone() };
        let progress = reporter.begin(Phase::Push);
        let copied =
            self.client.copy(from, to, opts.all, scratch, &pull, &opts.push, progress).await;
        reporter.end(Phase::Push);
        let copied = copied?;
        Ok(Copied {
            images: copied.images,
            repo_digest: Some(copied.source_digest),
            downloaded_any: true,
            pushed: Some(copied.pushed),
            ..Copied::default()
        })
    }

    /// Reads the image(s) at `src`, writing their blobs into `blobs`.
    async fn read(
        &self,
        src: &Place,
        blobs: &Arc<dyn ImageStore>,
        opts: &CopyOptions,
        reporter: &dyn Reporter,
    ) -> Result<Held, TransferError> {
        match src {
            Place::Registry(r) => {
                let pull = PullOptions { platform: opts.platform.clone(), ..opts.pull.clone() };
                let progress = reporter.begin(Phase::Pull);
                // (Every platform goes only between registries: see `relay`.)
                let held =
                    self.client.pull(r, blobs.clone(), &pull, progress).await.map(|p| Held {
                        repo_digest: Some(p.repo_digest),
                        downloaded_any: p.downloaded_any,
                        image: p.image,
                    });
                reporter.end(Phase::Pull);
                let mut held = held?;
                held.image.tags = r.tag().map(|_| r.clone()).into_iter().collect();
                if !pull.defer_diff_ids {
                    self.prove_known_layers(&mut held.image)?;
                }
                Ok(held)
            }
            Place::Store(name) => {
                let name = name.as_deref().unwrap_or_default();
                let id = match self.store.resolve(name) {
                    Ok(id) => id,
                    Err(StoreError::NoSuchImage(_)) => {
                        return Err(TransferError::NotFound(format!("No such image: {name}")));
                    }
                    Err(e) => return Err(e.into()),
                };
                let record = self.store.image(&id)?;
                // The name read by becomes the image's tag (an ID names none).
                let tags = Reference::parse(name)
                    .ok()
                    .filter(|r| {
                        r.digest().is_none() && record.tags.contains(&r.clone().with_default_tag())
                    })
                    .map(Reference::with_default_tag)
                    .into_iter()
                    .collect();
                Ok(single(record.to_image(tags)))
            }
            Place::OciDir(dir, name) => {
                if !dir.is_dir() {
                    return Err(TransferError::NotFound(format!(
                        "{}: not an OCI layout directory",
                        dir.display()
                    )));
                }
                let archive = berth_archive::load_dir(dir, &**blobs)?;
                // skopeo's short names ("v1") are found in index.json itself.
                let by_ref = match name {
                    Some(n) => ref_name_config(dir, n)?,
                    None => None,
                };
                pick(archive, name.as_deref(), by_ref, &dir.display().to_string()).map(single)
            }
            Place::OciArchive(path, name) | Place::DockerArchive(path, name) => {
                let file = File::open(path)
                    .map_err(TransferError::io(format!("open {}", path.display())))?;
                let archive = berth_archive::load(file, &**blobs)?;
                pick(archive, name.as_deref(), None, &path.display().to_string()).map(single)
            }
        }
    }

    /// A pull that verifies diff IDs gives no size for a layer the store
    /// already held as an unproven claim (from an earlier deferred pull):
    /// the store proves it now, so the image is complete.
    fn prove_known_layers(&self, image: &mut Image) -> Result<(), TransferError> {
        if image.layers.iter().all(|l| l.uncompressed_size.is_some()) {
            return Ok(());
        }
        self.store.verify_pending_layers()?;
        for layer in image.layers.iter_mut().filter(|l| l.uncompressed_size.is_none()) {
            let known = self.store.known_layer(&layer.blobs[0].digest)?;
            layer.uncompressed_size =
                known.filter(|k| k.diff_id == layer.diff_id).and_then(|k| k.uncompressed_size);
            if layer.uncompressed_size.is_none() {
                return Err(TransferError::NotFound(format!(
                    "layer {}: not in the local store",
                    layer.blobs[0].digest
                )));
            }
        }
        Ok(())
    }
}

fn single(image: Image) -> Held {
    Held { image, repo_digest: None, downloaded_any: false }
}

/// The one image of an archive that `name` selects (or the only one).
fn pick(
    archive: LoadedArchive,
    name: Option<&str>,
    by_config: Option<Digest>,
    place: &str,
) -> Result<Image, TransferError> {
    let wanted = name.and_then(|n| Reference::parse(n).ok()).map(Reference::with_default_tag);
    let count = archive.images.len();
    let found = archive.images.into_iter().find(|i| match (&by_config, &wanted) {
        (Some(id), _) => i.id() == *id,
        (None, Some(w)) => i.tags.contains(w),
        (None, None) => count == 1,
    });
    let Some(mut image) = found else {
        return Err(TransferError::NotFound(match name {
            Some(n) => format!("{place}: no image named {n:?}"),
            None if count == 0 => format!("{place}: no image in it"),
            None => format!("{place} holds {count} images: name the one to copy ({place}:NAME)"),
        }));
    };
    if let Some(w) = wanted.filter(|w| image.tags.contains(w)) {
        image.tags = vec![w];
    }
    Ok(image)
}

/// The config digest of the image `index.json` names `name` with its
/// `org.opencontainers.image.ref.name`, read the way skopeo reads `oci:DIR:REF`.
fn ref_name_config(dir: &Path, name: &str) -> Result<Option<Digest>, TransferError> {
    let index_path = dir.join("index.json");
    let bytes =
        std::fs::read(&index_path).map_err(TransferError::io(index_path.display().to_string()))?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| TransferError::InvalidPlace(format!("{}: {e}", index_path.display())))?;
    let Some(entry) = index.manifests.iter().find(|m| {
        m.annotations.as_ref().and_then(|a| a.get(berth_archive::oci_layout::REF_NAME))
            == Some(&name.to_owned())
    }) else {
        return Ok(None);
    };
    let path = dir.join("blobs").join(entry.digest.as_str().replace(':', "/"));
    let bytes = std::fs::read(&path).map_err(TransferError::io(path.display().to_string()))?;
    // A nested index (several platforms) is left to the archive reader.
    match Manifest::parse(&bytes, Some(&entry.media_type)) {
        Ok(Manifest::Image(m)) => Ok(Some(m.config.digest)),
        _ => Ok(None),
    }
}

/// Writes an archive to a temp file beside `path` and renames it into place
/// only when it is complete; on error the temp file is removed.
pub fn write_archive_file(
    images: &[Image],
    source: &dyn berth_oci::BlobSource,
    format: SaveFormat,
    path: &Path,
) -> Result<(), TransferError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(TransferError::io(format!(
            "failed to save image: create a file in {}",
            dir.display()
        )))?;
    let file = temp.reopen().map_err(TransferError::io(path.display().to_string()))?;
    let file = berth_archive::save(images, source, format, file)?;
    file.sync_all().map_err(TransferError::io(path.display().to_string()))?;
    temp.persist(path).map_err(|e| TransferError::Io {
        what: format!("rename to {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}
