//! The one container description: a [`RunSpec`] becomes an OCI runtime
//! [`Spec`] (`config.json`), which crun and runc are given and which the
//! built-in executor applies itself, so the executors cannot drift apart.
//!
//! The defaults are podman's: Docker's 14 capabilities in the bounding,
//! permitted and effective sets (none inheritable or ambient), the default
//! seccomp profile, Docker's masked and read-only paths plus `/sys/dev/block`
//! and `/sys/devices/virtual/powercap`, `/sys` read-only, a cgroup
//! namespace, and devices limited to the standard nodes (any node may be
//! made, none other opened). `--privileged` lifts all of it.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::seccomp::Profile;
use crate::{ExecError, HostFiles, Network, RunSpec, Seccomp};

/// Where `--init`'s reaper is mounted in the container (in `/dev`, a tmpfs
/// of the container's own, so the image gets no new mount point).
pub const INIT_PATH: &str = "/dev/init";

/// Paths the container cannot read: files are covered by `/dev/null`,
/// directories by an empty read-only tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/dev/block",
    "/sys/devices/virtual/powercap",
];

/// Paths the container can read but not write.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The device nodes every container has: (path, major, minor).
pub const DEFAULT_DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn invalid(e: impl std::fmt::Display) -> ExecError {
    ExecError::Invalid(format!("the container spec: {e}"))
}

fn mount(destination: &str, kind: &str, source: impl AsRef<Path>, options: &[&str]) -> Result<Mount, ExecError> {
    MountBuilder::default()
        .destination(destination)
        .typ(kind)
        .source(source.as_ref())
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(invalid)
}

/// The device cgroup rules: Docker's (any node may be made; only the
/// standard ones, terminals and `/dev/net/tun` read or written).
pub fn device_rules(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>, ExecError> {
    let rule = |allow: bool, typ: Option<LinuxDeviceType>, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access(access);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().map_err(invalid)
    };
    if privileged {
        return Ok(vec![rule(true, None, None, None, "rwm")?]);
    }
    let c = Some(LinuxDeviceType::C);
    let mut rules = vec![
        rule(false, None, None, None, "rwm")?,
        rule(true, c, None, None, "m")?,
        rule(true, Some(LinuxDeviceType::B), None, None, "m")?,
    ];
    for (_, major, minor) in DEFAULT_DEVICES {
        rules.push(rule(true, c, Some(*major), Some(*minor), "rwm")?);
    }
    rules.push(rule(true, c, Some(5), Some(1), "rwm")?); // /dev/console
    rules.push(rule(true, c, Some(5), Some(2), "rwm")?); // /dev/ptmx
    rules.push(rule(true, c, Some(136), None, "rwm")?); // /dev/pts/*
    rules.push(rule(true, c, Some(10), Some(200), "rwm")?); // /dev/net/tun
    Ok(rules)
}

fn devices() -> Result<Vec<LinuxDevice>, ExecError> {
    DEFAULT_DEVICES
        .iter()
        .map(|(path, major, minor)| {
            LinuxDeviceBuilder::default()
                .path(PathBuf::from(path))
                .typ(LinuxDeviceType::C)
                .major(*major)
                .minor(*minor)
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(invalid)
        })
        .collect()
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, ExecError> {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    match path {
        Some(p) => b.path(p),
        None => b,
    }
    .build()
    .map_err(invalid)
}

/// This process' IDs mapped to themselves (what a joined rootless user
/// namespace maps; runc wants the mappings spelled out).
fn identity_map(file: &str) -> Result<Vec<LinuxIdMapping>, ExecError> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).map_err(|e| ExecError::Io {
        action: "read",
        path: format!("/proc/self/{file}").into(),
        source: e,
    })?;
    text.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (f.len() == 3).then(|| {
                LinuxIdMappingBuilder::default().container_id(f[0]).host_id(f[0]).size(f[2]).build().map_err(invalid)
            })
        })
        .collect()
}

/// Where the built-in and OCI executors put things: the root, the
/// generated files, and the network namespace to join (a private network
/// set up by pasta), if any.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The container's root directory.
    pub root: &'a Path,
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub files: &'a HostFiles,
    /// A network namespace file to join instead of making a new one.
    pub netns: Option<&'a Path>,
    /// Rootless private network: the user namespace that owns `netns`, to
    /// join too (it maps every ID of this process' namespace to itself).
    pub user_ns: Option<&'a Path>,
    /// This process is in a user namespace (rootless): `/sys` comes from
    /// the host when there is no network namespace of the container's own.
    pub userns: bool,
    /// The kernel release (`uname -r`), for the seccomp profile's
    /// `minKernel` conditions.
    pub kernel: &'a str,
}

