//! Running a process in a root filesystem, isolated: the [`Executor`] seam,
//! [`RunSpec`] (what to run, turned into one OCI runtime spec for every
//! executor, see [`crate::spec`]) and what every executor does around a run.
//!
//! The root is either a directory (bind-mounted) or a kernel overlay of
//! read-only layer directories plus a fresh upper directory, which then holds
//! exactly what the process changed. Everything is mounted inside the
//! container's own mount namespace, so nothing stays mounted on the host
//! when the process ends or the builder is killed. The process gets a fresh
//! `/proc`, a read-only `/sys`, a minimal `/dev` (null, zero, full, random,
//! urandom, tty, pts, shm, mqueue), generated `/etc/hosts`, `/etc/hostname`
//! and `/etc/resolv.conf`. When the main process exits, every process it
//! left behind is killed with its pid namespace.
//!
//! Executors need root: of the host, or of a user namespace (rootless; see
//! [`cargohold_layerfs::rootless`]). In a user namespace `/proc` (and
//! `/sys` with a network namespace) are mounted before the pivot, as the
//! kernel requires, and the device nodes and the host's `/sys` are
//! bind-mounted, since nodes cannot be made there.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::cgroup::{self, Limits};
use crate::security::Security;
use crate::user::UserIds;
use crate::{Namespaces, OciRuntime};

/// The container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A network namespace of its own with outbound access through pasta
    /// (user-mode networking, as rootless podman has): host loopback
    /// services and the host's interfaces are out of reach. The default.
    #[default]
    Private,
    /// A new network namespace with only a loopback interface.
    None,
    /// The host's network stack (`--network host`): only when asked for.
    Host,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "private" | "pasta" | "default" | "bridge" | "slirp4netns" => Ok(Network::Private),
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            _ => Err(format!("unknown network mode {s:?} (private, none or host)")),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Network::Private => "private",
            Network::None => "none",
            Network::Host => "host",
        })
    }
}

/// The root filesystem of a container.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    /// Host path (file or directory).
    pub source: PathBuf,
    /// Absolute path in the container (created if missing).
    pub target: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// What to run, where and as whom.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// Host ports forwarded into the private network (`-p`).
    #[serde(default)]
    pub ports: Vec<crate::network::PortMapping>,
    /// tmpfs mounts (`--tmpfs`).
    #[serde(default)]
    pub tmpfs: Vec<crate::volume::TmpfsMount>,
    /// Nameservers for `/etc/resolv.conf` instead of the network's (`--dns`).
    #[serde(default)]
    pub dns: Vec<std::net::IpAddr>,
    /// Extra `/etc/hosts` entries, name and address (`--add-host`).
    #[serde(default)]
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    /// Memory and CPU limits.
    pub limits: Limits,
    /// Standard input is a terminal that becomes the process' controlling
    /// terminal (in a session of its own); see [`with_terminal`](crate::with_terminal).
    pub tty: bool,
    /// Capabilities, seccomp, `no_new_privs`, `--privileged`.
    pub security: Security,
    /// A minimal init on the host (such as catatonit) to run as pid 1,
    /// reaping zombies and passing signals to the command (`--init`);
    /// without, the command is pid 1.
    pub init: Option<PathBuf>,
    /// systemd runs as pid 1 (see [`RunSpec::with_systemd`]): it gets a
    /// writable cgroup2 subtree of its own at `/sys/fs/cgroup`.
    #[serde(default)]
    pub systemd: bool,
    /// Where the run keeps its own files while it runs (the private
    /// network's namespace file, which pasta watches): a container's
    /// directory, so that removing it also stops a pasta whose monitor was
    /// killed; `None`: a temporary directory.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

/// podman's `--systemd`: when a container runs in systemd mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SystemdMode {
    /// When the command is systemd or an init (`/sbin/init`,
    /// `/usr/sbin/init`, `/usr/local/sbin/init`, or a program named
    /// `systemd`).
    #[default]
    True,
    /// Never.
    False,
    /// Whatever the command.
    Always,
}

impl std::str::FromStr for SystemdMode {
    type Err = ExecError;
    fn from_str(s: &str) -> Result<Self, ExecError> {
        match s {
            "true" => Ok(SystemdMode::True),
            "false" => Ok(SystemdMode::False),
            "always" => Ok(SystemdMode::Always),
            other => Err(ExecError::Option {
                option: format!("--systemd {other}"),
                message: "expected true, false or always".into(),
            }),
        }
    }
}

