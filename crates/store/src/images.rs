//! Images and their names: committing, looking up, listing, tagging.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_oci::{Descriptor, ImageConfig, KnownLayer, Layer, Manifest, RawManifest, media_type};
use berth_reference::{Digest, Reference, Repository};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{
    Committed, ImageRecord, ImageSummary, LayerRecord, NewImage, Store, StoreError, chain_ids,
    parse_rfc3339,
};

/// A validated image, ready for the one commit transaction.
struct Prepared {
    id: Digest,
    config: Vec<u8>,
    created: Option<i64>,
    layers: Vec<Layer>,
    manifest: Option<RawManifest>,
    /// Docker's content size of each verified layer.
    content_sizes: Vec<Option<u64>>,
    chains: Vec<Digest>,
    tags: Vec<Reference>,
    repo_digests: Vec<Reference>,
}

impl Store {
    /// Records images whose layer blobs were written with [`Store::write_blob`]
    /// (the config blob is written here if absent). Checks, before touching
    /// the metadata, that each config parses, that the layers match its
    /// `rootfs.diff_ids` in order, and that every layer blob is stored with
    /// the size its descriptor gives. Then, in ONE transaction, inserts the
    /// images and layers and points every tag and repo digest at its image,
    /// moving tags from other images (which may become dangling).
    ///
    /// Idempotent: committing an image that exists adds any new names and
    /// blob variants and changes nothing else. On error nothing is recorded.
    pub fn commit_images(&self, images: Vec<NewImage>) -> Result<Vec<Committed>, StoreError> {
        self.locks.hold_shared()?;
        let prepared =
            images.into_iter().map(|img| self.prepare(img)).collect::<Result<Vec<_>, _>>()?;
        let now = unix_now();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(prepared.len());
        for p in &prepared {
            let id = p.id.as_str();
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO images (id, config, created, size, added) VALUES (?1, ?2, ?3, 0, ?4)",
                params![id, p.config, p.created, now],
            )?;
            for (position, layer) in p.layers.iter().enumerate() {
                match (layer.uncompressed_size, p.content_sizes[position]) {
                    (Some(size), Some(content_size)) => {
                        record_verified_layer(&tx, layer, size, content_size)?
                    }
                    _ => record_claimed_layer(&tx, layer)?,
                }
                if inserted == 1 {
                    tx.execute(
                        "INSERT INTO image_layers (image_id, position, diff_id, chain_id) VALUES (?1, ?2, ?3, ?4)",
                        params![id, position as i64, layer.diff_id.as_str(), p.chains[position].as_str()],
                    )?;
                }
            }
            let mut moved_tags = Vec::new();
            for tag in &p.tags {
                if let Some(previous) = set_tag(&tx, tag, &p.id)? {
                    moved_tags.push((tag.clone(), previous));
                }
            }
            for rd in &p.repo_digests {
                set_repo_digest(&tx, rd, &p.id)?;
            }
            if let Some(m) = &p.manifest {
                insert_manifest(&tx, &p.id, m)?;
            }
            refresh_image_size(&tx, &p.id)?;
            out.push(Committed { id: p.id.clone(), moved_tags });
        }
        tx.commit()?;
        Ok(out)
    }

    fn prepare(&self, new: NewImage) -> Result<Prepared, StoreError> {
        let img = new.image;
        let config = ImageConfig::parse(&img.config).map_err(StoreError::InvalidConfig)?;
        let id = Digest::sha256_of(&img.config);
        let diff_ids = config.diff_ids();
        if img.layers.len() != diff_ids.len() {
            return Err(StoreError::LayerCount {
                image: id,
                layers: img.layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        for (index, (layer, expected)) in img.layers.iter().zip(diff_ids).enumerate() {
            if layer.diff_id != *expected {
                return Err(StoreError::DiffIdMismatch {
                    image: id,
                    index,
                    expected: expected.clone(),
                    found: layer.diff_id.clone(),
                });
            }
            if layer.blobs.is_empty() {
                return Err(StoreError::LayerWithoutBlob(layer.diff_id.clone()));
            }
            for blob in &layer.blobs {
                let uncompressed = matches!(
                    blob.media_type.as_str(),
                    media_type::OCI_LAYER | media_type::DOCKER_LAYER
                );
                if uncompressed && blob.digest != layer.diff_id {
                    return Err(StoreError::UncompressedBlobMismatch {
                        diff_id: layer.diff_id.clone(),
                        blob: blob.digest.clone(),
                    });
                }
                self.expect_blob(&blob.digest, blob.size)?;
            }
        }
        if let Some(m) = &img.manifest {
            check_manifest_names(m, &id, &img.config)?;
        }
        for tag in &img.tags {
            if tag.digest().is_some() {
                return Err(StoreError::TagWithDigest);
            }
        }
        for rd in &new.repo_digests {
            if rd.digest().is_none() {
                return Err(StoreError::NotDigested(rd.familiar()));
            }
        }
        if !self.blob_path(&id).is_file() {
            self.write_blob_bytes(&img.config)?;
        }
        let content_sizes = img
            .layers
            .iter()
            .map(|l| l.uncompressed_size.map(|_| self.content_size(l)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared {
            content_sizes,
            chains: chain_ids(diff_ids),
            created: config.created.as_deref().and_then(parse_rfc3339),
            id,
            config: img.config,
            layers: img.layers,
            manifest: img.manifest,
            tags: img.tags.into_iter().map(Reference::with_default_tag).collect(),
            repo_digests: new.repo_digests,
        })
    }

    /// Docker's size of a layer: known if the layer is stored and proven,
    /// else measured from its first blob (decompressing if needed).
    fn content_size(&self, layer: &Layer) -> Result<u64, StoreError> {
        let known: Option<i64> = self
            .conn()
            .query_row(
                "SELECT content_size FROM layers WHERE diff_id = ?1 AND verified = 1",
                [layer.diff_id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(size) = known {
            return Ok(size as u64);
        }
        let blob = &layer.blobs[0];
        Ok(content_size_of_blob(&self.blob_path(&blob.digest), &blob.media_type)?)
    }

    /// Keeps `manifest` (exactly these bytes) as one image `id` is known by:
    /// after a push that wrote a new manifest, the next push or copy sends
    /// the same one. The manifest must name the image's config.
    pub fn add_manifest(&self, id: &Digest, manifest: &RawManifest) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let config: Option<Vec<u8>> = tx
            .query_row("SELECT config FROM images WHERE id = ?1", [id.as_str()], |r| r.get(0))
            .optional()?;
        let Some(config) = config else {
            return Err(StoreError::NoSuchImage(id.to_string()));
        };
        check_manifest_names(manifest, id, &config)?;
        insert_manifest(&tx, id, manifest)?;
        tx.commit()?;
        Ok(())
    }

    /// The layer `blob` carries, if the store records one: one indexed
    /// lookup. `uncompressed_size` is `None` while its diff ID is unproven.
    pub fn known_layer(&self, blob: &Digest) -> Result<Option<KnownLayer>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT l.diff_id, l.size, l.verified FROM layer_blobs lb
             JOIN layers l ON l.diff_id = lb.diff_id WHERE lb.digest = ?1 LIMIT 1",
        )?;
        let row = stmt
            .query_row([blob.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, bool>(2)?))
            })
            .optional()?;
        let Some((diff, size, verified)) = row else { return Ok(None) };
        Ok(Some(KnownLayer {
            diff_id: parse_digest(&diff)?,
            uncompressed_size: verified.then_some(size as u64),
        }))
    }

    /// Repositories layer `diff_id` is known to exist in remotely: those of
    /// the repo digests of the images using it (for cross-repository mounts).
    pub fn layer_repositories(&self, diff_id: &Digest) -> Result<Vec<Repository>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT rd.repository FROM image_layers il
             JOIN repo_digests rd ON rd.image_id = il.image_id
             WHERE il.diff_id = ?1 ORDER BY rd.repository",
        )?;
        let names: Vec<String> =
            stmt.query_map([diff_id.as_str()], |r| r.get(0))?.collect::<Result<_, _>>()?;
        names.iter().map(|n| parse_repository(n)).collect()
    }

    fn expect_blob(&self, digest: &Digest, size: u64) -> Result<(), StoreError> {
        match std::fs::metadata(self.blob_path(digest)) {
            Ok(m) if m.len() == size => Ok(()),
            Ok(m) => Err(StoreError::BlobSize {
                digest: digest.clone(),
                expected: size,
                actual: m.len(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(digest.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Docker's image lookup. `name` may be a reference (`busybox`,
    /// `busybox:musl`, `name@sha256:...`; no tag means `:latest`), a full ID
    /// (`sha256:<64 hex>` or bare 64 hex), or a unique prefix of an ID (with
    /// or without `sha256:`). A tag that exists wins over an ID prefix.
    /// Returns the image ID; `NoSuchImage` (also for an ambiguous prefix) or
    /// `InvalidReference`.
    pub fn resolve(&self, name: &str) -> Result<Digest, StoreError> {
        resolve_in(&self.conn(), name)
    }

    /// The full record of one image (config parsed, layers with their blobs).
    /// Verifies pending layers first (see [`Store::verify_pending_layers`]).
    pub fn image(&self, id: &Digest) -> Result<ImageRecord, StoreError> {
        self.verify_pending_layers()?;
        image_in(&self.conn(), id)
    }

    /// Every image with its names, in one query, without reading configs:
    /// cheap enough for 10,000 tags. Order: ID; names sorted by full form
    /// (by SQLite, so no name is formatted here just to sort it).
    /// Verifies pending layers first (see [`Store::verify_pending_layers`]).
    pub fn list_images(&self) -> Result<Vec<ImageSummary>, StoreError> {
        self.verify_pending_layers()?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT i.id, i.created, i.size, i.added, n.kind, n.repository, n.name
             FROM images i LEFT JOIN (
                 SELECT image_id, 0 AS kind, repository, tag AS name FROM tags
                 UNION ALL
                 SELECT image_id, 1 AS kind, repository, digest AS name FROM repo_digests
             ) n ON n.image_id = i.id
             ORDER BY i.id, n.kind,
                 n.repository || CASE n.kind WHEN 0 THEN ':' ELSE '@' END || n.name",
        )?;
        let mut rows = stmt.query([])?;
        let mut out: Vec<ImageSummary> = Vec::new();
        let mut repos: HashMap<String, Repository> = HashMap::new();
        while let Some(row) = rows.next()? {
            // Borrow the text columns: 10,000 rows should not mean 40,000 Strings.
            let id = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            if out.last().is_none_or(|last| last.id.as_str() != id) {
                out.push(ImageSummary {
                    id: parse_digest(id)?,
                    created: row.get(1)?,
                    size: row.get::<_, i64>(2)? as u64,
                    added: row.get(3)?,
                    tags: Vec::new(),
                    repo_digests: Vec::new(),
                });
            }
            let Some(kind) = row.get::<_, Option<i64>>(4)? else { continue };
            let repo_name = row.get_ref(5)?.as_str().map_err(rusqlite::Error::from)?;
            let repository = match repos.get(repo_name) {
                Some(r) => r.clone(),
                None => {
                    let r = parse_repository(repo_name)?;
                    repos.insert(repo_name.to_owned(), r.clone());
                    r
                }
            };
            let name = row.get_ref(6)?.as_str().map_err(rusqlite::Error::from)?;
            let last = out.last_mut().expect("pushed above");
            if kind == 0 {
                last.tags.push(Reference::tagged(repository, name)?);
            } else {
                last.repo_digests.push(Reference::digested(repository, parse_digest(name)?));
            }
        }
        Ok(out)
    }

    /// Every stored layer with its blobs and the repositories it is known
    /// in, in two queries (what a pull or push needs to skip work, without
    /// loading every image).
    pub fn stored_layers(&self) -> Result<Vec<crate::StoredLayer>, StoreError> {
        let conn = self.conn();
        let mut out: Vec<crate::StoredLayer> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT l.diff_id, l.size, l.content_size, lb.digest, lb.media_type, lb.size,
                        l.verified
                 FROM layers l JOIN layer_blobs lb ON lb.diff_id = l.diff_id
                 ORDER BY l.diff_id, (lb.digest = l.diff_id) DESC, lb.digest",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let diff: String = r.get(0)?;
                let i = match index.get(&diff) {
                    Some(&i) => i,
                    None => {
                        out.push(crate::StoredLayer {
                            diff_id: parse_digest(&diff)?,
                            uncompressed_size: r.get::<_, i64>(1)? as u64,
                            content_size: r.get::<_, i64>(2)? as u64,
                            verified: r.get(6)?,
                            blobs: Vec::new(),
                            repositories: Vec::new(),
                        });
                        index.insert(diff, out.len() - 1);
                        out.len() - 1
                    }
                };
                let digest: String = r.get(3)?;
                let media: String = r.get(4)?;
                let size = r.get::<_, i64>(5)? as u64;
                out[i].blobs.push(Descriptor::new(&media, parse_digest(&digest)?, size));
            }
        }
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT il.diff_id, rd.repository FROM image_layers il
             JOIN repo_digests rd ON rd.image_id = il.image_id ORDER BY il.diff_id, rd.repository",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let diff: String = r.get(0)?;
            let repo: String = r.get(1)?;
            if let Some(&i) = index.get(&diff) {
                out[i].repositories.push(parse_repository(&repo)?);
            }
        }
        Ok(out)
    }

    /// Points `reference` (which must carry a tag, or none for `:latest`, and
    /// no digest) at image `id`, moving it from any other image; records the
    /// tag time. O(1): no blob is touched. Returns the image the tag left.
    pub fn tag(&self, id: &Digest, reference: &Reference) -> Result<Option<Digest>, StoreError> {
        if reference.digest().is_some() {
            return Err(StoreError::TagWithDigest);
        }
        let reference = reference.clone().with_default_tag();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let updated = tx.execute(
            "UPDATE images SET last_tag_time = ?2 WHERE id = ?1",
            params![id.as_str(), unix_nanos_now()],
        )?;
        if updated == 0 {
            return Err(StoreError::NoSuchImage(id.to_string()));
        }
        let previous = set_tag(&tx, &reference, id)?;
        tx.commit()?;
        Ok(previous)
    }

    /// Records that layer `diff_id` is also stored as `blob` (a compressed
    /// form made for a push, or the one a pull fetched), so the next push can
    /// reuse it. The blob must be stored with the descriptor's size; the
    /// caller has verified that it decompresses to `diff_id`.
    pub fn add_layer_blob(&self, diff_id: &Digest, blob: &Descriptor) -> Result<(), StoreError> {
        self.locks.hold_shared()?;
        self.expect_blob(&blob.digest, blob.size)?;
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO layer_blobs (diff_id, digest, media_type, size)
             SELECT diff_id, ?2, ?3, ?4 FROM layers WHERE diff_id = ?1",
            params![diff_id.as_str(), blob.digest.as_str(), blob.media_type, blob.size as i64],
        )?;
        if inserted == 0 {
            let known: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM layers WHERE diff_id = ?1)",
                [diff_id.as_str()],
                |r| r.get(0),
            )?;
            if !known {
                return Err(StoreError::NoSuchLayer(diff_id.clone()));
            }
        }
        Ok(())
    }

    /// Records that `repo_digest` (`repository@manifest-digest`) names image
    /// `id` (after a pull or a push). A tag beside the digest is ignored.
    pub fn add_repo_digest(&self, id: &Digest, repo_digest: &Reference) -> Result<(), StoreError> {
        if repo_digest.digest().is_none() {
            return Err(StoreError::NotDigested(repo_digest.familiar()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM images WHERE id = ?1)",
            [id.as_str()],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::NoSuchImage(id.to_string()));
        }
        set_repo_digest(&tx, repo_digest, id)?;
        tx.commit()?;
        Ok(())
    }
}

