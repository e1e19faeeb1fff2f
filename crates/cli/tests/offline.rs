//! The offline image commands, run as the real `berth` binary against a
//! temp store whose images are written through the berth-store library
//! (real tar layers, real SQLite). Outputs are compared line by line with
//! what Docker 20.10 prints for the same store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use berth_oci::{Descriptor, Image, Layer, media_type};
use berth_reference::{Digest, Reference};
use berth_store::{NewImage, Store, chain_ids};

const DAY: i64 = 86_400;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        Fixture { _dir: dir, root }
    }

    fn store(&self) -> Store {
        Store::open(&self.root).unwrap()
    }

    fn berth(&self, args: &[&str]) -> Run {
        self.berth_stdin(args, "")
    }

    fn berth_stdin(&self, args: &[&str], stdin: &str) -> Run {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out: Output = child.wait_with_output().unwrap();
        Run {
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.berth(args);
        assert_eq!(run.code, 0, "berth {args:?} failed: {}", run.stderr);
        run.stdout
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let run = self.berth(args);
        assert_eq!(run.code, 1, "berth {args:?} should fail; stdout: {}", run.stdout);
        run.stderr
    }

    /// Everything a user can observe about the store's images.
    fn snapshot(&self) -> String {
        let mut s = self.ok(&[
            "images",
            "-a",
            "--no-trunc",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}} {{.Size}}",
        ]);
        s.push_str(&format!("blobs: {}", blob_count(&self.root)));
        s
    }
}

fn blob_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("blobs/sha256")).unwrap().count()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// RFC 3339 for a unix time (the test's own, independent of berth's).
fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(DAY);
    let rem = t.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A real tar layer holding the given files.
fn layer_tar(files: &[(&str, usize)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, size) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(*size as u64);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, &vec![b'x'; *size][..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// One history step: (created_by, layer files or None for an empty layer).
type Step<'a> = (&'a str, Option<Vec<u8>>);

/// Writes the layers and commits an image the way `load`/`pull` do.
fn commit(
    store: &Store,
    created: i64,
    steps: &[Step],
    labels: &[(&str, &str)],
    tags: &[&str],
) -> Digest {
    let mut layers = Vec::new();
    let mut history = Vec::new();
    for (created_by, tar) in steps {
        let mut h = serde_json::json!({"created": rfc3339(created), "created_by": created_by});
        match tar {
            Some(tar) => {
                let (digest, size) = store.write_blob_bytes(tar).unwrap();
                layers.push(Layer {
                    diff_id: digest.clone(),
                    blobs: vec![Descriptor::new(media_type::DOCKER_LAYER, digest, size)],
                    uncompressed_size: Some(size),
                });
            }
            None => h["empty_layer"] = true.into(),
        }
        history.push(h);
    }
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": rfc3339(created),
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": if labels.is_empty() { serde_json::Value::Null } else { labels.into() }},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        "history": history,
    });
    let image = NewImage {
        image: Image {
            manifest: None,
            config: serde_json::to_vec(&config).unwrap(),
            layers,
            tags: tags.iter().map(|t| Reference::parse_with_default_tag(t).unwrap()).collect(),
        },
        repo_digests: Vec::new(),
    };
    store.commit_images(vec![image]).unwrap().remove(0).id
}

