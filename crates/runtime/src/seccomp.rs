//! Seccomp: profiles in Docker's JSON format (podman's default is
//! containers-common's `/usr/share/containers/seccomp.json`), resolved for a
//! container's capabilities and this machine's architecture into the OCI
//! runtime spec's `linux.seccomp` (what crun and runc get), and compiled
//! with libseccomp (the library crun and runc use) into the classic BPF
//! program the built-in executor installs.
//!
//! On top of any profile, a container without `CAP_SYS_ADMIN` may not create
//! namespaces (`unshare`, `clone` with `CLONE_NEW*`; `clone3` answers ENOSYS
//! so that libc falls back to `clone`) nor use the kernel keyrings: Docker's
//! default profile forbids both, containers-common's allows them (a
//! container could otherwise make a user namespace of its own and reach
//! kernel code written for root).

use std::collections::BTreeSet;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use crate::ExecError;

/// Where podman's default profile is installed (Debian's containers-common).
pub const CONTAINERS_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// A profile in Docker's format: rules that apply depending on the
/// container's capabilities and the architecture.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Go's name for this machine's architecture, as profiles name them.
fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn native_scmp_arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::ScmpArchX86_64,
        "x86" => Arch::ScmpArchX86,
        "aarch64" => Arch::ScmpArchAarch64,
        "arm" => Arch::ScmpArchArm,
        "powerpc64" => Arch::ScmpArchPpc64le,
        "s390x" => Arch::ScmpArchS390x,
        "riscv64" => Arch::ScmpArchRiscv64,
        _ => Arch::ScmpArchNative,
    }
}

/// `major.minor` of a kernel release such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

