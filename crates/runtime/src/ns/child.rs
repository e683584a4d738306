//! What runs between fork and exec (see the parent module): P1's hook,
//! the container's pid 1 and its hardening. Only system calls on data
//! prepared before the fork: no allocation, no locks.

// Fork children and raw system calls, each block with its SAFETY line.
#![allow(unsafe_code)]

use std::ffi::{CStr, OsStr};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::stat::{Mode, SFlag, umask};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, fork, pivot_root, setgroups, sethostname, setresgid, setresuid};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use super::{Identity, MountOp, Plan, SETUP_FAILED};

/// The pre-exec hook, in P1.
pub(super) fn hook(p: &Plan) -> std::io::Result<()> {
    // Into the limiting cgroups first: everything forked from here is in
    // them, and the cgroup namespace made below is rooted there.
    for procs in &p.cgroups {
        if let Err(e) = nix::unistd::write(procs, b"0") {
            fail(p.id.err_fd, "join the cgroup", c"", e);
        }
    }
    if let Some(fd) = p.user_ns {
        // SAFETY: the descriptor is the private network's user namespace,
        // open in the parent for the whole run.
        let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Err(e) = nix::sched::setns(ns, CloneFlags::CLONE_NEWUSER) {
            fail(p.id.err_fd, "join the private network's user namespace", c"", e);
        }
    }
    if let Some(fd) = p.netns {
        // SAFETY: the descriptor is the private network's namespace, open
        // in the parent for the whole run.
        let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Err(e) = nix::sched::setns(ns, CloneFlags::CLONE_NEWNET) {
            fail(p.id.err_fd, "join the private network namespace", c"", e);
        }
    }
    if let Err(e) = unshare(p.namespaces) {
        fail(p.id.err_fd, "create namespaces", c"", e);
    }
    // SAFETY: this process is single-threaded (a fork child); the child only
    // makes system calls before it execs or exits.
    match unsafe { fork() } {
        Err(e) => fail(p.id.err_fd, "fork the container's init", c"", e),
        Ok(ForkResult::Parent { child }) => {
            close_inherited();
            wait_and_exit(child)
        }
        Ok(ForkResult::Child) => container(p),
    }
}

/// The pre-exec hook of `exec`: into the running container's namespaces,
/// then a fork (the pid namespace takes effect for children), whose child
/// becomes the payload.
pub(super) fn join(namespaces: &[(OwnedFd, CloneFlags)], id: &Identity) -> std::io::Result<()> {
    for (fd, flag) in namespaces {
        if let Err(e) = nix::sched::setns(fd, *flag) {
            fail(id.err_fd, "join a namespace of the container", c"", e);
        }
    }
    // SAFETY: single-threaded fork child; see `hook`.
    match unsafe { fork() } {
        Err(e) => fail(id.err_fd, "fork into the container", c"", e),
        Ok(ForkResult::Parent { child }) => {
            close_inherited();
            wait_and_exit(child)
        }
        Ok(ForkResult::Child) => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            payload(id)
        }
    }
}

/// Mounts `m` (not a bind) at its target, after the pivot unless early.
fn mount_fs(m: &MountOp, target: &CStr, e: RawFd) {
    let fstype = m.fstype.as_deref();
    if let Err(x) = mount(Some(m.source.as_c_str()), target, fstype, m.flags, m.data.as_deref()) {
        fail(e, "mount", target, x);
    }
}

