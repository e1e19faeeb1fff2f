//! `berth run`, `ps`, `rm`, `diff` and `commit`: containers without a
//! daemon. A container is a directory under `<root>/containers/<id>/` (its
//! init layer, upper and work directories, and the runtime bundle whose
//! root filesystem is an overlay of those over the image's snapshots) and a
//! row in the store, which pins its image. `run` is in the foreground: it
//! mounts, runs the runtime, records how the container ended and unmounts;
//! `run -d` and `start` hand that to a `berth container monitor`.
//!
//! Beside this module: `ps` (docker's list, filters and `--format`), `top`,
//! `files` (`cp`, `export`) and `tty` (`-t`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, anyhow, bail};
use berth_container::{
    Network, Overlay, RunOptions, bundle_config, lower_dirs, resolve_in_root, resolve_user,
    runtime_command, snapshots_of, unmount,
};
use berth_oci::{ContainerConfig, ImageConfig};
use berth_reference::{Digest, Reference};
use berth_snapshot::{Lowers, UnpackOptions, changes, write_layer};
use berth_store::{ContainerRecord, NewImage, Store, StoreError};

use crate::context::Context;
use crate::format;

mod files;
mod ps;
mod top;
mod tty;
pub use files::{CpArgs, ExportArgs, cp, export};
pub use ps::{PsArgs, ps};
pub use top::{TopArgs, top};

/// Docker's exit code for its own errors (not the container's).
const OWN_ERROR: u8 = 125;

/// A command that ends with an exit code of its own (a container's, or
/// docker's 125/126/127), its message already printed.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read in a file of environment variables (KEY=VALUE lines; a bare KEY takes ours; # comments)
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Set meta data on a container (KEY=VALUE, or KEY for an empty value)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Connect a container to a network: none (loopback only, the default) or host
    #[arg(long, default_value = "none")]
    network: String,
    /// Container host name
    #[arg(long)]
    hostname: Option<String>,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// Bind mount a volume (SRC:DST[:ro]; SRC an absolute host path)
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    volume: Vec<String>,
    /// Publish a container's port(s) to the host (berth has no port publishing yet: refused)
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// The OCI runtime: runc, crun, or a path (default: `runtime` in berth's config file, else runc)
    #[arg(long)]
    runtime: Option<String>,
    /// The image to run
    image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<()> {
    match run_container(ctx, args, false) {
        Ok(code) => Err(Exit(code).into()),
        Err(e) if e.downcast_ref::<Exit>().is_some() => Err(e),
        Err(e) => {
            eprintln!("berth: {e:#}");
            Err(Exit(OWN_ERROR).into())
        }
    }
}

/// `create`: a container made ready (its layers unpacked, its bundle
/// written) but not started: `Created` in `ps` until `start`.
pub fn create(ctx: &Context, args: RunArgs) -> anyhow::Result<()> {
    match run_container(ctx, args, true) {
        Ok(_) => Ok(()),
        Err(e) => {
            eprintln!("berth: {e:#}");
            Err(Exit(OWN_ERROR).into())
        }
    }
}

