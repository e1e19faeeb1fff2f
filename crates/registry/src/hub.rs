//! Docker Hub's additions to a repository, as a service the HTTP layer and
//! the admin commands call: search, stars, owner descriptions, privacy and
//! the summary the settings page shows. Free of HTTP; policy (who may do
//! what) is the caller's, through [`crate::auth`].

use std::sync::Arc;

use berth_reference::RepoName;

use crate::error::{Error, Result};
use crate::metadata::browse::{RenameOutcome, RepoPage, RepoQuery, TagOrder, TagPage, Viewer};
use crate::metadata::{MetadataError, MetadataStore, RepoSummary, UserRecord};

/// Why bare names could not be merged into `library/`.
#[derive(Debug, thiserror::Error)]
pub enum NameMergeError {
    #[error(
        "with --auth, NAME and library/NAME are one repository (an official image), but this registry holds both for: {}; delete one of each pair (berth registry repo rm NAME or library/NAME) and start again",
        .0.join(", ")
    )]
    Clash(Vec<String>),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// The longest description an owner may set (characters).
pub const DESCRIPTION_MAX: usize = 1000;
/// The longest full description (Docker Hub's overview), in characters.
pub const FULL_DESCRIPTION_MAX: usize = 25_000;

#[derive(Clone)]
pub struct Hub {
    meta: Arc<dyn MetadataStore>,
}

impl Hub {
    pub fn new(meta: Arc<dyn MetadataStore>) -> Hub {
        Hub { meta }
    }

    /// Which private repositories `user` may see in listings, by Docker Hub's
    /// rules (see [`crate::auth::policy`]): an administrator all, a user
    /// those of their own and their organisations' namespaces, anonymous
    /// visitors none. `accounts`: whether the registry has accounts at all
    /// (without them nothing is private).
    pub async fn viewer(&self, accounts: bool, user: Option<&UserRecord>) -> Result<Viewer> {
        Ok(match (accounts, user) {
            (false, _) => Viewer::Everything,
            (true, Some(u)) if u.admin => Viewer::Everything,
            (true, Some(u)) => {
                let mut namespaces = self.meta.orgs_of(&u.name).await?;
                namespaces.push(u.name.clone());
                Viewer::Namespaces(namespaces)
            }
            (true, None) => Viewer::Namespaces(Vec::new()),
        })
    }

    /// One page of repositories, filtered and visible to `query.viewer`.
    pub async fn browse(&self, query: &RepoQuery) -> Result<RepoPage> {
        Ok(self.meta.query_repositories(query).await?)
    }

    /// One page of a repository's tags.
    pub async fn tags(
        &self,
        repo: &RepoName,
        order: TagOrder,
        offset: usize,
        limit: usize,
    ) -> Result<TagPage> {
        Ok(self.meta.tag_details(repo.as_str(), order, offset, limit).await?)
    }

    /// Whether `name` is an organisation marked as a verified publisher.
    pub async fn verified_publisher(&self, name: &str) -> Result<bool> {
        Ok(self.meta.org(name).await?.is_some_and(|o| o.verified))
    }

    /// Whether `name` is a user or an organisation.
    pub async fn account_exists(&self, name: &str) -> Result<bool> {
        Ok(self.meta.user(name).await?.is_some() || self.meta.org(name).await?.is_some())
    }

    /// Whether `user` starred `repo`.
    pub async fn starred(&self, user: &str, repo: &RepoName) -> Result<bool> {
        Ok(self.meta.starred(user, repo.as_str()).await?)
    }

    /// `user` stars (`on`) or unstars `repo`, which must exist.
    pub async fn star(&self, user: &str, repo: &RepoName, on: bool) -> Result<()> {
        self.existing(repo).await?;
        if on {
            self.meta.star(user, repo.as_str()).await?;
        } else {
            self.meta.unstar(user, repo.as_str()).await?;
        }
        Ok(())
    }

    /// Sets what the owner says of an existing repository; `None` leaves a
    /// field as it is. Texts longer than Docker Hub allows are refused.
    pub async fn describe(
        &self,
        repo: &RepoName,
        description: Option<&str>,
        full_description: Option<&str>,
    ) -> Result<()> {
        let too_long = |field: &str, text: Option<&str>, max: usize| {
            if text.is_some_and(|t| t.chars().count() > max) {
                return Err(Error::InvalidRequest(format!(
                    "{field} is longer than {max} characters"
                )));
            }
            Ok(())
        };
        too_long("description", description, DESCRIPTION_MAX)?;
        too_long("full_description", full_description, FULL_DESCRIPTION_MAX)?;
        self.existing(repo).await?;
        self.meta
            .set_repository_owner_description(repo.as_str(), description, full_description)
            .await?;
        Ok(())
    }

    /// Makes a repository private or public (it need not exist yet).
    pub async fn set_private(&self, repo: &RepoName, private: bool) -> Result<()> {
        Ok(self.meta.set_repository_private(repo.as_str(), private).await?)
    }

    /// An existing repository as search and the settings page show it.
    pub async fn summary(&self, repo: &RepoName) -> Result<RepoSummary> {
        self.meta
            .repository_summary(repo.as_str())
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.to_string()))
    }

    /// Records that `user` (empty: anonymous) pushed `tag` just now.
    pub async fn record_push(&self, repo: &RepoName, tag: &str, user: &str) -> Result<()> {
        Ok(self.meta.record_pusher(repo.as_str(), tag, user).await?)
    }

    /// Makes every one-component repository the official `library/NAME`
    /// it means with accounts on (see [`crate::auth::official_name`]).
    /// Refuses, changing nothing, when a root holds both names. Returns the
    /// names moved.
    pub async fn merge_official_names(&self) -> std::result::Result<Vec<String>, NameMergeError> {
        let bare = self.meta.bare_repositories().await?;
        let mut clashes = Vec::new();
        for name in &bare {
            if self.meta.repository_exists(&format!("library/{name}")).await? {
                clashes.push(name.clone());
            }
        }
        if !clashes.is_empty() {
            return Err(NameMergeError::Clash(clashes));
        }
        let mut moved = Vec::new();
        for name in bare {
            let official = format!("library/{name}");
            match self.meta.rename_repository(&name, &official).await? {
                RenameOutcome::Renamed => moved.push(name),
                RenameOutcome::NoSource => {}
                RenameOutcome::TargetExists => return Err(NameMergeError::Clash(vec![name])),
            }
        }
        Ok(moved)
    }

    async fn existing(&self, repo: &RepoName) -> Result<()> {
        if self.meta.repository_exists(repo.as_str()).await? {
            Ok(())
        } else {
            Err(Error::NameUnknown(repo.to_string()))
        }
    }
}
