//! `berth image copy` run as the real binary: a `berth registry serve`
//! child on a free loopback port, temporary stores, the docker-written
//! fixture of crates/archive/tests/fixtures.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_store::Store;

/// `tiny:1.0` in docker-save-tiny.tar: its ID as docker computed it.
const TINY_1: &str = "sha256:10c8ad10f068440a28cb379771bad7e68d4379aaa436e528cbae203d604e339e";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../archive/tests/fixtures").join(name)
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir(env.path("docker")).unwrap();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// berth with the store at `root` and no login or config from the user.
    fn command(&self, root: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--root")
            .arg(self.path(root))
            .env("BERTH_CONFIG", self.path("no-config.toml"))
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("REGISTRY_AUTH_FILE", self.path("no-auth.json"))
            .env_remove("BERTH_REGISTRY_ROOT")
            .env_remove("BERTH_REGISTRY_CONFIG")
            .env_remove("BERTH_REGISTRY_ADDR")
            .env_remove("BERTH_REGISTRY_AUTH");
        c
    }

    fn run(&self, root: &str, args: &[&str]) -> Output {
        self.command(root).args(args).stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, root: &str, args: &[&str]) -> String {
        let out = self.run(root, args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, root: &str, args: &[&str]) -> String {
        let out = self.run(root, args);
        assert_eq!(out.status.code(), Some(1), "berth {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn image_id(&self, root: &str, name: &str) -> String {
        Store::open(&self.path(root)).unwrap().resolve(name).unwrap().to_string()
    }
}

/// A `berth registry serve` child, killed and reaped however the test ends.
struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn start(env: &Env) -> Registry {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let child = env
                .command("registry-root")
                .args(["registry", "serve", "--addr", &addr, "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut reg = Registry { child, addr };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if reg.child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile
                }
                if healthy(&reg.addr) {
                    return reg;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(reg);
        }
        panic!("the registry did not start");
    }
}

fn healthy(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

#[test]
fn registry_to_oci_dir_to_docker_archive_to_store_keeps_the_image_id() {
    let env = Env::new();
    let reg = Registry::start(&env);
    env.ok("a", &["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    assert_eq!(env.image_id("a", "tiny:1.0"), TINY_1);

    // Store → registry (the layers, stored uncompressed, are gzipped on the way).
    let remote = format!("docker://{}/team/tiny:1", reg.addr);
    env.ok("a", &["image", "copy", "-q", "berth:tiny:1.0", &remote]);

    // Registry → OCI layout directory, named as skopeo names it.
    let dir = env.path("layout");
    let oci = format!("oci:{}:v1", dir.display());
    env.ok("b", &["image", "copy", "-q", &remote, &oci]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "v1");
    assert!(dir.join("oci-layout").is_file());
    assert!(!dir.join("manifest.json").exists());

    // OCI directory → docker-archive → a fresh store.
    let tar = env.path("tiny.tar");
    let archive = format!("docker-archive:{}:copied:v1", tar.display());
    env.ok("b", &["image", "copy", "-q", &oci, &archive]);
    let out = env.ok(
        "c",
        &["image", "copy", &format!("docker-archive:{}", tar.display()), "berth:copied:v2"],
    );
    assert_eq!(out.trim(), format!("Copied image ID: {TINY_1}"));
    assert_eq!(env.image_id("c", "copied:v2"), TINY_1);
    // The archive named the image as asked; `berth load` reads it as well.
    env.ok("d", &["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(env.image_id("d", "copied:v1"), TINY_1);

    // Registry → store directly: same ID, with the registry's digest recorded.
    env.ok("e", &["image", "copy", "-q", &remote, "pulled:1"]);
    assert_eq!(env.image_id("e", "pulled:1"), TINY_1);
    let store = Store::open(&env.path("e")).unwrap();
    let record = store.image(&store.resolve("pulled:1").unwrap()).unwrap();
    assert_eq!(record.repo_digests.len(), 1);
    assert!(record.repo_digests[0].to_string().starts_with(&format!("{}/team/tiny@", reg.addr)));

    // Nothing but the two stores, the layout, the archive and the
    // registry's root were left behind (no scratch directories).
    let mut left: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["a", "b", "c", "d", "docker", "e", "layout", "registry-root", "tiny.tar"]);
}

#[test]
fn a_pulled_image_is_proven_at_its_first_read_and_copies_again() {
    let env = Env::new();
    let reg = Registry::start(&env);
    env.ok("a", &["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    let name = format!("{}/team/tiny:1", reg.addr);
    env.ok("a", &["image", "copy", "-q", "berth:tiny:1.0", &format!("docker://{name}")]);

    // The pull returns once the blobs are in; a detached berth proves the
    // diff IDs meanwhile, without any read of the store asking for it.
    env.ok("b", &["pull", "-q", &name]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let store = Store::open(&env.path("b")).unwrap();
        let layers = store.stored_layers().unwrap();
        assert!(!layers.is_empty());
        if layers.iter().all(|l| l.verified) {
            break;
        }
        assert!(Instant::now() < deadline, "the pulled layers were never proven");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Without it (killed, say), the diff IDs stay claims ...
    let db = rusqlite::Connection::open(env.path("b").join("berth.db")).unwrap();
    db.execute_batch(
        "UPDATE layer_blobs SET verified = 0; UPDATE layers SET verified = 0, size = 0, content_size = 0;",
    )
    .unwrap();
    drop(db);
    {
        let store = Store::open(&env.path("b")).unwrap();
        let layers = store.stored_layers().unwrap();
        assert!(layers.iter().all(|l| !l.verified));
    }
    // ... which a copy from the registry into the same store proves.
    env.ok("b", &["image", "copy", "-q", &format!("docker://{name}"), "berth:again:1"]);
    assert_eq!(env.image_id("b", "again:1"), TINY_1);
    let store = Store::open(&env.path("b")).unwrap();
    assert!(store.stored_layers().unwrap().iter().all(|l| l.verified));
    drop(store);
    // The first read shows docker's sizes for the pulled image.
    let listed = env.ok("b", &["images", "--format", "{{.Repository}} {{.Size}}"]);
    let loaded = env.ok("a", &["images", "--format", "{{.Size}}", "tiny:1.0"]);
    assert!(listed.contains(&format!("{}/team/tiny {}", reg.addr, loaded.trim())), "{listed}");
}

#[test]
fn bad_transports_and_places_are_clear_errors_that_change_nothing() {
    let env = Env::new();
    env.ok("a", &["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    let dir = env.path("out");
    for (src, dst, text) in [
        ("dir:/tmp/x", "oci:/tmp/y", "unsupported transport \"dir\" in \"dir:/tmp/x\""),
        ("tiny:1.0", "ftp://example.com/x", "unsupported transport \"ftp\""),
        ("tiny:1.0", "bogus:/tmp/y", "unknown transport \"bogus\" in \"bogus:/tmp/y\""),
        ("nope:1", "oci:/tmp/never", "No such image: nope:1"),
        ("berth:", "oci:/tmp/never", "name the image"),
        ("tiny:1.0", "oci-archive:/tmp/never.tar:v1", "name the image in full"),
        ("oci:/nonexistent/layout", "berth:x:1", "not an OCI layout directory"),
    ] {
        let err = env.fails("a", &["image", "copy", src, dst]);
        assert!(err.contains(text), "{src} {dst}: {err}");
    }
    assert!(!Path::new("/tmp/never").exists() && !Path::new("/tmp/never.tar").exists());

    // An existing directory that is not a layout is not written into.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), b"x").unwrap();
    let err = env.fails("a", &["image", "copy", "tiny:1.0", &format!("oci:{}", dir.display())]);
    assert!(err.contains("exists and is not an OCI image layout"), "{err}");
    assert!(!err.contains("invalid archive"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    // An archive holding two images needs a name.
    let err = env.fails(
        "a",
        &[
            "image",
            "copy",
            &format!("docker-archive:{}", fixture("docker-save-tiny.tar").display()),
            "berth:x:1",
        ],
    );
    assert!(err.contains("holds 2 images"), "{err}");
    let store = Store::open(&env.path("a")).unwrap();
    assert!(store.resolve("x:1").is_err());
    drop(store);

    let err = env.fails("a", &["image", "copy", "tiny:1.0", "docker://127.0.0.1:1/x@sha256:0000000000000000000000000000000000000000000000000000000000000000"]);
    assert!(err.contains("cannot copy to a digest reference"), "{err}");

    // A layout with a corrupted layer: refused, and the store it was
    // copied into keeps nothing of it.
    let layout = env.path("layout");
    env.ok("a", &["image", "copy", "-q", "tiny:1.0", &format!("oci:{}:v1", layout.display())]);
    let blobs = layout.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&biggest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&biggest, bytes).unwrap();
    let err = env.fails("f", &["image", "copy", &format!("oci:{}:v1", layout.display()), "bad:1"]);
    assert!(err.contains("digest") || err.contains("diff ID"), "{err}");
    let left = std::fs::read_dir(env.path("f").join("blobs/sha256")).unwrap().count();
    assert_eq!(left, 0, "blobs of a failed copy were kept");
    // (The same copy from the intact layout in "a" fills that directory.)
    assert!(std::fs::read_dir(env.path("a").join("blobs/sha256")).unwrap().count() > 0);
}

/// The manifest digest in `berth push`'s last line (`TAG: digest: D size: N`).
fn pushed_digest(out: &str) -> String {
    let last = out.lines().last().unwrap_or_default();
    let (_, rest) = last.split_once(": digest: ").unwrap_or_else(|| panic!("{out}"));
    rest.split_whitespace().next().unwrap().to_owned()
}

/// One HTTP/1.1 request on loopback; the status line and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {content_type}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&answer[..split]).lines().next().unwrap().to_owned();
    (status, answer[split + 4..].to_vec())
}

#[test]
fn manifest_digests_survive_pull_tag_push_and_copy() {
    let env = Env::new();
    let reg = Registry::start(&env);
    let at = |name: &str| format!("{}/{name}", reg.addr);
    env.ok("a", &["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);

    // A first push writes a manifest; the store keeps it, so pushing the
    // same image under another name sends the same bytes.
    env.ok("a", &["tag", "tiny:1.0", &at("team/tiny:1")]);
    let first = pushed_digest(&env.ok("a", &["push", &at("team/tiny:1")]));
    env.ok("a", &["tag", "tiny:1.0", &at("other/tiny:2")]);
    assert_eq!(pushed_digest(&env.ok("a", &["push", &at("other/tiny:2")])), first);

    // The same manifest in other spacing (as another tool may write it):
    // bytes no serialiser of berth's would produce, so only keeping them
    // keeps this digest.
    let docker = "application/vnd.docker.distribution.manifest.v2+json";
    let (status, bytes) = http(&reg.addr, "GET", "/v2/team/tiny/manifests/1", docker, b"");
    assert!(status.contains(" 200 "), "{status}");
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let fancy = serde_json::to_vec_pretty(&value).unwrap();
    let (status, _) = http(&reg.addr, "PUT", "/v2/team/tiny/manifests/fancy", docker, &fancy);
    assert!(status.contains(" 201 "), "{status}");
    let fancy_digest = berth_reference::Digest::sha256_of(&fancy).to_string();
    assert_ne!(fancy_digest, first);

    // Pulled, retagged and pushed from another store: the same digest.
    env.ok("b", &["pull", "-q", &at("team/tiny:fancy")]);
    env.ok("b", &["tag", &at("team/tiny:fancy"), &at("mirror/tiny:1")]);
    assert_eq!(pushed_digest(&env.ok("b", &["push", &at("mirror/tiny:1")])), fancy_digest);
    let store = Store::open(&env.path("b")).unwrap();
    let record = store.image(&store.resolve(&at("team/tiny:fancy")).unwrap()).unwrap();
    assert_eq!(record.manifests.len(), 1);
    assert_eq!(record.manifests[0].bytes, fancy);
    drop(store);

    // Registry to registry, and store to registry: the source's digest.
    let copy = |root: &str, from: String, to: &str| {
        env.ok(root, &["image", "copy", &from, &format!("docker://{}", at(to))])
    };
    let out = copy("c", format!("docker://{}", at("team/tiny:fancy")), "copy/tiny:1");
    assert!(out.contains(&format!("@{fancy_digest}")), "{out}");
    assert!(!out.contains("written anew"), "{out}");
    let out = copy("b", format!("berth:{}", at("team/tiny:fancy")), "c2/tiny:1");
    assert!(out.contains(&format!("@{fancy_digest}")), "{out}");
    // What the registry serves is those bytes.
    let (_, served) = http(&reg.addr, "GET", "/v2/copy/tiny/manifests/1", docker, b"");
    assert_eq!(served, fancy);
}