fn run_container(ctx: &Context, args: RunArgs, create_only: bool) -> anyhow::Result<u8> {
    if let Some(p) = args.publish.first() {
        bail!(
            "-p {p}: berth has no port publishing yet: a container has a network of its own with loopback only; use --network host to reach its ports from the host"
        );
    }
    let network = match args.network.as_str() {
        "none" | "default" | "bridge" => Network::Private,
        "host" => Network::Host,
        other => bail!("network {other} not found"),
    };
    let runtime = find_runtime(&runtime_name(args.runtime.as_deref())?)?;
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(read_env_file(file)?);
    }
    env.extend(args.env.iter().map(|e| with_host_value(e)));
    let labels = parse_labels(&args.label)?;
    let store = ctx.store()?;
    let image_id = match store.resolve(&args.image) {
        Ok(id) => id,
        Err(StoreError::NoSuchImage(_)) => {
            eprintln!("Unable to find image '{}' locally", display_name(&args.image));
            crate::remote::pull_into_store(ctx, &args.image)?;
            store.resolve(&args.image)?
        }
        Err(e) => return Err(e.into()),
    };
    let record = store.image(&image_id)?;
    let image_config = record.config.config.clone().unwrap_or_default();

    let id = random_id()?;
    let name = args.name.clone().unwrap_or_else(|| random_name(&id));
    let hostname = args.hostname.clone().unwrap_or_else(|| id[..12].to_owned());
    let opts = RunOptions {
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env,
        workdir: args.workdir.clone(),
        hostname: hostname.clone(),
        terminal: args.tty,
        network,
        volumes: args.volume.iter().map(|v| parse_volume(v)).collect::<anyhow::Result<_>>()?,
        nofile: open_files_limit(),
    };
    let process = berth_container::spec::process_args(&image_config, &opts)?;
    // The container's config: the image's, with what the run changed
    // (what `commit` starts from, as docker's does).
    let mut container_config = image_config.clone();
    if !args.command.is_empty() || args.entrypoint.is_some() {
        container_config.cmd = Some(match &args.entrypoint {
            Some(_) => args.command.clone(),
            None => args.command.clone(),
        })
        .filter(|c| !c.is_empty())
        .or(container_config.cmd);
    }
    if let Some(e) = &args.entrypoint {
        container_config.entrypoint = (!e.is_empty()).then(|| vec![e.clone()]);
    }
    if !opts.env.is_empty() {
        let merged = merge_env(container_config.env.take().unwrap_or_default(), &opts.env);
        container_config.env = Some(merged);
    }
    if !labels.is_empty() {
        container_config.labels.get_or_insert_with(Default::default).extend(labels);
    }
    // As docker: history's `created_by` is the plain join; `ps` quotes.
    let command = process.join(" ");
    let mut row = ContainerRecord {
        id: id.clone(),
        name: name.clone(),
        image_id: image_id.clone(),
        image_name: display_name(&args.image),
        command,
        running: false,
        created: format::now_unix(),
        exit_code: None,
        finished: None,
        config: serde_json::to_vec(&container_config)?,
    };
    store.create_container(&row)?;
    let dir = container_dir(ctx, &id);
    let outcome = (|| -> anyhow::Result<Option<u8>> {
        std::fs::create_dir_all(&dir)?;
        // Every later command on this container uses the runtime it was made with.
        std::fs::write(dir.join("runtime"), runtime.as_os_str().as_encoded_bytes())?;
        let rootfs = mount_container(&store, &record, &dir, &hostname)?;
        let user = resolve_user(
            args.user.as_deref().or(image_config.user.as_deref()).unwrap_or(""),
            &std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default(),
            &std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default(),
        )?;
        let cwd = opts.workdir.clone().or(image_config.working_dir.clone()).unwrap_or_default();
        // As docker: `create` makes the container whatever it would run;
        // `start` finds a missing command.
        if !create_only && let Some(code) = check_command(&rootfs, &process, &image_config, &opts)?
        {
            return Ok(Some(code));
        }
        let mut config = bundle_config(&image_config, &opts, &user, &rootfs)?;
        config["linux"]["cgroupsPath"] = serde_json::json!(format!("/berth/{id}"));
        if args.tty {
            let size = tty::window_size();
            config["process"]["consoleSize"] =
                serde_json::json!({"height": size.ws_row, "width": size.ws_col});
        }
        if !cwd.is_empty() {
            std::fs::create_dir_all(rootfs.join(cwd.trim_start_matches('/'))).ok();
        }
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
        if create_only {
            unmount(&dir.join("rootfs"));
            return Ok(None);
        }
        row.running = true;
        store.set_container_state(&id, true, None, None)?;
        if args.detach {
            start_monitor(ctx, &runtime, &id, args.rm)?;
            return Ok(None);
        }
        // Who runs it: a later command that finds this process gone (killed,
        // or a reboot since) knows the container is not running any more.
        std::fs::write(dir.join("monitor"), format!("{} {}", std::process::id(), boot_id()))?;
        let mut cmd = runtime_command(&runtime);
        cmd.args(["run", "--bundle"]).arg(&dir).arg(&id);
        let status = run_foreground(cmd, args.tty, args.interactive)
            .with_context(|| format!("starting {}", runtime.display()))?;
        Ok(Some(finish_run(&runtime, &id, status)))
    })();
    let code = match outcome {
        Ok(None) => {
            // Detached (the monitor has it now), or only created.
            println!("{id}");
            return Ok(0);
        }
        Ok(Some(code)) => {
            unmount(&dir.join("rootfs"));
            code
        }
        Err(e) => {
            unmount(&dir.join("rootfs"));
            let _ = store.set_container_state(
                &id,
                false,
                Some(i64::from(OWN_ERROR)),
                Some(format::now_unix()),
            );
            if args.rm {
                remove_container_files(&store, &id, &dir);
            }
            return Err(e);
        }
    };
    store.set_container_state(&id, false, Some(i64::from(code)), Some(format::now_unix()))?;
    if args.rm {
        remove_container_files(&store, &id, &dir);
    }
    Ok(code)
}

/// The command as docker lists it: arguments joined by spaces, one that
/// holds a space in single quotes (nothing else is quoted or escaped).
pub(crate) fn command_line(args: &[String]) -> String {
    let shown: Vec<String> =
        args.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }).collect();
    shown.join(" ")
}

/// `-v SRC:DST[:ro|rw]`: a bind mount of an existing absolute host path.
fn parse_volume(spec: &str) -> anyhow::Result<(String, String, bool)> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => bail!("invalid volume specification: '{spec}'"),
    };
    if !dst.starts_with('/') {
        bail!("invalid volume specification: '{spec}': the destination must be an absolute path");
    }
    if !src.starts_with('/') {
        bail!(
            "invalid volume specification: '{spec}': named volumes are not supported yet: give an absolute host path"
        );
    }
    if !Path::new(src).exists() {
        bail!("invalid mount config for type \"bind\": bind source path does not exist: {src}");
    }
    Ok((src.to_owned(), dst.to_owned(), ro))
}

/// After the runtime's `run` returned: the runtime forgets the container,
/// its cgroups go; the container's exit code.
fn finish_run(runtime: &Path, id: &str, status: std::process::ExitStatus) -> u8 {
    let _ = runtime_command(runtime)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    remove_cgroups(id);
    status.code().map_or(OWN_ERROR, |c| c as u8)
}

/// Starts `berth container monitor` for a detached container: its own
/// process group, no terminal, not waited for.
fn start_monitor(ctx: &Context, runtime: &Path, id: &str, rm: bool) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    // Someone alive is named as the container's monitor at every moment:
    // this process until the monitor is spawned, then the monitor itself
    // (which writes its PID again when it starts).
    let monitor_file = container_dir(ctx, id).join("monitor");
    std::fs::write(&monitor_file, format!("{} {}", std::process::id(), boot_id()))?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root").arg(ctx.root()).args(["container", "monitor", "--runtime"]).arg(runtime);
    if rm {
        cmd.arg("--rm");
    }
    let child = cmd
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the container's monitor")?;
    std::fs::write(&monitor_file, format!("{} {}", child.id(), boot_id()))?;
    wait_started(ctx, runtime, id)
}