/// Points a tag at `id`; returns the image it pointed at before, if another.
fn set_tag(conn: &Connection, tag: &Reference, id: &Digest) -> Result<Option<Digest>, StoreError> {
    let repository = tag.repository().full_name();
    let name = tag.tag().unwrap_or(berth_reference::DEFAULT_TAG);
    let previous: Option<String> = conn
        .query_row(
            "SELECT image_id FROM tags WHERE repository = ?1 AND tag = ?2",
            params![repository, name],
            |r| r.get(0),
        )
        .optional()?;
    if previous.as_deref() == Some(id.as_str()) {
        return Ok(None);
    }
    conn.execute(
        "INSERT OR REPLACE INTO tags (repository, tag, image_id) VALUES (?1, ?2, ?3)",
        params![repository, name, id.as_str()],
    )?;
    previous.map(|p| parse_digest(&p)).transpose()
}

fn set_repo_digest(conn: &Connection, rd: &Reference, id: &Digest) -> Result<(), StoreError> {
    let digest = rd.digest().expect("checked by callers");
    conn.execute(
        "INSERT OR REPLACE INTO repo_digests (repository, digest, image_id) VALUES (?1, ?2, ?3)",
        params![rd.repository().full_name(), digest.as_str(), id.as_str()],
    )?;
    Ok(())
}

