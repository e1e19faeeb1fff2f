//! `berth run`, `ps`, `diff`, `commit`, `rm` as the real binary, on an
//! image made from the static busybox. Running a container needs root and
//! runc; without them the test checks the clear refusal instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn berth(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(self.dir.path().join("store"))
            .args(args)
            // berth's config file is the test's own (none unless it writes one).
            .env("BERTH_CONFIG", self.dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A test that fails midway still stops and removes what it ran.
impl Drop for Env {
    fn drop(&mut self) {
        if !self.dir.path().join("store").exists() {
            return;
        }
        let ids = self.berth(&["ps", "-a", "-q", "--no-trunc"]);
        let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
        let mut args = vec!["rm", "-f"];
        args.extend(ids.lines());
        if args.len() > 2 {
            let _ = self.berth(&args);
        }
    }
}

/// A rootfs tarball: busybox, a few applets, passwd and group, a file to change.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "rm", "mkdir", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(root.join("etc/motd"), "old\n").unwrap();
    let tar = dir.join("rootfs.tar");
    let status =
        Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(status.success());
    tar
}

fn can_run_containers() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && Path::new("/bin/busybox").exists()
        && ["/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc"].iter().any(|p| Path::new(p).exists())
}

#[test]
fn run_diff_commit_and_rm_carry_the_seed_workflow() {
    let env = Env { dir: tempfile::tempdir().unwrap() };
    if !Path::new("/bin/busybox").exists() {
        // Nothing to build an image from on this machine.
        assert!(env.berth(&["ps", "-a"]).status.success());
        return;
    }
    let tar = busybox_rootfs(env.dir.path());
    env.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    if !can_run_containers() {
        let out = env.berth(&["run", "--rm", "bb:1", "true"]);
        assert_eq!(out.status.code(), Some(125), "berth's own error");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
        return;
    }
    // The container's own exit code, its output on ours.
    let out = env.berth(&["run", "--rm", "bb:1", "/bin/sh", "-c", "echo hello; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    // A missing command: docker's 127.
    assert_eq!(env.berth(&["run", "--rm", "bb:1", "nope"]).status.code(), Some(127));
    // crun runs the same bundle (in a mount namespace without cgroup2 on
    // this machine kind's hybrid cgroups).
    if Path::new("/usr/bin/crun").exists() {
        let out = env.berth(&[
            "run",
            "--rm",
            "--runtime",
            "crun",
            "bb:1",
            "/bin/sh",
            "-c",
            "echo crun; exit 5",
        ]);
        assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "crun\n");
    }
    assert_eq!(
        env.berth(&["run", "--rm", "--runtime", "/nonexistent/rt", "bb:1", "true"]).status.code(),
        Some(125)
    );
    // -v: a bind mount of a host directory, read-only with :ro.
    let shared = env.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("in"), "from the host\n").unwrap();
    let vol = format!("{}:/mnt", shared.display());
    let out = env.ok(&[
        "run",
        "--rm",
        "-v",
        &vol,
        "bb:1",
        "/bin/sh",
        "-c",
        "cat /mnt/in; echo back > /mnt/out",
    ]);
    assert_eq!(out, "from the host\n");
    assert_eq!(std::fs::read_to_string(shared.join("out")).unwrap(), "back\n");
    let ro = format!("{}:/mnt:ro", shared.display());
    assert_ne!(
        env.berth(&["run", "--rm", "-v", &ro, "bb:1", "/bin/sh", "-c", "echo x > /mnt/no"])
            .status
            .code(),
        Some(0)
    );
    let missing = env.berth(&["run", "--rm", "-v", "/nonexistent/dir:/mnt", "bb:1", "true"]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("bind source path does not exist"));
    // An unknown network: berth's own error, 125.
    assert_eq!(env.berth(&["run", "--network", "x", "bb:1", "true"]).status.code(), Some(125));

    env.ok(&[
        "run",
        "--name",
        "c1",
        "bb:1",
        "/bin/sh",
        "-c",
        "echo new > /etc/motd; mkdir /data; echo x > /data/f; rm /bin/ls",
    ]);
    let name_taken = env.berth(&["run", "--name", "c1", "bb:1", "true"]);
    assert_eq!(name_taken.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&name_taken.stderr).contains("is already in use by container"));
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(ps.contains("Exited (0)") && ps.contains(" c1\n"), "{ps}");
    assert!(env.ok(&["ps"]).lines().count() == 1, "nothing is running");

    // system df counts it, and the image it uses as active.
    let df = env.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"]);
    assert!(df.contains("Images 1 1\n") && df.contains("Containers 1 0\n"), "{df}");

    // `berth inspect` finds containers too, with docker's fields.
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "c1"])).unwrap();
    assert_eq!(inspect[0]["Name"], "/c1");
    assert_eq!(inspect[0]["State"]["Status"], "exited");
    assert_eq!(inspect[0]["State"]["ExitCode"], 0);
    assert_eq!(inspect[0]["Path"], "/bin/sh");
    assert_eq!(inspect[0]["Config"]["Image"], "bb:1");
    assert!(inspect[0]["Id"].as_str().unwrap().len() == 64);

    // Docker's diff rules, sorted by path.
    assert_eq!(
        env.ok(&["diff", "c1"]),
        "C /bin\nD /bin/ls\nA /data\nA /data/f\nC /etc\nC /etc/motd\n"
    );

    // Commit with author and message; the new image runs with the change.
    let id = env.ok(&["commit", "-a", "Me <me@example.com>", "-m", "my change", "c1", "bb:2"]);
    assert!(id.trim().starts_with("sha256:") && id.trim().len() == 71, "{id}");
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "bb:2"])).unwrap();
    assert_eq!(inspect[0]["Author"], "Me <me@example.com>");
    assert_eq!(inspect[0]["Comment"], "my change");
    let out = env.ok(&["run", "--rm", "bb:2", "cat", "/etc/motd", "/data/f"]);
    assert_eq!(out, "new\nx\n");
    assert!(env.berth(&["run", "--rm", "bb:2", "ls"]).status.code() == Some(127), "ls was deleted");

    // A container whose `berth run` was killed (here: a dead PID) is shown
    // exited, never stuck as running.
    {
        let store = berth_store::Store::open(&env.dir.path().join("store")).unwrap();
        let image = store.resolve("bb:1").unwrap();
        let id = "f".repeat(64);
        store
            .create_container(&berth_store::ContainerRecord {
                id: id.clone(),
                name: "lost".into(),
                image_id: image,
                image_name: "bb:1".into(),
                command: "true".into(),
                running: true,
                created: 1_700_000_000,
                exit_code: None,
                finished: None,
                config: b"{}".to_vec(),
            })
            .unwrap();
        let dir = env.dir.path().join("store/containers").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        std::fs::write(dir.join("monitor"), format!("9999999 {}", boot.trim())).unwrap();
    }
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.lines().any(|l| l.contains("Exited (255)") && l.ends_with("lost")), "{ps}");
    assert_eq!(env.ok(&["rm", "lost"]), "lost\n");

    // image prune -a keeps every image a container uses, and only those.
    env.ok(&["image", "prune", "-a", "-f"]);
    assert!(env.berth(&["inspect", "bb:1"]).status.success(), "the image c1 uses was pruned");
    assert!(!env.berth(&["inspect", "bb:2"]).status.success(), "an unused image was kept");

    // The image a container uses is protected, with docker's words.
    let rmi = env.berth(&["rmi", "bb:1"]);
    assert!(!rmi.status.success());
    assert!(String::from_utf8_lossy(&rmi.stderr).contains("(must force) - container"), "{rmi:?}");
    assert_eq!(env.ok(&["rm", "c1"]), "c1\n");
    assert!(env.berth(&["diff", "c1"]).status.code() == Some(1));
    // Detached: the ID at once, Up in ps, its output in logs, stop kills
    // a shell that ignores TERM after -t (137, as docker), wait the code.
    let script = "echo started; while true; do echo tick; sleep 0.1; done";
    let id = env.ok(&["run", "-d", "--name", "bg", "bb:1", "/bin/sh", "-c", script]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !env.ok(&["logs", "bg"]).contains("tick") {
        assert!(std::time::Instant::now() < deadline, "no output from the detached container");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(env.ok(&["ps"]).lines().any(|l| l.contains(" Up ") && l.ends_with("bg")));
    assert!(env.ok(&["logs", "--tail", "1", "bg"]).starts_with("tick"));
    assert!(env.ok(&["logs", "bg"]).starts_with("started\ntick\n"));
    // exec runs in it, with its own exit code; rename keeps it running.
    assert_eq!(env.ok(&["exec", "bg", "cat", "/etc/motd"]), "old\n");
    assert_eq!(env.berth(&["exec", "bg", "/bin/sh", "-c", "exit 9"]).status.code(), Some(9));
    env.ok(&["rename", "bg", "background"]);
    env.ok(&["rename", "background", "bg"]);
    assert_eq!(env.ok(&["stop", "-t", "1", "bg"]), "bg\n");
    assert!(env.ok(&["ps", "-a"]).lines().any(|l| l.contains("Exited (137)") && l.ends_with("bg")));
    env.ok(&["run", "-d", "--name", "seven", "bb:1", "/bin/sh", "-c", "exit 7"]);
    assert_eq!(env.ok(&["wait", "seven"]), "7\n");
    env.ok(&["rm", "bg", "seven"]);

    // create, then start -a: Created until started; start again later
    // runs over what it already changed.
    let id = env.ok(&[
        "create",
        "--name",
        "made",
        "bb:1",
        "/bin/sh",
        "-c",
        "echo run >> /count; cat /count",
    ]);
    assert_eq!(id.trim().len(), 64);
    assert!(env.ok(&["ps", "-a"]).lines().any(|l| l.contains("Created") && l.ends_with("made")));
    assert_eq!(env.ok(&["start", "-a", "made"]), "run\n");
    assert_eq!(env.ok(&["start", "-a", "made"]), "run\nrun\n");
    env.ok(&["rm", "made"]);

    // container prune: every stopped container, docker's report.
    env.ok(&["run", "--name", "stopped", "bb:1", "/bin/sh", "-c", "echo data > /f"]);
    let id = env.ok(&["ps", "-a", "-q", "--no-trunc"]);
    let pruned = env.ok(&["container", "prune", "-f"]);
    assert!(pruned.starts_with(&format!("Deleted Containers:\n{}", id)), "{pruned}");
    assert!(pruned.ends_with("Total reclaimed space: 5B\n"), "{pruned}");
    env.ok(&["rmi", "bb:1"]);
    assert_eq!(env.ok(&["ps", "-a"]).lines().count(), 1);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(env.dir.path().to_str().unwrap()), "a mount was left behind");
}

