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
    /// Where writes go instead of the tree, when it cannot be written
    /// (CernVM-FS without a mount: see [`CvmfsServer::mountless`]).
    fn shadow(&self) -> Option<std::sync::Arc<crate::tree::Shadow>> {
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
    shadow: Option<std::sync::Arc<crate::tree::Shadow>>,
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
    /// transaction. Mountless publishing ([`CvmfsServer::mountless`]) always
    /// ingests them.
    pub fn layers_by_ingest(mut self, ingest: bool) -> Self {
        self.ingest = ingest || self.shadow.is_some();
        self
    }

    /// The path of `dest` in the repository (what `-b` takes).
    fn repo_path(&self, dest: &Path) -> Result<String> {
        let rel = dest.strip_prefix(&self.mount).map_err(|_| Error::Io {
            action: "ingest",
            path: dest.to_path_buf(),
            source: std::io::Error::other(format!("not in the repository {}", self.mount.display())),
        })?;
        Ok(rel.to_string_lossy().into_owned())
    }

    /// Mountless: sends the shadow in (removals first, then each top
    /// directory, the public ones last).
    fn send_shadow(&self, shadow: &crate::tree::Shadow) -> Result<()> {
        for gone in shadow.take_removed() {
            let rel = self.repo_path(&gone)?;
            self.run(&["ingest", "--fast-delete", &rel, &self.repo])?;
        }
        let dir = shadow.dir();
        let _ = std::fs::remove_dir_all(dir.join(".cargohold"));
        let mut tops: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.flatten().map(|e| e.file_name()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", dir)(e)),
        };
        // Data before what points at it: layers and flats, the podman
        // store, the metadata (what marks an image done), then the names.
        let rank = |n: &std::ffi::OsStr| match n.to_str() {
            Some(".layers") => 0,
            Some(".flat") => 1,
            Some(crate::convert::PODMAN_STORE) => 3,
            Some(".metadata") => 4,
            Some(".multiarch") => 6,
            Some(s) if s.starts_with('.') => 2,
            _ => 5,
        };
        tops.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
        for top in tops {
            let src = dir.join(&top);
            if !std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_dir()) {
                return Err(Error::Io {
                    action: "ingest",
                    path: src,
                    source: std::io::Error::other("only directories are ingested at the top of the tree"),
                });
            }
            self.ingest_tar(&src, &self.repo_path(&self.root.join(&top))?, false)?;
        }
        Ok(())
    }

    /// `cvmfs_server ingest [--catalog] -t - -b REL REPO`, the tar of `dir`
    /// on its input.
    fn ingest_tar(&self, dir: &Path, rel: &str, catalog: bool) -> Result<()> {
        let mut args = vec!["ingest"];
        if catalog {
            args.push("--catalog");
        }
        args.extend(["-t", "-", "-b", rel, &self.repo]);
        let shown = PathBuf::from(format!("{} {}", self.program.display(), args.join(" ")));
        // What it says goes to a file: a pipe nobody reads while the tar
        // is written could stall it.
        let said = tempfile::tempfile().map_err(io_err("make a file for the output of", &shown))?;
        let mut child = Command::new(&self.program)
            .args(&args)
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
            shadow: None,
        }
    }

    /// DUCC's mountless publishing (`--mountless`,
    /// `CVMFS_DUCC_MOUNTLESS_PUBLISHING`), for a gateway publisher with no
    /// union mount: every change is a `cvmfs_server ingest`, never a
    /// `transaction`. Layers go in as always; an image's other changes
    /// (flat, metadata, links, podman store) are written to a shadow
    /// directory in the spool and sent in when the image is done, one
    /// `ingest -t - -b DIR` per top directory of the tree (what the
    /// consumers look up, the public links, last); removals are `ingest
    /// --fast-delete PATH`, first. The repository's read-only view (a client
    /// mount at the root, if there is one) tells what is there already:
    /// without one, every image is converted and its layers ingested again
    /// (CernVM-FS stores each file once all the same). Flats are built from
    /// the layers staged by this run and, for the others, copied from that
    /// view.
    pub fn mountless(mut self, on: bool) -> Self {
        self.ingest |= on;
        self.shadow = on.then(|| {
            let dir = self.lock.parent().unwrap_or(Path::new("/var/tmp")).join("cargohold-shadow");
            std::sync::Arc::new(crate::tree::Shadow::new(&dir))
        });
        self
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
        match &self.shadow {
            Some(shadow) => shadow.reset(),
            None => self.run(&["transaction", &self.repo]),
        }
    }

    fn commit(&self) -> Result<()> {
        if let Some(shadow) = &self.shadow {
            let sent = self.send_shadow(shadow);
            shadow.discard();
            return sent;
        }
        // Staging directories are empty by now; they must not be published.
        let _ = std::fs::remove_dir_all(self.root.join(".cargohold"));
        self.run(&["publish", &self.repo])
    }

    fn abort(&self) {
        if let Some(shadow) = &self.shadow {
            // Nothing was sent: the repository is as it was.
            shadow.discard();
            return;
        }
        let _ = self.run(&["abort", "-f", &self.repo]);
    }

    fn new_subtree(&self, dir: &Path) -> Result<()> {
        // A flat's top is the image's own root directory: never followed.
        crate::tree::Beneath::new(dir).touch(&dir.join(".cvmfscatalog"))
    }

    fn ingest_staging(&self) -> Option<PathBuf> {
        self.ingest.then(|| self.lock.parent().unwrap_or(Path::new("/var/tmp")).join("cargohold-staging"))
    }

    fn shadow(&self) -> Option<std::sync::Arc<crate::tree::Shadow>> {
        self.shadow.clone()
    }

    fn ingest(&self, dir: &Path, dest: &Path) -> Result<()> {
        let rel = self.repo_path(dest)?;
        let result = self.ingest_tar(dir, &rel, true);
        if result.is_err() {
            // As DUCC: whatever half-happened is undone (mountless, where
            // there is no transaction to abort, by a fast delete).
            if self.shadow.is_some() {
                let _ = self.run(&["ingest", "--fast-delete", &rel, &self.repo]);
            } else {
                let _ = self.run(&["abort", "-f", &self.repo]);
                let _ = self.run(&["ingest", "--delete", &rel, &self.repo]);
            }
        }
        result
    }
}
