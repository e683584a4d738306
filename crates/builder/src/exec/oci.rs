//! The OCI runtime executor (`--runtime crun|runc`): the run becomes an
//! OCI runtime bundle (`config.json` plus the root) and the runtime binary
//! starts it. The root (an overlay of the layers, or a directory) is
//! mounted in a private mount namespace of one thread, from which the
//! runtime is started, so nothing stays mounted on the host. Limits use
//! this crate's own cgroups, joined by the runtime process before it execs.
//!
//! crun is run with `--cgroup-manager=disabled` (the container stays in the
//! cgroup it was started in, ours), and, on hosts where `/sys/fs/cgroup` is
//! not a cgroup2 mount (hybrid v1/v2), with cgroup2 mounted there in the
//! private namespace: crun refuses hybrid hosts otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::{ExecError, Executor, HostFiles, Network, ProcessIo, RootFs, RunSpec, prepared_run};
use crate::build::mounts::{in_private_mounts, mount_overlay};

/// Runs containers with an OCI runtime binary.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    binary: PathBuf,
    crun: bool,
}

/// Docker's default capabilities.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

impl OciRuntime {
    /// The runtime `name` (`crun`, `runc`, or a path to either), found in
    /// `PATH`.
    pub fn new(name: &str) -> Result<Self, ExecError> {
        let binary = if name.contains('/') {
            PathBuf::from(name)
        } else {
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
                .ok_or_else(|| ExecError::Invalid(format!("runtime {name:?} is not installed (not found in PATH)")))?
        };
        let file = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !matches!(file.as_str(), "crun" | "runc") {
            return Err(ExecError::Invalid(format!("runtime {name:?}: crun and runc are supported")));
        }
        Ok(OciRuntime { binary, crun: file == "crun" })
    }

    /// The runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }
}

fn bind(source: &Path, destination: &Path, readonly: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if readonly {
        options.push("ro");
    }
    json!({ "destination": destination, "type": "bind", "source": source, "options": options })
}

/// `/sys`: sysfs, or in a user namespace without a network namespace of
/// its own (where sysfs cannot be mounted) the host's, bound read-only.
fn sys_mount(spec: &RunSpec) -> Value {
    if cargohold_layerfs::rootless::in_user_namespace() && spec.network != Network::None {
        return json!({ "destination": "/sys", "type": "bind", "source": "/sys",
                       "options": ["rbind", "nosuid", "noexec", "nodev", "ro"] });
    }
    json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] })
}

/// The bundle's `config.json` for `spec` with its root at `root`.
fn config(spec: &RunSpec, root: &Path, files: &HostFiles) -> Value {
    let mut mounts = vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        sys_mount(spec),
        bind(&files.hosts, Path::new("/etc/hosts"), false),
        bind(&files.hostname, Path::new("/etc/hostname"), false),
        bind(&files.resolv, Path::new("/etc/resolv.conf"), false),
    ];
    mounts.extend(spec.binds.iter().map(|b| bind(&b.source, &b.target, b.readonly)));
    let mut namespaces =
        vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"})];
    if spec.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    let caps = CAPABILITIES;
    // runc makes cgroups of its own and applies these; crun (cgroups
    // disabled) stays in ours, which already carry them.
    let mut resources = serde_json::Map::new();
    if let Some(bytes) = spec.limits.memory {
        resources.insert("memory".into(), json!({ "limit": bytes, "swap": bytes }));
    }
    if let Some(cpus) = spec.limits.cpus {
        resources.insert("cpu".into(), json!({ "quota": ((cpus * 100_000.0) as i64).max(1000), "period": 100_000 }));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": spec.user.uid, "gid": spec.user.gid, "additionalGids": spec.user.groups },
            "args": spec.argv,
            "env": spec.env,
            "cwd": if spec.cwd.is_empty() { "/" } else { spec.cwd.as_str() },
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "noNewPrivileges": false,
        },
        "root": { "path": root, "readonly": false },
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