/// As docker's `run -d` and `start`: back once the runtime runs the
/// container (so an `exec` right after finds it), or once it has ended.
fn wait_started(ctx: &Context, runtime: &Path, id: &str) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let state = runtime_command(runtime).args(["state", id]).stderr(Stdio::null()).output();
        if state.is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"running\"")
        }) {
            return Ok(());
        }
        if !store.container(id)?.running {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct MonitorArgs {
    #[arg(long)]
    runtime: PathBuf,
    #[arg(long)]
    rm: bool,
    id: String,
}

/// A detached container's monitor: runs it, keeps its output as docker's
/// json-file log (`<id>-json.log`), records how it ended, unmounts, and
/// with `--rm` removes it.
pub fn monitor(ctx: &Context, args: MonitorArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let id = args.id;
    let dir = container_dir(ctx, &id);
    std::fs::write(dir.join("monitor"), format!("{} {}", std::process::id(), boot_id()))?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{id}-json.log")))?,
    ));
    let mut cmd = runtime_command(&args.runtime);
    cmd.args(["run", "--bundle"]).arg(&dir).arg(&id);
    let status = if bundle_terminal(&dir) {
        // A terminal has one stream: all of it is the log's stdout, as docker's.
        let mut pending = Vec::new();
        let status = tty::run_on_pty(cmd, false, |bytes| {
            pending.extend_from_slice(bytes);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                log_line(&log, &line[..line.len() - 1], "stdout");
            }
            Ok(())
        })?;
        if !pending.is_empty() {
            log_line(&log, &pending, "stdout");
        }
        status
    } else {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let copy = |from: Box<dyn Read + Send>, stream: &'static str| {
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(from).split(b'\n').map_while(Result::ok) {
                    log_line(&log, &line, stream);
                }
            })
        };
        let out = copy(Box::new(child.stdout.take().expect("piped")), "stdout");
        let err = copy(Box::new(child.stderr.take().expect("piped")), "stderr");
        let status = child.wait()?;
        let _ = (out.join(), err.join());
        status
    };
    let code = finish_run(&args.runtime, &id, status);
    unmount(&dir.join("rootfs"));
    store.set_container_state(&id, false, Some(i64::from(code)), Some(format::now_unix()))?;
    if args.rm {
        remove_container_files(&store, &id, &dir);
    }
    Ok(())
}

/// A runtime command in the foreground: on a pty of its own with `-t`,
/// else on our stdout and stderr (stdin only with `-i`).
fn run_foreground(
    mut cmd: Command,
    tty: bool,
    interactive: bool,
) -> std::io::Result<std::process::ExitStatus> {
    if tty {
        return tty::run_on_pty(cmd, interactive, |bytes| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        });
    }
    cmd.stdin(if interactive { Stdio::inherit() } else { Stdio::null() }).status()
}

/// Whether the container's bundle asks for a terminal (`run -t`).
fn bundle_terminal(dir: &Path) -> bool {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["process"]["terminal"] == true)
}

/// One line of docker's json-file log.
fn log_line(log: &std::sync::Mutex<std::fs::File>, line: &[u8], stream: &str) {
    use std::io::Write;
    let mut text = String::from_utf8_lossy(line).into_owned();
    text.push('\n');
    let time = berth_oci::time::rfc3339_nano(now_nanos());
    let entry = serde_json::json!({"log": text, "stream": stream, "time": time});
    let mut f = log.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(f, "{entry}");
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Mounts the container's root filesystem: its init layer and upper
/// directory over the image's snapshots (unpacked on first use).
fn mount_container(
    store: &Store,
    record: &berth_store::ImageRecord,
    dir: &Path,
    hostname: &str,
) -> anyhow::Result<PathBuf> {
    let (init, upper, work, rootfs) =
        (dir.join("init"), dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&init, &upper, &work, &rootfs] {
        std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
    }
    if !init.join(".dockerenv").exists() {
        berth_container::write_init_layer(&init)?;
        std::fs::write(init.join("etc/hostname"), format!("{hostname}\n"))?;
        std::fs::write(
            init.join("etc/hosts"),
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            ),
        )?;
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(init.join("etc/resolv.conf"), resolv)?;
    }
    let snapshots = snapshots_of(store)?;
    let lowers = lower_dirs(store, &snapshots, record, &UnpackOptions::default())?;
    let mut stack = vec![init.clone()];
    stack.extend(lowers);
    // A berth killed before its container ran may have left its mount:
    // never stack a second overlay on the same upper directory.
    unmount(&rootfs);
    berth_container::mount_overlay(
        &rootfs,
        &Overlay { lowers: &stack, upper: &upper, work: &work },
    )
    .map_err(|e| {
        anyhow!("mounting the container's root filesystem (overlay): {e} (containers need root)")
    })?;
    Ok(rootfs)
}

