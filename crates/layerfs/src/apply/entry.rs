//! Creating one non-whiteout entry, relative to its parent directory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::Layer;
use crate::error::{Error, Result};
use crate::root::remove_all;
use crate::xattr::{XattrDecision, xattr_policy};

/// The xattr that records ownership in rootless mode (rootlesscontainers.io).
pub const ROOTLESS_XATTR: &str = "user.rootlesscontainers";

struct Meta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn meta<R: Read>(layer: &Layer<'_>, entry: &mut tar::Entry<'_, R>, shown: &Path) -> Result<Meta> {
    let h = entry.header();
    let bad = |what: &str| layer.entry_err(shown, format!("has an invalid {what} field"));
    let (uid, gid, mode, mtime) = (
        h.uid().map_err(|_| bad("uid"))?,
        h.gid().map_err(|_| bad("gid"))?,
        h.mode().map_err(|_| bad("mode"))?,
        h.mtime().map_err(|_| bad("mtime"))?,
    );
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(|e| layer.io_err(shown, "read PAX headers", e))? {
        for ext in exts {
            let ext = ext.map_err(|e| layer.io_err(shown, "read PAX headers", e))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta { uid, gid, mode: mode & 0o7777, mtime, xattrs })
}

/// Removes whatever is at `name` so a new entry can take its place; an existing
/// directory is kept when `keep_dir` (a directory entry updates it in place).
/// Returns whether a directory was kept.
fn clear_slot(parent: &OwnedFd, name: &OsStr, keep_dir: bool) -> Result<bool, Errno> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            if keep_dir {
                Ok(true)
            } else {
                remove_all(parent.as_fd(), name)?;
                Ok(false)
            }
        }
        Ok(_) => {
            rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
            Ok(false)
        }
    }
}

/// Applies one entry at cleaned path `rel`.
pub(super) fn apply<R: Read>(
    layer: &mut Layer<'_>,
    entry: &mut tar::Entry<'_, R>,
    rel: PathBuf,
    shown: &Path,
    sparse_size: Option<u64>,
) -> Result<()> {
    use tar::EntryType as T;
    let kind = entry.header().entry_type();
    if kind == T::XGlobalHeader {
        return Ok(());
    }
    let m = meta(layer, entry, shown)?;
    if rel.as_os_str().is_empty() {
        // The root itself: only a directory may describe it.
        if !kind.is_dir() {
            return Err(layer.entry_err(shown, "would change the type of the root directory"));
        }
        let fd = layer
            .root
            .open_in(Path::new(""), OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| layer.io_err(shown, "open the root", e))?;
        set_owner_xattrs(layer, &fd, &m, shown)?;
        layer.dirs.push((rel, m.mode, m.mtime));
        return Ok(());
    }
    let (parent, name) = layer.root.parent_of(&rel).map_err(|e| layer.io_err(shown, "open the parent directory", e))?;
    for a in rel.ancestors() {
        if !layer.in_layer.insert(a.to_path_buf()) {
            break;
        }
    }
    match kind {
        T::Directory => directory(layer, &parent, name, rel.clone(), &m, shown),
        T::Regular | T::Continuous | T::GNUSparse => regular(layer, entry, &parent, name, &m, shown, sparse_size),
        T::Symlink => symlink(layer, entry, &parent, name, &m, shown),
        T::Link => hardlink(layer, entry, &parent, name, shown),
        T::Char | T::Block | T::Fifo => special(layer, kind, entry, &parent, name, &m, shown),
        other => {
            layer.report.warnings.push(format!("{}: skipped entry of unsupported type {other:?}", shown.display()));
            Ok(())
        }
    }
}

