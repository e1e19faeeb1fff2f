//! Layers unpacked into real directories.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_reference::Digest;
use berth_snapshot::{SnapshotError, Snapshots, UnpackOptions, unpack, unpack_files, write_tree};

/// A tar builder with the few entry kinds the tests need.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h
    }
    fn dir(mut self, path: &str, mode: u32) -> Layer {
        let mut h = Layer::header(tar::EntryType::Directory, mode, 0);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Layer {
        let mut h = Layer::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Layer {
        let mut h = Layer::header(kind, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn raw_path(mut self, path: &[u8], data: &[u8]) -> Layer {
        // Written by hand: the builder itself refuses `..`.
        let mut h = Layer::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn as_user() -> UnpackOptions {
    UnpackOptions { as_root: false }
}

fn is_root() -> bool {
    UnpackOptions::default().as_root
}

#[test]
fn files_directories_and_links_land_with_their_modes_and_times() {
    let layer = Layer::new()
        .dir("etc/", 0o755)
        .file("etc/motd", 0o644, b"hello")
        .file("bin/busybox", 0o4755, &[7u8; 3000])
        .link(tar::EntryType::Symlink, "bin/sh", "/bin/busybox")
        .link(tar::EntryType::Link, "bin/ls", "bin/busybox")
        .dir("ro/", 0o555)
        .file("ro/inside", 0o600, b"x")
        .bytes();
    let dest = tempfile::tempdir().unwrap();
    let done = unpack(&layer[..], dest.path(), &as_user()).unwrap();
    assert_eq!(done.entries, 7);
    let root = dest.path();
    assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"hello");
    let busybox = fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(busybox.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(busybox.mtime(), 1_600_000_000);
    // The symlink is made, not followed: it names the container's /bin.
    assert_eq!(fs::read_link(root.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
    let ls = fs::metadata(root.join("bin/ls")).unwrap();
    assert_eq!(ls.ino(), busybox.ino(), "a hard link, not a copy");
    // A read-only directory still got its child, and keeps its mode.
    assert_eq!(fs::read(root.join("ro/inside")).unwrap(), b"x");
    assert_eq!(fs::metadata(root.join("ro")).unwrap().permissions().mode() & 0o777, 0o555);
    assert_eq!(fs::metadata(root.join("etc")).unwrap().mtime(), 1_600_000_000);
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn nothing_reaches_outside_the_layer() {
    let outside = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Layer::new().raw_path(b"../escape", b"x").bytes(), "climbs out"),
        (Layer::new().raw_path(b"a/../../escape", b"x").bytes(), "climbs out"),
        (
            Layer::new()
                .link(tar::EntryType::Symlink, "out", outside.path().to_str().unwrap())
                .file("out/planted", 0o644, b"x")
                .bytes(),
            "goes through a symlink",
        ),
        (
            Layer::new().link(tar::EntryType::Link, "passwd", "../../../etc/passwd").bytes(),
            "climbs out",
        ),
        (Layer::new().link(tar::EntryType::Link, "copy", "not/here").bytes(), "does not hold"),
    ];
    for (layer, expected) in cases {
        let dest = tempfile::tempdir().unwrap();
        let err = unpack(&layer[..], dest.path(), &as_user()).unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "wrote outside: {err}");
    }
    // An absolute path is taken as relative to the layer.
    let dest = tempfile::tempdir().unwrap();
    let layer = Layer::new().raw_path(b"/etc/hostname", b"box").bytes();
    unpack(&layer[..], dest.path(), &as_user()).unwrap();
    assert_eq!(fs::read(dest.path().join("etc/hostname")).unwrap(), b"box");
}

#[test]
fn whiteouts_become_overlay_marks_as_root_and_are_refused_otherwise() {
    let layer = Layer::new()
        .dir("etc/", 0o755)
        .file("etc/.wh.gone", 0o644, b"")
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", 0o644, b"")
        .bytes();
    let dest = tempfile::tempdir().unwrap();
    let err = unpack(&layer[..], dest.path(), &as_user()).unwrap_err();
    assert!(matches!(&err, SnapshotError::NeedsRoot(p) if p == "etc/.wh.gone"), "{err}");
    if !is_root() {
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let done = unpack(&layer[..], dest.path(), &UnpackOptions { as_root: true }).unwrap();
    assert_eq!(done.whiteouts, 2);
    let gone = fs::symlink_metadata(dest.path().join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0, "overlay's whiteout is the 0:0 device");
    let mut value = [0u8; 8];
    let path = std::ffi::CString::new(dest.path().join("var/cache").to_str().unwrap()).unwrap();
    let key = c"trusted.overlay.opaque";
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(path.as_ptr(), key.as_ptr(), value.as_mut_ptr().cast(), value.len())
    };
    assert_eq!(n, 1, "no opaque mark: {}", std::io::Error::last_os_error());
    assert_eq!(value[0], b'y');
}

#[test]
fn each_layer_stack_is_unpacked_once_and_only_seen_whole() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = Snapshots::open(&dir.path().join("snapshots")).unwrap();
    let layer = Layer::new().file("a", 0o644, b"first").bytes();
    let chain = Digest::sha256_of(&layer);
    assert!(!snapshots.has(&chain));
    let opened = std::sync::atomic::AtomicUsize::new(0);
    let open = || -> std::io::Result<Box<dyn Read>> {
        opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Box::new(std::io::Cursor::new(layer.clone())))
    };
    let path = snapshots.ensure(&chain, open, &as_user()).unwrap();
    assert_eq!(fs::read(path.join("a")).unwrap(), b"first");
    let again = snapshots.ensure(&chain, open, &as_user()).unwrap();
    assert_eq!(again, path);
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 1, "unpacked twice");

    // A layer that fails leaves no snapshot and no temporary directory.
    let bad = Layer::new().raw_path(b"../x", b"x").bytes();
    let bad_chain = Digest::sha256_of(&bad);
    let open_bad =
        || -> std::io::Result<Box<dyn Read>> { Ok(Box::new(std::io::Cursor::new(bad.clone()))) };
    assert!(snapshots.ensure(&bad_chain, open_bad, &as_user()).is_err());
    assert!(!snapshots.has(&bad_chain));
    let names: Vec<String> = fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [chain.hex().to_owned()]);

    assert!(snapshots.remove(&chain).unwrap());
    assert!(!snapshots.has(&chain));
    assert!(!snapshots.remove(&chain).unwrap());
}

/// Unmounts when dropped, so a failing assertion leaves no mount behind.
struct Mounted(std::ffi::CString);

impl Drop for Mounted {
    fn drop(&mut self) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn the_kernel_reads_the_marks_as_deletions_through_overlayfs() {
    if !is_root() {
        // Without root there is nothing to mount: whiteouts are refused
        // (see the test above) and this one has nothing to add.
        let layer = Layer::new().file(".wh.a", 0o644, b"").bytes();
        let dest = tempfile::tempdir().unwrap();
        assert!(unpack(&layer[..], dest.path(), &as_user()).is_err());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let snapshots = Snapshots::open(&dir.path().join("s")).unwrap();
    let base = Layer::new()
        .file("a", 0o644, b"deleted above")
        .file("b", 0o644, b"kept")
        .file("d/old", 0o644, b"hidden by the opaque dir")
        .bytes();
    let top = Layer::new()
        .file(".wh.a", 0o644, b"")
        .dir("d/", 0o755)
        .file("d/.wh..wh..opq", 0o644, b"")
        .file("d/new", 0o644, b"only this")
        .bytes();
    let root = UnpackOptions { as_root: true };
    let mut lowers = Vec::new();
    for layer in [&top, &base] {
        let open = || -> std::io::Result<Box<dyn Read>> {
            Ok(Box::new(std::io::Cursor::new(layer.to_vec())))
        };
        lowers.push(snapshots.ensure(&Digest::sha256_of(layer), open, &root).unwrap());
    }
    let target = dir.path().join("merged");
    fs::create_dir(&target).unwrap();
    let options = format!("lowerdir={}:{}", lowers[0].display(), lowers[1].display());
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (src, fstype, data) = (c("overlay"), c("overlay"), c(&options));
    let at = c(target.to_str().unwrap());
    // SAFETY: valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            at.as_ptr(),
            fstype.as_ptr(),
            libc::MS_RDONLY,
            data.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "overlay mount: {}", std::io::Error::last_os_error());
    let _mounted = Mounted(at);
    assert!(!target.join("a").exists(), "the whiteout did not hide a");
    assert_eq!(fs::read(target.join("b")).unwrap(), b"kept");
    let mut names: Vec<String> = fs::read_dir(target.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["new"], "the opaque directory let the lower one through");
}

#[test]
fn a_tree_written_as_tar_comes_back_whole_and_whiteout_names_stay_files() {
    let src = tempfile::tempdir().unwrap();
    let top = src.path().join("top");
    fs::create_dir_all(top.join("sub")).unwrap();
    fs::write(top.join("sub/f"), b"data").unwrap();
    fs::set_permissions(top.join("sub/f"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::hard_link(top.join("sub/f"), top.join("hard")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", top.join("abs")).unwrap();
    fs::write(top.join(".wh.plain"), b"not a whiteout").unwrap();

    let mut tar = Vec::new();
    write_tree(&top, "copy", Some((0, 0)), &mut tar).unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["copy/", "copy/.wh.plain", "copy/abs", "copy/hard", "copy/sub/", "copy/sub/f"]
    );
    let mut only_children = Vec::new();
    write_tree(&top, "", None, &mut only_children).unwrap();
    let mut children = tar::Archive::new(&only_children[..]);
    let first = children.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(first.path().unwrap().to_string_lossy(), ".wh.plain");

    let dest = tempfile::tempdir().unwrap();
    unpack_files(&tar[..], dest.path(), &as_user()).unwrap();
    let copy = dest.path().join("copy");
    assert_eq!(fs::read(copy.join("sub/f")).unwrap(), b"data");
    assert_eq!(fs::metadata(copy.join("sub/f")).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(
        fs::metadata(copy.join("hard")).unwrap().ino(),
        fs::metadata(copy.join("sub/f")).unwrap().ino()
    );
    assert_eq!(fs::read_link(copy.join("abs")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(fs::read(copy.join(".wh.plain")).unwrap(), b"not a whiteout");
}
