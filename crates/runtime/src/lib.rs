//! Running containers without a daemon, confined as podman confines them.
//!
//! One container description, [`RunSpec`], becomes one OCI runtime spec
//! ([`container_spec`]) that every [`Executor`] applies: the built-in
//! [`Namespaces`] (namespaces made by this process, no runtime binary) or
//! [`OciRuntime`] (crun or runc given the spec as `config.json`). By
//! default a container gets Docker's 14 capabilities, podman's seccomp
//! profile ([`seccomp`]), masked and read-only kernel paths, a read-only
//! `/sys`, a cgroup namespace, the standard device nodes only, its own pid,
//! ipc, uts and mount namespaces, and a private network through pasta
//! ([`Network::Private`]); the payload is pid 1 (or `--init`'s reaper is)
//! and inherits nothing of the caller but the three standard streams.
//! [`Security`] holds the explicit opt-outs (`--cap-add`, `--privileged`,
//! `--security-opt`).
//!
//! ```no_run
//! use cargohold_runtime::{Executor, Namespaces, Network, ProcessIo, RootFs, RunSpec};
//!
//! # fn main() -> Result<(), cargohold_runtime::ExecError> {
//! let spec = RunSpec {
//!     root: RootFs::Dir("/srv/rootfs".into()),
//!     argv: vec!["/bin/sh".into(), "-c".into(), "id".into()],
//!     env: vec![cargohold_runtime::DEFAULT_PATH.into()],
//!     cwd: "/".into(),
//!     user: Default::default(),
//!     hostname: "box".into(),
//!     network: Network::None,
//!     binds: vec![],
//!     ports: vec![],
//!     tmpfs: vec![],
//!     dns: vec![],
//!     extra_hosts: vec![],
//!     limits: Default::default(),
//!     tty: false,
//!     security: Default::default(),
//!     init: None,
//!     systemd: false,
//!     state_dir: None,
//! };
//! let code = Namespaces::new().run(&spec, ProcessIo::inherit())?;
//! assert_eq!(code, 0);
//! # Ok(()) }
//! ```

mod boot;
mod cgroup;
mod container;
pub mod emulation;
mod exec;
mod mounts;
mod network;
mod ns;
mod oci;
pub mod rootless;
pub mod seccomp;
mod security;
mod spec;
mod terminal;
mod user;
mod volume;

pub use boot::{Booted, with_booted_system};
pub use cgroup::{Limits, parse_size};
pub use container::{
    Container, ContainerConfig, ContainerError, Containers, CopyReport, LogLine, LogOptions, RestartPolicy,
    State as ContainerState, Status as ContainerStatus, parse_signal,
};
pub use emulation::{BINFMT_MISC, Emulation, EmulationError, emulation};
pub use exec::{
    BindMount, DEFAULT_PATH, ExecError, Executor, HostFiles, MOUNT_POINTS, Network, ProcessIo, RootFs, RunSpec,
    SYSTEMD_TMPFS, SystemdMode, executor,
};
pub use mounts::{in_private_mounts, mount_overlay};
pub use network::{NetworkPool, PortMapping, PrivateNetwork};
pub use ns::{ExecProcess, Namespaces, release_startup_memory};
pub use oci::OciRuntime;
pub use security::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES, Seccomp, Security, capability_number};
pub use spec::{DEFAULT_DEVICES, INIT_PATH, MASKED_PATHS, Placement, READONLY_PATHS, container_spec, device_rules};
pub use terminal::with_terminal;
pub use user::{UserIds, lookup_user};
pub use volume::{MountRequest, TmpfsMount, Volume, Volumes, valid_volume_name};

/// Finds `program` in the search path ([`set_program_search_path`], else
/// the standard directories); a name with a slash is taken as a path.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    network::find_program(program)
}

pub use network::set_program_search_path;