fn directory(
    layer: &mut Layer<'_>,
    parent: &OwnedFd,
    name: &OsStr,
    rel: PathBuf,
    m: &Meta,
    shown: &Path,
) -> Result<()> {
    let kept = clear_slot(parent, name, true).map_err(|e| layer.io_err(shown, "replace the existing entry", e))?;
    if !kept {
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| layer.io_err(shown, "create the directory", e))?;
    }
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| layer.io_err(shown, "open the directory", e))?;
    if layer.opts.rootless {
        // Keep it writable until the end of the layer; the real mode comes last.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(m.mode | 0o700))
            .map_err(|e| layer.io_err(shown, "chmod the directory", e))?;
    }
    set_owner_xattrs(layer, &fd, m, shown)?;
    layer.dirs.push((rel, m.mode, m.mtime));
    Ok(())
}

fn regular<R: Read>(
    layer: &mut Layer<'_>,
    entry: &mut tar::Entry<'_, R>,
    parent: &OwnedFd,
    name: &OsStr,
    m: &Meta,
    shown: &Path,
    sparse_size: Option<u64>,
) -> Result<()> {
    clear_slot(parent, name, false).map_err(|e| layer.io_err(shown, "replace the existing entry", e))?;
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| layer.io_err(shown, "create the file", e))?;
    let mut file = File::from(fd);
    match sparse_size {
        Some(real_size) => super::sparse::write(layer, entry, &file, real_size, shown)?,
        None => write_data(layer, entry, &mut file, shown)?,
    }
    // chown before chmod: chown clears setuid/setgid bits.
    set_owner_xattrs(layer, &file, m, shown)?;
    rustix::fs::fchmod(&file, Mode::from_raw_mode(m.mode)).map_err(|e| layer.io_err(shown, "chmod the file", e))?;
    rustix::fs::futimens(&file, &times(m.mtime)).map_err(|e| layer.io_err(shown, "set the file's times", e))
}

fn symlink<R: Read>(
    layer: &mut Layer<'_>,
    entry: &tar::Entry<'_, R>,
    parent: &OwnedFd,
    name: &OsStr,
    m: &Meta,
    shown: &Path,
) -> Result<()> {
    let target = entry.link_name_bytes().ok_or_else(|| layer.entry_err(shown, "is a symlink without a target"))?;
    clear_slot(parent, name, false).map_err(|e| layer.io_err(shown, "replace the existing entry", e))?;
    rustix::fs::symlinkat(OsStr::from_bytes(&target), parent, name)
        .map_err(|e| layer.io_err(shown, "create the symlink", e))?;
    if layer.privileged {
        rustix::fs::chownat(parent, name, Some(uid(m.uid)), Some(gid(m.gid)), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| layer.io_err(shown, "chown the symlink", e))?;
    }
    if !m.xattrs.is_empty() {
        layer.report.warnings.push(format!("{}: xattrs on a symlink were not applied", shown.display()));
    }
    rustix::fs::utimensat(parent, name, &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| layer.io_err(shown, "set the symlink's times", e))
}

fn write_data<R: Read>(
    layer: &mut Layer<'_>,
    entry: &mut tar::Entry<'_, R>,
    file: &mut File,
    shown: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Tar { layer: layer.name.into(), source: e }),
        };
        layer.report.bytes += n as u64;
        if layer.report.bytes > layer.opts.limits.max_bytes {
            return Err(Error::Limit {
                layer: layer.name.into(),
                entry: shown.display().to_string(),
                what: "bytes of file data",
                limit: layer.opts.limits.max_bytes,
            });
        }
        file.write_all(&buf[..n]).map_err(|e| layer.io_err(shown, "write the file", e))?;
    }
}

