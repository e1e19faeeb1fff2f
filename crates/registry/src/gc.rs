//! Garbage collection that is safe while pushes run.
//!
//! Mark: every blob some repository links, every manifest's own bytes and
//! the blobs manifests reference. Sweep: stored blobs outside that set, but
//! only those older than the grace period, because a push stores a blob
//! before it links it (and an upload in progress is not a blob yet).
//! Optionally, untagged manifests go first: those no tag reaches, directly
//! or as a child of a tagged index, and that do not refer (`subject`) to a
//! manifest that is kept. Abandoned uploads expire.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use berth_reference::Digest;

use crate::error::Result;
use crate::registry::Registry;
use berth_reference::RepoName;

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
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(30 * 60),
            upload_expiry: Duration::from_secs(24 * 3600),
            delete_untagged: false,
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
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Registry {
    /// Runs one collection.
    pub async fn collect_garbage(&self, opts: &GcOptions) -> Result<GcReport> {
        let mut report = GcReport::default();
        self.expire_uploads(opts, &mut report).await?;
        if opts.delete_untagged {
            self.delete_untagged(opts, &mut report).await?;
        }
        let snapshot = self.metadata().gc_snapshot().await?;
        // A dry run deleted nothing: leave out what it would have deleted.
        let gone: HashSet<(String, Digest)> = report.manifests_deleted.iter().cloned().collect();
        let live = snapshot
            .manifests
            .iter()
            .filter(|(r, m, _)| !gone.contains(&(r.clone(), m.digest.clone())));
        let mut used_in_repo: HashSet<(String, Digest)> = HashSet::new();
        let mut marked: HashSet<Digest> = HashSet::new();
        for (repo, m, _) in live {
            marked.insert(m.digest.clone());
            for b in &m.blobs {
                marked.insert(b.clone());
                used_in_repo.insert((repo.clone(), b.clone()));
            }
        }
        // A link no manifest uses keeps its blob only during the grace
        // period (a push links layers before it sends the manifest).
        let cutoff = unix_now() - opts.grace.as_secs() as i64;
        for (repo, digest, linked) in snapshot.links {
            if linked >= cutoff || used_in_repo.contains(&(repo.clone(), digest.clone())) {
                marked.insert(digest);
                continue;
            }
            if opts.dry_run || self.metadata().unlink_stale_blob(&repo, &digest, cutoff).await? {
                report.links_removed += 1;
            } else {
                // Used since the snapshot.
                marked.insert(digest);
            }
        }
        let now = SystemTime::now();
        for blob in self.blob_store().list().await? {
            if marked.contains(&blob.digest) {
                continue;
            }
            let age = now.duration_since(blob.modified).unwrap_or(Duration::ZERO);
            if age < opts.grace {
                report.blobs_kept_young += 1;
                continue;
            }
            // Re-check just before deleting: a push may have linked it since the mark.
            if !opts.dry_run {
                if self.metadata().blob_in_use(&blob.digest).await? {
                    continue;
                }
                self.blob_store().delete(&blob.digest).await?;
            }
            report.bytes_reclaimed += blob.size;
            report.blobs_deleted.push((blob.digest, blob.size));
        }
        Ok(report)
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
