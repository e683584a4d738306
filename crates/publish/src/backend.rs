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
    /// Where new layers are staged to be ingested with
    /// [`PublishBackend::ingest`] (outside any transaction, as DUCC does),
    /// instead of being moved into place; `None`: they are moved.
    fn ingest_staging(&self) -> Option<PathBuf> {
        None
    }
    /// Ingests the directory tree `dir` as `dest` (a path under the root).
    fn ingest(&self, dir: &Path, dest: &Path) -> Result<()> {
        Err(Error::Io {
            action: "ingest",
            path: dest.to_path_buf(),
            source: std::io::Error::other(format!("{} is not ingested into this target", dir.display())),
        })
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

impl LocalDir {
    /// The tree at `root` (created when missing), served read-only, as a
    /// CernVM-FS repository is outside its transactions: `root` becomes a
    /// read-only bind mount of itself for every other process (unless it is
    /// a read-only mount already), and this process gets a mount namespace
    /// of its own in which it alone may write there. Flats share inodes with
    /// layers, so a tree anyone else can write is a tree anyone can damage
    /// for every image at once.
    ///
    /// Needs `CAP_SYS_ADMIN` (root), and must be called before this process
    /// starts any other thread (threads started before would keep the
    /// read-only view); both are checked. The mount stays after the process
    /// ends (`umount ROOT` lifts it).
    pub fn read_only(root: &Path) -> Result<Self> {
        let fail = |why: String| Error::Io {
            action: "serve read-only",
            path: root.to_path_buf(),
            source: std::io::Error::other(why),
        };
        let threads = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|n| n.trim().parse::<u32>().ok())))
            .unwrap_or(0);
        if threads != 1 {
            return Err(fail(format!(
                "a read-only tree must be set up before the process starts threads (it has {threads})"
            )));
        }
        std::fs::create_dir_all(root).map_err(io_err("create", root))?;
        let root = std::fs::canonicalize(root).map_err(io_err("find", root))?;
        let io = |action: &'static str| {
            let root = root.clone();
            move |e: nix::Error| Error::Io { action, path: root, source: std::io::Error::from(e) }
        };
        use nix::mount::{MsFlags, mount};
        if !read_only_mount(&root) {
            if !is_mount_point(&root) {
                mount(Some(&root), &root, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(io("bind-mount (--read-only-tree needs root)"))?;
            }
            let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, &root, None::<&str>, ro, None::<&str>).map_err(io("remount read-only"))?;
        }
        // This process' own view, where the tree is writable.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(io("make a mount namespace for (--read-only-tree needs root)"))?;
        let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
        mount(None::<&str>, "/", None::<&str>, private, None::<&str>).map_err(io("make the mounts private for"))?;
        let rw = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        mount(None::<&str>, &root, None::<&str>, rw, None::<&str>).map_err(io("remount writable (privately)"))?;
        LocalDir::new(&root)
    }
}

/// The mount point entries of `/proc/self/mountinfo`: (mount point, options).
fn mounts() -> Vec<(PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            // The mount point is octal-escaped (`\040` for a space).
            let point = f.get(4)?.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\");
            Some((PathBuf::from(point), f.get(5)?.to_string()))
        })
        .collect()
}

fn is_mount_point(dir: &Path) -> bool {
    mounts().iter().any(|(p, _)| p == dir)
}

/// Whether the topmost mount at `dir` is read-only.
fn read_only_mount(dir: &Path) -> bool {
    mounts().iter().rev().find(|(p, _)| p == dir).is_some_and(|(_, o)| o.split(',').any(|x| x == "ro"))
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
    /// `/cvmfs/<repo>`: what ingest paths are relative to.
    mount: PathBuf,
    root: PathBuf,
    program: PathBuf,
    lock: PathBuf,
    ingest: bool,
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
        let mut s = Self::with_paths(
            name,
            &Path::new("/cvmfs").join(name),
            Path::new("cvmfs_server"),
            &Path::new("/var/spool/cvmfs").join(name).join("cargohold-publish.lock"),
        );
        s.root = root;
        Ok(s)
    }

    /// Whether new layers go in by `cvmfs_server ingest --catalog -t - -b
    /// PATH REPO` (the default, as today's DUCC does: each layer its own
    /// ingest, outside the image's transaction, staged in the spool
    /// directory and streamed as a tar) or are unpacked inside the
    /// transaction.
    pub fn layers_by_ingest(mut self, ingest: bool) -> Self {
        self.ingest = ingest;
        self
    }

    /// Explicit paths: the repository's mount point, the `cvmfs_server`
    /// program, the lock file (ingested layers are staged beside it).
    pub fn with_paths(repo: &str, root: &Path, program: &Path, lock: &Path) -> Self {
        CvmfsServer {
            repo: repo.into(),
            mount: root.into(),
            root: root.into(),
            program: program.into(),
            lock: lock.into(),
            ingest: true,
        }
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

    fn ingest_staging(&self) -> Option<PathBuf> {
        self.ingest.then(|| self.lock.parent().unwrap_or(Path::new("/var/tmp")).join("cargohold-staging"))
    }

    fn ingest(&self, dir: &Path, dest: &Path) -> Result<()> {
        let rel = dest.strip_prefix(&self.mount).map_err(|_| Error::Io {
            action: "ingest",
            path: dest.to_path_buf(),
            source: std::io::Error::other(format!("not in the repository {}", self.mount.display())),
        })?;
        let rel = rel.to_string_lossy().into_owned();
        let shown = PathBuf::from(format!("{} ingest --catalog -t - -b {rel} {}", self.program.display(), self.repo));
        // What it says goes to a file: a pipe nobody reads while the tar
        // is written could stall it.
        let said = tempfile::tempfile().map_err(io_err("make a file for the output of", &shown))?;
        let mut child = Command::new(&self.program)
            .args(["ingest", "--catalog", "-t", "-", "-b", &rel, &self.repo])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(said.try_clone().map_err(io_err("run", &shown))?)
            .spawn()
            .map_err(io_err("run", &shown))?;
        let stdin = child.stdin.take().expect("piped");
        let written = cargohold_layerfs::archive_tree(
            dir,
            std::io::BufWriter::with_capacity(1 << 20, stdin),
            &Default::default(),
        )
        .and_then(|(w, _)| {
            w.into_inner().map(drop).map_err(|e| cargohold_layerfs::Error::Io {
                action: "stream",
                path: dir.to_path_buf(),
                source: e.into_error(),
            })
        });
        let status = child.wait().map_err(io_err("run", &shown))?;
        if status.success() && written.is_ok() {
            return Ok(());
        }
        // As DUCC: whatever half-happened is undone.
        let _ = self.run(&["abort", "-f", &self.repo]);
        let _ = self.run(&["ingest", "--delete", &rel, &self.repo]);
        let mut text = String::new();
        let mut f = &said;
        let _ = std::io::Seek::rewind(&mut f);
        let _ = std::io::Read::read_to_string(&mut f, &mut text);
        // A failed ingest says why (our stream then broke on its closed
        // input); else the stream itself failed.
        Err(match written {
            Err(e) if status.success() => {
                Error::Io { action: "ingest", path: dir.to_path_buf(), source: std::io::Error::other(e.to_string()) }
            }
            _ => Error::Io {
                action: "complete",
                path: shown,
                source: std::io::Error::other(format!("exit {}: {}", status.code().unwrap_or(-1), text.trim())),
            },
        })
    }
}
