//! Arguments of `publish` and its subcommands (the CernVM-FS publisher).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::JsonArgs;

/// `cargohold publish ...`.
#[derive(Debug, Subcommand)]
pub enum PublishCommand {
    /// Convert every image of a wish list into the publish tree.
    #[command(
        after_help = "Examples:\n  cargohold publish convert wishlist.yaml --root /srv/unpacked --skip-thin-image\n  cargohold publish convert wishlist.yaml -n notifications.jsonl --json"
    )]
    Convert(PublishConvertArgs),
    /// Convert a wish list over and over (re-read every round) until SIGINT/SIGTERM.
    #[command(
        after_help = "Example:\n  cargohold publish loop wishlist.yaml --interval 600 -n notifications.jsonl --skip-thin-image"
    )]
    Loop(PublishLoopArgs),
    /// Convert one image into a publish tree.
    #[command(
        after_help = "Example:\n  cargohold publish convert-single-image https://localhost:5000/team/app:1 /srv/unpacked --skip-thin-image"
    )]
    ConvertSingleImage(PublishSingleArgs),
    /// Remove flats and layers no published image uses.
    #[command(
        after_help = "Examples:\n  cargohold publish gc /srv/unpacked --dry-run\n  cargohold publish gc /srv/unpacked --grace-period 7 --json"
    )]
    Gc(PublishGcArgs),
    /// Validate a wish list without converting anything.
    #[command(after_help = "Example:\n  cargohold publish check wishlist.yaml --json")]
    Check(PublishCheckArgs),
    /// Publish on push: take registry webhooks (distribution's, as `serve --notify` sends; Harbor's) into a durable
    /// queue and convert pushed images, unpublish deleted ones (failures retried with back-off) until SIGTERM.
    #[command(
        after_help = "Example:\n  cargohold publish listen /srv/unpacked --addr 127.0.0.1:8081 --queue /var/lib/cargohold/hooks --skip-thin-image\n  cargohold serve --root /srv/registry --notify http://127.0.0.1:8081/events\nA secret: CARGOHOLD_HOOK_SECRET (requests then need `Authorization: Bearer SECRET`)."
    )]
    Listen(PublishListenArgs),
    /// A podman additional image store (on this machine) whose one layer is a published image's flat, as DUCC's
    /// create-podman-store; `podman --storage-opt additionalimagestore=STORE run IMAGE` then pulls nothing.
    #[command(
        after_help = "Example:\n  cargohold publish create-podman-store https://registry.example/team/app:1 /srv/unpacked /var/lib/cvmfs-store"
    )]
    CreatePodmanStore(PublishPodmanArgs),
    /// Check a tree against its layer digests (each layer unpacked afresh from its registry and compared, each flat
    /// rebuilt and compared); --repair replaces what differs.
    #[command(after_help = "Example:\n  cargohold publish scrub /srv/unpacked --repair --json")]
    Scrub(PublishScrubArgs),
    /// Unpublish an image: its public path and metadata go (its flat and layers stay for gc), as DUCC's delete-image.
    #[command(
        after_help = "Example:\n  cargohold publish delete-image /srv/unpacked https://registry.example/library/ubuntu:22.04 --dry-run"
    )]
    DeleteImage(PublishDeleteArgs),
    /// Unpublish the images of wish lists that their registries no longer have (DUCC's prune-images).
    #[command(
        after_help = "Examples:\n  cargohold publish prune-images /srv/unpacked wishlist.yaml --dry-run\n  cargohold publish prune-images /srv/unpacked https://example.org/wishlist.yaml --config ducc-prune.yaml"
    )]
    PruneImages(PublishPruneArgs),
    /// List the concrete images a tag pattern (or every input of wish lists) stands for (DUCC's expand-wildcard).
    #[command(
        after_help = "Examples:\n  cargohold publish expand-wildcard 'https://registry.example/team/app:1.*'\n  cargohold publish expand-wildcard -w wishlist.yaml -o expanded.yaml"
    )]
    ExpandWildcard(PublishExpandArgs),
}

#[derive(Debug, Args)]
pub struct PublishListenArgs {
    /// The tree's directory (with `--backend cvmfs`, the repository name).
    pub target: PathBuf,
    /// Where to take webhooks.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8081")]
    pub addr: String,
    /// The durable queue: a directory of pending jobs (kept across restarts).
    #[arg(long, value_name = "DIR")]
    pub queue: PathBuf,
    /// The registry's address as this publisher reaches it (`https://registry.example`), instead of the events'.
    #[arg(long, value_name = "URL")]
    pub registry_url: Option<String>,
    /// Only images an input of this wish list covers (its user and output_format are the thin images').
    #[arg(long, value_name = "FILE")]
    pub wishlist: Option<PathBuf>,
    #[command(flatten)]
    pub opts: PublishOpts,
}

