//! Garbage collection that is safe while pushes run, and that reads what
//! it needs from the metadata database in batches rather than holding the
//! whole registry in memory or listing the bucket.
//!
//! One collection at a time among every replica sharing the metadata
//! ([`crate::metadata::Collection::lease_collection`]). Then, in order:
//! - abandoned uploads expire; optionally, untagged manifests go: those no
//!   tag reaches, directly or as a child of a tagged index, and that do not
//!   refer (`subject`) to a manifest that is kept;
//! - blob links no manifest of their repository uses, older than the grace
//!   period, are removed ([`crate::metadata::Collection::stale_links`], a batch per
//!   transaction);
//! - stored blobs that nothing keeps (no link, no manifest reference, no
//!   manifest with that digest) and that are older than the grace period
//!   go. Which blobs are stored: on object storage, the ledger in the
//!   metadata database ([`crate::storage::BlobStore::ledger_backed`]): candidates come from
//!   one query per batch, keyset-paginated, and each batch's entries are
//!   re-checked and removed in one transaction before their objects are
//!   deleted in bulk; on the filesystem, the files themselves (a local
//!   listing), checked against the database a batch at a time;
//! - with `sweep_orphans`, objects the ledger does not know (a crash
//!   between the write and the record) go too: the one listing of the
//!   bucket, for rare runs.
//!
//! Why a push racing a collection never loses a blob: the grace period
//! covers a blob between its write and its link, and every way to a new
//! link first writes or touches the blob ([`crate::storage::BlobStore::touch`]: a put of a
//! blob already stored, a mount). Deletion is judged after the fact on
//! exactly what the push touches: the ledger entry, in the transaction
//! that removes it (the touch waits for it and then finds the entry gone,
//! so the push stores the blob anew), or the file, moved aside before its
//! age is read. A manifest put holds its links `FOR SHARE` while it
//! commits, so a link cannot go between its check and its commit; if a
//! link went before, the put is refused (`MANIFEST_BLOB_UNKNOWN`) and the
//! client uploads the blob again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use berth_reference::Digest;

use crate::error::Result;
use crate::registry::Registry;
use berth_reference::RepoName;

