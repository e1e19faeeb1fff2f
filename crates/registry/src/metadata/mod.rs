//! Registry metadata, one trait per concern: [`Distribution`] (repositories,
//! manifests, tags, blob links, referrers), [`Uploads`], [`Accounts`] (users
//! and organisations), [`HubSettings`] (privacy, descriptions, search,
//! stars) and [`Collection`] (what garbage collection needs), and for the
//! website and access tokens, in [`browse`], [`AccessTokens`], [`Sessions`]
//! and [`Browse`]; [`MetadataStore`] is all of them as one object.
//!
//! They are the boundary a PostgreSQL implementation will also sit behind,
//! so they speak only in domain values (validated names, [`Digest`]s,
//! records) and promise nothing SQLite-specific: each method is one
//! transaction; lists come back sorted by byte order of the name.
//! [`SqliteMetadata`] is the embedded default, [`PostgresMetadata`] the
//! shared database of several replicas. Every implementation must pass
//! each concern's suite in [`testing`] ([`testing::run_suite`] runs them all).
//!
//! Callers validate names and tags before they get here; the store checks
//! only referential integrity.

pub mod browse;
mod postgres;
mod sqlite;
pub mod testing;

/// Every concern's trait, for code that calls them on a concrete store.
pub mod prelude {
    pub use super::browse::{AccessTokens, Browse, Sessions};
    pub use super::{Accounts, Collection, Distribution, HubSettings, MetadataStore, Uploads};
}

use std::collections::BTreeMap;

use async_trait::async_trait;
use berth_reference::Digest;

use crate::storage::UploadId;

pub use browse::{AccessTokens, Browse, Sessions};
pub use postgres::{PG_SCHEMA_VERSION, PostgresMetadata};
pub use sqlite::{SCHEMA_VERSION, SqliteMetadata, schema_version};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("database: {0}")]
    Database(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    /// A manifest names a blob its repository does not hold (checked in the
    /// same transaction that stores the manifest).
    #[error("blob {0} is not in the repository")]
    MissingBlob(Digest),
    /// The file was written by a newer berth; opening it would lose data.
    #[error("{path}: schema version {found} is newer than this berth knows ({known})")]
    SchemaTooNew { path: String, found: i64, known: i64 },
    /// Another process holds the collection lease ([`Collection::lease_collection`]).
    #[error("garbage collection is already running on another replica")]
    CollectionRunning,
}

/// A manifest as the registry indexes it (its bytes live in blob storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The manifest this one refers to (`subject`), for the referrers API.
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    /// Blobs it needs (config and layers).
    pub blobs: Vec<Digest>,
    /// Manifests it needs (an index's children).
    pub children: Vec<Digest>,
}

/// An upload in progress and the repository it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: UploadId,
    pub repository: String,
    /// Seconds since the Unix epoch.
    pub started: i64,
}

/// An account that can log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// A bcrypt hash (`$2b$...` / `$2y$...`), never the password.
    pub password_hash: String,
    pub admin: bool,
}

/// An organisation: a namespace its members may push to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    pub name: String,
    /// A verified publisher.
    pub verified: bool,
    pub members: Vec<String>,
}

/// A repository as search shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    pub name: String,
    /// The owner's description if set and not empty, else the image label's.
    pub description: Option<String>,
    /// The owner's long description (Docker Hub's overview), if set.
    pub full_description: Option<String>,
    pub stars: u64,
    pub private: bool,
}

/// Everything garbage collection needs to know, read in one transaction.
#[derive(Debug, Clone, Default)]
pub struct GcSnapshot {
    /// Every manifest with its repository and creation time (Unix seconds).
    pub manifests: Vec<(String, ManifestRecord, i64)>,
    /// Every tag: repository and the manifest it points at.
    pub tags: Vec<(String, Digest)>,
    /// Every blob link: repository, blob, when it was linked (Unix seconds).
    pub links: Vec<(String, Digest, i64)>,
}

/// The right to collect garbage (a PostgreSQL session holding an advisory
/// lock, or a locked file beside the SQLite database): given back by
/// [`CollectionLease::release`], or, less promptly, when dropped.
pub struct CollectionLease(futures_util::future::BoxFuture<'static, ()>);

impl CollectionLease {
    /// A lease that `release` gives back; it owns whatever holds the lease,
    /// so dropping it unawaited gives the lease back as well.
    pub fn new(release: impl std::future::Future<Output = ()> + Send + 'static) -> CollectionLease {
        CollectionLease(Box::pin(release))
    }

    pub async fn release(self) {
        self.0.await
    }
}

/// What a [`ChangeFeed`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The feed is connected: from now on every change is reported.
    Live,
    /// A tag or manifest of this repository changed (or the repository went).
    Repository(String),
    /// The feed lost its connection: changes may go unreported until the
    /// next [`Change::Live`].
    Lost,
}

