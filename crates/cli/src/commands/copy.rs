//! `berth image copy SRC DST`: one image from any place berth knows to any
//! other, with skopeo's transport names:
//!
//! - `docker://NAME[:TAG|@DIGEST]`: a registry, through the client's pull
//!   and push;
//! - `berth:NAME|ID`, or a plain reference: the local store;
//! - `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`: an OCI image layout,
//!   unpacked or as a tar (REF is the `org.opencontainers.image.ref.name`
//!   to pick or to write, as skopeo uses it);
//! - `docker-archive:FILE[:NAME:TAG]`: `docker save`'s format.
//!
//! The copy has two halves joined by the blob traits: the source's reader
//! writes blobs into a [`BlobSink`] and describes the verified image; the
//! destination's writer reads them back from the matching [`BlobSource`].
//! The sink is the local store when the image goes there (so its blobs are
//! written once), else a temporary directory. The config is carried byte
//! for byte, so the image keeps its ID everywhere.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use berth_archive::{LoadedArchive, SaveFormat, SaveImage, SaveLayer};
use berth_client::{ImageStore, KnownLayer, PullOptions, PushOptions};
use berth_oci::{
    BlobSink, BlobSource, Descriptor, Image, ImageIndex, Layer, Manifest, RawManifest,
};
use berth_reference::{Algorithm, Digest, HashingReader, Reference};
use berth_store::{NewImage, Store, StoreError};

use crate::commands::pull::{Printer, client, runtime};
use crate::commands::save::save_to_file;
use crate::context::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Suppress output
    #[arg(short, long)]
    quiet: bool,
    /// Where the image comes from (docker://, berth:, oci:, oci-archive:, docker-archive:)
    #[arg(value_name = "SOURCE")]
    source: String,
    /// Where it goes
    #[arg(value_name = "DESTINATION")]
    destination: String,
}

/// skopeo's transports berth does not speak: named in the error rather
/// than mistaken for an image name.
const FOREIGN_TRANSPORTS: &[&str] =
    &["containers-storage", "dir", "docker-daemon", "ostree", "sif", "tarball"];

const TRANSPORTS: &str = "docker://, berth:, oci:, oci-archive: and docker-archive:";

/// A place an image is copied from or to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Registry(Reference),
    /// The local store; the name is optional only as a destination (`berth:`
    /// keeps the image untagged).
    Store(Option<String>),
    OciDir(PathBuf, Option<String>),
    OciArchive(PathBuf, Option<String>),
    DockerArchive(PathBuf, Option<String>),
}

impl Place {
    fn parse(arg: &str) -> anyhow::Result<Place> {
        if let Some(rest) = arg.strip_prefix("docker://") {
            let r = Reference::parse(rest).with_context(|| format!("invalid image {arg:?}"))?;
            let r = if r.digest().is_some() { r } else { r.with_default_tag() };
            return Ok(Place::Registry(r));
        }
        let Some((transport, rest)) = arg.split_once(':') else {
            return Ok(Place::Store(Some(arg.to_owned())));
        };
        // `oci:DIR:REF`: the path ends at the first colon, as with skopeo.
        let path_ref = || -> anyhow::Result<(PathBuf, Option<String>)> {
            let (path, r) = match rest.split_once(':') {
                Some((p, r)) => (p, Some(r.to_owned()).filter(|r| !r.is_empty())),
                None => (rest, None),
            };
            if path.is_empty() {
                bail!("invalid {transport}: reference {arg:?}: a path is required");
            }
            Ok((PathBuf::from(path), r))
        };
        Ok(match transport {
            "berth" => Place::Store(Some(rest.to_owned()).filter(|r| !r.is_empty())),
            "oci" => path_ref().map(|(p, r)| Place::OciDir(p, r))?,
            "oci-archive" => path_ref().map(|(p, r)| Place::OciArchive(p, r))?,
            "docker-archive" => path_ref().map(|(p, r)| Place::DockerArchive(p, r))?,
            t if FOREIGN_TRANSPORTS.contains(&t) || rest.starts_with("//") => {
                bail!("unsupported transport {t:?} in {arg:?}: berth copies between {TRANSPORTS}")
            }
            // `busybox:1.36`, `localhost:5000/app`: a name in the local store.
            _ => match Reference::parse(arg) {
                Ok(_) => Place::Store(Some(arg.to_owned())),
                Err(_) => bail!(
                    "unknown transport {transport:?} in {arg:?}: berth copies between {TRANSPORTS}"
                ),
            },
        })
    }
}

