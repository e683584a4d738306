//! Opening any image location, registries included.

use cargohold_image_core::{AsyncImageDest, AsyncImageSource, ImageDest, ImageLocation, ImageSource, Reference, Store};

use crate::adapter::Registry;

/// Like `cargohold_image_core::open_source`, plus `docker://REF`.
pub fn open_source(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
) -> cargohold_image_core::Result<Box<dyn ImageSource + Send>> {
    match loc {
        ImageLocation::Docker(r) => Ok(Box::new(reg.source(&Reference::parse(r)?))),
        other => cargohold_image_core::open_source(other, store),
    }
}

/// Like `cargohold_image_core::open_dest`, plus `docker://REF`.
pub fn open_dest(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
    name_hint: Option<&Reference>,
) -> cargohold_image_core::Result<Box<dyn ImageDest>> {
    match loc {
        ImageLocation::Docker(r) => Ok(Box::new(reg.dest(&Reference::parse(r)?))),
        other => cargohold_image_core::open_dest(other, store, name_hint),
    }
}

/// Like `cargohold_image_core::open_source_async`, plus `docker://REF`.
pub async fn open_source_async(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
) -> cargohold_image_core::Result<Box<dyn AsyncImageSource>> {
    match loc {
        ImageLocation::Docker(r) => Ok(Box::new(reg.source(&Reference::parse(r)?))),
        other => cargohold_image_core::open_source_async(other, store).await,
    }
}

/// Like `cargohold_image_core::open_dest_async`, plus `docker://REF`.
pub async fn open_dest_async(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
    name_hint: Option<&Reference>,
) -> cargohold_image_core::Result<Box<dyn AsyncImageDest>> {
    match loc {
        ImageLocation::Docker(r) => Ok(Box::new(reg.dest(&Reference::parse(r)?))),
        other => cargohold_image_core::open_dest_async(other, store, name_hint).await,
    }
}