/// busybox:musl, 3 weeks old, 1.4MB; app:v1 on top of it, 2 days old.
fn two_images(f: &Fixture) -> (Digest, Digest) {
    let store = f.store();
    let base = layer_tar(&[("bin/busybox", 1_400_000)]);
    let now = now();
    let busybox = commit(
        &store,
        now - 21 * DAY - 3600,
        &[
            (
                "/bin/sh -c #(nop) COPY file:7027c77992f5b5a06465828d75ae4ff9adcec5f94bc05d3f683eb205e0ec1ac0 in /bin/busybox",
                Some(base.clone()),
            ),
            ("/bin/sh -c #(nop)  CMD [\"/bin/sh\"]", None),
        ],
        &[],
        &["busybox:musl"],
    );
    let app = commit(
        &store,
        now - 2 * DAY - 3600,
        &[
            (
                "/bin/sh -c #(nop) COPY file:7027c77992f5b5a06465828d75ae4ff9adcec5f94bc05d3f683eb205e0ec1ac0 in /bin/busybox",
                Some(base),
            ),
            ("/bin/sh -c #(nop)  CMD [\"/bin/sh\"]", None),
            ("/bin/sh -c #(nop)  LABEL a=b", None),
            (
                "/bin/sh -c echo hello > /hello.txt && echo \"a very long command line that goes beyond forty five characters\" > /x",
                Some(layer_tar(&[("hello.txt", 6), ("x", 64)])),
            ),
        ],
        &[("a", "b")],
        &["app:v1"],
    );
    (busybox, app)
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn tag_makes_a_pointer_and_images_lists_each_tag() {
    let f = Fixture::new();
    let (busybox, app) = two_images(&f);
    let blobs = blob_count(&f.root);
    assert_eq!(f.ok(&["tag", "busybox:musl", "busybox:local"]), "");
    assert_eq!(blob_count(&f.root), blobs, "tag writes no blob");
    // SOURCE may be an ID prefix; DST is normalised.
    assert_eq!(f.ok(&["image", "tag", &busybox.hex()[..6], "docker.io/library/mycentos:v1"]), "");

    let (b, a) = (&busybox.hex()[..12], &app.hex()[..12]);
    assert_eq!(
        lines(&f.ok(&["images"])),
        [
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE".to_owned(),
            format!("app          v1        {a}   2 days ago    1.4MB"),
            format!("busybox      local     {b}   3 weeks ago   1.4MB"),
            format!("busybox      musl      {b}   3 weeks ago   1.4MB"),
            format!("mycentos     v1        {b}   3 weeks ago   1.4MB"),
        ]
    );
    assert_eq!(f.ok(&["images", "-q"]), format!("{a}\n{b}\n{b}\n{b}\n"));
    assert_eq!(
        lines(&f.ok(&["image", "ls", "busybox"])),
        [
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE".to_owned(),
            format!("busybox      local     {b}   3 weeks ago   1.4MB"),
            format!("busybox      musl      {b}   3 weeks ago   1.4MB"),
        ]
    );
    assert_eq!(
        f.ok(&[
            "images",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=*:musl"
        ]),
        format!("{busybox} busybox:musl\n")
    );
    assert_eq!(
        f.ok(&["images", "--format", "table {{.Repository}}\\t{{.Tag}}", "--filter", "label=a=b"]),
        "REPOSITORY   TAG\napp          v1\n"
    );
    assert_eq!(
        f.ok(&["images", "--format", "{{.Tag}}", "--filter", "before=app:v1"]),
        "local\nmusl\nv1\n"
    );
    assert_eq!(f.ok(&["images", "--format", "{{.Tag}}", "--filter", "since=busybox:musl"]), "v1\n");
    assert_eq!(f.ok(&["images", "--filter", "dangling=true", "-q"]), "");

    let json = f.ok(&["images", "--format", "json", "app"]);
    let expected = format!(
        "{{\"Containers\":\"N/A\",\"CreatedAt\":\"{}\",\"CreatedSince\":\"2 days ago\",\"Digest\":\"\\u003cnone\\u003e\",\"ID\":\"{a}\",\"Repository\":\"app\",\"SharedSize\":\"N/A\",\"Size\":\"1.4MB\",\"Tag\":\"v1\",\"UniqueSize\":\"N/A\",\"VirtualSize\":\"1.4MB\"}}\n",
        json.split("\"CreatedAt\":\"").nth(1).unwrap().split('"').next().unwrap()
    );
    assert_eq!(json, expected);
    assert!(json.contains(" +0000 UTC\""), "{json}");

    // Digests: a repo digest row shows with --digests.
    let manifest = Digest::sha256_of(b"manifest");
    f.store()
        .add_repo_digest(&busybox, &Reference::parse(&format!("busybox@{manifest}")).unwrap())
        .unwrap();
    let out = f.ok(&["images", "--digests", "busybox"]);
    assert_eq!(
        lines(&out),
        [
            "REPOSITORY   TAG       DIGEST                                                                    IMAGE ID       CREATED       SIZE".to_owned(),
            format!("busybox      local     {manifest}   {b}   3 weeks ago   1.4MB"),
            format!("busybox      musl      {manifest}   {b}   3 weeks ago   1.4MB"),
        ]
    );
}

#[test]
fn tag_and_images_refuse_bad_input_and_change_nothing() {
    let f = Fixture::new();
    two_images(&f);
    let before = f.snapshot();
    assert_eq!(
        f.fails(&["tag", "busybox:musl", "BAD"]),
        "Error: Error parsing reference: \"BAD\" is not a valid repository/tag: invalid reference format: repository name must be lowercase\n"
    );
    assert_eq!(
        f.fails(&["tag", "busybox:musl", &format!("x@{}", Digest::sha256_of(b""))]),
        "Error: refusing to create a tag with a digest reference\n"
    );
    assert_eq!(f.fails(&["tag", "nosuch", "x"]), "Error: No such image: nosuch:latest\n");
    assert_eq!(
        f.fails(&["images", "--filter", "dangling=maybe"]),
        "Error: Invalid filter 'dangling=[maybe]'\n"
    );
    assert_eq!(f.fails(&["images", "--filter", "foo=bar"]), "Error: Invalid filter 'foo'\n");
    assert_eq!(
        f.fails(&["rmi", "BAD"]),
        "Error: invalid reference format: repository name must be lowercase\n"
    );
    assert_eq!(f.snapshot(), before);
}

#[test]
fn rmi_untags_then_deletes_like_docker() {
    let f = Fixture::new();
    let (busybox, app) = two_images(&f);
    f.ok(&["tag", "busybox:musl", "busybox:local"]);
    f.ok(&["tag", "busybox:musl", "other/bb:1"]);

    // By ID with several names: refused, nothing changes.
    let before = f.snapshot();
    assert_eq!(
        f.fails(&["rmi", &busybox.hex()[..12]]),
        format!(
            "Error: conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories\n",
            &busybox.hex()[..12]
        )
    );
    assert_eq!(f.fails(&["rmi", "nosuch"]), "Error: No such image: nosuch\n");
    assert_eq!(f.snapshot(), before);

    // One of several tags: only untagged.
    assert_eq!(f.ok(&["rmi", "other/bb:1"]), "Untagged: other/bb:1\n");
    assert_eq!(f.ok(&["image", "rm", "busybox:local"]), "Untagged: busybox:local\n");

    // The last tag of app: the image and its own layer stack go; the
    // busybox layer stays for busybox.
    let app_rec = f.store().image(&app).unwrap();
    let chains = chain_ids(&app_rec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>());
    let blobs = blob_count(&f.root);
    assert_eq!(
        f.ok(&["rmi", "app:v1"]),
        format!("Untagged: app:v1\nDeleted: {app}\nDeleted: {}\n", chains[1])
    );
    assert_eq!(blob_count(&f.root), blobs - 2, "config and top layer removed");

    // Several arguments, one missing: the rest are removed, exit 1.
    let run = f.berth(&["rmi", "busybox:musl", "nosuch"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        format!("Untagged: busybox:musl\nDeleted: {busybox}\nDeleted: {}\n", chains[0])
    );
    assert_eq!(run.stderr, "Error: No such image: nosuch\n");
    assert_eq!(blob_count(&f.root), 0);

    // -f: a missing image is reported but not an error.
    let run = f.berth(&["rmi", "-f", "nosuch"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "Error: No such image: nosuch\n")
    );
}

#[test]
fn rmi_force_by_id_untags_every_name() {
    let f = Fixture::new();
    let (busybox, _) = two_images(&f);
    f.ok(&["tag", "busybox:musl", "other/bb:1"]);
    let out = f.ok(&["rmi", "-f", &busybox.hex()[..4]]);
    assert_eq!(
        lines(&out)[..3],
        [
            "Untagged: busybox:musl".to_owned(),
            "Untagged: other/bb:1".to_owned(),
            format!("Deleted: {busybox}")
        ]
    );
    // The base layer is still used by app, so only the image goes.
    assert_eq!(lines(&out).len(), 3);
}

#[test]
fn prune_removes_dangling_then_all() {
    let f = Fixture::new();
    let (busybox, app) = two_images(&f);
    assert_eq!(f.ok(&["image", "prune", "-f"]), "Total reclaimed space: 0B\n");
    // Without -f it asks; anything but y keeps everything.
    let run = f.berth_stdin(&["image", "prune"], "n\n");
    assert_eq!(
        run.stdout,
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    );
    // Moving app's tag leaves app dangling.
    f.ok(&["tag", "busybox:musl", "app:v1"]);
    assert_eq!(
        lines(&f.ok(&["images", "--filter", "dangling=true"])),
        [
            "REPOSITORY   TAG       IMAGE ID       CREATED      SIZE".to_owned(),
            format!("<none>       <none>    {}   2 days ago   1.4MB", &app.hex()[..12]),
        ]
    );
    let rec = f.store().image(&app).unwrap();
    let chains = chain_ids(&rec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>());
    assert_eq!(
        f.ok(&["image", "prune", "-f"]),
        format!(
            "Deleted Images:\ndeleted: {app}\ndeleted: {}\n\nTotal reclaimed space: 70B\n",
            chains[1]
        )
    );
    let run = f.berth_stdin(&["image", "prune", "-a", "--filter", "until=24h"], "y\n");
    assert_eq!(
        run.stdout,
        format!(
            "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue? [y/N] Deleted Images:\nuntagged: app:v1\nuntagged: busybox:musl\ndeleted: {busybox}\ndeleted: {}\n\nTotal reclaimed space: 1.4MB\n",
            chains[0]
        )
    );
    assert_eq!(blob_count(&f.root), 0);
    assert_eq!(
        f.fails(&["image", "prune", "--filter", "color=red"]),
        "Error: Invalid filter 'color'\n"
    );
}

#[test]
fn history_lists_steps_newest_first() {
    let f = Fixture::new();
    let (_, app) = two_images(&f);
    let a = &app.hex()[..12];
    assert_eq!(
        lines(&f.ok(&["history", "app:v1"])),
        [
            "IMAGE          CREATED      CREATED BY                                      SIZE      COMMENT".to_owned(),
            format!("{a}   2 days ago   /bin/sh -c echo hello > /hello.txt && echo \"…   70B       "),
            "<missing>      2 days ago   /bin/sh -c #(nop)  LABEL a=b                    0B        ".to_owned(),
            "<missing>      2 days ago   /bin/sh -c #(nop)  CMD [\"/bin/sh\"]              0B        ".to_owned(),
            "<missing>      2 days ago   /bin/sh -c #(nop) COPY file:7027c77992f5b5a0…   1.4MB     ".to_owned(),
        ]
    );
    assert_eq!(
        f.ok(&["image", "history", "-q", "app:v1"]),
        format!("{a}\n<missing>\n<missing>\n<missing>\n")
    );
    let raw = f.ok(&["history", "-H=false", "--format", "{{.Size}}|{{.CreatedSince}}", "app:v1"]);
    assert!(
        raw.starts_with("70|")
            && raw.contains("\n1400000|")
            && raw.lines().all(|l| l.ends_with('Z')),
        "{raw}"
    );
    let full = f.ok(&["history", "--no-trunc", "--format", "{{.ID}} {{.CreatedBy}}", "app:v1"]);
    assert!(
        full.starts_with(&format!(
            "{app} /bin/sh -c echo hello > /hello.txt && echo \"a very long"
        )),
        "{full}"
    );
    assert_eq!(f.fails(&["history", "nosuch"]), "Error: No such image: nosuch\n");
}

#[test]
fn inspect_prints_dockers_document() {
    let f = Fixture::new();
    let (busybox, app) = two_images(&f);
    let out = f.ok(&["inspect", "app:v1"]);
    assert!(out.starts_with("[\n    {\n        \"Id\": \""), "{out}");
    let keys: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("        \"") && !l.starts_with("         "))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "Id",
            "RepoTags",
            "RepoDigests",
            "Parent",
            "Comment",
            "Created",
            "Container",
            "ContainerConfig",
            "DockerVersion",
            "Author",
            "Config",
            "Architecture",
            "Os",
            "Size",
            "VirtualSize",
            "GraphDriver",
            "RootFS",
            "Metadata"
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let image = &v[0];
    assert_eq!(image["Id"], app.as_str());
    assert_eq!(image["RepoTags"], serde_json::json!(["app:v1"]));
    assert_eq!(image["RepoDigests"], serde_json::json!([]));
    assert_eq!(image["Size"], 1_400_070);
    assert_eq!(image["Config"]["Labels"]["a"], "b");
    assert_eq!(image["Config"]["Hostname"], "");
    assert_eq!(image["Config"]["Entrypoint"], serde_json::Value::Null);
    assert_eq!(image["ContainerConfig"]["Cmd"], serde_json::Value::Null);
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(image["Metadata"]["LastTagTime"], "0001-01-01T00:00:00Z");
    assert_eq!(image["GraphDriver"]["Name"], "berth");

    assert_eq!(
        f.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{index .RepoTags 0}} {{json .Config.Cmd}} {{.Config.Cmd}}",
            "app:v1"
        ]),
        format!("{app} app:v1 [\"/bin/sh\"] [/bin/sh]\n")
    );
    assert_eq!(
        f.ok(&["inspect", "--format", "{{.Id}}", "app:v1", &busybox.hex()[..5]]),
        format!("{app}\n{busybox}\n")
    );

    // Unknown: `[]` on stdout, docker's error, exit 1.
    let run = f.berth(&["image", "inspect", "nosuch"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (1, "[]\n", "Error: No such image: nosuch\n")
    );
    let run = f.berth(&["inspect", "-f", "{{.Id}}", "app:v1", "nosuch"]);
    assert_eq!((run.code, run.stdout), (1, format!("{app}\n")));
    assert_eq!(run.stderr, "Error: No such object: nosuch\n");

    // Tagging records the tag time.
    f.ok(&["tag", "app:v1", "app:v2"]);
    let t = f.ok(&["inspect", "-f", "{{.Metadata.LastTagTime}}", "app:v2"]);
    assert!(t.starts_with("20") && t.trim_end().ends_with('Z'), "{t}");
}