/// An image read from a source: verified, its blobs in `blobs`.
struct Held {
    image: SaveImage,
    /// The one blob per layer the source described (what the store records).
    primary: Vec<Descriptor>,
    repo_digest: Option<Reference>,
    /// The manifest the image arrived with, byte for byte, when the source had one.
    manifest: Option<RawManifest>,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let src = Place::parse(&args.source)?;
    let dst = Place::parse(&args.destination)?;
    if matches!(src, Place::Store(None)) {
        bail!("invalid source {:?}: name the image (berth:NAME or an image ID)", args.source);
    }
    let dst_tag = destination_tag(&dst)?;
    if let Place::OciDir(dir, _) = &dst {
        check_empty_dir(dir)?;
    }
    let copied = copy(ctx, &args, &src, &dst, dst_tag);
    // Blobs written into the store for an image that was not committed:
    // removed (once this process holds the store no more), as `load` does.
    if copied.is_err() && matches!(dst, Place::Store(_)) {
        crate::commands::load::discard_orphans(ctx);
    }
    copied
}

fn copy(
    ctx: &Context,
    args: &Args,
    src: &Place,
    dst: &Place,
    dst_tag: Option<Reference>,
) -> anyhow::Result<()> {
    let store = Arc::new(ctx.store()?);
    // Where the source's blobs go: straight into the store when the image
    // goes there, else a scratch directory beside the destination.
    let staging = match (src, dst) {
        (Place::Store(_), _) | (_, Place::Store(_)) => None,
        (_, Place::OciDir(p, _) | Place::OciArchive(p, _) | Place::DockerArchive(p, _)) => {
            Some(Staging::new(p.parent())?)
        }
        _ => Some(Staging::new(None)?),
    };
    let blobs: Arc<dyn ImageStore> = match &staging {
        Some(s) => s.clone(),
        None => store.clone(),
    };
    let client = client()?;
    let rt = runtime()?;

    let held = rt.block_on(read(src, &store, &blobs, &client, args.quiet))?;
    let mut image = held.image;
    // The name the destination records: the one given, else the source's.
    image.tags = match &dst_tag {
        Some(t) => vec![t.clone()],
        None => image.tags,
    };

    match dst {
        Place::Store(_) => {
            let new = NewImage {
                image: Image {
                    manifest: held.manifest.clone(),
                    config: image.config.clone(),
                    layers: image
                        .layers
                        .iter()
                        .zip(&held.primary)
                        .map(|(l, blob)| Layer {
                            diff_id: l.diff_id.clone(),
                            blobs: vec![blob.clone()],
                            uncompressed_size: Some(l.uncompressed_size),
                        })
                        .collect(),
                    tags: image.tags.clone(),
                },
                repo_digests: held.repo_digest.into_iter().collect(),
            };
            let committed = store.commit_images(vec![new]);
            let committed =
                committed.inspect_err(|_| crate::commands::load::discard_orphans(ctx))?;
            if !args.quiet {
                println!("Copied image ID: {}", committed[0].id);
            }
        }
        Place::Registry(target) => {
            let local = Image {
                manifest: held.manifest.clone(),
                config: image.config.clone(),
                layers: image
                    .layers
                    .iter()
                    .map(|l| Layer {
                        diff_id: l.diff_id.clone(),
                        uncompressed_size: Some(l.uncompressed_size),
                        blobs: l.blobs.clone(),
                    })
                    .collect(),
                tags: image.tags.clone(),
            };
            let opts = PushOptions {
                concurrency: client.config().max_concurrent_uploads,
                chunk_size: client.config().upload_chunk_size,
                ..Default::default()
            };
            let progress = Printer::new(args.quiet, "Preparing");
            let pushed =
                rt.block_on(client.push(target, &local, blobs.clone(), &opts, progress.clone()));
            progress.finish();
            let pushed = pushed?;
            if held.manifest.is_some() && !pushed.kept_manifest && !args.quiet {
                println!("Note: the layers changed, so the manifest was written anew");
            }
            if let Place::Store(_) = src {
                let id = Digest::sha256_of(&image.config);
                store.add_repo_digest(&id, &pushed.repo_digest)?;
                store.add_manifest(&id, &pushed.manifest)?;
            }
            if !args.quiet {
                println!("Copied to {}@{}", target.familiar(), pushed.manifest_digest);
            }
        }
        Place::OciArchive(path, _) | Place::DockerArchive(path, _) => {
            let format = if matches!(dst, Place::OciArchive(..)) {
                SaveFormat::Oci
            } else {
                SaveFormat::Docker
            };
            let source = Files(&*blobs);
            save_to_file(std::slice::from_ref(&image), &source, format, path)?;
            if !args.quiet {
                println!("Copied image ID: {}", Digest::sha256_of(&image.config));
            }
        }
        Place::OciDir(dir, name) => {
            // One index entry: the name given applies to it.
            if name.is_some() {
                image.tags.truncate(1);
            }
            write_oci_dir(&image, &Files(&*blobs), dir, name.as_deref())?;
            if !args.quiet {
                println!("Copied image ID: {}", Digest::sha256_of(&image.config));
            }
        }
    }
    drop(staging);
    Ok(())
}