impl Profile {
    /// Reads a profile file.
    pub fn read(path: &Path) -> Result<Profile, ExecError> {
        let text = std::fs::read(path).map_err(|e| ExecError::Io {
            action: "read the seccomp profile",
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text, path)
    }

    /// Parses a profile (`path` names it in errors).
    pub fn parse(text: &[u8], path: &Path) -> Result<Profile, ExecError> {
        serde_json::from_slice(text).map_err(|e| ExecError::Seccomp {
            profile: path.to_path_buf(),
            message: format!("not a seccomp profile in Docker's format: {e}"),
        })
    }

    /// podman's default: containers-common's profile when it is installed,
    /// else [`Profile::builtin`].
    pub fn default_profile() -> Result<Profile, ExecError> {
        let path = Path::new(CONTAINERS_PROFILE);
        if path.exists() { Self::read(path) } else { Ok(Self::builtin()) }
    }

    /// The built-in profile, for hosts without containers-common: every
    /// system call libseccomp knows on this architecture except those the
    /// default profile refuses (kernel modules, kexec, reboot, swap, clock,
    /// accounting, raw I/O, BPF, perf, handles, quotas, mounts,
    /// namespaces, keyrings, io_uring, obsolete calls), the capability-gated
    /// ones when the capability is held, and `personality` only for the
    /// Linux personalities; anything else fails with ENOSYS.
    pub fn builtin() -> Profile {
        const REFUSED: &[&str] = &[
            "_sysctl",
            "acct",
            "add_key",
            "afs_syscall",
            "bdflush",
            "bpf",
            "clock_adjtime",
            "clock_settime",
            "create_module",
            "delete_module",
            "fanotify_init",
            "finit_module",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "get_kernel_syms",
            "getpmsg",
            "init_module",
            "io_pgetevents",
            "io_uring_enter",
            "io_uring_register",
            "io_uring_setup",
            "ioperm",
            "iopl",
            "kcmp",
            "kexec_file_load",
            "kexec_load",
            "keyctl",
            "lookup_dcookie",
            "migrate_pages",
            "mount",
            "mount_setattr",
            "move_mount",
            "move_pages",
            "name_to_handle_at",
            "nfsservctl",
            "open_by_handle_at",
            "open_tree",
            "perf_event_open",
            "personality",
            "pivot_root",
            "process_madvise",
            "putpmsg",
            "query_module",
            "quotactl",
            "quotactl_fd",
            "reboot",
            "request_key",
            "security",
            "setdomainname",
            "sethostname",
            "setns",
            "settimeofday",
            "stime",
            "swapoff",
            "swapon",
            "sysfs",
            "syslog",
            "tuxcall",
            "umount",
            "umount2",
            "unshare",
            "uselib",
            "userfaultfd",
            "ustat",
            "vhangup",
            "vm86",
            "vm86old",
            "vmsplice",
            "vserver",
        ];
        const BY_CAP: &[(&str, &[&str])] = &[
            ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
            (
                "CAP_SYS_ADMIN",
                &[
                    "bpf",
                    "fanotify_init",
                    "lookup_dcookie",
                    "mount",
                    "umount2",
                    "perf_event_open",
                    "quotactl",
                    "setdomainname",
                    "sethostname",
                    "setns",
                    "syslog",
                    "pivot_root",
                    "name_to_handle_at",
                    "fsopen",
                    "fsconfig",
                    "fsmount",
                    "fspick",
                    "open_tree",
                    "move_mount",
                    "mount_setattr",
                    "unshare",
                ],
            ),
            ("CAP_SYS_BOOT", &["reboot"]),
            ("CAP_SYS_CHROOT", &["chroot"]),
            ("CAP_SYS_MODULE", &["delete_module", "finit_module", "init_module", "query_module"]),
            ("CAP_SYS_PACCT", &["acct"]),
            ("CAP_SYS_PTRACE", &["kcmp", "process_madvise"]),
            ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
            ("CAP_SYS_TIME", &["clock_adjtime", "clock_settime", "settimeofday", "stime"]),
            ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
        ];
        let arch = ScmpArch::native();
        let mut names: Vec<String> = (0..1024)
            .filter_map(|n| ScmpSyscall::from(n).get_name_by_arch(arch).ok())
            .filter(|n| !REFUSED.contains(&n.as_str()) && n != "chroot")
            .collect();
        names.sort();
        names.dedup();
        let rule = |names: Vec<String>, caps: Option<&str>, args: Option<Vec<LinuxSeccompArg>>| Rule {
            names: Some(names),
            name: None,
            action: LinuxSeccompAction::ScmpActAllow,
            errno_ret: None,
            args,
            includes: caps.map(|c| Condition { caps: Some(vec![c.to_owned()]), ..Condition::default() }),
            excludes: None,
        };
        let mut rules = vec![rule(names, None, None)];
        for (cap, calls) in BY_CAP {
            rules.push(rule(calls.iter().map(|s| s.to_string()).collect(), Some(cap), None));
        }
        // PER_LINUX, PER_LINUX32, UNAME26 variants and the query (0xffffffff).
        for persona in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
            let arg = arg(0, persona, None, LinuxSeccompOperator::ScmpCmpEq);
            rules.push(rule(vec!["personality".into()], None, Some(vec![arg])));
        }
        Profile {
            default_action: LinuxSeccompAction::ScmpActErrno,
            default_errno_ret: Some(libc::ENOSYS as u32),
            arch_map: None,
            architectures: None,
            syscalls: Some(rules),
        }
    }

