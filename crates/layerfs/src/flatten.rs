//! Flattening unpacked layer trees (whiteouts kept as files, see
//! `ApplyOptions::keep_whiteouts`) into one root filesystem with hardlinks:
//! file data stays shared with the layer trees and is never copied.
//!
//! Every operation is relative to an open directory and never follows a
//! symlink, so a symlink made by a lower layer cannot redirect an upper one.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::root::{clear_dir, remove_all};

const OPAQUE: &[u8] = b".wh..wh..opq";

/// What a flatten did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlattenReport {
    /// Entries placed (files, directories, links, devices).
    pub entries: u64,
    /// Bytes of regular files hardlinked from the layers (not written).
    pub linked_bytes: u64,
    /// Bytes of regular files copied, for layers on another filesystem
    /// than `dest` (a read-only view, where no link can be made).
    pub copied_bytes: u64,
    /// Whiteouts applied (opaque markers included).
    pub whiteouts: u64,
}

fn io(path: &Path, action: &'static str, e: Errno) -> Error {
    Error::Io { action, path: path.to_path_buf(), source: e.into() }
}

fn open_dir(dir: impl AsFd, name: &OsStr) -> std::result::Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Stacks the unpacked layer directories `layers` (base first) into the
/// existing, empty directory `dest`: `.wh.NAME` removes NAME of lower layers,
/// `.wh..wh..opq` empties the directory of lower content, regular files are
/// hardlinked (so `dest` must be on the layers' filesystem), directories get
/// the mode, owner, times and xattrs of the topmost layer that has them.
pub fn flatten_linked(layers: &[&Path], dest: &Path) -> Result<FlattenReport> {
    let root = rustix::fs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io(dest, "open the flat root", e))?;
    let privileged = rustix::process::geteuid().is_root();
    let mut report = FlattenReport::default();
    for layer in layers {
        let src = rustix::fs::open(*layer, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io(layer, "open the layer tree", e))?;
        let mut ctx = Ctx { layer, privileged, report: &mut report };
        ctx.merge(&src, &root, Path::new(""))?;
        ctx.copy_dir_meta(&src, &root, Path::new(""))?;
    }
    Ok(report)
}

struct Ctx<'a> {
    layer: &'a Path,
    privileged: bool,
    report: &'a mut FlattenReport,
}

