//! Making sure an image is in the store before it is run (`run --pull`).

use cargohold_image_core::{CopyOptions, ImageLocation, Progress, Reference, Store, copy};

use crate::adapter::Registry;
use crate::pull::pull;

/// When an image is pulled before it is run (Docker's and podman's
/// `--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pulled when the store lacks it.
    #[default]
    Missing,
    /// Pulled every time (the store's copy is replaced when the registry's
    /// differs).
    Always,
    /// Never pulled: the store must have it.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!("--pull {other}: expected missing, always or never")),
        }
    }
}

/// What [`ensure_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredImage {
    /// The name to find the image by in the store: the name given, the
    /// pulled reference, or the manifest digest of an image copied in from
    /// a layout or archive.
    pub name: String,
    /// The image was pulled or copied in now.
    pub fetched: bool,
}

/// Makes the image `image` names present in `store`, as `run` needs it:
/// a store name or `docker://REF` is pulled under `policy` (an image the
/// store has, but not for `opts.platform`, is missing: that platform is
/// pulled and kept with the others); `oci:DIR[:TAG]`,
/// `oci-archive:FILE`, `docker-archive:FILE[:REF]`, `dir:DIR` and
/// `docker-daemon:REF` are copied in (named as the archive or engine names
/// them, else untagged), whatever the policy, since they are local.
pub fn ensure_image(
    reg: &Registry,
    store: &Store,
    image: &str,
    policy: PullPolicy,
    opts: &CopyOptions,
    jobs: usize,
    progress: &dyn Progress,
) -> cargohold_image_core::Result<EnsuredImage> {
    let name = match ImageLocation::parse(image)? {
        ImageLocation::Store(name) | ImageLocation::Docker(name) => name,
        local => {
            let mut src = crate::open_source(&local, store, reg)?;
            let hint = src.name_hint();
            let mut dst = store.dest(hint.as_ref())?;
            let report = copy(src.as_mut(), &mut dst, opts, progress)?;
            return Ok(EnsuredImage { name: report.manifest.digest.to_string(), fetched: true });
        }
    };
    let present = store.resolve(&name);
    // A stored image lacking the platform asked for is missing too.
    let lacks_platform = match (&present, &opts.platform) {
        (Ok(img), Some(p)) => !store.has_platform(&img.descriptor, p),
        _ => false,
    };
    let pull_now = match policy {
        PullPolicy::Never => false,
        PullPolicy::Missing => present.is_err() || lacks_platform,
        PullPolicy::Always => true,
    };
    if !pull_now {
        present?;
        return Ok(EnsuredImage { name, fetched: false });
    }
    let reference = match Reference::parse(&name) {
        Ok(r) => r,
        // An image ID (a digest prefix) has nothing to pull.
        Err(_) => return present.map(|_| EnsuredImage { name, fetched: false }),
    };
    // Not there and not to be had: the pull's error says why (an image
    // the store has is not run in its stead under `--pull always`).
    pull(reg, &reference, store, opts, jobs, progress)?;
    // The platforms the store had of it stay (an index of them all).
    if lacks_platform && let Ok(previous) = &present {
        let pulled = store.resolve(&name)?;
        store.merge_platforms(&reference, &previous.descriptor, &pulled.descriptor)?;
    }
    Ok(EnsuredImage { name, fetched: true })
}
