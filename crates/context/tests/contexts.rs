//! Directory and stdin contexts, `-f`, and the ignore file in force.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use berth_context::{BuildContext, ContextError, ContextKind, MAX_DOCKERFILE_SIZE, open};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn listed(ctx: &BuildContext) -> Vec<String> {
    let entries = ctx.walk(Path::new("")).unwrap();
    entries.iter().map(|e| e.path.to_string_lossy().into_owned()).collect()
}

fn no_stdin() -> impl Read {
    struct Untouched;
    impl Read for Untouched {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("stdin was read, but nothing asked for it")
        }
    }
    Untouched
}

#[test]
fn a_directory_is_read_in_place_with_its_dockerfile() {
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("Dockerfile"), "FROM scratch\n");
    write(&t.path().join("src/main.rs"), "fn main() {}");
    let ctx = open(s(t.path()), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.root, t.path().canonicalize().unwrap());
    assert_eq!(ctx.kind, ContextKind::Directory);
    assert!(!ctx.is_temporary());
    assert_eq!(ctx.dockerfile, "FROM scratch\n");
    assert_eq!(ctx.dockerfile_name, "Dockerfile");
    assert_eq!(listed(&ctx), ["Dockerfile", "src", "src/main.rs"]);
    drop(ctx);
    assert!(t.path().join("src/main.rs").exists(), "a local context is never removed");
}

#[test]
fn a_symlinked_directory_is_resolved_and_dockerfile_in_lower_case_is_found() {
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("real/dockerfile"), "FROM lower\n");
    symlink(t.path().join("real"), t.path().join("link")).unwrap();
    let ctx = open(s(&t.path().join("link")), None, &mut no_stdin()).unwrap();
    assert_eq!(ctx.root, t.path().join("real").canonicalize().unwrap());
    assert_eq!(ctx.dockerfile, "FROM lower\n");
    assert_eq!(ctx.dockerfile_name, "dockerfile");
}

#[test]
fn a_missing_context_or_dockerfile_gets_dockers_words() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    let err = open(s(&missing), None, &mut no_stdin()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("unable to prepare context: path \"{}\" not found", missing.display())
    );
    let err = open("no-such-dir-here", None, &mut no_stdin()).unwrap_err();
    assert_eq!(err.to_string(), "unable to prepare context: path \"no-such-dir-here\" not found");

    write(&t.path().join("file"), "");
    let err = open(s(&t.path().join("file")), None, &mut no_stdin()).unwrap_err();
    let abs = t.path().canonicalize().unwrap().join("file");
    assert_eq!(
        err.to_string(),
        format!("unable to prepare context: context must be a directory: {}", abs.display())
    );

    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = open(s(&empty), None, &mut no_stdin()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to read dockerfile: open Dockerfile: no such file or directory"
    );
    let given = empty.join("Dockerfile.dev");
    let err = open(s(&empty), Some(s(&given)), &mut no_stdin()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("failed to read dockerfile: open {}: no such file or directory", given.display())
    );
    fs::create_dir(empty.join("Dockerfile")).unwrap();
    let err = open(s(&empty), None, &mut no_stdin()).unwrap_err();
    assert_eq!(err.to_string(), "failed to read dockerfile: read Dockerfile: is a directory");
}

#[test]
fn dash_f_inside_the_context_and_outside_it() {
    let t = tempfile::tempdir().unwrap();
    let ctx_dir = t.path().join("ctx");
    write(&ctx_dir.join("Dockerfile"), "FROM default\n");
    write(&ctx_dir.join("docker/Dockerfile.dev"), "FROM dev\n");
    write(&t.path().join("elsewhere/Dockerfile.out"), "FROM outside\n");

    let inside = ctx_dir.join("docker/Dockerfile.dev");
    let ctx = open(s(&ctx_dir), Some(s(&inside)), &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM dev\n");
    assert_eq!(ctx.dockerfile_name, s(&inside));
    assert!(listed(&ctx).contains(&"docker/Dockerfile.dev".to_string()));

    let outside = t.path().join("elsewhere/Dockerfile.out");
    let ctx = open(s(&ctx_dir), Some(s(&outside)), &mut no_stdin()).unwrap();
    assert_eq!(ctx.dockerfile, "FROM outside\n");
    assert_eq!(ctx.root, ctx_dir.canonicalize().unwrap());
    // Outside the context: never part of it.
    assert_eq!(listed(&ctx), ["Dockerfile", "docker", "docker/Dockerfile.dev"]);
}

#[test]
fn dash_f_dash_reads_the_dockerfile_from_stdin_with_a_directory_context() {
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("Dockerfile"), "FROM on-disk\n");
    write(&t.path().join(".dockerignore"), "secret\n");
    write(&t.path().join("secret"), "");
    write(&t.path().join("kept"), "");
    let mut stdin = &b"FROM from-stdin\n"[..];
    let ctx = open(s(t.path()), Some("-"), &mut stdin).unwrap();
    assert_eq!(ctx.dockerfile, "FROM from-stdin\n");
    assert_eq!(ctx.dockerfile_name, "-");
    assert_eq!(listed(&ctx), [".dockerignore", "Dockerfile", "kept"]);
}

