//! Finding and invoking the OCI runtime (runc, crun, or a path).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The runtime named is not installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the OCI runtime {0:?} is not installed: install runc (apt-get install runc) or crun, or name one with --runtime PATH"
)]
pub struct RuntimeMissing(pub String);

/// `name` as a path (`/usr/local/bin/runc`) or looked up in `PATH` and the
/// system directories.
pub fn find_runtime(name: &str) -> Result<PathBuf, RuntimeMissing> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        if p.is_file() {
            return Ok(p);
        }
    } else {
        let path = std::env::var("PATH").unwrap_or_default();
        for dir in path.split(':').chain(["/usr/sbin", "/usr/bin", "/sbin"]) {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(RuntimeMissing(name.to_owned()))
}

/// The command that runs `runtime`. crun refuses hybrid cgroups (v1
/// controllers plus cgroup2 at `/sys/fs/cgroup/unified`) unless that
/// cgroup2 mount is gone: it then runs in a mount namespace of its own
/// where it is unmounted.
pub fn runtime_command(runtime: &Path) -> Command {
    let hybrid = std::fs::read_to_string("/proc/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.contains(" /sys/fs/cgroup/unified cgroup2 ")));
    if runtime.file_name().is_some_and(|n| n == "crun") && hybrid {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("umount -l /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
            .arg(runtime);
        return c;
    }
    Command::new(runtime)
}

/// The runtimes leave a container's (empty) cgroups behind, and their
/// `parent` directory, which goes once nothing is in it.
pub fn remove_cgroups(parent: &str, id: &str) {
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for c in controllers.flatten() {
            let _ = std::fs::remove_dir(c.path().join(parent).join(id));
            let _ = std::fs::remove_dir(c.path().join(parent));
        }
    }
}