/// The record goes first, then the files: a berth killed in between leaves
/// only a directory no record names, which `container prune` sweeps, never a
/// record whose files are half gone.
fn remove_container_files(store: &Store, id: &str, dir: &Path) {
    unmount(&dir.join("rootfs"));
    if store.delete_container(id).is_ok() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Container directories no record names (a `rm` killed midway).
fn sweep_orphans(ctx: &Context, store: &Store) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(ctx.root().join("containers")) else { return Ok(()) };
    let known: std::collections::HashSet<String> =
        store.list_containers()?.into_iter().map(|c| c.id).collect();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_id = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if is_id && !known.contains(&name) {
            unmount(&e.path().join("rootfs"));
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// This boot of the machine (a container cannot outlive a reboot).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_owned()
}

/// A container recorded as running whose `berth run` is gone (killed, or
/// before a reboot) and whose runtime no longer runs it is shown as it is:
/// exited (255, as docker shows a container it lost), its mount undone.
fn reconcile(ctx: &Context, store: &Store, c: &mut ContainerRecord) {
    if !c.running {
        return;
    }
    let dir = container_dir(ctx, &c.id);
    let monitor = std::fs::read_to_string(dir.join("monitor")).unwrap_or_default();
    let mut fields = monitor.split_whitespace();
    let pid: Option<i32> = fields.next().and_then(|p| p.parse().ok());
    let same_boot = fields.next() == Some(boot_id().as_str());
    // SAFETY: signal 0 only checks that the process exists.
    let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
    if alive && same_boot {
        return;
    }
    if same_boot && let Ok(runtime) = container_runtime(ctx, &c.id) {
        let state = runtime_command(&runtime).args(["state", &c.id]).stderr(Stdio::null()).output();
        let running = state.is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"running\"")
        });
        if running {
            return; // it lives on without its berth: still running
        }
        let _ = runtime_command(&runtime)
            .args(["delete", "--force", &c.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        remove_cgroups(&c.id);
    }
    unmount(&dir.join("rootfs"));
    let now = format::now_unix();
    if store.set_container_state(&c.id, false, Some(255), Some(now)).is_ok() {
        c.running = false;
        c.exit_code = Some(255);
        c.finished = Some(now);
    }
}

/// A container's lock (`flock` on `<dir>/lock`), held by whoever mounts,
/// starts or removes it: two `start`s, or a `start` and a `cp` of a stopped
/// container, or either and an `rm`, take turns. Released when dropped.
fn lock_container(ctx: &Context, id: &str) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let dir = container_dir(ctx, id);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .with_context(|| format!("locking container {id}"))?;
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("locking the container");
    }
    Ok(file)
}

/// When the container last started: its monitor file is written then.
fn started_at(ctx: &Context, c: &ContainerRecord) -> Option<i64> {
    let meta = std::fs::metadata(container_dir(ctx, &c.id).join("monitor")).ok()?;
    let t = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(t.as_secs() as i64)
}

fn container_dir(ctx: &Context, id: &str) -> PathBuf {
    ctx.root().join("containers").join(id)
}

/// Docker's 127 (not found) and 126 (not executable) for the command,
/// looked up in the container's own PATH and root filesystem.
fn check_command(
    rootfs: &Path,
    process: &[String],
    image: &ContainerConfig,
    opts: &RunOptions,
) -> anyhow::Result<Option<u8>> {
    let env = berth_container::spec::environment(
        image,
        opts,
        &berth_container::User { uid: 0, gid: 0, additional_gids: vec![], home: None },
    );
    check_program(rootfs, &process[0], &env)
}

/// [`check_command`] for a container made earlier: its bundle says what runs.
fn check_bundle_command(dir: &Path) -> anyhow::Result<Option<u8>> {
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
    };
    let args = strings(&bundle["process"]["args"]);
    let Some(program) = args.first() else { bail!("the container's bundle names no command") };
    check_program(&dir.join("rootfs"), program, &strings(&bundle["process"]["env"]))
}

fn check_program(rootfs: &Path, program: &String, env: &[String]) -> anyhow::Result<Option<u8>> {
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(berth_container::spec::DEFAULT_PATH)
        .to_owned();
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.clone()]
    } else {
        path_var.split(':').map(|d| format!("{}/{program}", d.trim_end_matches('/'))).collect()
    };
    for c in &candidates {
        if let Some(found) = resolve_in_root(rootfs, c) {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&found)?;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(None);
            }
            if !program.contains('/') {
                continue;
            }
            eprintln!("berth: exec: {program:?}: permission denied");
            return Ok(Some(126));
        }
    }
    if program.contains('/') {
        eprintln!("berth: exec: {program:?}: stat {program}: no such file or directory");
    } else {
        eprintln!("berth: exec: {program:?}: executable file not found in $PATH");
    }
    Ok(Some(127))
}

fn find_runtime(name: &str) -> anyhow::Result<PathBuf> {
    Ok(berth_container::find_runtime(name)?)
}

fn remove_cgroups(id: &str) {
    berth_container::remove_cgroups("berth", id);
}

fn display_name(image: &str) -> String {
    match Reference::parse(image) {
        Ok(r) if r.digest().is_none() => r.with_default_tag().familiar(),
        _ => image.to_owned(),
    }
}

/// The runtime a new container gets: `--runtime`, else `runtime` in berth's
/// config file, else runc.
pub(crate) fn runtime_name(flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = flag {
        return Ok(name.to_owned());
    }
    let config = berth_client::hosts::ClientConfig::load()?;
    Ok(config.runtime.unwrap_or_else(|| "runc".to_owned()))
}

/// The runtime a container was made with (recorded in its directory);
/// runc for one made before berth recorded it.
fn container_runtime(ctx: &Context, id: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    match std::fs::read(container_dir(ctx, id).join("runtime")) {
        Ok(path) if !path.is_empty() => {
            let path = PathBuf::from(std::ffi::OsString::from_vec(path));
            find_runtime(&path.display().to_string())
        }
        _ => find_runtime("runc"),
    }
}

/// docker's `--env-file`: one `KEY=VALUE` per line, kept as written after
/// the key; a bare `KEY` takes the caller's value; blank lines and lines
/// starting with `#` are skipped.
fn read_env_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow!("open {}: no such file or directory", path.display())
        }
        _ => anyhow!("open {}: {e}", path.display()),
    })?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow!("env file {} is not valid UTF-8", path.display()))?;
    parse_env_file(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("env file {}", path.display()))
}

