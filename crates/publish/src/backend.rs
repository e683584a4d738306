//! Where the tree lives and how changes become visible: a plain directory
//! (staged next to the target, renamed into place), or a CernVM-FS
//! repository (each image one `cvmfs_server transaction` ... `publish`,
//! `abort` on failure, a nested catalog per layer and flat, as DUCC makes).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result, io_err};

/// A publish target.
pub trait PublishBackend: Send + Sync + std::fmt::Debug {
    /// The directory holding the tree.
    fn root(&self) -> &Path;
    /// The lock file that serialises publishers of this target.
    fn lock_file(&self) -> PathBuf;
    /// Whether each image is one transaction (the lock is then held from its
    /// first write to [`PublishBackend::commit`]).
    fn transactional(&self) -> bool {
        false
    }
    /// Opens a transaction before an image's first write.
    fn begin(&self) -> Result<()> {
        Ok(())
    }
    /// Makes the image's changes visible.
    fn commit(&self) -> Result<()> {
        Ok(())
    }
    /// Drops the image's changes after a failure.
    fn abort(&self) {}
    /// Called on each new layer or flat directory before it moves into place.
    fn new_subtree(&self, dir: &Path) -> Result<()> {
        let _ = dir;
        Ok(())
    }
}

/// A plain directory (the default): readers see each layer and flat appear
/// whole, by rename.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// The tree at `root` (created when missing).
    pub fn new(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join(".cargohold")).map_err(io_err("create", root))?;
        Ok(LocalDir { root: root.to_path_buf() })
    }
}

impl PublishBackend for LocalDir {
    fn root(&self) -> &Path {
        &self.root
    }

    fn lock_file(&self) -> PathBuf {
        self.root.join(".cargohold/publish.lock")
    }
}

/// A CernVM-FS repository on its stratum-0, driven with `cvmfs_server`.
#[derive(Debug, Clone)]
pub struct CvmfsServer {
    repo: String,
    root: PathBuf,
    program: PathBuf,
    lock: PathBuf,
}

impl CvmfsServer {
    /// The repository `repo` (DUCC's `cvmfs_repo`: a name, or a name and a
    /// subdirectory to publish into, `unpacked.example.org/some/dir`),
    /// mounted at `/cvmfs/<repo>`, with the lock in its spool directory
    /// `/var/spool/cvmfs/<name>`. A name or subdirectory that could leave
    /// `/cvmfs` is refused.
    pub fn new(repo: &str) -> Result<Self> {
        let repo = repo.trim_matches('/');
        let (name, sub) = repo.split_once('/').unwrap_or((repo, ""));
        let bad = |why: &str| Error::Wishlist { path: "cvmfs_repo".into(), reason: format!("{repo:?}: {why}") };
        if name.is_empty()
            || name.starts_with('.')
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(bad("not a repository name"));
        }
        if sub.split('/').any(|c| c.is_empty() || c == "." || c == "..") && !sub.is_empty() {
            return Err(bad("the subdirectory must be plain names separated by /"));
        }
        let mut root = Path::new("/cvmfs").join(name);
        if !sub.is_empty() {
            root = root.join(sub);
        }
        Ok(Self::with_paths(
            name,
            &root,
            Path::new("cvmfs_server"),
            &Path::new("/var/spool/cvmfs").join(name).join("cargohold-publish.lock"),
        ))
    }

    /// Explicit paths: the repository's mount point, the `cvmfs_server`
    /// program, the lock file.
    pub fn with_paths(repo: &str, root: &Path, program: &Path, lock: &Path) -> Self {
        CvmfsServer { repo: repo.into(), root: root.into(), program: program.into(), lock: lock.into() }
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(&self.program).args(args).output().map_err(io_err("run", &self.program))?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Io {
            action: "complete",
            path: PathBuf::from(format!("{} {}", self.program.display(), args.join(" "))),
            source: std::io::Error::other(format!(
                "exit {}: {}",
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        })
    }
}

impl PublishBackend for CvmfsServer {
    fn root(&self) -> &Path {
        &self.root
    }

    fn lock_file(&self) -> PathBuf {
        self.lock.clone()
    }

    fn transactional(&self) -> bool {
        true
    }

    fn begin(&self) -> Result<()> {
        self.run(&["transaction", &self.repo])
    }

    fn commit(&self) -> Result<()> {
        // Staging directories are empty by now; they must not be published.
        let _ = std::fs::remove_dir_all(self.root.join(".cargohold"));
        self.run(&["publish", &self.repo])
    }

    fn abort(&self) {
        let _ = self.run(&["abort", "-f", &self.repo]);
    }

    fn new_subtree(&self, dir: &Path) -> Result<()> {
        // A flat's top is the image's own root directory: never followed.
        crate::tree::Beneath::new(dir).touch(&dir.join(".cvmfscatalog"))
    }
}