#[test]
fn system_df_shows_shared_and_unique_sizes() {
    let f = Fixture::new();
    let (busybox, app) = two_images(&f);
    f.ok(&["tag", "busybox:musl", "busybox:local"]);
    assert_eq!(
        f.ok(&["system", "df"]),
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
         Images          2         0         1.4MB     1.4MB (100%)\n\
         Containers      0         0         0B        0B\n\
         Local Volumes   0         0         0B        0B\n\
         Build Cache     0         0         0B        0B\n"
    );
    let (b, a) = (&busybox.hex()[..12], &app.hex()[..12]);
    assert_eq!(
        f.ok(&["system", "df", "-v"]),
        format!(
            "Images space usage:\n\n\
             REPOSITORY   TAG       IMAGE ID       CREATED       SIZE      SHARED SIZE   UNIQUE SIZE   CONTAINERS\n\
             app          v1        {a}   2 days ago    1.4MB     1.4MB         70B           0\n\
             busybox      local     {b}   3 weeks ago   1.4MB     1.4MB         0B            0\n\n\
             Containers space usage:\n\n\
             CONTAINER ID   IMAGE     COMMAND   LOCAL VOLUMES   SIZE      CREATED   STATUS    NAMES\n\n\
             Local Volumes space usage:\n\n\
             VOLUME NAME   LINKS     SIZE\n\n\
             Build cache usage: 0B\n\n\
             CACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   USAGE     SHARED\n"
        )
    );
}

