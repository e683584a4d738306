//! Running a process in a root filesystem, isolated: the [`Executor`] seam
//! and its default, [`Namespaces`] (our own mount, pid, ipc, uts and,
//! optionally, network namespaces; no runtime binary needed).
//!
//! The root is either a directory (bind-mounted) or a kernel overlay of
//! read-only layer directories plus a fresh upper directory, which then holds
//! exactly what the process changed. Everything is mounted inside the
//! container's own mount namespace, so nothing stays mounted on the host
//! when the process ends or the builder is killed. The process gets a fresh
//! `/proc`, a read-only `/sys`, a minimal `/dev` (null, zero, full, random,
//! urandom, tty, pts, shm), generated `/etc/hosts` and `/etc/hostname` and
//! the host's `/etc/resolv.conf`. When the main process exits, every process
//! it left behind is killed with its pid namespace.
//!
//! Executors need root: of the host, or of a user namespace (rootless; see
//! [`cargohold_layerfs::rootless`]). In a user namespace `/proc` (and
//! `/sys` with a network namespace) are mounted before the pivot, as the
//! kernel requires, and the device nodes and the host's `/sys` are
//! bind-mounted, since nodes cannot be made there.

mod cgroup;
mod ns;
mod oci;
mod terminal;
mod user;

use std::path::{Path, PathBuf};
use std::process::Stdio;

pub use cgroup::{Limits, parse_size};
pub use oci::OciRuntime;
pub use terminal::with_terminal;
pub use user::{UserIds, lookup_user};

/// The container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network stack (Docker's `--network host`, the build default).
    #[default]
    Host,
    /// A new network namespace with only a loopback interface.
    None,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" | "default" => Ok(Network::Host),
            "none" => Ok(Network::None),
            _ => Err(format!("unknown network mode {s:?} (host or none)")),
        }
    }
}

/// The root filesystem of a container.
#[derive(Debug, Clone)]
pub enum RootFs {
    /// A plain directory, bind-mounted; changes land in it.
    Dir(PathBuf),
    /// An overlay: `lower` layer directories (base first, overlayfs
    /// whiteouts) under a writable `upper` (with `work` on the same
    /// filesystem). With no lower layer, `upper` is the root.
    Overlay {
        /// Read-only layers, base first.
        lower: Vec<PathBuf>,
        /// Receives every change.
        upper: PathBuf,
        /// overlayfs' work directory (empty, same filesystem as `upper`).
        work: PathBuf,
    },
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path (file or directory).
    pub source: PathBuf,
    /// Absolute path in the container (created if missing).
    pub target: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// What to run, where and as whom.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The root filesystem.
    pub root: RootFs,
    /// Program and arguments (the program is looked up in the container's `PATH`).
    pub argv: Vec<String>,
    /// `NAME=value` entries; the whole environment.
    pub env: Vec<String>,
    /// Working directory in the container (created if missing).
    pub cwd: String,
    /// Who runs the process.
    pub user: UserIds,
    /// The container's host name.
    pub hostname: String,
    /// Network mode.
    pub network: Network,
    /// Extra bind mounts.
    pub binds: Vec<BindMount>,
    /// Memory and CPU limits.
    pub limits: Limits,
    /// Standard input is a terminal that becomes the process' controlling
    /// terminal (in a session of its own); see [`with_terminal`].
    pub tty: bool,
}

/// The process' standard streams.
#[derive(Debug)]
pub struct ProcessIo {
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
}

impl ProcessIo {
    /// No input; output and errors to this process' standard error (a
    /// build's `--json` keeps standard output for its one document).
    pub fn to_stderr() -> Self {
        let err = || {
            use std::os::fd::AsFd;
            std::io::stderr().as_fd().try_clone_to_owned().map_or_else(|_| Stdio::inherit(), Stdio::from)
        };
        ProcessIo { stdin: Stdio::null(), stdout: err(), stderr: err() }
    }

    /// The caller's own streams.
    pub fn inherit() -> Self {
        ProcessIo { stdin: Stdio::inherit(), stdout: Stdio::inherit(), stderr: Stdio::inherit() }
    }
}

