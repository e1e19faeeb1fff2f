//! Deferred diff-ID verification.
//!
//! A pull checks every compressed blob against its digest while it streams,
//! but the diff ID a registry claims for it (the sha256 of the uncompressed
//! tar) can only be checked by decompressing, which costs several times
//! more CPU than the download. The store records such blobs as claims and
//! proves them here, once, before any image using them is read. A blob that
//! does not decompress to its diff ID is dropped, and so is every image that
//! rested on it alone: the outcome is the one an eager check in the pull
//! would have had, reported at the first read instead.

use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_reference::{Digest, Hasher, Reference};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::images::{parse_digest, refresh_sizes_of_images_using};
use crate::{Store, StoreError};

const UNCHECKABLE: &str = "cannot be checked against its diff ID";

/// Read size for decompressing: large enough that per-call costs vanish.
const BUFFER: usize = 256 * 1024;

/// A layer blob that failed verification, and what it took with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptLayer {
    pub diff_id: Digest,
    pub blob: Digest,
    /// What was wrong, as a predicate: "does not match its diff ID: it
    /// decompresses to sha256:...", or why it could not be checked.
    pub detail: String,
    /// Names (or short IDs) of the images removed because they needed it.
    pub removed_images: Vec<String>,
}

impl std::fmt::Display for CorruptLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer {} (blob {}) {}", self.diff_id, self.blob, self.detail)?;
        if !self.removed_images.is_empty() {
            write!(f, "; removed {} (pull again)", self.removed_images.join(", "))?;
        }
        Ok(())
    }
}

/// One claimed blob to prove.
struct Claim {
    diff_id: Digest,
    blob: Digest,
    media_type: String,
    size: u64,
}

/// How far a proof of pending layers has got, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofProgress {
    /// Another berth process is proving them; this one waits for it.
    pub waiting: bool,
    pub layers_done: usize,
    pub layers: usize,
    /// Compressed bytes of the blobs proven so far, and of all of them.
    pub bytes_done: u64,
    pub bytes: u64,
}

impl ProofProgress {
    /// Nothing (left) to prove.
    pub const NONE: ProofProgress =
        ProofProgress { waiting: false, layers_done: 0, layers: 0, bytes_done: 0, bytes: 0 };
}

/// What decompressing a claimed blob found.
struct Measured {
    diff_id: Digest,
    tar_size: u64,
    content_size: u64,
}

impl Store {
    /// Proves every layer blob recorded with an unverified diff ID (see the
    /// module doc): decompresses each once, on every core, records the
    /// layer's sizes, and marks it verified. Blobs that lie are dropped with
    /// the images that needed them, and reported as
    /// [`StoreError::CorruptLayers`] after the rest is recorded. Cheap when
    /// nothing is pending (one indexed query); safe to run from several
    /// processes at once.
    pub fn verify_pending_layers(&self) -> Result<(), StoreError> {
        if self.claims()?.is_empty() {
            return Ok(());
        }
        // One prover at a time, across processes: a second one (the first
        // read after a pull, while the pull's detached prover runs) waits,
        // then finds the work done instead of doing it twice.
        let _one_prover = match self.locks.try_proof()? {
            Some(held) => held,
            None => {
                self.report_proof(ProofProgress { waiting: true, ..ProofProgress::NONE });
                self.locks.proof()?
            }
        };
        // No blob file may vanish while it is read: take the lease, then
        // read the claims again (another prover or a removal may have run).
        self.locks.hold_shared()?;
        let claims = self.claims()?;
        if claims.is_empty() {
            self.report_proof(ProofProgress::NONE);
            return Ok(());
        }
        let results = self.measure_all(&claims);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut corrupt = Vec::new();
        for (claim, result) in claims.iter().zip(results) {
            match result {
                Ok(m) if m.diff_id == claim.diff_id => {
                    record_proof(&tx, claim, &m)?;
                }
                Ok(m) => {
                    let detail =
                        format!("does not match its diff ID: it decompresses to {}", m.diff_id);
                    corrupt.extend(drop_claim(&tx, claim, detail)?)
                }
                // Deleted by hand: as unprovable as a blob that lies, and
                // refusing every read until someone repairs it would help nobody.
                Err(e) if e.kind() == io::ErrorKind::NotFound => corrupt.extend(drop_claim(
                    &tx,
                    claim,
                    format!("{UNCHECKABLE}: its blob file is missing"),
                )?),
                Err(e) => {
                    let detail = format!("{UNCHECKABLE}: cannot decompress: {e}");
                    corrupt.extend(drop_claim(&tx, claim, detail)?)
                }
            }
        }
        tx.commit()?;
        drop(conn);
        if corrupt.is_empty() {
            return Ok(());
        }
        // The dropped blobs are unreferenced now; collect them if no berth
        // process (this one included) holds an ingest lease, else the next
        // collection does.
        let digests: Vec<String> = corrupt.iter().map(|c| c.blob.to_string()).collect();
        self.delete_blobs_if_unreferenced(&digests)?;
        Err(StoreError::CorruptLayers(corrupt))
    }

