//! The runtime's `config.json` (runtime-spec 1.0), filled the way docker
//! fills it for `docker run`.

use std::path::Path;

use berth_oci::ContainerConfig;
use serde_json::{Value, json};

use crate::User;

/// The PATH docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A namespace of its own with loopback only (berth's default: no
    /// bridge yet).
    #[default]
    Private,
    /// The host's (`--network host`).
    Host,
}

/// What `berth run` was asked for, beyond the image.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The command after the image name (replaces the image's CMD).
    pub command: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
    /// `-e` / `--env-file`, in order: `KEY=value`, or `KEY` alone to take
    /// the caller's value (resolved by the caller).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    pub hostname: String,
    /// `-t`.
    pub terminal: bool,
    pub network: Network,
    /// `-v SRC:DST[:ro]`, sources absolute.
    pub volumes: Vec<(String, String, bool)>,
    /// The caller's hard limit of open files: asking a runtime for more
    /// fails (EPERM), so the container gets exactly this.
    pub nofile: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Nothing to run: no command, no CMD, no ENTRYPOINT.
    #[error("no command specified")]
    NoCommand,
}

/// The process's arguments, as docker combines them: the entrypoint (the
/// image's, or `--entrypoint`, which also drops the image's CMD), then the
/// command given, else the image's CMD.
pub fn process_args(image: &ContainerConfig, opts: &RunOptions) -> Result<Vec<String>, SpecError> {
    let (entrypoint, default_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => {
            (image.entrypoint.clone().unwrap_or_default(), image.cmd.clone().unwrap_or_default())
        }
    };
    let cmd = if opts.command.is_empty() { default_cmd } else { opts.command.clone() };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// The environment: the image's, then `-e` over it (by key), with the
/// PATH, HOSTNAME, HOME and (on a terminal) TERM docker adds when unset.
pub fn environment(image: &ContainerConfig, opts: &RunOptions, user: &User) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: &str| {
        let key = kv.split_once('=').map_or(kv, |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.to_owned());
    };
    for kv in image.env.iter().flatten().chain(&opts.env) {
        set(kv);
    }
    let has = |env: &[String], key: &str| env.iter().any(|e| e.starts_with(&format!("{key}=")));
    let mut defaults = Vec::new();
    if !has(&env, "PATH") {
        defaults.push(format!("PATH={DEFAULT_PATH}"));
    }
    defaults.push(format!("HOSTNAME={}", opts.hostname));
    if opts.terminal && !has(&env, "TERM") {
        defaults.push("TERM=xterm".to_owned());
    }
    if !has(&env, "HOME") {
        defaults.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
    }
    defaults.extend(env.into_iter().filter(|e| !e.starts_with("HOSTNAME=")));
    defaults
}

/// The bundle's `config.json` for a container of `image` run with `opts`
/// as `user`, its root filesystem at `rootfs`.
pub fn bundle_config(
    image: &ContainerConfig,
    opts: &RunOptions,
    user: &User,
    rootfs: &Path,
) -> Result<Value, SpecError> {
    let args = process_args(image, opts)?;
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ];
    for (source, destination, ro) in &opts.volumes {
        let mut options = vec!["rbind", "rprivate"];
        if *ro {
            options.push("ro");
        }
        mounts.push(json!({"destination": destination, "type": "bind", "source": source, "options": options}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if opts.network == Network::Private {
        namespaces.push(json!({"type": "network"}));
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.terminal,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": args,
            "env": environment(image, opts, user),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": opts.nofile, "soft": opts.nofile}],
            "noNewPrivileges": false,
        },
        "root": {"path": rootfs, "readonly": false},
        "hostname": opts.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }))
}
