//! `cargohold copy`: between the store, OCI layouts, archives and registries.

use anyhow::{Context, Result};
use cargohold_image_core::{CopyOptions, ImageLocation, ImageSource, Reference, copy};

use super::{Ctx, platform};
use crate::cli::CopyArgs;
use crate::output;

pub fn run(ctx: &Ctx, args: &CopyArgs) -> Result<()> {
    let src_loc = ImageLocation::parse(&args.source)?;
    let dst_loc = ImageLocation::parse(&args.destination)?;
    let store = ctx.store()?;
    let reg = ctx.registry()?;
    let opts = CopyOptions { platform: platform(args.platform.as_deref())?, all_platforms: args.all_platforms };
    let bars = ctx.progress();
    let report = match &dst_loc {
        // To a registry: layers go up in parallel (mounted when the source is
        // another repository of the same registry), streamed from the source.
        ImageLocation::Docker(target) => {
            let target = Reference::parse(target)?;
            let open = || -> cargohold_image_core::Result<Box<dyn ImageSource + Send>> {
                cargohold_registry::open_source(&src_loc, &store, &reg)
            };
            cargohold_registry::push(&reg, &open, &target, &opts, 4, &bars)
        }
        _ => {
            let mut src = cargohold_registry::open_source(&src_loc, &store, &reg)?;
            let mut dst = cargohold_registry::open_dest(&dst_loc, &store, &reg, src.name_hint().as_ref())?;
            copy(src.as_mut(), dst.as_mut(), &opts, &bars)
        }
    }
    .with_context(|| format!("could not copy {} to {}", args.source, args.destination))?;
    drop(bars);
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
