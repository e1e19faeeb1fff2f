//! `berth build` as the real binary: a context on disk, the image checked
//! through `inspect` and `save` (its config, history and files), the cache
//! and the errors. COPY, ADD and the config instructions need no root;
//! RUN needs root and runc, and is checked where they are present.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    fn berth_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(self.dir.path().join("store"))
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.berth_with(args, &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap()
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["image", "inspect", name]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v[0].clone()
    }

    /// The image's files, layers applied in order: path → (mode, uid, gid, content).
    fn files(&self, name: &str) -> BTreeMap<String, (u32, u64, u64, Vec<u8>)> {
        let archive = self.dir.path().join("saved.tar");
        self.ok(&["save", "-o", archive.to_str().unwrap(), name]);
        let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            entries.insert(path, data);
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&entries["manifest.json"]).unwrap();
        let mut files = BTreeMap::new();
        for layer in manifest[0]["Layers"].as_array().unwrap() {
            let mut tar = tar::Archive::new(&entries[layer.as_str().unwrap()][..]);
            for e in tar.entries().unwrap() {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                if h.entry_type().is_symlink() {
                    data = h.link_name().unwrap().unwrap().display().to_string().into_bytes();
                }
                let path = path.trim_end_matches('/').to_owned();
                files.insert(path, (h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap(), data));
            }
        }
        files
    }
}

/// A fresh store and a context holding the static busybox, where RUN can
/// work (root, runc); `None` (the test is skipped, and says so) elsewhere.
fn env_for_run() -> Option<Env> {
    if !can_run_containers() {
        eprintln!("skipped: RUN needs root, runc and /bin/busybox");
        return None;
    }
    let env = Env::new();
    std::fs::create_dir_all(env.dir.path().join("ctx")).unwrap();
    std::fs::copy("/bin/busybox", env.dir.path().join("ctx/busybox")).unwrap();
    Some(env)
}

fn can_run_containers() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && Path::new("/bin/busybox").exists()
        && ["/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc"].iter().any(|p| Path::new(p).exists())
}

#[test]
fn copy_and_config_instructions_make_dockers_image() {
    let env = Env::new();
    env.write("ctx/app/main.txt", "main\n");
    env.write("ctx/app/lib/util.txt", "util\n");
    env.write("ctx/app/debug.log", "noise\n");
    env.write("ctx/notes.md", "notes\n");
    env.write("ctx/.dockerignore", "**/*.log\nDockerfile\n");
    std::os::unix::fs::symlink("/etc/passwd", env.dir.path().join("ctx/link")).unwrap();
    env.write(
        "ctx/Dockerfile",
        "FROM scratch\n\
         ARG VERSION=1.0\n\
         ENV APP_VERSION=$VERSION HOME=/srv\n\
         WORKDIR $HOME/app\n\
         COPY app .\n\
         COPY --chown=1000:1000 --chmod=600 notes.md link ../docs/\n\
         LABEL org.example.version=\"${APP_VERSION}\" other=x\n\
         EXPOSE 8080 53/udp\n\
         USER 1000\n\
         VOLUME [\"/data\"]\n\
         STOPSIGNAL SIGQUIT\n\
         HEALTHCHECK --interval=5s CMD [\"/bin/check\"]\n\
         ENTRYPOINT [\"/bin/app\"]\n\
         CMD --help\n",
    );
    let out = env.ok(&[
        "build",
        "-t",
        "app:1",
        "--build-arg",
        "VERSION=2.0",
        "--label",
        "extra=yes",
        "ctx",
    ]);
    assert!(out.contains("naming to docker.io/library/app:1 done"), "{out}");
    let image = env.inspect("app:1");
    let config = &image["Config"];
    assert_eq!(
        config["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_VERSION=2.0",
            "HOME=/srv"
        ])
    );
    assert_eq!(config["WorkingDir"], "/srv/app");
    assert_eq!(config["User"], "1000");
    assert_eq!(config["Labels"]["org.example.version"], "2.0");
    assert_eq!(config["Labels"]["extra"], "yes");
    assert_eq!(config["ExposedPorts"], serde_json::json!({"53/udp": {}, "8080/tcp": {}}));
    assert_eq!(config["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(config["StopSignal"], "SIGQUIT");
    assert_eq!(config["Healthcheck"]["Test"], serde_json::json!(["CMD", "/bin/check"]));
    assert_eq!(config["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/app"]));
    assert_eq!(config["Cmd"], serde_json::json!(["/bin/sh", "-c", "--help"]));

    let files = env.files("app:1");
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "srv",
            "srv/app",
            "srv/app/lib",
            "srv/app/lib/util.txt",
            "srv/app/main.txt",
            "srv/docs",
            "srv/docs/link",
            "srv/docs/notes.md"
        ],
        "the ignored log and Dockerfile stay out; WORKDIR made /srv/app"
    );
    assert_eq!(files["srv/app/main.txt"].3, b"main\n");
    assert_eq!(files["srv/app/main.txt"].1, 0, "root owns what COPY writes");
    let notes = &files["srv/docs/notes.md"];
    assert_eq!((notes.0, notes.1, notes.2), (0o600, 1000, 1000));
    assert_eq!(files["srv/docs/link"].3, b"/etc/passwd", "a link is copied as a link");

    // One history entry per instruction; only WORKDIR and the COPYs make layers.
    let history = env.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "app:1"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 13, "{history}");
    assert!(lines.contains(&"COPY app . # buildkit"), "{history}");
    assert!(lines.contains(&"ARG VERSION=2.0"), "{history}");
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 3);
}

