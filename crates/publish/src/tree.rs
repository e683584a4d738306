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
    shadow: Option<std::sync::Arc<Shadow>>,
}

/// Where the writes to a tree go when the tree itself cannot be written (a
/// CernVM-FS repository published without a mount, by `cvmfs_server
/// ingest` alone): a local directory laid out like the tree, holding what
/// changed, plus the list of tree paths removed. Reads see the tree (its
/// read-only view, if any) under what the shadow holds; the backend sends
/// the shadow in when it commits.
#[derive(Debug)]
pub struct Shadow {
    dir: PathBuf,
    removed: std::sync::Mutex<Vec<PathBuf>>,
}

impl Shadow {
    /// A shadow in the directory `dir` (made, empty, by [`Shadow::reset`]).
    pub fn new(dir: &Path) -> Self {
        Shadow { dir: dir.to_path_buf(), removed: std::sync::Mutex::new(Vec::new()) }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Empties it: a fresh directory, nothing removed.
    pub fn reset(&self) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.removed.lock().expect("not poisoned").clear();
        std::fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))
    }

    /// Drops it: its directory and the removals recorded.
    pub fn discard(&self) {
        self.removed.lock().expect("not poisoned").clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The tree paths removed since the last reset (none below another),
    /// and forgets them.
    pub fn take_removed(&self) -> Vec<PathBuf> {
        let mut v = std::mem::take(&mut *self.removed.lock().expect("not poisoned"));
        v.sort();
        v.dedup();
        let mut out: Vec<PathBuf> = Vec::new();
        for p in v {
            if !out.iter().any(|o| p.starts_with(o)) {
                out.push(p);
            }
        }
        out
    }

    fn record_removed(&self, path: &Path) {
        self.removed.lock().expect("not poisoned").push(path.to_path_buf());
    }
}

fn split(d: &Digest) -> (String, String) {
    let hex = d.hex();
    (hex[..2].to_owned(), hex.to_owned())
}