/// Changes to tags and manifests made by any process sharing the metadata,
/// so that a replica may cache what it reads and drop it when told.
pub struct ChangeFeed {
    receiver: tokio::sync::broadcast::Receiver<Change>,
    live: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ChangeFeed {
    /// A feed reading `receiver`; `live` tells whether its source is
    /// connected (set before each [`Change::Live`] or [`Change::Lost`] is sent).
    pub fn new(
        receiver: tokio::sync::broadcast::Receiver<Change>,
        live: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> ChangeFeed {
        ChangeFeed { receiver, live }
    }

    /// Whether every change is being reported right now.
    pub fn is_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The next change; `None` once the source has stopped. A subscriber
    /// that fell behind and missed changes is told to start over: `Live`
    /// (drop everything, then trust the feed) or `Lost`.
    pub async fn recv(&mut self) -> Option<Change> {
        use tokio::sync::broadcast::error::RecvError;
        match self.receiver.recv().await {
            Ok(change) => Some(change),
            Err(RecvError::Lagged(_)) => {
                Some(if self.is_live() { Change::Live } else { Change::Lost })
            }
            Err(RecvError::Closed) => None,
        }
    }
}

/// Repositories, blob links, manifests, tags and referrers: what the
/// distribution API reads and writes.
#[async_trait]
pub trait Distribution: Send + Sync {
    /// A feed of changes made by every process sharing this metadata, where
    /// the store has one; `None` where it does not (a cache must then
    /// expire on its own).
    async fn subscribe_changes(&self) -> Option<ChangeFeed> {
        None
    }

    /// Whether the repository has ever received a blob or manifest (and was not deleted).
    async fn repository_exists(&self, repo: &str) -> Result<bool, MetadataError>;

    /// Up to `limit` repository names after `after`, sorted.
    async fn list_repositories(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, MetadataError>;

    /// Removes a repository with its tags, manifests and blob links.
    async fn delete_repository(&self, repo: &str) -> Result<bool, MetadataError>;

    /// Records that `repo` holds blob `digest` (creating the repository).
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), MetadataError>;

    /// The size of `digest` if `repo` holds it.
    async fn blob_link(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, MetadataError>;

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, MetadataError>;

    /// Stores a manifest (idempotent) and points each of `tags` at it, in
    /// one transaction: on any error no tag has moved. Creates the
    /// repository. Every blob in `record.blobs` must be linked in `repo` at
    /// commit time (`MissingBlob` otherwise), so a concurrent garbage
    /// collection cannot strand the manifest. `record.children` need not
    /// exist (a sparse index names children never pushed).
    async fn put_manifest(
        &self,
        repo: &str,
        record: &ManifestRecord,
        tags: &[&str],
    ) -> Result<(), MetadataError>;

    async fn manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetadataError>;

    /// Removes a manifest and every tag pointing at it.
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, MetadataError>;

    async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>, MetadataError>;

    /// Up to `limit` tags after `after`, sorted.
    async fn list_tags(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, MetadataError>;

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, MetadataError>;

    /// Manifests in `repo` whose subject is `subject`.
    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, MetadataError>;

    /// Up to `limit` repositories that hold `digest`, sorted.
    async fn blob_repositories(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<String>, MetadataError>;
}

/// Uploads in progress.
#[async_trait]
pub trait Uploads: Send + Sync {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), MetadataError>;

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, MetadataError>;

    async fn delete_upload(&self, id: &UploadId) -> Result<bool, MetadataError>;

    async fn list_uploads(&self) -> Result<Vec<UploadRecord>, MetadataError>;
}

/// Users and organisations (one namespace for both).
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates a user; `false` if the name is taken by a user or an organisation.
    async fn create_user(&self, user: &UserRecord) -> Result<bool, MetadataError>;

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, MetadataError>;

    /// Every user, sorted by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>, MetadataError>;

    /// Up to `limit` users from position `offset` in name order, and how
    /// many users there are.
    async fn users_page(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<UserRecord>, u64), MetadataError>;

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, MetadataError>;

    /// Removes a user and their organisation memberships.
    async fn delete_user(&self, name: &str) -> Result<bool, MetadataError>;

    /// Creates an organisation; `false` if the name is taken.
    async fn create_org(&self, name: &str) -> Result<bool, MetadataError>;

    async fn org(&self, name: &str) -> Result<Option<OrgRecord>, MetadataError>;

    async fn set_org_verified(&self, name: &str, verified: bool) -> Result<bool, MetadataError>;

    /// Adds a member (both must exist; `false` otherwise).
    async fn add_org_member(&self, org: &str, user: &str) -> Result<bool, MetadataError>;

    async fn remove_org_member(&self, org: &str, user: &str) -> Result<bool, MetadataError>;

    /// The secret stored as `name` (the token signing key), storing
    /// `candidate` first if there is none: every replica sharing the
    /// database gets the same one, whichever asked first.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, MetadataError>;
}

/// What Docker Hub adds to a repository: privacy, descriptions, search
/// and stars.
#[async_trait]
pub trait HubSettings: Send + Sync {
    /// Marks a repository private or public (it need not exist yet).
    async fn set_repository_private(&self, repo: &str, private: bool) -> Result<(), MetadataError>;

    async fn repository_private(&self, repo: &str) -> Result<bool, MetadataError>;

    /// Sets (or with `None` clears) a repository's description.
    async fn set_repository_description(
        &self,
        repo: &str,
        description: Option<&str>,
    ) -> Result<(), MetadataError>;

    /// Sets the descriptions the repository's owner chose; `None` leaves a
    /// field as it was. A non-empty owner description wins over the label's.
    async fn set_repository_owner_description(
        &self,
        repo: &str,
        description: Option<&str>,
        full_description: Option<&str>,
    ) -> Result<(), MetadataError>;

    /// One existing repository as search would show it; `None` if it does not exist.
    async fn repository_summary(&self, repo: &str) -> Result<Option<RepoSummary>, MetadataError>;

    /// Existing repositories whose name or description contains `query`
    /// (case-insensitively), most starred first, then by name; at most `limit`.
    async fn search_repositories(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<RepoSummary>, MetadataError>;

    /// `user` stars `repo`; `false` if it already had.
    async fn star(&self, user: &str, repo: &str) -> Result<bool, MetadataError>;

    async fn unstar(&self, user: &str, repo: &str) -> Result<bool, MetadataError>;
}

/// What garbage collection reads and removes.
#[async_trait]
pub trait Collection: Send + Sync {
    /// The size of `digest` if any repository holds it.
    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<Option<u64>, MetadataError>;

    async fn gc_snapshot(&self) -> Result<GcSnapshot, MetadataError>;

    /// Removes the link of `digest` from `repo` if it was made before
    /// `linked_before` and no manifest of `repo` references it (one
    /// transaction). `true` if removed.
    async fn unlink_stale_blob(
        &self,
        repo: &str,
        digest: &Digest,
        linked_before: i64,
    ) -> Result<bool, MetadataError>;

    /// Whether anything still needs `digest`: a link, a manifest reference,
    /// or a manifest with that digest, in any repository.
    async fn blob_in_use(&self, digest: &Digest) -> Result<bool, MetadataError>;

    /// One collection at a time among every process sharing this metadata:
    /// `CollectionRunning` while another holds the lease.
    async fn lease_collection(&self) -> Result<CollectionLease, MetadataError>;

    /// Up to `limit` links after `after` (by repository, then digest) made
    /// before `linked_before` that no manifest of their repository references.
    async fn stale_links(
        &self,
        after: Option<(&str, &Digest)>,
        linked_before: i64,
        limit: usize,
    ) -> Result<Vec<(String, Digest)>, MetadataError>;

    /// [`Collection::unlink_stale_blob`] for each of `links`, in one
    /// transaction; how many went.
    async fn unlink_stale_blobs(
        &self,
        links: &[(String, Digest)],
        linked_before: i64,
    ) -> Result<usize, MetadataError>;

    /// Those of `digests` something keeps: a link, a manifest reference or a
    /// manifest with that digest. With `stale_before`, links made before it
    /// that no manifest of their repository uses do not count (what a dry
    /// run sees: the links a collection would remove first).
    async fn blobs_kept(
        &self,
        digests: &[Digest],
        stale_before: Option<i64>,
    ) -> Result<std::collections::HashSet<Digest>, MetadataError>;

    /// Up to `limit` blobs of the object ledger after `after` (by digest)
    /// that nothing keeps (as [`Collection::blobs_kept`] counts), whatever
    /// their age, with their entries.
    async fn unkept_objects(
        &self,
        after: Option<&Digest>,
        stale_before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(Digest, crate::storage::ObjectEntry)>, MetadataError>;

    /// Removes from the object ledger those of `digests` recorded (or
    /// touched) before `created_before` that nothing keeps, in one
    /// transaction that locks their entries against a concurrent touch;
    /// returns what it removed, whose objects the caller then deletes.
    async fn remove_unkept_objects(
        &self,
        digests: &[Digest],
        created_before: i64,
    ) -> Result<Vec<(Digest, crate::storage::ObjectEntry)>, MetadataError>;
}

/// Everything the registry keeps besides blob bytes: each concern's trait,
/// as one object. An implementation implements the eight traits (and passes
/// every suite in [`testing`]); this one comes with them.
pub trait MetadataStore:
    Distribution
    + Uploads
    + Accounts
    + HubSettings
    + Collection
    + AccessTokens
    + Sessions
    + Browse
    + 'static
{
}

impl<T> MetadataStore for T where
    T: Distribution
        + Uploads
        + Accounts
        + HubSettings
        + Collection
        + AccessTokens
        + Sessions
        + Browse
        + 'static
{
}