#[test]
fn a_rebuild_comes_from_the_cache_and_a_change_rebuilds_from_there() {
    let env = Env::new();
    env.write("ctx/a.txt", "a\n");
    env.write("ctx/b.txt", "b\n");
    env.write(
        "ctx/Dockerfile",
        "FROM scratch\nCOPY a.txt /a\nCOPY b.txt /b\nCOPY . /all/\nCMD [\"x\"]\n",
    );
    let first = env.ok(&["build", "-q", "-t", "c:1", "ctx"]);
    let id = first.trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{first}");
    let again = env.ok(&["build", "-t", "c:1", "ctx"]);
    assert_eq!(again.matches("CACHED").count(), 3, "{again}");
    assert!(again.contains(&format!("writing image {id}")), "the same image ID from the cache");

    // The same content under a new mtime is still a hit; new content is not.
    env.write("ctx/b.txt", "b\n");
    assert_eq!(env.ok(&["build", "-t", "c:1", "ctx"]).matches("CACHED").count(), 3);
    env.write("ctx/b.txt", "changed\n");
    let changed = env.ok(&["build", "-t", "c:1", "ctx"]);
    assert_eq!(changed.matches("CACHED").count(), 1, "{changed}");
    let files = env.files("c:1");
    assert_eq!(files["b"].3, b"changed\n");
    // Unchanged files come from their known hashes, changed ones are read.
    assert_eq!(
        (files["all/a.txt"].3.as_slice(), files["all/b.txt"].3.as_slice()),
        (&b"a\n"[..], &b"changed\n"[..])
    );
    let fresh = env.ok(&["build", "--no-cache", "-t", "c:2", "ctx"]);
    assert!(!fresh.contains("CACHED"), "{fresh}");
}

