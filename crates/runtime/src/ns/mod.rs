//! The built-in executor, [`Namespaces`]: the container is made by this
//! process from the same OCI runtime spec crun and runc are given.
//!
//! `Command::spawn` forks a child (P1) that runs our pre-exec hook: it
//! joins the run's cgroups and its private network namespace, unshares the
//! mount, pid, ipc, uts, cgroup (and network) namespaces and forks the
//! container's pid 1. P1 stays outside the container and waits; nothing
//! in the container can see it. Pid 1 mounts the root (`nodev`: no device
//! node in the image or made later can be opened), pivots into it, mounts
//! the spec's mounts, binds the host's standard device nodes, masks and
//! write-protects the kernel paths, then becomes the payload: working
//! directory (refused when it resolves outside the root), identity,
//! bounding set, seccomp filter, capabilities; every descriptor above 2
//! is closed by the exec. When pid 1 exits the kernel kills whatever it
//! left running. Setup errors are written to our own pipe as the step's
//! name plus the errno, then the process exits with 125.
//!
//! The hook runs between fork and exec: it only makes system calls on
//! data prepared before the fork (no allocation, no locks).

// pre_exec hooks, each with its SAFETY line; the hooks' code is in `child`.
#![allow(unsafe_code)]

mod child;

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::exec::{Prepared, prepared_run};
use crate::network::NetworkPool;
use crate::seccomp::ProgramCache;
use crate::spec::{Placement, container_spec};
use crate::{ExecError, Executor, ProcessIo, RootFs, RunSpec};

/// Exit code of a process whose setup failed (its reason is in the pipe).
const SETUP_FAILED: i32 = 125;

/// The built-in executor: Linux namespaces set up by this process.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    /// Compiled seccomp filters.
    programs: Arc<ProgramCache>,
    /// Private networks kept between runs.
    networks: Arc<NetworkPool>,
}

impl Namespaces {
    /// The executor (compiled seccomp filters kept in memory).
    pub fn new() -> Self {
        Namespaces::default()
    }

    /// The executor, keeping compiled seccomp filters in `dir` too (a
    /// private directory: what is there is loaded into containers).
    pub fn with_cache_dir(dir: impl Into<PathBuf>) -> Self {
        Namespaces { programs: Arc::new(ProgramCache::new(Some(dir.into()))), ..Namespaces::default() }
    }
}

impl Executor for Namespaces {
    fn run(&self, spec: &RunSpec, io: ProcessIo) -> Result<i32, ExecError> {
        prepared_run(spec, false, &self.networks, |p| run(spec, p, io, &self.programs))
    }
}

/// One mount of the spec, ready for the hook.
struct MountOp {
    /// Host source of a bind mount (cloned before the pivot), or the
    /// filesystem's source name.
    source: CString,
    target: CString,
    fstype: Option<CString>,
    flags: MsFlags,
    data: Option<CString>,
    bind: bool,
    /// A bind source that is a directory.
    is_dir: bool,
    /// The generated /etc files are skipped when the image's target
    /// cannot hold them (a dangling `/etc/resolv.conf` link).
    required: bool,
    /// proc and sysfs in a user namespace: mounted before the pivot.
    early: bool,
}

/// Everything the hook needs, as C strings and numbers made before the fork.
struct Plan {
    merged: CString,
    overlay: Option<CString>,
    bind_root: Option<CString>,
    /// Flags of the root mount (`nodev` unless privileged).
    root_flags: MsFlags,
    mounts: Vec<MountOp>,
    /// Host device nodes bound at the same path in the container.
    devices: Vec<CString>,
    masked: Vec<CString>,
    readonly: Vec<CString>,
    hostname: CString,
    namespaces: CloneFlags,
    /// Rootless private network: the user namespace owning it, joined first.
    user_ns: Option<RawFd>,
    netns: Option<RawFd>,
    new_net: bool,
    /// `cgroup.procs` files (open) to join first.
    cgroups: Vec<OwnedFd>,
    /// Who the payload is and what it may do.
    id: Identity,
}

