//! `.wh.NAME` and `.wh..wh..opq` (OCI image-spec, "Whiteouts").

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use rustix::io::Errno;

use super::Layer;
use crate::error::Result;
use crate::root::{clear_dir, remove_all};

const OPAQUE: &[u8] = b".wh..wh..opq";

/// Handles a whiteout entry `rel` whose base name is `.wh.` + `target`.
pub(super) fn apply(layer: &mut Layer<'_>, rel: &Path, target: &[u8], shown: &Path) -> Result<()> {
    let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    let base = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
    check_name(layer, base, target, shown)?;
    if layer.opts.overlay {
        return overlay_whiteout(layer, &dir, (base != OPAQUE).then_some(target), shown);
    }
    if base == OPAQUE {
        return opaque(layer, &dir, shown);
    }
    let victim = dir.join(OsStr::from_bytes(target));
    if layer.in_layer.contains(&victim) {
        return Ok(()); // created by this very layer: only lower layers are hidden
    }
    let parent = match layer.root.open_in(&dir, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
        Err(e) => return Err(layer.io_err(shown, "open the whiteout's directory", e)),
    };
    remove_all(parent.as_fd(), OsStr::from_bytes(target))
        .map_err(|e| layer.io_err(shown, "remove the whited-out path", e))
}

/// Refuses whiteout names that would name "", "." or ".." (`.wh.`, `.wh..`,
/// `.wh...`) or another whiteout.
pub(super) fn check_name(layer: &Layer<'_>, base: &[u8], target: &[u8], shown: &Path) -> Result<()> {
    if base != OPAQUE && (target.is_empty() || target == b"." || target == b".." || target.starts_with(b".wh.")) {
        return Err(layer.entry_err(shown, "is not a valid whiteout name"));
    }
    Ok(())
}

/// Overlay mode: record the whiteout the way overlayfs reads it. A
/// whiteout is a 0/0 character device; an opaque directory carries
/// `trusted.overlay.opaque=y`.
fn overlay_whiteout(layer: &mut Layer<'_>, dir: &Path, target: Option<&[u8]>, shown: &Path) -> Result<()> {
    if !layer.privileged && !layer.userns {
        return Err(layer.entry_err(shown, "overlay whiteouts need root or a user namespace"));
    }
    layer.root.mkdir_all(dir).map_err(|e| layer.io_err(shown, "create the whiteout's directory", e))?;
    let parent = layer
        .root
        .open_in(dir, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| layer.io_err(shown, "open the whiteout's directory", e))?;
    for a in dir.ancestors() {
        layer.in_layer.insert(a.to_path_buf());
    }
    match target {
        Some(name) => {
            let name = OsStr::from_bytes(name);
            remove_all(parent.as_fd(), name)
                .map_err(|e| layer.io_err(shown, "replace the entry with a whiteout", e))?;
            layer.in_layer.insert(dir.join(name));
            rustix::fs::mknodat(
                &parent,
                name,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| layer.io_err(shown, "create the overlay whiteout", e))
        }
        None => rustix::fs::fsetxattr(&parent, crate::rootless::opaque_xattr(), b"y", rustix::fs::XattrFlags::empty())
            .map_err(|e| layer.io_err(shown, "mark the directory opaque", e)),
    }
}

/// Hides every lower-layer child of `dir`, keeping what this layer wrote.
fn opaque(layer: &mut Layer<'_>, dir: &Path, shown: &Path) -> Result<()> {
    // Ten thousand markers for one directory cost one scan, not ten thousand.
    if !layer.opaque_done.insert(dir.to_path_buf()) {
        return Ok(());
    }
    prune_lower(layer, dir, shown)
}

fn prune_lower(layer: &Layer<'_>, dir: &Path, shown: &Path) -> Result<()> {
    let fd = match layer.root.open_in(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(()),
        Err(e) => return Err(layer.io_err(shown, "open the opaque directory", e)),
    };
    let mut keep_dirs: Vec<PathBuf> = Vec::new();
    clear_dir(&fd, |name| {
        let child = dir.join(name);
        if layer.in_layer.contains(&child) {
            keep_dirs.push(child);
            true
        } else {
            false
        }
    })
    .map_err(|e| layer.io_err(shown, "clear the opaque directory", e))?;
    // A directory this layer also wrote keeps only this layer's children.
    for child in keep_dirs {
        prune_lower(layer, &child, shown)?;
    }
    Ok(())
}
