//! `berth system df` and `berth system check`.

use std::collections::HashMap;
use std::io::Write;

use crate::commands::images::print_rows;
use crate::context::Context;
use crate::format::{self, Table, V};

#[derive(clap::Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Pretty-print the summary using a Go template
    #[arg(long, value_name = "string")]
    format: Option<String>,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Remove what cannot be trusted: corrupt blobs, broken images and their
    /// tags, unreferenced blobs and leftover temp files
    #[arg(long)]
    repair: bool,
}

/// Per image: size, and the part of it shared with other images.
struct Usage {
    summary: berth_store::ImageSummary,
    shared: u64,
}

pub fn df(ctx: &Context, args: DfArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut images = store.list_images()?;
    images.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));

    // Docker counts layers by chain ID: a layer stack is shared when more
    // than one image is built on it.
    let mut stacks: HashMap<berth_store::Digest, (u64, usize)> = HashMap::new();
    let mut image_stacks = Vec::new();
    for image in &images {
        let rec = store.image(&image.id)?;
        let chains: Vec<(berth_store::Digest, u64)> =
            rec.layers.iter().map(|l| (l.chain_id.clone(), l.content_size)).collect();
        for (chain, size) in &chains {
            stacks.entry(chain.clone()).or_insert((*size, 0)).1 += 1;
        }
        image_stacks.push(chains);
    }
    // What killed writers left under tmp/ is reclaimable image data too
    // (the next command that writes sweeps it).
    let (_, temp_bytes) = store.temp_usage()?;
    let total: u64 = stacks.values().map(|(size, _)| size).sum::<u64>() + temp_bytes;
    let usage: Vec<Usage> = images
        .into_iter()
        .zip(&image_stacks)
        .map(|(summary, chains)| {
            let shared = chains.iter().filter(|(c, _)| stacks[c].1 > 1).map(|(_, s)| s).sum();
            Usage { summary, shared }
        })
        .collect();

    // Containers: their writable layers; an image a container uses is
    // active, and only the rest of the images' size is reclaimable.
    let containers = store.list_containers()?;
    let in_use: std::collections::HashSet<&berth_store::Digest> =
        containers.iter().map(|c| &c.image_id).collect();
    let active_size: u64 =
        usage.iter().filter(|u| in_use.contains(&u.summary.id)).map(|u| u.summary.size).sum();
    let reclaimable = percent_of(total.saturating_sub(active_size), total);
    let mut container_size = 0;
    let mut container_reclaimable = 0;
    for c in &containers {
        let size = crate::commands::container::tree_size(
            &ctx.root().join("containers").join(&c.id).join("upper"),
        );
        container_size += size;
        if !c.running {
            container_reclaimable += size;
        }
    }
    let running = containers.iter().filter(|c| c.running).count();
    let summary_rows = vec![
        summary_row("Images", usage.len(), in_use.len(), format::human_size(total), reclaimable),
        summary_row(
            "Containers",
            containers.len(),
            running,
            format::human_size(container_size),
            percent_of(container_reclaimable, container_size),
        ),
        summary_row("Local Volumes", 0, 0, "0B".into(), "0B".into()),
        summary_row("Build Cache", 0, 0, "0B".into(), "0B".into()),
    ];
    if !args.verbose {
        let format = args.format.unwrap_or_else(|| {
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}".into()
        });
        let headers = V::Obj(
            [
                ("Type", "TYPE"),
                ("TotalCount", "TOTAL"),
                ("Active", "ACTIVE"),
                ("Size", "SIZE"),
                ("Reclaimable", "RECLAIMABLE"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), V::str(v)))
            .collect(),
        );
        return print_rows(&format, &summary_rows, &headers);
    }

    let now = format::now_unix();
    let mut t = Table::new();
    t.push("REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS");
    for u in &usage {
        let (repo, tag) = match u.summary.tags.first() {
            Some(r) => (r.repository().familiar_name(), r.tag().unwrap_or("latest").to_owned()),
            None => ("<none>".to_owned(), "<none>".to_owned()),
        };
        let created = u.summary.created.unwrap_or(0);
        t.push(&format!(
            "{repo}\t{tag}\t{}\t{} ago\t{}\t{}\t{}\t0",
            format::truncate_id(u.summary.id.as_str()),
            format::human_duration(now - created),
            format::human_size(u.summary.size),
            format::human_size(u.shared),
            format::human_size(u.summary.size.saturating_sub(u.shared)),
        ));
    }
    let mut containers = Table::new();
    containers.push("CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES");
    let mut volumes = Table::new();
    volumes.push("VOLUME NAME\tLINKS\tSIZE");
    let mut cache = Table::new();
    cache.push("CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED");
    let out = format!(
        "Images space usage:\n\n{}\nContainers space usage:\n\n{}\nLocal Volumes space usage:\n\n{}\nBuild cache usage: 0B\n\n{}",
        t.render(),
        containers.render(),
        volumes.render(),
        cache.render()
    );
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// docker's `SIZE (PERCENT%)`, or `0B`.
fn percent_of(part: u64, whole: u64) -> String {
    if whole == 0 {
        return format::human_size(0);
    }
    format!("{} ({}%)", format::human_size(part), part * 100 / whole)
}

fn summary_row(kind: &str, total: usize, active: usize, size: String, reclaimable: String) -> V {
    V::Obj(vec![
        ("Active".into(), V::str(active.to_string())),
        ("Reclaimable".into(), V::str(reclaimable)),
        ("Size".into(), V::str(size)),
        ("TotalCount".into(), V::str(total.to_string())),
        ("Type".into(), V::str(kind)),
    ])
}

/// Proves pending layers (see `berth_store::Store::verify_pending_layers`):
/// what `pull` leaves to a detached berth so that it returns once the
/// blobs are in, and the first read after it finds the work done.
pub fn prove_layers(ctx: &Context) -> anyhow::Result<()> {
    Ok(ctx.store()?.verify_pending_layers()?)
}

/// Starts `berth system prove-layers` on this store, detached (its own
/// process group, no terminal), and does not wait for it. If it cannot
/// start, the next read of the store proves the layers itself.
pub fn start_prover(ctx: &Context) {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else { return };
    let _ = std::process::Command::new(exe)
        .arg("--root")
        .arg(ctx.root())
        .args(["system", "prove-layers"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
}

pub fn check(ctx: &Context, args: CheckArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let report = store.check(args.repair)?;
    let mut stdout = std::io::stdout().lock();
    for problem in &report.problems {
        writeln!(stdout, "{problem}")?;
    }
    writeln!(
        stdout,
        "Checked {} blobs and {} images: {} problem{}{}",
        report.blobs_checked,
        report.images_checked,
        report.problems.len(),
        if report.problems.len() == 1 { "" } else { "s" },
        if report.repaired { ", repaired" } else { "" },
    )?;
    stdout.flush()?;
    if !report.is_consistent() && !report.repaired {
        anyhow::bail!(
            "the store has problems; run `berth system check --repair` to remove what cannot be trusted"
        );
    }
    Ok(())
}
