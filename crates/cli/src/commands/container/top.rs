//! `berth top CONTAINER [ps OPTIONS]`: as docker does it, the host's `ps`
//! (`-ef` unless told otherwise) cut down to the processes the runtime
//! reports for the container.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use super::{container_runtime, reconcile, runtime_command};
use crate::context::Context;
use crate::format::Table;

#[derive(clap::Args)]
pub struct TopArgs {
    /// The running container
    container: String,
    /// Options for ps (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

pub fn top(ctx: &Context, args: TopArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut c = store.container(&args.container)?;
    reconcile(ctx, &store, &mut c);
    if !c.running {
        bail!("Container {} is not running", c.id);
    }
    let runtime = container_runtime(ctx, &c.id)?;
    let out = runtime_command(&runtime)
        .args(["ps", "--format", "json", &c.id])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} ps", runtime.display()))?;
    if !out.status.success() {
        bail!("{} ps {} failed", runtime.display(), c.id);
    }
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let options = if args.ps_options.is_empty() { vec!["-ef".to_owned()] } else { args.ps_options };
    let ps = Command::new("ps").args(&options).output().context("running ps")?;
    if !ps.status.success() {
        bail!(
            "ps: {}",
            String::from_utf8_lossy(&ps.stderr).trim().lines().next().unwrap_or("failed")
        );
    }
    print!("{}", filter_ps(&String::from_utf8_lossy(&ps.stdout), &pids)?.render());
    Ok(())
}

/// The header and the lines of `ps` output whose PID is one of `pids`;
/// the last column (the command) keeps its spaces.
fn filter_ps(output: &str, pids: &[i64]) -> anyhow::Result<Table> {
    let mut lines = output.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let Some(pid_at) = header.iter().position(|h| *h == "PID") else {
        bail!("Couldn't find PID field in ps output");
    };
    let mut t = Table::with_min_width(20);
    t.push(&header.join("\t"));
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_at).and_then(|p| p.parse::<i64>().ok()) else { continue };
        if !pids.contains(&pid) {
            continue;
        }
        let n = header.len();
        let mut cells: Vec<String> = fields.iter().take(n - 1).map(|s| s.to_string()).collect();
        cells.push(fields.get(n - 1..).map(|rest| rest.join(" ")).unwrap_or_default());
        t.push(&cells.join("\t"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_containers_processes_and_their_whole_commands() {
        let ps = "UID PID PPID C STIME TTY TIME CMD\n\
                  root 1 0 0 10:00 ? 00:00:01 /sbin/init\n\
                  root 4242 4200 0 10:01 ? 00:00:00 /bin/sh -c sleep 100\n\
                  root 4243 4242 0 10:01 ? 00:00:00 sleep 100\n";
        let out = filter_ps(ps, &[4242, 4243]).unwrap().render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("UID                 PID "), "{out}");
        assert!(lines[1].ends_with("/bin/sh -c sleep 100"), "{out}");
        assert!(lines[2].contains("4243") && lines[2].ends_with("sleep 100"), "{out}");
        assert!(filter_ps("USER COMMAND\nroot x\n", &[1]).is_err());
    }
}