/// The OCI runtime spec for `run` placed as `at` says.
pub fn container_spec(run: &RunSpec, at: Placement<'_>) -> Result<Spec, ExecError> {
    let sec = &run.security;
    let caps = sec.capabilities()?;
    let cap_set: std::collections::HashSet<Capability> = caps
        .iter()
        .map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).map_err(invalid))
        .collect::<Result<_, _>>()?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .effective(cap_set.clone())
        .permitted(cap_set)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()
        .map_err(invalid)?;
    let mut args = run.argv.clone();
    if run.init.is_some() {
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }
    let user = UserBuilder::default()
        .uid(run.user.uid)
        .gid(run.user.gid)
        .additional_gids(run.user.groups.clone())
        .build()
        .map_err(invalid)?;
    let cwd = if run.cwd.is_empty() { "/" } else { run.cwd.as_str() };
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(args)
        .env(run.env.clone())
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(sec.no_new_privileges)
        .build()
        .map_err(invalid)?;
    let own_net = run.network != Network::Host;
    let sys = if at.userns && !own_net {
        // sysfs can only be mounted with a network namespace of our own.
        mount("/sys", "bind", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"])?
    } else if sec.privileged {
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev"])?
    } else {
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"])?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        sys,
        mount("/etc/hosts", "bind", &at.files.hosts, &["rbind", "rprivate", "nosuid", "nodev"])?,
        mount("/etc/hostname", "bind", &at.files.hostname, &["rbind", "rprivate", "nosuid", "nodev"])?,
        mount("/etc/resolv.conf", "bind", &at.files.resolv, &["rbind", "rprivate", "nosuid", "nodev"])?,
    ];
    if run.systemd {
        // systemd manages the cgroup subtree its namespace is rooted at.
        mounts.push(mount("/sys/fs/cgroup", "cgroup2", "cgroup2", &["nosuid", "noexec", "nodev", "rw"])?);
    }
    if let Some(init) = &run.init {
        mounts.push(mount(INIT_PATH, "bind", init, &["rbind", "rprivate", "ro", "nosuid", "nodev"])?);
    }
    for b in &run.binds {
        let target = b.target.to_str().ok_or_else(|| invalid(format!("mount target {:?} is not UTF-8", b.target)))?;
        let mut options = vec!["rbind", "rprivate"];
        if b.readonly {
            options.push("ro");
        }
        if !sec.privileged {
            // No device node on a volume can be opened.
            options.push("nodev");
        }
        mounts.push(mount(target, "bind", &b.source, &options)?);
    }
    for t in &run.tmpfs {
        let target = t.target.to_str().ok_or_else(|| invalid(format!("tmpfs target {:?} is not UTF-8", t.target)))?;
        let mut options = vec!["nosuid", "nodev"];
        options.extend(t.options.split(',').filter(|o| !o.is_empty()));
        mounts.push(mount(target, "tmpfs", "tmpfs", &options)?);
    }
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Ipc, None)?,
        namespace(LinuxNamespaceType::Uts, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Cgroup, None)?,
    ];
    if own_net {
        namespaces.push(namespace(LinuxNamespaceType::Network, at.netns)?);
    }
    let mut mappings = None;
    if let Some(user) = at.user_ns {
        namespaces.insert(0, namespace(LinuxNamespaceType::User, Some(user))?);
        mappings = Some((identity_map("uid_map")?, identity_map("gid_map")?));
    }
    let mut resources = LinuxResourcesBuilder::default().devices(device_rules(sec.privileged)?);
    if let Some(bytes) = run.limits.memory {
        let bytes = i64::try_from(bytes).map_err(invalid)?;
        resources = resources.memory(LinuxMemoryBuilder::default().limit(bytes).swap(bytes).build().map_err(invalid)?);
    }
    if let Some(cpus) = run.limits.cpus {
        let quota = ((cpus * 100_000.0) as i64).max(1000);
        resources = resources.cpu(LinuxCpuBuilder::default().quota(quota).period(100_000u64).build().map_err(invalid)?);
    }
    let mut linux = LinuxBuilder::default();
    if let Some((uids, gids)) = mappings {
        linux = linux.uid_mappings(uids).gid_mappings(gids);
    }
    let mut linux = linux.namespaces(namespaces).resources(resources.build().map_err(invalid)?).devices(devices()?);
    if !sec.privileged {
        linux = linux
            .masked_paths(MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let profile = match &sec.seccomp {
            Seccomp::Default => Some(Profile::default_profile()?),
            Seccomp::Profile(p) => Some(Profile::read(p)?),
            Seccomp::Unconfined => None,
        };
        if let Some(p) = profile {
            linux = linux.seccomp(p.resolve(&caps, at.kernel));
        }
    }
    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(at.root).readonly(false).build().map_err(invalid)?)
        .hostname(run.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux.build().map_err(invalid)?)
        .build()
        .map_err(invalid)
}