    fn claims(&self) -> Result<Vec<Claim>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT diff_id, digest, media_type, size FROM layer_blobs WHERE verified = 0
             ORDER BY size DESC",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(Claim {
                diff_id: parse_digest(r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?)?,
                blob: parse_digest(r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?)?,
                media_type: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
            });
        }
        Ok(out)
    }

    /// Measures every claim, largest first, on as many threads as there are
    /// cores (decompressing is CPU-bound; the files are usually cached).
    fn measure_all(&self, claims: &[Claim]) -> Vec<io::Result<Measured>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(claims.len());
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<io::Result<Measured>>>> =
            claims.iter().map(|_| Mutex::new(None)).collect();
        let bytes: u64 = claims.iter().map(|c| c.size).sum();
        let done = Mutex::new((0usize, 0u64));
        let observer_guard = self.proof_observer.lock().unwrap_or_else(|e| e.into_inner());
        let observer: &Option<crate::ProofObserver> = &observer_guard;
        if let Some(observe) = observer {
            observe(ProofProgress { layers: claims.len(), bytes, ..ProofProgress::NONE });
        }
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(claim) = claims.get(i) else { break };
                        let path = self.blob_path(&claim.blob);
                        let result = measure_blob(&path, &claim.media_type, &claim.diff_id);
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                        let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
                        d.0 += 1;
                        d.1 += claim.size;
                        if let Some(observe) = observer {
                            observe(ProofProgress {
                                waiting: false,
                                layers_done: d.0,
                                layers: claims.len(),
                                bytes_done: d.1,
                                bytes,
                            });
                        }
                    }
                });
            }
        });
        drop(observer_guard);
        results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| Err(io::Error::other("verification thread died")))
            })
            .collect()
    }

    /// Has every proof of pending layers report its progress to `observe`
    /// (from the proving threads, after each layer).
    pub fn on_proof_progress(&self, observe: Box<dyn Fn(ProofProgress) + Send + Sync>) {
        *self.proof_observer.lock().unwrap_or_else(|e| e.into_inner()) = Some(observe);
    }

    fn report_proof(&self, progress: ProofProgress) {
        if let Some(observe) = &*self.proof_observer.lock().unwrap_or_else(|e| e.into_inner()) {
            observe(progress);
        }
    }
}

/// Decompresses one blob, hashing (with `diff_id`'s algorithm) and measuring the tar.
fn measure_blob(
    path: &std::path::Path,
    media_type: &str,
    diff_id: &Digest,
) -> io::Result<Measured> {
    let file = io::BufReader::with_capacity(BUFFER, std::fs::File::open(path)?);
    let mut input = berth_layer::decompress(file, media_type)?;
    let mut hasher = Hasher::new(diff_id.algorithm());
    let mut sizer = berth_layer::TarWalk::new();
    let mut tar_size = 0u64;
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        io::Write::write_all(&mut sizer, &buf[..n])?;
        tar_size += n as u64;
    }
    Ok(Measured { diff_id: hasher.finish(), tar_size, content_size: sizer.content_size() })
}

