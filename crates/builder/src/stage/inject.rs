//! Copying an injected tree into an image root, as `rsync -aHAXK` would:
//! files, symlinks, hardlinks, device nodes and FIFOs keep their owner,
//! mode, times, xattrs and POSIX ACLs (`system.posix_acl_*`). A directory
//! the image already has (also through a symlink such as Debian's
//! `/bin -> usr/bin`, resolved inside the root) keeps its owner, mode and
//! time, and gets the tree's xattrs and ACLs; a new directory gets
//! everything from the tree. Every destination path is resolved inside the
//! root ([`Root`]), so the image's own symlinks cannot send a file outside.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::Metadata;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use cargohold_layerfs::{Root, XattrDecision, remove_all, xattr_policy};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

/// What went wrong with one path of a tree.
#[derive(Debug)]
pub(crate) struct InjectFailure {
    /// The file in the tree.
    pub path: PathBuf,
    /// What was being done.
    pub action: &'static str,
    /// Why.
    pub source: std::io::Error,
}

type Result<T> = std::result::Result<T, InjectFailure>;

/// What an injection did.
#[derive(Debug, Default)]
pub(crate) struct InjectReport {
    /// Entries written.
    pub entries: u64,
    /// Things left out (sockets, xattrs outside the policy), one line each.
    pub warnings: Vec<String>,
}

/// Copies the contents of `src` into `root`, leaving out the top-level
/// names in `skip`.
pub(crate) fn inject_tree(root: &Root, src: &Path, skip: &[&str], report: &mut InjectReport) -> Result<()> {
    let mut job = Job { root, src, links: HashMap::new(), report };
    job.dir_contents(Path::new(""), skip)
}

struct Job<'a> {
    root: &'a Root,
    src: &'a Path,
    /// (device, inode) of a multiply linked file -> where it went.
    links: HashMap<(u64, u64), PathBuf>,
    report: &'a mut InjectReport,
}

fn errno<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(Errno) -> InjectFailure + 'p {
    move |e| InjectFailure { path: path.to_path_buf(), action, source: e.into() }
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> InjectFailure + 'p {
    move |e| InjectFailure { path: path.to_path_buf(), action, source: e }
}

fn time_of(m: &Metadata) -> Timestamps {
    let t = Timespec { tv_sec: m.mtime(), tv_nsec: m.mtime_nsec() };
    Timestamps { last_access: t, last_modification: t }
}

