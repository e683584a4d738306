//! `cp`: files between a container and the host, with Docker's rules for
//! the destination (into an existing directory, as a new name, `SRC/.`
//! for a directory's contents).
//!
//! A container's tree is hostile: its side of a path is resolved inside
//! its root (`openat2(RESOLVE_IN_ROOT)`, as if the root were `/`), and the
//! copy itself walks both trees by descriptors, one name at a time, never
//! following a symlink (a symlink is copied as a symlink), so nothing the
//! container renames or links meanwhile reaches outside either tree.
//! Device nodes and sockets are refused both ways (a container must not
//! plant a device node on the host). Copies into a container are owned by
//! its root, copies out by the caller, as with `docker cp`.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use cargohold_layerfs::Root;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{Container, ContainerError, State, Status};
use crate::RootFs;

/// What a copy made.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Regular files written.
    pub files: u64,
    /// Directories made or filled.
    pub dirs: u64,
    /// Symlinks made.
    pub symlinks: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
}

/// One side of a copy: opens a path of its tree.
trait Side {
    fn open(&self, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno>;
    /// How the path is named in messages.
    fn describe(&self, path: &Path) -> String;
}

struct Host;

impl Side for Host {
    fn open(&self, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
        rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())
    }
    fn describe(&self, path: &Path) -> String {
        path.display().to_string()
    }
}

struct InContainer<'a> {
    root: &'a Root,
    name: &'a str,
}

impl Side for InContainer<'_> {
    fn open(&self, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        self.root.open_in(path, flags)
    }
    fn describe(&self, path: &Path) -> String {
        format!("{}:/{}", self.name, path.display())
    }
}

/// A container path made relative to its root (`.` parts dropped, `..`
/// kept for the kernel to resolve inside the root).
fn in_root(path: &str) -> PathBuf {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

/// A host path as given (relative to the working directory), cleaned.
fn on_host(path: &str) -> PathBuf {
    let p = Path::new(path);
    let mut out: PathBuf = p.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    if out.as_os_str().is_empty() {
        out = PathBuf::from(".");
    }
    out
}

fn err(what: String, e: impl Into<std::io::Error>) -> ContainerError {
    ContainerError::Copy { path: what, source: e.into() }
}

fn refused(what: String, why: &str) -> ContainerError {
    ContainerError::Copy { path: what, source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_owned()) }
}

/// A directory met while walking: never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW);
/// A directory named by the user: symlinks on the way are followed (inside
/// the container's root on its side).
const NAMED_DIR: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY);

/// Copies `src_path` of `src` to `dst_path` of `dst` with Docker's rules.
fn copy(
    src: &dyn Side,
    src_path: &Path,
    contents: bool,
    follow: bool,
    dst: &dyn Side,
    dst_path: &Path,
    dst_wants_dir: bool,
) -> Result<CopyReport, ContainerError> {
    let mut report = CopyReport::default();
    // The source: its parent and name (a path ending in `/.`, or the
    // root, means the directory's contents; one ending in `/` follows a
    // final symlink to a directory).
    let base_name: OsString = src_path.file_name().map(OsStr::to_owned).unwrap_or_else(|| ".".into());
    let (src_parent, src_name): (OwnedFd, OsString) = match src_path.file_name() {
        Some(name) if !contents && !follow => {
            let parent = src_path.parent().unwrap_or(Path::new(""));
            let fd = src.open(parent, NAMED_DIR).map_err(|e| err(src.describe(src_path), e))?;
            (fd, name.to_owned())
        }
        _ => (src.open(src_path, NAMED_DIR).map_err(|e| err(src.describe(src_path), e))?, OsString::from(".")),
    };
    let src_stat = rustix::fs::statat(&src_parent, src_name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| err(src.describe(src_path), e))?;
    let src_is_dir = FileType::from_raw_mode(src_stat.st_mode) == FileType::Directory;
    if contents && !src_is_dir {
        return Err(refused(src.describe(src_path), "not a directory (SRC/. copies a directory's contents)"));
    }
    // The destination: an existing directory receives the source under its
    // own name (or its contents); otherwise the source takes its name.
    let existing = dst.open(dst_path, OFlags::PATH);
    let dst_is_dir = existing
        .as_ref()
        .is_ok_and(|fd| rustix::fs::fstat(fd).is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory));
    match (&existing, dst_is_dir) {
        (Ok(_), true) => {
            let dir = dst.open(dst_path, NAMED_DIR).map_err(|e| err(dst.describe(dst_path), e))?;
            if contents {
                copy_children(&src_parent, &dir, false, &mut report)
            } else {
                copy_entry(src_parent.as_fd(), &src_name, dir.as_fd(), &base_name, false, &mut report)
            }
            .map_err(|(name, e)| err(format!("{} ({})", src.describe(src_path), name.display()), e))?;
        }
        (Ok(_), false) if src_is_dir => {
            return Err(refused(dst.describe(dst_path), "cannot copy a directory onto a file"));
        }
        (Err(e), _) if *e != Errno::NOENT => return Err(err(dst.describe(dst_path), *e)),
        _ => {
            if existing.is_err() && dst_wants_dir && !src_is_dir {
                return Err(refused(dst.describe(dst_path), "the destination directory does not exist"));
            }
            let name = dst_path.file_name().ok_or_else(|| refused(dst.describe(dst_path), "no file name"))?;
            let parent = dst_path.parent().unwrap_or(Path::new(""));
            let parent_fd = dst
                .open(parent, NAMED_DIR)
                .map_err(|e| err(format!("{} (its parent directory)", dst.describe(dst_path)), e))?;
            copy_entry(src_parent.as_fd(), &src_name, parent_fd.as_fd(), name, false, &mut report)
                .map_err(|(n, e)| err(format!("{} ({})", src.describe(src_path), n.display()), e))?;
        }
    }
    Ok(report)
}