#[derive(Debug, Args)]
pub struct PublishPodmanArgs {
    /// The published image (`https://registry.example/team/app:1`).
    pub image: String,
    /// The publish tree (its flat must be there).
    pub tree: PathBuf,
    /// The store's directory (created when missing).
    pub store: PathBuf,
}

#[derive(Debug, Args)]
pub struct PublishScrubArgs {
    /// The tree's directory.
    pub target: PathBuf,
    /// Replace damaged layers and flats (else only report them, and fail).
    #[arg(long)]
    pub repair: bool,
    /// Write notifications to this file.
    #[arg(short = 'n', long = "notification-file", value_name = "FILE")]
    pub notification_file: Option<PathBuf>,
    /// Fail after waiting this many seconds for another publisher's lock.
    #[arg(long, value_name = "SECONDS")]
    pub lock_timeout: Option<u64>,
    /// Serve the tree read-only to everyone else (see `publish convert --read-only-tree`). Needs root.
    #[arg(long)]
    pub read_only_tree: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct PublishDeleteArgs {
    /// The tree's directory (with `--backend cvmfs`, the repository name).
    pub target: PathBuf,
    /// The image, as a wish list names it (`https://registry.example/library/ubuntu:22.04`).
    pub image: String,
    #[command(flatten)]
    pub tree: PublishTreeArgs,
}

#[derive(Debug, Args)]
pub struct PublishPruneArgs {
    /// The tree's directory (with `--backend cvmfs`, the repository name).
    pub target: PathBuf,
    /// Wish lists: files or http(s) URLs.
    pub wishlists: Vec<String>,
    /// A prune config (`wishlists:` list; default ./ducc-prune.yaml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub tree: PublishTreeArgs,
}

/// How a command that changes a tree reaches it.
#[derive(Debug, Args)]
pub struct PublishTreeArgs {
    /// The publish target's kind.
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,
    /// Only say what would go.
    #[arg(long)]
    pub dry_run: bool,
    /// Write a notification per image to this file.
    #[arg(short = 'n', long = "notification-file", value_name = "FILE")]
    pub notification_file: Option<PathBuf>,
    /// Fail after waiting this many seconds for another publisher's lock.
    #[arg(long, value_name = "SECONDS")]
    pub lock_timeout: Option<u64>,
    /// Serve the tree read-only to everyone else (a read-only bind mount of itself; this publisher writes it in a
    /// mount namespace of its own, as CernVM-FS repositories are read-only outside transactions). Needs root.
    #[arg(long)]
    pub read_only_tree: bool,
    /// With `--backend cvmfs`: DUCC's mountless publishing, for a publisher with no union mount: every change is a
    /// `cvmfs_server ingest` (removals `ingest --fast-delete`), never a transaction. Also on when
    /// CVMFS_DUCC_MOUNTLESS_PUBLISHING is set.
    #[arg(long)]
    pub mountless: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct PublishExpandArgs {
    /// One image (a tag pattern is expanded; a plain tag is checked to exist).
    #[arg(required_unless_present = "wishlist", conflicts_with = "wishlist")]
    pub image: Option<String>,
    /// Expand every input of this wish list instead (repeatable).
    #[arg(short = 'w', long = "wishlist", value_name = "FILE")]
    pub wishlist: Vec<PathBuf>,
    /// Write the list as YAML (`images:`) to this file (with --wishlist).
    #[arg(short = 'o', long, value_name = "FILE", requires = "wishlist")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub out: JsonArgs,
}

/// Where a publish tree lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A plain directory (`--root`, else the wish list's `cvmfs_repo` as a path).
    Local,
    /// A CernVM-FS repository named by `cvmfs_repo`, at /cvmfs/REPO, through `cvmfs_server`.
    Cvmfs,
}

#[derive(Debug, Clone, Args)]
pub struct PublishOpts {
    /// The publish target's kind.
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,
    /// Write notifications (one JSON object per line) to this file.
    #[arg(short = 'n', long = "notification-file", value_name = "FILE")]
    pub notification_file: Option<PathBuf>,
    /// Do not build the flat root filesystems.
    #[arg(long)]
    pub skip_flat: bool,
    /// Do not add images to the tree's podman additional image store (`podmanStore/`).
    #[arg(short = 'p', long)]
    pub skip_podman: bool,
    /// Do not push thin images (`output_format` of the wish list).
    #[arg(long)]
    pub skip_thin_image: bool,
    /// Layers downloaded and unpacked at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Convert images even when their config has not changed.
    #[arg(long)]
    pub convert_again: bool,
    /// Unpack layers again even when they exist.
    #[arg(long)]
    pub overwrite_layers: bool,
    /// Fail after waiting this many seconds for another publisher's lock (default: wait).
    #[arg(long, value_name = "SECONDS")]
    pub lock_timeout: Option<u64>,
    /// Platform to pick from multi-platform images (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Also publish every platform of multi-platform images under .multiarch/ARCH or ARCH:VARIANT.
    #[arg(long)]
    pub multi_arch: bool,
    /// Serve the tree read-only to everyone else (a read-only bind mount of itself; this publisher writes it in a
    /// mount namespace of its own, as CernVM-FS repositories are read-only outside transactions). Needs root.
    #[arg(long)]
    pub read_only_tree: bool,
    /// With `--backend cvmfs`: new layers go in by `cvmfs_server ingest` outside the image's transaction, as DUCC
    /// does (`ingest`), or are unpacked inside the transaction (`transaction`).
    #[arg(long, value_name = "ingest|transaction")]
    pub cvmfs_layers: Option<String>,
    /// With `--backend cvmfs`: DUCC's mountless publishing, for a publisher with no union mount: every change is a
    /// `cvmfs_server ingest` (removals `ingest --fast-delete`), never a transaction. Also on when
    /// CVMFS_DUCC_MOUNTLESS_PUBLISHING is set.
    #[arg(long)]
    pub mountless: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct PublishConvertArgs {
    /// The wish list (YAML, version 1).
    pub wishlist: PathBuf,
    /// The tree's directory (default: the wish list's `cvmfs_repo`).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub opts: PublishOpts,
}

#[derive(Debug, Args)]
pub struct PublishLoopArgs {
    /// The wish list (YAML, version 1), read again every round.
    pub wishlist: PathBuf,
    /// The tree's directory (default: the wish list's `cvmfs_repo`).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Seconds to sleep between rounds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub interval: u64,
    #[command(flatten)]
    pub opts: PublishOpts,
}

#[derive(Debug, Args)]
pub struct PublishSingleArgs {
    /// The image (`https://registry/repo:tag`, `registry/repo@digest`).
    pub image: String,
    /// The tree's directory.
    pub target: PathBuf,
    /// Push a thin image by this name (`https://registry/repo:tag`; `$(tag)` and the wish list's other variables
    /// work); without it, as DUCC, no thin image.
    #[arg(long, value_name = "IMAGE")]
    pub thin_image_name: Option<String>,
    /// Push the thin image as this user (password: DUCC_OUTPUT_REGISTRY_PASS).
    #[arg(short = 'u', long, value_name = "USER", default_value = "")]
    pub username: String,
    /// Try the conversion this many times before giving up.
    #[arg(short = 'r', long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,
    #[command(flatten)]
    pub opts: PublishOpts,
}

#[derive(Debug, Args)]
pub struct PublishGcArgs {
    /// The tree's directory (with `--backend cvmfs`, the repository name).
    pub target: PathBuf,
    /// The publish target's kind.
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    pub backend: BackendKind,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep what was published less than this many days ago.
    #[arg(long, default_value_t = 0.0, value_name = "DAYS")]
    pub grace_period: f64,
    /// Write a `gc` notification per removal to this file.
    #[arg(short = 'n', long = "notification-file", value_name = "FILE")]
    pub notification_file: Option<PathBuf>,
    /// Fail after waiting this many seconds for another publisher's lock.
    #[arg(long, value_name = "SECONDS")]
    pub lock_timeout: Option<u64>,
    /// Serve the tree read-only to everyone else (a read-only bind mount of itself; this publisher writes it in a
    /// mount namespace of its own, as CernVM-FS repositories are read-only outside transactions). Needs root.
    #[arg(long)]
    pub read_only_tree: bool,
    /// With `--backend cvmfs`: DUCC's mountless publishing, for a publisher with no union mount: every change is a
    /// `cvmfs_server ingest` (removals `ingest --fast-delete`), never a transaction. Also on when
    /// CVMFS_DUCC_MOUNTLESS_PUBLISHING is set.
    #[arg(long)]
    pub mountless: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct PublishCheckArgs {
    /// The wish list.
    pub wishlist: PathBuf,
    #[command(flatten)]
    pub out: JsonArgs,
}