fn parse_env_file(text: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        if key.is_empty() {
            bail!("no variable name on line '{line}'");
        }
        if key.contains(char::is_whitespace) {
            bail!("variable '{key}' contains whitespaces");
        }
        out.push(match value {
            Some(v) => format!("{key}={v}"),
            None => with_host_value(key),
        });
    }
    Ok(out)
}

/// `-l KEY=VALUE` (or `-l KEY`, an empty value), later ones winning.
fn parse_labels(specs: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut labels = std::collections::BTreeMap::new();
    for spec in specs {
        let (key, value) = spec.split_once('=').unwrap_or((spec.as_str(), ""));
        if key.is_empty() {
            bail!("invalid label '{spec}': empty name");
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

/// The image's environment with the run's: a variable set again replaces
/// the image's value, in place; new ones follow.
fn merge_env(mut base: Vec<String>, set: &[String]) -> Vec<String> {
    for e in set {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match base.iter_mut().find(|b| b.split_once('=').map_or(b.as_str(), |(k, _)| k) == key) {
            Some(slot) => slot.clone_from(e),
            None => base.push(e.clone()),
        }
    }
    base
}

/// `-e KEY` takes the caller's value; `-e KEY=VALUE` is kept as given.
fn with_host_value(e: &str) -> String {
    if e.contains('=') {
        return e.to_owned();
    }
    match std::env::var(e) {
        Ok(v) => format!("{e}={v}"),
        Err(_) => e.to_owned(),
    }
}

/// The caller's hard limit of open files, capped as docker caps it.
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 { 1024 } else { limit.rlim_max.min(1_048_576) }
}

fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nifty", "quiet", "quirky", "serene", "sharp", "steady", "sweet", "tender", "vivid",
    "wise", "zealous", "bold", "cool", "dazzling", "elastic", "festive", "great", "hopeful",
    "kind",
];

const SURNAMES: &[&str] = &[
    "curie",
    "darwin",
    "euler",
    "faraday",
    "galileo",
    "hopper",
    "hypatia",
    "kepler",
    "lovelace",
    "maxwell",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "planck",
    "ramanujan",
    "shannon",
    "tesla",
    "turing",
    "volta",
    "wilson",
    "yalow",
    "bohr",
    "dirac",
    "fermi",
    "gauss",
    "hawking",
    "lamarr",
    "mendel",
    "pasteur",
];

/// A name like docker's (`adjective_surname`), picked from the ID's bytes.
fn random_name(id: &str) -> String {
    let n = u64::from_str_radix(&id[..16], 16).unwrap_or(0);
    let a = ADJECTIVES[(n % ADJECTIVES.len() as u64) as usize];
    let s = SURNAMES[((n / 1024) % SURNAMES.len() as u64) as usize];
    format!("{a}_{s}")
}

/// Docker cuts a long command at `n` characters with an ellipsis.
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('…');
    out
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Force the removal of a running container
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes too (berth has none yet: bind mounts are never removed)
    #[arg(short, long)]
    volumes: bool,
    /// Containers to remove
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn rm(ctx: &Context, args: RmArgs) -> anyhow::Result<()> {
    // -v: a container's only mounts are the user's own bind mounts, kept.
    let _ = args.volumes;
    let store = ctx.store()?;
    let mut failed = None;
    for name in &args.containers {
        let mut c = match store.container(name) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = Some(anyhow!("{e}"));
                continue;
            }
        };
        let _lock = lock_container(ctx, &c.id).ok();
        reconcile(ctx, &store, &mut c);
        if c.running && !args.force {
            let e = anyhow!(
                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                c.name
            );
            eprintln!("Error response from daemon: {e}");
            failed = Some(e);
            continue;
        }
        if c.running {
            // -f: the runtime stops it first (its berth then records the end).
            if let Ok(runtime) = container_runtime(ctx, &c.id) {
                for args in [vec!["kill", &c.id, "KILL"], vec!["delete", "--force", &c.id]] {
                    let _ = runtime_command(&runtime)
                        .args(args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
            remove_cgroups(&c.id);
        }
        remove_container_files(&store, &c.id, &container_dir(ctx, &c.id));
        println!("{name}");
    }
    match failed {
        Some(_) => Err(Exit(1).into()),
        None => Ok(()),
    }
}

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The container
    container: String,
}

pub fn diff(ctx: &Context, args: DiffArgs) -> anyhow::Result<()> {
    let (store, c) = open_container(ctx, &args.container)?;
    for change in container_changes(ctx, &store, &c)? {
        println!("{change}");
    }
    Ok(())
}

fn open_container(ctx: &Context, name: &str) -> anyhow::Result<(Store, ContainerRecord)> {
    let store = ctx.store()?;
    let c = store.container(name)?;
    Ok((store, c))
}

fn container_changes(
    ctx: &Context,
    store: &Store,
    c: &ContainerRecord,
) -> anyhow::Result<Vec<berth_snapshot::Change>> {
    let dir = container_dir(ctx, &c.id);
    let record = store.image(&c.image_id)?;
    let snapshots = snapshots_of(store)?;
    let lowers = lower_dirs(store, &snapshots, &record, &UnpackOptions::default())?;
    let init = dir.join("init");
    let lowers = Lowers { init: Some(&init), image: &lowers };
    changes(&dir.join("upper"), &lowers)
        .with_context(|| format!("reading the changes of container {}", c.name))
}

#[derive(clap::Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Pause the container during commit (berth's containers are stopped when committed)
    #[arg(short, long, default_value_t = true)]
    pause: bool,
    /// The container
    container: String,
    /// REPOSITORY[:TAG]
    repository: Option<String>,
}

