//! `cargohold pull`, `push` and `tags`.

use anyhow::{Context, Result};
use cargohold_image_core::{CopyOptions, NoProgress, Reference, copy};
use serde_json::json;

use super::{Ctx, platform};
use crate::cli::{PullArgs, PushArgs, TagsArgs};
use crate::output;

pub fn pull(ctx: &Ctx, args: &PullArgs) -> Result<()> {
    let r = Reference::parse(&args.reference)?;
    let reg = ctx.registry()?;
    let store = ctx.store()?;
    let opts = CopyOptions { platform: platform(args.platform.as_deref())?, all_platforms: args.all_platforms };
    let report = cargohold_registry::pull(&reg, &r, &store, &opts, args.jobs)
        .with_context(|| format!("could not pull {}", args.reference))?;
    if args.out.json {
        return output::json(&json!({ "reference": r.pull_reference().canonical(), "report": report }));
    }
    output::line(format!(
        "pulled {} ({}; {} blobs fetched, {} already present)",
        r.pull_reference().familiar(),
        report.manifest.digest,
        report.blobs_copied,
        report.blobs_skipped
    ))
}

pub fn push(ctx: &Ctx, args: &PushArgs) -> Result<()> {
    let store = ctx.store()?;
    let img = store.resolve(&args.image)?;
    let target = match (&args.reference, &img.name) {
        (Some(r), _) => Reference::parse(r)?,
        (None, Some(n)) => n.clone(),
        (None, None) => anyhow::bail!("{} has no name to push to; give a target reference", args.image),
    };
    let reg = ctx.registry()?;
    let mut src = store.source(&args.image)?;
    let report = copy(&mut src, &mut reg.dest(&target), &CopyOptions::default(), &NoProgress)
        .with_context(|| format!("could not push {} to {}", args.image, target))?;
    if args.out.json {
        return output::json(&json!({ "reference": target.pull_reference().canonical(), "report": report }));
    }
    output::line(format!(
        "pushed {} ({}; {} blobs sent, {} already there)",
        target.pull_reference().familiar(),
        report.manifest.digest,
        report.blobs_copied,
        report.blobs_skipped
    ))
}

pub fn tags(ctx: &Ctx, args: &TagsArgs) -> Result<()> {
    let r = Reference::parse(&args.repository)?;
    let reg = ctx.registry()?;
    let tags = reg.tags(&r).with_context(|| format!("could not list the tags of {}", r.name()))?;
    if args.out.json {
        return output::json(&json!({ "repository": r.name(), "tags": tags }));
    }
    for t in tags {
        output::line(t)?;
    }
    Ok(())
}
