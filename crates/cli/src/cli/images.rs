//! Arguments of the store and archive commands: `load`, `save`, `unpack`,
//! `export`, `import`, `diff`, `commit`, `mount`, `tag`, `rmi`, `images`, `prune`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::JsonArgs;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive (`docker save` tar or OCI archive; plain, gzip, zstd, xz or bzip2), or an http(s) URL of one;
    /// - or none: standard input.
    pub file: Option<PathBuf>,
    /// The archive, as docker load -i takes it.
    #[arg(short = 'i', long = "input", value_name = "FILE", conflicts_with = "file")]
    pub input: Option<PathBuf>,
    /// Name the loaded image(s) this instead of what the archive says.
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

/// Archive formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// `docker save` layout (what `docker load` reads).
    Docker,
    /// OCI archive (a tarred OCI image layout).
    Oci,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The stored images (several go into one docker archive).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// The archive to write (`-`, the default: standard output, unless it is a terminal).
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
    /// Archive format.
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    pub format: Format,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// A store name or any transport (`oci:DIR[:TAG]`, `docker-archive:FILE`, ...).
    pub image: String,
    /// The directory to create (or an empty one).
    pub dir: PathBuf,
    /// Do not chown or create devices; record owners in `user.rootlesscontainers`
    /// (automatic when not running as root).
    #[arg(long)]
    pub rootless: bool,
    /// Platform to pick from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A container (ID, ID prefix or name), or an image: a store name or any transport.
    pub image: String,
    /// The tar to write (`.gz`/`.zst` compress it; `-`, the default: standard output, unless it is a terminal).
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A root filesystem tar (plain, gzip, zstd, xz or bzip2), an http(s) URL of one, or - for standard input.
    pub file: PathBuf,
    /// The name of the new image.
    pub name: String,
    /// A config change: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// A comment recorded in the image history.
    #[arg(short, long)]
    pub message: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// A container (ID, ID prefix or name: its changes, A/C/D as Docker prints them), or the tree before.
    pub lower: PathBuf,
    /// The tree after.
    pub upper: Option<PathBuf>,
    /// The layer to write (`.tar`, `.tar.gz`, `.tar.zst`; two trees).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A container (ID, ID prefix or name), or a changed root filesystem (with --base).
    pub dir: PathBuf,
    /// The stored image the directory started from (a container knows its own).
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// The name of the new image.
    pub name: String,
    /// A config change (see `import`).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// A comment recorded in the image history.
    #[arg(short, long)]
    pub message: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// A store name or any transport.
    pub image: String,
    /// The mount point (created if missing).
    pub dir: PathBuf,
    /// Platform to pick from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct UmountArgs {
    /// The mount point.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// An image in the store (name or ID).
    pub source: String,
    /// The new name.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Names or IDs to remove.
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove the last name of an image a stopped container uses (the image stays, unnamed, until the container goes).
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images matching: dangling=true|false, reference=NAME (repeatable: all must match).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Image IDs only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print through this Go template, as docker's, podman's and skopeo's --format (`{{.Digest}}`,
    /// `{{json .Labels}}`, `{{range .Layers}}{{.Digest}}{{"\\n"}}{{end}}`): the fields are those --json prints,
    /// `.MediaType` naming `media_type`; a list's records one per line.
    #[arg(long, value_name = "TEMPLATE", conflicts_with_all = ["json", "quiet"])]
    pub format: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only report what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}