impl Ctx<'_> {
    fn at(&self, rel: &Path) -> PathBuf {
        self.layer.join(rel)
    }

    fn merge(&mut self, src: &OwnedFd, dst: &OwnedFd, rel: &Path) -> Result<()> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut dir = rustix::fs::Dir::read_from(src).map_err(|e| io(&self.at(rel), "read the directory", e))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| io(&self.at(rel), "read the directory", e))?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names.sort();
        if names.iter().any(|n| n == OPAQUE) {
            clear_dir(dst, |_| false).map_err(|e| io(&self.at(rel), "apply the opaque whiteout", e))?;
            self.report.whiteouts += 1;
        }
        for n in names.iter().filter(|n| n.as_slice() != OPAQUE) {
            if let Some(target) = n.strip_prefix(b".wh.") {
                if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                    return Err(Error::Io {
                        action: "apply a whiteout",
                        path: self.at(&rel.join(OsStr::from_bytes(n))),
                        source: std::io::Error::other("not a valid whiteout name"),
                    });
                }
                remove_all(dst.as_fd(), OsStr::from_bytes(target))
                    .map_err(|e| io(&self.at(&rel.join(OsStr::from_bytes(n))), "apply the whiteout", e))?;
                self.report.whiteouts += 1;
            }
        }
        for n in names.iter().filter(|n| !n.starts_with(b".wh.")) {
            let name = OsStr::from_bytes(n);
            let child = rel.join(name);
            let shown = self.at(&child);
            let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(&shown, "stat", e))?;
            let kind = FileType::from_raw_mode(st.st_mode);
            self.report.entries += 1;
            if kind == FileType::Directory {
                match rustix::fs::statat(dst, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(d) if FileType::from_raw_mode(d.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        remove_all(dst.as_fd(), name).map_err(|e| io(&shown, "replace a non-directory", e))?;
                        rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                            .map_err(|e| io(&shown, "create the directory", e))?;
                    }
                    Err(Errno::NOENT) => rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| io(&shown, "create the directory", e))?,
                    Err(e) => return Err(io(&shown, "stat", e)),
                }
                let sub_src = open_dir(src, name).map_err(|e| io(&shown, "open", e))?;
                let sub_dst = open_dir(dst, name).map_err(|e| io(&shown, "open the flat directory", e))?;
                self.merge(&sub_src, &sub_dst, &child)?;
                self.copy_dir_meta(&sub_src, &sub_dst, &child)?;
                continue;
            }
            remove_all(dst.as_fd(), name).map_err(|e| io(&shown, "replace", e))?;
            let ts = Timestamps {
                last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
                last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
            };
            match kind {
                FileType::RegularFile => match rustix::fs::linkat(src, name, dst, name, AtFlags::empty()) {
                    Ok(()) => self.report.linked_bytes += st.st_size as u64,
                    Err(Errno::XDEV) => {
                        self.copy_file(src, dst, name, &st, &shown)?;
                        self.report.copied_bytes += st.st_size as u64;
                    }
                    Err(e) => return Err(io(&shown, "hardlink into the flat tree", e)),
                },
                FileType::Symlink => {
                    let target =
                        rustix::fs::readlinkat(src, name, Vec::new()).map_err(|e| io(&shown, "readlink", e))?;
                    rustix::fs::symlinkat(target.as_c_str(), dst, name).map_err(|e| io(&shown, "symlink", e))?;
                    self.chown_at(dst, name, &st, &shown)?;
                    rustix::fs::utimensat(dst, name, &ts, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io(&shown, "set times", e))?;
                }
                FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                    rustix::fs::mknodat(dst, name, kind, Mode::from_raw_mode(st.st_mode & 0o7777), st.st_rdev)
                        .map_err(|e| io(&shown, "create the special file", e))?;
                    self.chown_at(dst, name, &st, &shown)?;
                    rustix::fs::utimensat(dst, name, &ts, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io(&shown, "set times", e))?;
                }
                // Sockets do not belong in images; layers never carry them.
                _ => self.report.entries -= 1,
            }
        }
        Ok(())
    }

    /// A copy of the regular file `name` (contents, mode, owner when
    /// privileged, times, xattrs), where it cannot be linked.
    fn copy_file(&self, src: &OwnedFd, dst: &OwnedFd, name: &OsStr, st: &rustix::fs::Stat, shown: &Path) -> Result<()> {
        let from = rustix::fs::openat(src, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io(shown, "open", e))?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let to = rustix::fs::openat(dst, name, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io(shown, "create in the flat tree", e))?;
        let (mut from, mut to) = (std::fs::File::from(from), std::fs::File::from(to));
        std::io::copy(&mut from, &mut to).map_err(|e| Error::Io {
            action: "copy into the flat tree",
            path: shown.to_path_buf(),
            source: e,
        })?;
        copy_xattrs(&from, &to, shown)?;
        if self.privileged {
            rustix::fs::fchown(
                &to,
                Some(rustix::process::Uid::from_raw(st.st_uid)),
                Some(rustix::process::Gid::from_raw(st.st_gid)),
            )
            .map_err(|e| io(shown, "chown", e))?;
        }
        rustix::fs::fchmod(&to, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(|e| io(shown, "chmod", e))?;
        let ts = Timestamps {
            last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
            last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
        };
        rustix::fs::futimens(&to, &ts).map_err(|e| io(shown, "set times", e))
    }

    fn chown_at(&self, dir: &OwnedFd, name: &OsStr, st: &rustix::fs::Stat, shown: &Path) -> Result<()> {
        if !self.privileged {
            return Ok(());
        }
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::process::Uid::from_raw(st.st_uid)),
            Some(rustix::process::Gid::from_raw(st.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io(shown, "chown", e))
    }

    /// Mode, owner, xattrs and times of the directory `src` onto `dst`.
    fn copy_dir_meta(&self, src: &OwnedFd, dst: &OwnedFd, rel: &Path) -> Result<()> {
        let shown = self.at(rel);
        let st = rustix::fs::fstat(src).map_err(|e| io(&shown, "stat", e))?;
        if self.privileged {
            rustix::fs::fchown(
                dst,
                Some(rustix::process::Uid::from_raw(st.st_uid)),
                Some(rustix::process::Gid::from_raw(st.st_gid)),
            )
            .map_err(|e| io(&shown, "chown", e))?;
        }
        copy_xattrs(src, dst, &shown)?;
        rustix::fs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(|e| io(&shown, "chmod", e))?;
        let ts = Timestamps {
            last_access: Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
            last_modification: Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
        };
        rustix::fs::futimens(dst, &ts).map_err(|e| io(&shown, "set times", e))
    }
}

