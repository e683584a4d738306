//! The namespace executor's process tree.
//!
//! `Command::spawn` forks a child (P1) that runs our pre-exec hook: it
//! unshares the mount, pid, ipc, uts (and network) namespaces and forks the
//! container's init (pid 1 in the new pid namespace). Init mounts the root,
//! pivots into it, mounts `/proc`, `/sys`, `/dev` and the bind mounts, then
//! forks the payload (pid 2), which drops to the user, changes directory and
//! returns from the hook so that the standard library execs the program with
//! its environment and streams. Init and P1 wait and exit with the payload's
//! status; when init exits the kernel kills whatever the payload left running.
//! P1 and init close every descriptor above 2, so the standard library's
//! exec-status pipe is held only by the payload and `spawn` returns once the
//! program is executing. Setup errors are written to our own pipe as the
//! step's name plus the errno, then the process exits with 125.
//!
//! The hook runs between fork and exec: it only makes system calls on
//! strings prepared before the fork (no allocation, no locks).

// The one module of the crate with unsafe code: fork, pre-exec and a few raw
// calls, each with its SAFETY line.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::stat::{Mode, SFlag, makedev, mknod, umask};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, chdir, fork, pivot_root, setgroups, sethostname, setresgid, setresuid};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use super::{ExecError, HostFiles, Network, ProcessIo, RootFs, RunSpec};

/// Exit code of a process whose setup failed (its reason is in the pipe).
const SETUP_FAILED: i32 = 125;

/// Everything the hook needs, as C strings made before the fork.
struct Prepared {
    merged: CString,
    /// `merged/proc` and `merged/sys`: in a user namespace, proc and sysfs
    /// can only be mounted while the host's are still visible (before the
    /// pivot).
    merged_proc: CString,
    merged_sys: CString,
    overlay: Option<CString>,
    bind_root: Option<CString>,
    /// (host source, container target, is a directory, read-only, required)
    binds: Vec<(CString, CString, bool, bool, bool)>,
    cwd: CString,
    hostname: CString,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    new_net: bool,
    /// Make standard input the payload's controlling terminal.
    tty: bool,
    /// In a user namespace: device nodes and /sys are bind-mounted from
    /// the host instead of made.
    userns: bool,
    /// `cgroup.procs` files (open) to join first.
    cgroups: Vec<OwnedFd>,
    err_fd: RawFd,
}

fn cstring(b: &[u8], what: &str) -> Result<CString, ExecError> {
    CString::new(b).map_err(|_| ExecError::Invalid(format!("{what} contains a NUL byte")))
}

fn cpath(p: &Path, what: &str) -> Result<CString, ExecError> {
    cstring(p.as_os_str().as_bytes(), what)
}

