//! A directory that every path is resolved inside of.
//!
//! Layer tars are hostile: names like `../../etc/passwd`, or `link/etc/x` after
//! `link -> /`, must never reach outside the root. Every lookup goes through
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, which makes the kernel
//! treat the root as `/` for `..` and absolute symlinks (CVE-2018-15664,
//! CVE-2019-14271 are what string-joined paths lead to). On kernels without
//! openat2 (before 5.6) a component-by-component `O_PATH | O_NOFOLLOW` walk with
//! the same semantics is used. The final component is never followed: entries
//! are created, replaced and changed with `*at` calls relative to the parent.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Symlinks followed in one lookup before giving up (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An open root directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens `path` (which must be a directory) as a root.
    pub fn open(path: &Path) -> Result<Self, Errno> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    /// The directory `rel` inside this root (resolved inside it, created
    /// when missing) as a root of its own.
    pub fn subdir(&self, rel: &Path) -> Result<Self, Errno> {
        self.mkdir_all(rel)?;
        let fd = self.open_in(rel, OFlags::PATH | OFlags::DIRECTORY)?;
        Ok(Root { fd, path: self.path.join(rel) })
    }

    /// The path the root was opened at (for messages only, never for access).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `rel` (a cleaned, relative path; empty means the root) inside the
    /// root, following symlinks as if the root were `/`.
    pub fn open_in(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        if rel.as_os_str().is_empty() {
            return rustix::fs::openat(self.fd(), ".", flags | OFlags::CLOEXEC, Mode::empty());
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            match rustix::fs::openat2(
                self.fd(),
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // EAGAIN: a concurrent rename raced the lookup; the walk is
                // immune to that.
                Err(Errno::AGAIN) => {}
                other => return other,
            }
        }
        self.walk(rel, flags)
    }

    /// The openat2-free lookup: one component at a time, never following a
    /// symlink by the kernel; symlinks are read and resolved against the root.
    fn walk(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        Ok(self.resolve(rel, Some(flags))?.expect("a lookup returns the final component"))
    }

    /// Resolves `rel` inside the root, component by component. With
    /// `open_last`, the final component is opened with those flags and
    /// returned; without it, missing directories are created along the way
    /// (a dangling symlink gets its re-rooted target created).
    fn resolve(&self, rel: &Path, open_last: Option<OFlags>) -> Result<Option<OwnedFd>, Errno> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut todo: Vec<Vec<u8>> = components(rel.as_os_str().as_bytes()).into_iter().rev().collect();
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            if comp == b".." {
                stack.pop();
                continue;
            }
            let name = OsStr::from_bytes(&comp);
            let cur = stack.last().map_or(self.fd(), |f| f.as_fd());
            let path_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match rustix::fs::openat(cur, name, path_flags, Mode::empty()) {
                Err(Errno::NOENT) if open_last.is_none() => {
                    match rustix::fs::mkdirat(cur, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e),
                    }
                    rustix::fs::openat(cur, name, path_flags, Mode::empty())?
                }
                other => other?,
            };
            match rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
                rustix::fs::FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = rustix::fs::readlinkat(cur, name, Vec::new())?;
                    if target.as_bytes().starts_with(b"/") {
                        stack.clear();
                    }
                    todo.extend(components(target.as_bytes()).into_iter().rev());
                }
                _ if todo.is_empty() && open_last.is_some() => {
                    let flags = open_last.expect("checked") | OFlags::CLOEXEC;
                    return rustix::fs::openat(cur, name, flags, Mode::empty()).map(Some);
                }
                rustix::fs::FileType::Directory => stack.push(fd),
                _ => return Err(Errno::NOTDIR),
            }
        }
        match open_last {
            Some(flags) => {
                let cur = stack.last().map_or(self.fd(), |f| f.as_fd());
                rustix::fs::openat(cur, ".", flags | OFlags::CLOEXEC, Mode::empty()).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Opens the parent directory of `rel` (creating missing directories with
    /// mode 0755) and returns it with the final component's name.
    pub fn parent_of<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr), Errno> {
        let name = rel.file_name().ok_or(Errno::INVAL)?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        match self.open_in(parent, flags) {
            Ok(fd) => Ok((fd, name)),
            Err(Errno::NOENT) => {
                self.mkdir_all(parent)?;
                Ok((self.open_in(parent, flags)?, name))
            }
            Err(e) => Err(e),
        }
    }

    /// Creates every missing directory of `rel`, inside the root. Symlinks on
    /// the way are resolved against the root, and a dangling one gets its
    /// (re-rooted) target created, as `securejoin` + `MkdirAll` do for umoci.
    pub fn mkdir_all(&self, rel: &Path) -> Result<(), Errno> {
        self.resolve(rel, None).map(|_| ())
    }
}

/// Splits path bytes into components, dropping empty and `.` ones.
fn components(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").map(<[u8]>::to_vec).collect()
}

/// Removes `name` in `dir`, recursively if it is a directory, never following
/// symlinks. Missing is not an error.
pub fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let sub = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    clear_dir(&sub, |_| false)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes every child of the open directory `dir` for which `keep` is false.
pub fn clear_dir(dir: &OwnedFd, mut keep: impl FnMut(&OsStr) -> bool) -> Result<(), Errno> {
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        names.push(n.to_vec());
    }
    for n in names {
        let n = OsStr::from_bytes(&n);
        if !keep(n) {
            remove_all(dir.as_fd(), n)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("root")).unwrap();
        let root = Root::open(&t.path().join("root")).unwrap();
        (t, root)
    }

    #[test]
    fn both_resolvers_confine_symlinks() {
        let (t, root) = setup();
        let r = t.path().join("root");
        std::fs::create_dir(r.join("etc")).unwrap();
        std::os::unix::fs::symlink("/", r.join("up")).unwrap();
        std::os::unix::fs::symlink("../../../..", r.join("etc/dots")).unwrap();
        std::fs::write(t.path().join("outside"), "host").unwrap();
        for (walk, label) in [(false, "openat2"), (true, "walk")] {
            let open = |p: &str| {
                if walk { root.walk(Path::new(p), OFlags::PATH) } else { root.open_in(Path::new(p), OFlags::PATH) }
            };
            let st = |fd: OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
            let etc_ino = std::fs::metadata(r.join("etc")).unwrap().ino();
            let root_ino = std::fs::metadata(&r).unwrap().ino();
            assert_eq!(st(open("up/etc").unwrap()), etc_ino, "{label}");
            assert_eq!(st(open("etc/dots").unwrap()), root_ino, "{label}");
            assert_eq!(st(open("../../..").unwrap()), root_ino, "{label}");
            assert_eq!(open("up/outside").unwrap_err(), Errno::NOENT, "{label}: the host file stays invisible");
        }
    }

    use std::os::unix::fs::MetadataExt;

    #[test]
    fn mkdir_all_and_remove_all_stay_inside() {
        let (t, root) = setup();
        let r = t.path().join("root");
        std::os::unix::fs::symlink("/", r.join("up")).unwrap();
        root.mkdir_all(Path::new("up/a/b")).unwrap();
        assert!(r.join("a/b").is_dir(), "created under the root, through the confined link");
        std::os::unix::fs::symlink("/nowhere/deep", r.join("dangling")).unwrap();
        root.mkdir_all(Path::new("dangling/x")).unwrap();
        assert!(r.join("nowhere/deep/x").is_dir() && !Path::new("/nowhere").exists());
        std::fs::write(r.join("a/b/f"), "x").unwrap();
        let fd = root.open_in(Path::new(""), OFlags::PATH | OFlags::DIRECTORY).unwrap();
        remove_all(fd.as_fd(), OsStr::new("a")).unwrap();
        assert!(!r.join("a").exists());
        remove_all(fd.as_fd(), OsStr::new("up")).unwrap();
        assert!(!r.join("up").exists() && Path::new("/").exists(), "the link goes, not its target");
    }
}