/// Rows a collection reads, and removes in one transaction, at a time.
pub const BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would go, change nothing.
    pub dry_run: bool,
    /// Never delete a blob modified (or a manifest pushed) more recently.
    pub grace: Duration,
    /// Uploads untouched for this long are removed.
    pub upload_expiry: Duration,
    /// Also delete manifests no tag reaches.
    pub delete_untagged: bool,
    /// Also list the whole blob store for objects the ledger does not know.
    pub sweep_orphans: bool,
    /// Rows per batch ([`BATCH`]; smaller in tests, to cross batch edges).
    pub batch_size: usize,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(30 * 60),
            upload_expiry: Duration::from_secs(24 * 3600),
            delete_untagged: false,
            sweep_orphans: false,
            batch_size: BATCH,
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_deleted: Vec<(Digest, u64)>,
    pub bytes_reclaimed: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_kept_young: usize,
    pub manifests_deleted: Vec<(String, Digest)>,
    /// Blob links no manifest used, older than the grace period.
    pub links_removed: usize,
    pub uploads_expired: usize,
    /// Leftovers of blob writes a crash interrupted.
    pub scratch_removed: usize,
    /// Objects no ledger entry named (with `sweep_orphans`), and their bytes
    /// (not in `bytes_reclaimed`).
    pub orphans_removed: usize,
    pub orphan_bytes: u64,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Registry {
    /// Runs one collection; `CollectionRunning` (a metadata error) if
    /// another process is running one on the same metadata.
    pub async fn collect_garbage(&self, opts: &GcOptions) -> Result<GcReport> {
        let lease = self.metadata().lease_collection().await?;
        let result = self.collect(opts).await;
        lease.release().await;
        result
    }

    async fn collect(&self, opts: &GcOptions) -> Result<GcReport> {
        let mut report = GcReport::default();
        self.expire_uploads(opts, &mut report).await?;
        if opts.delete_untagged {
            self.delete_untagged(opts, &mut report).await?;
        }
        let started = SystemTime::now();
        let cutoff = unix_now() - opts.grace.as_secs() as i64;
        let batch = opts.batch_size.max(1);
        self.remove_stale_links(opts.dry_run, cutoff, batch, &mut report).await?;
        // A dry run removed no link: the stale ones must not keep blobs.
        let stale_before = opts.dry_run.then_some(cutoff);
        if self.blob_store().ledger_backed() {
            self.sweep_ledger(opts.dry_run, cutoff, stale_before, batch, &mut report).await?;
        } else {
            let before = started.checked_sub(opts.grace).unwrap_or(SystemTime::UNIX_EPOCH);
            self.sweep_listing(opts.dry_run, before, stale_before, batch, &mut report).await?;
        }
        report.bytes_reclaimed = report.blobs_deleted.iter().map(|(_, n)| n).sum();
        if opts.sweep_orphans {
            let before = started.checked_sub(opts.grace).unwrap_or(SystemTime::UNIX_EPOCH);
            let (n, bytes) = self.blob_store().sweep_orphans(before, opts.dry_run).await?;
            report.orphans_removed = n;
            report.orphan_bytes = bytes;
        }
        Ok(report)
    }

    /// Links no manifest of their repository uses, older than `cutoff`.
    async fn remove_stale_links(
        &self,
        dry_run: bool,
        cutoff: i64,
        batch: usize,
        report: &mut GcReport,
    ) -> Result<()> {
        let meta = self.metadata();
        let mut after: Option<(String, Digest)> = None;
        loop {
            let at = after.as_ref().map(|(r, d)| (r.as_str(), d));
            let links = meta.stale_links(at, cutoff, batch).await?;
            let Some(last) = links.last() else { break };
            after = Some(last.clone());
            report.links_removed += if dry_run {
                links.len()
            } else {
                // Those a manifest began to use since the read stay.
                meta.unlink_stale_blobs(&links, cutoff).await?
            };
            if links.len() < batch {
                break;
            }
        }
        Ok(())
    }

    /// Object storage: candidates from the ledger, never from the bucket.
    async fn sweep_ledger(
        &self,
        dry_run: bool,
        cutoff: i64,
        stale_before: Option<i64>,
        batch: usize,
        report: &mut GcReport,
    ) -> Result<()> {
        let meta = self.metadata();
        let mut after: Option<Digest> = None;
        loop {
            let unkept = meta.unkept_objects(after.as_ref(), stale_before, batch).await?;
            let Some((last, _)) = unkept.last() else { break };
            after = Some(last.clone());
            let full = unkept.len() == batch;
            let (old, young): (Vec<_>, Vec<_>) =
                unkept.into_iter().partition(|(_, e)| e.created < cutoff);
            report.blobs_kept_young += young.len();
            if dry_run {
                report.blobs_deleted.extend(old.into_iter().map(|(d, e)| (d, e.size)));
            } else if !old.is_empty() {
                let digests: Vec<Digest> = old.into_iter().map(|(d, _)| d).collect();
                // Entries first (re-checked, locked), objects after: a crash
                // in between leaves orphans for `sweep_orphans`, never an
                // entry without its object.
                let removed = meta.remove_unkept_objects(&digests, cutoff).await?;
                let keys = removed.iter().map(|(_, e)| e.key.clone()).collect();
                self.blob_store().delete_objects(keys).await?;
                report.blobs_deleted.extend(removed.into_iter().map(|(d, e)| (d, e.size)));
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// The filesystem: its listing is the truth, checked a batch at a time.
    async fn sweep_listing(
        &self,
        dry_run: bool,
        before: SystemTime,
        stale_before: Option<i64>,
        batch: usize,
        report: &mut GcReport,
    ) -> Result<()> {
        let stored = self.blob_store().list().await?;
        for chunk in stored.chunks(batch) {
            let digests: Vec<Digest> = chunk.iter().map(|b| b.digest.clone()).collect();
            let kept = self.metadata().blobs_kept(&digests, stale_before).await?;
            for blob in chunk.iter().filter(|b| !kept.contains(&b.digest)) {
                if blob.modified >= before {
                    report.blobs_kept_young += 1;
                } else if dry_run {
                    report.blobs_deleted.push((blob.digest.clone(), blob.size));
                } else if let Some(size) =
                    self.blob_store().delete_unless_touched(&blob.digest, before).await?
                {
                    report.blobs_deleted.push((blob.digest.clone(), size));
                }
            }
        }
        Ok(())
    }

    async fn expire_uploads(&self, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
        let cutoff = unix_now() - opts.upload_expiry.as_secs() as i64;
        let now = SystemTime::now();
        let idle = |modified: SystemTime| {
            now.duration_since(modified).unwrap_or(Duration::ZERO) > opts.upload_expiry
        };
        // An upload expires when it is old and has received nothing for as
        // long: a slow upload of a large layer that still moves is kept.
        let data: HashMap<_, _> = self.blob_store().upload_list().await?.into_iter().collect();
        let mut known = HashSet::new();
        for upload in self.metadata().list_uploads().await? {
            known.insert(upload.id.clone());
            let stale = data.get(&upload.id).is_none_or(|&m| idle(m));
            if upload.started < cutoff && stale {
                report.uploads_expired += 1;
                if !opts.dry_run {
                    self.metadata().delete_upload(&upload.id).await?;
                    let _ = self.blob_store().upload_abort(&upload.id).await;
                }
            }
        }
        // Upload data without a record (a crash between the two): same expiry.
        for (id, modified) in &data {
            if !known.contains(id) && idle(*modified) {
                report.uploads_expired += 1;
                if !opts.dry_run {
                    let _ = self.blob_store().upload_abort(id).await;
                }
            }
        }
        // Writes a crash cut off leave scratch files behind.
        if !opts.dry_run {
            report.scratch_removed =
                self.blob_store().expire_scratch(now - opts.upload_expiry).await?;
        }
        Ok(())
    }

    async fn delete_untagged(&self, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
        let snapshot = self.metadata().gc_snapshot().await?;
        let key = |r: &str, d: &Digest| (r.to_owned(), d.clone());
        let by_key: HashMap<(String, Digest), &crate::metadata::ManifestRecord> =
            snapshot.manifests.iter().map(|(r, m, _)| (key(r, &m.digest), m)).collect();
        // Reachable from tags, through index children.
        let mut kept: HashSet<(String, Digest)> = HashSet::new();
        let mut stack: Vec<(String, Digest)> =
            snapshot.tags.iter().map(|(r, d)| key(r, d)).collect();
        while let Some(k) = stack.pop() {
            if !kept.insert(k.clone()) {
                continue;
            }
            if let Some(m) = by_key.get(&k) {
                stack.extend(m.children.iter().map(|c| key(&k.0, c)));
            }
        }
        // Referrers of kept manifests stay (signatures, SBOMs), repeatedly.
        loop {
            let before = kept.len();
            for (r, m, _) in &snapshot.manifests {
                if let Some(subject) = &m.subject
                    && kept.contains(&key(r, subject))
                {
                    kept.insert(key(r, &m.digest));
                    stack.extend(m.children.iter().map(|c| key(r, c)));
                }
            }
            while let Some(k) = stack.pop() {
                if kept.insert(k.clone())
                    && let Some(m) = by_key.get(&k)
                {
                    stack.extend(m.children.iter().map(|c| key(&k.0, c)));
                }
            }
            if kept.len() == before {
                break;
            }
        }
        let cutoff = unix_now() - opts.grace.as_secs() as i64;
        for (repo, m, created) in &snapshot.manifests {
            if kept.contains(&key(repo, &m.digest)) || *created > cutoff {
                continue;
            }
            if !opts.dry_run {
                let Ok(name) = RepoName::parse(repo) else { continue };
                self.delete_manifest(
                    &name,
                    &crate::registry::ManifestRef::Digest(m.digest.clone()),
                )
                .await
                .ok();
            }
            report.manifests_deleted.push((repo.clone(), m.digest.clone()));
        }
        Ok(())
    }
}