impl SystemdMode {
    /// Whether a container running `argv` is in systemd mode.
    pub fn applies(self, argv: &[String]) -> bool {
        match self {
            SystemdMode::False => false,
            SystemdMode::Always => true,
            SystemdMode::True => argv.first().is_some_and(|cmd| {
                matches!(cmd.as_str(), "/sbin/init" | "/usr/sbin/init" | "/usr/local/sbin/init")
                    || Path::new(cmd).file_name().is_some_and(|n| n == "systemd")
            }),
        }
    }
}

/// The tmpfs mounts of a systemd container (podman's, 64 MiB each).
pub const SYSTEMD_TMPFS: &[(&str, &str)] = &[
    ("/run", "mode=755,size=64m"),
    ("/run/lock", "mode=1777,size=64m"),
    ("/tmp", "mode=1777,size=64m"),
    ("/var/log/journal", "mode=755,size=64m"),
];

impl RunSpec {
    /// Puts the container in systemd mode, as podman does: tmpfs on `/run`,
    /// `/run/lock`, `/tmp` and `/var/log/journal` (where no other mount
    /// is), `container=cargohold` and `container_uuid` (32 random hex
    /// digits, from which systemd makes `/etc/machine-id` when the image's
    /// is empty) in the environment, and a cgroup2 subtree of its own
    /// (writable, as systemd manages it). Stop it with `SIGRTMIN+3`,
    /// systemd's halt.
    pub fn with_systemd(mut self) -> Self {
        self.systemd = true;
        for (target, options) in SYSTEMD_TMPFS {
            let taken = self.tmpfs.iter().any(|t| t.target == Path::new(target))
                || self.binds.iter().any(|b| b.target == Path::new(target));
            if !taken {
                self.tmpfs.push(crate::volume::TmpfsMount { target: target.into(), options: (*options).into() });
            }
        }
        self.env.retain(|e| !e.starts_with("container=") && !e.starts_with("container_uuid="));
        self.env.push("container=cargohold".into());
        let mut bytes = [0u8; 16];
        if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).is_err()
        {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            bytes = (now.as_nanos() ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
        }
        self.env.push(format!("container_uuid={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()));
        self
    }
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
    /// An option's value is wrong or unsupported.
    #[error("{option}: {message}")]
    Option {
        /// The option and its value, as given.
        option: String,
        /// What is wrong, and the way out.
        message: String,
    },
    /// A seccomp profile could not be read or compiled.
    #[error("seccomp profile {}: {message}", profile.display())]
    Seccomp {
        /// The profile file (or `linux.seccomp` for a compiled spec).
        profile: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The container's private network could not be set up.
    #[error(
        "could not set up the container's private network: {message} (use --network none for no network, or --network host to share the host's)"
    )]
    Network {
        /// What failed.
        message: String,
        /// The system error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
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
/// [`Namespaces`] (keeping compiled seccomp filters in `cache_dir`, a
/// private directory, when given), else an OCI runtime (`crun`, `runc` or
/// a path).
pub fn executor(runtime: Option<&str>, cache_dir: Option<&Path>) -> Result<Box<dyn Executor>, ExecError> {
    Ok(match (runtime, cache_dir) {
        (None, Some(dir)) => Box::new(Namespaces::with_cache_dir(dir)),
        (None, None) => Box::new(Namespaces::new()),
        (Some(name), _) => Box::new(OciRuntime::new(name)?),
    })
}

/// What an executor is handed by [`prepared_run`].
pub(crate) struct Prepared<'a> {
    /// A private scratch directory for this run.
    pub scratch: &'a Path,
    /// The generated `/etc` files.
    pub files: &'a HostFiles,
    /// `cgroup.procs` of the limiting cgroups, open for writing.
    pub cgroups: Vec<std::os::fd::OwnedFd>,
    /// The private network's namespace (pasta is attached), if any.
    pub netns: Option<&'a crate::network::PrivateNetwork>,
    /// `uname -r`.
    pub kernel: String,
}

/// What every executor does around its own run: checks, the files to
/// mount at `/etc`, the limiting cgroups, the private network, and
/// afterwards the removal of the mount points the run created in the root.
pub(crate) fn prepared_run(
    spec: &RunSpec,
    devices_cgroup: bool,
    networks: &crate::network::NetworkPool,
    run: impl FnOnce(Prepared<'_>) -> Result<i32, ExecError>,
) -> Result<i32, ExecError> {
    if !rustix::process::geteuid().is_root() {
        return Err(ExecError::NotRoot);
    }
    if spec.argv.is_empty() {
        return Err(ExecError::Invalid("no command to run".into()));
    }
    // Bad options fail before anything is made.
    spec.security.capabilities()?;
    if let Some(init) = &spec.init
        && !init.is_file()
    {
        return Err(ExecError::Option {
            option: "--init".into(),
            message: format!("the init binary {} is not a file (install catatonit)", init.display()),
        });
    }
    let scratch = tempfile::Builder::new().prefix("cargohold-run-").tempdir().map_err(|e| ExecError::Io {
        action: "create a scratch directory in",
        path: std::env::temp_dir(),
        source: e,
    })?;
    let network = match spec.network {
        Network::Private if spec.ports.is_empty() && spec.state_dir.is_none() => Some(networks.take()?),
        Network::Private => Some(crate::network::PrivateNetwork::start_in(&spec.ports, spec.state_dir.as_deref())?),
        _ if !spec.ports.is_empty() => {
            return Err(ExecError::Option {
                option: "-p".into(),
                message: format!("ports are forwarded into the private network only, not --network {}", spec.network),
            });
        }
        _ => None,
    };
    let files = HostFiles::write(scratch.path(), spec, network.as_ref())?;
    let points = mount_points(spec);
    let (top, lower): (&Path, &[PathBuf]) = match &spec.root {
        RootFs::Overlay { lower, upper, .. } => (upper, lower),
        RootFs::Dir(d) => (d, &[]),
    };
    let top_dir = Beneath::open(top)?;
    let lower_dirs: Vec<Beneath> = lower.iter().filter_map(|l| Beneath::open(l).ok()).collect();
    let before: Vec<(bool, bool)> = points
        .iter()
        .map(|rel| (top_dir.exists(rel) || lower_dirs.iter().any(|l| l.exists(rel)), top_dir.exists(rel)))
        .collect();
    // In a plain directory, the directories that get mount points keep
    // their times (a tree diff would otherwise see them changed).
    let overlay = matches!(spec.root, RootFs::Overlay { .. });
    let mut parents: Vec<(String, rustix::fs::Timestamps)> = Vec::new();
    if !overlay {
        for (rel, _) in points.iter().zip(&before).filter(|(_, e)| !e.0) {
            let parent = rel.rsplit_once('/').map_or(String::new(), |(p, _)| p.to_owned());
            if !parents.iter().any(|(p, _)| *p == parent)
                && let Some(times) = top_dir.times(&parent)
            {
                parents.push((parent, times));
            }
        }
    }
    let cgroups = cgroup::Cgroups::create(&spec.limits, devices_cgroup && !spec.security.privileged, spec.systemd)?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    let result = run(Prepared {
        scratch: scratch.path(),
        files: &files,
        cgroups: cgroups.open_procs()?,
        netns: network.as_ref(),
        kernel,
    });
    if let Some(net) = network {
        let caps = spec.security.capabilities().unwrap_or_default();
        let could_change = spec.security.privileged || caps.contains(&"CAP_NET_ADMIN") || result.is_err();
        networks.give_back(net, could_change || !spec.ports.is_empty());
    }
    drop(cgroups);
    remove_mount_points(&top_dir, &points, &before, overlay);
    for (dir, times) in parents.iter().rev() {
        top_dir.set_times(dir, times);
    }
    result
}

/// `cargohold-<pid>-<n>`: a name no other run of this or another process
/// uses (cgroups, runtime container IDs).
pub(crate) fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("cargohold-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A directory the container wrote into, looked at from the host without
/// ever following a symlink the container may have planted (openat2 with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`): a mount point's parent turned
/// into a link to `/etc` must not make us delete the host's files.
struct Beneath {
    fd: std::os::fd::OwnedFd,
}

impl Beneath {
    fn open(dir: &Path) -> Result<Self, ExecError> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ExecError::Io { action: "open the root", path: dir.into(), source: e.into() })?;
        Ok(Beneath { fd })
    }

    /// The directory `rel` (empty: this one), never through a symlink.
    fn dir(&self, rel: &str) -> Option<std::os::fd::OwnedFd> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let rel = if rel.is_empty() { "." } else { rel };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), how).ok()
    }

    fn split(rel: &str) -> (&str, &str) {
        rel.rsplit_once('/').unwrap_or(("", rel))
    }

    fn stat(&self, rel: &str) -> Option<rustix::fs::Stat> {
        let (parent, name) = Self::split(rel);
        let dir = self.dir(parent)?;
        rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    fn exists(&self, rel: &str) -> bool {
        self.stat(rel).is_some()
    }

    fn times(&self, rel: &str) -> Option<rustix::fs::Timestamps> {
        let st = if rel.is_empty() { rustix::fs::fstat(&self.fd).ok()? } else { self.stat(rel)? };
        let t = |s: i64, ns: u64| rustix::fs::Timespec { tv_sec: s, tv_nsec: ns as _ };
        Some(rustix::fs::Timestamps {
            last_access: t(st.st_atime as i64, st.st_atime_nsec as u64),
            last_modification: t(st.st_mtime as i64, st.st_mtime_nsec as u64),
        })
    }

    fn set_times(&self, rel: &str, times: &rustix::fs::Timestamps) {
        if let Some(dir) = self.dir(rel) {
            // An O_PATH descriptor: through /proc/self/fd, as utimensat
            // takes no empty path.
            let _ = rustix::fs::utimensat(
                rustix::fs::CWD,
                format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir)),
                times,
                rustix::fs::AtFlags::empty(),
            );
        }
    }

    /// Removes the empty file or empty directory `rel`; whether it did.
    fn remove_empty(&self, rel: &str) -> bool {
        let (parent, name) = Self::split(rel);
        let Some(dir) = self.dir(parent) else { return false };
        let Ok(st) = rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) else { return false };
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        match kind {
            rustix::fs::FileType::RegularFile if st.st_size == 0 => {
                rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty()).is_ok()
            }
            // Fails (and keeps it) unless the directory is empty.
            rustix::fs::FileType::Directory => rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::REMOVEDIR).is_ok(),
            _ => false,
        }
    }

    fn is_opaque(&self, rel: &str) -> bool {
        let Some(dir) = self.dir(rel) else { return false };
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir));
        rustix::fs::getxattr(path.as_str(), cargohold_layerfs::rootless::opaque_xattr(), &mut [0u8; 4]).is_ok()
    }
}