/// The container's pid 1: mounts, pivot, hardening; the standard library
/// then execs the payload (or `--init`'s reaper) in this process.
fn container(p: &Plan) -> std::io::Result<()> {
    let e = p.id.err_fd;
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    umask(Mode::empty());
    let none: Option<&CStr> = None;
    if let Err(x) = mount(none, c"/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none) {
        fail(e, "make mounts private", c"", x);
    }
    let root_mount = match (&p.overlay, &p.bind_root) {
        (Some(data), _) => {
            mount(Some(c"overlay"), p.merged.as_c_str(), Some(c"overlay"), p.root_flags, Some(data.as_c_str()))
        }
        (None, Some(dir)) => {
            mount(Some(dir.as_c_str()), p.merged.as_c_str(), none, MsFlags::MS_BIND | MsFlags::MS_REC, none).and_then(
                |()| {
                    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | p.root_flags;
                    mount(none, p.merged.as_c_str(), none, flags, none)
                },
            )
        }
        (None, None) => Ok(()),
    };
    if let Err(x) = root_mount {
        fail(e, "mount the root filesystem at", &p.merged, x);
    }
    if let Err(x) = chdir(p.merged.as_c_str()) {
        fail(e, "enter", &p.merged, x);
    }
    // In a user namespace the kernel lets proc (and sysfs) be mounted only
    // where the host's are visible: before the pivot, on real directories
    // of the image (never its symlinks), relative to the new root.
    let mut buf = [0u8; 4096];
    for m in p.mounts.iter().filter(|m| m.early) {
        let rel = relative(&mut buf, m.target.to_bytes());
        match nix::unistd::mkdir(rel, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(x) => fail(e, "create", &m.target, x),
        }
        match nix::sys::stat::lstat(rel) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {}
            Ok(_) => fail(e, "mount on (not a directory in the image)", &m.target, Errno::ENOTDIR),
            Err(x) => fail(e, "find", &m.target, x),
        }
        mount_fs(m, rel, e);
    }
    // Bind sources (and the host's device nodes) are cloned now, while the
    // host is visible, as detached mount trees attached after the pivot.
    let mut sources: [Option<OwnedFd>; 64] = [const { None }; 64];
    let mut devices: [Option<OwnedFd>; 16] = [const { None }; 16];
    let clone = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE;
    for (i, m) in p.mounts.iter().enumerate().filter(|(_, m)| m.bind).take(sources.len()) {
        match rustix::mount::open_tree(rustix::fs::CWD, m.source.as_c_str(), clone) {
            Ok(fd) => sources[i] = Some(fd),
            Err(x) => fail(e, "clone the mount source", &m.source, Errno::from_raw(x.raw_os_error())),
        }
    }
    for (i, dev) in p.devices.iter().enumerate().take(devices.len()) {
        match rustix::mount::open_tree(rustix::fs::CWD, dev.as_c_str(), clone) {
            Ok(fd) => devices[i] = Some(fd),
            Err(x) => fail(e, "clone the host device", dev, Errno::from_raw(x.raw_os_error())),
        }
    }
    // A terminal (-t) is also the container's /dev/console, as runtimes
    // make it: programs find their terminal's name there (ttyname).
    // The terminal is reached by its path in this (copied) mount namespace
    // and must be the same device as standard input.
    let mut link = [0u8; 256];
    let console = if p.id.tty {
        // SAFETY: readlink(2) into a buffer on the stack, one byte kept for
        // the NUL.
        let n = unsafe { libc::readlink(c"/proc/self/fd/0".as_ptr(), link.as_mut_ptr().cast(), link.len() - 1) };
        let path = usize::try_from(n).ok().and_then(|n| CStr::from_bytes_until_nul(&link[..=n]).ok());
        // SAFETY: descriptor 0 is the terminal this process was given.
        let stdin = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(0) }).ok();
        match (path, stdin) {
            (Some(path), Some(st)) if path.to_bytes().starts_with(b"/dev/") => {
                match rustix::mount::open_tree(rustix::fs::CWD, path, clone) {
                    Ok(fd) if rustix::fs::fstat(&fd).is_ok_and(|t| t.st_rdev == st.st_rdev) => Some(fd),
                    Ok(_) => None,
                    Err(x) => fail(e, "clone the terminal", path, Errno::from_raw(x.raw_os_error())),
                }
            }
            _ => None,
        }
    } else {
        None
    };
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
    for (i, m) in p.mounts.iter().enumerate() {
        if m.early {
            continue;
        }
        if m.bind {
            if let Some(tree) = &sources[i] {
                bind(tree, m, e);
            }
            continue;
        }
        mkdir_p(&m.target, e);
        mount_fs(m, &m.target, e);
        if m.target.to_bytes() == b"/dev" {
            dev_links(e);
        }
    }
    for (i, dev) in p.devices.iter().enumerate() {
        if let Some(tree) = &devices[i] {
            attach(tree, dev, false, e);
        }
    }
    if let Some(tree) = &console {
        attach(tree, c"/dev/console", false, e);
    }
    for path in &p.masked {
        mask(path, e);
    }
    for path in &p.readonly {
        read_only(path, e);
    }
    if let Err(x) = sethostname(OsStr::from_bytes(p.hostname.to_bytes())) {
        fail(e, "set the host name", &p.hostname, x);
    }
    if p.new_net {
        loopback_up(e);
    }
    payload(&p.id)
}

