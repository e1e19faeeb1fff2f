//! `berth save`, `load` and `import`, run as the real binary against a
//! temporary store. The fixtures (crates/archive/tests/fixtures, see its
//! README) were written by docker, podman and skopeo; IDs are docker's.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_store::Store;

const TINY_1: &str = "sha256:10c8ad10f068440a28cb379771bad7e68d4379aaa436e528cbae203d604e339e";
const TINY_2: &str = "sha256:1c8c98357ed21087a86b8e95f0f1ecca0e4c3786dc7fc86bfecea59491f47316";
const TINY_OCI: &str = "sha256:9eb3d5d0d4a5ce101cf796338543375917afe77fdf2d0c76ad0c77ad0aefb5d8";
const DIFF_1: &str = "sha256:9069693abddc2bf8a0eddba7fdca55978bd4a9e4598df97dc5f78f996bfc6c9e";
const DIFF_2: &str = "sha256:7992d0af562c1b65c78754360c16a530ef596fe3001a665048aa04189cb79309";
const DIFF_3: &str = "sha256:8a3a201aa0f1acca33ee07f94f46fd2fb740cde62fd7adce633d717b5dd5ca2a";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../archive/tests/fixtures").join(name)
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn berth(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        child.wait_with_output().unwrap()
    }

    /// Runs berth and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args, None);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs berth and expects failure with exit code 1; returns stderr.
    fn fails(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.berth(args, stdin);
        assert_eq!(
            out.status.code(),
            Some(1),
            "berth {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("Error: "), "{err}");
        err
    }

    /// Every file under the store's blobs/ and tmp/, sorted.
    fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for dir in ["blobs/sha256", "tmp"] {
            for e in fs::read_dir(self.root().join(dir)).unwrap() {
                out.push(format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()));
            }
        }
        out.sort();
        out
    }

    /// Every image: ID, diff IDs, tags (familiar, sorted), sorted by ID.
    fn images(&self) -> Vec<(String, Vec<String>, Vec<String>)> {
        let store = Store::open(&self.root()).unwrap();
        let mut out: Vec<_> = store
            .list_images()
            .unwrap()
            .into_iter()
            .map(|s| {
                let record = store.image(&s.id).unwrap();
                let mut tags: Vec<String> = record.tags.iter().map(|t| t.familiar()).collect();
                tags.sort();
                (
                    s.id.to_string(),
                    record.layers.iter().map(|l| l.diff_id.to_string()).collect(),
                    tags,
                )
            })
            .collect();
        out.sort();
        out
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn tiny_images() -> Vec<(String, Vec<String>, Vec<String>)> {
    vec![
        (TINY_1.into(), s(&[DIFF_1, DIFF_2]), s(&["example.com/team/tiny:latest", "tiny:1.0"])),
        (TINY_2.into(), s(&[DIFF_1, DIFF_2, DIFF_3]), s(&["tiny:2.0"])),
    ]
}

#[test]
fn load_prints_what_docker_prints_and_keeps_docker_ids() {
    let env = Env::new();
    let out = env.ok(&["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    assert_eq!(
        out,
        "Loaded image: tiny:1.0\nLoaded image: example.com/team/tiny:latest\nLoaded image: tiny:2.0\n"
    );
    assert_eq!(env.images(), tiny_images());
    // Loading again changes nothing and says the same.
    let again =
        env.ok(&["image", "load", "-q", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    assert_eq!(again, out);
    assert_eq!(env.images(), tiny_images());
}

#[test]
fn load_reads_stdin_compressed() {
    let env = Env::new();
    let plain = fs::read(fixture("podman-save-multi.tar")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let out = env.berth(&["load"], Some(&gz.finish().unwrap()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Loaded image: localhost/tiny:1.0\nLoaded image: localhost/tiny:2.0\n"
    );
    let ids: Vec<String> = env.images().into_iter().map(|i| i.0).collect();
    assert_eq!(ids, [TINY_1, TINY_2]);
}

#[test]
fn every_producer_loads_under_its_id() {
    for (name, id) in [
        ("podman-save-docker.tar", TINY_1),
        ("skopeo-docker.tar", TINY_1),
        ("podman-save-oci.tar", TINY_OCI),
        ("skopeo-oci.tar", TINY_OCI),
        ("skopeo-oci-zstd.tar", TINY_OCI),
    ] {
        let env = Env::new();
        env.ok(&["load", "-i", fixture(name).to_str().unwrap()]);
        let images = env.images();
        assert_eq!(images.len(), 1, "{name}");
        assert_eq!(images[0].0, id, "{name}");
        assert_eq!(images[0].1, [DIFF_1, DIFF_2], "{name}");
    }
}

#[test]
fn a_moved_tag_is_announced_like_docker() {
    let env = Env::new();
    env.ok(&["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    let out = env.ok(&["load", "-i", fixture("skopeo-oci.tar").to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "The image tiny:1.0 already exists, renaming the old one with ID {TINY_1} to empty string\nLoaded image: tiny:1.0\n"
        )
    );
}

#[test]
fn save_then_load_keeps_ids_diff_ids_and_tags_in_both_formats() {
    let env = Env::new();
    env.ok(&["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    for format in ["docker", "oci"] {
        let file = env.path(&format!("saved-{format}.tar"));
        let out = env.ok(&[
            "save",
            "--format",
            format,
            "-o",
            file.to_str().unwrap(),
            "tiny",
            "example.com/team/tiny:latest",
        ]);
        assert_eq!(out, "");
        let other = Env::new();
        other.ok(&["load", "-i", file.to_str().unwrap()]);
        assert_eq!(other.images(), tiny_images(), "{format}");
    }
    // No temp file is left beside the output.
    let leftovers: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn save_to_stdout_and_by_id() {
    let env = Env::new();
    env.ok(&["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    // By ID prefix: the image without tags.
    let out = env.berth(&["image", "save", &TINY_2[7..19]], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let other = Env::new();
    let loaded = other.berth(&["load"], Some(&out.stdout));
    assert_eq!(String::from_utf8(loaded.stdout).unwrap(), format!("Loaded image ID: {TINY_2}\n"));
    assert_eq!(other.images(), vec![(TINY_2.to_string(), s(&[DIFF_1, DIFF_2, DIFF_3]), vec![])]);
}

#[test]
fn save_of_an_unknown_or_invalid_name_fails_and_writes_nothing() {
    let env = Env::new();
    env.ok(&["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    let file = env.path("nothing.tar");
    let err = env.fails(&["save", "-o", file.to_str().unwrap(), "tiny:1.0", "nosuch:img"], None);
    assert_eq!(err, "Error: No such image: nosuch:img\n");
    assert!(!file.exists());
    let err = env.fails(&["save", "-o", file.to_str().unwrap(), "Bad:Ref"], None);
    assert!(err.contains("invalid reference format: repository name must be lowercase"), "{err}");
    assert!(!file.exists());
    assert_eq!(fs::read_dir(env.dir.path()).unwrap().count(), 1, "only the store is there");
}

#[test]
fn a_save_that_fails_midway_leaves_no_file() {
    let env = Env::new();
    env.ok(&["load", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    // Lose a layer blob behind the store's back.
    fs::remove_file(env.root().join("blobs/sha256").join(&DIFF_3[7..])).unwrap();
    let file = env.path("partial.tar");
    let err = env.fails(&["save", "-o", file.to_str().unwrap(), "tiny:1.0", "tiny:2.0"], None);
    assert_eq!(
        err,
        format!(
            "Error: layer {DIFF_3}: cannot read blob {DIFF_3}: No such file or directory (os error 2)\n"
        )
    );
    assert!(!file.exists());
    assert_eq!(fs::read_dir(env.dir.path()).unwrap().count(), 1, "no temp file left");
}

/// Raw tar bytes with one member whose name/link are written verbatim.
fn tar_with_raw_member(
    base: &[u8],
    name: &str,
    kind: tar::EntryType,
    link: Option<&str>,
) -> Vec<u8> {
    let mut out = base[..base.len() - 1024].to_vec();
    while out.len() >= 512 && out[out.len() - 512..].iter().all(|&b| b == 0) {
        out.truncate(out.len() - 512);
    }
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.set_size(0);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + 1024, 0);
    out
}

/// The fixture's members, with `edit` applied (return None to drop one).
fn edited(name: &str, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let bytes = fs::read(fixture(name)).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut header = entry.header().clone();
        if header.entry_type().is_symlink() || header.entry_type().is_dir() {
            builder.append(&header, std::io::empty()).unwrap();
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if let Some(data) = edit(&path, data) {
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, &data[..]).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

#[test]
fn bad_archives_fail_clearly_and_change_nothing() {
    let env = Env::new();
    env.ok(&["load", "-i", fixture("podman-save-docker.tar").to_str().unwrap()]);
    let before = env.images();
    let files_before = env.files();
    let good = fs::read(fixture("docker-save-tiny.tar")).unwrap();
    let layer = "9069693abddc2bf8a0eddba7fdca55978bd4a9e4598df97dc5f78f996bfc6c9e.tar";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "invalid archive"),
        ("not an archive", b"hello, world\n".repeat(100), "not a tar file"),
        (
            "a tar without an image",
            {
                let mut b = tar::Builder::new(Vec::new());
                let mut h = tar::Header::new_gnu();
                h.set_size(3);
                h.set_cksum();
                b.append_data(&mut h, "README", &b"hi\n"[..]).unwrap();
                b.into_inner().unwrap()
            },
            "not an image archive",
        ),
        (
            "a missing layer",
            edited("docker-save-tiny.tar", |p, d| {
                (!p.ends_with(
                    "10f66707374c2b4c2b6ccfdf8ab9044b674d3fc7f69160182f3c1429ccab928a/layer.tar",
                ))
                .then_some(d)
            }),
            "which is not in the archive",
        ),
        (
            "a wrong layer",
            edited("podman-save-docker.tar", |p, d| {
                Some(if p == layer { vec![0u8; 1024] } else { d })
            }),
            "diff ID",
        ),
        (
            "a ../ entry",
            tar_with_raw_member(&good, "../../tmp/escape", tar::EntryType::Regular, None),
            "\"..\"",
        ),
        (
            "an absolute entry",
            tar_with_raw_member(&good, "/tmp/escape", tar::EntryType::Regular, None),
            "absolute",
        ),
        (
            "an escaping symlink",
            tar_with_raw_member(
                &good,
                "x/layer.tar",
                tar::EntryType::Symlink,
                Some("../../etc/passwd"),
            ),
            "outside the archive",
        ),
        (
            "an invalid RepoTag",
            edited("podman-save-docker.tar", |p, d| {
                Some(if p == "manifest.json" {
                    String::from_utf8(d)
                        .unwrap()
                        .replace("localhost/tiny:1.0", "localhost/TINY:1.0")
                        .into_bytes()
                } else {
                    d
                })
            }),
            "invalid reference format",
        ),
    ];
    for (what, bytes, message) in cases {
        let file = env.path("bad.tar");
        fs::write(&file, &bytes).unwrap();
        let err = env.fails(&["load", "-i", file.to_str().unwrap()], None);
        assert!(err.contains(message), "{what}: {err}");
        assert_eq!(env.images(), before, "{what}: the store changed");
        assert_eq!(env.files(), files_before, "{what}: blobs were left behind");
        // And from stdin.
        let err = env.fails(&["load"], Some(&bytes));
        assert!(err.contains(message), "{what} (stdin): {err}");
        assert_eq!(env.images(), before, "{what}: the store changed");
        assert_eq!(env.files(), files_before, "{what}: blobs were left behind");
    }
}

#[test]
fn a_huge_manifest_is_refused_without_reading_it() {
    // A 1 GiB manifest.json, as a sparse file: no disk or memory is spent.
    let env = Env::new();
    env.ok(&["load", "-i", fixture("podman-save-docker.tar").to_str().unwrap()]);
    let before = env.images();
    let file = env.path("huge.tar");
    let mut header = tar::Header::new_ustar();
    header.set_path("manifest.json").unwrap();
    header.set_size(1 << 30);
    header.set_mode(0o644);
    header.set_cksum();
    let mut f = fs::File::create(&file).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.set_len(512 + (1 << 30) + 1024).unwrap();
    drop(f);
    let start = std::time::Instant::now();
    let err = env.fails(&["load", "-i", file.to_str().unwrap()], None);
    assert!(
        err.contains("\"manifest.json\" is 1073741824 bytes, more than the 8388608 bytes allowed"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    assert_eq!(env.images(), before);
}

#[test]
fn import_makes_a_tagged_one_layer_image() {
    let env = Env::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, "bin/app", &b"#!/x\n\n"[..]).unwrap();
    let rootfs = b.into_inner().unwrap();
    let file = env.path("rootfs.tar");
    fs::write(&file, &rootfs).unwrap();

    let out = env.ok(&[
        "import",
        "-c",
        r#"CMD ["/bin/app"]"#,
        "-c",
        "ENV A=B",
        "-m",
        "hello",
        file.to_str().unwrap(),
        "myimg:v1",
    ]);
    let id = out.trim_end();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    let images = env.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].0, id);
    let diff_id = format!("sha256:{}", sha256_hex(&rootfs));
    assert_eq!(images[0].1, [diff_id]);
    assert_eq!(images[0].2, ["myimg:v1"]);
    let store = Store::open(&env.root()).unwrap();
    let config = store.image(&berth_reference::Digest::parse(id).unwrap()).unwrap().config;
    assert_eq!(config.config.as_ref().unwrap().cmd.as_deref().unwrap(), ["/bin/app"]);
    assert_eq!(config.history[0].comment.as_deref(), Some("hello"));

    // From stdin, untagged.
    let out = env.berth(&["image", "import", "-"], Some(&rootfs));
    assert!(out.status.success());
    assert_eq!(env.images().len(), 2, "a new creation time makes a new image");

    // Bad input changes nothing.
    let before = env.images();
    let files_before = env.files();
    env.fails(&["import", "-c", "RUN rm -rf /", file.to_str().unwrap()], None);
    env.fails(&["import", file.to_str().unwrap(), "Bad:Name"], None);
    let err = env.fails(
        &["import", "-"],
        Some(b"not a tarball at all, just some text that goes on".repeat(20).as_slice()),
    );
    assert!(err.contains("invalid rootfs tarball"), "{err}");
    assert_eq!(env.images(), before);
    assert_eq!(env.files(), files_before, "blobs were left behind");
}

fn sha256_hex(data: &[u8]) -> String {
    berth_reference::Digest::sha256_of(data).hex().to_owned()
}

#[test]
fn load_reads_an_oci_layout_directory() {
    let env = Env::new();
    let dir = env.path("layout");
    tar::Archive::new(&fs::read(fixture("skopeo-oci.tar")).unwrap()[..]).unpack(&dir).unwrap();
    let out = env.ok(&["load", "-i", dir.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: tiny:1.0\n");
    assert_eq!(env.images(), vec![(TINY_OCI.to_string(), s(&[DIFF_1, DIFF_2]), s(&["tiny:1.0"]))]);
}

/// Files directly under `dir` with their sizes.
fn files_in(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn what_a_killed_load_left_is_reclaimable_and_swept_by_the_next_writer() {
    let env = Env::new();
    env.ok(&["images"]); // creates the store
    let tmp = env.root().join("tmp");
    // A load reading a large layer from a pipe, killed half-way.
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(env.root())
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("0123/layer.tar").unwrap();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    header.set_cksum();
    pipe.write_all(header.as_bytes()).unwrap();
    let chunk: Vec<u8> =
        (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for _ in 0..8 {
        pipe.write_all(&chunk).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while files_in(&tmp).iter().map(|(_, n)| n).sum::<u64>() < 4 << 20 {
        assert!(std::time::Instant::now() < deadline, "the load wrote nothing to tmp/");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(pipe);
    let left = files_in(&tmp);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].1 >= 4 << 20);
    assert_eq!(files_in(&env.root().join("writers")).len(), 1, "the killed writer's lock stays");

    // `system df` counts it as reclaimable; reading the store keeps it.
    let df = env.ok(&["system", "df", "--format", "{{.Type}} {{.Size}} {{.Reclaimable}}"]);
    let images = df.lines().next().unwrap();
    assert!(images.starts_with("Images ") && images.ends_with("(100%)"), "{df}");
    assert!(!images.contains(" 0B"), "{df}");
    assert_eq!(files_in(&tmp).len(), 1);

    // The next command that writes sweeps it, and leaves nothing itself.
    env.ok(&["load", "-q", "-i", fixture("docker-save-tiny.tar").to_str().unwrap()]);
    assert!(files_in(&tmp).is_empty(), "{:?}", files_in(&tmp));
    assert!(files_in(&env.root().join("writers")).is_empty());
    let df = env.ok(&["system", "df", "--format", "{{.Type}} {{.Reclaimable}}"]);
    assert!(df.lines().next().unwrap().starts_with("Images "), "{df}");
}
