//! `cargohold copy`: between the store, OCI layouts and archives.

use anyhow::{Context, Result};
use cargohold_image_core::{CopyOptions, ImageLocation, NoProgress, copy};

use super::{Ctx, platform};
use crate::cli::CopyArgs;
use crate::output;

pub fn run(ctx: &Ctx, args: &CopyArgs) -> Result<()> {
    let src_loc = ImageLocation::parse(&args.source)?;
    let dst_loc = ImageLocation::parse(&args.destination)?;
    let store = ctx.store()?;
    let reg = ctx.registry()?;
    let mut src = cargohold_registry::open_source(&src_loc, &store, &reg)?;
    let mut dst = cargohold_registry::open_dest(&dst_loc, &store, &reg, src.name_hint().as_ref())?;
    let opts = CopyOptions { platform: platform(args.platform.as_deref())?, all_platforms: args.all_platforms };
    let report = copy(src.as_mut(), dst.as_mut(), &opts, &NoProgress)
        .with_context(|| format!("could not copy {} to {}", args.source, args.destination))?;
    if args.out.json {
        return output::json(&report);
    }
    output::line(format!(
        "copied {} -> {} ({}; {} blobs copied, {} already present)",
        args.source, args.destination, report.manifest.digest, report.blobs_copied, report.blobs_skipped
    ))
}
