//! Removing images (docker's `rmi` semantics), pruning, and collecting
//! unreferenced blob files.

use std::collections::{BTreeMap, HashSet};

use berth_reference::{Digest, Reference};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::images::{names_of, parse_digest, resolve_in};
use crate::{Store, StoreError};

/// What a removal did, in the order docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    /// `Untagged: busybox:musl` / `Untagged: busybox@sha256:...` (familiar form).
    Untagged(String),
    /// `Deleted: sha256:...`: the image ID, then the chain ID of each layer
    /// stack no remaining image uses, top first (docker prints chain IDs).
    Deleted(Digest),
}

/// A `label=` / `label!=` filter of `image prune` and `images --filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    /// `None`: the label must (or must not) exist with any value.
    pub value: Option<String>,
    /// `label!=`: the image must NOT match.
    pub negate: bool,
}

/// Which images `prune` removes.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// `true`: only images without tags (docker's default); `false` (`-a`):
    /// every image no container uses.
    pub dangling_only: bool,
    /// Only images created before this unix time (`until=`).
    pub until: Option<i64>,
    pub labels: Vec<LabelFilter>,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub events: Vec<RemoveEvent>,
    /// Sum of the content sizes of the layer stacks deleted (docker's
    /// "Total reclaimed space").
    pub space_reclaimed: u64,
}

impl LabelFilter {
    /// Parses docker's `key`, `key=value` (the part after `label=`).
    pub fn parse(spec: &str, negate: bool) -> LabelFilter {
        match spec.split_once('=') {
            Some((k, v)) => LabelFilter { key: k.to_owned(), value: Some(v.to_owned()), negate },
            None => LabelFilter { key: spec.to_owned(), value: None, negate },
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
        }
    }
}

/// Docker's label matching: every `label=` filter must match; if there are
/// `label!=` filters and all of them match, the image is excluded.
pub fn labels_match(filters: &[LabelFilter], labels: &BTreeMap<String, String>) -> bool {
    let (negative, positive): (Vec<_>, Vec<_>) = filters.iter().partition(|f| f.negate);
    positive.iter().all(|f| f.matches(labels))
        && (negative.is_empty() || !negative.iter().all(|f| f.matches(labels)))
}

/// The outcome of one removal inside its transaction.
#[derive(Default)]
struct Removal {
    events: Vec<RemoveEvent>,
    /// Uncompressed bytes of the layer stacks deleted.
    freed: u64,
    /// Blob files that may have lost their last reference.
    blob_candidates: Vec<String>,
}

/// A container pinning an image: (short ID, running).
type ContainerUse = Option<(String, bool)>;

impl Store {
    /// Docker's `rmi NAME`: untags a named reference; deletes the image when
    /// its last reference goes (or when removed by ID), then the layers no
    /// other image uses. `force` allows removing by ID an image several
    /// repositories reference. Returns the events in docker's order. All metadata changes are one
    /// transaction; blob files are deleted after it (see the crate docs).
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<RemoveEvent>, StoreError> {
        let removal = {
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let removal = remove_in(&tx, name, force)?;
            tx.commit()?;
            removal
        };
        self.delete_blobs_if_unreferenced(&removal.blob_candidates)?;
        Ok(removal.events)
    }

