//! `diff` and `commit` from an upper directory, on real directory fixtures.

use std::fs;
use std::path::{Path, PathBuf};

use berth_snapshot::{Lowers, changes, write_layer};

fn is_root() -> bool {
    berth_snapshot::UnpackOptions::default().as_root
}

fn put(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// Overlay's deletion mark (root only).
fn whiteout(root: &Path, rel: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) }, 0);
}

fn opaque(root: &Path, rel: &str) {
    let path = root.join(rel);
    fs::create_dir_all(&path).unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated strings and a one-byte value.
    let rc = unsafe {
        libc::lsetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0)
    };
    assert_eq!(rc, 0);
}

/// Copies `rel` from `lower` to `upper` with its metadata, as overlay's
/// copy-up does before a write.
fn copy_up(lower: &Path, upper: &Path, rel: &str) {
    let (from, to) = (lower.join(rel), upper.join(rel));
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(&from, &to).unwrap();
    let m = fs::metadata(&from).unwrap();
    fs::File::options().write(true).open(&to).unwrap().set_modified(m.modified().unwrap()).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    init: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (init, lower, upper) =
        (dir.path().join("init"), dir.path().join("lower"), dir.path().join("upper"));
    for d in [&init, &lower, &upper] {
        fs::create_dir(d).unwrap();
    }
    put(&init, "etc/hostname", b"box");
    put(&init, "dev/console", b"");
    for (rel, data) in [
        ("etc/motd", &b"hello"[..]),
        ("etc/passwd", b"root:x:0:0"),
        ("bin/sh", b"#!"),
        ("var/cache/a", b"a"),
        ("var/cache/b", b"b"),
        ("data/x", b"x"),
        ("data/sub/y", b"y"),
        ("same", b"unchanged"),
    ] {
        put(&lower, rel, data);
    }
    Fixture { _dir: dir, init, lower, upper }
}

fn diff(f: &Fixture) -> Vec<String> {
    let image = [f.lower.clone()];
    let lowers = Lowers { init: Some(&f.init), image: &image };
    changes(&f.upper, &lowers).unwrap().iter().map(|c| c.to_string()).collect()
}

#[test]
fn additions_and_changes_follow_dockers_rules() {
    let f = fixture();
    // A changed file (its directory is C too), a new file, a new tree.
    put(&f.upper, "etc/motd", b"changed!");
    put(&f.upper, "etc/new", b"n");
    put(&f.upper, "newtree/sub/f", b"f");
    // A file copied up but left as it was: no change.
    copy_up(&f.lower, &f.upper, "same");
    // The init layer's files never count, even rewritten.
    put(&f.upper, "etc/hostname", b"other");
    // An empty copied-up directory (a file made and removed in it): nothing.
    fs::create_dir_all(f.upper.join("bin")).unwrap();
    assert_eq!(
        diff(&f),
        ["C /etc", "C /etc/motd", "A /etc/new", "A /newtree", "A /newtree/sub", "A /newtree/sub/f",]
    );
}

#[test]
fn deletions_and_recreated_directories_follow_dockers_rules() {
    let f = fixture();
    if !is_root() {
        // Whiteouts cannot be made without root; nothing to look at.
        assert!(diff(&f).is_empty());
        return;
    }
    whiteout(&f.upper, "bin/sh");
    whiteout(&f.upper, "data"); // a whole tree: only its top
    opaque(&f.upper, "var/cache"); // deleted and made again
    put(&f.upper, "var/cache/c", b"c");
    put(&f.upper, "var/cache/a", b"a again");
    assert_eq!(
        diff(&f),
        [
            "C /bin",
            "D /bin/sh",
            "D /data",
            "C /var",
            "C /var/cache",
            "A /var/cache/a",
            "D /var/cache/b",
            "A /var/cache/c",
        ]
    );

    // Committed: the same changes as a layer, in path order.
    let image = [f.lower.clone()];
    let found = changes(&f.upper, &Lowers { init: Some(&f.init), image: &image }).unwrap();
    let mut tar = Vec::new();
    write_layer(&f.upper, &found, &mut tar).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().trim_end_matches('/').to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "bin",
            "bin/.wh.sh",
            ".wh.data",
            "var",
            "var/cache",
            "var/cache/.wh..wh..opq",
            "var/cache/a",
            "var/cache/.wh.b",
            "var/cache/c",
        ]
    );
}