fn image_env() -> Option<Env> {
    let env = Env { dir: tempfile::tempdir().unwrap() };
    if !Path::new("/bin/busybox").exists() {
        return None;
    }
    let tar = busybox_rootfs(env.dir.path());
    env.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    Some(env)
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn labels_env_files_ps_filters_formats_and_restart() {
    let Some(env) = image_env() else { return };
    // -p is refused before anything is made, with what berth lacks.
    let out = env.berth(&["run", "-p", "8080:80", "bb:1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("berth has no port publishing yet"), "{}", stderr_of(&out));
    let bad = env.dir.path().join("bad.env");
    std::fs::write(&bad, "A B=1\n").unwrap();
    let out = env.berth(&["create", "--env-file", bad.to_str().unwrap(), "bb:1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("variable 'A B' contains whitespaces"), "{}", stderr_of(&out));
    let out = env.berth(&["create", "--env-file", "/nonexistent/env", "bb:1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(env.ok(&["ps", "-a", "-q"]).is_empty(), "a refused run left a container");
    if !can_run_containers() {
        return;
    }
    let file = env.dir.path().join("app.env");
    std::fs::write(&file, "# settings\nFROM_FILE=1\n  SPACED=a b \nBOTH=file\nHOST_ONE\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(env.dir.path().join("store"))
        .args(["run", "--name", "e1", "-l", "tier=web", "-l", "flag", "--env-file"])
        .arg(&file)
        .args([
            "-e",
            "BOTH=flag",
            "bb:1",
            "/bin/sh",
            "-c",
            "echo \"$FROM_FILE|$SPACED|$BOTH|$HOST_ONE\"",
        ])
        .env("HOST_ONE", "from-host")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1|a b |flag|from-host\n");
    let out =
        env.berth(&["run", "--name", "e2", "-l", "tier=db", "bb:1", "/bin/sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    env.ok(&["create", "--name", "e3", "bb:1", "echo"]);

    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "e1"])).unwrap();
    assert_eq!(inspect[0]["Config"]["Labels"], serde_json::json!({"flag": "", "tier": "web"}));
    let names = |args: &[&str]| {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        env.ok(&a)
    };
    assert_eq!(names(&["-a", "--filter", "label=tier=web"]), "e1\n");
    assert_eq!(names(&["-a", "--filter", "label=tier"]), "e2\ne1\n");
    assert_eq!(names(&["-a", "--filter", "label=flag", "--filter", "label=tier=db"]), "");
    assert_eq!(names(&["--filter", "status=exited"]), "e2\ne1\n");
    assert_eq!(names(&["--filter", "status=created"]), "e3\n");
    assert_eq!(names(&["-a", "--filter", "exited=4"]), "e2\n");
    assert_eq!(names(&["-a", "--filter", "name=e"]), "e3\ne2\ne1\n");
    assert_eq!(names(&["-a", "--filter", "name=e2", "--filter", "name=e3"]), "e3\ne2\n");
    assert_eq!(names(&["-a", "--filter", "ancestor=bb:1"]), "e3\ne2\ne1\n");
    assert_eq!(names(&["-a", "--filter", "ancestor=nope:1"]), "");
    let id = env.ok(&["ps", "-a", "-q", "--no-trunc", "--filter", "name=e1"]);
    assert_eq!(names(&["-a", "--filter", &format!("id={}", &id[..5])]), "e1\n");
    assert_eq!(names(&["-a", "--filter", "since=e1"]), "e3\ne2\n");
    assert_eq!(names(&["-l"]), "e3\n");
    assert_eq!(names(&["-n", "2"]), "e3\ne2\n");
    assert_eq!(env.ok(&["ps", "-n", "1", "-q"]).trim().len(), 12);
    for bad in ["status=nope", "colour=red", "exited=x"] {
        let out = env.berth(&["ps", "--filter", bad]);
        assert!(!out.status.success() && stderr_of(&out).contains("filter"), "{bad}");
    }
    let table = env.ok(&[
        "ps",
        "-a",
        "--filter",
        "name=e2",
        "--format",
        "table {{.Names}}\t{{.Status}}\t{{.Labels}}",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAMES", "STATUS", "LABELS"]);
    assert!(
        lines[1].starts_with("e2")
            && lines[1].contains("Exited (4)")
            && lines[1].ends_with("tier=db"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&[
        "ps",
        "-a",
        "--filter",
        "name=e1",
        "--format",
        "{{json .}}",
    ]))
    .unwrap();
    assert_eq!(json["Names"], "e1");
    assert_eq!(json["Command"], "\"/bin/sh -c 'echo \\\"$…\"", "cut at 20, quoted as docker");
    assert_eq!(json["State"], "exited");
    assert_eq!(json["Labels"], "flag=,tier=web");
    assert_eq!(json["ID"].as_str().unwrap(), &id[..12]);
    let line = env.ok(&[
        "ps",
        "-a",
        "--filter",
        "name=e3",
        "--format",
        "{{.ID}} {{.Image}} {{.Command}} {{.CreatedAt}}",
    ]);
    assert!(
        line.starts_with(&format!(
            "{} bb:1 \"echo\" 20",
            env.ok(&["ps", "-a", "-q", "--filter", "name=e3"]).trim()
        )),
        "{line}"
    );
    assert!(line.trim_end().ends_with("+0000 UTC"), "{line}");

    // restart: stopped after -t, started again over its own changes.
    let script = "echo run >> /count; trap 'exit 0' TERM; while true; do busybox sleep 0.1; done";
    env.ok(&["run", "-d", "--name", "again", "bb:1", "/bin/sh", "-c", script]);
    assert_eq!(env.ok(&["exec", "again", "cat", "/count"]), "run\n", "run -d is back once it runs");
    assert_eq!(env.ok(&["restart", "-t", "5", "again"]), "again\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while env.ok(&["exec", "again", "cat", "/count"]) != "run\nrun\n" {
        assert!(std::time::Instant::now() < deadline, "restart did not run it again");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(names(&["--filter", "status=running"]), "again\n");
    // restart of a stopped container starts it.
    env.ok(&["stop", "-t", "5", "again"]);
    env.ok(&["restart", "again"]);
    assert_eq!(names(&["--filter", "status=running"]), "again\n");
    // rm -v is accepted (berth makes no anonymous volumes).
    assert_eq!(env.ok(&["rm", "-f", "-v", "again", "e1", "e2", "e3"]), "again\ne1\ne2\ne3\n");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(env.dir.path().to_str().unwrap()), "a mount was left behind");
}

#[test]
fn top_export_and_cp_both_ways_running_or_stopped() {
    let Some(env) = image_env() else { return };
    if !can_run_containers() {
        let out = env.berth(&["cp", "nope:/etc/motd", "-"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr_of(&out).contains("No such container: nope"), "{}", stderr_of(&out));
        return;
    }
    let host = env.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let script = "mkdir -p /d/s; echo x > /d/s/f; echo y > /d/top; busybox ln -s /etc/motd /link; exec sh -c 'while true; do busybox sleep 1; done'";
    env.ok(&["run", "-d", "--name", "f1", "bb:1", "/bin/sh", "-c", script]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !env.berth(&["exec", "f1", "cat", "/d/top"]).status.success() {
        assert!(std::time::Instant::now() < deadline, "the container made no files");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // top: ps -ef's columns, only the container's processes.
    let top = env.ok(&["top", "f1"]);
    let lines: Vec<&str> = top.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    assert!(lines[1..].iter().any(|l| l.contains("while true")), "{top}");
    assert!(!top.contains("cargo"), "a process of this machine is listed: {top}");
    let aux = env.ok(&["top", "f1", "aux"]);
    assert!(aux.starts_with("USER") && aux.contains("while true"), "{aux}");

    let h = |p: &str| host.join(p);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    // Out: a file into a directory keeps its name; onto a new name takes it.
    env.ok(&["cp", "f1:/d/top", &s(&host)]);
    assert_eq!(std::fs::read_to_string(h("top")).unwrap(), "y\n");
    env.ok(&["cp", "f1:/d/top", &s(&h("renamed"))]);
    assert_eq!(std::fs::read_to_string(h("renamed")).unwrap(), "y\n");
    // A directory: onto a new path it becomes it; into one it goes inside;
    // with /. only its contents.
    env.ok(&["cp", "f1:/d", &s(&h("newdir"))]);
    assert_eq!(std::fs::read_to_string(h("newdir/s/f")).unwrap(), "x\n");
    env.ok(&["cp", "f1:/d", &s(&h("newdir"))]);
    assert_eq!(std::fs::read_to_string(h("newdir/d/s/f")).unwrap(), "x\n");
    std::fs::create_dir(h("flat")).unwrap();
    env.ok(&["cp", "f1:/d/.", &s(&h("flat"))]);
    assert!(h("flat/top").is_file() && h("flat/s/f").is_file());
    // A symlink is copied as itself; its target stays the container's.
    env.ok(&["cp", "f1:/link", &s(&h("link"))]);
    assert_eq!(std::fs::read_link(h("link")).unwrap(), Path::new("/etc/motd"));
    // To stdout: a tar named from the source's last name.
    let out = env.berth(&["cp", "f1:/d/s", "-"]);
    let mut names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["s/", "s/f"]);
    // Refusals with what is wrong, nothing written.
    let missing = env.berth(&["cp", "f1:/nope", &s(&host)]);
    assert!(stderr_of(&missing).contains("Could not find the file /nope in container f1"));
    assert!(
        !env.berth(&["cp", "f1:/d", &s(&h("top"))]).status.success(),
        "a directory onto a file"
    );
    assert!(!env.berth(&["cp", "f1:/d/top", &s(&h("absent/"))]).status.success());
    assert!(!h("absent").exists());
    assert!(
        stderr_of(&env.berth(&["cp", "a", "b"]))
            .contains("must specify at least one container source")
    );
    assert!(
        stderr_of(&env.berth(&["cp", "f1:/a", "f1:/b"]))
            .contains("copying between containers is not supported")
    );

    // In: owned by root, into a directory, onto a new name, from a tar on stdin.
    std::fs::write(h("in.txt"), "in\n").unwrap();
    env.ok(&["cp", &s(&h("in.txt")), "f1:/d/"]);
    env.ok(&["cp", &s(&h("in.txt")), "f1:/named.txt"]);
    assert_eq!(env.ok(&["exec", "f1", "cat", "/d/in.txt", "/named.txt"]), "in\nin\n");
    env.ok(&["cp", &s(&h("flat")), "f1:/fromhost"]);
    assert_eq!(env.ok(&["exec", "f1", "cat", "/fromhost/s/f"]), "x\n");
    // A symlink in the container leads inside it, never out to this machine.
    env.ok(&["exec", "f1", "busybox", "ln", "-s", "/", "/escape"]);
    env.ok(&["cp", &s(&h("in.txt")), "f1:/escape/etc/"]);
    assert_eq!(env.ok(&["exec", "f1", "cat", "/etc/in.txt"]), "in\n");
    assert!(
        !Path::new("/etc/in.txt").exists()
            || std::fs::read_to_string("/etc/in.txt").unwrap() != "in\n"
    );
    let mut tar_in = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_in);
        let mut hd = tar::Header::new_gnu();
        hd.set_size(3);
        hd.set_mode(0o600);
        b.append_data(&mut hd, "piped/file", &b"abc"[..]).unwrap();
        b.finish().unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(env.dir.path().join("store"))
        .args(["cp", "-", "f1:/d"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar_in).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(env.ok(&["exec", "f1", "cat", "/d/piped/file"]), "abc");
    let mut evil = Vec::new();
    {
        let mut b = tar::Builder::new(&mut evil);
        let mut hd = tar::Header::new_gnu();
        hd.set_size(1);
        hd.set_mode(0o644);
        hd.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"../../up");
        hd.set_cksum();
        b.append(&hd, &b"x"[..]).unwrap();
        b.finish().unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(env.dir.path().join("store"))
        .args(["cp", "-", "f1:/d"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &evil).unwrap();
    drop(child.stdin.take());
    assert!(
        !child.wait_with_output().unwrap().status.success(),
        "a tar climbing out with .. was taken"
    );

    // Stopped: cp and export still work (the filesystem mounted for them).
    env.ok(&["stop", "-t", "1", "f1"]);
    env.ok(&["cp", "f1:/named.txt", &s(&h("after-stop"))]);
    assert_eq!(std::fs::read_to_string(h("after-stop")).unwrap(), "in\n");
    env.ok(&["cp", &s(&h("in.txt")), "f1:/while-stopped"]);
    let exported = h("f1.tar");
    env.ok(&["export", "-o", &s(&exported), "f1"]);
    let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&exported).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in [
        ".dockerenv",
        "bin/busybox",
        "d/piped/file",
        "etc/hostname",
        "etc/motd",
        "link",
        "while-stopped",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not exported: {names:?}");
    }
    assert!(names.iter().all(|n| !n.starts_with('/') && !n.starts_with("..")));
    let streamed = env.berth(&["export", "f1"]);
    assert!(streamed.status.success());
    assert_eq!(tar::Archive::new(&streamed.stdout[..]).entries().unwrap().count(), names.len());
    assert!(stderr_of(&env.berth(&["top", "f1"])).contains("is not running"));
    env.ok(&["rm", "f1"]);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(env.dir.path().to_str().unwrap()), "a mount was left behind");
}

#[test]
fn tty_for_run_exec_and_detached_containers() {
    let Some(env) = image_env() else { return };
    if !can_run_containers() {
        return;
    }
    let check = "test -t 0 && test -t 1 && test -t 2 && echo \"tty $TERM\"; exit 3";
    let out = env.berth(&["run", "--rm", "-t", "bb:1", "/bin/sh", "-c", check]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tty xterm\r\n", "a terminal's line ends");
    // Off a terminal, the container's has the usual 24 rows of 80 columns.
    let out = env.berth(&["run", "--rm", "-t", "bb:1", "/bin/busybox", "stty", "size"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "24 80\r\n");
    let out = env.berth(&["run", "--rm", "bb:1", "/bin/sh", "-c", "test -t 1 || echo none"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "none\n");
    // -i -t: our stdin reaches the shell through the terminal.
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(env.dir.path().join("store"))
        .args(["run", "--rm", "-i", "-t", "bb:1", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"echo typed-$((6*7)); exit 4\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("typed-42"), "{out:?}");
    // Detached with a terminal: its output is the log's stdout; exec -t too.
    let script = "test -t 1 && echo detached-tty; while true; do busybox sleep 1; done";
    env.ok(&["run", "-d", "-t", "--name", "dt", "bb:1", "/bin/sh", "-c", script]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !env.ok(&["logs", "dt"]).contains("detached-tty") {
        assert!(std::time::Instant::now() < deadline, "no output from the detached terminal");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out =
        env.berth(&["exec", "-t", "dt", "/bin/sh", "-c", "test -t 1 && echo exec-tty; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    // runc's exec relay sometimes passes a line end through a second
    // carriage-return translation ("\r\r\n", which a terminal shows the
    // same); the text itself must be exact.
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\r\n", "\r\n");
    assert_eq!(text, "exec-tty\r\n");
    // exec -t starts at the caller's terminal size (24x80 off a terminal).
    let out = env.berth(&["exec", "-t", "dt", "/bin/busybox", "stty", "size"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).replace("\r\r\n", "\r\n"), "24 80\r\n");
    // exec runs with the container's own environment, as docker's does.
    assert_eq!(env.ok(&["exec", "dt", "/bin/sh", "-c", "echo $HOSTNAME"]).trim().len(), 12);
    env.ok(&["rm", "-f", "dt"]);
}

#[test]
fn the_runtime_comes_from_the_flag_a_path_or_the_config_file() {
    let Some(env) = image_env() else { return };
    let config = env.dir.path().join("config.toml");
    std::fs::write(&config, "runtime = \"/nonexistent/runtime\"\n").unwrap();
    let out = env.berth(&["run", "--rm", "bb:1", "echo"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr_of(&out).contains("\"/nonexistent/runtime\" is not installed"),
        "{}",
        stderr_of(&out)
    );
    std::fs::write(&config, "runtime = 7\n").unwrap();
    let out = env.berth(&["run", "--rm", "bb:1", "echo"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("config.toml"), "the bad file is named: {}", stderr_of(&out));
    if !can_run_containers() {
        return;
    }
    // The flag wins over the file; a path works as well as a name.
    let runc = ["/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    std::fs::write(&config, "runtime = \"/nonexistent/runtime\"\n").unwrap();
    let out = env.berth(&["run", "--name", "by-path", "--runtime", runc, "bb:1", "echo", "hi"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{}", stderr_of(&out));
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "by-path"])).unwrap();
    assert_eq!(inspect[0]["HostConfig"]["Runtime"], "runc");
    if Path::new("/usr/bin/crun").exists() {
        std::fs::write(&config, "runtime = \"crun\"\n").unwrap();
        let script = "echo up; while true; do busybox sleep 1; done";
        env.ok(&["run", "-d", "--name", "by-config", "bb:1", "/bin/sh", "-c", script]);
        let inspect: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", "by-config"])).unwrap();
        assert_eq!(inspect[0]["HostConfig"]["Runtime"], "crun");
        // Every later command drives it with crun, whatever the file says now.
        std::fs::remove_file(&config).unwrap();
        assert_eq!(env.ok(&["exec", "by-config", "echo", "in-crun"]), "in-crun\n");
        assert!(env.ok(&["top", "by-config"]).contains("while true"));
        assert_eq!(env.ok(&["stop", "-t", "1", "by-config"]), "by-config\n");
        assert!(env.ok(&["ps", "-a", "--filter", "name=by-config"]).contains("Exited (137)"));
    }
    env.ok(&["rm", "by-path"]);
    let _ = env.berth(&["rm", "-f", "by-config"]);
}

#[test]
fn a_berth_killed_during_run_leaves_the_true_state() {
    let Some(env) = image_env() else { return };
    if !can_run_containers() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--root")
        .arg(env.dir.path().join("store"))
        .env("BERTH_CONFIG", env.dir.path().join("config.toml"))
        .args([
            "run",
            "--name",
            "k",
            "bb:1",
            "/bin/sh",
            "-c",
            "while true; do busybox sleep 1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !String::from_utf8_lossy(&env.berth(&["top", "k"]).stdout).contains("while true") {
        assert!(std::time::Instant::now() < deadline, "the container did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Its runtime still runs it: shown running, and stop ends it for real.
    assert!(env.ok(&["ps"]).lines().any(|l| l.contains(" Up ") && l.ends_with(" k")));
    assert_eq!(env.ok(&["stop", "-t", "1", "k"]), "k\n");
    let ps = env.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps, "k exited\n");
    // Started again by two berths at once: they take turns on its lock,
    // so it runs once, over its own upper directory, on one mount.
    let starts: Vec<_> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_berth"))
                .arg("--root")
                .arg(env.dir.path().join("store"))
                .env("BERTH_CONFIG", env.dir.path().join("config.toml"))
                .args(["start", "k"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut s in starts {
        assert!(s.wait().unwrap().success());
    }
    let top = env.ok(&["top", "k"]);
    assert_eq!(top.lines().filter(|l| l.contains("while true")).count(), 1, "{top}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let ours = mounts.lines().filter(|l| l.contains(env.dir.path().to_str().unwrap())).count();
    assert_eq!(ours, 1, "{mounts}");
    env.ok(&["rm", "-f", "k"]);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(env.dir.path().to_str().unwrap()), "a mount was left behind");
}