#[test]
fn a_dockerfile_beside_its_own_dockerignore_replaces_the_root_one() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    write(&root.join("Dockerfile"), "FROM default\n");
    write(&root.join("docker/app.Dockerfile"), "FROM app\n");
    write(&root.join(".dockerignore"), "a\n");
    write(&root.join("docker/app.Dockerfile.dockerignore"), "b\ndocker\n");
    write(&root.join("a"), "");
    write(&root.join("b"), "");

    let ctx = open(s(root), None, &mut no_stdin()).unwrap();
    assert!(ctx.ignore.is_ignored("a") && !ctx.ignore.is_ignored("b"));

    let df = root.join("docker/app.Dockerfile");
    let ctx = open(s(root), Some(s(&df)), &mut no_stdin()).unwrap();
    assert!(!ctx.ignore.is_ignored("a"), "the root .dockerignore no longer applies");
    assert!(ctx.ignore.is_ignored("b"));
    // The ignore file excludes the Dockerfile's own directory: it is still used.
    assert_eq!(ctx.dockerfile, "FROM app\n");
    assert_eq!(listed(&ctx), [".dockerignore", "Dockerfile", "a"]);

    // The default Dockerfile has its own too.
    write(&root.join("Dockerfile.dockerignore"), "Dockerfile\n");
    let ctx = open(s(root), None, &mut no_stdin()).unwrap();
    assert!(!ctx.ignore.is_ignored("a"));
    assert_eq!(ctx.dockerfile, "FROM default\n", "an excluded Dockerfile is still read");
    assert!(!listed(&ctx).contains(&"Dockerfile".to_string()));
}

#[test]
fn a_bad_dockerignore_names_its_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("Dockerfile"), "FROM x\n");
    write(&t.path().join(".dockerignore"), "# fine\nok\n[oops\n");
    let err = open(s(t.path()), None, &mut no_stdin()).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(".dockerignore:3: "), "{text}");
    assert!(text.contains("unterminated ["), "{text}");
}

#[test]
fn an_oversized_dockerfile_is_refused_without_being_read() {
    let t = tempfile::tempdir().unwrap();
    // A sparse 1 GB file: refused by its size, read not at all.
    let big = t.path().join("Dockerfile");
    fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
    let err = open(s(t.path()), None, &mut no_stdin()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to read dockerfile: Dockerfile is larger than the 16 MiB limit"
    );
    assert!(matches!(err, ContextError::DockerfileTooLarge { .. }));

    // An endless stdin: refused once past the limit, read no further.
    struct Endless(u64);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(b'#');
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
    }
    let mut endless = Endless(0);
    let err = open(s(t.path()), Some("-"), &mut endless).unwrap_err();
    assert!(matches!(err, ContextError::DockerfileTooLarge { .. }), "{err}");
    assert!(endless.0 <= MAX_DOCKERFILE_SIZE + (1 << 20), "read {} bytes", endless.0);
    let mut endless = Endless(0);
    let err = open("-", None, &mut endless).unwrap_err();
    assert!(matches!(err, ContextError::DockerfileTooLarge { .. }), "{err}");
}

/// A tar of: Dockerfile, app/run.sh (0755, an old mtime), a symlink, and
/// docker/Dockerfile.alt.
fn context_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_000_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("Dockerfile", 0o644, b"FROM tarred\n");
    add("app/run.sh", 0o755, b"#!/bin/sh\n");
    add("docker/Dockerfile.alt", 0o644, b"FROM alt\n");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "link", "app/run.sh").unwrap();
    b.into_inner().unwrap()
}