/// What the payload becomes before the exec (a container's first process,
/// or one `exec` adds): working directory, identity, bounding set,
/// seccomp filter, capabilities.
struct Identity {
    cwd: CString,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    /// Capabilities kept in the bounding set (bit N: capability N), and
    /// the last capability the kernel knows.
    bounding: u64,
    last_cap: u32,
    /// The final effective and permitted set.
    caps: u64,
    no_new_privs: bool,
    seccomp: Option<Vec<libc::sock_filter>>,
    /// Make standard input the payload's controlling terminal.
    tty: bool,
    /// In a user namespace (setgroups may be denied there).
    userns: bool,
    err_fd: RawFd,
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

fn cstring(b: &[u8], what: &str) -> Result<CString, ExecError> {
    CString::new(b).map_err(|_| ExecError::Invalid(format!("{what} contains a NUL byte")))
}

fn cpath(p: &Path, what: &str) -> Result<CString, ExecError> {
    cstring(p.as_os_str().as_bytes(), what)
}

/// A mount's options as mount(2) flags plus the filesystem data, and
/// whether it is a bind mount.
fn mount_options(options: &[String]) -> (MsFlags, String, bool) {
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    let mut bind = false;
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "rprivate" | "private" | "rslave" | "slave" | "rshared" | "shared" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "bind" | "rbind" => bind = true,
            other => data.push(other),
        }
    }
    (flags, data.join(","), bind)
}

/// `capabilities` as a bit mask.
fn cap_mask(caps: Option<&std::collections::HashSet<oci_spec::runtime::Capability>>) -> u64 {
    caps.into_iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().and_then(crate::security::capability_number))
        .fold(0, |m, n| m | 1 << n)
}

fn plan(
    run: &RunSpec,
    oci: &Spec,
    p: &Prepared<'_>,
    cgroups: Vec<OwnedFd>,
    err_fd: RawFd,
    programs: &ProgramCache,
) -> Result<Plan, ExecError> {
    let merged = p.scratch.join("root");
    std::fs::create_dir(&merged).map_err(|e| ExecError::Io { action: "create", path: merged.clone(), source: e })?;
    let (overlay, bind_root) = match &run.root {
        RootFs::Dir(d) => (None, Some(cpath(d, "the root path")?)),
        RootFs::Overlay { lower, upper, .. } if lower.is_empty() => (None, Some(cpath(upper, "the root path")?)),
        RootFs::Overlay { lower, upper, work } => {
            let data = cargohold_layerfs::overlay_options(lower, Some((upper, work)));
            (Some(cstring(data.as_bytes(), "a layer path")?), None)
        }
    };
    let userns = cargohold_layerfs::rootless::in_user_namespace();
    if userns && (run.user.uid != 0 || run.user.gid != 0) && cargohold_layerfs::rootless::only_root_mapped() {
        return Err(ExecError::Invalid(format!(
            "rootless: the user namespace maps only root, so user {}:{} cannot run \
             (give the user subordinate IDs in /etc/subuid and /etc/subgid, or run as root)",
            run.user.uid, run.user.gid
        )));
    }
    let privileged = run.security.privileged;
    let mut mounts = Vec::new();
    for m in oci.mounts().iter().flatten() {
        let (flags, data, bind) = mount_options(m.options().as_deref().unwrap_or_default());
        let fstype = m.typ().clone().unwrap_or_default();
        let bind = bind || fstype == "bind";
        let source = m.source().clone().unwrap_or_default();
        let target = m.destination();
        if !target.is_absolute() {
            return Err(ExecError::Invalid(format!("mount target {} is not absolute", target.display())));
        }
        let generated = [&p.files.hosts, &p.files.hostname, &p.files.resolv].contains(&&source);
        let is_dir = bind
            && std::fs::metadata(&source)
                .map_err(|e| ExecError::Io { action: "find the mount source", path: source.clone(), source: e })?
                .is_dir();
        let mut flags = flags;
        if target == Path::new("/dev") && fstype == "tmpfs" && !privileged {
            // Device nodes are bound from the host below; nothing made
            // on this tmpfs can be opened.
            flags |= MsFlags::MS_NODEV;
        }
        mounts.push(MountOp {
            source: cpath(&source, "a mount source")?,
            target: cpath(target, "a mount target")?,
            fstype: (!bind).then(|| cstring(fstype.as_bytes(), "a filesystem type")).transpose()?,
            flags,
            data: (!data.is_empty()).then(|| cstring(data.as_bytes(), "mount options")).transpose()?,
            bind,
            is_dir,
            required: !generated,
            early: userns && !bind && (fstype == "proc" || fstype == "sysfs"),
        });
    }
    if mounts.len() > 60 {
        return Err(ExecError::Invalid(format!("{} mounts (at most 60)", mounts.len())));
    }
    let linux = oci.linux().clone().unwrap_or_default();
    let devices =
        linux.devices().iter().flatten().map(|d| cpath(d.path(), "a device path")).collect::<Result<Vec<_>, _>>()?;
    let strings = |v: &Option<Vec<String>>| -> Result<Vec<CString>, ExecError> {
        v.iter().flatten().map(|s| cstring(s.as_bytes(), "a masked path")).collect()
    };
    let mut namespaces = CloneFlags::empty();
    let mut new_net = false;
    for ns in linux.namespaces().iter().flatten() {
        namespaces |= match ns.typ() {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::Network if ns.path().is_none() => {
                new_net = true;
                CloneFlags::CLONE_NEWNET
            }
            _ => CloneFlags::empty(),
        };
    }
    let process = oci.process().clone().unwrap_or_default();
    let caps = process.capabilities().clone().unwrap_or_default();
    let last_cap =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    let seccomp = match linux.seccomp() {
        Some(s) => Some(programs.compile(s)?.filter),
        None => None,
    };
    let cwd = process.cwd().clone();
    let cwd = if cwd.as_os_str().is_empty() { "/".into() } else { cwd };
    if !cwd.is_absolute() {
        return Err(ExecError::Invalid(format!("working directory {} is not absolute", cwd.display())));
    }
    let user = process.user();
    Ok(Plan {
        merged: cpath(&merged, "the scratch path")?,
        overlay,
        bind_root,
        root_flags: if privileged { MsFlags::empty() } else { MsFlags::MS_NODEV },
        mounts,
        devices,
        masked: strings(linux.masked_paths())?,
        readonly: strings(linux.readonly_paths())?,
        hostname: cstring(oci.hostname().clone().unwrap_or_default().as_bytes(), "the host name")?,
        namespaces,
        user_ns: p.netns.and_then(|n| n.user_fd()).map(|u| u.as_raw_fd()),
        netns: p.netns.map(|n| n.fd().as_raw_fd()),
        new_net,
        cgroups,
        id: Identity {
            cwd: cpath(&cwd, "the working directory")?,
            uid: Uid::from_raw(user.uid()),
            gid: Gid::from_raw(user.gid()),
            groups: user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect(),
            bounding: cap_mask(caps.bounding().as_ref()),
            last_cap,
            caps: cap_mask(caps.effective().as_ref()),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp,
            tty: run.tty,
            userns,
            err_fd,
        },
    })
}