fn hardlink<R: Read>(
    layer: &mut Layer<'_>,
    entry: &tar::Entry<'_, R>,
    parent: &OwnedFd,
    name: &OsStr,
    shown: &Path,
) -> Result<()> {
    let raw = entry.link_name_bytes().ok_or_else(|| layer.entry_err(shown, "is a hardlink without a target"))?;
    let target = super::clean(&raw).map_err(|r| layer.entry_err(shown, format!("hardlink target {r}")))?;
    if target.as_os_str().is_empty() {
        return Err(layer.entry_err(shown, "is a hardlink to the root directory"));
    }
    let tdir = target.parent().unwrap_or(Path::new(""));
    let tname = target.file_name().expect("a non-empty cleaned path has a file name");
    let missing = || {
        layer.entry_err(shown, format!("hardlink target {:?} does not exist (a hardlink before its target?)", target))
    };
    let tparent = match layer.root.open_in(tdir, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Err(missing()),
        Err(e) => return Err(layer.io_err(shown, "open the hardlink target's directory", e)),
    };
    match rustix::fs::statat(&tparent, tname, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Err(missing()),
        Err(e) => return Err(layer.io_err(shown, "look up the hardlink target", e)),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            return Err(layer.entry_err(shown, "is a hardlink to a directory"));
        }
        Ok(_) => {}
    }
    clear_slot(parent, name, false).map_err(|e| layer.io_err(shown, "replace the existing entry", e))?;
    // Flags 0: a symlink target is linked itself, never followed.
    rustix::fs::linkat(&tparent, tname, parent, name, AtFlags::empty())
        .map_err(|e| layer.io_err(shown, "create the hardlink", e))
}

fn special<R: Read>(
    layer: &mut Layer<'_>,
    kind: tar::EntryType,
    entry: &tar::Entry<'_, R>,
    parent: &OwnedFd,
    name: &OsStr,
    m: &Meta,
    shown: &Path,
) -> Result<()> {
    let h = entry.header();
    let (major, minor) = if kind.is_fifo() {
        (0, 0)
    } else {
        (
            h.device_major().map_err(|_| layer.entry_err(shown, "has an invalid device major number"))?.unwrap_or(0),
            h.device_minor().map_err(|_| layer.entry_err(shown, "has an invalid device minor number"))?.unwrap_or(0),
        )
    };
    if !layer.privileged && !kind.is_fifo() {
        layer.report.warnings.push(format!("{}: device {major}:{minor} not created (needs root)", shown.display()));
        return Ok(());
    }
    let ftype = if kind.is_fifo() {
        FileType::Fifo
    } else if kind.is_block_special() {
        FileType::BlockDevice
    } else {
        FileType::CharacterDevice
    };
    clear_slot(parent, name, false).map_err(|e| layer.io_err(shown, "replace the existing entry", e))?;
    rustix::fs::mknodat(parent, name, ftype, Mode::from_raw_mode(m.mode), rustix::fs::makedev(major, minor))
        .map_err(|e| layer.io_err(shown, "create the device node", e))?;
    if layer.privileged {
        rustix::fs::chownat(parent, name, Some(uid(m.uid)), Some(gid(m.gid)), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| layer.io_err(shown, "chown the device node", e))?;
    }
    rustix::fs::utimensat(parent, name, &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| layer.io_err(shown, "set the node's times", e))
}

