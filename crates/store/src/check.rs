//! `system check`: verify every blob and every reference; optionally repair.

use std::collections::{HashMap, HashSet};

use berth_reference::Digest;
use rusqlite::TransactionBehavior;

use crate::blobs::digest_file;
use crate::remove::referenced_blobs;
use crate::{Store, StoreError};

/// One thing `check` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A file under `blobs/` whose content does not hash to its name (or
    /// whose name is not a digest).
    CorruptBlob { name: String },
    /// A layer blob the metadata lists that is missing, corrupt, or of the
    /// wrong size.
    MissingBlob { digest: String },
    /// An image that cannot be used: its config or one of its layers is
    /// missing or corrupt, or its layers disagree with its config.
    BrokenImage { id: String, reason: String },
    /// A tag or repo digest pointing at no image.
    DanglingName { name: String },
    /// A blob file nothing references.
    OrphanBlob { digest: String },
    /// A leftover temp file of an interrupted write.
    TempFile { name: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::CorruptBlob { name } => write!(f, "corrupt blob: {name}"),
            Problem::MissingBlob { digest } => write!(f, "missing blob: {digest}"),
            Problem::BrokenImage { id, reason } => write!(f, "broken image {id}: {reason}"),
            Problem::DanglingName { name } => write!(f, "name without image: {name}"),
            Problem::OrphanBlob { digest } => write!(f, "unreferenced blob: {digest}"),
            Problem::TempFile { name } => write!(f, "leftover temp file: tmp/{name}"),
        }
    }
}

/// The outcome of [`Store::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub blobs_checked: usize,
    pub images_checked: usize,
    pub problems: Vec<Problem>,
    /// Whether `problems` were repaired.
    pub repaired: bool,
}

impl Problem {
    /// Leftovers (unreferenced blobs, temp files) waste space but break
    /// nothing: a removal that raced an ingest leaves them by design.
    pub fn is_garbage(&self) -> bool {
        matches!(self, Problem::OrphanBlob { .. } | Problem::TempFile { .. })
    }
}

impl CheckReport {
    /// Whether every name leads to an intact image (garbage aside).
    pub fn is_consistent(&self) -> bool {
        self.problems.iter().all(Problem::is_garbage)
    }
}

