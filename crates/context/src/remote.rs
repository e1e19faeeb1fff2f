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

/// The body of `url` in an unnamed temporary file, rewound.
fn download(url: &str) -> Result<std::fs::File, ContextError> {
    let fail = |message: String| ContextError::Download { url: url.to_string(), message };
    let mut file = tempfile::tempfile().map_err(|source| ContextError::TempDir { source })?;
    // The caller may itself run inside an async runtime: the download gets
    // a thread and a runtime of its own.
    let target = url.to_string();
    let mut sink = file.try_clone().map_err(|source| ContextError::TempDir { source })?;
    let result = std::thread::spawn(move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(fetch(&target, &mut sink))
    })
    .join()
    .unwrap_or_else(|_| Err("the download thread panicked".to_string()));
    result.map_err(fail)?;
    file.seek(SeekFrom::Start(0)).map_err(|e| fail(e.to_string()))?;
    Ok(file)
}

async fn fetch(url: &str, sink: &mut std::fs::File) -> Result<(), String> {
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
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        sink.write_all(&chunk).map_err(|e| format!("writing the download: {e}"))?;
    }
    Ok(())
}