    /// The rules that apply to a container holding `caps` on this machine,
    /// hardened as the module docs say, in the runtime spec's form.
    pub fn resolve(&self, caps: &[&str], kernel_release: &str) -> LinuxSeccomp {
        let arch = native_arch();
        let kernel = kernel_version(kernel_release);
        let mut syscalls = Vec::new();
        for rule in self.syscalls.iter().flatten() {
            let inc = rule.includes.clone().unwrap_or_default();
            let exc = rule.excludes.clone().unwrap_or_default();
            if inc.arches.as_ref().is_some_and(|a| !a.is_empty() && !a.iter().any(|x| x == arch)) {
                continue;
            }
            if inc.caps.as_ref().is_some_and(|c| !c.iter().all(|x| caps.contains(&x.as_str()))) {
                continue;
            }
            if inc.min_kernel.as_deref().is_some_and(|m| kernel_version(m) > kernel) {
                continue;
            }
            if exc.arches.as_ref().is_some_and(|a| a.iter().any(|x| x == arch)) {
                continue;
            }
            if exc.caps.as_ref().is_some_and(|c| c.iter().any(|x| caps.contains(&x.as_str()))) {
                continue;
            }
            let mut names: Vec<String> = rule.names.clone().unwrap_or_default();
            names.extend(rule.name.clone());
            if names.is_empty() {
                continue;
            }
            let mut s = LinuxSyscall::default();
            s.set_names(names);
            s.set_action(rule.action);
            s.set_errno_ret(rule.errno_ret);
            s.set_args(rule.args.clone().filter(|a| !a.is_empty()));
            syscalls.push(s);
        }
        if !caps.contains(&"CAP_SYS_ADMIN") {
            harden(&mut syscalls);
        }
        let native = native_scmp_arch();
        let architectures = match &self.arch_map {
            Some(map) => map.iter().find(|m| m.architecture == native).map(|m| {
                std::iter::once(m.architecture).chain(m.sub_architectures.clone().unwrap_or_default()).collect()
            }),
            None => self.architectures.clone(),
        };
        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures(architectures.filter(|a: &Vec<Arch>| !a.is_empty()));
        out.set_syscalls(Some(syscalls));
        out
    }
}

/// The namespace flags (`CLONE_NEWNS` ... `CLONE_NEWUSER`, `CLONE_NEWCGROUP`,
/// `CLONE_NEWTIME`) that only `CAP_SYS_ADMIN` may pass to clone or unshare.
const NAMESPACE_FLAGS: [u64; 8] =
    [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000, 0x80];

fn arg(index: usize, value: u64, two: Option<u64>, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
    match two {
        Some(t) => b.value_two(t),
        None => b,
    }
    .build()
    .expect("every field of a seccomp argument is set")
}

fn call(
    name: &str,
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(vec![name.to_owned()]);
    s.set_action(action);
    s.set_errno_ret(errno);
    s.set_args(args);
    s
}

/// Docker's rules over a permissive profile: no namespaces, no keyrings.
fn harden(syscalls: &mut Vec<LinuxSyscall>) {
    let taken = ["clone", "clone3", "unshare", "keyctl", "add_key", "request_key"];
    for s in syscalls.iter_mut() {
        let names: Vec<String> = s.names().iter().filter(|n| !taken.contains(&n.as_str())).cloned().collect();
        s.set_names(names);
    }
    syscalls.retain(|s| !s.names().is_empty());
    let eperm = Some(libc::EPERM as u32);
    let all: u64 = NAMESPACE_FLAGS.iter().sum();
    use LinuxSeccompAction::{ScmpActAllow, ScmpActErrno};
    use LinuxSeccompOperator::ScmpCmpMaskedEq;
    // Flags are clone's first argument on the architectures we build for
    // (s390 swaps them; it is not one of them).
    for name in ["clone", "unshare"] {
        syscalls.push(call(name, ScmpActAllow, None, Some(vec![arg(0, all, Some(0), ScmpCmpMaskedEq)])));
        for flag in NAMESPACE_FLAGS {
            syscalls.push(call(name, ScmpActErrno, eperm, Some(vec![arg(0, flag, Some(flag), ScmpCmpMaskedEq)])));
        }
    }
    syscalls.push(call("clone3", ScmpActErrno, Some(libc::ENOSYS as u32), None));
    for name in ["keyctl", "add_key", "request_key"] {
        syscalls.push(call(name, ScmpActErrno, eperm, None));
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, default_errno: Option<u32>) -> ScmpAction {
    use LinuxSeccompAction as A;
    match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno.or(default_errno).unwrap_or(libc::EPERM as u32) as i32),
        A::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActNotify => ScmpAction::Notify,
    }
}

