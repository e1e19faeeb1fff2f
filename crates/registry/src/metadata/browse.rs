//! The metadata the website and Docker Hub's account features add:
//! [`AccessTokens`] (personal access tokens), [`Sessions`] (signed-in
//! browsers) and [`Browse`] (paged, visibility-aware listings, so no page
//! loops over repositories, and the one-time merge of bare names into
//! `library/`).
//!
//! Like the other concerns, each method is one transaction and the suites
//! in [`super::testing`] hold every implementation to the same contract.

use async_trait::async_trait;
use berth_reference::Digest;

use super::{MetadataError, RepoSummary};

/// A personal access token. The secret itself is never stored: `hash` is
/// the SHA-256 of it (the secret is random and long, so a slow hash buys
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    /// Public identifier, part of the token text.
    pub id: String,
    pub user: String,
    pub description: String,
    /// `read`, `write` or `delete` (each includes the ones before).
    pub scope: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// Unix seconds.
    pub created: i64,
    pub last_used: Option<i64>,
}

/// A signed-in browser. Only the hash of the cookie's value is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session ID.
    pub hash: String,
    pub user: String,
    pub created: i64,
    pub expires: i64,
}

/// Which private repositories a viewer may see besides every public one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// An administrator: everything.
    Everything,
    /// The repositories of these namespaces (a user's own and their
    /// organisations'); empty for anonymous visitors.
    Namespaces(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoOrder {
    /// Most starred first, then by name (search).
    Stars,
    /// Most recently pushed first.
    Updated,
    Name,
}

/// A paged, filtered listing of repositories.
#[derive(Debug, Clone)]
pub struct RepoQuery {
    /// Name or description contains it, case-insensitively.
    pub text: Option<String>,
    /// Only repositories in this namespace (`NS/...`).
    pub namespace: Option<String>,
    /// Only official images (`library/...` and one-component names).
    pub official: bool,
    /// Only repositories of verified-publisher organisations.
    pub verified: bool,
    pub viewer: Viewer,
    pub order: RepoOrder,
    pub offset: usize,
    pub limit: usize,
    /// Whether [`RepoPage::total`] is wanted; without it the total may be
    /// only what this page holds (the start page needs no count).
    pub count: bool,
}

/// One repository in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoListing {
    pub summary: RepoSummary,
    /// The last push of any tag (Unix seconds; the creation time if none).
    pub updated: i64,
    /// Its namespace is a verified-publisher organisation.
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepoPage {
    /// How many match in all (for the page count), visible ones only.
    pub total: u64,
    pub items: Vec<RepoListing>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    /// Most recently pushed first.
    Newest,
    Name,
}

/// A tag as the tags page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDetail {
    pub name: String,
    pub digest: Digest,
    pub media_type: String,
    /// Unix seconds.
    pub updated: i64,
    /// Who pushed it last, when known.
    pub pushed_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagPage {
    pub total: u64,
    pub items: Vec<TagDetail>,
}

/// Why a repository could not be renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameOutcome {
    Renamed,
    NoSource,
    /// The new name is already a repository.
    TargetExists,
}

#[async_trait]
pub trait AccessTokens: Send + Sync {
    /// Stores a new token; its user must exist (`false` otherwise).
    async fn create_access_token(&self, token: &AccessTokenRecord) -> Result<bool, MetadataError>;

    async fn access_token(&self, id: &str) -> Result<Option<AccessTokenRecord>, MetadataError>;

    /// A user's tokens, newest first.
    async fn list_access_tokens(&self, user: &str)
    -> Result<Vec<AccessTokenRecord>, MetadataError>;

    /// Removes `user`'s token `id`; `false` if there was none.
    async fn delete_access_token(&self, user: &str, id: &str) -> Result<bool, MetadataError>;

    /// Records a use of the token.
    async fn touch_access_token(&self, id: &str, at: i64) -> Result<(), MetadataError>;
}

#[async_trait]
pub trait Sessions: Send + Sync {
    /// Stores a session; its user must exist (`false` otherwise). Removing
    /// the user removes its sessions.
    async fn create_session(&self, session: &SessionRecord) -> Result<bool, MetadataError>;

    /// The session with this hash, if it exists and has not expired at `now`.
    async fn session(&self, hash: &str, now: i64) -> Result<Option<SessionRecord>, MetadataError>;

    async fn delete_session(&self, hash: &str) -> Result<bool, MetadataError>;

    /// Ends every session of `user` (password changed, signed out everywhere).
    async fn delete_user_sessions(&self, user: &str) -> Result<u64, MetadataError>;
}

#[async_trait]
pub trait Browse: Send + Sync {
    /// Repositories matching `query`, visible to its viewer, one page of them.
    async fn query_repositories(&self, query: &RepoQuery) -> Result<RepoPage, MetadataError>;

    /// One page of a repository's tags.
    async fn tag_details(
        &self,
        repo: &str,
        order: TagOrder,
        offset: usize,
        limit: usize,
    ) -> Result<TagPage, MetadataError>;

    /// The organisations `user` is a member of, sorted.
    async fn orgs_of(&self, user: &str) -> Result<Vec<String>, MetadataError>;

    /// Whether `user` has starred `repo`.
    async fn starred(&self, user: &str, repo: &str) -> Result<bool, MetadataError>;

    /// Records who pushed `tag` last.
    async fn record_pusher(&self, repo: &str, tag: &str, user: &str) -> Result<(), MetadataError>;

    /// Every existing repository whose name has one component, sorted.
    async fn bare_repositories(&self) -> Result<Vec<String>, MetadataError>;

    /// Moves everything `from` holds (links, manifests, tags, settings,
    /// descriptions, stars, uploads) to the new name `to`, in one transaction.
    async fn rename_repository(&self, from: &str, to: &str)
    -> Result<RenameOutcome, MetadataError>;
}