/// `/`-less copy of an absolute path, for use relative to the new root.
fn relative<'a>(buf: &'a mut [u8; 4096], path: &[u8]) -> &'a CStr {
    let rel = path.strip_prefix(b"/").unwrap_or(path);
    let rel = if rel.is_empty() { b"." as &[u8] } else { rel };
    prefix(buf, rel, rel.len())
}

/// The links every container's `/dev` has.
fn dev_links(e: RawFd) {
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
    if let Err(x) = nix::unistd::mkdir(c"/dev/pts", Mode::from_bits_truncate(0o755)) {
        fail(e, "create", c"/dev/pts", x);
    }
    for dir in [c"/dev/shm", c"/dev/mqueue"] {
        if let Err(x) = nix::unistd::mkdir(dir, Mode::from_bits_truncate(0o1777)) {
            fail(e, "create", dir, x);
        }
    }
}

/// Covers a masked path: a directory with an empty read-only tmpfs, a file
/// with `/dev/null`. Paths this kernel does not have are skipped.
fn mask(path: &CStr, e: RawFd) {
    let none: Option<&CStr> = None;
    let is_dir = match nix::sys::stat::lstat(path) {
        Ok(st) => SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
        Err(_) => return,
    };
    let done = if is_dir {
        mount(Some(c"tmpfs"), path, Some(c"tmpfs"), MsFlags::MS_RDONLY, Some(c"size=0k"))
    } else {
        mount(Some(c"/dev/null"), path, none, MsFlags::MS_BIND, none)
    };
    if let Err(x) = done {
        fail(e, "mask", path, x);
    }
}

/// Makes `path` read-only (a bind of itself, remounted).
fn read_only(path: &CStr, e: RawFd) {
    let none: Option<&CStr> = None;
    if nix::sys::stat::lstat(path).is_err() {
        return;
    }
    if let Err(x) = mount(Some(path), path, none, MsFlags::MS_BIND | MsFlags::MS_REC, none) {
        fail(e, "bind", path, x);
    }
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    if let Err(x) = mount(none, path, none, flags, none) {
        fail(e, "make read-only", path, x);
    }
}

