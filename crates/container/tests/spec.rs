//! Bundles as docker fills them, and one run through the real runc.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_container::spec::{environment, process_args};
use berth_container::{Network, RunOptions, User, UserError, bundle_config, resolve_user};
use berth_oci::ContainerConfig;

fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerConfig {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    ContainerConfig {
        entrypoint: entrypoint.map(v),
        cmd: cmd.map(v),
        env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
        working_dir: Some("/srv".into()),
        ..Default::default()
    }
}

fn root() -> User {
    User { uid: 0, gid: 0, additional_gids: vec![], home: Some("/root".into()) }
}

#[test]
fn arguments_combine_as_docker_combines_them() {
    let opts = |command: &[&str], entrypoint: Option<&str>| RunOptions {
        command: command.iter().map(|s| s.to_string()).collect(),
        entrypoint: entrypoint.map(str::to_owned),
        ..Default::default()
    };
    let ep = image(Some(&["/bin/sh", "-c"]), Some(&["echo hi"]));
    assert_eq!(process_args(&ep, &opts(&[], None)).unwrap(), ["/bin/sh", "-c", "echo hi"]);
    assert_eq!(process_args(&ep, &opts(&["date"], None)).unwrap(), ["/bin/sh", "-c", "date"]);
    // --entrypoint drops the image's CMD too.
    assert_eq!(process_args(&ep, &opts(&[], Some("/bin/true"))).unwrap(), ["/bin/true"]);
    assert_eq!(process_args(&ep, &opts(&["x"], Some(""))).unwrap(), ["x"]);
    let nothing = image(None, None);
    assert!(process_args(&nothing, &opts(&[], None)).is_err());
}

#[test]
fn the_environment_is_the_images_with_run_options_over_it() {
    let img = image(None, Some(&["sh"]));
    let opts = RunOptions {
        env: vec!["A=run".into(), "B=2".into()],
        hostname: "abc123".into(),
        terminal: true,
        ..Default::default()
    };
    let env = environment(&img, &opts, &root());
    assert_eq!(env, ["HOSTNAME=abc123", "TERM=xterm", "HOME=/root", "PATH=/bin", "A=run", "B=2"]);
    let bare = ContainerConfig { cmd: Some(vec!["sh".into()]), ..Default::default() };
    let env = environment(&bare, &RunOptions::default(), &root());
    assert!(env[0].starts_with("PATH=/usr/local/sbin:"), "{env:?}");
}

#[test]
fn users_resolve_in_the_images_own_files() {
    let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
    let group = "root:x:0:\nwheel:x:10:app,root\nstaff:x:50:app\napp:x:1000:\n";
    let u = |s: &str| resolve_user(s, passwd, group);
    assert_eq!(
        u("").unwrap(),
        User { uid: 0, gid: 0, additional_gids: vec![10], home: Some("/root".into()) }
    );
    assert_eq!(
        u("app").unwrap(),
        User {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10, 50],
            home: Some("/home/app".into())
        }
    );
    assert_eq!(u("1000:staff").unwrap().gid, 50);
    assert_eq!(u("4242").unwrap(), User { uid: 4242, gid: 0, additional_gids: vec![], home: None });
    assert_eq!(u("65534:65534").unwrap().uid, 65534);
    assert_eq!(u("ghost").unwrap_err(), UserError::NoUser("ghost".into()));
    assert_eq!(u("app:ghosts").unwrap_err(), UserError::NoGroup("ghosts".into()));
}

