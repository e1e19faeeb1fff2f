//! `docker search`: the v1 search API (`/v1/search?q=&n=`), which Docker Hub
//! serves on `index.docker.io` and other registries on their own host.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{Target, read_limited};
use crate::error::registry_error;
use crate::hosts::{DOCKER_HUB, DOCKER_HUB_INDEX, canonical_domain};
use crate::{Client, ClientError};

/// One search hit, with the v1 API's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    results: Vec<SearchResult>,
}

impl Client {
    /// Searches registry `domain` for `term`, at most `limit` results.
    pub async fn search(
        &self,
        domain: &str,
        term: &str,
        limit: usize,
    ) -> Result<Vec<SearchResult>, ClientError> {
        let base = if canonical_domain(domain) == DOCKER_HUB {
            format!("https://{DOCKER_HUB_INDEX}")
        } else {
            self.opts.config.base_url(domain)
        };
        let url = format!("{base}/v1/search");
        let t = Target { base: &base, domain, scopes: &[] };
        let n = limit.to_string();
        let resp = self
            .send(&t, Method::GET, &url, true, &|rb| rb.query(&[("q", term), ("n", n.as_str())]))
            .await?;
        if !resp.status().is_success() {
            return Err(registry_error(resp).await);
        }
        let body = read_limited(resp, 16 << 20).await?;
        let parsed: SearchResponse = serde_json::from_slice(&body).map_err(|e| {
            ClientError::InvalidResponse { url, detail: format!("search results: {e}") }
        })?;
        let mut results = parsed.results;
        results.truncate(limit);
        Ok(results)
    }
}

impl Client {
    /// The tags of `repository` (`/v2/<name>/tags/list`, following `Link` pages).
    pub async fn list_tags(
        &self,
        repository: &berth_reference::Repository,
    ) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let domain = repository.domain();
        let base = self.opts.config.base_url(domain);
        let scopes = [format!("repository:{}:pull", repository.path())];
        let t = Target { base: &base, domain, scopes: &scopes };
        let mut url = format!("{base}/v2/{}/tags/list", repository.path());
        let mut out = Vec::new();
        for _ in 0..1000 {
            let resp = self.send(&t, Method::GET, &url, true, &|rb| rb).await?;
            if !resp.status().is_success() {
                return Err(registry_error(resp).await);
            }
            // `Link: </v2/x/tags/list?last=a&n=100>; rel="next"`
            let next = resp
                .headers()
                .get("Link")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.split_once('<')
                        .and_then(|(_, r)| r.split_once('>'))
                        .map(|(u, _)| u.to_owned())
                })
                .and_then(|u| resp.url().join(&u).ok());
            let body = read_limited(resp, 16 << 20).await?;
            let page: Tags = serde_json::from_slice(&body).map_err(|e| {
                ClientError::InvalidResponse { url: url.clone(), detail: format!("tag list: {e}") }
            })?;
            out.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => url = n.to_string(),
                None => break,
            }
        }
        Ok(out)
    }
}
