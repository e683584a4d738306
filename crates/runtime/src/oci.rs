//! The OCI runtime executor (`--runtime crun|runc`): the run becomes an
//! OCI runtime bundle (`config.json`, the same spec the built-in executor
//! applies, plus the root) and the runtime binary starts it. The root (an
//! overlay of the layers, or a directory) is mounted in a private mount
//! namespace of one thread, from which the runtime is started, so nothing
//! stays mounted on the host. Memory and CPU limits use this crate's own
//! cgroups, joined by the runtime process before it execs; runc also
//! applies them, and the device rules, through its own cgroups.
//!
//! crun refuses hybrid cgroup hosts (v1 controllers plus a v2 mount): it is
//! run with cgroup2 mounted over `/sys/fs/cgroup` in the private namespace
//! and `--cgroup-manager=disabled`, and the device rules it then cannot
//! apply are held by a v1 devices cgroup of ours that the container starts
//! in. Where there is no v1 devices controller (a unified host) crun
//! manages its cgroups itself and applies the rules with eBPF.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exec::{Prepared, prepared_run};
use crate::mounts::{in_private_mounts, mount_overlay};
use crate::spec::{Placement, container_spec};
use crate::{ExecError, Executor, ProcessIo, RootFs, RunSpec};

/// Runs containers with an OCI runtime binary.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    binary: PathBuf,
    crun: bool,
    /// Private networks kept between runs.
    networks: std::sync::Arc<crate::network::NetworkPool>,
}

impl OciRuntime {
    /// The runtime `name` (`crun`, `runc`, or a path to either), found in
    /// `PATH`.
    pub fn new(name: &str) -> Result<Self, ExecError> {
        let binary = if name.contains('/') {
            PathBuf::from(name)
        } else {
            crate::network::find_program(name)
                .ok_or_else(|| ExecError::Invalid(format!("runtime {name:?} is not installed (not found in PATH)")))?
        };
        let file = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !matches!(file.as_str(), "crun" | "runc") {
            return Err(ExecError::Invalid(format!("runtime {name:?}: crun and runc are supported")));
        }
        Ok(OciRuntime { binary, crun: file == "crun", networks: Default::default() })
    }

    /// The runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }
}

/// Whether `/sys/fs/cgroup` is a cgroup2 mount.
fn unified_cgroups() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|t| {
        t.lines()
            .filter_map(|l| l.split_once(" - "))
            .any(|(left, right)| left.split(' ').nth(4) == Some("/sys/fs/cgroup") && right.starts_with("cgroup2 "))
    })
}

fn setup(step: &str) -> impl FnOnce(nix::errno::Errno) -> ExecError + '_ {
    move |e| ExecError::Setup { step: step.into(), source: e.into() }
}

impl OciRuntime {
    fn run_bundle(&self, spec: &RunSpec, p: Prepared<'_>, io: ProcessIo, v1_devices: bool) -> Result<i32, ExecError> {
        let bundle = p.scratch.join("bundle");
        let state = p.scratch.join("state");
        let mountpoint = bundle.join("rootfs");
        for d in [&bundle, &state, &mountpoint] {
            std::fs::create_dir_all(d).map_err(|e| ExecError::Io { action: "create", path: d.clone(), source: e })?;
        }
        let id = crate::exec::unique_name();
        let userns = cargohold_layerfs::rootless::in_user_namespace();
        let root = match &spec.root {
            RootFs::Dir(d) => d.clone(),
            RootFs::Overlay { lower, upper, .. } if lower.is_empty() => upper.clone(),
            RootFs::Overlay { .. } => mountpoint.clone(),
        };
        let cwd = spec.cwd.trim_start_matches('/');
        let netns_file = p.scratch.join("netns-runtime");
        let userns_file = p.scratch.join("userns-runtime");
        let Prepared { files, cgroups, netns, kernel, .. } = p;
        let placement = Placement {
            root: &root,
            files,
            netns: netns.map(|_| netns_file.as_path()),
            user_ns: netns.and_then(|n| n.user_fd()).map(|_| userns_file.as_path()),
            userns,
            kernel: &kernel,
        };
        let config = container_spec(spec, placement)?;
        in_private_mounts(move || -> Result<i32, ExecError> {
            if let RootFs::Overlay { lower, upper, work } = &spec.root
                && !lower.is_empty()
            {
                mount_overlay(lower, Some((upper, work)), &mountpoint).map_err(|e| ExecError::Setup {
                    step: "mount the root".into(),
                    source: std::io::Error::other(e),
                })?;
            }
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
            if let Some(net) = netns {
                // The runtime joins the private network by path: the
                // namespaces bound to files only this mount namespace sees.
                let mut binds = vec![(net.fd(), &netns_file)];
                binds.extend(net.user_fd().map(|u| (u, &userns_file)));
                for (fd, file) in binds {
                    crate::mounts::bind_fd(fd.as_fd(), file).map_err(|e| ExecError::Setup {
                        step: format!("bind a namespace of the private network to {}", file.display()),
                        source: e,
                    })?;
                }
            }
            if self.crun && !unified_cgroups() {
                use nix::mount::{MsFlags, mount};
                if userns {
                    // cgroup2 can be mounted in a cgroup namespace of our own.
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                        .map_err(setup("create a cgroup namespace for crun"))?;
                }
                mount(Some("none"), "/sys/fs/cgroup", Some("cgroup2"), MsFlags::empty(), None::<&str>)
                    .map_err(setup("mount cgroup2 for crun"))?;
            }
            let text =
                serde_json::to_vec_pretty(&config).map_err(|e| ExecError::Invalid(format!("config.json: {e}")))?;
            let cfg = bundle.join("config.json");
            std::fs::write(&cfg, text).map_err(|e| ExecError::Io { action: "write", path: cfg.clone(), source: e })?;
            let mut cmd = Command::new(&self.binary);
            cmd.arg("--root").arg(&state);
            if self.crun {
                let manager = if userns || v1_devices { "disabled" } else { "cgroupfs" };
                cmd.arg(format!("--cgroup-manager={manager}"));
            }
            cmd.arg("run").arg("--bundle").arg(&bundle).arg(&id);
            cmd.stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
            crate::ns::join_before_exec(&mut cmd, cgroups);
            crate::ns::no_inherited_fds(&mut cmd);
            let status =
                cmd.status().map_err(|e| ExecError::Spawn { program: self.binary.display().to_string(), source: e })?;
            // Whatever state the runtime kept (a failed start) goes too.
            let _ = Command::new(&self.binary)
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
    }
}

impl Executor for OciRuntime {
    fn run(&self, spec: &RunSpec, io: ProcessIo) -> Result<i32, ExecError> {
        if spec.systemd {
            return Err(ExecError::Option {
                option: "--systemd".into(),
                message: format!(
                    "systemd containers run on the built-in executor only (not {} yet): leave out --runtime",
                    self.binary.display()
                ),
            });
        }
        let v1_devices =
            self.crun && !cargohold_layerfs::rootless::in_user_namespace() && crate::cgroup::has_v1_devices();
        prepared_run(spec, v1_devices, &self.networks, |p| self.run_bundle(spec, p, io, v1_devices))
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