impl Store {
    /// Verifies every blob's digest and size and every reference (tags ->
    /// images -> layers -> blobs). With `repair`, removes what cannot be
    /// trusted: corrupt blobs, images with a missing or corrupt config or
    /// layer (and their names), orphan blobs and temp files. Images a
    /// container uses are reported but never removed.
    ///
    /// Runs under the exclusive store lock (waiting for writers to finish),
    /// so it sees no half-done ingest; refuses to run from a `Store` that
    /// already wrote blobs (it would wait for itself).
    pub fn check(&self, repair: bool) -> Result<CheckReport, StoreError> {
        if self.locks.holds_shared() {
            return Err(StoreError::Io(std::io::Error::other(
                "check needs the exclusive store lock, but this store is ingesting",
            )));
        }
        let _exclusive = self.locks.exclusive()?;
        let mut report = CheckReport::default();

        // 1. Every blob file hashes to its name.
        let mut good: HashMap<String, u64> = HashMap::new();
        let mut corrupt_files = Vec::new();
        for entry in std::fs::read_dir(self.root.join("blobs/sha256"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            report.blobs_checked += 1;
            let expected = Digest::parse(&format!("sha256:{name}")).ok();
            let actual = digest_file(&entry.path())?;
            match expected {
                Some(d) if d == actual.0 => {
                    good.insert(d.to_string(), actual.1);
                }
                _ => {
                    report.problems.push(Problem::CorruptBlob { name: name.clone() });
                    corrupt_files.push(entry.path());
                }
            }
        }
        for entry in std::fs::read_dir(self.root.join("tmp"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            report.problems.push(Problem::TempFile { name });
        }

        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;

        // 2. Layer blobs exist with their recorded size.
        let mut bad_layer_blobs = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT diff_id, digest, size FROM layer_blobs")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })?;
            for row in rows {
                let (diff_id, digest, size) = row?;
                if good.get(&digest) != Some(&(size as u64)) {
                    report.problems.push(Problem::MissingBlob { digest: digest.clone() });
                    bad_layer_blobs.push((diff_id, digest));
                }
            }
        }
        let bad_blob_set: HashSet<(String, String)> = bad_layer_blobs.iter().cloned().collect();

        // 3. Every image: config intact, layers match the config, and every
        // layer has at least one intact blob.
        let mut broken = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT id, config FROM images")?;
            let images = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut layer_stmt = tx.prepare(
                "SELECT il.position, il.diff_id, lb.digest FROM image_layers il
                 LEFT JOIN layer_blobs lb ON lb.diff_id = il.diff_id
                 WHERE il.image_id = ?1 ORDER BY il.position",
            )?;
            for (id, config) in images {
                report.images_checked += 1;
                let reason = (|| {
                    if Digest::sha256_of(&config).as_str() != id {
                        return Some("stored config does not match the image ID".to_owned());
                    }
                    if !good.contains_key(&id) {
                        return Some("config blob missing or corrupt".to_owned());
                    }
                    let Ok(parsed) = berth_oci::ImageConfig::parse(&config) else {
                        return Some("config is not a valid image config".to_owned());
                    };
                    let mut layers: Vec<(i64, String, bool)> = Vec::new();
                    let rows = layer_stmt
                        .query_map([&id], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, Option<String>>(2)?,
                            ))
                        })
                        .ok()?;
                    for row in rows {
                        let (position, diff, blob) = row.ok()?;
                        let intact = blob
                            .is_some_and(|b| !bad_blob_set.contains(&(diff.clone(), b.clone())));
                        match layers.last_mut() {
                            Some((p, _, ok)) if *p == position => *ok |= intact,
                            _ => layers.push((position, diff, intact)),
                        }
                    }
                    let diffs: Vec<&str> = parsed.diff_ids().iter().map(Digest::as_str).collect();
                    let ours: Vec<&str> = layers.iter().map(|(_, d, _)| d.as_str()).collect();
                    if diffs != ours {
                        return Some("layers do not match the config's diff IDs".to_owned());
                    }
                    layers
                        .iter()
                        .find(|(_, _, ok)| !ok)
                        .map(|(_, d, _)| format!("layer {d} has no intact blob"))
                })();
                if let Some(reason) = reason {
                    report.problems.push(Problem::BrokenImage { id: id.clone(), reason });
                    broken.push(id);
                }
            }
        }

        // 4. Names point at images (foreign keys make this a belt-and-braces check).
        let dangling: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT repository || ':' || tag FROM tags WHERE image_id NOT IN (SELECT id FROM images)
                 UNION ALL
                 SELECT repository || '@' || digest FROM repo_digests WHERE image_id NOT IN (SELECT id FROM images)",
            )?;
            stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for name in dangling {
            report.problems.push(Problem::DanglingName { name });
        }

        // 5. Orphans: intact blobs nothing references (after removing the broken).
        let referenced = referenced_blobs(&tx)?;
        let mut orphans: Vec<&String> =
            good.keys().filter(|d| !referenced.contains(*d) || broken.contains(d)).collect();
        orphans.sort();
        for digest in orphans {
            if !broken.contains(digest) {
                report.problems.push(Problem::OrphanBlob { digest: digest.clone() });
            }
        }

        if !repair || report.problems.is_empty() {
            return Ok(report);
        }

        // Repair: metadata first (one transaction), then files.
        for (diff_id, digest) in &bad_layer_blobs {
            tx.execute(
                "DELETE FROM layer_blobs WHERE diff_id = ?1 AND digest = ?2",
                [diff_id, digest],
            )?;
        }
        for id in &broken {
            let in_use: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM containers WHERE image_id = ?1)",
                [id],
                |r| r.get(0),
            )?;
            if in_use {
                continue;
            }
            tx.execute("DELETE FROM tags WHERE image_id = ?1", [id])?;
            tx.execute("DELETE FROM repo_digests WHERE image_id = ?1", [id])?;
            tx.execute("DELETE FROM image_layers WHERE image_id = ?1", [id])?;
            tx.execute("DELETE FROM images WHERE id = ?1", [id])?;
        }
        tx.execute("DELETE FROM tags WHERE image_id NOT IN (SELECT id FROM images)", [])?;
        tx.execute("DELETE FROM repo_digests WHERE image_id NOT IN (SELECT id FROM images)", [])?;
        tx.execute(
            "DELETE FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)",
            [],
        )?;
        tx.commit()?;
        drop(conn);
        for path in corrupt_files {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.sweep_unreferenced()?;
        report.repaired = true;
        Ok(report)
    }
}
