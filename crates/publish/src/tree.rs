//! The publish tree's layout (DUCC's), its lock, and atomic file updates.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use cargohold_image_core::Digest;

use crate::error::{Error, Result, io_err};

/// A publish tree rooted at a directory.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    lock_file: PathBuf,
}

fn split(d: &Digest) -> (String, String) {
    let hex = d.hex();
    (hex[..2].to_owned(), hex.to_owned())
}

impl Tree {
    /// The tree at `root` (created when missing), locked with `root/.cargohold/publish.lock`.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join(".cargohold")).map_err(io_err("create", root))?;
        Ok(Tree { root: root.to_path_buf(), lock_file: root.join(".cargohold/publish.lock") })
    }

    /// The tree at `root`, read only: nothing is created.
    pub fn at(root: &Path) -> Self {
        Tree { root: root.to_path_buf(), lock_file: root.join(".cargohold/publish.lock") }
    }

    /// The tree of a backend (nothing is created: the target may be read-only
    /// outside transactions).
    pub fn of(backend: &dyn crate::PublishBackend) -> Self {
        Tree { root: backend.root().to_path_buf(), lock_file: backend.lock_file() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tree's paths, changed through open directories beneath the root.
    pub fn dir(&self) -> Beneath {
        Beneath::new(&self.root)
    }

    /// `.layers/<xx>/<hex>` of a compressed layer digest.
    pub fn layer_dir(&self, layer: &Digest) -> PathBuf {
        let (xx, hex) = split(layer);
        self.root.join(".layers").join(xx).join(hex)
    }

    /// `.flat/<xx>/<hex>` of a config digest.
    pub fn flat_dir(&self, config: &Digest) -> PathBuf {
        let (xx, hex) = split(config);
        self.root.join(".flat").join(xx).join(hex)
    }

    /// `.metadata/<registry>/<repo>:<tag>` (or `@digest`).
    pub fn metadata_dir(&self, name: &str) -> PathBuf {
        self.root.join(".metadata").join(name)
    }

    /// `<registry>/<repo>:<tag>`, the public path.
    pub fn public_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A fresh staging directory on the tree's filesystem.
    pub fn staging(&self, what: &str) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self.root.join(".cargohold/staging").join(format!("{what}.{}.{n}", std::process::id()));
        self.dir().create_dir_all(&p)?;
        Ok(p)
    }

    /// Takes the tree's exclusive lock, waiting up to `timeout` (forever when
    /// `None`); `waiting` is called once if the lock is busy.
    pub fn lock(&self, timeout: Option<Duration>, waiting: &dyn Fn(&Path)) -> Result<TreeLock> {
        let path = self.lock_file.clone();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open the lock", &path))?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(TreeLock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(e) => return Err(Error::Io { action: "lock", path, source: e.into() }),
            }
            if !told {
                waiting(&path);
                told = true;
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(Error::Locked { path, waited_s: start.elapsed().as_secs() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A directory whose paths are resolved beneath it through open directory
/// descriptors: every directory on the way must be a real directory (a
/// symlink or anything else planted there is an error naming it, never
/// followed), missing ones are made with `mkdirat`, and entries are
/// created, replaced and removed with `*at` calls relative to their open
/// parent. Paths are given whole (for messages) and must lie under the
/// root; `..` and `.` components are refused.
#[derive(Debug, Clone)]
pub struct Beneath {
    root: PathBuf,
}

fn errno_err(action: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> Error {
    let path = path.to_path_buf();
    move |e| Error::Io { action, path, source: e.into() }
}

impl Beneath {
    /// The directory `root` (which must exist when used).
    pub fn new(root: &Path) -> Self {
        Beneath { root: root.to_path_buf() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The names of `path` below the root.
    fn names<'a>(&self, path: &'a Path) -> Result<Vec<&'a std::ffi::OsStr>> {
        let rel = path.strip_prefix(&self.root).map_err(|_| Error::Io {
            action: "use",
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("not under {}", self.root.display())),
        })?;
        rel.components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(Error::Io {
                    action: "use",
                    path: path.to_path_buf(),
                    source: std::io::Error::other("a path in the tree must be plain names"),
                }),
            })
            .collect()
    }

    /// Opens the directory `names` below the root, making missing ones
    /// when `create`; `shown` names it in errors.
    fn open_names(&self, names: &[&std::ffi::OsStr], create: bool, shown: &Path) -> Result<OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // The root is where its owner put it (it may be reached through a
        // symlink); below it nothing is followed.
        let root_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut cur = rustix::fs::open(&self.root, root_flags, Mode::empty()).map_err(errno_err("open", &self.root))?;
        for (i, name) in names.iter().enumerate() {
            let at = || self.root.join(names[..=i].iter().collect::<PathBuf>());
            let next = match rustix::fs::openat(&cur, *name, flags, Mode::empty()) {
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, *name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(errno_err("create", &at())(e)),
                    }
                    rustix::fs::openat(&cur, *name, flags, Mode::empty())
                }
                other => other,
            };
            cur = match next {
                Ok(fd) => fd,
                Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => {
                    return Err(Error::Io {
                        action: "use",
                        path: at(),
                        source: std::io::Error::other(format!(
                            "it is a symlink or not a directory (on the way to {}): refused",
                            shown.display()
                        )),
                    });
                }
                Err(e) => return Err(errno_err("open", &at())(e)),
            };
        }
        Ok(cur)
    }

    /// The open parent of `path` (made when missing) and its last name.
    fn parent<'a>(&self, path: &'a Path) -> Result<(OwnedFd, &'a std::ffi::OsStr)> {
        let names = self.names(path)?;
        let Some((last, dirs)) = names.split_last() else {
            return Err(errno_err("change", path)(rustix::io::Errno::INVAL));
        };
        Ok((self.open_names(dirs, true, path)?, last))
    }

    /// Makes the directory `path` and its missing parents.
    pub fn create_dir_all(&self, path: &Path) -> Result<()> {
        let names = self.names(path)?;
        self.open_names(&names, true, path).map(|_| ())
    }

    /// Opens the directory `path` (never through a symlink), if it exists.
    pub fn open_dir(&self, path: &Path) -> Result<Option<OwnedFd>> {
        let names = self.names(path)?;
        match self.open_names(&names, false, path) {
            Ok(fd) => Ok(Some(fd)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `data` to `path` under a temp name in its directory, fsynced
    /// and renamed over it.
    pub fn write_file(&self, path: &Path, data: &[u8]) -> Result<()> {
        use rustix::fs::{Mode, OFlags};
        let (dir, name) = self.parent(path)?;
        let tmp = format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id());
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, tmp.as_str(), flags, Mode::from_raw_mode(0o644))
            .map_err(errno_err("write", path))?;
        let mut f = File::from(fd);
        let written = f.write_all(data).and_then(|()| f.sync_all());
        let renamed = written.and_then(|()| rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(Into::into));
        if renamed.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        }
        renamed.map_err(io_err("write", path))
    }

    /// Makes an empty file `path` if there is none (nothing followed).
    pub fn touch(&self, path: &Path) -> Result<()> {
        use rustix::fs::{Mode, OFlags};
        let (dir, name) = self.parent(path)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o644)).map(|_| ()).map_err(errno_err("create", path))
    }

    /// Points the symlink `link` at `target`, replacing what is there atomically.
    pub fn set_symlink(&self, link: &Path, target: &Path) -> Result<()> {
        let (dir, name) = self.parent(link)?;
        let tmp = format!(".link.tmp.{}", std::process::id());
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        rustix::fs::symlinkat(target, &dir, tmp.as_str()).map_err(errno_err("create the symlink", link))?;
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, name).map_err(errno_err("replace", link))
    }

    /// Moves `from` to `to` (both under the root), over nothing.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (a, an) = self.parent(from)?;
        let (b, bn) = self.parent(to)?;
        rustix::fs::renameat(&a, an, &b, bn).map_err(errno_err("move into place", to))
    }

    /// Whether `path` exists (as anything, a symlink not followed).
    pub fn exists(&self, path: &Path) -> Result<bool> {
        let names = self.names(path)?;
        let Some((last, dirs)) = names.split_last() else { return Ok(true) };
        match self.open_names(dirs, false, path) {
            Ok(dir) => Ok(rustix::fs::statat(&dir, *last, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes `path` (a directory with everything in it), if there.
    pub fn remove(&self, path: &Path) -> Result<()> {
        let names = self.names(path)?;
        let Some((last, dirs)) = names.split_last() else {
            return Err(errno_err("remove", path)(rustix::io::Errno::INVAL));
        };
        let dir = match self.open_names(dirs, false, path) {
            Ok(d) => d,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        cargohold_layerfs::remove_all(std::os::fd::AsFd::as_fd(&dir), last).map_err(errno_err("remove", path))
    }
}

/// Held while the tree is being changed; released on drop.
#[derive(Debug)]
pub struct TreeLock {
    _file: File,
}

/// Writes `data` to `path` through a temp file in the same directory,
/// fsynced and renamed.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err("write", path))
}

/// The relative path from the directory `from_dir` to `to` (both under one root).
pub fn relative(from_dir: &Path, to: &Path) -> PathBuf {
    let a: Vec<Component<'_>> = from_dir.components().collect();
    let b: Vec<Component<'_>> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c.as_os_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(
            relative(Path::new("/t/reg:5000/library"), Path::new("/t/.flat/ab/abcd")),
            PathBuf::from("../../.flat/ab/abcd")
        );
        assert_eq!(relative(Path::new("/t/reg"), Path::new("/t/.flat/ab/x")), PathBuf::from("../.flat/ab/x"));
    }
}