fn compare(a: &LinuxSeccompArg) -> ScmpArgCompare {
    use LinuxSeccompOperator as O;
    let index = a.index() as u32;
    let (op, datum) = match a.op() {
        O::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        O::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        O::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        O::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        O::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(a.value()), a.value_two().unwrap_or(0)),
    };
    ScmpArgCompare::new(index, op, datum)
}

fn arch_of(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        _ => return None,
    })
}

/// A compiled filter: the classic BPF program for `PR_SET_SECCOMP`.
#[derive(Debug, Clone)]
pub struct Program {
    /// The instructions.
    pub filter: Vec<libc::sock_filter>,
}

/// Compiles `seccomp` with libseccomp for this machine. System calls the
/// library does not know on this architecture are skipped, as crun and
/// runc do.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Program, ExecError> {
    let profile = PathBuf::from("linux.seccomp");
    let err = |what: &str, e: libseccomp::error::SeccompError| ExecError::Seccomp {
        profile: profile.clone(),
        message: format!("{what}: {e}"),
    };
    let default = action(seccomp.default_action(), seccomp.default_errno_ret(), None);
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err("create a filter", e))?;
    // no_new_privs is the executor's choice, not the filter's.
    ctx.set_ctl_nnp(false).map_err(|e| err("configure the filter", e))?;
    for a in seccomp.architectures().iter().flatten().filter_map(|a| arch_of(*a)) {
        if a != ScmpArch::native() && a != ScmpArch::Native {
            ctx.add_arch(a).map_err(|e| err("add an architecture", e))?;
        }
    }
    let mut known: BTreeSet<String> = BTreeSet::new();
    for rule in seccomp.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret(), seccomp.default_errno_ret());
        if act == default {
            continue;
        }
        for name in rule.names() {
            let Ok(sys) = ScmpSyscall::from_name(name) else { continue };
            known.insert(name.clone());
            let args: Vec<ScmpArgCompare> = rule.args().iter().flatten().map(compare).collect();
            let mut indices: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
            indices.sort_unstable();
            let repeated = indices.windows(2).any(|w| w[0] == w[1]);
            let added = if args.is_empty() {
                ctx.add_rule(act, sys)
            } else if repeated {
                // libseccomp takes one comparison per argument in a rule:
                // several on one argument become rules of their own.
                args.iter()
                    .try_for_each(|a| ctx.add_rule_conditional(act, sys, std::slice::from_ref(a)).map(drop))
                    .map(|()| &mut ctx)
            } else {
                ctx.add_rule_conditional(act, sys, &args)
            };
            added.map_err(|e| err(&format!("add the rule for {name}"), e))?;
        }
    }
    let mut file = tempfile::tempfile().map_err(|e| ExecError::Io {
        action: "create a file for the seccomp program in",
        path: std::env::temp_dir(),
        source: e,
    })?;
    ctx.export_bpf(&file).map_err(|e| err("export the program", e))?;
    let mut bytes = Vec::new();
    file.rewind().and_then(|()| file.read_to_end(&mut bytes)).map_err(|e| ExecError::Io {
        action: "read the seccomp program from",
        path: std::env::temp_dir(),
        source: e,
    })?;
    Ok(Program { filter: instructions(&bytes) })
}

/// Compiled filters kept by an executor: in memory, and in `dir` when
/// given (the store's private directory), keyed by the SHA-256 of the
/// resolved rules and the libseccomp version. Compiling podman's profile
/// for x86-64 with its x86 and x32 sub-architectures takes libseccomp about
/// 11 ms, more than the rest of a container's start.
#[derive(Debug, Default)]
pub struct ProgramCache {
    dir: Option<PathBuf>,
    memory: std::sync::Mutex<std::collections::HashMap<String, Program>>,
}

