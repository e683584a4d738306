//! A cache of unpacked layers, one directory per diff ID with overlayfs
//! whiteouts, and read-only kernel overlay mounts of images built from it.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use cargohold_image_core::{Digest, ImageSource, Platform, resolve_image};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::apply::ApplyOptions;
use crate::error::{Error, Result};
use crate::root::Root;
use crate::unpack::stream_layers;

/// Unpacked layers on disk, keyed by diff ID, reusable across images.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    /// A cache rooted at `dir` (created on demand).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LayerCache { dir: dir.into() }
    }

    /// The directory holding layer `diff_id`. Layers unpacked where only
    /// one ID is mapped (ownership in xattrs) are kept apart from those
    /// with real owners.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        let dir = if crate::rootless::only_root_mapped() { self.dir.join("one-id") } else { self.dir.clone() };
        dir.join(diff_id.algorithm().as_str()).join(diff_id.hex())
    }

    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io { action, path: path.into(), source }
    }

    /// A new empty directory to unpack a layer into, on the cache's
    /// filesystem; [`LayerCache::adopt`] makes it the layer's directory.
    pub fn staging(&self) -> Result<tempfile::TempDir> {
        let staging = self.dir.join("staging");
        std::fs::create_dir_all(&staging).map_err(Self::io("create", &staging))?;
        tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&staging)
            .map_err(Self::io("create a temp dir in", &staging))
    }

    /// Moves the complete unpacked layer `tmp` (from [`LayerCache::staging`])
    /// into place as layer `diff_id`; a copy already there wins and `tmp`
    /// is removed. Returns the layer's directory.
    pub fn adopt(&self, tmp: tempfile::TempDir, diff_id: &Digest) -> Result<PathBuf> {
        let dest = self.layer_dir(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let parent = dest.parent().expect("layer dirs have a parent");
        std::fs::create_dir_all(parent).map_err(Self::io("create", parent))?;
        let tmp = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dest.is_dir() {
                return Err(Error::Io { action: "move a cached layer into", path: dest, source: e });
            }
        }
        Ok(dest)
    }

    /// Makes sure every layer of the image `src` designates is in the cache
    /// (unpacked in overlay mode, verified) and returns their directories,
    /// base layer first. A layer appears under its final name only when
    /// complete (built under a temp name, then renamed).
    pub fn ensure(&self, src: &mut (dyn ImageSource + Send), platform: Option<&Platform>) -> Result<Vec<PathBuf>> {
        let img = resolve_image(src, platform)?;
        let mut temps = Vec::new();
        let mut roots = Vec::new();
        for (layer, diff_id) in img.image.layers.iter().zip(&img.config.rootfs.diff_ids) {
            if self.layer_dir(diff_id).is_dir() || temps.iter().any(|(d, _, _): &(Digest, _, _)| d == diff_id) {
                continue;
            }
            let tmp = self.staging()?;
            let root = Root::open(tmp.path()).map_err(|e| Error::Io {
                action: "open",
                path: tmp.path().into(),
                source: e.into(),
            })?;
            temps.push((diff_id.clone(), layer.clone(), tmp));
            roots.push(root);
        }
        let plan: Vec<_> = temps.iter().zip(&roots).map(|((d, l, _), r)| (l.clone(), d.clone(), r)).collect();
        let opts = ApplyOptions { overlay: true, ..ApplyOptions::for_current_user() };
        stream_layers(src, &plan, &opts)?;
        drop(plan);
        for (diff_id, _, tmp) in temps {
            self.adopt(tmp, &diff_id)?;
        }
        Ok(img.config.rootfs.diff_ids.iter().map(|d| self.layer_dir(d)).collect())
    }
}

/// Mounts `layers` (base first) read-only at `target`: a kernel overlay for
/// several layers, a read-only bind mount for one. Always `nosuid` and
/// `nodev`: an image's setuid binaries and device nodes grant nothing on
/// the host.
pub fn mount_layers(layers: &[PathBuf], target: &Path) -> Result<()> {
    let err =
        |action: &'static str| move |e: rustix::io::Errno| Error::Io { action, path: target.into(), source: e.into() };
    match layers {
        [] => Err(Error::Io {
            action: "mount",
            path: target.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the image has no layers"),
        }),
        [one] => {
            rustix::mount::mount_bind(one, target).map_err(err("bind-mount a layer on"))?;
            let flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
            rustix::mount::mount_remount(target, flags, "").map_err(err("make read-only"))
        }
        many => {
            let data = CString::new(overlay_options(many, None)).map_err(|_| Error::Io {
                action: "mount",
                path: target.into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "a layer path contains a NUL byte"),
            })?;
            let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
            rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str()))
                .map_err(err("mount an overlay on"))
        }
    }
}

/// Unmounts what [`mount_layers`] mounted.
pub fn unmount(target: &Path) -> Result<()> {
    rustix::mount::unmount(target, UnmountFlags::empty()).map_err(|e| Error::Io {
        action: "unmount",
        path: target.into(),
        source: e.into(),
    })
}

/// overlayfs mount options for `lower` (base first) and, for a writable
/// overlay, an `(upper, work)` pair. Writable overlays turn off directory
/// redirects, metacopy and the index, so that the upper directory holds every
/// change in full and can itself become a layer (and later a lower).
pub fn overlay_options(lower: &[PathBuf], upper: Option<(&Path, &Path)>) -> String {
    // overlayfs wants the top layer first; ',' and ':' in paths are escaped.
    let lowers: Vec<String> = lower.iter().rev().map(|p| escape(&p.to_string_lossy())).collect();
    let mut data = format!("lowerdir={}", lowers.join(":"));
    let userns = crate::rootless::in_user_namespace();
    if let Some((up, work)) = upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            escape(&up.to_string_lossy()),
            escape(&work.to_string_lossy())
        ));
        if !userns {
            // userxattr turns these off itself and refuses to be told.
            data.push_str(",redirect_dir=off,metacopy=off,index=off");
        }
    }
    if userns {
        // In a user namespace overlayfs keeps its metadata in user.* xattrs.
        data.push_str(",userxattr");
    }
    data
}

fn escape(p: &str) -> String {
    p.replace('\\', "\\\\").replace(':', "\\:").replace(',', "\\,")
}