pub fn commit(ctx: &Context, args: CommitArgs) -> anyhow::Result<()> {
    let (store, c) = open_container(ctx, &args.container)?;
    let _ = args.pause;
    let found = container_changes(ctx, &store, &c)?;
    let record = store.image(&c.image_id)?;
    let mut config: ImageConfig = ImageConfig::parse(&record.config_bytes)?;
    let mut container_config: ContainerConfig = serde_json::from_slice(&c.config)
        .unwrap_or_else(|_| config.config.clone().unwrap_or_default());
    berth_archive::apply_changes(&mut container_config, &args.change)?;
    let created = berth_oci::time::rfc3339_nano(format::now_unix() * 1_000_000_000);
    let mut layers = record.to_image(Vec::new()).layers;
    let empty_layer = found.is_empty();
    if !empty_layer {
        let mut tar = Vec::new();
        write_layer(&container_dir(ctx, &c.id).join("upper"), &found, &mut tar)?;
        let (digest, size) = store.write_blob_bytes(&tar)?;
        config.rootfs.diff_ids.push(digest.clone());
        layers.push(berth_oci::Layer {
            diff_id: digest.clone(),
            blobs: vec![berth_oci::Descriptor::new(berth_oci::media_type::OCI_LAYER, digest, size)],
            uncompressed_size: Some(size),
        });
    }
    config.history.push(berth_oci::History {
        created: Some(created.clone()),
        author: args.author.clone(),
        created_by: Some(c.command.clone()),
        comment: args.message.clone().filter(|m| !m.is_empty()),
        empty_layer,
    });
    config.created = Some(created);
    config.author = args.author.clone();
    config.config = Some(container_config.clone());
    config.extra.insert("container".into(), serde_json::json!(c.id));
    // The image's own comment is the commit message (docker's `Comment`).
    match args.message.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => config.extra.insert("comment".into(), serde_json::json!(m)),
        None => config.extra.remove("comment"),
    };
    config.extra.insert("container_config".into(), serde_json::to_value(&container_config)?);
    let bytes = serde_json::to_vec(&config)?;
    let tags = match &args.repository {
        Some(r) => vec![Reference::parse(r)?.with_default_tag()],
        None => Vec::new(),
    };
    let image = berth_oci::Image { manifest: None, config: bytes, layers, tags };
    let id: Digest =
        store.commit_images(vec![NewImage { image, repo_digests: vec![] }])?[0].id.clone();
    println!("{id}");
    Ok(())
}

/// Docker's `container inspect` for a container (the fields berth has).
pub fn inspect_value(ctx: &Context, c: &ContainerRecord) -> serde_json::Value {
    let config: ContainerConfig = serde_json::from_slice(&c.config).unwrap_or_default();
    let args =
        berth_container::spec::process_args(&config, &RunOptions::default()).unwrap_or_default();
    let time = |secs: i64| berth_oci::time::rfc3339_nano(secs * 1_000_000_000);
    let dir = container_dir(ctx, &c.id);
    let mut shown = serde_json::to_value(&config).unwrap_or_default();
    if let Some(o) = shown.as_object_mut() {
        o.insert("Hostname".into(), serde_json::json!(&c.id[..12]));
        o.insert("Image".into(), serde_json::json!(c.image_name));
    }
    serde_json::json!({
        "Id": c.id,
        "Created": time(c.created),
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": if c.running { "running" } else if c.finished.is_some() { "exited" } else { "created" },
            "Running": c.running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "ExitCode": c.exit_code.unwrap_or(0),
            "Error": "",
            "StartedAt": time(c.created),
            "FinishedAt": c.finished.map(time).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": c.image_id.to_string(),
        "Name": format!("/{}", c.name),
        "HostConfig": {
            "Runtime": container_runtime(ctx, &c.id)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "runc".into()),
        },
        "Driver": "overlay",
        "Platform": "linux",
        "Config": shown,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": dir.join("upper"),
                "WorkDir": dir.join("work"),
                "MergedDir": dir.join("rootfs"),
            },
        },
    })
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation (berth never prompts)
    #[arg(short, long)]
    force: bool,
}

/// `container prune`: every stopped container goes, with docker's report.
pub fn prune(ctx: &Context, args: PruneArgs) -> anyhow::Result<()> {
    let _ = args.force;
    let store = ctx.store()?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for mut c in store.list_containers()? {
        reconcile(ctx, &store, &mut c);
        if c.running {
            continue;
        }
        let dir = container_dir(ctx, &c.id);
        reclaimed += tree_size(&dir.join("upper"));
        remove_container_files(&store, &c.id, &dir);
        deleted.push(c.id);
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in &deleted {
            println!("{id}");
        }
        println!();
    }
    sweep_orphans(ctx, &store)?;
    println!("Total reclaimed space: {}", format::human_size(reclaimed));
    Ok(())
}

/// The bytes of the files under `dir` (0 if it is gone).
pub(crate) fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" by default)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// The container
    container: String,
}

