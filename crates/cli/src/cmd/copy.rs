//! `cargohold copy`: between the store, OCI layouts, archives and registries.

use anyhow::{Context, Result};
use cargohold_image_core::{CopyOptions, ImageLocation, Reference};

use super::{Ctx, platform};
use crate::cli::CopyArgs;
use crate::output;

pub fn run(ctx: &Ctx, args: &CopyArgs) -> Result<()> {
    let src_loc = ImageLocation::parse(&args.source)?;
    let dst_loc = ImageLocation::parse(&args.destination)?;
    let store = ctx.store()?;
    let reg = if args.src_creds.is_some() || args.dest_creds.is_some() {
        // Each side's credentials go to its own registry only.
        let registry_of = |loc: &ImageLocation, option: &str| -> Result<String> {
            match loc {
                ImageLocation::Docker(r) => Ok(Reference::parse(r)?.registry().to_owned()),
                _ => anyhow::bail!("{option} is for a registry, and {loc} is not one"),
            }
        };
        let mut creds = Vec::new();
        if let Some(c) = &args.src_creds {
            creds.push((registry_of(&src_loc, "--src-creds")?, super::parse_creds(c, "--src-creds")?));
        }
        if let Some(c) = &args.dest_creds {
            let r = registry_of(&dst_loc, "--dest-creds")?;
            if creds.iter().any(|(s, given)| *s == r && given.username != c.split(':').next().unwrap_or_default()) {
                anyhow::bail!("--src-creds and --dest-creds name different users of the same registry {r}");
            }
            creds.push((r, super::parse_creds(c, "--dest-creds")?));
        }
        ctx.registry_with(creds)?
    } else {
        ctx.registry_for_locations(&[&src_loc, &dst_loc])?
    };
    let format = args.format.get();
    let opts = CopyOptions {
        platform: platform(args.platform.as_deref())?,
        all_platforms: args.all_platforms,
        format,
        preserve_digests: args.preserve_digests,
    };
    let bars = ctx.progress();
    // Layers move in parallel (mounted when the source is another repository
    // of the same registry), streamed from the source.
    let report = cargohold_registry::copy_image(&reg, &src_loc, &dst_loc, &store, &opts, 4, &bars)
        .with_context(|| format!("could not copy {} to {}", args.source, args.destination))?;
    drop(bars);
    if let Some(f) = &args.digestfile {
        super::write_output_file(f, report.manifest.digest.as_str(), "the digest")?;
    }
    if args.out.json {
        return output::json(&report);
    }
    output::line(format!(
        "copied {} -> {} ({}; {} blobs copied, {} mounted, {} already present)",
        args.source,
        args.destination,
        report.manifest.digest,
        report.blobs_copied,
        report.blobs_mounted,
        report.blobs_skipped
    ))
}
