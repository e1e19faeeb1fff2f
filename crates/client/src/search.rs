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