fn prepare(
    spec: &RunSpec,
    scratch: &Path,
    files: &HostFiles,
    cgroups: Vec<OwnedFd>,
    err_fd: RawFd,
) -> Result<Prepared, ExecError> {
    let merged = scratch.join("root");
    std::fs::create_dir(&merged).map_err(|e| ExecError::Io { action: "create", path: merged.clone(), source: e })?;
    let (overlay, bind_root) = match &spec.root {
        RootFs::Dir(d) => (None, Some(cpath(d, "the root path")?)),
        RootFs::Overlay { lower, upper, .. } if lower.is_empty() => (None, Some(cpath(upper, "the root path")?)),
        RootFs::Overlay { lower, upper, work } => {
            let data = cargohold_layerfs::overlay_options(lower, Some((upper, work)));
            (Some(cstring(data.as_bytes(), "a layer path")?), None)
        }
    };
    let mut binds = vec![
        (cpath(&files.hosts, "hosts")?, c"/etc/hosts".to_owned(), false, false, false),
        (cpath(&files.hostname, "hostname")?, c"/etc/hostname".to_owned(), false, false, false),
        (cpath(&files.resolv, "resolv.conf")?, c"/etc/resolv.conf".to_owned(), false, false, false),
    ];
    if spec.binds.len() > 50 {
        return Err(ExecError::Invalid(format!("{} bind mounts (at most 50)", spec.binds.len())));
    }
    let userns = cargohold_layerfs::rootless::in_user_namespace();
    if userns {
        if (spec.user.uid != 0 || spec.user.gid != 0) && cargohold_layerfs::rootless::only_root_mapped() {
            return Err(ExecError::Invalid(format!(
                "rootless: the user namespace maps only root, so user {}:{} cannot run \
                 (give the user subordinate IDs in /etc/subuid and /etc/subgid, or run as root)",
                spec.user.uid, spec.user.gid
            )));
        }
        // mknod is not allowed in a user namespace: the host's nodes are
        // bind-mounted, as rootless Podman does.
        for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
            let host = format!("/dev/{dev}");
            binds.push((
                cstring(host.as_bytes(), "a device")?,
                cstring(host.as_bytes(), "a device")?,
                false,
                false,
                true,
            ));
        }
        if spec.network != Network::None {
            // sysfs can only be mounted with a network namespace of our own.
            binds.push((c"/sys".to_owned(), c"/sys".to_owned(), true, true, true));
        }
    }
    for b in &spec.binds {
        if !b.target.is_absolute() {
            return Err(ExecError::Invalid(format!("mount target {} is not absolute", b.target.display())));
        }
        let meta = std::fs::metadata(&b.source).map_err(|e| ExecError::Io {
            action: "find the mount source",
            path: b.source.clone(),
            source: e,
        })?;
        binds.push((
            cpath(&b.source, "a mount source")?,
            cpath(&b.target, "a mount target")?,
            meta.is_dir(),
            b.readonly,
            true,
        ));
    }
    let cwd = if spec.cwd.is_empty() { "/".to_owned() } else { spec.cwd.clone() };
    if !cwd.starts_with('/') {
        return Err(ExecError::Invalid(format!("working directory {cwd} is not absolute")));
    }
    Ok(Prepared {
        merged: cpath(&merged, "the scratch path")?,
        merged_proc: cpath(&merged.join("proc"), "the scratch path")?,
        merged_sys: cpath(&merged.join("sys"), "the scratch path")?,
        overlay,
        bind_root,
        binds,
        cwd: cstring(cwd.as_bytes(), "the working directory")?,
        hostname: cstring(spec.hostname.as_bytes(), "the host name")?,
        uid: Uid::from_raw(spec.user.uid),
        gid: Gid::from_raw(spec.user.gid),
        groups: spec.user.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
        new_net: spec.network == Network::None,
        tty: spec.tty,
        userns,
        cgroups,
        err_fd,
    })
}

pub(super) fn run(
    spec: &RunSpec,
    scratch: &Path,
    files: &HostFiles,
    cgroups: Vec<OwnedFd>,
    io: ProcessIo,
) -> Result<i32, ExecError> {
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ExecError::Io {
        action: "create a pipe in",
        path: scratch.into(),
        source: e.into(),
    })?;
    let prepared = prepare(spec, scratch, files, cgroups, err_w.as_raw_fd())?;
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..]).env_clear().stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
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
        cmd.pre_exec(move || hook(&prepared));
    }
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
    let status = status.map_err(|e| ExecError::Spawn { program: spec.argv[0].clone(), source: e })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Makes the process `cmd` starts join the cgroups whose `cgroup.procs`