fn run(spec: &RunSpec, p: Prepared<'_>, io: ProcessIo, programs: &ProgramCache) -> Result<i32, ExecError> {
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ExecError::Io {
        action: "create a pipe in",
        path: p.scratch.into(),
        source: e.into(),
    })?;
    let merged = p.scratch.join("root");
    let netns_file = p.scratch.join("netns");
    let placement = Placement {
        root: &merged,
        files: p.files,
        netns: p.netns.map(|_| netns_file.as_path()),
        user_ns: None,
        userns: cargohold_layerfs::rootless::in_user_namespace(),
        kernel: &p.kernel,
    };
    let oci = container_spec(spec, placement)?;
    let mut p = p;
    let cgroups = std::mem::take(&mut p.cgroups);
    let prepared = plan(spec, &oci, &p, cgroups, err_w.as_raw_fd(), programs)?;
    let args = oci.process().as_ref().map(|p| p.args().clone().unwrap_or_default()).unwrap_or_default();
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).env_clear().stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
    for kv in &spec.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => cmd.env(k, v),
            _ => cmd.env(kv, ""),
        };
    }
    // SAFETY: the hook only makes system calls (through nix and libc) on data
    // prepared before the fork and never returns into Rust code that could
    // take a lock held by another thread of the parent; see the module docs.
    unsafe {
        cmd.pre_exec(move || child::hook(&prepared));
    }
    spawn_and_wait(cmd, err_r, err_w, &spec.argv[0])
}