/// The tag a destination gives the image, if it names one.
fn destination_tag(dst: &Place) -> anyhow::Result<Option<Reference>> {
    let parse = |name: &str| -> anyhow::Result<Reference> {
        let r =
            Reference::parse(name).with_context(|| format!("invalid destination name {name:?}"))?;
        if r.digest().is_some() {
            bail!("invalid destination name {name:?}: a digest cannot name a copy");
        }
        Ok(r.with_default_tag())
    };
    Ok(match dst {
        Place::Registry(r) if r.digest().is_some() => {
            bail!("cannot copy to a digest reference: {}: name a tag", r.familiar())
        }
        Place::Registry(r) => Some(r.clone()),
        Place::Store(Some(n)) | Place::DockerArchive(_, Some(n)) => Some(parse(n)?),
        // skopeo writes the REF of `oci:DIR:REF` as is; a bare tag ("v1")
        // names no repository, so the archive writer gets none and the
        // annotation is set afterwards (see `write_oci_dir`).
        Place::OciDir(_, Some(n)) if n.contains(['/', ':']) => Some(parse(n)?),
        Place::OciArchive(_, Some(n)) if n.contains(['/', ':']) => Some(parse(n)?),
        Place::OciArchive(_, Some(n)) => {
            bail!("oci-archive: name the image in full ({n:?} has no repository), e.g. NAME:{n}")
        }
        _ => None,
    })
}