/// `logs`: what a detached container wrote, from its json-file log.
pub fn logs(ctx: &Context, args: LogsArgs) -> anyhow::Result<()> {
    use std::io::{BufRead, Seek, Write};
    let (store, c) = open_container(ctx, &args.container)?;
    let path = container_dir(ctx, &c.id).join(format!("{}-json.log", c.id));
    let tail: Option<usize> = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse().map_err(|_| anyhow!("invalid value for --tail: {n:?}"))?),
    };
    let print = |line: &str| -> anyhow::Result<()> {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else { return Ok(()) };
        let text = entry["log"].as_str().unwrap_or_default();
        if entry["stream"] == "stderr" {
            std::io::stderr().write_all(text.as_bytes())?;
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Ok(())
    };
    let Ok(file) = std::fs::File::open(&path) else { return Ok(()) };
    let mut reader = std::io::BufReader::new(file);
    let lines: Vec<String> = (&mut reader).lines().map_while(Result::ok).collect();
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in &lines[skip..] {
        print(line)?;
    }
    if !args.follow {
        return Ok(());
    }
    let mut pos = reader.stream_position()?;
    loop {
        let mut file = std::fs::File::open(&path)?;
        file.seek(std::io::SeekFrom::Start(pos))?;
        let mut more = std::io::BufReader::new(file);
        let mut line = String::new();
        let mut got = false;
        while more.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                break; // a line still being written
            }
            pos += line.len() as u64;
            print(line.trim_end_matches('\n'))?;
            line.clear();
            got = true;
        }
        if !got {
            let mut now = store.container(&c.id)?;
            reconcile(ctx, &store, &mut now);
            if !now.running {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    /// Containers to stop
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// `stop`: SIGTERM (or the image's STOPSIGNAL), then SIGKILL after `-t`.
pub fn stop(ctx: &Context, args: StopArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    for name in &args.containers {
        let mut c = store.container(name)?;
        stop_container(ctx, &store, &mut c, args.time)?;
        println!("{name}");
    }
    Ok(())
}

/// SIGTERM (or the image's STOPSIGNAL), then SIGKILL after `time` seconds;
/// returns once the container is recorded as stopped.
fn stop_container(
    ctx: &Context,
    store: &Store,
    c: &mut ContainerRecord,
    time: u64,
) -> anyhow::Result<()> {
    reconcile(ctx, store, c);
    if !c.running {
        return Ok(());
    }
    let runtime = container_runtime(ctx, &c.id)?;
    let config: ContainerConfig = serde_json::from_slice(&c.config).unwrap_or_default();
    let signal = config.stop_signal.clone().unwrap_or_else(|| "TERM".into());
    signal_container(&runtime, &c.id, signal.trim_start_matches("SIG"));
    if !wait_stopped(ctx, store, &c.id, std::time::Duration::from_secs(time))? {
        signal_container(&runtime, &c.id, "KILL");
        wait_stopped(ctx, store, &c.id, std::time::Duration::from_secs(10))?;
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct RestartArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    /// Containers to restart
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// `restart`: `stop -t` if it runs, then started again detached, over the
/// changes it already made.
pub fn restart(ctx: &Context, args: RestartArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    for name in &args.containers {
        let mut c = store.container(name)?;
        stop_container(ctx, &store, &mut c, args.time)?;
        let _lock = lock_container(ctx, &c.id)?;
        let mut c = store.container(&c.id)?;
        reconcile(ctx, &store, &mut c);
        if !c.running {
            start_detached(ctx, &store, &c)?;
        }
        println!("{name}");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers to kill
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn kill(ctx: &Context, args: KillArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    for name in &args.containers {
        let mut c = store.container(name)?;
        reconcile(ctx, &store, &mut c);
        if !c.running {
            bail!("cannot kill container: {name}: container {} is not running", c.id);
        }
        let runtime = container_runtime(ctx, &c.id)?;
        signal_container(&runtime, &c.id, args.signal.trim_start_matches("SIG"));
        println!("{name}");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct WaitArgs {
    /// Containers to wait for
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// `wait`: blocks until each container stops; prints its exit code.
pub fn wait(ctx: &Context, args: WaitArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    for name in &args.containers {
        let c = store.container(name)?;
        wait_stopped(ctx, &store, &c.id, std::time::Duration::MAX)?;
        println!("{}", store.container(&c.id)?.exit_code.unwrap_or(0));
    }
    Ok(())
}

fn signal_container(runtime: &Path, id: &str, signal: &str) {
    let _ = runtime_command(runtime)
        .args(["kill", id, signal])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls until the container is recorded as stopped; `false` on timeout.
fn wait_stopped(
    ctx: &Context,
    store: &Store,
    id: &str,
    limit: std::time::Duration,
) -> anyhow::Result<bool> {
    let start = std::time::Instant::now();
    loop {
        let mut c = store.container(id)?;
        reconcile(ctx, store, &mut c);
        if !c.running {
            return Ok(true);
        }
        if start.elapsed() >= limit {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// The running container
    container: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// `exec`: a command in a running container; its exit code is ours.
pub fn exec(ctx: &Context, args: ExecArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut c = store.container(&args.container)?;
    reconcile(ctx, &store, &mut c);
    if !c.running {
        bail!("Container {} is not running", c.id);
    }
    let runtime = container_runtime(ctx, &c.id)?;
    // As docker's exec: the container's own process settings (environment,
    // user, working directory, capabilities) with this command, and with
    // -t a terminal of the caller's size from the start.
    let dir = container_dir(ctx, &c.id);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let mut process = bundle["process"].clone();
    process["args"] = serde_json::json!(args.command);
    process["terminal"] = serde_json::json!(args.tty);
    if args.tty {
        let size = tty::window_size();
        process["consoleSize"] = serde_json::json!({"height": size.ws_row, "width": size.ws_col});
        if let Some(env) = process["env"].as_array_mut()
            && !env.iter().any(|e| e.as_str().is_some_and(|e| e.starts_with("TERM=")))
        {
            env.push(serde_json::json!("TERM=xterm"));
        }
    } else if let Some(p) = process.as_object_mut() {
        p.remove("consoleSize");
    }
    let spec = tempfile::Builder::new().prefix("exec-").suffix(".json").tempfile_in(&dir)?;
    std::fs::write(spec.path(), serde_json::to_vec(&process)?)?;
    let mut cmd = runtime_command(&runtime);
    cmd.args(["exec", "--process"]).arg(spec.path()).arg(&c.id);
    let status = run_foreground(cmd, args.tty, args.interactive)?;
    drop(spec);
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(Exit(code as u8).into()),
        None => Err(Exit(OWN_ERROR).into()),
    }
}

#[derive(clap::Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

pub fn rename(ctx: &Context, args: RenameArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let c = store.container(&args.container)?;
    store.rename_container(&c.id, &args.new_name)?;
    Ok(())
}

/// A stopped container run again by a monitor of its own.
fn start_detached(ctx: &Context, store: &Store, c: &ContainerRecord) -> anyhow::Result<()> {
    let runtime = container_runtime(ctx, &c.id)?;
    let record = store.image(&c.image_id)?;
    let dir = container_dir(ctx, &c.id);
    mount_container(store, &record, &dir, &c.id[..12])?;
    if let Some(code) = check_bundle_command(&dir)? {
        unmount(&dir.join("rootfs"));
        store.set_container_state(&c.id, false, Some(i64::from(code)), Some(format::now_unix()))?;
        bail!("failed to start container {}", c.name);
    }
    store.set_container_state(&c.id, true, None, None)?;
    if let Err(e) = start_monitor(ctx, &runtime, &c.id, false) {
        unmount(&dir.join("rootfs"));
        let _ = store.set_container_state(
            &c.id,
            false,
            Some(i64::from(OWN_ERROR)),
            Some(format::now_unix()),
        );
        return Err(e);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR (and wait: the container's exit code is ours)
    #[arg(short, long)]
    attach: bool,
    /// Containers to start
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// `start`: runs a created or stopped container again, over the changes it
/// already made; detached unless `-a`.
pub fn start(ctx: &Context, args: StartArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    for name in &args.containers {
        let found = store.container(name)?;
        let lock = lock_container(ctx, &found.id)?;
        // Read again under the lock: another berth may have just started it.
        let mut c = store.container(&found.id)?;
        reconcile(ctx, &store, &mut c);
        if c.running {
            println!("{name}");
            continue;
        }
        if !args.attach {
            start_detached(ctx, &store, &c)?;
            drop(lock);
            println!("{name}");
            continue;
        }
        let runtime = container_runtime(ctx, &c.id)?;
        let record = store.image(&c.image_id)?;
        let dir = container_dir(ctx, &c.id);
        mount_container(&store, &record, &dir, &c.id[..12])?;
        if let Some(code) = check_bundle_command(&dir)? {
            unmount(&dir.join("rootfs"));
            let now = format::now_unix();
            store.set_container_state(&c.id, false, Some(i64::from(code)), Some(now))?;
            return Err(Exit(code).into());
        }
        store.set_container_state(&c.id, true, None, None)?;
        std::fs::write(dir.join("monitor"), format!("{} {}", std::process::id(), boot_id()))?;
        drop(lock); // recorded as running: nobody else mounts it now
        let mut cmd = runtime_command(&runtime);
        cmd.args(["run", "--bundle"]).arg(&dir).arg(&c.id);
        let status = run_foreground(cmd, bundle_terminal(&dir), false);
        let code = match status {
            Ok(status) => finish_run(&runtime, &c.id, status),
            Err(_) => OWN_ERROR,
        };
        unmount(&dir.join("rootfs"));
        store.set_container_state(&c.id, false, Some(i64::from(code)), Some(format::now_unix()))?;
        if code != 0 {
            return Err(Exit(code).into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_read_as_docker_reads_them() {
        // SAFETY: this test alone reads or writes this variable.
        unsafe { std::env::set_var("BERTH_TEST_FROM_CALLER", "mine") };
        let text = "# a comment\n\n  A=1\nB= spaced value \nBERTH_TEST_FROM_CALLER\nBERTH_TEST_UNSET_X\nC=x=y\n";
        assert_eq!(
            parse_env_file(text).unwrap(),
            [
                "A=1",
                "B= spaced value ",
                "BERTH_TEST_FROM_CALLER=mine",
                "BERTH_TEST_UNSET_X",
                "C=x=y"
            ]
        );
        assert_eq!(
            parse_env_file("=x\n").unwrap_err().to_string(),
            "no variable name on line '=x'"
        );
        assert_eq!(
            parse_env_file("A B=1\n").unwrap_err().to_string(),
            "variable 'A B' contains whitespaces"
        );
    }

    #[test]
    fn commands_are_listed_as_docker_lists_them() {
        let args: Vec<String> = ["echo", "a b", "it's", "", "x", "a\"b", "tab\tx"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(command_line(&args), "echo 'a b' it's  x a\"b tab\tx");
    }

    #[test]
    fn run_env_replaces_the_image_values_in_place() {
        let image = vec!["PATH=/bin".to_owned(), "A=1".to_owned()];
        assert_eq!(merge_env(image, &["A=2".into(), "B=3".into()]), ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn labels_take_an_empty_value_and_refuse_an_empty_name() {
        let l = parse_labels(&["a=1".into(), "b".into(), "a=2".into()]).unwrap();
        assert_eq!(
            l.into_iter().collect::<Vec<_>>(),
            [("a".into(), "2".into()), ("b".into(), "".into())]
        );
        assert!(parse_labels(&["=x".into()]).is_err());
    }
}