#[test]
fn the_bundle_has_dockers_namespaces_mounts_and_limits() {
    let img = image(None, Some(&["sh"]));
    let opts = RunOptions {
        hostname: "h".into(),
        nofile: 20000,
        network: Network::Host,
        volumes: vec![("/data".into(), "/mnt".into(), true)],
        ..Default::default()
    };
    let c = bundle_config(&img, &opts, &root(), Path::new("/rootfs")).unwrap();
    assert_eq!(c["process"]["cwd"], "/srv");
    assert_eq!(c["process"]["rlimits"][0]["hard"], 20000);
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["pid", "ipc", "uts", "mount"], "--network host: no network namespace");
    let last = c["mounts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["destination"], "/mnt");
    assert!(last["options"].as_array().unwrap().iter().any(|o| o == "ro"));
    assert_eq!(c["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 14);
}

/// Unmounts when dropped.
struct Mounted(std::ffi::CString);

impl Drop for Mounted {
    fn drop(&mut self) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A layer with the static busybox and the applets the test runs.
fn busybox_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name("/bin/busybox", "bin/busybox").unwrap();
    for applet in ["sh", "echo", "cat"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn a_bundle_runs_under_runc_over_an_overlay_and_its_changes_are_seen() {
    let runc = Path::new("/usr/sbin/runc");
    let is_root = berth_snapshot::UnpackOptions::default().as_root;
    if !is_root || !runc.exists() || !Path::new("/bin/busybox").exists() {
        // Nothing to run here: only the pure parts above are checked.
        assert!(!is_root || !runc.exists() || !Path::new("/bin/busybox").exists());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let snapshots = berth_snapshot::Snapshots::open(&dir.path().join("snapshots")).unwrap();
    let layer = busybox_layer();
    let chain = berth_reference::Digest::sha256_of(&layer);
    let open = || -> std::io::Result<Box<dyn std::io::Read>> {
        Ok(Box::new(std::io::Cursor::new(layer.clone())))
    };
    let lower = snapshots.ensure(&chain, open, &Default::default()).unwrap();
    let bundle = dir.path().join("bundle");
    let (init, upper, work, rootfs): (PathBuf, PathBuf, PathBuf, PathBuf) =
        (bundle.join("init"), bundle.join("upper"), bundle.join("work"), bundle.join("rootfs"));
    for d in [&init, &upper, &work, &rootfs] {
        std::fs::create_dir_all(d).unwrap();
    }
    berth_container::write_init_layer(&init).unwrap();
    let options = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        init.display(),
        lower.display(),
        upper.display(),
        work.display()
    );
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let at = c(rootfs.to_str().unwrap());
    // SAFETY: valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::mount(
            c("overlay").as_ptr(),
            at.as_ptr(),
            c("overlay").as_ptr(),
            0,
            c(&options).as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "overlay mount: {}", std::io::Error::last_os_error());
    let _mounted = Mounted(at);

    let img =
        ContainerConfig { cmd: Some(vec!["/bin/sh".into(), "-c".into()]), ..Default::default() };
    let opts = RunOptions {
        command: vec!["echo hello from berth > /out; exit 3".into()],
        hostname: "berth-test".into(),
        nofile: 1024,
        ..Default::default()
    };
    let id = format!("berth-test-{}", std::process::id());
    let mut config = bundle_config(&img, &opts, &root(), &rootfs).unwrap();
    config["process"]["args"] =
        serde_json::json!(["/bin/sh", "-c", "echo hello from berth > /out; exit 3"]);
    config["linux"]["cgroupsPath"] = serde_json::json!(format!("/{id}"));
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let status = Command::new(runc)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    let _ = Command::new(runc).args(["delete", "--force", &id]).status();
    // runc leaves the container's (empty) cgroups behind: remove them.
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for c in controllers.flatten() {
            let _ = std::fs::remove_dir(c.path().join(&id));
        }
    }
    assert_eq!(status.code(), Some(3), "the container's own exit code");
    assert_eq!(std::fs::read(upper.join("out")).unwrap(), b"hello from berth\n");
    let image_layers = [lower.clone()];
    // The runtime's mount points are in the init layer: not changes.
    let lowers = berth_snapshot::Lowers { init: Some(&init), image: &image_layers };
    let changes: Vec<String> =
        berth_snapshot::changes(&upper, &lowers).unwrap().iter().map(|c| c.to_string()).collect();
    assert_eq!(changes, ["A /out"]);
}