fn compressed(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "none" => data.to_vec(),
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "bzip2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zstd" => zstd::encode_all(data, 1).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn a_tar_on_stdin_compressed_or_not_becomes_a_temporary_context() {
    let tar = context_tar();
    for kind in ["none", "gzip", "bzip2", "xz", "zstd"] {
        let bytes = compressed(kind, &tar);
        let ctx = open("-", None, &mut &bytes[..]).unwrap();
        assert_eq!(ctx.kind, ContextKind::Archive, "{kind}");
        assert!(ctx.is_temporary());
        assert_eq!(ctx.dockerfile, "FROM tarred\n", "{kind}");
        assert_eq!(ctx.dockerfile_name, "Dockerfile");
        assert_eq!(
            listed(&ctx),
            ["Dockerfile", "app", "app/run.sh", "docker", "docker/Dockerfile.alt", "link"],
            "{kind}"
        );
        let run = fs::symlink_metadata(ctx.root.join("app/run.sh")).unwrap();
        assert_eq!(run.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            run.modified().unwrap(),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000)
        );
        assert_eq!(fs::read_link(ctx.root.join("link")).unwrap(), Path::new("app/run.sh"));
        let root: PathBuf = ctx.root.clone();
        drop(ctx);
        assert!(!root.exists(), "{kind}: the temporary context is removed on drop");
    }
    // -f names a file inside the tar.
    let ctx = open("-", Some("docker/Dockerfile.alt"), &mut &tar[..]).unwrap();
    assert_eq!(ctx.dockerfile, "FROM alt\n");
    assert_eq!(ctx.dockerfile_name, "docker/Dockerfile.alt");
    let err = open("-", Some("../../etc/passwd"), &mut &tar[..]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to prepare context: the Dockerfile (../../etc/passwd) must be within the build context"
    );
    let err = open("-", Some("-"), &mut &tar[..]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument: can't use stdin for both build context and dockerfile"
    );
}

#[test]
fn a_bare_dockerfile_on_stdin_has_an_empty_context() {
    let mut stdin = &b"FROM scratch\nCOPY nothing /\n"[..];
    let ctx = open("-", Some("ignored.Dockerfile"), &mut stdin).unwrap();
    assert_eq!(ctx.kind, ContextKind::Empty);
    assert_eq!(ctx.dockerfile, "FROM scratch\nCOPY nothing /\n");
    assert_eq!(ctx.dockerfile_name, "-");
    assert!(listed(&ctx).is_empty());
    // Even an empty stdin is a Dockerfile (the parser then says it is empty).
    let ctx = open("-", None, &mut &b""[..]).unwrap();
    assert_eq!(ctx.dockerfile, "");
}

#[test]
fn a_tar_context_cannot_reach_outside_its_directory() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "escape", outside.path()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    b.append_data(&mut h, "Dockerfile", &b"FROM"[..]).unwrap();
    // Written through the symlink: must not land in `outside`.
    let mut raw = tar::Header::new_gnu();
    raw.set_size(4);
    raw.set_mode(0o644);
    raw.set_path("escape/victim").unwrap();
    raw.set_cksum();
    b.append(&raw, &b"evil"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let result = open("-", None, &mut &tar[..]);
    assert!(!target.exists(), "an entry was written through a symlink out of the context");
    let err = result.unwrap_err();
    assert!(
        err.to_string().starts_with("unable to prepare context: unpacking the context archive"),
        "{err}"
    );

    // A Dockerfile that is a link out of a tar context is not followed.
    fs::write(&target, "FROM secret\n").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "Dockerfile", &target).unwrap();
    let tar = b.into_inner().unwrap();
    let err = open("-", None, &mut &tar[..]).unwrap_err();
    assert!(matches!(err, ContextError::DockerfileOutside { .. }), "{err}");
}

#[test]
fn a_truncated_or_broken_archive_is_refused() {
    let tar = context_tar();
    let gz = compressed("gzip", &tar);
    let err = open("-", None, &mut &gz[..gz.len() / 2]).unwrap_err();
    assert!(matches!(err, ContextError::Archive { .. }), "{err}");
    assert!(
        err.to_string().starts_with("unable to prepare context: unpacking the context archive: ")
    );
    let err = open("-", None, &mut &tar[..700]).unwrap_err();
    assert!(matches!(err, ContextError::Archive { .. }), "{err}");

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
    }
    let err = open("-", None, &mut Failing).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to prepare context: reading the context from stdin: input/output error"
    );
}

#[test]
fn special_files_in_a_tar_context_are_unpacked_as_empty_regular_files() {
    // So a fifo named Dockerfile can never make a build wait on it.
    let mut b = tar::Builder::new(Vec::new());
    for (kind, name) in [(tar::EntryType::Fifo, "Dockerfile"), (tar::EntryType::Char, "dev")] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &b""[..]).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let ctx = open("-", None, &mut &tar[..]).unwrap();
    assert_eq!(ctx.dockerfile, "");
    for name in ["Dockerfile", "dev"] {
        let m = fs::symlink_metadata(ctx.root.join(name)).unwrap();
        assert!(m.is_file() && m.len() == 0, "{name}: {:?}", m.file_type());
    }
}