#[test]
fn system_check_finds_and_repairs() {
    let f = Fixture::new();
    let (busybox, _) = two_images(&f);
    let out = f.ok(&["system", "check"]);
    assert!(out.ends_with("Checked 4 blobs and 2 images: 0 problems\n"), "{out}");

    // Leftovers are reported, but are not an inconsistency.
    std::fs::write(f.root.join("tmp/1-2-3"), b"partial write").unwrap();
    let out = f.ok(&["system", "check"]);
    assert!(out.starts_with("leftover temp file: tmp/1-2-3\n"), "{out}");

    // Corrupt the shared busybox layer: both images become untrustworthy.
    let layer = f.store().image(&busybox).unwrap().layers[0].diff_id.clone();
    let path = f.root.join("blobs/sha256").join(layer.hex());
    std::fs::write(&path, b"bit rot").unwrap();
    let err = f.fails(&["system", "check"]);
    assert!(err.contains("--repair"), "{err}");
    let out = f.ok(&["system", "check", "--repair"]);
    assert!(out.contains(&format!("corrupt blob: {}", layer.hex())), "{out}");
    assert!(out.contains("broken image"), "{out}");
    assert!(out.trim_end().ends_with(", repaired"), "{out}");
    assert_eq!(f.ok(&["images", "-q"]), "");
    assert!(f.ok(&["system", "check"]).ends_with(": 0 problems\n"));
}