/// The payload: terminal, working directory, identity, bounding set,
/// seccomp and capabilities; the standard library execs the program when
/// this returns.
fn payload(p: &Identity) -> std::io::Result<()> {
    let e = p.err_fd;
    default_signals();
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
    // Every inherited descriptor goes with the exec (the standard
    // library's own exec-status pipe and ours are close-on-exec already).
    // SAFETY: only sets flags on this process' descriptors.
    unsafe {
        libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int);
    }
    mkdir_p(&p.cwd, e);
    if let Err(x) = chdir(p.cwd.as_c_str()) {
        fail(e, "enter the working directory", &p.cwd, x);
    }
    // An inherited descriptor (`/proc/self/fd/N`) could name a directory
    // outside the root (CVE-2024-21626): the kernel then reports the
    // working directory as unreachable.
    let mut buf = [0u8; 4096];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if n <= 0 || buf[0] != b'/' {
        fail(e, "use the working directory (it is outside the container's root)", &p.cwd, Errno::EPERM);
    }
    if let Err(x) = nix::sys::prctl::set_keepcaps(true) {
        fail(e, "keep capabilities", c"", x);
    }
    for cap in 0..=p.last_cap.min(63) {
        if p.bounding & (1 << cap) == 0 {
            // SAFETY: a plain prctl on this process.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 && Errno::last() != Errno::EINVAL {
                fail(e, "drop from the bounding set a capability", c"", Errno::last());
            }
        }
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
    // The filter needs CAP_SYS_ADMIN (or no_new_privs) to be installed:
    // all permitted capabilities are effective until it is, then the set
    // is cut to the container's.
    let full = capget_permitted(e);
    capset(full, full, e);
    if p.no_new_privs {
        // SAFETY: a plain prctl on this process.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            fail(e, "set no_new_privs", c"", Errno::last());
        }
    }
    if let Some(filter) = &p.seccomp {
        let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
        // SAFETY: `prog` points at the filter, alive for this call.
        let r = unsafe {
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER as libc::c_ulong, &prog as *const _, 0, 0)
        };
        if r != 0 {
            fail(e, "install the seccomp filter", c"", Errno::last());
        }
    }
    let keep = p.caps & full;
    capset(keep, keep, e);
    umask(Mode::from_bits_truncate(0o022));
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn capget_permitted(e: RawFd) -> u64 {
    let mut head = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData for version 3.
    if unsafe { libc::syscall(libc::SYS_capget, &mut head as *mut CapHeader, data.as_mut_ptr()) } != 0 {
        fail(e, "read the capabilities", c"", Errno::last());
    }
    u64::from(data[0].permitted) | u64::from(data[1].permitted) << 32
}

/// Sets the effective and permitted sets; the inheritable set is emptied
/// (Docker's choice since CVE-2022-24769).
fn capset(effective: u64, permitted: u64, e: RawFd) {
    let mut head = CapHeader { version: CAP_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: effective as u32, permitted: permitted as u32, inheritable: 0 },
        CapData { effective: (effective >> 32) as u32, permitted: (permitted >> 32) as u32, inheritable: 0 },
    ];
    // SAFETY: capset reads two CapData for version 3.
    if unsafe { libc::syscall(libc::SYS_capset, &mut head as *mut CapHeader, data.as_ptr()) } != 0 {
        fail(e, "set the capabilities", c"", Errno::last());
    }
}

/// Attaches the cloned bind source of `m` at its target.
fn bind(tree: &OwnedFd, m: &MountOp, e: RawFd) {
    let target = m.target.as_c_str();
    let bytes = target.to_bytes();
    let mut buf = [0u8; 4096];
    let parent_len = bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
    if parent_len > 0 {
        let parent = prefix(&mut buf, bytes, parent_len);
        if m.required {
            mkdir_p(parent, e);
        } else if nix::unistd::access(parent, nix::unistd::AccessFlags::F_OK).is_err() {
            return;
        }
    }
    let made = if m.is_dir {
        match nix::unistd::mkdir(target, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(x) => Err(x),
        }
    } else {
        // Made only when missing: opening an image's file for writing would
        // copy it up into the container's changes.
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        match nix::fcntl::open(target, flags, Mode::from_bits_truncate(0o644)) {
            Ok(_) | Err(Errno::EEXIST) => Ok(()),
            Err(x) => Err(x),
        }
    };
    if let Err(x) = made {
        if m.required {
            fail(e, "create the mount target", target, x);
        }
        return;
    }
    if !attach(tree, target, !m.required, e) {
        return;
    }
    // The bind keeps its source's flags; the spec's are added on top.
    let extra = m.flags & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if !extra.is_empty() {
        let none: Option<&CStr> = None;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra;
        if let Err(x) = mount(none, target, none, flags, none) {
            fail(e, "set the mount flags of", target, x);
        }
    }
}

