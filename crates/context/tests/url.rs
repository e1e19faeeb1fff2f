//! URL contexts: a tarball or a plain Dockerfile over HTTP on loopback.

mod common;

use std::io::Write;
use std::path::Path;

use berth_context::{ContextError, ContextKind, open};
use common::{HttpServer, Response};

fn tarball() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in
        [("Dockerfile", "FROM remote\n"), ("alt/Dockerfile", "FROM alt\n"), ("f", "f")]
    {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn server() -> HttpServer {
    let tgz = tarball();
    HttpServer::start(move |req| match req.path.as_str() {
        "/ctx.tar.gz" => Response::new("200 OK", tgz.clone()),
        "/Dockerfile" => Response::new("200 OK", "FROM plain\n"),
        _ => Response::new("404 Not Found", "no such thing\n"),
    })
}

#[test]
fn a_tarball_url_is_downloaded_and_unpacked() {
    let server = server();
    let ctx = open(&server.url("/ctx.tar.gz"), None, &mut std::io::empty()).unwrap();
    assert_eq!(ctx.kind, ContextKind::Archive);
    assert_eq!(ctx.dockerfile, "FROM remote\n");
    let files: Vec<_> = ctx.walk(Path::new("")).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(
        files,
        [Path::new("Dockerfile"), Path::new("alt"), Path::new("alt/Dockerfile"), Path::new("f")]
    );
    let ctx =
        open(&server.url("/ctx.tar.gz"), Some("alt/Dockerfile"), &mut std::io::empty()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM alt\n");
    let ctx = open(&server.url("/ctx.tar.gz"), Some("-"), &mut &b"FROM stdin\n"[..]).unwrap();
    assert_eq!(ctx.dockerfile, "FROM stdin\n");
}

#[test]
fn a_dockerfile_url_is_a_context_without_files() {
    let server = server();
    let ctx = open(&server.url("/Dockerfile"), None, &mut std::io::empty()).unwrap();
    assert_eq!(ctx.kind, ContextKind::Empty);
    assert_eq!(ctx.dockerfile, "FROM plain\n");
    assert_eq!(ctx.dockerfile_name, "Dockerfile");
    assert!(ctx.walk(Path::new("")).unwrap().is_empty());
}

#[test]
fn a_failing_download_says_what_the_server_said() {
    let server = server();
    let url = server.url("/gone");
    let err = open(&url, None, &mut std::io::empty()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unable to prepare context: unable to download remote context {url}: failed to GET {url} with status 404 Not Found: no such thing"
        )
    );
    let url = format!("http://127.0.0.1:{}/ctx.tar.gz", common::free_port());
    let err = open(&url, None, &mut std::io::empty()).unwrap_err();
    assert!(matches!(err, ContextError::Download { .. }), "{err}");
    assert!(
        err.to_string().contains("Connection refused") || err.to_string().contains("connect"),
        "{err}"
    );
}
