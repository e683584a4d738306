//! `cargohold unpack`: flatten an image into a directory.

use anyhow::{Context, Result};
use cargohold_image_core::ImageLocation;
use cargohold_layerfs::{ApplyOptions, UnpackOptions, unpack};
use serde_json::json;

use super::Ctx;
use crate::cli::UnpackArgs;
use crate::output;

pub fn run(ctx: &Ctx, args: &UnpackArgs) -> Result<()> {
    let loc = ImageLocation::parse(&args.image)?;
    let store = ctx.store()?;
    let mut src = cargohold_registry::open_source(&loc, &store, &ctx.registry_for_locations(&[&loc])?)?;
    let mut apply = ApplyOptions::for_current_user();
    apply.rootless |= args.rootless;
    let opts = UnpackOptions { apply, platform: ctx.platform(args.platform.as_deref())? };
    let report = unpack(src.as_mut(), &args.dir, &opts)
        .with_context(|| format!("could not unpack {} into {}", args.image, args.dir.display()))?;
    if args.out.json {
        return output::json(&json!({
            "image": args.image,
            "dir": args.dir,
            "layers": report.layers,
            "entries": report.entries,
            "bytes": report.bytes,
            "warnings": report.warnings,
        }));
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    output::line(format!(
        "unpacked {} into {} ({} layers, {} entries, {})",
        args.image,
        args.dir.display(),
        report.layers,
        report.entries,
        output::human_size(report.bytes)
    ))
}