/// Reads the image at `src`, writing its blobs into `blobs`.
async fn read(
    src: &Place,
    store: &Arc<Store>,
    blobs: &Arc<dyn ImageStore>,
    client: &berth_client::Client,
    quiet: bool,
) -> anyhow::Result<Held> {
    match src {
        Place::Registry(r) => {
            let opts = PullOptions {
                concurrency: client.config().max_concurrent_downloads,
                ..Default::default()
            };
            let progress = Printer::new(quiet, "Pulling fs layer");
            let pulled = client.pull(r, blobs.clone(), &opts, progress.clone()).await;
            progress.finish();
            let pulled = pulled?;
            let mut layers = Vec::new();
            let mut primary = Vec::new();
            for l in &pulled.image.layers {
                let blob = &l.blobs[0];
                let size = match l.uncompressed_size {
                    Some(size) => size,
                    // A layer the local store already held as an unproven
                    // claim (from an earlier pull): prove it now.
                    None => proven_size(store, &l.diff_id)
                        .with_context(|| format!("layer {} of {}", blob.digest, r.familiar()))?,
                };
                primary.push(blob.clone());
                layers.push(SaveLayer {
                    diff_id: l.diff_id.clone(),
                    uncompressed_size: size,
                    blobs: vec![blob.clone()],
                });
            }
            let tags = r.tag().map(|_| r.clone()).into_iter().collect();
            Ok(Held {
                image: SaveImage { config: pulled.image.config, layers, tags },
                primary,
                repo_digest: Some(pulled.repo_digest),
                manifest: pulled.image.manifest,
            })
        }
        Place::Store(name) => {
            let name = name.as_deref().unwrap_or_default();
            let id = match store.resolve(name) {
                Ok(id) => id,
                Err(StoreError::NoSuchImage(_)) => bail!("No such image: {name}"),
                Err(e) => return Err(e.into()),
            };
            let record = store.image(&id)?;
            let tags = Reference::parse(name)
                .ok()
                .filter(|r| {
                    r.digest().is_none() && record.tags.contains(&r.clone().with_default_tag())
                })
                .map(Reference::with_default_tag)
                .into_iter()
                .collect();
            let primary = record.layers.iter().map(|l| l.blobs[0].clone()).collect();
            let manifest = record.to_image(vec![]).manifest;
            Ok(Held {
                image: crate::commands::save::save_image_of(record, tags),
                primary,
                repo_digest: None,
                manifest,
            })
        }
        Place::OciDir(dir, name) => {
            if !dir.is_dir() {
                bail!("{}: not an OCI layout directory", dir.display());
            }
            let archive = berth_archive::load_dir(dir, &**blobs)?;
            // skopeo's short names ("v1") are found in index.json itself.
            let by_ref = match name {
                Some(n) => ref_name_config(dir, n)?,
                None => None,
            };
            pick(archive, name.as_deref(), by_ref, &dir.display().to_string())
        }
        Place::OciArchive(path, name) | Place::DockerArchive(path, name) => {
            let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
            let archive = berth_archive::load(file, &**blobs)?;
            pick(archive, name.as_deref(), None, &path.display().to_string())
        }
    }
}

/// The one image of an archive that `name` selects (or the only one).
fn pick(
    archive: LoadedArchive,
    name: Option<&str>,
    by_config: Option<Digest>,
    place: &str,
) -> anyhow::Result<Held> {
    let wanted = name.and_then(|n| Reference::parse(n).ok()).map(Reference::with_default_tag);
    let count = archive.images.len();
    let found = archive.images.into_iter().find(|i| match (&by_config, &wanted) {
        (Some(id), _) => i.id == *id,
        (None, Some(w)) => i.tags.contains(w),
        (None, None) => count == 1,
    });
    let Some(image) = found else {
        return match name {
            Some(n) => Err(anyhow::anyhow!("{place}: no image named {n:?}")),
            None if count == 0 => Err(anyhow::anyhow!("{place}: no image in it")),
            None => Err(anyhow::anyhow!(
                "{place} holds {count} images: name the one to copy ({place}:NAME)"
            )),
        };
    };
    let primary = image.layers.iter().map(|l| l.blob.clone()).collect();
    Ok(Held {
        image: SaveImage {
            config: image.config,
            layers: image
                .layers
                .into_iter()
                .map(|l| SaveLayer {
                    diff_id: l.diff_id,
                    uncompressed_size: l.uncompressed_size,
                    blobs: vec![l.blob],
                })
                .collect(),
            tags: match wanted {
                Some(w) if image.tags.contains(&w) => vec![w],
                _ => image.tags,
            },
        },
        primary,
        repo_digest: None,
        manifest: None,
    })
}