pub(crate) fn resolve_in(conn: &Connection, name: &str) -> Result<Digest, StoreError> {
    // A full ID, bare or with its algorithm.
    let full = if is_hex(name) && name.len() == 64 {
        Some(format!("sha256:{name}"))
    } else if Digest::parse(name).is_ok() {
        Some(name.to_owned())
    } else {
        None
    };
    if let Some(full) = full {
        if image_exists(conn, &full)? {
            return parse_digest(&full);
        }
        return Err(StoreError::NoSuchImage(full));
    }

    let reference = Reference::parse(name)?;
    let found: Option<String> = match reference.digest() {
        Some(digest) => conn
            .query_row(
                "SELECT image_id FROM repo_digests WHERE repository = ?1 AND digest = ?2",
                params![reference.repository().full_name(), digest.as_str()],
                |r| r.get(0),
            )
            .optional()?,
        None => conn
            .query_row(
                "SELECT image_id FROM tags WHERE repository = ?1 AND tag = ?2",
                params![
                    reference.repository().full_name(),
                    reference.tag().unwrap_or(berth_reference::DEFAULT_TAG)
                ],
                |r| r.get(0),
            )
            .optional()?,
    };
    if let Some(id) = found {
        return parse_digest(&id);
    }

    // A unique ID prefix.
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    if !prefix.is_empty() && is_hex(prefix) {
        let low = format!("sha256:{prefix}");
        let high = format!("sha256:{prefix}g");
        let mut stmt =
            conn.prepare_cached("SELECT id FROM images WHERE id >= ?1 AND id < ?2 LIMIT 2")?;
        let ids: Vec<String> =
            stmt.query_map(params![low, high], |r| r.get(0))?.collect::<Result<_, _>>()?;
        if ids.len() == 1 {
            return parse_digest(&ids[0]);
        }
    }
    Err(StoreError::NoSuchImage(reference.familiar()))
}