impl Job<'_> {
    fn dir_contents(&mut self, rel: &Path, skip: &[&str]) -> Result<()> {
        let here = self.src.join(rel);
        let mut names: Vec<_> = std::fs::read_dir(&here)
            .map_err(io("list", &here))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(io("list", &here))?;
        names.sort();
        for name in names {
            if rel.as_os_str().is_empty() && skip.iter().any(|s| OsStr::new(s) == name) {
                continue;
            }
            self.entry(&rel.join(&name))?;
        }
        Ok(())
    }

    fn entry(&mut self, rel: &Path) -> Result<()> {
        let src = self.src.join(rel);
        let meta = std::fs::symlink_metadata(&src).map_err(io("read", &src))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            return self.dir(rel, &src, &meta);
        }
        if ft.is_socket() {
            self.report.warnings.push(format!("{}: a socket, left out", src.display()));
            return Ok(());
        }
        let (parent, name) = self.root.parent_of(rel).map_err(errno("create the parent directory for", &src))?;
        if meta.nlink() > 1
            && !ft.is_symlink()
            && let Some(first) = self.links.get(&(meta.dev(), meta.ino()))
        {
            let (first_parent, first_name) = self.root.parent_of(first).map_err(errno("find", &src))?;
            replace(&parent, name).map_err(errno("replace", &src))?;
            rustix::fs::linkat(&first_parent, first_name, &parent, name, AtFlags::empty())
                .map_err(errno("hard-link", &src))?;
            self.report.entries += 1;
            return Ok(());
        }
        replace(&parent, name).map_err(errno("replace", &src))?;
        let owner = (Some(rustix::fs::Uid::from_raw(meta.uid())), Some(rustix::fs::Gid::from_raw(meta.gid())));
        let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
        if ft.is_symlink() {
            let target = std::fs::read_link(&src).map_err(io("read the symlink", &src))?;
            rustix::fs::symlinkat(&target, &parent, name).map_err(errno("create the symlink for", &src))?;
            rustix::fs::chownat(&parent, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno("chown the copy of", &src))?;
            rustix::fs::utimensat(&parent, name, &time_of(&meta), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno("set the times of the copy of", &src))?;
            self.report.entries += 1;
            return Ok(());
        }
        let fd: OwnedFd = if ft.is_file() {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(&parent, name, flags, Mode::from_raw_mode(0o600))
                .map_err(errno("create the copy of", &src))?;
            let mut out = std::fs::File::from(fd);
            let mut input = std::fs::File::open(&src).map_err(io("open", &src))?;
            std::io::copy(&mut input, &mut out).map_err(io("copy", &src))?;
            out.into()
        } else {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_char_device() {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            rustix::fs::mknodat(&parent, name, kind, Mode::from_raw_mode(0o600), meta.rdev())
                .map_err(errno("create the device node for", &src))?;
            rustix::fs::openat(&parent, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(errno("open the copy of", &src))?
        };
        // chown before chmod (chown clears set-id bits), ACLs after chmod
        // (an access ACL sets the group bits), times last.
        let path_op = !ft.is_file();
        if path_op {
            let at = proc_path(&fd);
            rustix::fs::chown(&at, owner.0, owner.1).map_err(errno("chown the copy of", &src))?;
            rustix::fs::chmod(&at, mode).map_err(errno("chmod the copy of", &src))?;
        } else {
            crate::build::copy::own(&fd, (meta.uid(), meta.gid())).map_err(errno("chown the copy of", &src))?;
            rustix::fs::fchmod(&fd, mode).map_err(errno("chmod the copy of", &src))?;
        }
        self.copy_xattrs(&src, &fd, path_op, true)?;
        if path_op {
            rustix::fs::utimensat(rustix::fs::CWD, proc_path(&fd).as_c_str(), &time_of(&meta), AtFlags::empty())
                .map_err(errno("set the times of the copy of", &src))?;
        } else {
            rustix::fs::futimens(&fd, &time_of(&meta)).map_err(errno("set the times of the copy of", &src))?;
        }
        if meta.nlink() > 1 {
            self.links.insert((meta.dev(), meta.ino()), rel.to_path_buf());
        }
        self.report.entries += 1;
        Ok(())
    }

    fn dir(&mut self, rel: &Path, src: &Path, meta: &Metadata) -> Result<()> {
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // An existing directory, also through a symlink resolved in the root.
        let (fd, kept) = match self.root.open_in(rel, dir_flags) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd).map_err(errno("read", src))?;
                let t = Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ };
                (fd, Some(Timestamps { last_access: t, last_modification: t }))
            }
            Err(_) => {
                let (parent, name) = self.root.parent_of(rel).map_err(errno("create the parent directory for", src))?;
                replace(&parent, name).map_err(errno("replace", src))?;
                rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                    .map_err(errno("create the directory for", src))?;
                let fd = rustix::fs::openat(&parent, name, dir_flags | OFlags::NOFOLLOW, Mode::empty())
                    .map_err(errno("open the copy of", src))?;
                crate::build::copy::own(&fd, (meta.uid(), meta.gid())).map_err(errno("chown the copy of", src))?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode() & 0o7777))
                    .map_err(errno("chmod the copy of", src))?;
                (fd, None)
            }
        };
        self.copy_xattrs(src, &fd, false, kept.is_none())?;
        self.report.entries += 1;
        self.dir_contents(rel, &[])?;
        let times = kept.unwrap_or_else(|| time_of(meta));
        rustix::fs::futimens(&fd, &times).map_err(errno("set the times of the copy of", src))
    }

    /// Copies the xattrs of `src` that the layer policy keeps onto `fd`
    /// (through `/proc/self/fd` for an `O_PATH` descriptor); on a `fresh`
    /// entry, also removes the ACLs it inherited and `src` does not have.
    fn copy_xattrs(&mut self, src: &Path, fd: &OwnedFd, path_op: bool, fresh: bool) -> Result<()> {
        let mut names = vec![0u8; 4096];
        let len = match rustix::fs::llistxattr(src, &mut names[..]) {
            Ok(n) => n,
            Err(Errno::RANGE) => {
                let n = rustix::fs::llistxattr(src, &mut [0u8; 0][..]).map_err(errno("list the xattrs of", src))?;
                names.resize(n, 0);
                rustix::fs::llistxattr(src, &mut names[..]).map_err(errno("list the xattrs of", src))?
            }
            Err(Errno::NOTSUP) => 0,
            Err(e) => return Err(errno("list the xattrs of", src)(e)),
        };
        // A new entry inherits its directory's default ACL; the copy must
        // have exactly the ACLs of the original.
        for acl in ["system.posix_acl_access", "system.posix_acl_default"] {
            if !fresh || names[..len].split(|b| *b == 0).any(|n| n == acl.as_bytes()) {
                continue;
            }
            let removed = if path_op {
                rustix::fs::removexattr(proc_path(fd).as_c_str(), acl)
            } else {
                rustix::fs::fremovexattr(fd, acl)
            };
            match removed {
                Ok(()) | Err(Errno::NODATA) | Err(Errno::NOTSUP) => {}
                Err(e) => return Err(errno("remove an inherited ACL from the copy of", src)(e)),
            }
        }
        for raw in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(raw).into_owned();
            if let XattrDecision::Skip(why) = xattr_policy(&name, true) {
                self.report.warnings.push(format!("{}: xattr {name} left out: {why}", src.display()));
                continue;
            }
            let mut value = vec![0u8; 65536];
            let n =
                rustix::fs::lgetxattr(src, name.as_str(), &mut value[..]).map_err(errno("read an xattr of", src))?;
            let set = if path_op {
                rustix::fs::setxattr(proc_path(fd).as_c_str(), name.as_str(), &value[..n], XattrFlags::empty())
            } else {
                rustix::fs::fsetxattr(fd, name.as_str(), &value[..n], XattrFlags::empty())
            };
            set.map_err(|e| InjectFailure {
                path: src.to_path_buf(),
                action: "set an xattr on the copy of",
                source: std::io::Error::other(format!("{name}: {e}")),
            })?;
        }
        Ok(())
    }
}

/// `/proc/self/fd/N` for an `O_PATH` descriptor: the calls that take no
/// descriptor (chmod, setxattr, utimensat) reach the inode through it.
fn proc_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).expect("no NUL in a number")
}

/// Removes whatever is at `name` in `parent`, so a new entry can be made.
fn replace(parent: &OwnedFd, name: &OsStr) -> std::result::Result<(), Errno> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => remove_all(parent.as_fd(), name),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}