/// Why a process could not be run (its own non-zero exit is not an error
/// here: it is the returned status).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// Setting the container up failed at `step`.
    #[error("could not start the container: {step}")]
    Setup {
        /// What was being done.
        step: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be executed.
    #[error("could not run {program} in the container")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Own namespaces need root here (user namespaces are not used yet).
    #[error("running a container needs root, or a user namespace where this process is root")]
    NotRoot,
    /// The spec is unusable.
    #[error("{0}")]
    Invalid(String),
    /// A host file operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs processes in root filesystems.
pub trait Executor: Send + Sync {
    /// Runs `spec` to completion and returns its exit code (128 + N when
    /// killed by signal N, as shells report it).
    fn run(&self, spec: &RunSpec, io: ProcessIo) -> Result<i32, ExecError>;
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn run(&self, spec: &RunSpec, io: ProcessIo) -> Result<i32, ExecError> {
        (**self).run(spec, io)
    }
}

/// The executor named on a command line: `None` for the built-in
/// [`Namespaces`], else an OCI runtime (`crun`, `runc` or a path).
pub fn executor(runtime: Option<&str>) -> Result<Box<dyn Executor>, ExecError> {
    Ok(match runtime {
        None => Box::new(Namespaces::new()),
        Some(name) => Box::new(OciRuntime::new(name)?),
    })
}

/// The built-in executor: Linux namespaces set up by this process.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    _private: (),
}

impl Namespaces {
    /// The executor.
    pub fn new() -> Self {
        Namespaces::default()
    }
}

impl Executor for Namespaces {
    fn run(&self, spec: &RunSpec, io: ProcessIo) -> Result<i32, ExecError> {
        prepared_run(spec, |scratch, files, cgroups| ns::run(spec, scratch, files, cgroups, io))
    }
}

/// What every executor does around its own run: checks, the files to
/// mount at `/etc`, the limiting cgroups, and afterwards the removal of
/// the mount points the run created in the root.
fn prepared_run(
    spec: &RunSpec,
    run: impl FnOnce(&Path, &HostFiles, Vec<std::os::fd::OwnedFd>) -> Result<i32, ExecError>,
) -> Result<i32, ExecError> {
    if !rustix::process::geteuid().is_root() {
        return Err(ExecError::NotRoot);
    }
    if spec.argv.is_empty() {
        return Err(ExecError::Invalid("no command to run".into()));
    }
    let scratch = tempfile::Builder::new().prefix("cargohold-run-").tempdir().map_err(|e| ExecError::Io {
        action: "create a scratch directory in",
        path: std::env::temp_dir(),
        source: e,
    })?;
    let files = HostFiles::write(scratch.path(), spec)?;
    let points = mount_points(spec);
    let (top, lower): (&Path, &[PathBuf]) = match &spec.root {
        RootFs::Overlay { lower, upper, .. } => (upper, lower),
        RootFs::Dir(d) => (d, &[]),
    };
    let before: Vec<(bool, bool)> =
        points.iter().map(|rel| (existing(lower, top, rel), existing(&[], top, rel))).collect();
    // In a plain directory, the directories that get mount points keep
    // their times (a tree diff would otherwise see them changed).
    let overlay = matches!(spec.root, RootFs::Overlay { .. });
    let mut parents: Vec<(PathBuf, rustix::fs::Timestamps)> = Vec::new();
    if !overlay {
        for (rel, _) in points.iter().zip(&before).filter(|(_, e)| !e.0) {
            let parent = top.join(rel).parent().map(Path::to_path_buf).unwrap_or_else(|| top.to_path_buf());
            if let Ok(m) = std::fs::symlink_metadata(&parent)
                && !parents.iter().any(|(p, _)| *p == parent)
            {
                use std::os::unix::fs::MetadataExt;
                let t = |s: i64, ns: i64| rustix::fs::Timespec { tv_sec: s, tv_nsec: ns as _ };
                let times = rustix::fs::Timestamps {
                    last_access: t(m.atime(), m.atime_nsec()),
                    last_modification: t(m.mtime(), m.mtime_nsec()),
                };
                parents.push((parent, times));
            }
        }
    }
    let cgroups = cgroup::Cgroups::create(&spec.limits)?;
    let result = run(scratch.path(), &files, cgroups.open_procs()?);
    drop(cgroups);
    remove_mount_points(top, &points, &before, overlay);
    for (dir, times) in parents.iter().rev() {
        let _ = rustix::fs::utimensat(rustix::fs::CWD, dir, times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
    }
    result
}

/// `cargohold-<pid>-<n>`: a name no other run of this or another process
/// uses (cgroups, runtime container IDs).
fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("cargohold-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Whether `rel` exists in `upper` or any of `lower`.
fn existing(lower: &[PathBuf], upper: &Path, rel: &str) -> bool {
    std::iter::once(upper).chain(lower.iter().map(PathBuf::as_path)).any(|d| d.join(rel).symlink_metadata().is_ok())
}

/// The paths a run of `spec` may create as mount points: [`MOUNT_POINTS`]
/// and every bind target, each with its parents.
fn mount_points(spec: &RunSpec) -> Vec<String> {
    let mut points: Vec<String> = Vec::new();
    let targets = MOUNT_POINTS.iter().map(PathBuf::from).chain(spec.binds.iter().map(|b| b.target.clone()));
    for target in targets {
        let mut rel = String::new();
        for part in target.components().filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        }) {
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(&part);
            if !points.contains(&rel) {
                points.push(rel.clone());
            }
        }
    }
    points
}