fn image_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM images WHERE id = ?1)", [id], |r| r.get(0))?)
}

/// Records a layer whose diff ID the caller proved, with its sizes; a
/// layer that was only claimed so far becomes verified (and the sizes of the
/// images using it are recomputed).
fn record_verified_layer(
    tx: &Connection,
    layer: &Layer,
    size: u64,
    content_size: u64,
) -> Result<(), StoreError> {
    let diff = layer.diff_id.as_str();
    let was_claimed: bool = tx
        .query_row("SELECT verified = 0 FROM layers WHERE diff_id = ?1", [diff], |r| r.get(0))
        .optional()?
        .unwrap_or(false);
    tx.execute(
        "INSERT INTO layers (diff_id, size, content_size, verified) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (diff_id) DO UPDATE
         SET size = excluded.size, content_size = excluded.content_size, verified = 1
         WHERE verified = 0",
        params![diff, size as i64, content_size as i64],
    )?;
    for blob in &layer.blobs {
        tx.execute(
            "INSERT INTO layer_blobs (diff_id, digest, media_type, size, verified) VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT (diff_id, digest) DO UPDATE SET verified = 1",
            params![diff, blob.digest.as_str(), blob.media_type, blob.size as i64],
        )?;
    }
    if was_claimed {
        refresh_sizes_of_images_using(tx, diff)?;
    }
    Ok(())
}