type Failure = (PathBuf, std::io::Error);

fn at(name: &OsStr) -> impl Fn(Errno) -> Failure + '_ {
    move |e| (PathBuf::from(name), e.into())
}

pub(crate) fn copy_children(
    src: &OwnedFd,
    dst: &OwnedFd,
    owners: bool,
    report: &mut CopyReport,
) -> Result<(), Failure> {
    let dir = rustix::fs::openat(src, ".", DIR_FLAGS | OFlags::CLOEXEC, Mode::empty()).map_err(at(OsStr::new(".")))?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir).map_err(at(OsStr::new(".")))? {
        let entry = entry.map_err(at(OsStr::new(".")))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    for name in names {
        copy_entry(src.as_fd(), &name, dst.as_fd(), &name, owners, report)
            .map_err(|(p, e)| (Path::new(&name).join(p), e))?;
    }
    Ok(())
}

/// Copies the entry `src_name` of `src_dir` as `dst_name` of `dst_dir`,
/// recursively, by descriptors only. An existing non-directory at the
/// destination is replaced; an existing directory is merged into.
fn copy_entry(
    src_dir: BorrowedFd<'_>,
    src_name: &OsStr,
    dst_dir: BorrowedFd<'_>,
    dst_name: &OsStr,
    owners: bool,
    report: &mut CopyReport,
) -> Result<(), Failure> {
    let st = rustix::fs::statat(src_dir, src_name, AtFlags::SYMLINK_NOFOLLOW).map_err(at(src_name))?;
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    let kind = FileType::from_raw_mode(st.st_mode);
    let existing = rustix::fs::statat(dst_dir, dst_name, AtFlags::SYMLINK_NOFOLLOW).ok();
    let existing_dir = existing.as_ref().is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
    if kind != FileType::Directory && existing.is_some() {
        if existing_dir {
            let e = std::io::Error::new(std::io::ErrorKind::IsADirectory, "cannot replace a directory with a file");
            return Err((PathBuf::from(dst_name), e));
        }
        rustix::fs::unlinkat(dst_dir, dst_name, AtFlags::empty()).map_err(at(dst_name))?;
    }
    let times = |fd: &OwnedFd| {
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: st.st_atime as _, tv_nsec: st.st_atime_nsec as _ },
            last_modification: rustix::fs::Timespec { tv_sec: st.st_mtime as _, tv_nsec: st.st_mtime_nsec as _ },
        };
        let _ = rustix::fs::futimens(fd, &t);
    };
    match kind {
        FileType::Directory => {
            if existing.is_some() && !existing_dir {
                rustix::fs::unlinkat(dst_dir, dst_name, AtFlags::empty()).map_err(at(dst_name))?;
            }
            if !existing_dir {
                rustix::fs::mkdirat(dst_dir, dst_name, Mode::from_raw_mode(0o700)).map_err(at(dst_name))?;
            }
            let from = rustix::fs::openat(src_dir, src_name, DIR_FLAGS | OFlags::CLOEXEC, Mode::empty())
                .map_err(at(src_name))?;
            let to = rustix::fs::openat(dst_dir, dst_name, DIR_FLAGS | OFlags::CLOEXEC, Mode::empty())
                .map_err(at(dst_name))?;
            copy_children(&from, &to, owners, report).map_err(|(p, e)| (Path::new(src_name).join(p), e))?;
            rustix::fs::fchmod(&to, mode).map_err(at(dst_name))?;
            times(&to);
            report.dirs += 1;
        }
        FileType::RegularFile => {
            let from = rustix::fs::openat(
                src_dir,
                src_name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(at(src_name))?;
            let to = rustix::fs::openat(
                dst_dir,
                dst_name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(at(dst_name))?;
            let (mut r, mut w) = (std::fs::File::from(from), std::fs::File::from(to));
            report.bytes += std::io::copy(&mut r, &mut w).map_err(|e| (PathBuf::from(src_name), e))?;
            let to = OwnedFd::from(w);
            rustix::fs::fchmod(&to, mode).map_err(at(dst_name))?;
            times(&to);
            report.files += 1;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(src_dir, src_name, Vec::new()).map_err(at(src_name))?;
            rustix::fs::symlinkat(target.as_c_str(), dst_dir, dst_name).map_err(at(dst_name))?;
            report.symlinks += 1;
        }
        FileType::Fifo => {
            rustix::fs::mknodat(dst_dir, dst_name, FileType::Fifo, mode, 0).map_err(at(dst_name))?;
        }
        _ => {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "a device node or socket: not copied");
            return Err((PathBuf::from(src_name), e));
        }
    }
    if owners {
        let (uid, gid) = (rustix::fs::Uid::from_raw(st.st_uid), rustix::fs::Gid::from_raw(st.st_gid));
        rustix::fs::chownat(dst_dir, dst_name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(at(dst_name))?;
        if kind != FileType::Symlink {
            // chown clears set-id bits: the mode once more.
            rustix::fs::chmodat(dst_dir, dst_name, mode, AtFlags::empty()).map_err(at(dst_name))?;
        }
    }
    Ok(())
}

impl Container {
    /// Runs `f` with the container's root: the running container's own
    /// (`/proc/PID/root`, its volumes included), else its filesystem (image
    /// layers and changes) mounted writable in a private mount namespace.
    fn with_root<T: Send>(
        &self,
        f: impl FnOnce(&Root) -> Result<T, ContainerError> + Send,
    ) -> Result<T, ContainerError> {
        if let State { status: Status::Running, pid: Some(pid), .. } = self.state()? {
            let path = PathBuf::from(format!("/proc/{pid}/root"));
            let root = Root::open(&path).map_err(|e| err(format!("the root of container {}", self.config.name), e))?;
            return f(&root);
        }
        let RootFs::Overlay { lower, upper, work } = &self.config.spec.root else {
            return Err(refused(self.config.name.clone(), "not an overlay container"));
        };
        let view =
            tempfile::Builder::new().prefix("cargohold-cp-").tempdir().map_err(|e| err("a mount point".into(), e))?;
        let target = view.path().to_path_buf();
        let name = self.config.name.clone();
        crate::mounts::in_private_mounts(move || {
            crate::mounts::mount_overlay(lower, Some((upper, work)), &target)
                .map_err(|m| err(format!("the filesystem of container {name}"), std::io::Error::other(m)))?;
            let root = Root::open(&target).map_err(|e| err(format!("the filesystem of container {name}"), e))?;
            f(&root)
        })
        .map_err(|m| err(format!("the filesystem of container {}", self.config.name), std::io::Error::other(m)))?
    }

    /// `cp CONTAINER:SRC DEST`.
    pub fn copy_out(&self, src: &str, dest: &str) -> Result<CopyReport, ContainerError> {
        let contents = src.ends_with("/.") || in_root(src).as_os_str().is_empty();
        let (src_rel, dst) = (in_root(src), on_host(dest));
        let wants_dir = dest.ends_with('/');
        self.with_root(|root| {
            let side = InContainer { root, name: &self.config.name };
            copy(&side, &src_rel, contents, src.ends_with('/'), &Host, &dst, wants_dir)
        })
    }

    /// `cp SRC CONTAINER:DEST`.
    pub fn copy_in(&self, src: &str, dest: &str) -> Result<CopyReport, ContainerError> {
        let contents = src.ends_with("/.");
        let (src_host, dst_rel) = (on_host(src), in_root(dest));
        let wants_dir = dest.ends_with('/');
        self.with_root(|root| {
            let side = InContainer { root, name: &self.config.name };
            copy(&Host, &src_host, contents, src.ends_with('/'), &side, &dst_rel, wants_dir)
        })
    }
}

/// Writes the entry `name` of `dir` (recursively) to `tar` as `path`,
/// walking by descriptors and never following a symlink.
fn tar_entry<W: std::io::Write>(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    tar: &mut tar::Builder<W>,
    report: &mut CopyReport,
) -> Result<(), Failure> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(at(name))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    let mut header = tar::Header::new_gnu();
    header.set_mode(st.st_mode & 0o7777);
    header.set_uid(u64::from(st.st_uid));
    header.set_gid(u64::from(st.st_gid));
    header.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    let io = |e: std::io::Error| (path.to_path_buf(), e);
    match kind {
        FileType::Directory => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, path, std::io::empty()).map_err(io)?;
            let sub = rustix::fs::openat(dir, name, DIR_FLAGS | OFlags::CLOEXEC, Mode::empty()).map_err(at(name))?;
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&sub).map_err(at(name))? {
                let entry = entry.map_err(at(name))?;
                let n = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
                if n != "." && n != ".." {
                    names.push(n);
                }
            }
            names.sort();
            for n in names {
                tar_entry(sub.as_fd(), &n, &path.join(&n), tar, report)?;
            }
            report.dirs += 1;
        }
        FileType::RegularFile => {
            let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(at(name))?;
            let size = rustix::fs::fstat(&fd).map_err(at(name))?.st_size as u64;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            // Exactly `size` bytes, even if the file grows meanwhile.
            let body = std::io::Read::take(std::fs::File::from(fd), size);
            tar.append_data(&mut header, path, body).map_err(io)?;
            report.files += 1;
            report.bytes += size;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(at(name))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            let target = Path::new(OsStr::from_bytes(target.as_bytes()));
            tar.append_link(&mut header, path, target).map_err(io)?;
            report.symlinks += 1;
        }
        FileType::Fifo => {
            header.set_entry_type(tar::EntryType::Fifo);
            header.set_size(0);
            tar.append_data(&mut header, path, std::io::empty()).map_err(io)?;
        }
        _ => {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "a device node or socket: not copied");
            return Err((PathBuf::from(name), e));
        }
    }
    Ok(())
}