/// The config digest of the image `index.json` names `name` with its
/// `org.opencontainers.image.ref.name`, read the way skopeo reads `oci:DIR:REF`.
fn ref_name_config(dir: &Path, name: &str) -> anyhow::Result<Option<Digest>> {
    let index: ImageIndex =
        serde_json::from_slice(&std::fs::read(dir.join("index.json"))?).context("index.json")?;
    let Some(entry) = index.manifests.iter().find(|m| {
        m.annotations.as_ref().and_then(|a| a.get(berth_archive::oci_layout::REF_NAME))
            == Some(&name.to_owned())
    }) else {
        return Ok(None);
    };
    let path = dir.join("blobs").join(entry.digest.as_str().replace(':', "/"));
    // A nested index (several platforms) is left to the archive reader.
    match Manifest::parse(&std::fs::read(&path)?, Some(&entry.media_type)) {
        Ok(Manifest::Image(m)) => Ok(Some(m.config.digest)),
        _ => Ok(None),
    }
}

/// A destination directory must not exist yet, or be empty: berth does not
/// merge into an existing layout.
fn check_empty_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{}: directory exists and is not empty", dir.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| dir.display().to_string()),
    }
}

/// Writes an OCI layout directory: the archive writer's tar, unpacked into
/// a temporary directory beside `dir` and renamed into place when whole.
/// With `name`, the index entry's `org.opencontainers.image.ref.name` is
/// exactly `name` (skopeo's `oci:DIR:REF`).
fn write_oci_dir(
    image: &SaveImage,
    source: &dyn BlobSource,
    dir: &Path,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".berth-oci.")
        .tempdir_in(parent)
        .with_context(|| format!("create a directory in {}", parent.display()))?;
    let (reader, writer) = io::pipe()?;
    let images = std::slice::from_ref(image);
    let unpacked = std::thread::scope(|s| {
        let unpack = s.spawn(|| {
            let mut tar = tar::Archive::new(reader);
            tar.set_preserve_permissions(false);
            tar.unpack(temp.path())
        });
        let saved = berth_archive::save(images, source, SaveFormat::Oci, writer).map(drop);
        // The writer is dropped: the unpacker sees the end.
        let unpacked = unpack.join().expect("unpack thread");
        saved.map_err(anyhow::Error::from).and(unpacked.map_err(anyhow::Error::from))
    });
    unpacked.with_context(|| format!("writing {}", dir.display()))?;
    // Docker 25+'s manifest.json is for archives; a layout directory as
    // skopeo writes it has none.
    std::fs::remove_file(temp.path().join("manifest.json")).ok();
    if let Some(name) = name {
        let path = temp.path().join("index.json");
        let mut index: ImageIndex = serde_json::from_slice(&std::fs::read(&path)?)?;
        for m in &mut index.manifests {
            let a = m.annotations.get_or_insert_with(Default::default);
            a.insert(berth_archive::oci_layout::REF_NAME.to_owned(), name.to_owned());
        }
        std::fs::write(&path, serde_json::to_vec(&index)?)?;
    }
    if dir.exists() {
        std::fs::remove_dir(dir).with_context(|| dir.display().to_string())?;
    }
    let temp = temp.keep();
    std::fs::rename(&temp, dir).with_context(|| format!("rename to {}", dir.display()))?;
    Ok(())
}

/// A blob source over an [`ImageStore`] that hands out files where it can.
struct Files<'a>(&'a dyn ImageStore);

impl BlobSource for Files<'_> {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        self.0.open_blob(digest)
    }
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        self.0.blob_size(digest)
    }
    fn open_blob_file(&self, digest: &Digest) -> io::Result<Option<File>> {
        self.0.open_blob_file(digest)
    }
}