/// Records a layer blob whose diff ID is only claimed (by a registry):
/// proven later by [`Store::verify_pending_layers`]. An existing row, proven
/// or not, is kept as it is.
fn record_claimed_layer(tx: &Connection, layer: &Layer) -> Result<(), StoreError> {
    let diff = layer.diff_id.as_str();
    tx.execute(
        "INSERT OR IGNORE INTO layers (diff_id, size, content_size, verified) VALUES (?1, 0, 0, 0)",
        [diff],
    )?;
    for blob in &layer.blobs {
        tx.execute(
            "INSERT OR IGNORE INTO layer_blobs (diff_id, digest, media_type, size, verified)
             VALUES (?1, ?2, ?3, ?4, 0)",
            params![diff, blob.digest.as_str(), blob.media_type, blob.size as i64],
        )?;
    }
    Ok(())
}

/// Docker's content size of a stored layer blob, decompressing by media
/// type; an uncompressed tar is walked header to header, seeking over
/// contents.
fn content_size_of_blob(path: &std::path::Path, media_type: &str) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    if media_type::layer_compression(media_type) == Some(media_type::LayerCompression::None) {
        return berth_layer::TarWalk::content_size_of_file(file);
    }
    let file = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut walk = berth_layer::TarWalk::new();
    std::io::copy(&mut berth_layer::decompress(file, media_type)?, &mut walk)?;
    Ok(walk.content_size())
}