impl Container {
    /// `cp CONTAINER:SRC -`: SRC as a tar stream on `out` (named by its
    /// last component; `SRC/.` its contents), as `docker cp` writes it.
    pub fn copy_out_tar(&self, src: &str, out: &mut (dyn std::io::Write + Send)) -> Result<CopyReport, ContainerError> {
        let contents = src.ends_with("/.") || in_root(src).as_os_str().is_empty();
        let follow = src.ends_with('/');
        let rel = in_root(src);
        self.with_root(|root| {
            let side = InContainer { root, name: &self.config.name };
            let fail = |e| err(side.describe(&rel), e);
            let mut report = CopyReport::default();
            let mut tar = tar::Builder::new(out);
            tar.mode(tar::HeaderMode::Complete);
            let walked = match rel.file_name() {
                Some(name) if !contents && !follow => {
                    let parent = root.open_in(rel.parent().unwrap_or(Path::new("")), NAMED_DIR).map_err(fail)?;
                    tar_entry(parent.as_fd(), name, Path::new(name), &mut tar, &mut report)
                }
                _ => {
                    let dir = root.open_in(&rel, NAMED_DIR).map_err(fail)?;
                    let base = rel.file_name().map(Path::new).unwrap_or(Path::new("."));
                    let mut names = Vec::new();
                    for entry in rustix::fs::Dir::read_from(&dir).map_err(fail)? {
                        let entry = entry.map_err(fail)?;
                        let n = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
                        if n != "." && n != ".." {
                            names.push(n);
                        }
                    }
                    names.sort();
                    let prefix = if contents { Path::new("") } else { base };
                    names.iter().try_for_each(|n| tar_entry(dir.as_fd(), n, &prefix.join(n), &mut tar, &mut report))
                }
            };
            walked.map_err(|(p, e)| err(format!("{} ({})", side.describe(&rel), p.display()), e))?;
            tar.finish().map_err(|e| err(side.describe(&rel), e))?;
            Ok(report)
        })
    }

    /// `cp - CONTAINER:DEST`: the tar stream `input` extracted into the
    /// directory DEST, every name resolved inside it (as a layer is
    /// applied, `..` and symlinks never leading out; `.wh.` names are plain
    /// files here).
    pub fn copy_in_tar(&self, input: &mut (dyn std::io::Read + Send), dest: &str) -> Result<u64, ContainerError> {
        let rel = in_root(dest);
        self.with_root(|root| {
            let side = InContainer { root, name: &self.config.name };
            let dir = root.open_in(&rel, NAMED_DIR).map_err(|e| err(side.describe(&rel), e))?;
            let at = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir)));
            let target = Root::open(&at).map_err(|e| err(side.describe(&rel), e))?;
            let opts = cargohold_layerfs::ApplyOptions {
                keep_whiteouts: true,
                ..cargohold_layerfs::ApplyOptions::for_current_user()
            };
            let report = cargohold_layerfs::apply_layer(&target, input, "standard input", &opts)
                .map_err(|e| err(side.describe(&rel), std::io::Error::other(e)))?;
            Ok(report.entries)
        })
    }
}
