//! URL contexts: a tarball or a plain Dockerfile fetched over http(s).

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::error::error_chain;
use crate::{BuildContext, ContextError, DockerfileArg};

pub(crate) fn is_url(spec: &str) -> bool {
    spec.starts_with("http://") || spec.starts_with("https://")
}

/// How much of an error response's body is shown.
const ERROR_BODY_LIMIT: usize = 512;

pub(crate) fn open(
    url: &str,
    file: DockerfileArg,
    stdin: &mut dyn Read,
) -> Result<BuildContext, ContextError> {
    let mut body = download(url)?;
    crate::stream::open(&mut body, "the downloaded context", "Dockerfile", file, stdin)
}

/// A file fetched over http(s), as `ADD URL` takes it.
pub struct Download {
    /// The body, rewound.
    pub file: std::fs::File,
    /// The `Last-Modified` header, in Unix seconds (what the file's mtime
    /// becomes, as docker has it).
    pub last_modified: Option<i64>,
}

/// Fetches `url` (http or https) into an unnamed temporary file.
pub fn fetch_url(url: &str) -> Result<Download, ContextError> {
    let mut last_modified = None;
    let file = download_with(url, &mut last_modified)?;
    Ok(Download { file, last_modified })
}

/// The body of `url` in an unnamed temporary file, rewound.
fn download(url: &str) -> Result<std::fs::File, ContextError> {
    download_with(url, &mut None)
}

fn download_with(
    url: &str,
    last_modified: &mut Option<i64>,
) -> Result<std::fs::File, ContextError> {
    let fail = |message: String| ContextError::Download { url: url.to_string(), message };
    let mut file = tempfile::tempfile().map_err(|source| ContextError::TempDir { source })?;
    // The caller may itself run inside an async runtime: the download gets
    // a thread and a runtime of its own.
    let target = url.to_string();
    let mut sink = file.try_clone().map_err(|source| ContextError::TempDir { source })?;
    let result = std::thread::spawn(move || -> Result<Option<i64>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(fetch(&target, &mut sink))
    })
    .join()
    .unwrap_or_else(|_| Err("the download thread panicked".to_string()));
    *last_modified = result.map_err(fail)?;
    file.seek(SeekFrom::Start(0)).map_err(|e| fail(e.to_string()))?;
    Ok(file)
}

async fn fetch(url: &str, sink: &mut std::fs::File) -> Result<Option<i64>, String> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| error_chain(&e))?;
    let mut response = client.get(url).send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let body = response.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(ERROR_BODY_LIMIT).collect();
        return Err(format!("failed to GET {url} with status {status}: {body}"));
    }
    let last_modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date);
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        sink.write_all(&chunk).map_err(|e| format!("writing the download: {e}"))?;
    }
    Ok(last_modified)
}

/// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, the only form servers
/// send today) in Unix seconds.
fn http_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as u32
        + 1;
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    let text = format!("{year}-{month:02}-{:02}T{h:02}:{m:02}:{s:02}Z", day.parse::<u32>().ok()?);
    berth_oci::time::parse_rfc3339(&text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates_read_as_servers_send_them() {
        assert_eq!(super::http_date("Wed, 21 Oct 2015 07:28:00 GMT"), Some(1_445_412_480));
        assert_eq!(super::http_date("Wed, 21 Oct 2015 07:28:00 PST"), None);
        assert_eq!(super::http_date("yesterday"), None);
    }
}