/// `manifest` must be an image manifest naming `config` (image `id`).
fn check_manifest_names(
    manifest: &RawManifest,
    id: &Digest,
    config: &[u8],
) -> Result<(), StoreError> {
    let names_config = match manifest.parse() {
        Ok(Manifest::Image(m)) => {
            m.config.digest == Digest::of(m.config.digest.algorithm(), config)
                && m.config.size == config.len() as u64
        }
        _ => false,
    };
    if !names_config || manifest.digest != Digest::of(manifest.digest.algorithm(), &manifest.bytes)
    {
        return Err(StoreError::ManifestNotForImage {
            manifest: manifest.digest.clone(),
            image: id.clone(),
        });
    }
    Ok(())
}

/// Keeps a manifest of image `id`; one already kept becomes the newest.
fn insert_manifest(tx: &Connection, id: &Digest, m: &RawManifest) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO manifests (digest, image_id, media_type, content, added)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (digest) DO UPDATE SET added = excluded.added",
        params![m.digest.as_str(), id.as_str(), m.media_type, m.bytes, unix_nanos_now()],
    )?;
    Ok(())
}

/// Sets an image's size to the sum of its layers' content sizes.
pub(crate) fn refresh_image_size(tx: &Connection, id: &Digest) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE images SET size = (
             SELECT COALESCE(SUM(l.content_size), 0) FROM image_layers il
             JOIN layers l ON l.diff_id = il.diff_id WHERE il.image_id = images.id)
         WHERE id = ?1",
        [id.as_str()],
    )?;
    Ok(())
}

/// Recomputes the size of every image using layer `diff_id`.
pub(crate) fn refresh_sizes_of_images_using(
    tx: &Connection,
    diff_id: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE images SET size = (
             SELECT COALESCE(SUM(l.content_size), 0) FROM image_layers il
             JOIN layers l ON l.diff_id = il.diff_id WHERE il.image_id = images.id)
         WHERE id IN (SELECT image_id FROM image_layers WHERE diff_id = ?1)",
        [diff_id],
    )?;
    Ok(())
}