/// The paths a run of `spec` may create as mount points: [`MOUNT_POINTS`]
/// and every bind target, each with its parents.
fn mount_points(spec: &RunSpec) -> Vec<String> {
    let mut points: Vec<String> = Vec::new();
    let targets = MOUNT_POINTS
        .iter()
        .map(PathBuf::from)
        .chain(spec.binds.iter().map(|b| b.target.clone()))
        .chain(spec.tmpfs.iter().map(|t| t.target.clone()));
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
fn remove_mount_points(upper: &Beneath, points: &[String], existed: &[(bool, bool)], overlay: bool) {
    let mut created: Vec<&String> = points.iter().zip(existed).filter(|(_, e)| !e.0).map(|(p, _)| p).collect();
    created.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for rel in created {
        let removed = upper.remove_empty(rel);
        let Some((parent, _)) = rel.rsplit_once('/') else { continue };
        let parent_was_in_upper =
            points.iter().zip(existed).find(|(r, _)| r.as_str() == parent).is_none_or(|(_, e)| e.1);
        if overlay && removed && !parent_was_in_upper && !upper.is_opaque(parent) {
            upper.remove_empty(parent);
        }
    }
}

/// Files made on the host for the container to bind-mount.
#[derive(Debug)]
pub struct HostFiles {
    /// `/etc/hosts`.
    pub hosts: PathBuf,
    /// `/etc/hostname`.
    pub hostname: PathBuf,
    /// `/etc/resolv.conf`.
    pub resolv: PathBuf,
}

impl HostFiles {
    fn write(dir: &Path, spec: &RunSpec, net: Option<&crate::network::PrivateNetwork>) -> Result<Self, ExecError> {
        let put = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| ExecError::Io { action: "write", path: p.clone(), source: e })?;
            Ok::<_, ExecError>(p)
        };
        let h = &spec.hostname;
        let mut hosts_text =
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{h}\n");
        for (name, addr) in &spec.extra_hosts {
            hosts_text.push_str(&format!("{addr}\t{name}\n"));
        }
        let hosts = put("hosts", &hosts_text)?;
        let hostname = put("hostname", &format!("{h}\n"))?;
        let mut resolv_text = match (spec.network, net) {
            (Network::Host, _) => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            (Network::Private, Some(n)) => n.resolv_conf(),
            _ => String::new(),
        };
        if !spec.dns.is_empty() {
            // --dns replaces the nameservers and keeps the search and options lines.
            let kept: String = resolv_text
                .lines()
                .filter(|l| !l.trim_start().starts_with("nameserver"))
                .map(|l| format!("{l}\n"))
                .collect();
            resolv_text = spec.dns.iter().map(|d| format!("nameserver {d}\n")).collect::<String>() + &kept;
        }
        let resolv = put("resolv.conf", &resolv_text)?;
        Ok(HostFiles { hosts, hostname, resolv })
    }
}

/// The `PATH` a container gets when its image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths a container run may create in the root as mount points; a build
/// removes them from the layer afterwards when the image did not have them.
pub const MOUNT_POINTS: &[&str] = &["proc", "sys", "dev", "etc/hosts", "etc/hostname", "etc/resolv.conf"];
