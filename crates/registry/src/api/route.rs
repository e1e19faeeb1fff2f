//! Which endpoint a `/v2/<rest>` path names.

use crate::error::{Error, Result};
use berth_reference::RepoName;

/// An endpoint of the distribution API, with its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Catalog,
    Manifest(RepoName, String),
    Blob(RepoName, String),
    /// `/blobs/uploads/` (empty id: start) or `/blobs/uploads/<id>`.
    Upload(RepoName, String),
    Tags(RepoName),
    Referrers(RepoName, String),
}

impl Route {
    /// The repository the route names, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Route::Catalog => None,
            Route::Manifest(r, _)
            | Route::Blob(r, _)
            | Route::Upload(r, _)
            | Route::Tags(r)
            | Route::Referrers(r, _) => Some(r),
        }
    }

    /// The same route on Docker Hub's name of its repository (see
    /// [`crate::auth::official_name`]).
    pub fn official(self) -> Result<Route> {
        let map = |r: RepoName| crate::auth::official_name(r).map_err(Error::from);
        Ok(match self {
            Route::Catalog => Route::Catalog,
            Route::Manifest(r, x) => Route::Manifest(map(r)?, x),
            Route::Blob(r, x) => Route::Blob(map(r)?, x),
            Route::Upload(r, x) => Route::Upload(map(r)?, x),
            Route::Tags(r) => Route::Tags(map(r)?),
            Route::Referrers(r, x) => Route::Referrers(map(r)?, x),
        })
    }

    /// Parses the path after `/v2/`. `None`: not an API path (404); an
    /// error: an API path with an invalid repository name.
    pub fn parse(rest: &str) -> Option<Result<Route>> {
        if rest == "_catalog" {
            return Some(Ok(Route::Catalog));
        }
        let segs: Vec<String> = rest.split('/').map(super::percent_decode).collect();
        let n = segs.len();
        if n < 3 {
            return None;
        }
        let name = |k: usize| RepoName::parse(&segs[..k].join("/")).map_err(Error::from);
        let last = segs[n - 1].clone();
        let route = match (segs[n - 2].as_str(), last.as_str()) {
            ("tags", "list") => name(n - 2).map(Route::Tags),
            ("manifests", _) => name(n - 2).map(|r| Route::Manifest(r, last)),
            ("referrers", _) => name(n - 2).map(|r| Route::Referrers(r, last)),
            ("blobs", "uploads") => name(n - 2).map(|r| Route::Upload(r, String::new())),
            ("blobs", _) => name(n - 2).map(|r| Route::Blob(r, last)),
            ("uploads", _) if n >= 4 && segs[n - 3] == "blobs" => {
                name(n - 3).map(|r| Route::Upload(r, last))
            }
            _ => return None,
        };
        Some(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Route {
        Route::parse(s).expect("api path").expect("valid name")
    }

    #[test]
    fn multi_component_names() {
        let r = RepoName::parse("a/b/c").unwrap();
        assert_eq!(ok("a/b/c/manifests/latest"), Route::Manifest(r.clone(), "latest".into()));
        assert_eq!(ok("a/b/c/tags/list"), Route::Tags(r.clone()));
        assert_eq!(ok("a/b/c/blobs/uploads/"), Route::Upload(r.clone(), String::new()));
        assert_eq!(ok("a/b/c/blobs/uploads"), Route::Upload(r.clone(), String::new()));
        assert_eq!(ok("a/b/c/blobs/uploads/x"), Route::Upload(r.clone(), "x".into()));
        assert_eq!(ok("a/b/c/blobs/sha256:ab"), Route::Blob(r.clone(), "sha256:ab".into()));
        // A component may itself be called "manifests".
        let m = RepoName::parse("x/manifests").unwrap();
        assert_eq!(ok("x/manifests/manifests/v1"), Route::Manifest(m, "v1".into()));
        assert_eq!(ok("_catalog"), Route::Catalog);
    }

    #[test]
    fn bad_names_and_paths() {
        assert!(Route::parse("a/../b/manifests/x").unwrap().is_err());
        assert!(Route::parse("Upper/manifests/x").unwrap().is_err());
        let long = format!("{}/manifests/x", "a".repeat(256));
        assert!(Route::parse(&long).unwrap().is_err());
        assert!(Route::parse("a/nothing").is_none());
        assert!(Route::parse("a/b/whatever").is_none());
    }
}