/// Removes the mount points a run created (empty files and directories that
/// did not exist before, deepest first), and in an overlay's upper directory
/// the parents that were only copied up to hold them (empty, not opaque, not
/// in the upper directory before), so a step's layer shows only its own
/// changes. `existed` is, per point, whether it existed at all and whether
/// it existed in `upper`.
fn remove_mount_points(upper: &Path, points: &[String], existed: &[(bool, bool)], overlay: bool) {
    let mut created: Vec<&String> = points.iter().zip(existed).filter(|(_, e)| !e.0).map(|(p, _)| p).collect();
    created.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for rel in created {
        let p = upper.join(rel);
        let removed = match p.symlink_metadata() {
            Ok(m) if m.is_file() && m.len() == 0 => std::fs::remove_file(&p).is_ok(),
            // Fails (and keeps it) unless the directory is empty.
            Ok(m) if m.is_dir() => std::fs::remove_dir(&p).is_ok(),
            _ => false,
        };
        let Some((parent, _)) = rel.rsplit_once('/') else { continue };
        let parent_was_in_upper =
            points.iter().zip(existed).find(|(r, _)| r.as_str() == parent).is_none_or(|(_, e)| e.1);
        if overlay && removed && !parent_was_in_upper {
            let dir = upper.join(parent);
            let opaque =
                rustix::fs::lgetxattr(&dir, cargohold_layerfs::rootless::opaque_xattr(), &mut [0u8; 4]).is_ok();
            if !opaque {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// Files made on the host for the container to bind-mount.
#[derive(Debug)]
struct HostFiles {
    hosts: PathBuf,
    hostname: PathBuf,
    resolv: PathBuf,
}

impl HostFiles {
    fn write(dir: &Path, spec: &RunSpec) -> Result<Self, ExecError> {
        let put = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| ExecError::Io { action: "write", path: p.clone(), source: e })?;
            Ok::<_, ExecError>(p)
        };
        let h = &spec.hostname;
        let hosts = put(
            "hosts",
            &format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{h}\n"),
        )?;
        let hostname = put("hostname", &format!("{h}\n"))?;
        let resolv_text = match spec.network {
            Network::Host => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            Network::None => String::new(),
        };
        let resolv = put("resolv.conf", &resolv_text)?;
        Ok(HostFiles { hosts, hostname, resolv })
    }
}

/// The `PATH` a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths a container run may create in the root as mount points; a build
/// removes them from the layer afterwards when the image did not have them.
pub const MOUNT_POINTS: &[&str] = &["proc", "sys", "dev", "etc/hosts", "etc/hostname", "etc/resolv.conf"];
