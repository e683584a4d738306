//! DUCC's `create-podman-store`: a podman store of one's own over a
//! published flat.

use std::path::Path;

use cargohold_image_core::{ImageUrl, Platform};
use cargohold_registry::Registry;

use super::{platform_manifest_of, public_name, read_config_bytes};
use crate::error::{Error, Result, io_err};
use crate::tree::Tree;

/// DUCC's `create-podman-store`: adds the published image `url` (its flat
/// in the tree at `tree`, which must be there) to the podman store at
/// `store` (absolute), its layer's `diff` an absolute symlink to the flat.
/// The name podman knows it by.
pub fn create_podman_store(
    reg: &Registry,
    url: &ImageUrl,
    tree: &Path,
    store: &Path,
    platform: Option<&Platform>,
) -> Result<String> {
    let reference = url.to_reference().map_err(cargohold_image_core::Error::from)?;
    let mut src = reg.source(&reference);
    let want = platform.cloned().unwrap_or_else(Platform::host);
    let (raw, m) = platform_manifest_of(&mut src, &want)?;
    let (_, config_bytes) = read_config_bytes(&mut src, &m)?;
    let t = Tree::at(tree);
    let flat = t.flat_dir(&m.config.digest);
    if !flat.is_dir() {
        return Err(Error::Io {
            action: "find the flat of",
            path: flat.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} is not published with a flat in {} (convert it without --skip-flat)",
                    public_name(url),
                    tree.display()
                ),
            ),
        });
    }
    let name = crate::podman::podman_name(&public_name(url));
    let image = crate::podman::PodmanImage {
        name: name.clone(),
        manifest: (&raw.bytes, &raw.digest),
        config: (&config_bytes, &m.config.digest),
    };
    let size = crate::gc::file_bytes(&flat, false);
    std::fs::create_dir_all(store).map_err(io_err("create", store))?;
    crate::podman::add_image(&crate::tree::Beneath::new(store), store, &image, &flat, size)?;
    Ok(name)
}