/// Marks a claim proven; the first proof of a layer records its sizes.
fn record_proof(tx: &Connection, claim: &Claim, m: &Measured) -> Result<(), StoreError> {
    let diff = claim.diff_id.as_str();
    tx.execute(
        "UPDATE layer_blobs SET verified = 1 WHERE diff_id = ?1 AND digest = ?2",
        params![diff, claim.blob.as_str()],
    )?;
    let first = tx.execute(
        "UPDATE layers SET size = ?2, content_size = ?3, verified = 1
         WHERE diff_id = ?1 AND verified = 0",
        params![diff, m.tar_size as i64, m.content_size as i64],
    )?;
    if first == 1 {
        refresh_sizes_of_images_using(tx, diff)?;
    }
    Ok(())
}

/// Forgets a blob that lied. If the layer has no other blob, removes every
/// image using it (names first) and the layer. `None` if another process
/// already dropped it.
fn drop_claim(
    tx: &Connection,
    claim: &Claim,
    detail: String,
) -> Result<Option<CorruptLayer>, StoreError> {
    let diff = claim.diff_id.as_str();
    let dropped = tx.execute(
        "DELETE FROM layer_blobs WHERE diff_id = ?1 AND digest = ?2 AND verified = 0",
        params![diff, claim.blob.as_str()],
    )?;
    if dropped == 0 {
        return Ok(None);
    }
    let mut removed_images = Vec::new();
    let other_blobs: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM layer_blobs WHERE diff_id = ?1)",
        [diff],
        |r| r.get(0),
    )?;
    if !other_blobs {
        let images: Vec<String> = {
            let mut stmt =
                tx.prepare_cached("SELECT DISTINCT image_id FROM image_layers WHERE diff_id = ?1")?;
            let rows = stmt.query_map([diff], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut their_layers: Vec<String> = Vec::new();
        for image in images {
            let names = names_of_image(tx, &image)?;
            removed_images.push(match names.first() {
                Some(name) => name.clone(),
                None => parse_digest(&image)?.short().to_owned(),
            });
            let mut stmt =
                tx.prepare_cached("SELECT diff_id FROM image_layers WHERE image_id = ?1")?;
            for diff in stmt.query_map([&image], |r| r.get(0))? {
                their_layers.push(diff?);
            }
            for table in ["tags", "repo_digests", "image_layers"] {
                tx.execute(&format!("DELETE FROM {table} WHERE image_id = ?1"), [&image])?;
            }
            tx.execute("DELETE FROM images WHERE id = ?1", [&image])?;
        }
        // Their layers that no other image uses go too (their blob files
        // are left to the next collection).
        for diff in their_layers {
            tx.execute(
                "DELETE FROM layers WHERE diff_id = ?1 AND NOT EXISTS
                     (SELECT 1 FROM image_layers WHERE diff_id = ?1)",
                [diff],
            )?;
        }
    }
    Ok(Some(CorruptLayer {
        diff_id: claim.diff_id.clone(),
        blob: claim.blob.clone(),
        detail,
        removed_images,
    }))
}

/// An image's tags, in their familiar form, sorted.
fn names_of_image(tx: &Connection, image: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT repository, tag FROM tags WHERE image_id = ?1 ORDER BY repository, tag",
    )?;
    let rows = stmt.query_map([image], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (repo, tag) = row?;
        match Reference::parse(&format!("{repo}:{tag}")) {
            Ok(r) => out.push(r.familiar()),
            Err(_) => out.push(format!("{repo}:{tag}")),
        }
    }
    Ok(out)
}