/// Spawns `cmd` (whose hook reports setup failures on `err_w`), waits for
/// it, and returns its exit code or the setup error.
fn spawn_and_wait(mut cmd: Command, err_r: OwnedFd, err_w: OwnedFd, program: &str) -> Result<i32, ExecError> {
    let spawned = cmd.spawn();
    drop(err_w);
    let status = match spawned {
        Ok(mut child) => child.wait(),
        Err(e) => Err(e),
    };
    let mut msg = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut msg);
    if msg.len() >= 4 {
        let (text, errno) = msg.split_at(msg.len() - 4);
        let errno = i32::from_le_bytes(errno.try_into().expect("four bytes"));
        return Err(ExecError::Setup {
            step: String::from_utf8_lossy(text).into_owned(),
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    let status = status.map_err(|e| ExecError::Spawn { program: program.to_owned(), source: e })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// A process to add to a running container (`exec`).
#[derive(Debug, Clone)]
pub struct ExecProcess {
    /// Program and arguments (looked up in the container's `PATH`).
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: Vec<String>,
    /// Working directory in the container.
    pub cwd: String,
    /// Who runs it.
    pub user: crate::UserIds,
    /// Standard input is a terminal to make its controlling one.
    pub tty: bool,
}

/// The namespaces to join and the identity to take for an `exec`.
struct Join {
    namespaces: Vec<(OwnedFd, CloneFlags)>,
    id: Identity,
}

/// Runs `process` in the running container whose first process is `pid`
/// (as this host sees it), joining its namespaces and taking on the same
/// confinement as its first process (from `spec`, the container's run
/// spec): capabilities, seccomp filter, `no_new_privs`. Returns its exit
/// code.
pub fn exec_in(
    pid: i32,
    spec: &RunSpec,
    process: &ExecProcess,
    io: ProcessIo,
    programs: &ProgramCache,
) -> Result<i32, ExecError> {
    if process.argv.is_empty() {
        return Err(ExecError::Invalid("no command to run".into()));
    }
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ExecError::Io {
        action: "create a pipe in",
        path: "/proc/self".into(),
        source: e.into(),
    })?;
    // The container's confinement, from its spec as its executor made it.
    let files =
        crate::HostFiles { hosts: "/dev/null".into(), hostname: "/dev/null".into(), resolv: "/dev/null".into() };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let userns = cargohold_layerfs::rootless::in_user_namespace();
    let placement =
        Placement { root: Path::new("/"), files: &files, netns: None, user_ns: None, userns, kernel: kernel.trim() };
    let oci = container_spec(spec, placement)?;
    let caps = oci.process().as_ref().and_then(|p| p.capabilities().clone()).unwrap_or_default();
    let seccomp = match oci.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(programs.compile(s)?.filter),
        None => None,
    };
    let mut namespaces = Vec::new();
    let mut joins_user = false;
    for (name, flag) in [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let same = std::fs::read_link(&theirs).ok() == std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
        if same {
            continue;
        }
        let fd = std::fs::File::open(&theirs).map_err(|e| ExecError::Io {
            action: "open the namespace",
            path: theirs.into(),
            source: e,
        })?;
        joins_user |= flag == CloneFlags::CLONE_NEWUSER;
        namespaces.push((OwnedFd::from(fd), flag));
    }
    let join = Join {
        namespaces,
        id: Identity {
            cwd: cstring(if process.cwd.is_empty() { b"/" } else { process.cwd.as_bytes() }, "the working directory")?,
            uid: Uid::from_raw(process.user.uid),
            gid: Gid::from_raw(process.user.gid),
            groups: process.user.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
            bounding: cap_mask(caps.bounding().as_ref()),
            last_cap: last_cap(),
            caps: cap_mask(caps.effective().as_ref()),
            no_new_privs: spec.security.no_new_privileges,
            seccomp,
            tty: process.tty,
            userns: userns || joins_user,
            err_fd: err_w.as_raw_fd(),
        },
    };
    let mut cmd = Command::new(&process.argv[0]);
    cmd.args(&process.argv[1..]).env_clear().stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
    for kv in &process.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => cmd.env(k, v),
            _ => cmd.env(kv, ""),
        };
    }
    // Into the container's cgroups first (its limits hold for this process
    // too), then its namespaces.
    join_before_exec(&mut cmd, crate::cgroup::procs_of(pid)?);
    // SAFETY: as for `run`: system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || child::join(&join.namespaces, &join.id));
    }
    spawn_and_wait(cmd, err_r, err_w, &process.argv[0])
}