/// Ownership (or its rootless record) and xattrs, on an open file or directory.
fn set_owner_xattrs(layer: &mut Layer<'_>, fd: &impl AsFd, m: &Meta, shown: &Path) -> Result<()> {
    if layer.privileged {
        rustix::fs::fchown(fd, Some(uid(m.uid)), Some(gid(m.gid))).map_err(|e| layer.io_err(shown, "chown", e))?;
    } else if layer.opts.rootless && (m.uid != 0 || m.gid != 0) {
        let value = rootless_record(m.uid, m.gid);
        rustix::fs::fsetxattr(fd, ROOTLESS_XATTR, &value, XattrFlags::empty())
            .map_err(|e| layer.io_err(shown, "record ownership in user.rootlesscontainers", e))?;
    }
    // A new entry inherits its directory's default ACL: the layer says
    // which ACLs the entry has, so drop the ones it does not list.
    if m.xattrs.iter().any(|(n, _)| n == "system.posix_acl_default") {
        layer.default_acls = true;
        super::DEFAULT_ACL_SEEN.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    for acl in ["system.posix_acl_access", "system.posix_acl_default"] {
        if !layer.default_acls || m.xattrs.iter().any(|(n, _)| n == acl) {
            continue;
        }
        match rustix::fs::fremovexattr(fd, acl) {
            Ok(()) | Err(Errno::NODATA) | Err(Errno::NOTSUP) | Err(Errno::PERM) => {}
            Err(e) => return Err(layer.io_err(shown, "remove an inherited ACL", e)),
        }
    }
    for (name, value) in &m.xattrs {
        if layer.opts.rootless && name == ROOTLESS_XATTR {
            continue;
        }
        match xattr_policy(name, layer.privileged) {
            XattrDecision::Keep => rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty())
                .map_err(|e| layer.io_err(shown, "set an xattr", e))?,
            XattrDecision::Skip(why) => {
                layer.report.warnings.push(format!("{}: xattr {name} not applied: {why}", shown.display()))
            }
        }
    }
    Ok(())
}

/// The `user.rootlesscontainers` value: a protobuf `Resource { uint32 uid = 1;
/// uint32 gid = 2; }` where 0xFFFFFFFF ("noop") stands for root, as umoci writes it.
pub fn rootless_record(uid: u64, gid: u64) -> Vec<u8> {
    const NOOP: u64 = u32::MAX as u64;
    let mut out = Vec::new();
    for (tag, v) in [(0x08u8, if uid == 0 { NOOP } else { uid }), (0x10u8, if gid == 0 { NOOP } else { gid })] {
        out.push(tag);
        let mut v = v;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// Reads a `user.rootlesscontainers` value back into `(uid, gid)`;
/// `None` when it is not one.
pub fn parse_rootless_record(v: &[u8]) -> Option<(u32, u32)> {
    const NOOP: u64 = u32::MAX as u64;
    let (mut uid, mut gid) = (0u32, 0u32);
    let mut i = 0;
    while i < v.len() {
        let tag = v[i];
        i += 1;
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let b = *v.get(i)?;
            i += 1;
            value |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
            if shift > 63 {
                return None;
            }
        }
        let id = if value == NOOP { 0 } else { u32::try_from(value).ok()? };
        match tag {
            0x08 => uid = id,
            0x10 => gid = id,
            _ => return None,
        }
    }
    Some((uid, gid))
}

/// Sets directory modes and times last, deepest first: adding children
/// changes a directory's mtime, and a read-only mode would block them.
pub(super) fn finish_dirs(layer: &mut Layer<'_>) -> Result<()> {
    let mut dirs = std::mem::take(&mut layer.dirs);
    dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
    for (rel, mode, mtime) in dirs {
        let fd = match layer.root.open_in(&rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
            Ok(fd) => fd,
            // Removed or replaced later in the same layer.
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => continue,
            Err(e) => return Err(layer.io_err(&rel, "open the directory", e)),
        };
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| layer.io_err(&rel, "chmod the directory", e))?;
        rustix::fs::futimens(&fd, &times(mtime)).map_err(|e| layer.io_err(&rel, "set the directory's times", e))?;
    }
    Ok(())
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec { tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX), tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

fn uid(v: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u32::try_from(v).unwrap_or(u32::MAX))
}

fn gid(v: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(u32::try_from(v).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_records_round_trip() {
        for (uid, gid) in [(0, 0), (1000, 50), (0, 42), (65534, 0), (u32::MAX - 1, 7)] {
            let v = rootless_record(u64::from(uid), u64::from(gid));
            assert_eq!(parse_rootless_record(&v), Some((uid, gid)), "{uid}:{gid}");
        }
        assert_eq!(parse_rootless_record(&[0x18, 1]), None, "unknown field");
        assert_eq!(parse_rootless_record(&[0x08, 0x80]), None, "truncated varint");
    }
}