/// files are open as `procs`, between fork and exec.
pub(super) fn join_before_exec(cmd: &mut Command, procs: Vec<OwnedFd>) {
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

/// Writes `step detail` and the errno to the error pipe and exits.
fn fail(fd: RawFd, step: &str, detail: &CStr, e: Errno) -> ! {
    let mut buf = [0u8; 1024];
    let mut n = 0;
    for b in step.bytes().chain(b" ".iter().copied()).chain(detail.to_bytes().iter().copied()) {
        if n < buf.len() - 4 {
            buf[n] = b;
            n += 1;
        }
    }
    buf[n..n + 4].copy_from_slice(&(e as i32).to_le_bytes());
    // SAFETY: the descriptor is our error pipe's write end, open in this
    // process until it exits; borrowing it for one write is sound.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = nix::unistd::write(fd, &buf[..n + 4]);
    exit(SETUP_FAILED)
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the forked process without running the parent's
    // atexit handlers or destructors, which must not run twice.
    unsafe { libc::_exit(code) }
}

fn close_inherited() {
    // SAFETY: closes this process' descriptors above stderr; this process
    // only waits from here on and uses none of them.
    unsafe {
        libc::close_range(3, libc::c_uint::MAX, 0);
    }
}

fn code_of(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Waits for `pid` (reaping any other child on the way) and exits with its status.
fn wait_and_exit(pid: Pid) -> ! {
    loop {
        match waitpid(None, None) {
            Ok(st) if st.pid() == Some(pid) => {
                if let Some(c) = code_of(st) {
                    exit(c)
                }
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => exit(SETUP_FAILED),
        }
    }
}

/// The pre-exec hook, in P1.
fn hook(p: &Prepared) -> std::io::Result<()> {
    // Into the limiting cgroups first: everything forked from here is in them.
    for procs in &p.cgroups {
        if let Err(e) = nix::unistd::write(procs, b"0") {
            fail(p.err_fd, "join the cgroup", c"", e);
        }
    }
    let mut flags =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if p.new_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = unshare(flags) {
        fail(p.err_fd, "create namespaces", c"", e);
    }
    // SAFETY: this process is single-threaded (a fork child); the child only
    // makes system calls before it execs or exits.
    match unsafe { fork() } {
        Err(e) => fail(p.err_fd, "fork the container's init", c"", e),
        Ok(ForkResult::Parent { child }) => {
            close_inherited();
            wait_and_exit(child)
        }
        Ok(ForkResult::Child) => init(p),
    }
}

/// Container init (pid 1): mounts, pivot, then the payload.
fn init(p: &Prepared) -> std::io::Result<()> {
    let e = p.err_fd;
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    umask(Mode::empty());
    let none: Option<&CStr> = None;
    if let Err(x) = mount(none, c"/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none) {
        fail(e, "make mounts private", c"", x);
    }
    let root_mount = match (&p.overlay, &p.bind_root) {
        (Some(data), _) => {
            mount(Some(c"overlay"), p.merged.as_c_str(), Some(c"overlay"), MsFlags::empty(), Some(data.as_c_str()))
        }
        (None, Some(dir)) => {
            mount(Some(dir.as_c_str()), p.merged.as_c_str(), none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
        }
        (None, None) => Ok(()),
    };
    if let Err(x) = root_mount {
        fail(e, "mount the root filesystem at", &p.merged, x);
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if p.userns {
        // The kernel lets a user namespace mount proc (and sysfs) only
        // where the host's are visible: before the pivot. The targets must
        // be real directories of the image, never its symlinks.
        let mut targets = vec![(p.merged_proc.as_c_str(), c"proc")];
        if p.new_net {
            targets.push((p.merged_sys.as_c_str(), c"sysfs"));
        }
        for (target, fs) in targets {
            match nix::unistd::mkdir(target, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(x) => fail(e, "create", target, x),
            }
            match nix::sys::stat::lstat(target) {
                Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {}
                Ok(_) => fail(e, "mount on (not a directory in the image)", target, Errno::ENOTDIR),
                Err(x) => fail(e, "find", target, x),
            }
            let ro = if fs == c"sysfs" { MsFlags::MS_RDONLY } else { MsFlags::empty() };
            if let Err(x) = mount(Some(fs), target, Some(fs), nosuid | ro, none) {
                fail(e, "mount", target, x);
            }
        }
    }
    // Bind sources are cloned now, while the host is visible, as detached
    // mount trees that are attached after the pivot.
    let mut sources: [Option<OwnedFd>; 64] = [const { None }; 64];
    let clone = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE;
    for (i, (src, ..)) in p.binds.iter().enumerate().take(sources.len()) {
        match rustix::mount::open_tree(rustix::fs::CWD, src.as_c_str(), clone) {
            Ok(fd) => sources[i] = Some(fd),
            Err(x) => fail(e, "clone the mount source", src, Errno::from_raw(x.raw_os_error())),
        }
    }
    if let Err(x) = chdir(p.merged.as_c_str()) {
        fail(e, "enter", &p.merged, x);
    }
    if let Err(x) = pivot_root(c".", c".") {
        fail(e, "pivot into", &p.merged, x);
    }
    if let Err(x) = umount2(c".", MntFlags::MNT_DETACH) {
        fail(e, "detach the host root", c"", x);
    }
    if let Err(x) = chdir(c"/") {
        fail(e, "enter the container root", c"", x);
    }
    // From here every path resolves inside the container: the host is gone,
    // so an image's absolute symlinks cannot point at host files.
    if !p.userns {
        mkdir_p(c"/proc", e);
        if let Err(x) = mount(Some(c"proc"), c"/proc", Some(c"proc"), nosuid, none) {
            fail(e, "mount", c"/proc", x);
        }
        mkdir_p(c"/sys", e);
        if let Err(x) = mount(Some(c"sysfs"), c"/sys", Some(c"sysfs"), nosuid | MsFlags::MS_RDONLY, none) {
            fail(e, "mount", c"/sys", x);
        }
    }
    setup_dev(e, !p.userns);
    for (i, (_, target, is_dir, ro, required)) in p.binds.iter().enumerate() {
        let Some(tree) = sources.get(i).and_then(|s| s.as_ref()) else { break };
        bind(tree, target, *is_dir, *ro, *required, e);
    }
    if let Err(x) = sethostname(OsStr::from_bytes(p.hostname.to_bytes())) {
        fail(e, "set the host name", &p.hostname, x);
    }
    if p.new_net {
        loopback_up(e);
    }
    // SAFETY: single-threaded fork child; see `hook`.
    match unsafe { fork() } {
        Err(x) => fail(e, "fork the container's process", c"", x),
        Ok(ForkResult::Parent { child }) => {
            close_inherited();
            wait_and_exit(child)
        }
        Ok(ForkResult::Child) => payload(p),
    }
}

/// The payload (pid 2): working directory and identity; the standard
/// library execs the program when this returns.
fn payload(p: &Prepared) -> std::io::Result<()> {
    let e = p.err_fd;
    if p.tty {
        // A session of its own, with the terminal on stdin as its
        // controlling terminal: job control and ^C work as in a login.
        if let Err(x) = nix::unistd::setsid() {
            fail(e, "start a session", c"", x);
        }
        // SAFETY: descriptor 0 is open (the standard library set up the
        // child's stdin before this hook) for the rest of this process.
        let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
        if let Err(x) = rustix::process::ioctl_tiocsctty(stdin) {
            fail(e, "take the terminal", c"", Errno::from_raw(x.raw_os_error()));
        }
    }
    mkdir_p(&p.cwd, e);
    if let Err(x) = chdir(p.cwd.as_c_str()) {
        fail(e, "enter the working directory", &p.cwd, x);
    }
    // setgroups is denied in a user namespace with one mapped ID.
    if !(p.userns && p.groups.is_empty())
        && let Err(x) = setgroups(&p.groups)
    {
        fail(e, "set supplementary groups", c"", x);
    }
    if let Err(x) = setresgid(p.gid, p.gid, p.gid) {
        fail(e, "set the group ID", c"", x);
    }
    if let Err(x) = setresuid(p.uid, p.uid, p.uid) {
        fail(e, "set the user ID", c"", x);
    }
    umask(Mode::from_bits_truncate(0o022));
    Ok(())
}

/// Copies `path`'s first `len` bytes plus a NUL into `buf`.
fn prefix<'a>(buf: &'a mut [u8; 4096], path: &[u8], len: usize) -> &'a CStr {
    let len = len.min(buf.len() - 1);
    buf[..len].copy_from_slice(&path[..len]);
    buf[len] = 0;
    CStr::from_bytes_until_nul(&buf[..=len]).unwrap_or(c"/")
}

/// Creates every missing directory of the absolute `path` (mode 0755).
fn mkdir_p(path: &CStr, e: RawFd) {
    let bytes = path.to_bytes();
    let mut buf = [0u8; 4096];
    for end in (1..=bytes.len()).filter(|&i| i == bytes.len() || bytes[i] == b'/') {
        let dir = prefix(&mut buf, bytes, end);
        match nix::unistd::mkdir(dir, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(x) => fail(e, "create the directory", dir, x),
        }
    }
}

/// `/dev`: a tmpfs with the standard nodes (made with mknod when
/// `make_nodes`, else bind-mounted later), links, devpts and shm.
fn setup_dev(e: RawFd, make_nodes: bool) {
    mkdir_p(c"/dev", e);
    let tmpfs = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
    if let Err(x) = mount(Some(c"tmpfs"), c"/dev", Some(c"tmpfs"), tmpfs, Some(c"mode=755,size=65536k")) {
        fail(e, "mount", c"/dev", x);
    }
    for (name, minor) in
        [(c"/dev/null", 3), (c"/dev/zero", 5), (c"/dev/full", 7), (c"/dev/random", 8), (c"/dev/urandom", 9)]
    {
        if !make_nodes {
            break;
        }
        if let Err(x) = mknod(name, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(1, minor)) {
            fail(e, "create", name, x);
        }
    }
    if make_nodes && let Err(x) = mknod(c"/dev/tty", SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(5, 0)) {
        fail(e, "create", c"/dev/tty", x);
    }
    for (target, link) in [
        (c"/proc/self/fd", c"/dev/fd"),
        (c"/proc/self/fd/0", c"/dev/stdin"),
        (c"/proc/self/fd/1", c"/dev/stdout"),
        (c"/proc/self/fd/2", c"/dev/stderr"),
        (c"pts/ptmx", c"/dev/ptmx"),
    ] {
        if let Err(x) = nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link) {
            fail(e, "create", link, x);
        }
    }
    mkdir_p(c"/dev/pts", e);
    let pts = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    if let Err(x) =
        mount(Some(c"devpts"), c"/dev/pts", Some(c"devpts"), pts, Some(c"newinstance,ptmxmode=0666,mode=0620"))
    {
        fail(e, "mount", c"/dev/pts", x);
    }
    mkdir_p(c"/dev/shm", e);
    let shm = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(x) = mount(Some(c"shm"), c"/dev/shm", Some(c"tmpfs"), shm, Some(c"mode=1777,size=65536k")) {
        fail(e, "mount", c"/dev/shm", x);
    }
}

/// Attaches the cloned mount `tree` at `target` in the container.
/// Optional mounts (the generated /etc files) are skipped when their target
/// cannot be made, e.g. a dangling `/etc/resolv.conf` symlink.
fn bind(tree: &OwnedFd, target: &CStr, is_dir: bool, ro: bool, required: bool, e: RawFd) {
    let bytes = target.to_bytes();
    let mut buf = [0u8; 4096];
    let parent_len = bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
    if parent_len > 0 {
        let parent = prefix(&mut buf, bytes, parent_len);
        if required {
            mkdir_p(parent, e);
        } else if nix::unistd::access(parent, nix::unistd::AccessFlags::F_OK).is_err() {
            return;
        }
    }
    let made = if is_dir {
        match nix::unistd::mkdir(target, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(x) => Err(x),
        }
    } else {
        nix::fcntl::open(target, OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o644))
            .map(drop)
    };
    if let Err(x) = made {
        if required {
            fail(e, "create the mount target", target, x);
        }
        return;
    }
    let none: Option<&CStr> = None;
    let empty = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH;
    if let Err(x) = rustix::mount::move_mount(tree, c"", rustix::fs::CWD, target, empty) {
        if required {
            fail(e, "bind-mount", target, Errno::from_raw(x.raw_os_error()));
        }
        return;
    }
    if ro {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(x) = mount(none, target, none, flags, none) {
            fail(e, "make read-only", target, x);
        }
    }
}

/// Brings up `lo` in a new network namespace (it starts down).
fn loopback_up(e: RawFd) {
    // SAFETY: plain socket and ioctl calls on a zeroed `ifreq` whose name is
    // set to "lo"; the socket is closed before returning.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            fail(e, "open a socket to bring up", c"lo", Errno::last());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            fail(e, "read the flags of", c"lo", Errno::last());
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) < 0 {
            fail(e, "bring up", c"lo", Errno::last());
        }
        libc::close(s);
    }
}