/// Not a correctness test: prints how long `images` takes with 10,000 tags
/// and `tag` takes on that store. Timing is not asserted. With
/// `BERTH_PERF_STORE=DIR` the store is built in DIR and kept, to time a
/// release binary against it, e.g.
/// `hyperfine 'target/release/berth --root DIR images'`.
#[test]
fn perf_images_with_ten_thousand_tags() {
    let mut f = Fixture::new();
    if let Some(dir) = std::env::var_os("BERTH_PERF_STORE") {
        f.root = PathBuf::from(dir);
    }
    let store = f.store();
    let tar = layer_tar(&[("f", 1000)]);
    let (digest, size) = store.write_blob_bytes(&tar).unwrap();
    let layer = Layer {
        diff_id: digest.clone(),
        blobs: vec![Descriptor::new(media_type::DOCKER_LAYER, digest.clone(), size)],
        uncompressed_size: Some(size),
    };
    let base = now() - 10 * DAY;
    let images: Vec<NewImage> = (0..1000)
        .map(|i| NewImage {
            image: Image {
                manifest: None,
                config: serde_json::to_vec(&serde_json::json!({
                    "architecture": "amd64", "os": "linux", "created": rfc3339(base + i),
                    "rootfs": {"type": "layers", "diff_ids": [digest.to_string()]},
                }))
                .unwrap(),
                layers: vec![layer.clone()],
                tags: (0..10)
                    .map(|t| {
                        Reference::parse(&format!(
                            "registry.example:5000/team{}/app{i}:v{t}",
                            i % 7
                        ))
                        .unwrap()
                    })
                    .collect(),
            },
            repo_digests: vec![],
        })
        .collect();
    store.commit_images(images).unwrap();
    drop(store);

    let time = |args: &[&str]| {
        let mut best = f64::MAX;
        let mut out = String::new();
        for _ in 0..5 {
            let start = Instant::now();
            out = f.ok(args);
            best = best.min(start.elapsed().as_secs_f64() * 1000.0);
        }
        (best, out)
    };
    let (images_ms, out) = time(&["images"]);
    assert_eq!(out.lines().count(), 10_001);
    let (tag_ms, _) = time(&["tag", "registry.example:5000/team0/app0:v0", "moved:latest"]);
    let (q_ms, _) = time(&["images", "-q"]);
    eprintln!(
        "perf (this build): images with 10,000 tags {images_ms:.1} ms, images -q {q_ms:.1} ms, tag {tag_ms:.1} ms"
    );
}

#[test]
fn concurrent_berth_processes_keep_the_store_consistent() {
    let f = Fixture::new();
    let (busybox, _) = two_images(&f);
    for i in 0..8 {
        f.ok(&["tag", "busybox:musl", &format!("old/{i}:x")]);
    }
    // Taggers and removers at once, each a separate berth process.
    let spawn = |args: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(&f.root)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut children = Vec::new();
    for i in 0..8 {
        children.push(spawn(vec!["tag".into(), "busybox:musl".into(), format!("new/{i}:x")]));
        children.push(spawn(vec!["rmi".into(), format!("old/{i}:x")]));
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let b = &busybox.hex()[..12];
    let listed = f.ok(&["images", "--format", "{{.Repository}} {{.ID}}"]);
    for i in 0..8 {
        assert!(listed.contains(&format!("new/{i} {b}\n")), "{listed}");
        assert!(!listed.contains(&format!("old/{i} ")), "{listed}");
    }
    assert!(f.ok(&["system", "check"]).ends_with(": 0 problems\n"));
}
