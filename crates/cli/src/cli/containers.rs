//! Arguments of the container commands (`ps`, `logs`, `exec`, ...) and of
//! `volume` and `container`.

use clap::{Args, Subcommand};

use super::JsonArgs;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// All containers, not only running ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// IDs only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Only containers matching: status=running|exited|created|dead, name=NAME, id=PREFIX, ancestor=IMAGE (repeatable: all must match).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Print through this Go template, as docker's, podman's and skopeo's --format (`{{.Digest}}`,
    /// `{{json .Labels}}`, `{{range .Layers}}{{.Digest}}{{"\\n"}}{{end}}`): the fields are those --json prints,
    /// `.MediaType` naming `media_type`; a list's records one per line.
    #[arg(long, value_name = "TEMPLATE", conflicts_with_all = ["json", "quiet"])]
    pub format: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The container (ID, ID prefix or name).
    pub container: String,
    /// Keep printing output until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines ("all" for every one).
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Only output since this time (RFC 3339, e.g. 2026-12-01T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Prefix each line with its time.
    #[arg(short = 't', long)]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<u64>,
    /// Containers (ID, ID prefix or name).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal (name such as TERM or SIGHUP, or number).
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    /// Containers (ID, ID prefix or name).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill and remove running containers too.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove the containers' anonymous volumes too.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Containers (ID, ID prefix or name).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// Containers (ID, ID prefix or name).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// The container (ID, ID prefix or name).
    pub container: String,
    /// Only this container port (PORT or PORT/tcp|udp).
    pub port: Option<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Where from: CONTAINER:PATH, a host path (SRC/. for a directory's contents), or - for a tar on standard input.
    pub source: String,
    /// Where to: CONTAINER:PATH, a host path (an existing directory receives SRC under its own name), or - for a tar on
    /// standard output.
    pub destination: String,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Print the container's output until it exits, and exit with its code.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Containers (ID, ID prefix or name).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Pass standard input to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// A new terminal for the command.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// User (name or uid, optionally :group).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// The container (ID, ID prefix or name).
    pub container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The container's ID.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Its name.
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeNamesArgs {
    /// Volume names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `cargohold volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Make a volume (a generated name when none is given); print its name.
    Create(VolumeCreateArgs),
    /// List volumes.
    Ls(JsonArgs),
    /// Print volumes as JSON.
    Inspect(VolumeNamesArgs),
    /// Remove volumes no container uses.
    Rm(VolumeNamesArgs),
    /// Remove anonymous volumes no container uses (-a: named ones too).
    Prune(VolumePruneArgs),
}

#[derive(Debug, Args)]
pub struct VolumePruneArgs {
    /// Named volumes no container uses too.
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub force: ForceArgs,
}

/// `cargohold container ...`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Remove every stopped container (not running ones).
    Prune(ForceArgs),
}

/// `cargohold image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Remove unnamed images no container uses (-a: every image no container uses), their blobs and unpacked layers.
    #[command(after_help = "Examples:\n  cargohold image prune -f\n  cargohold image prune -a -f --json")]
    Prune(ImagePruneArgs),
}

/// `cargohold system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Disk usage of images, containers, volumes, unpacked layers and the build cache.
    #[command(after_help = "Examples:\n  cargohold system df\n  cargohold system df --json")]
    Df(JsonArgs),
    /// Remove stopped containers, unnamed images, unused unpacked layers and stale build cache (-a, --volumes: more).
    #[command(after_help = "Examples:\n  cargohold system prune -f\n  cargohold system prune -a --volumes -f")]
    Prune(SystemPruneArgs),
}

/// Asked before removing, unless forced.
#[derive(Debug, Args)]
pub struct ForceArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Every image no container uses, named ones too.
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub force: ForceArgs,
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Every image no container uses (not only unnamed ones) and the whole build cache.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Anonymous volumes no container mounts too.
    #[arg(long)]
    pub volumes: bool,
    #[command(flatten)]
    pub force: ForceArgs,
}
