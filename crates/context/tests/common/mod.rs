//! Real servers on loopback for the remote contexts: a small HTTP/1.1
//! server (fixed routes, or git's CGI program), and `git daemon`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

pub struct Response {
    pub status: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status: status.to_string(), headers: Vec::new(), body: body.into() }
    }
}

type Handler = dyn Fn(Request) -> Response + Send + Sync;

/// An HTTP server on 127.0.0.1, stopped (and joined) on drop.
pub struct HttpServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(handler: impl Fn(Request) -> Response + Send + Sync + 'static) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut workers = Vec::new();
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let handler = handler.clone();
                workers.push(thread::spawn(move || serve(conn, &*handler)));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        HttpServer { port, stop, thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, handler: &Handler) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if let Some(n) = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        reader.read_exact(&mut body).unwrap();
    } else if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let request =
        Request { method, path: path.to_string(), query: query.to_string(), headers, body };
    let response = handler(request);
    let mut out = conn;
    let mut head = format!("HTTP/1.1 {}\r\nConnection: close\r\n", response.status);
    head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&response.body);
    let _ = out.shutdown(Shutdown::Both);
}

/// `git http-backend` as a CGI program serving the repositories in `root`.
pub fn git_http_backend(root: PathBuf) -> impl Fn(Request) -> Response + Send + Sync {
    move |req: Request| {
        let mut cmd = Command::new("git");
        cmd.arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", &req.method)
            .env("PATH_INFO", &req.path)
            .env("QUERY_STRING", &req.query)
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("CONTENT_LENGTH", req.body.len().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (header, var) in [
            ("content-type", "CONTENT_TYPE"),
            ("content-encoding", "HTTP_CONTENT_ENCODING"),
            ("git-protocol", "GIT_PROTOCOL"),
        ] {
            if let Some(v) = req.headers.get(header) {
                cmd.env(var, v);
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let body = req.body;
        let writer = thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let out = output.stdout;
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
        let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
        let Some((end, sep)) = split else {
            return Response::new("500 Internal Server Error", "bad CGI output");
        };
        let mut response = Response::new("200 OK", out[end + sep..].to_vec());
        for line in String::from_utf8_lossy(&out[..end]).lines() {
            let Some((k, v)) = line.split_once(':') else { continue };
            if k.eq_ignore_ascii_case("status") {
                response.status = v.trim().to_string();
            } else {
                response.headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        response
    }
}

/// Whether the system `git` runs; prints why a test is skipped if not.
pub fn have_git() -> bool {
    match Command::new("git").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("skipped: no usable `git` on PATH");
            false
        }
    }
}

/// Where git keeps its programs (`git --exec-path`).
pub fn exec_path() -> PathBuf {
    let out = Command::new("git").arg("--exec-path").output().unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A free loopback port (free when asked; the caller binds it at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `git daemon` serving every repository under `base`, killed on drop.
pub struct GitDaemon {
    pub port: u16,
    child: Child,
}

impl GitDaemon {
    pub fn start(base: &Path) -> Option<GitDaemon> {
        for _ in 0..5 {
            let port = free_port();
            // The daemon's own binary: `git daemon` would run it as a child
            // that killing `git` leaves behind.
            let child = Command::new(exec_path().join("git-daemon"))
                .arg("--reuseaddr")
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg("--export-all")
                .arg("--informative-errors")
                .arg(base)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let Ok(mut child) = child else {
                eprintln!("skipped: `git daemon` cannot be started");
                return None;
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: the port was taken meanwhile, try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(GitDaemon { port, child });
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        eprintln!("skipped: `git daemon` did not start listening");
        None
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs git for a fixture, isolated from the user's configuration.
pub fn git(dir: &Path, args: &[&str]) {
    git_output(dir, args);
}

/// [`git`], returning what it printed.
pub fn git_output(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "berth")
        .env("GIT_AUTHOR_EMAIL", "berth@example.com")
        .env("GIT_COMMITTER_NAME", "berth")
        .env("GIT_COMMITTER_EMAIL", "berth@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Files under `root` as a dumb HTTP server serves them.
pub fn static_files(root: PathBuf) -> impl Fn(Request) -> Response + Send + Sync {
    move |req: Request| {
        let rel = req.path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return Response::new("403 Forbidden", "");
        }
        match std::fs::read(root.join(rel)) {
            Ok(bytes) => Response::new("200 OK", bytes),
            Err(_) => Response::new("404 Not Found", "not found"),
        }
    }
}