    /// `image prune`: removes dangling images (or, with `dangling_only`
    /// false, every image no container uses) matching the filters, each as
    /// docker's `rmi` would, then collects unreferenced blob files.
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport, StoreError> {
        let candidates: Vec<(Digest, Option<i64>, Vec<u8>)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT id, created, config FROM images
                 WHERE NOT EXISTS (SELECT 1 FROM containers c WHERE c.image_id = images.id)
                 ORDER BY created DESC, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Vec<u8>>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, created, config) = row?;
                out.push((parse_digest(&id)?, created, config));
            }
            out
        };
        let mut report = PruneReport::default();
        let mut blob_candidates = Vec::new();
        for (id, created, config) in candidates {
            if options.until.is_some_and(|until| created.unwrap_or(i64::MIN) > until) {
                continue;
            }
            if !options.labels.is_empty() {
                let labels =
                    berth_oci::ImageConfig::parse(&config).map(|c| c.labels()).unwrap_or_default();
                if !labels_match(&options.labels, &labels) {
                    continue;
                }
            }
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (tags, digests) = match names_of(&tx, &id) {
                Ok(names) => names,
                Err(StoreError::NoSuchImage(_)) => continue,
                Err(e) => return Err(e),
            };
            let names: Vec<String> = if tags.is_empty() && digests.is_empty() {
                vec![id.to_string()]
            } else if options.dangling_only && !tags.is_empty() {
                continue;
            } else {
                let mut refs: Vec<Reference> = tags.into_iter().chain(digests).collect();
                refs.sort_by_cached_key(Reference::full);
                refs.iter().map(Reference::full).collect()
            };
            for name in names {
                match remove_in(&tx, &name, false) {
                    Ok(r) => {
                        report.events.extend(r.events);
                        report.space_reclaimed += r.freed;
                        blob_candidates.extend(r.blob_candidates);
                    }
                    // Docker skips images it cannot remove (in use, gone).
                    Err(StoreError::Conflict { .. } | StoreError::NoSuchImage(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            tx.commit()?;
        }
        self.delete_blobs_if_unreferenced(&blob_candidates)?;
        // Also collect what earlier removals had to leave behind.
        self.collect_garbage()?;
        Ok(report)
    }

    /// Deletes those of `digests` that nothing references any more, under
    /// the exclusive lock, re-checking references under it. When the lock is
    /// busy (a pull or load is running) the files stay, as orphans that the
    /// next collection or `system check --repair` removes.
    pub(crate) fn delete_blobs_if_unreferenced(
        &self,
        digests: &[String],
    ) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        let Some(_exclusive) = self.locks.try_exclusive()? else {
            return Ok(());
        };
        let conn = self.conn();
        for digest in digests {
            if blob_referenced(&conn, digest)? {
                continue;
            }
            let Ok(digest) = Digest::parse(digest) else { continue };
            match std::fs::remove_file(self.blob_path(&digest)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Deletes every blob file and temp file nothing references, if the
    /// exclusive lock is free. Returns the number of files deleted and their
    /// bytes, or `None` when the lock was busy.
    pub fn collect_garbage(&self) -> Result<Option<(usize, u64)>, StoreError> {
        let Some(_exclusive) = self.locks.try_exclusive()? else {
            return Ok(None);
        };
        Ok(Some(self.sweep_unreferenced()?))
    }

    /// The sweep itself; the caller holds the exclusive lock.
    pub(crate) fn sweep_unreferenced(&self) -> Result<(usize, u64), StoreError> {
        let referenced = referenced_blobs(&self.conn())?;
        let mut count = 0;
        let mut bytes = 0;
        for dir in [self.root.join("blobs/sha256"), self.root.join("tmp")] {
            let is_tmp = dir.ends_with("tmp");
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !is_tmp && referenced.contains(&format!("sha256:{name}")) {
                    continue;
                }
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        count += 1;
                        bytes += len;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok((count, bytes))
    }
}

/// Every blob digest the metadata references: image configs and layer blobs.
pub(crate) fn referenced_blobs(conn: &Connection) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT id FROM images UNION SELECT digest FROM layer_blobs")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn blob_referenced(conn: &Connection, digest: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM images WHERE id = ?1)
             OR EXISTS (SELECT 1 FROM layer_blobs WHERE digest = ?1)",
        [digest],
        |r| r.get(0),
    )?)
}

/// Docker's `ImageDelete`, inside the caller's transaction.
fn remove_in(conn: &Connection, name: &str, force: bool) -> Result<Removal, StoreError> {
    let id = resolve_in(conn, name).map_err(|e| match e {
        // Docker names the image as the user wrote it.
        StoreError::NoSuchImage(_) => StoreError::NoSuchImage(name.to_owned()),
        e => e,
    })?;
    let mut refs = all_refs(conn, &id)?;
    let container = container_using(conn, &id)?;
    let mut removal = Removal::default();

    let mut quiet = false;
    if !is_id_prefix(&id, name) {
        let mut named = Reference::parse(name)?;
        if named.digest().is_some() {
            named =
                Reference::digested(named.repository().clone(), named.digest().unwrap().clone());
        } else {
            named = named.with_default_tag();
        }
        if let Some((container, _)) = &container
            && !force
            && is_single_reference(&refs)
        {
            return Err(StoreError::ReferenceInUse {
                reference: name.to_owned(),
                container: container.clone(),
                image: id.short().to_owned(),
            });
        }
        delete_ref(conn, &named)?;
        removal.events.push(RemoveEvent::Untagged(named.familiar()));
        refs.retain(|r| *r != named);

        // Removing a repository's last tag also drops its digest references.
        if named.digest().is_none()
            && !refs.iter().any(|r| r.digest().is_none() && r.repository() == named.repository())
        {
            let (same_repo, others): (Vec<_>, Vec<_>) =
                refs.into_iter().partition(|r| r.repository() == named.repository());
            for r in same_repo {
                delete_ref(conn, &r)?;
                removal.events.push(RemoveEvent::Untagged(r.familiar()));
            }
            refs = others;
        }
        if !refs.is_empty() {
            return Ok(removal);
        }
        quiet = true;
    } else if is_single_reference(&refs) {
        if let Some(conflict) = conflict(&id, &refs, &container, force, false) {
            return Err(conflict);
        }
        for r in std::mem::take(&mut refs) {
            delete_ref(conn, &r)?;
            removal.events.push(RemoveEvent::Untagged(r.familiar()));
        }
    }

    if let Some(conflict) = conflict(&id, &refs, &container, force, true) {
        // After untagging, an image that stays in use is simply kept.
        if quiet {
            return Ok(removal);
        }
        return Err(conflict);
    }
    for r in refs {
        delete_ref(conn, &r)?;
        removal.events.push(RemoveEvent::Untagged(r.familiar()));
    }
    delete_image(conn, &id, &mut removal)?;
    Ok(removal)
}

/// Docker's `checkImageDeleteConflict`: a running container is a hard
/// conflict; other names (when `check_refs`) and stopped containers are
/// soft ones, ignored with `force`.
fn conflict(
    id: &Digest,
    refs: &[Reference],
    container: &ContainerUse,
    force: bool,
    check_refs: bool,
) -> Option<StoreError> {
    let image = id.short().to_owned();
    if let Some((c, true)) = container {
        let reason = format!("image is being used by running container {c}");
        return Some(StoreError::Conflict { image, hard: true, reason });
    }
    if force {
        return None;
    }
    if check_refs && !refs.is_empty() {
        let reason = "image is referenced in multiple repositories".to_owned();
        return Some(StoreError::Conflict { image, hard: false, reason });
    }
    if let Some((c, false)) = container {
        let reason = format!("image is being used by stopped container {c}");
        return Some(StoreError::Conflict { image, hard: false, reason });
    }
    None
}

/// Deletes the image row and its layers; records docker's `Deleted:` events
/// (image ID, then each chain ID no remaining image uses, top first).
fn delete_image(conn: &Connection, id: &Digest, removal: &mut Removal) -> Result<(), StoreError> {
    let layers: Vec<(String, String, i64)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT il.diff_id, il.chain_id, l.content_size FROM image_layers il
             JOIN layers l ON l.diff_id = il.diff_id
             WHERE il.image_id = ?1 ORDER BY il.position DESC",
        )?;
        let rows = stmt.query_map([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    conn.execute("DELETE FROM image_layers WHERE image_id = ?1", [id.as_str()])?;
    conn.execute("DELETE FROM images WHERE id = ?1", [id.as_str()])?;
    removal.events.push(RemoveEvent::Deleted(id.clone()));
    removal.blob_candidates.push(id.to_string());

    let mut chains_shared = false;
    for (diff_id, chain_id, size) in &layers {
        if !chains_shared {
            let used: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM image_layers WHERE chain_id = ?1)",
                [chain_id],
                |r| r.get(0),
            )?;
            if used {
                // Every lower stack is a prefix of this one, so used too.
                chains_shared = true;
            } else {
                removal.events.push(RemoveEvent::Deleted(parse_digest(chain_id)?));
                removal.freed += *size as u64;
            }
        }
        let still_used: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM image_layers WHERE diff_id = ?1)",
            [diff_id],
            |r| r.get(0),
        )?;
        if !still_used {
            let mut stmt =
                conn.prepare_cached("SELECT digest FROM layer_blobs WHERE diff_id = ?1")?;
            let blobs = stmt.query_map([diff_id], |r| r.get::<_, String>(0))?;
            for blob in blobs {
                removal.blob_candidates.push(blob?);
            }
            conn.execute("DELETE FROM layers WHERE diff_id = ?1", [diff_id])?;
        }
    }
    Ok(())
}