/// Whether `/sys/fs/cgroup` is a cgroup2 mount.
fn unified_cgroups() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|t| {
        t.lines()
            .filter_map(|l| l.split_once(" - "))
            .any(|(left, right)| left.split(' ').nth(4) == Some("/sys/fs/cgroup") && right.starts_with("cgroup2 "))
    })
}

impl Executor for OciRuntime {
    fn run(&self, spec: &RunSpec, io: ProcessIo) -> Result<i32, ExecError> {
        prepared_run(spec, |scratch, files, cgroups| {
            let bundle = scratch.join("bundle");
            let state = scratch.join("state");
            let mountpoint = bundle.join("rootfs");
            for d in [&bundle, &state, &mountpoint] {
                std::fs::create_dir_all(d).map_err(|e| ExecError::Io {
                    action: "create",
                    path: d.clone(),
                    source: e,
                })?;
            }
            let id = super::unique_name();
            let crun = self.crun;
            let binary = self.binary.clone();
            in_private_mounts(move || -> Result<i32, ExecError> {
                let root = match &spec.root {
                    RootFs::Dir(d) => d.clone(),
                    RootFs::Overlay { lower, upper, .. } if lower.is_empty() => upper.clone(),
                    RootFs::Overlay { lower, upper, work } => {
                        mount_overlay(lower, Some((upper, work)), &mountpoint).map_err(|e| ExecError::Setup {
                            step: "mount the root".into(),
                            source: std::io::Error::other(e),
                        })?;
                        mountpoint.clone()
                    }
                };
                let cwd = spec.cwd.trim_start_matches('/');
                if !cwd.is_empty() {
                    let r = cargohold_layerfs::Root::open(&root).map_err(|e| ExecError::Io {
                        action: "open",
                        path: root.clone(),
                        source: e.into(),
                    })?;
                    r.mkdir_all(Path::new(cwd)).map_err(|e| ExecError::Io {
                        action: "create the working directory in",
                        path: root.clone(),
                        source: e.into(),
                    })?;
                }
                if crun && !unified_cgroups() {
                    use nix::mount::{MsFlags, mount};
                    if cargohold_layerfs::rootless::in_user_namespace() {
                        // cgroup2 can be mounted in a cgroup namespace of our own.
                        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).map_err(|e| ExecError::Setup {
                            step: "create a cgroup namespace for crun".into(),
                            source: e.into(),
                        })?;
                    }
                    mount(Some("none"), "/sys/fs/cgroup", Some("cgroup2"), MsFlags::empty(), None::<&str>)
                        .map_err(|e| ExecError::Setup { step: "mount cgroup2 for crun".into(), source: e.into() })?;
                }
                let text = serde_json::to_vec_pretty(&config(spec, &root, files)).expect("a JSON value serializes");
                let cfg = bundle.join("config.json");
                std::fs::write(&cfg, text).map_err(|e| ExecError::Io {
                    action: "write",
                    path: cfg.clone(),
                    source: e,
                })?;
                let mut cmd = Command::new(&binary);
                cmd.arg("--root").arg(&state);
                if crun {
                    cmd.arg("--cgroup-manager=disabled");
                }
                cmd.arg("run").arg("--bundle").arg(&bundle).arg(&id);
                cmd.stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
                super::ns::join_before_exec(&mut cmd, cgroups);
                let status =
                    cmd.status().map_err(|e| ExecError::Spawn { program: binary.display().to_string(), source: e })?;
                // Whatever state the runtime kept (a failed start) goes too.
                let _ = Command::new(&binary)
                    .arg("--root")
                    .arg(&state)
                    .args(["delete", "--force", &id])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                use std::os::unix::process::ExitStatusExt;
                Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
            })
            .map_err(|e| ExecError::Setup { step: e, source: std::io::Error::other("private mount namespace") })?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_runtimes_are_named() {
        let e = OciRuntime::new("/bin/true").unwrap_err().to_string();
        assert!(e.contains("crun and runc"), "{e}");
        let e = OciRuntime::new("no-such-runtime-xyz").unwrap_err().to_string();
        assert!(e.contains("not installed"), "{e}");
    }
}
