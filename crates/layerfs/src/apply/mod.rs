//! Applying one layer tar to a root, with OCI image-spec `layer.md` semantics.

pub(crate) mod entry;
mod sparse;
pub(crate) use entry as entry_rootless;
mod whiteout;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::root::Root;

/// Caps that bound the work a hostile layer can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of file data written by one layer.
    pub max_bytes: u64,
    /// Entries in one layer.
    pub max_entries: u64,
    /// Path components in one entry name.
    pub max_depth: usize,
    /// Bytes in one entry name.
    pub max_path_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 64 << 30, max_entries: 4_000_000, max_depth: 512, max_path_len: 4096 }
    }
}

/// How to apply layers.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Do not chown or create devices; record ownership in the
    /// `user.rootlesscontainers` xattr instead. Use when not root.
    pub rootless: bool,
    /// Limits on what one layer may do.
    pub limits: Limits,
    /// Write overlayfs whiteouts (0/0 character devices, the
    /// `trusted.overlay.opaque` xattr) instead of deleting lower content, so
    /// the directory can be stacked by the kernel as one overlay layer.
    /// Needs root.
    pub overlay: bool,
    /// Keep whiteout entries as the empty files they are in the tar instead
    /// of applying them (one layer unpacked on its own, as CernVM-FS `.layers`
    /// trees hold them; [`crate::flatten_linked`] applies them later).
    pub keep_whiteouts: bool,
}

impl ApplyOptions {
    /// Options for the current process: rootless unless running as root
    /// (of the host, or of a user namespace with subordinate IDs mapped).
    pub fn for_current_user() -> Self {
        let rootless = !rustix::process::geteuid().is_root() || crate::rootless::only_root_mapped();
        ApplyOptions { rootless, ..ApplyOptions::default() }
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Tar entries processed.
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Things skipped on purpose (devices when rootless, refused xattrs).
    pub warnings: Vec<String>,
}

/// Per-layer bookkeeping.
pub(crate) struct Layer<'a> {
    pub(crate) root: &'a Root,
    pub(crate) name: &'a str,
    pub(crate) opts: &'a ApplyOptions,
    pub(crate) privileged: bool,
    /// Every path this layer wrote: whiteouts never remove these.
    pub(crate) in_layer: HashSet<PathBuf>,
    /// Directories already made opaque by this layer.
    pub(crate) opaque_done: HashSet<PathBuf>,
    /// Directories whose mode and times are set at the end (children change them).
    pub(crate) dirs: Vec<(PathBuf, u32, u64)>,
    pub(crate) report: ApplyReport,
    /// This process runs in a user namespace (overlay metadata in `user.*`).
    pub(crate) userns: bool,
    /// Whether a directory of the tree may carry a default ACL (so new
    /// entries may inherit ACLs the layer does not give them).
    pub(crate) default_acls: bool,
}

/// Set once any layer applied in this process gave a directory a default ACL.
pub(crate) static DEFAULT_ACL_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Layer<'_> {
    pub(crate) fn entry_err(&self, entry: &Path, reason: impl Into<String>) -> Error {
        Error::Entry { layer: self.name.into(), entry: entry.display().to_string(), reason: reason.into() }
    }

    pub(crate) fn io_err(&self, entry: &Path, action: &'static str, e: impl Into<io::Error>) -> Error {
        Error::EntryIo { layer: self.name.into(), entry: entry.display().to_string(), action, source: e.into() }
    }
}

/// Applies the layer tar read from `tar` (already decompressed) to `root`.
/// `name` identifies the layer in errors. Bytes after the tar's end are read
/// (so the caller's hash covers them) but never extracted.
pub fn apply_layer(root: &Root, tar: &mut dyn Read, name: &str, opts: &ApplyOptions) -> Result<ApplyReport> {
    let privileged = !opts.rootless && rustix::process::geteuid().is_root();
    let mut layer = Layer {
        root,
        name,
        opts,
        privileged,
        in_layer: HashSet::new(),
        opaque_done: HashSet::new(),
        dirs: Vec::new(),
        report: ApplyReport::default(),
        userns: crate::rootless::in_user_namespace(),
        default_acls: DEFAULT_ACL_SEEN.load(std::sync::atomic::Ordering::Relaxed) || {
            // The root is an O_PATH descriptor: read through /proc.
            use std::os::fd::AsRawFd;
            let at = format!("/proc/self/fd/{}", root.fd().as_raw_fd());
            rustix::fs::getxattr(at.as_str(), "system.posix_acl_default", &mut [0u8; 0][..]).is_ok()
        },
    };
    let tar_err = |source| Error::Tar { layer: name.into(), source };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        layer.report.entries += 1;
        let header_name = entry.path_bytes().into_owned();
        let sparse = sparse::info(&mut entry, name, Path::new(OsStr::from_bytes(&header_name)))?;
        let raw = sparse.as_ref().map_or(header_name, |s| s.name.clone());
        let shown = PathBuf::from(OsStr::from_bytes(&raw));
        if layer.report.entries > opts.limits.max_entries {
            return Err(limit(name, &shown, "entries", opts.limits.max_entries));
        }
        if raw.len() > opts.limits.max_path_len {
            return Err(limit(name, &shown, "bytes of path", opts.limits.max_path_len as u64));
        }
        let rel = clean(&raw).map_err(|reason| layer.entry_err(&shown, reason))?;
        if rel.components().count() > opts.limits.max_depth {
            return Err(limit(name, &shown, "path components", opts.limits.max_depth as u64));
        }
        let base = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if let Some(target) = base.strip_prefix(b".wh.") {
            if !opts.keep_whiteouts {
                whiteout::apply(&mut layer, &rel, target, &shown)?;
                continue;
            }
            whiteout::check_name(&layer, base, target, &shown)?;
        }
        entry::apply(&mut layer, &mut entry, rel, &shown, sparse.map(|s| s.real_size))?;
    }
    // Hash trailing bytes too: they are part of the diff ID.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|source| Error::Tar { layer: name.into(), source })?;
    entry::finish_dirs(&mut layer)?;
    Ok(layer.report)
}

fn limit(layer: &str, entry: &Path, what: &'static str, limit: u64) -> Error {
    Error::Limit { layer: layer.into(), entry: entry.display().to_string(), what, limit }
}

/// Cleans an entry name: leading `/` and `./`, empty and `.` components are
/// dropped; `..` pops a component, and one that would climb above the root is
/// refused (never clamped: such a name is an attack, not a typo).
pub(crate) fn clean(raw: &[u8]) -> std::result::Result<PathBuf, &'static str> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err("climbs out of the root with '..'");
                }
            }
            c => parts.push(c),
        }
    }
    Ok(PathBuf::from(OsStr::from_bytes(&parts.join(&b'/'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean(b"./a//b/").unwrap(), PathBuf::from("a/b"));
        assert_eq!(clean(b"/etc/passwd").unwrap(), PathBuf::from("etc/passwd"));
        assert_eq!(clean(b"a/../b").unwrap(), PathBuf::from("b"));
        assert_eq!(clean(b"./").unwrap(), PathBuf::from(""));
        assert!(clean(b"../x").is_err());
        assert!(clean(b"a/../../x").is_err());
    }
}
