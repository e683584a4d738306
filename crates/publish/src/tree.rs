//! The publish tree's layout (DUCC's), its lock, and atomic file updates.

use std::fs::File;
use std::io::Write as _;
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
        std::fs::create_dir_all(&p).map_err(io_err("create the staging directory", &p))?;
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

/// Points the symlink `link` at `target` (relative), replacing what is there atomically.
pub fn replace_symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = link.parent().expect("a link in a directory");
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let tmp = dir.join(format!(".link.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err("create the symlink", &tmp))?;
    std::fs::rename(&tmp, link).map_err(io_err("replace", link))
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