#[test]
fn source_date_epoch_makes_the_image_id_reproducible() {
    let env = Env::new();
    env.write("ctx/f", "same\n");
    env.write("ctx/Dockerfile", "FROM scratch\nWORKDIR /w\nCOPY f .\nENV A=1\n");
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let build = |tag: &str| {
        let out = env.berth_with(&["build", "--no-cache", "-q", "-t", tag, "ctx"], &epoch);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let one = build("r:1");
    std::fs::remove_dir_all(env.dir.path().join("store/build-cache")).unwrap();
    let two = build("r:2");
    assert_eq!(one, two);
    assert_eq!(env.inspect("r:1")["Created"], "2023-11-14T22:13:20Z");
}

#[test]
fn bad_dockerfiles_and_sources_are_refused_and_tag_nothing() {
    let env = Env::new();
    env.write("ctx/ok.txt", "ok\n");
    let cases: &[(&str, &str)] = &[
        ("FROM scratch\nRUNN echo\n", "Dockerfile:2: unknown instruction: RUNN"),
        (
            "FROM scratch\nCOPY missing.txt /\n",
            "Dockerfile:2: COPY failed: file not found in build context",
        ),
        (
            "FROM scratch\nCOPY ../outside /\n",
            "Dockerfile:2: COPY failed: forbidden path outside the build context",
        ),
        (
            "FROM scratch\nCOPY ok.txt ok.txt /dir\n",
            "the destination must be a directory and end with a /",
        ),
        ("FROM scratch\nCOPY --bogus ok.txt /\n", "Dockerfile:2: unknown flag: --bogus"),
        (
            "FROM scratch AS a\nCOPY --from=b / /\nFROM scratch AS b\nCOPY --from=a / /\n",
            "circular dependency detected on stage: a",
        ),
        ("FROM --platform=linux/s390x scratch\n", "host's platform only"),
        ("FROM scratch\nSHELL /bin/bash -c\n", "SHELL requires the arguments to be in JSON form"),
        ("FROM scratch\nONBUILD ONBUILD RUN x\n", "isn't allowed"),
    ];
    for (dockerfile, expected) in cases {
        env.write("ctx/Dockerfile", dockerfile);
        let out = env.berth(&["build", "-t", "bad:1", "ctx"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{dockerfile:?} was accepted");
        assert!(stderr.contains(expected), "{dockerfile:?}: {stderr}");
    }
    let missing = env.berth(&["build", "no-such-dir"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("unable to prepare context: path \"no-such-dir\" not found")
    );
    assert!(!env.ok(&["images"]).contains("bad"), "nothing was tagged");
}

#[test]
fn run_steps_stages_and_copy_from() {
    let Some(env) = env_for_run() else { return };
    env.write(
        "ctx/Dockerfile",
        "FROM scratch AS base\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         FROM base AS build\n\
         ARG WHO=world\n\
         RUN mkdir /out && echo \"hello $WHO\" > /out/greeting && rm /bin/ls\n\
         FROM base AS never\n\
         RUN exit 1\n\
         FROM base\n\
         COPY --from=build /out/greeting /greeting\n\
         RUN cat /greeting && test -e /bin/ls\n\
         RUN true\n",
    );
    let out = env.ok(&["build", "--build-arg", "WHO=berth", "-t", "staged:1", "ctx"]);
    assert!(out.contains("hello berth"), "the RUN's output is shown: {out}");
    assert!(!out.contains("exit 1"), "a stage the target does not need is skipped");
    let files = env.files("staged:1");
    assert_eq!(files["greeting"].3, b"hello berth\n");
    let env_config = env.inspect("staged:1")["Config"]["Env"].to_string();
    assert!(!env_config.contains("WHO"), "build args stay out of the image: {env_config}");
    let history = env.inspect("staged:1");
    let layers = history["RootFS"]["Layers"].as_array().unwrap().len();
    assert_eq!(layers, 3, "busybox, its links, the greeting (`RUN true` changes nothing)");
    let run = env.ok(&["run", "--rm", "staged:1", "/bin/cat", "/greeting"]);
    assert_eq!(run, "hello berth\n");

    env.write("ctx/Dockerfile", "FROM staged:1\nRUN echo failing; exit 3\n");
    let failed = env.berth(&["build", "-t", "failed:1", "ctx"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains("failing"), "its output is shown: {stderr}");
    assert!(
        stderr.contains("Dockerfile:2: process \"/bin/sh -c echo failing; exit 3\" did not complete successfully: exit code: 3"),
        "{stderr}"
    );
    assert!(!env.ok(&["images"]).contains("failed"));
    let leftovers: Vec<_> =
        std::fs::read_dir(env.dir.path().join("store/build")).unwrap().collect();
    assert!(leftovers.is_empty(), "every step's container is cleaned up: {leftovers:?}");
}

#[test]
fn independent_stages_build_at_once() {
    let Some(env) = env_for_run() else { return };
    env.write(
        "ctx/Dockerfile",
        "FROM scratch AS base\n\
         COPY busybox /bin/busybox\n\
         FROM base AS one\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep 1.5; echo 1 > /one\"]\n\
         FROM base AS two\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep 1.5; echo 2 > /two\"]\n\
         FROM base\n\
         COPY --from=one /one /\n\
         COPY --from=two /two /\n",
    );
    let started = std::time::Instant::now();
    env.ok(&["build", "--no-cache", "-t", "par:1", "ctx"]);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(2900),
        "the two 1.5 s stages overlapped: {took:?}"
    );
    let files = env.files("par:1");
    assert_eq!((files["one"].3.as_slice(), files["two"].3.as_slice()), (&b"1\n"[..], &b"2\n"[..]));
}

#[test]
fn run_mounts_are_seen_and_left_out_of_the_layer() {
    let Some(env) = env_for_run() else { return };
    env.write("ctx/src/input.txt", "from the context\n");
    env.write("token", "s3cret\n");
    env.write(
        "ctx/Dockerfile",
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN --mount=type=cache,target=/var/cache/app \\\n\
             --mount=type=bind,source=src,target=/mnt/src \\\n\
             --mount=type=tmpfs,target=/scratch \\\n\
             --mount=type=secret,id=token \\\n\
             cat /mnt/src/input.txt > /seen && cat /run/secrets/token >> /seen \\\n\
             && echo run >> /var/cache/app/runs && cat /var/cache/app/runs | wc -l >> /seen \\\n\
             && echo temp > /scratch/x && ! touch /mnt/src/written 2>/dev/null\n",
    );
    let secret = format!("id=token,src={}", env.dir.path().join("token").display());
    env.ok(&["build", "--secret", &secret, "-t", "mounts:1", "ctx"]);
    let files = env.files("mounts:1");
    assert_eq!(files["seen"].3, b"from the context\ns3cret\n1\n");
    for gone in ["mnt", "mnt/src", "run/secrets/token", "scratch", "var/cache/app"] {
        assert!(
            !files.contains_key(gone),
            "{gone} is a mount point, not part of the layer: {:?}",
            files.keys()
        );
    }
    // The cache mount outlives the build; a changed bind source reruns the step.
    env.write("ctx/src/input.txt", "changed\n");
    env.ok(&["build", "--secret", &secret, "-t", "mounts:2", "ctx"]);
    assert_eq!(env.files("mounts:2")["seen"].3, b"changed\ns3cret\n2\n");
    env.write(
        "ctx/Dockerfile",
        "FROM mounts:1\nRUN --mount=type=secret,id=token test ! -e /run/secrets/token\n",
    );
    let missing = env.berth(&["build", "-t", "mounts:3", "ctx"]);
    assert!(missing.status.success(), "a secret not given is left out unless required");
    env.write(
        "ctx/Dockerfile",
        "FROM mounts:1\nRUN --mount=type=secret,id=token,required cat /run/secrets/token\n",
    );
    let required = env.berth(&["build", "-t", "mounts:4", "ctx"]);
    assert!(String::from_utf8_lossy(&required.stderr).contains("secret token not found"));
}

/// Serves `body` to every request on a loopback port, with a Last-Modified.
fn serve(body: &'static [u8]) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    port
}

#[test]
fn add_fetches_a_url_and_checks_its_checksum() {
    let env = Env::new();
    let port = serve(b"downloaded\n");
    let sum = format!("sha256:{}", sha256_hex(b"downloaded\n"));
    env.write(
        "ctx/Dockerfile",
        &format!(
            "FROM scratch\nADD --checksum={sum} http://127.0.0.1:{port}/files/tool.txt /opt/\n"
        ),
    );
    env.ok(&["build", "-t", "fetched:1", "ctx"]);
    let files = env.files("fetched:1");
    let tool = &files["opt/tool.txt"];
    assert_eq!(
        (tool.0, tool.3.as_slice()),
        (0o600, &b"downloaded\n"[..]),
        "docker's mode for a download"
    );
    let wrong = format!("sha256:{}", "0".repeat(64));
    env.write(
        "ctx/Dockerfile",
        &format!("FROM scratch\nADD --checksum={wrong} http://127.0.0.1:{port}/x /x\n"),
    );
    let out = env.berth(&["build", "-t", "fetched:2", "ctx"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("digest mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child =
        Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_rebuild_with_every_step_cached_reads_no_layer() {
    let env = Env::new();
    env.write("ctx/a/one", "one\n");
    env.write("ctx/b", "two\n");
    // The second COPY asks what the first layer holds at /data and /data/b.
    env.write("ctx/Dockerfile", "FROM scratch\nCOPY a /data/a\nCOPY b /data/b\n");
    let first = env.ok(&["build", "-q", "-t", "cached:1", "ctx"]);
    let layers = env.inspect("cached:1")["RootFS"]["Layers"].clone();
    let lower = layers[0].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let blob = env.dir.path().join("store/blobs/sha256").join(&lower);
    let bytes = std::fs::read(&blob).unwrap();
    // Read now, the layer would say /data does not exist (a tar of zeros
    // is an empty archive) and the second COPY would make it: another
    // layer, another image. The rebuild must answer from what the first
    // build learnt.
    std::fs::write(&blob, vec![0u8; bytes.len()]).unwrap();
    let again = env.ok(&["build", "-q", "-t", "cached:2", "ctx"]);
    std::fs::write(&blob, &bytes).unwrap();
    assert_eq!(first, again);
}