/// The xattrs of `src` onto `dst` (those the caller may not set skipped).
fn copy_xattrs(src: impl AsFd, dst: impl AsFd, shown: &Path) -> Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(&src, &mut names) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => 0,
        Err(Errno::RANGE) => {
            names = vec![0u8; 65536];
            rustix::fs::flistxattr(&src, &mut names).map_err(|e| io(shown, "list xattrs", e))?
        }
        Err(e) => return Err(io(shown, "list xattrs", e)),
    };
    for key in names[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let key = std::ffi::CString::new(key).expect("split on NUL");
        let mut value = vec![0u8; 65536];
        let len = rustix::fs::fgetxattr(&src, key.as_c_str(), &mut value).map_err(|e| io(shown, "read xattr", e))?;
        match rustix::fs::fsetxattr(&dst, key.as_c_str(), &value[..len], XattrFlags::empty()) {
            // trusted.* and security.* need privileges the caller may lack.
            Ok(()) | Err(Errno::PERM) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(io(shown, "write xattr", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    fn layer(dir: &Path, files: &[(&str, &[u8], u32)]) {
        for (name, data, mode) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
    }

    /// Layers on another filesystem (here a tmpfs, for a read-only view of
    /// a repository) are copied, with mode and times; on the same one, linked.
    #[test]
    fn layers_elsewhere_are_copied_and_layers_beside_linked() {
        let shm = tempfile::tempdir_in("/dev/shm").expect("/dev/shm, a tmpfs on every Linux");
        let here = tempfile::tempdir().unwrap();
        assert_ne!(
            std::fs::metadata(shm.path()).unwrap().dev(),
            std::fs::metadata(here.path()).unwrap().dev(),
            "the test needs two filesystems"
        );
        let (lower, upper) = (shm.path().join("lower"), here.path().join("upper"));
        layer(&lower, &[("bin/tool", b"#!/bin/sh\n", 0o755), ("etc/gone", b"x", 0o644), ("etc/keep", b"kept", 0o600)]);
        layer(&upper, &[("etc/.wh.gone", b"", 0o644), ("new", b"new", 0o644)]);
        let then = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options().write(true).open(lower.join("bin/tool")).unwrap().set_modified(then).unwrap();
        let dest = here.path().join("flat");
        std::fs::create_dir(&dest).unwrap();
        let r = flatten_linked(&[&lower, &upper], &dest).unwrap();
        assert_eq!(r.copied_bytes, 10 + 1 + 4, "{r:?}");
        assert_eq!(r.linked_bytes, 3, "{r:?}");
        let tool = std::fs::metadata(dest.join("bin/tool")).unwrap();
        assert_eq!(std::fs::read(dest.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(tool.mode() & 0o7777, 0o755);
        assert_eq!(tool.mtime(), 1_000_000);
        assert_eq!(tool.nlink(), 1, "a copy");
        assert_eq!(std::fs::metadata(dest.join("etc/keep")).unwrap().mode() & 0o7777, 0o600);
        assert!(!dest.join("etc/gone").exists(), "the whiteout applies");
        assert_eq!(
            std::fs::metadata(dest.join("new")).unwrap().ino(),
            std::fs::metadata(upper.join("new")).unwrap().ino()
        );
    }
}
