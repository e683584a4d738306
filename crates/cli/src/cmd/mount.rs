//! `cargohold mount` and `cargohold umount`.

use anyhow::{Context, Result};
use cargohold_image_core::ImageLocation;
use cargohold_layerfs::{LayerCache, mount_layers, unmount};
use serde_json::json;

use super::Ctx;
use crate::cli::{MountArgs, UmountArgs};
use crate::output;

pub fn mount(ctx: &Ctx, args: &MountArgs) -> Result<()> {
    let store = ctx.store()?;
    let loc = ImageLocation::parse(&args.image)?;
    let mut src = cargohold_registry::open_source(&loc, &store, &ctx.registry_for_locations(&[&loc])?)?;
    let cache = LayerCache::new(store.layout().root().join(".cargohold").join("layers"));
    let want = ctx.platform(args.platform.as_deref())?;
    let layers = cache
        .ensure(src.as_mut(), want.as_ref())
        .with_context(|| format!("could not prepare the layers of {}", args.image))?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("could not create {}", args.dir.display()))?;
    mount_layers(&layers, &args.dir)
        .with_context(|| format!("could not mount {} at {}", args.image, args.dir.display()))?;
    if args.out.json {
        return output::json(&json!({ "image": args.image, "dir": args.dir, "layers": layers }));
    }
    output::line(format!("mounted {} at {} ({} layers, read-only)", args.image, args.dir.display(), layers.len()))
}

pub fn umount(args: &UmountArgs) -> Result<()> {
    unmount(&args.dir).with_context(|| format!("could not unmount {}", args.dir.display()))
}