/// Moves the detached tree onto `target` (which exists); whether it did
/// (an optional mount that fails is skipped).
fn attach(tree: &OwnedFd, target: &CStr, optional: bool, e: RawFd) -> bool {
    if optional || target.to_bytes().starts_with(b"/dev/") {
        // Device nodes: an empty file to mount on, made only when missing
        // (opening an image's file for writing would copy it up into the
        // container's changes).
        let _ = nix::fcntl::open(
            target,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        );
    }
    let empty = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH;
    match rustix::mount::move_mount(tree, c"", rustix::fs::CWD, target, empty) {
        Ok(()) => true,
        Err(_) if optional => false,
        Err(x) => fail(e, "bind-mount", target, Errno::from_raw(x.raw_os_error())),
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
    drop_text_pages();
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

/// The rootless namespace helper: a new user namespace (one byte on
/// `ready`, or the errno), then, once the parent has written its ID maps and
/// said so on `go`, a network namespace in it (one more byte); it exits when
/// `go` closes. `other_ends` are the parent's ends of the two pipes.
pub(super) fn namespace_helper(ready: &OwnedFd, go: &OwnedFd, other_ends: [RawFd; 2]) -> ! {
    for fd in other_ends {
        // SAFETY: closes this process' copies of the parent's pipe ends.
        unsafe {
            libc::close(fd);
        }
    }
    let report = |e: Errno| {
        let _ = nix::unistd::write(ready, &(e as i32).to_le_bytes());
        exit(1)
    };
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
        report(e);
    }
    let _ = nix::unistd::write(ready, b"1");
    let mut buf = [0u8; 1];
    if !matches!(nix::unistd::read(go, &mut buf), Ok(1)) {
        exit(1);
    }
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
        report(e);
    }
    let _ = nix::unistd::write(ready, b"1");
    let _ = nix::unistd::read(go, &mut buf);
    exit(0)
}

/// P1 only waits from here on: the program text it was forked with (this
/// binary's and its libraries', mapped read-only and executable, never
/// written) is dropped from it, so a long-lived container's waiting parent
/// holds little memory; what it still runs is faulted in again from the
/// page cache. Reads /proc/self/maps through a buffer on the stack.
fn drop_text_pages() {
    let Ok(fd) = nix::fcntl::open(c"/proc/self/maps", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) else {
        return;
    };
    let mut buf = [0u8; 8192];
    let mut len = 0;
    loop {
        let n = match nix::unistd::read(&fd, &mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        len += n;
        let mut start = 0;
        while let Some(end) = buf[start..len].iter().position(|&b| b == b'\n') {
            drop_if_text(&buf[start..start + end]);
            start += end + 1;
        }
        buf.copy_within(start..len, 0);
        len -= start;
        if len == buf.len() {
            // A line longer than the buffer: skip it.
            len = 0;
        }
    }
}

/// `start-end perms offset dev inode path`: drops a file-backed `r-xp`
/// mapping's pages.
fn drop_if_text(line: &[u8]) {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { return };
    if perms != b"r-xp" || !fields.nth(3).is_some_and(|path| path.starts_with(b"/")) {
        return;
    }
    let hex =
        |s: &[u8]| s.iter().try_fold(0usize, |acc, &c| Some(acc.checked_mul(16)? + (c as char).to_digit(16)? as usize));
    let Some(dash) = range.iter().position(|&b| b == b'-') else { return };
    if let (Some(a), Some(b)) = (hex(&range[..dash]), hex(&range[dash + 1..]))
        && b > a
    {
        // SAFETY: a whole read-only, executable, file-backed mapping: never
        // written, so dropping its pages loses nothing (they are read back
        // from the file when run again).
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
        }
    }
}

/// The payload starts with every signal at its default action and none
/// blocked, whatever its caller ignored (`nohup` ignores SIGHUP, a
/// background job of a script SIGINT and SIGQUIT): a shell cannot trap a
/// signal ignored on entry, so a container could never be told to stop.
fn default_signals() {
    // SAFETY: sigaction and sigprocmask with values on the stack; both are
    // async-signal-safe, and this single-threaded fork child execs next.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut act.sa_mask);
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}