/// Tags and repo digests of an image, sorted by full form (docker's order).
fn all_refs(conn: &Connection, id: &Digest) -> Result<Vec<Reference>, StoreError> {
    let (tags, digests) = names_of(conn, id)?;
    let mut refs: Vec<Reference> = tags.into_iter().chain(digests).collect();
    refs.sort_by_cached_key(Reference::full);
    Ok(refs)
}

fn delete_ref(conn: &Connection, r: &Reference) -> Result<(), StoreError> {
    let repository = r.repository().full_name();
    match r.digest() {
        Some(d) => conn.execute(
            "DELETE FROM repo_digests WHERE repository = ?1 AND digest = ?2",
            params![repository, d.as_str()],
        )?,
        None => conn.execute(
            "DELETE FROM tags WHERE repository = ?1 AND tag = ?2",
            params![repository, r.tag().unwrap_or(berth_reference::DEFAULT_TAG)],
        )?,
    };
    Ok(())
}

fn container_using(conn: &Connection, id: &Digest) -> Result<ContainerUse, StoreError> {
    let row: Option<(String, bool)> = conn
        .query_row(
            "SELECT id, running FROM containers WHERE image_id = ?1 ORDER BY running DESC, id LIMIT 1",
            [id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.map(|(c, running)| (c.chars().take(12).collect(), running)))
}

/// Docker's `isImageIDPrefix`: whether the user named the image by its ID.
fn is_id_prefix(id: &Digest, name: &str) -> bool {
    id.as_str().starts_with(name) || id.hex().starts_with(name)
}

/// Docker's `isSingleReference`: all references in one repository, with at
/// most one tag.
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let mut single: Option<&Reference> = None;
    let mut canonical_repos = HashSet::new();
    for r in refs {
        if r.digest().is_some() {
            canonical_repos.insert(r.repository());
        } else if single.is_none() {
            single = Some(r);
        } else {
            return false;
        }
    }
    let single = single.unwrap_or(&refs[0]);
    canonical_repos.len() == 1 && canonical_repos.contains(single.repository())
}
