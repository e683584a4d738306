//! `cargohold system df|prune`, `image prune`, `container prune`.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use cargohold_builder::hygiene::{DiskUsage, PruneOptions, PruneReport, Usage, disk_usage, prune};

use super::Ctx;
use crate::cli::{ContainerCommand, ForceArgs, ImageCommand, SystemCommand, VolumePruneArgs};
use crate::output;

/// Docker's question before a prune; `-f` skips it. A closed or
/// non-answering input is a no.
fn confirm(force: &ForceArgs, what: &str) -> Result<()> {
    if force.force {
        return Ok(());
    }
    eprint!("WARNING! This will remove:\n{what}\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("nothing removed: not confirmed (-f prunes without asking)"),
    }
}

fn render(report: &PruneReport, json: bool) -> Result<()> {
    if json {
        return output::json(report);
    }
    let sections = [("Deleted Containers:", &report.containers), ("Deleted Volumes:", &report.volumes)];
    for (title, items) in sections {
        if !items.is_empty() {
            output::line(title)?;
            items.iter().try_for_each(output::line)?;
            output::line("")?;
        }
    }
    if !report.images.is_empty() {
        output::line("Deleted Images:")?;
        for i in &report.images {
            let verb = if i.starts_with("sha256:") { "deleted" } else { "untagged" };
            output::line(format!("{verb}: {i}"))?;
        }
        output::line("")?;
    }
    if report.layers + report.build_cache + report.blobs > 0 {
        output::line(format!(
            "Deleted {} blobs, {} unpacked layers, {} build cache entries",
            report.blobs, report.layers, report.build_cache
        ))?;
    }
    output::line(format!("Total reclaimed space: {}", output::human_size(report.bytes_freed)))
}

pub fn container(ctx: &Ctx, cmd: &ContainerCommand) -> Result<()> {
    let ContainerCommand::Prune(a) = cmd;
    confirm(a, "  - all stopped containers")?;
    let opts = PruneOptions { containers: true, ..PruneOptions::default() };
    let report = prune(&ctx.store()?, &opts).context("could not prune containers")?;
    render(&report, a.out.json)
}

pub fn volume_prune(ctx: &Ctx, a: &VolumePruneArgs) -> Result<()> {
    let what = if a.all {
        "  - all volumes not used by at least one container"
    } else {
        "  - all anonymous volumes not used by at least one container"
    };
    confirm(&a.force, what)?;
    let opts = PruneOptions { volumes: true, all_volumes: a.all, ..PruneOptions::default() };
    let report = prune(&ctx.store()?, &opts).context("could not prune volumes")?;
    render(&report, a.force.out.json)
}

pub fn image(ctx: &Ctx, cmd: &ImageCommand) -> Result<()> {
    let ImageCommand::Prune(a) = cmd;
    let what = if a.all {
        "  - all images without at least one container associated to them"
    } else {
        "  - all dangling images"
    };
    confirm(&a.force, what)?;
    let opts = PruneOptions { images: true, all_images: a.all, caches: true, ..PruneOptions::default() };
    let report = prune(&ctx.store()?, &opts).context("could not prune images")?;
    render(&report, a.force.out.json)
}

pub fn system(ctx: &Ctx, cmd: &SystemCommand) -> Result<()> {
    let store = ctx.store()?;
    match cmd {
        SystemCommand::Df(a) => {
            let usage = disk_usage(&store).context("could not measure the store")?;
            if a.json {
                return output::json(&usage);
            }
            df_table(&usage)
        }
        SystemCommand::Prune(a) => {
            let mut what = vec!["  - all stopped containers"];
            if a.volumes {
                what.push("  - all anonymous volumes not used by at least one container");
            }
            what.push(if a.all {
                "  - all images without at least one container associated to them"
            } else {
                "  - all dangling images"
            });
            what.push(if a.all { "  - all build cache" } else { "  - unused unpacked layers and stale build cache" });
            confirm(&a.force, &what.join("\n"))?;
            let opts = PruneOptions {
                containers: true,
                images: true,
                all_images: a.all,
                volumes: a.volumes,
                all_volumes: false,
                caches: true,
            };
            let report = prune(&store, &opts).context("could not prune the store")?;
            render(&report, a.force.out.json)
        }
    }
}

fn df_table(u: &DiskUsage) -> Result<()> {
    let row = |kind: &str, u: &Usage| {
        let pct = (u.reclaimable * 100).checked_div(u.size).unwrap_or(0);
        vec![
            kind.to_owned(),
            u.total.to_string(),
            u.active.to_string(),
            output::human_size(u.size),
            format!("{} ({pct}%)", output::human_size(u.reclaimable)),
        ]
    };
    let rows = vec![
        row("Images", &u.images),
        row("Containers", &u.containers),
        row("Local Volumes", &u.volumes),
        row("Unpacked Layers", &u.layers),
        row("Build Cache", &u.build_cache),
    ];
    output::table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
}
