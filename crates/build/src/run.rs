//! RUN: the command in a container of the stage's image so far (its
//! layers as overlay lowers, an init layer with hosts and resolv.conf, a
//! fresh upper directory), run by the OCI runtime; what it changed in the
//! upper directory becomes the step's layer, written as `commit` writes
//! one.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;

use berth_container::{Network, Overlay, RunOptions};
use berth_oci::{ContainerConfig, Layer};
use berth_snapshot::{Lowers, UnpackOptions};
use berth_store::Store;

use crate::progress::Step;

/// What one RUN executes.
pub struct RunStep<'a> {
    pub args: Vec<String>,
    /// The container's environment additions (the stage's build args, not
    /// kept in the image).
    pub extra_env: Vec<String>,
    pub config: &'a ContainerConfig,
    pub layers: &'a [Layer],
    pub network: Network,
    pub runtime: &'a Path,
    /// A heredoc fed to the command's standard input.
    pub stdin: Option<String>,
    /// `--mount`s, as runtime-spec mount entries.
    pub mounts: Vec<serde_json::Value>,
    /// Mount points (relative, deepest first) the image lacks: the runtime
    /// makes them, the layer must not keep them.
    pub prune: Vec<String>,
}

/// How a RUN ended.
pub enum RunOutcome {
    /// Its layer (diff ID and tar length), or `None` if it changed nothing.
    Changed(Option<(berth_reference::Digest, u64)>),
    Failed {
        code: i32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Snapshot(#[from] berth_snapshot::SnapshotError),
    #[error(transparent)]
    User(#[from] berth_container::UserError),
    #[error(transparent)]
    Spec(#[from] berth_container::SpecError),
    #[error("mounting the build container's root filesystem (overlay): {0} (RUN needs root)")]
    Mount(std::io::Error),
}

/// Runs `step` in a container under `dir` (removed afterwards), printing
/// its output through `progress`.
pub fn run(
    store: &Store,
    dir: &Path,
    step: &RunStep<'_>,
    progress: &Step<'_>,
) -> Result<RunOutcome, RunError> {
    let result = run_in(store, dir, step, progress);
    berth_container::unmount(&dir.join("rootfs"));
    let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    berth_container::remove_cgroups("berth-build", &id);
    let _ = std::fs::remove_dir_all(dir);
    result
}

fn run_in(
    store: &Store,
    dir: &Path,
    step: &RunStep<'_>,
    progress: &Step<'_>,
) -> Result<RunOutcome, RunError> {
    let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (init, upper, work, rootfs) =
        (dir.join("init"), dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&init, &upper, &work, &rootfs] {
        std::fs::create_dir_all(d)?;
    }
    let hostname = "buildkitsandbox";
    berth_container::write_init_layer(&init)?;
    std::fs::write(init.join("etc/hostname"), format!("{hostname}\n"))?;
    std::fs::write(
        init.join("etc/hosts"),
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    )?;
    std::fs::write(
        init.join("etc/resolv.conf"),
        std::fs::read("/etc/resolv.conf").unwrap_or_default(),
    )?;
    let snapshots = berth_container::snapshots_of(store)?;
    let image =
        berth_container::layer_dirs(store, &snapshots, step.layers, &UnpackOptions::default())?;
    let mut lowers = vec![init.clone()];
    lowers.extend(image.iter().cloned());
    berth_container::mount_overlay(
        &rootfs,
        &Overlay { lowers: &lowers, upper: &upper, work: &work },
    )
    .map_err(RunError::Mount)?;
    let user = berth_container::resolve_user(
        step.config.user.as_deref().unwrap_or(""),
        &std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default(),
        &std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default(),
    )?;
    let opts = RunOptions {
        command: step.args.clone(),
        entrypoint: Some(String::new()),
        env: step.extra_env.clone(),
        workdir: step.config.working_dir.clone(),
        hostname: hostname.to_owned(),
        terminal: false,
        network: step.network,
        volumes: Vec::new(),
        nofile: open_files_limit(),
    };
    if let Some(w) = &step.config.working_dir {
        std::fs::create_dir_all(rootfs.join(w.trim_start_matches('/')))?;
    }
    let mut config = berth_container::bundle_config(step.config, &opts, &user, &rootfs)?;
    config["linux"]["cgroupsPath"] = serde_json::json!(format!("/berth-build/{id}"));
    if let Some(list) = config["mounts"].as_array_mut() {
        list.extend(step.mounts.iter().cloned());
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).map_err(std::io::Error::other)?,
    )?;
    let mut child = berth_container::runtime_command(step.runtime)
        .args(["run", "--bundle"])
        .arg(dir)
        .arg(&id)
        .stdin(if step.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut stdin)) = (&step.stdin, child.stdin.take()) {
        let text = text.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(text.as_bytes());
        });
    }
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    std::thread::scope(|s| {
        s.spawn(|| print_lines(stderr, progress));
        print_lines(stdout, progress);
    });
    let status = child.wait()?;
    let _ = berth_container::runtime_command(step.runtime)
        .args(["delete", "-f", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    berth_container::unmount(&rootfs);
    for path in &step.prune {
        // Only what the runtime made: an empty directory or file.
        let p = upper.join(path);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&p);
            }
            _ => {}
        }
    }
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        return Ok(RunOutcome::Failed { code });
    }
    let found = berth_snapshot::changes(&upper, &Lowers { init: Some(&init), image: &image })?;
    if found.is_empty() {
        return Ok(RunOutcome::Changed(None));
    }
    let mut blob = store.create_blob()?;
    berth_snapshot::write_layer(&upper, &found, &mut blob)?;
    Ok(RunOutcome::Changed(Some(blob.commit()?)))
}

fn print_lines(stream: impl Read, progress: &Step<'_>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        progress.output(text.trim_end_matches(['\n', '\r']));
        line.clear();
    }
}

fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid pointer to an rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_max.min(1 << 20)
    } else {
        1024
    }
}