/// Makes the process `cmd` starts join the cgroups whose `cgroup.procs`
/// files are open as `procs`, between fork and exec.
pub(crate) fn join_before_exec(cmd: &mut Command, procs: Vec<OwnedFd>) {
    if procs.is_empty() {
        return;
    }
    // SAFETY: the hook only writes to descriptors opened before the fork;
    // no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &procs {
                nix::unistd::write(fd, b"0").map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// Marks every descriptor above 2 close-on-exec in the process `cmd`
/// starts, so nothing the caller inherited reaches the runtime or the
/// container.
pub(crate) fn no_inherited_fds(cmd: &mut Command) {
    // SAFETY: one system call on this process' own descriptor table.
    unsafe {
        cmd.pre_exec(|| {
            libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int);
            Ok(())
        });
    }
}

/// A user namespace owning a new network namespace, for rootless private
/// networks: pasta must join a user namespace that owns the network
/// namespace and is not the one it runs in, and the container joins the
/// same user namespace, so that its root is not the namespace's owner (an
/// owner holds every capability over the network namespace). It maps every
/// ID of ours to itself; a short-lived forked helper makes both.
pub(crate) fn user_and_network_namespaces() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: the child makes only system calls on data prepared before the
    // fork (see child::namespace_helper) and never returns.
    let helper = match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            child::namespace_helper(&ready_w, &go_r, [ready_r.as_raw_fd(), go_w.as_raw_fd()])
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(go_r);
    let said = |step: &str| -> std::io::Result<()> {
        let mut b = [0u8; 4];
        match nix::unistd::read(&ready_r, &mut b).unwrap_or(0) {
            1 => Ok(()),
            4 => Err(std::io::Error::from_raw_os_error(i32::from_le_bytes(b))),
            _ => Err(std::io::Error::other(format!("the namespace helper died before {step}"))),
        }
    };
    let made = said("its user namespace").and_then(|()| {
        let proc = |f: &str| format!("/proc/{helper}/{f}");
        let ours = |f: &str| std::fs::read_to_string(format!("/proc/self/{f}"));
        // Every ID of ours, mapped to itself.
        let identity = |map: String| -> String {
            map.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    Some(format!("{} {} {}\n", f.first()?, f.first()?, f.get(2)?))
                })
                .collect()
        };
        if ours("setgroups")?.trim() == "deny" {
            std::fs::write(proc("setgroups"), "deny")?;
        }
        std::fs::write(proc("uid_map"), identity(ours("uid_map")?))?;
        std::fs::write(proc("gid_map"), identity(ours("gid_map")?))?;
        nix::unistd::write(&go_w, b"1")?;
        said("its network namespace")?;
        let open = |ns: &str| std::fs::File::open(proc(&format!("ns/{ns}"))).map(OwnedFd::from);
        Ok((open("user")?, open("net")?))
    });
    drop(go_w);
    let _ = nix::sys::wait::waitpid(helper, None);
    made
}

/// kill(2): `signal` (any number, real-time ones included, which nix's
/// `Signal` lacks) to `pid`.
pub(crate) fn send_signal(pid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Gives back memory a long-lived process (a container's monitor) used
/// only to start up: free heap pages go back to the system, and the pages
/// of read-only file mappings (program text and constants of this binary
/// and its libraries, which a monitor mostly never runs again) are dropped
/// from this process; the few it still uses are faulted in again from the
/// page cache. Mappings with private (written) pages are left alone, so
/// nothing this process changed is lost.
pub fn release_startup_memory() {
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
    let mut current: Option<(usize, usize, bool)> = None;
    let mut clean = true;
    let drop_range = |range: Option<(usize, usize, bool)>, clean: bool| {
        if let Some((start, end, candidate)) = range
            && candidate
            && clean
        {
            // SAFETY: the range is a whole read-only, file-backed mapping of
            // this process with no private (anonymous, dirty) pages, so
            // MADV_DONTNEED only drops clean page-cache pages that are read
            // back from the file on the next access; no data is lost.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            drop_range(current.take(), clean);
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            let candidate = perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-') && path.starts_with('/');
            current = Some((start, end, candidate));
            clean = true;
        } else if let Some(rest) = first.strip_suffix(':')
            && matches!(rest, "Anonymous" | "Private_Dirty" | "Shared_Dirty" | "Swap")
            && fields.next().is_some_and(|v| v != "0")
        {
            clean = false;
        }
    }
    drop_range(current, clean);
}
