//! Arguments of `build`, `stage` and `run`, and how their containers run.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::JsonArgs;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Name the image (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// A build argument (repeatable).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// Build this stage (default: the last).
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step even when the build cache has it.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Platforms to build for, comma-separated (default: this host's); several make an image index.
    /// Another architecture's RUN steps run through its binfmt_misc emulator (qemu-user-static).
    #[arg(long, value_name = "OS/ARCH[/VARIANT],...")]
    pub platform: Option<String>,
    /// Refuse Dockerfiles using these instructions (comma-separated, e.g. ENTRYPOINT,CMD).
    #[arg(long, value_delimiter = ',', value_name = "INSTRUCTIONS")]
    pub deny: Vec<String>,
    /// Every timestamp in the image, in seconds since the epoch (default: SOURCE_DATE_EPOCH, else now).
    #[arg(long, value_name = "SECONDS")]
    pub timestamp: Option<u64>,
    /// Also write the image here: oci:DIR:TAG, oci-archive:FILE, docker-archive:FILE, docker://REF or
    /// docker-daemon:NAME:TAG (repeatable).
    #[arg(long = "output", short = 'o', value_name = "LOCATION")]
    pub outputs: Vec<String>,
    /// Push every --tag to its registry after the build.
    #[arg(long)]
    pub push: bool,
    /// Push the build cache of this build to a registry (docker://REF), for other machines' --cache-from.
    #[arg(long, value_name = "docker://REF")]
    pub cache_to: Option<String>,
    /// A named build context (repeatable): `NAME=DIR` or `NAME=docker-image://REF`, used by `FROM NAME` (images) and
    /// `COPY --from=NAME`.
    #[arg(long = "build-context", value_name = "NAME=DIR|docker-image://REF")]
    pub build_contexts: Vec<String>,
    /// A secret for `RUN --mount=type=secret` (repeatable): `id=NAME,src=FILE` or `id=NAME,env=VAR` (as buildx); it is
    /// never in a layer, the history or a cache key.
    #[arg(long = "secret", value_name = "id=NAME,src=FILE|env=VAR")]
    pub secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh` (repeatable, as buildx): `default` (the agent of $SSH_AUTH_SOCK) or
    /// `ID=SOCKET`; the step gets a socket forwarding to it, and `SSH_AUTH_SOCK` naming it.
    #[arg(long = "ssh", value_name = "default|ID=SOCKET")]
    pub ssh: Vec<String>,
    /// Grant an entitlement (as buildx): network.host lets RUN --network=host have the host's network.
    #[arg(long = "allow", value_name = "network.host")]
    pub allow: Vec<String>,
    /// Set a label on the image (repeatable; over the Dockerfile's LABELs).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Set an annotation on the image manifest (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Write the image ID (its config digest) to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// How progress is shown: plain (a line per step), tty (the running step redrawn in place with its time, RUN
    /// output above it; standard error must be a terminal) or auto (tty on a terminal, else plain).
    #[arg(long, default_value = "auto", value_name = "auto|plain|tty")]
    pub progress: String,
    /// Only check the Dockerfile (as `docker build --check`): parse and plan every stage, run and pull nothing,
    /// print errors and BuildKit's warnings with their lines; fail on an error.
    #[arg(long)]
    pub check: bool,
    /// Use the build cache pushed by --cache-to (repeatable; a missing one is a warning).
    #[arg(long, value_name = "docker://REF")]
    pub cache_from: Vec<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

/// How containers run (build steps, stages, run).
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// Network of the containers: private (own namespace, outbound through pasta, host loopback unreachable), none, or host.
    #[arg(long, default_value = "private", value_name = "private|none|host")]
    pub network: String,
    /// Run containers with this OCI runtime (crun or runc) instead of cargohold's own namespaces.
    #[arg(long, value_name = "crun|runc")]
    pub runtime: Option<String>,
    /// Add a capability to the default 14 (e.g. NET_ADMIN, SYS_PTRACE, ALL; repeatable).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (ALL for every one; repeatable).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give the container every capability, no seccomp filter, no masked paths, a writable /sys and usable device nodes.
    #[arg(long)]
    pub privileged: bool,
    /// seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges (repeatable).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StageArgs {
    #[command(subcommand)]
    pub action: Option<StageAction>,
    /// The image directory.
    #[arg(required = true)]
    pub dir: Option<PathBuf>,
    /// The image's repository name (stage.toml: image); the result is IMAGE:candidate.
    #[arg(long)]
    pub image: Option<String>,
    /// scratch or an image (stage.toml: base; pulled when not in the store).
    #[arg(long)]
    pub base: Option<String>,
    /// A rootfs tarball (.tar, .tar.gz, .tar.zst, .tar.xz) as the first layer over scratch (stage.toml: base_tarball).
    #[arg(long, value_name = "FILE")]
    pub base_tarball: Option<PathBuf>,
    /// The image command: a JSON array or words (stage.toml: command; default /sbin/init).
    #[arg(long)]
    pub command: Option<String>,
    /// Environment of the stage scripts (repeatable; stage.toml: the env table).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Run every stage even when the cache has it.
    #[arg(long)]
    pub no_cache: bool,
    /// Boot systemd (/sbin/init) for each stage and run its script in the booted system (stage.toml: systemd = true).
    #[arg(long)]
    pub systemd: bool,
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Every timestamp in the image, in seconds since the epoch (default: SOURCE_DATE_EPOCH, else now).
    #[arg(long, value_name = "SECONDS")]
    pub timestamp: Option<u64>,
    /// Platform of the image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Subcommand)]
pub enum StageAction {
    /// Tag IMAGE:candidate as IMAGE:TAG.
    Promote(PromoteArgs),
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The image's repository name.
    pub image: String,
    /// The new tag.
    #[arg(default_value = "latest")]
    pub tag: String,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image: a stored name (pulled when missing, see --pull), docker://REF, oci:DIR:TAG, oci-archive:FILE,
    /// docker-archive:FILE; with --rootfs, a root filesystem directory.
    pub image: String,
    /// The command and its arguments (default: the image's entrypoint and command); `--` before it is accepted.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Run in the background: print the container's ID; its output goes to `cargohold logs`.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Name the container (kept afterwards, also without -d, as docker run does).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the image's entrypoint ("" for none).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The signal `stop` sends first (-d; default TERM).
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (-d; default 10).
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Start it again when it exits (-d): no, on-failure, on-failure:N (at most N times), always, unless-stopped.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// A host path (made when missing), a named volume (made on first use) or, with one path, an anonymous volume (repeatable).
    #[arg(short = 'v', long = "volume", value_name = "HOST|NAME:CONTAINER[:ro]")]
    pub volumes: Vec<String>,
    /// A mount as Docker writes it: type=bind, volume or tmpfs, source=.., target=.., readonly, tmpfs-size=.. (repeatable).
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,
    /// A tmpfs at PATH, optionally with options (size=64m,mode=1777) (repeatable).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// A nameserver for the container's /etc/resolv.conf (repeatable).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// An /etc/hosts entry (repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Read NAME=VALUE lines into the environment (repeatable; # comments; NAME alone takes ours).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Forward a host port into the container (private network; repeatable; no HOSTPORT: a free one).
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOSTPORT:]PORT[/tcp|/udp]")]
    pub publish: Vec<String>,
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Working directory in the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User (name or uid, optionally :group).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Commit the changes as this image when the command succeeds.
    #[arg(long, value_name = "NAME")]
    pub commit: Option<String>,
    /// Memory limit, swap included (e.g. 512m, 2g), through the cgroup memory controller.
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit as a number of CPUs (e.g. 0.5, 2), through the cgroup cpu controller.
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Remove the container when it exits (a foreground run's changes are always discarded unless --commit).
    #[arg(long)]
    pub rm: bool,
    /// Keep standard input open: passed through in the foreground (always), an open pipe with -d.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// A new terminal for the command (its controlling terminal; this one is raw meanwhile; with -d, its output is the log).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Platform to pick from a multi-platform image.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Run a minimal init (catatonit) as pid 1 that reaps zombies and forwards signals to the command.
    #[arg(long)]
    pub init: bool,
    /// When to pull the image first: missing (when the store lacks it), always, never.
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    /// Forward every port the image exposes to a free host port.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// systemd mode: true (when the command is systemd or /sbin/init), false, always.
    #[arg(long, value_name = "MODE", default_value = "true")]
    pub systemd: String,
    /// IMAGE is a plain root filesystem directory (such as a published flat), read-only under the container's changes.
    #[arg(long)]
    pub rootfs: bool,
}