impl Tree {
    /// The tree at `root` (created when missing), locked with `root/.cargohold/publish.lock`.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join(".cargohold")).map_err(io_err("create", root))?;
        Ok(Tree { root: root.to_path_buf(), lock_file: root.join(".cargohold/publish.lock"), shadow: None })
    }

    /// The tree at `root`, read only: nothing is created.
    pub fn at(root: &Path) -> Self {
        Tree { root: root.to_path_buf(), lock_file: root.join(".cargohold/publish.lock"), shadow: None }
    }

    /// The tree of a backend (nothing is created: the target may be read-only
    /// outside transactions).
    pub fn of(backend: &dyn crate::PublishBackend) -> Self {
        Tree { root: backend.root().to_path_buf(), lock_file: backend.lock_file(), shadow: backend.shadow() }
    }

    /// Whether writes go to a shadow (see [`Shadow`]) rather than the tree.
    pub fn shadowed(&self) -> bool {
        self.shadow.is_some()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tree's paths, changed through open directories beneath the root.
    pub fn dir(&self) -> Beneath {
        Beneath { root: self.root.clone(), shadow: self.shadow.clone() }
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

    /// A fresh staging directory on the tree's filesystem (the shadow's, when
    /// writes go to one).
    pub fn staging(&self, what: &str) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = self.shadow.as_ref().map_or(self.root.as_path(), |s| s.dir());
        let p = base.join(".cargohold/staging").join(format!("{what}.{}.{n}", std::process::id()));
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
///
/// With a [`Shadow`] (see [`Tree::dir`]) the paths are the tree's but what
/// changes is the shadow: writes land there, removals of what the tree has
/// are recorded, reads see the shadow first.
#[derive(Debug, Clone)]
pub struct Beneath {
    root: PathBuf,
    shadow: Option<std::sync::Arc<Shadow>>,
}

fn errno_err(action: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> Error {
    let path = path.to_path_buf();
    move |e| Error::Io { action, path, source: e.into() }
}

impl Beneath {
    /// The directory `root` (which must exist when used).
    pub fn new(root: &Path) -> Self {
        Beneath { root: root.to_path_buf(), shadow: None }
    }

    /// The directory the names are opened in: the shadow's, or the root.
    fn base(&self) -> &Path {
        self.shadow.as_ref().map_or(self.root.as_path(), |s| s.dir())
    }

    /// The same paths without the shadow: the tree as it is.
    fn unshadowed(&self) -> Option<Beneath> {
        self.shadow.as_ref().map(|_| Beneath::new(&self.root))
    }

    /// `path` as a tree path (a shadow path is mapped back).
    fn tree_path(&self, path: &Path) -> PathBuf {
        match &self.shadow {
            Some(s) => path.strip_prefix(s.dir()).map_or_else(|_| path.to_path_buf(), |rel| self.root.join(rel)),
            None => path.to_path_buf(),
        }
    }

    /// Whether `path` is in the shadow itself.
    fn in_shadow(&self, path: &Path) -> Result<bool> {
        Ok(self.shadow.is_some() && self.exists_here(path)?)
    }

    /// The contents of the file `path` (the shadow's, else the tree's; `None`
    /// when there is none). Nothing on the way is followed.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        use rustix::fs::{Mode, OFlags};
        if let Some(real) = self.unshadowed()
            && !self.in_shadow(path)?
        {
            return real.read(&self.tree_path(path));
        }
        let names = self.names(path)?;
        let Some((last, dirs)) = names.split_last() else { return Ok(None) };
        let dir = match self.open_names(dirs, false, path) {
            Ok(d) => d,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::openat(&dir, *last, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut File::from(fd), &mut v).map_err(io_err("read", path))?;
                Ok(Some(v))
            }
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(errno_err("read", path)(e)),
        }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The names of `path` below the root.
    fn names<'a>(&self, path: &'a Path) -> Result<Vec<&'a std::ffi::OsStr>> {
        let in_shadow = self.shadow.as_ref().and_then(|s| path.strip_prefix(s.dir()).ok());
        let rel = in_shadow.map_or_else(|| path.strip_prefix(&self.root), Ok).map_err(|_| Error::Io {
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
        let base = self.base();
        let mut cur = rustix::fs::open(base, root_flags, Mode::empty()).map_err(errno_err("open", base))?;
        for (i, name) in names.iter().enumerate() {
            let at = || base.join(names[..=i].iter().collect::<PathBuf>());
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

    /// Moves `from` to `to` (both under the root), over nothing. With a
    /// shadow, moving what only the tree has out of the way (to staging,
    /// to be deleted) records its removal.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        if let (Some(s), Some(real)) = (&self.shadow, self.unshadowed())
            && !self.in_shadow(from)?
        {
            let from = self.tree_path(from);
            if real.exists(&from)? && self.names(to)?.first().is_some_and(|n| *n == ".cargohold") {
                s.record_removed(&from);
                return Ok(());
            }
            return Err(Error::Io {
                action: "move",
                path: from,
                source: std::io::Error::other("only the tree's own copy can be moved (it is not written here)"),
            });
        }
        let (a, an) = self.parent(from)?;
        let (b, bn) = self.parent(to)?;
        rustix::fs::renameat(&a, an, &b, bn).map_err(errno_err("move into place", to))
    }

    /// Whether `path` exists (as anything, a symlink not followed): in the
    /// shadow, or in the tree and not removed.
    pub fn exists(&self, path: &Path) -> Result<bool> {
        if self.exists_here(path)? {
            return Ok(true);
        }
        match (&self.shadow, self.unshadowed()) {
            (Some(s), Some(real)) => {
                let p = self.tree_path(path);
                let removed = s.removed.lock().expect("not poisoned").iter().any(|r| p.starts_with(r));
                Ok(!removed && real.exists(&p)?)
            }
            _ => Ok(false),
        }
    }

    fn exists_here(&self, path: &Path) -> Result<bool> {
        let names = self.names(path)?;
        let Some((last, dirs)) = names.split_last() else { return Ok(true) };
        match self.open_names(dirs, false, path) {
            Ok(dir) => Ok(rustix::fs::statat(&dir, *last, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes `path` (a directory with everything in it), if there (with
    /// a shadow: from the shadow, and the tree's copy recorded as removed).
    pub fn remove(&self, path: &Path) -> Result<()> {
        if let (Some(s), Some(real)) = (&self.shadow, self.unshadowed()) {
            let p = self.tree_path(path);
            if real.exists(&p)? {
                s.record_removed(&p);
            }
        }
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
