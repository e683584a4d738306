//! `cargohold images`, `tag`, `rmi`, `prune`.

use anyhow::{Context, Result, bail};
use cargohold_image_core::Reference;
use serde::Serialize;
use serde_json::json;

use super::Ctx;
use crate::cli::{ImagesArgs, PruneArgs, RmiArgs, TagArgs};
use crate::output;

#[derive(Serialize)]
struct ImageRow {
    name: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
    digest: String,
    id: Option<String>,
    created: Option<String>,
    size: Option<u64>,
}

pub fn list(ctx: &Ctx, args: &ImagesArgs) -> Result<()> {
    let store = ctx.store()?;
    let mut filters = Vec::new();
    for f in &args.filters {
        match f.split_once('=') {
            Some(("dangling", v @ ("true" | "false"))) => filters.push(("dangling", v.to_owned())),
            Some(("dangling", v)) => bail!("--filter {f}: dangling is true or false, not {v:?}"),
            Some(("reference", v)) => filters.push(("reference", v.to_owned())),
            _ => bail!("--filter {f}: expected dangling=true|false or reference=NAME"),
        }
    }
    let matches = |name: Option<&Reference>| {
        filters.iter().all(|(k, v)| match *k {
            "dangling" => name.is_none() == (v == "true"),
            _ => name.is_some_and(|n| {
                n.familiar() == *v || n.canonical() == *v || n.familiar_name() == *v || n.to_string() == *v
            }),
        })
    };
    let mut rows = Vec::new();
    for img in store.list()?.into_iter().filter(|i| matches(i.name.as_ref())) {
        // An image whose blobs are damaged is still listed, without details.
        let details = store.details(&img.descriptor, None).ok();
        rows.push(ImageRow {
            name: img.name.as_ref().map(Reference::canonical),
            repository: img.name.as_ref().map(Reference::familiar_name),
            tag: img.name.as_ref().and_then(|n| n.tag().map(str::to_owned)),
            digest: img.descriptor.digest.to_string(),
            id: details.as_ref().map(|d| d.image.config.digest.to_string()),
            created: details.as_ref().and_then(|d| d.config.created.clone()),
            size: details.as_ref().map(|d| d.size()),
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if args.quiet {
        let mut ids: Vec<String> = Vec::new();
        for r in &rows {
            let id = r.id.as_deref().unwrap_or(&r.digest);
            let short = id.split_once(':').map_or(id, |(_, h)| h)[..12].to_owned();
            if !ids.contains(&short) {
                ids.push(short);
            }
        }
        return ids.iter().try_for_each(output::line);
    }
    if let Some(t) = &args.format {
        return output::templated(t, &rows);
    }
    if args.out.json {
        return output::json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.repository.clone().unwrap_or_else(|| "<none>".into()),
                r.tag.clone().unwrap_or_else(|| "<none>".into()),
                r.id.as_deref()
                    .map(|id| id.split_once(':').map_or(id, |(_, h)| h)[..12].to_owned())
                    .unwrap_or_else(|| "<broken>".into()),
                r.created.clone().unwrap_or_default(),
                r.size.map(output::human_size).unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &table)
}

pub fn tag(ctx: &Ctx, args: &TagArgs) -> Result<()> {
    let target = Reference::parse(&args.target)?;
    if target.digest().is_some() {
        bail!("cannot tag with a digest reference {:?}: a digest is not a name", args.target);
    }
    let store = ctx.store()?;
    let img = store.resolve(&args.source)?;
    store.tag(&target, img.descriptor).with_context(|| format!("could not tag {} as {}", args.source, args.target))
}

pub fn rmi(ctx: &Ctx, args: &RmiArgs) -> Result<()> {
    let store = ctx.store()?;
    let mut removed = Vec::new();
    for name in &args.images {
        removed.extend(
            cargohold_builder::hygiene::remove_image(&store, name, args.force)
                .with_context(|| format!("could not remove {name}"))?,
        );
    }
    if args.out.json {
        return output::json(&json!({ "untagged": removed }));
    }
    for r in removed {
        output::line(format!("Untagged: {r}"))?;
    }
    Ok(())
}

pub fn prune(ctx: &Ctx, args: &PruneArgs) -> Result<()> {
    let store = ctx.store()?;
    let report = store.prune(args.dry_run).context("could not prune the store")?;
    if args.out.json {
        return output::json(&json!({
            "dry_run": args.dry_run,
            "blobs_removed": report.blobs_removed,
            "bytes_freed": report.bytes_freed,
            "temp_files_removed": report.temp_files_removed,
        }));
    }
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    output::line(format!(
        "{verb} {} blobs; {} freed ({} bytes)",
        report.blobs_removed.len(),
        output::human_size(report.bytes_freed),
        report.bytes_freed
    ))
}