impl ProgramCache {
    /// A cache in memory, and on disk under `dir` when given.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ProgramCache { dir, memory: Default::default() }
    }

    /// `seccomp` compiled, from the cache when it has it.
    pub fn compile(&self, seccomp: &LinuxSeccomp) -> Result<Program, ExecError> {
        use sha2::Digest;
        let version = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro));
        let mut h = sha2::Sha256::new();
        h.update(version.unwrap_or_default().as_bytes());
        h.update(serde_json::to_vec(seccomp).map_err(|e| ExecError::Invalid(format!("linux.seccomp: {e}")))?);
        let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = memory.get(&key) {
            return Ok(p.clone());
        }
        let file = self.dir.as_ref().map(|d| d.join(format!("{key}.bpf")));
        let cached = file.as_ref().and_then(|f| std::fs::read(f).ok()).filter(|b| !b.is_empty() && b.len() % 8 == 0);
        let program = match cached {
            Some(bytes) => Program { filter: instructions(&bytes) },
            None => {
                let p = compile(seccomp)?;
                if let (Some(dir), Some(file)) = (&self.dir, &file) {
                    // Best effort: a cache that cannot be written is only slower.
                    let _ = std::fs::create_dir_all(dir).and_then(|()| {
                        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
                        std::io::Write::write_all(&mut tmp, &bytes_of(&p.filter))?;
                        tmp.persist(file).map(drop).map_err(|e| e.error)
                    });
                }
                p
            }
        };
        memory.insert(key, program.clone());
        Ok(program)
    }
}

fn instructions(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

fn bytes_of(filter: &[libc::sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(filter.len() * 8);
    for i in filter {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.extend_from_slice(&[i.jt, i.jf]);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &[&str] = crate::security::DEFAULT_CAPABILITIES;

    fn names(s: &LinuxSeccomp, action: LinuxSeccompAction) -> BTreeSet<String> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.action() == action && r.args().is_none())
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn builtin_refuses_what_the_default_refuses() {
        let s = Profile::builtin().resolve(DEFAULT, "6.1.0");
        let allowed = names(&s, LinuxSeccompAction::ScmpActAllow);
        for n in ["read", "write", "execve", "chroot", "openat", "setresuid"] {
            assert!(allowed.contains(n), "{n} allowed");
        }
        for n in ["mount", "unshare", "keyctl", "bpf", "kexec_load", "init_module", "clone"] {
            assert!(!allowed.contains(n), "{n} not allowed unconditionally");
        }
        let admin: Vec<&str> = DEFAULT.iter().copied().chain(["CAP_SYS_ADMIN"]).collect();
        assert!(
            names(&Profile::builtin().resolve(&admin, "6.1.0"), LinuxSeccompAction::ScmpActAllow).contains("mount")
        );
        let program = compile(&s).unwrap();
        assert!(!program.filter.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let cache = ProgramCache::new(Some(dir.path().join("seccomp")));
        assert_eq!(bytes_of(&cache.compile(&s).unwrap().filter), bytes_of(&program.filter));
        let from_disk = ProgramCache::new(Some(dir.path().join("seccomp"))).compile(&s).unwrap();
        assert_eq!(bytes_of(&from_disk.filter), bytes_of(&program.filter), "the same program from the disk cache");
        assert_eq!(std::fs::read_dir(dir.path().join("seccomp")).unwrap().count(), 1);
    }

    #[test]
    fn conditions_follow_caps_arches_and_kernels() {
        let p: Profile = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
                "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
                "syscalls":[
                 {"names":["a1"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_TIME"]}},
                 {"names":["a2"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_CHOWN"]}},
                 {"names":["a3"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"9.9"}},
                 {"names":["a4"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["s390x"]}},
                 {"names":["a5"],"action":"SCMP_ACT_ALLOW","args":null,"includes":{},"excludes":{}}]}"#,
        )
        .unwrap();
        let s = p.resolve(DEFAULT, "6.1.0-18-amd64");
        assert_eq!(names(&s, LinuxSeccompAction::ScmpActAllow), ["a5".to_owned()].into_iter().collect());
        let e = Profile::parse(b"{", Path::new("/p.json")).unwrap_err().to_string();
        assert!(e.contains("/p.json"), "{e}");
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v769"), (6, 18));
        assert_eq!(kernel_version("4.8"), (4, 8));
        assert!(kernel_version("5.10") < kernel_version("6.1"));
    }
}