pub(crate) fn image_in(conn: &Connection, id: &Digest) -> Result<ImageRecord, StoreError> {
    let row = conn
        .query_row(
            "SELECT config, created, size, added, last_tag_time FROM images WHERE id = ?1",
            [id.as_str()],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((config_bytes, created, size, added, last_tag_time)) = row else {
        return Err(StoreError::NoSuchImage(id.to_string()));
    };
    let config = ImageConfig::parse(&config_bytes)
        .map_err(|e| StoreError::Corrupt(format!("config of {id}: {e}")))?;

    let mut layers: Vec<LayerRecord> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT il.diff_id, il.chain_id, l.size, lb.digest, lb.media_type, lb.size, l.content_size
         FROM image_layers il JOIN layers l ON l.diff_id = il.diff_id
         LEFT JOIN layer_blobs lb ON lb.diff_id = il.diff_id
         WHERE il.image_id = ?1
         ORDER BY il.position, (lb.digest = il.diff_id) DESC, lb.digest",
    )?;
    let mut rows = stmt.query([id.as_str()])?;
    let mut last_position_diff: Option<(String, String)> = None;
    while let Some(r) = rows.next()? {
        let diff: String = r.get(0)?;
        let chain: String = r.get(1)?;
        let key = (diff.clone(), chain.clone());
        if last_position_diff.as_ref() != Some(&key) {
            layers.push(LayerRecord {
                diff_id: parse_digest(&diff)?,
                chain_id: parse_digest(&chain)?,
                uncompressed_size: r.get::<_, i64>(2)? as u64,
                content_size: r.get::<_, i64>(6)? as u64,
                blobs: Vec::new(),
            });
            last_position_diff = Some(key);
        }
        if let Some(digest) = r.get::<_, Option<String>>(3)? {
            let media: String = r.get(4)?;
            let size = r.get::<_, i64>(5)? as u64;
            let layer = layers.last_mut().expect("pushed above");
            layer.blobs.push(Descriptor::new(&media, parse_digest(&digest)?, size));
        }
    }

    let (tags, repo_digests) = names_of(conn, id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT digest, media_type, content FROM manifests WHERE image_id = ?1
         ORDER BY added DESC, digest",
    )?;
    let mut rows = stmt.query([id.as_str()])?;
    let mut manifests = Vec::new();
    while let Some(r) = rows.next()? {
        let digest: String = r.get(0)?;
        manifests.push(RawManifest {
            digest: parse_digest(&digest)?,
            media_type: r.get(1)?,
            bytes: r.get(2)?,
        });
    }
    Ok(ImageRecord {
        id: id.clone(),
        config_bytes,
        config,
        layers,
        tags,
        repo_digests,
        manifests,
        size: size as u64,
        created,
        added,
        last_tag_time,
    })
}

/// The tags and repo digests naming an image, each sorted by full form.
pub(crate) fn names_of(
    conn: &Connection,
    id: &Digest,
) -> Result<(Vec<Reference>, Vec<Reference>), StoreError> {
    let mut tags = Vec::new();
    let mut stmt = conn.prepare_cached("SELECT repository, tag FROM tags WHERE image_id = ?1")?;
    let mut rows = stmt.query([id.as_str()])?;
    while let Some(r) = rows.next()? {
        let repo: String = r.get(0)?;
        let tag: String = r.get(1)?;
        tags.push(Reference::tagged(parse_repository(&repo)?, &tag)?);
    }
    let mut digests = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT repository, digest FROM repo_digests WHERE image_id = ?1")?;
    let mut rows = stmt.query([id.as_str()])?;
    while let Some(r) = rows.next()? {
        let repo: String = r.get(0)?;
        let digest: String = r.get(1)?;
        digests.push(Reference::digested(parse_repository(&repo)?, parse_digest(&digest)?));
    }
    sort_refs(&mut tags);
    sort_refs(&mut digests);
    Ok((tags, digests))
}

/// Docker lists references sorted by their full string form.
fn sort_refs(refs: &mut [Reference]) {
    if refs.len() > 1 {
        refs.sort_by_cached_key(Reference::full);
    }
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest, StoreError> {
    Digest::parse(s).map_err(|e| StoreError::Corrupt(format!("digest {s:?}: {e}")))
}

/// A stored full repository name (`docker.io/library/busybox`) back to its parts.
pub(crate) fn parse_repository(full: &str) -> Result<Repository, StoreError> {
    let (domain, path) =
        full.split_once('/').ok_or_else(|| StoreError::Corrupt(format!("repository {full:?}")))?;
    Ok(Repository::from_parts(domain, path)?)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn unix_nanos_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}