/// Scratch blobs for a copy that does not involve the store: a temporary
/// directory, removed when the copy ends. Blobs are hashed while written
/// and renamed into place, like the store's.
struct Staging {
    dir: tempfile::TempDir,
    /// Layers compressed for a push (`add_layer_blob`), by diff ID.
    layers: Mutex<HashMap<Digest, Descriptor>>,
}

impl Staging {
    /// In `near` (the destination's directory, so the blobs stay on its
    /// disk), else the system's temporary directory.
    fn new(near: Option<&Path>) -> anyhow::Result<Arc<Staging>> {
        let builder = tempfile::Builder::new().prefix(".berth-copy.").clone();
        let dir = match near.filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => builder
                .tempdir_in(p)
                .with_context(|| format!("create a directory in {}", p.display()))?,
            None => builder.tempdir()?,
        };
        std::fs::create_dir(dir.path().join("blobs"))?;
        Ok(Arc::new(Staging { dir, layers: Mutex::new(HashMap::new()) }))
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.path().join("blobs").join(digest.hex())
    }
}

impl BlobSource for Staging {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(self.path(digest))?))
    }
    fn blob_size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match std::fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn open_blob_file(&self, digest: &Digest) -> io::Result<Option<File>> {
        File::open(self.path(digest)).map(Some)
    }
}

impl BlobSink for Staging {
    fn write_blob(&self, reader: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.path())?;
        let mut hashing = HashingReader::new(reader, Algorithm::Sha256);
        io::copy(&mut hashing, &mut tmp)?;
        let (digest, size) = hashing.finish();
        tmp.persist(self.path(&digest)).map_err(|e| e.error)?;
        Ok((digest, size))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }
}

impl ImageStore for Staging {
    fn known_layer(&self, _blob: &Digest) -> Option<KnownLayer> {
        None
    }
    fn add_layer_blob(&self, diff_id: &Digest, blob: &Descriptor) -> io::Result<()> {
        self.layers.lock().expect("lock").insert(diff_id.clone(), blob.clone());
        Ok(())
    }
}

/// The tar length of a layer the local store holds, once its diff ID is proven.
fn proven_size(store: &Store, diff_id: &Digest) -> anyhow::Result<u64> {
    store.verify_pending_layers()?;
    let layer = store.stored_layers()?.into_iter().find(|l| l.diff_id == *diff_id);
    match layer {
        Some(l) if l.verified => Ok(l.uncompressed_size),
        _ => bail!("the layer is not in the local store"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse_like_skopeo() {
        let p = |s: &str| Place::parse(s).unwrap();
        assert_eq!(
            p("docker://localhost:5000/app"),
            Place::Registry(Reference::parse("localhost:5000/app:latest").unwrap())
        );
        assert_eq!(p("berth:app:1"), Place::Store(Some("app:1".into())));
        assert_eq!(p("busybox:1.36"), Place::Store(Some("busybox:1.36".into())));
        assert_eq!(p("localhost:5000/app"), Place::Store(Some("localhost:5000/app".into())));
        assert_eq!(p("oci:/tmp/x:v1"), Place::OciDir("/tmp/x".into(), Some("v1".into())));
        assert_eq!(p("oci:/tmp/x"), Place::OciDir("/tmp/x".into(), None));
        assert_eq!(
            p("oci-archive:a.tar:example.com/app:2"),
            Place::OciArchive("a.tar".into(), Some("example.com/app:2".into()))
        );
        assert_eq!(p("docker-archive:a.tar"), Place::DockerArchive("a.tar".into(), None));
        for (bad, text) in [
            ("dir:/tmp/x", "unsupported transport \"dir\""),
            ("containers-storage:app", "unsupported transport \"containers-storage\""),
            ("ftp://host/x", "unsupported transport \"ftp\""),
            ("bogus:/tmp/x", "unknown transport \"bogus\""),
            ("oci:", "a path is required"),
        ] {
            let e = Place::parse(bad).unwrap_err().to_string();
            assert!(e.contains(text), "{bad}: {e}");
        }
    }
}
