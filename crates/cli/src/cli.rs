//! The command-line definition (also the source of completions and man pages).

use std::path::PathBuf;

mod containers;
pub use containers::*;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A daemonless container-image toolkit.
#[derive(Debug, Parser)]
#[command(
    name = "cargohold",
    version,
    about = "A daemonless container-image toolkit",
    long_about = "cargohold names, stores, inspects, loads, saves and copies container images \
                  without a Docker engine. Images live in a local OCI-layout store.",
    after_help = "Examples:\n  cargohold ref ubuntu:22.04 --json\n  cargohold load busybox.tar\n  cargohold images\n  cargohold save busybox -o busybox.tar"
)]
pub struct Cli {
    /// The local image store (an OCI image layout directory).
    #[arg(long, global = true, env = "CARGOHOLD_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print less (no progress, only results and errors).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Do not verify this registry's TLS certificate, and speak plain HTTP to it if it does not speak TLS
    /// (HTTPS is tried first; loopback registries get the HTTP fallback too, but keep verification).
    #[arg(long = "insecure-registry", visible_alias = "plain-http", global = true, value_name = "HOST[:PORT]")]
    pub insecure: Vec<String>,
    /// Verify registries' TLS certificates (`--tls-verify=false`: every registry as with --insecure-registry).
    #[arg(long, global = true, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub tls_verify: bool,
    /// Where registries' CA and client certificates are (`DIR/HOST[:PORT]/*.crt`, `*.cert` + `*.key`), instead of
    /// /etc/containers/certs.d and /etc/docker/certs.d.
    #[arg(long, global = true, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Upload large blobs in chunks of this size (`4M` for registries that cap requests at 4 MiB); 0, the default:
    /// each in one streamed request, as docker and skopeo do.
    #[arg(long, global = true, default_value = "0", value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: usize,
    /// Seconds to wait for a registry before an attempt fails (and is retried).
    #[arg(long, global = true, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
    /// The registries configuration (containers-registries.conf(5) v2: locations, mirrors, insecure, blocked,
    /// aliases) with its `FILE.d/*.conf` drop-ins, instead of podman's files (~/.config/containers/registries.conf
    /// or /etc/containers/registries.conf, and their `.d` directories).
    #[arg(long, global = true, value_name = "FILE", env = "CONTAINERS_REGISTRIES_CONF")]
    pub registries_conf: Option<PathBuf>,
    /// Registry credentials, instead of the stored ones.
    #[arg(long, global = true, value_name = "USER:PASSWORD", env = "CARGOHOLD_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and normalize an image reference.
    #[command(
        after_help = "Example:\n  cargohold ref ubuntu --json\n  # {\"canonical\": \"docker.io/library/ubuntu\", \"pull\": \"docker.io/library/ubuntu:latest\", ...}"
    )]
    Ref(RefArgs),
    /// Pull an image from a registry into the store.
    #[command(
        after_help = "Examples:\n  cargohold pull localhost:5000/team/app:1\n  cargohold pull registry.example/tools/busybox@sha256:... --json"
    )]
    Pull(PullArgs),
    /// Push a stored image to a registry.
    #[command(
        after_help = "Examples:\n  cargohold push myapp:1 localhost:5000/team/myapp:1\n  cargohold push localhost:5000/team/app:2"
    )]
    Push(PushArgs),
    /// List the tags of a registry repository.
    #[command(after_help = "Example:\n  cargohold tags localhost:5000/team/app --json")]
    Tags(TagsArgs),
    /// List the repositories of a registry.
    #[command(after_help = "Example:\n  cargohold catalog localhost:5000 --json")]
    Catalog(CatalogArgs),
    /// Delete a manifest (and the tags on it), a tag alone, or a blob from a registry.
    #[command(
        after_help = "Examples:\n  cargohold delete localhost:5000/team/app:1\n  cargohold delete localhost:5000/team/app@sha256:...\n  cargohold delete --blob localhost:5000/team/app@sha256:..."
    )]
    Delete(DeleteArgs),
    /// Print the manifest digest of an image (a registry reference unless a transport is given).
    #[command(
        after_help = "Examples:\n  cargohold digest localhost:5000/team/app:1\n  cargohold digest --platform linux/arm64 localhost:5000/team/multi:1\n  cargohold digest oci:./layout:1.0"
    )]
    Digest(DigestArgs),
    /// List the artifacts (signatures, SBOMs...) that refer to an image.
    #[command(
        after_help = "Example:\n  cargohold referrers localhost:5000/team/app:1 --artifact-type application/spdx+json --json"
    )]
    Referrers(ReferrersArgs),
    /// Save credentials for a registry (Docker's config.json, or REGISTRY_AUTH_FILE).
    #[command(
        after_help = "Examples:\n  cargohold login registry.example -u alice\n  echo \"$TOKEN\" | cargohold login registry.example -u alice --password-stdin"
    )]
    Login(LoginArgs),
    /// Remove the saved credentials of a registry.
    #[command(after_help = "Example:\n  cargohold logout registry.example")]
    Logout(LogoutArgs),
    /// Show an image's manifest and configuration.
    #[command(
        after_help = "Examples:\n  cargohold inspect busybox --json\n  cargohold inspect oci:./layout:latest --raw\n  cargohold inspect docker-archive:busybox.tar --config"
    )]
    Inspect(InspectArgs),
    /// Copy an image between the store, OCI layouts and archives.
    #[command(
        after_help = "Examples:\n  cargohold copy oci:./layout:1.0 myapp:1.0\n  cargohold copy myapp:1.0 docker-archive:myapp.tar\n  cargohold copy myapp:1.0 oci-archive:myapp-oci.tar:1.0"
    )]
    Copy(CopyArgs),
    /// Copy many images: all tags (or a list or glob of them) of repositories, between registries, OCI layouts and directories.
    #[command(
        long_about = "Copy many images, as skopeo sync does: SOURCE is a repository (all its tags, or the tags --tag \
                      selects; REPO:TAG for one), an OCI layout directory (--src oci: all its tags), a directory of \
                      dir: images (--src dir: one image, or every NAME:TAG image directory below it, as skopeo sync \
                      --dest dir writes them) or a skopeo sync YAML file (--src yaml). Each image goes to \
                      DESTINATION/NAME:TAG, NAME being the repository's last component (with --scoped, its whole \
                      path including the registry): a repository prefix with --dest docker, a directory of OCI \
                      layouts (one per repository) with --dest oci, a directory of dir: images (one per tag, as \
                      skopeo) with --dest dir. An image the destination already holds moves nothing; otherwise only \
                      the blobs it lacks move.",
        after_help = "Examples:\n  cargohold sync registry.example/team/app localhost:5000/mirror\n  cargohold sync --tag '1.*' registry.example/team/app localhost:5000/mirror\n  cargohold sync --src yaml sync.yaml localhost:5000/mirror\n  cargohold sync --dest oci localhost:5000/team/app ./layouts\n  cargohold sync --dest dir localhost:5000/team/app ./images"
    )]
    Sync(SyncArgs),
    /// Run a registry (the OCI distribution API) over a directory.
    #[command(
        long_about = "Run a registry: the OCI distribution API v1.1 (pulls with Range, monolithic, chunked and \
                      resumable pushes, mounts, tags and catalog with pagination, deletes, referrers), storing blobs, \
                      manifests and tags under --root (temp name, fsync, rename: a killed server leaves nothing \
                      partial). SIGTERM or Ctrl-C stops it after the requests in flight. Not yet: auth, TLS, \
                      object storage, config.yml, gc, proxying, notifications.",
        after_help = "Examples:\n  cargohold serve --addr 127.0.0.1:5000 --root /srv/registry\n  skopeo copy --dest-tls-verify=false oci:./layout:1 docker://127.0.0.1:5000/team/app:1"
    )]
    Serve(Box<ServeArgs>),
    /// Load the images of a docker or OCI archive into the store.
    #[command(
        after_help = "Examples:\n  cargohold load busybox.tar\n  cargohold load image-oci.tar --name registry.example/team/app:2"
    )]
    Load(LoadArgs),
    /// Save a stored image as a docker (default) or OCI archive.
    #[command(
        after_help = "Examples:\n  cargohold save busybox -o busybox.tar\n  cargohold save busybox -o busybox-oci.tar --format oci"
    )]
    Save(SaveArgs),
    /// List the images in the store.
    #[command(
        after_help = "Examples:\n  cargohold images\n  cargohold images --filter dangling=true -q\n  cargohold images --json"
    )]
    Images(ImagesArgs),
    /// Flatten an image into a root filesystem directory.
    #[command(
        after_help = "Examples:\n  cargohold unpack busybox ./rootfs\n  cargohold unpack oci:./layout:1.0 ./rootfs --rootless --json"
    )]
    Unpack(UnpackArgs),
    /// Write a flattened image as a root filesystem tar (like `docker export`).
    #[command(after_help = "Example:\n  cargohold export busybox -o busybox-rootfs.tar")]
    Export(ExportArgs),
    /// Make a one-layer image from a root filesystem tar (like `docker import`).
    #[command(
        after_help = "Examples:\n  cargohold import rootfs.tar.gz myos:1\n  cargohold import rootfs.tar myos:2 -c 'CMD [\"/bin/sh\"]' -c 'ENV LANG=C.UTF-8'"
    )]
    Import(ImportArgs),
    /// Write the changes between two directory trees as a layer tar.
    #[command(
        after_help = "Examples:\n  cargohold diff ./before ./after -o changes.tar.gz\n  cargohold diff ./lower ./upper -o layer.tar.zst --json"
    )]
    Diff(DiffArgs),
    /// Record the changes of a directory against its base image as a new image (like `docker commit`).
    #[command(
        after_help = "Example:\n  cargohold unpack busybox ./root && echo hi > ./root/hello\n  cargohold commit ./root --base busybox busybox:hello -c 'CMD [\"cat\", \"/hello\"]'"
    )]
    Commit(CommitArgs),
    /// Build an image from a Dockerfile (no Docker engine: RUN steps run in cargohold's own namespaces).
    #[command(
        after_help = "Examples:\n  cargohold build -t app:1 .\n  cargohold build -f build/Dockerfile --build-arg V=2 --target runtime -t app:2 --json .\n  SOURCE_DATE_EPOCH=0 cargohold build -t app:repro --output oci-archive:app.tar ."
    )]
    Build(Box<BuildArgs>),
    /// Run a command in a stored image, isolated (changes are discarded unless --commit).
    #[command(
        after_help = "Examples:\n  cargohold run busybox sh -c 'echo hi'\n  cargohold run --network none -e A=1 -v ./data:/data:ro app:1 /app/check\n  cargohold run -d --name web app:1 httpd -f -p 8080 && cargohold logs -f web\n  cargohold run --commit app:patched app:1 -- apt-get install -y curl"
    )]
    Run(Box<RunArgs>),
    /// Build an OS image in stages: rootfs tarball, injected files, stage scripts, selfcheck, then IMAGE:candidate.
    #[command(
        after_help = "An image directory holds stage.toml (image, base, base_tarball, command, [env]), injected_volumes/\nand image_rootfs/ (copied to / with owners, modes, xattrs and POSIX ACLs; image_rootfs wins), and\nbootstrap_scripts/stage2.sh, stage3.sh, selfcheck.sh in either tree (mounted at /bootstrap_scripts).\n\nExamples:\n  cargohold stage images/myimage\n  cargohold stage --base-tarball rootfs.tar.xz --image mycompany/myimage images/myimage\n  cargohold stage promote mycompany/myimage 1.2"
    )]
    Stage(StageArgs),
    /// Mount an image read-only (a kernel overlay of cached, unpacked layers).
    #[command(
        after_help = "Example:\n  cargohold mount busybox /mnt/busybox && ls /mnt/busybox && cargohold umount /mnt/busybox"
    )]
    Mount(MountArgs),
    /// Unmount what `cargohold mount` mounted.
    #[command(after_help = "Example:\n  cargohold umount /mnt/busybox")]
    Umount(UmountArgs),
    /// Give a stored image another name.
    #[command(after_help = "Example:\n  cargohold tag busybox localhost:5000/tools/busybox:1.36")]
    Tag(TagArgs),
    /// Remove names from the store (blobs go with `prune`; an image a container uses needs -f).
    #[command(after_help = "Example:\n  cargohold rmi busybox:latest && cargohold prune")]
    Rmi(RmiArgs),
    /// Delete blobs that no image in the store uses.
    #[command(after_help = "Examples:\n  cargohold prune\n  cargohold prune --dry-run --json")]
    Prune(PruneArgs),
    /// Publish unpacked images into a CernVM-FS-style tree (DUCC-compatible).
    #[command(subcommand)]
    Publish(PublishCommand),
    /// List containers (running ones; -a for all).
    #[command(after_help = "Examples:\n  cargohold ps\n  cargohold ps -a -q\n  cargohold ps -a --json")]
    Ps(PsArgs),
    /// Run a command in a running container, confined as the container is.
    #[command(after_help = "Examples:\n  cargohold exec web ls /\n  cargohold exec -it -u app -w /srv web sh")]
    Exec(ExecArgs),
    /// Manage containers: prune.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage images: prune.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Disk usage and pruning of the whole store: df, prune.
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage volumes: create, ls, inspect, rm, prune.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Print a container's output.
    #[command(after_help = "Examples:\n  cargohold logs web\n  cargohold logs -f --tail 10 -t web")]
    Logs(LogsArgs),
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    #[command(after_help = "Example:\n  cargohold stop -t 2 web")]
    Stop(StopArgs),
    /// Send a signal to containers (default SIGKILL).
    #[command(after_help = "Example:\n  cargohold kill -s HUP web")]
    Kill(KillArgs),
    /// Remove containers (-f: running ones too).
    #[command(after_help = "Example:\n  cargohold rm -f web")]
    Rm(RmArgs),
    /// Copy files between a container (running or not) and the host.
    #[command(
        after_help = "Examples:\n  cargohold cp web:/etc/nginx/nginx.conf ./nginx.conf\n  cargohold cp ./site/. web:/srv/www\n  cargohold cp web:/var/log ./logs"
    )]
    Cp(CpArgs),
    /// Print a container's published ports (all, or PORT[/PROTO]'s).
    #[command(after_help = "Examples:\n  cargohold port web\n  cargohold port web 80/tcp")]
    Port(PortArgs),
    /// Start stopped containers again (-a: follow the output of one).
    #[command(after_help = "Example:\n  cargohold start web")]
    Start(StartArgs),
    /// Stop and start containers.
    #[command(after_help = "Example:\n  cargohold restart -t 2 web")]
    Restart(StopArgs),
    /// Wait for containers to stop and print their exit codes.
    #[command(after_help = "Example:\n  cargohold wait web")]
    Wait(ContainersArgs),
    /// The per-container monitor (started by `run -d`; not for direct use).
    #[command(hide = true, name = "container-monitor")]
    ContainerMonitor(MonitorArgs),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  cargohold completions bash > /etc/bash_completion.d/cargohold")]
    Completions(CompletionsArgs),
    /// Write man pages (cargohold.1 and one per command).
    #[command(after_help = "Example:\n  cargohold man --out /usr/local/share/man/man1")]
    Man(ManArgs),
}

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

/// `--json` alone.
#[derive(Debug, Clone, Args)]
pub struct JsonArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RefArgs {
    /// The reference (`ubuntu`, `localhost:5000/a/b:1`, `x@sha256:...`).
    pub reference: String,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image (`registry/repo:tag` or `@digest`; Docker Hub when no registry).
    pub reference: String,
    /// Platform to pick from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Pull every platform of a multi-platform image.
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,
    /// Layers downloaded at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// A stored image.
    pub image: String,
    /// Where to push (default: the image's own name).
    pub reference: Option<String>,
    /// Layers uploaded at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The registry (`host[:port]`).
    pub registry: String,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// `registry/repo:tag` or `registry/repo@digest`.
    pub reference: String,
    /// Delete only the tag, keeping the manifest (OCI 1.1; many registries refuse).
    #[arg(long, conflicts_with = "blob")]
    pub tag_only: bool,
    /// Delete the blob named by the reference's digest.
    #[arg(long)]
    pub blob: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// A registry reference, or `oci:DIR[:TAG]`, `oci-archive:...`, `docker-archive:...`.
    pub reference: String,
    /// The digest of this platform's manifest instead of the index's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct ReferrersArgs {
    /// The image (`registry/repo:tag` or `@digest`).
    pub reference: String,
    /// Only artifacts of this type.
    #[arg(long, value_name = "MEDIA_TYPE")]
    pub artifact_type: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (`host[:port]`; `docker.io` for Docker Hub).
    pub registry: String,
    /// User name (asked for on a terminal when missing).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users of this machine; prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The file to write (default: REGISTRY_AUTH_FILE, else Docker's config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry.
    pub registry: String,
    /// The file to edit (default: REGISTRY_AUTH_FILE, else Docker's config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The repository (`registry/repo`).
    pub repository: String,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A container (ID, ID prefix or name), or an image: a store name, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`.
    pub image: String,
    /// Print the manifest bytes exactly as stored.
    #[arg(long, conflicts_with = "config")]
    pub raw: bool,
    /// Print the config bytes exactly as stored.
    #[arg(long)]
    pub config: bool,
    /// Platform to pick from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source location.
    pub source: String,
    /// Destination location.
    pub destination: String,
    /// Platform to pick from a multi-platform source (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Copy every platform of a multi-platform image.
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,
    /// Credentials for the source registry only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub dest_creds: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub command: Option<ServeCommand>,
    /// distribution's config.yml (storage.filesystem, storage.s3, storage.delete, storage.maintenance.uploadpurging,
    /// http.addr, http.tls, http.headers, http.draintimeout, auth.htpasswd, auth.token, proxy, notifications, log);
    /// flags given too win. Keys not supported yet are refused by name.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The address to listen on (default 127.0.0.1:5000).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Where the registry keeps its data.
    #[arg(long, value_name = "DIR", required_unless_present_any = ["config", "s3"], conflicts_with = "s3")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    /// After SIGTERM or Ctrl-C, how long requests in flight may take to finish before their connections are
    /// closed (default: http.draintimeout, else 30; 0: stop at once; a second SIGTERM or Ctrl-C stops at once). An
    /// upload cut off keeps what it received, and its client can resume it.
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout: Option<u64>,
    /// Refuse deletes of manifests, tags and blobs (without --config, deletes are allowed).
    #[arg(long)]
    pub no_delete: bool,
    /// Serve pulls only: pushes and deletes are refused (405 UNSUPPORTED) and nothing is written, stale uploads
    /// are not purged (as storage.maintenance.readonly in config.yml), e.g. while the storage is being moved.
    #[arg(long, conflicts_with = "proxy")]
    pub read_only: bool,
    /// Basic auth for every request from an htpasswd file (bcrypt: `htpasswd -Bc FILE USER`).
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// With --htpasswd: let anyone pull; pushes and deletes still need a user.
    #[arg(long, requires = "htpasswd")]
    pub anonymous_pull: bool,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Be a pull-through cache of this registry (`https://registry.example`, `http://127.0.0.1:5000`): what a pull
    /// misses is fetched, verified and kept; pushes are refused. Its credentials: --proxy-creds, else the stored ones.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// USER:PASSWORD for the --proxy upstream.
    #[arg(long, value_name = "USER:PASSWORD", requires = "proxy")]
    pub proxy_creds: Option<String>,
    /// Send distribution-style event webhooks (push, pull, delete, mount) to this URL (repeatable), retried with
    /// back-off until taken.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
    /// The oldest TLS version offered: 1.2 (the default) or 1.3 (http.tls.minimumtls).
    #[arg(long, value_name = "VERSION", value_parser = ["1.2", "1.3"])]
    pub tls_min_version: Option<String>,
    /// Require client certificates from this CA (PEM; repeatable): mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Vec<PathBuf>,
    /// Token auth with a token service of our own at /token: users from --htpasswd, what each may do from this
    /// YAML list of rules (`- account: alice` or `anonymous: true`, `name: team/*`, `actions: [pull, push, delete]`;
    /// the first rule matching user and repository decides).
    #[arg(long, value_name = "FILE", conflicts_with = "token_certs")]
    pub token_acl: Option<PathBuf>,
    /// The token service's signing key (PKCS#8 PEM, RSA or P-256), for replicas or other registries that trust
    /// it (default: a key made at start, trusted by this process only).
    #[arg(long, value_name = "FILE", requires = "token_acl")]
    pub token_key: Option<PathBuf>,
    /// Token auth with an external token service: its signing certificates (PEM); needs --token-realm.
    #[arg(long, value_name = "FILE", requires = "token_realm")]
    pub token_certs: Option<PathBuf>,
    /// Where clients get tokens (with --token-acl: default this server's /token).
    #[arg(long, value_name = "URL")]
    pub token_realm: Option<String>,
    /// The service name tokens are for (`aud`).
    #[arg(long, value_name = "NAME", default_value = "cargohold")]
    pub token_service: String,
    /// The issuer tokens come from (`iss`).
    #[arg(long, value_name = "NAME", default_value = "cargohold")]
    pub token_issuer: String,
}

/// A registry's storage in an S3 bucket (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
#[derive(Debug, Args)]
pub struct S3Args {
    /// Keep the registry in an S3 bucket, below an optional prefix: `s3://BUCKET[/PREFIX]`.
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]")]
    pub s3: Option<String>,
    /// The S3 endpoint, for storage other than AWS (`http://127.0.0.1:8080`); requests are then path-style.
    #[arg(long, value_name = "URL", requires = "s3")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region (default: AWS_REGION, else us-east-1).
    #[arg(long, value_name = "REGION", requires = "s3")]
    pub s3_region: Option<String>,
}

/// `serve` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Delete blobs no manifest uses (and, with --delete-untagged, manifests no tag reaches); safe while serving.
    Gc(ServeGcArgs),
}

#[derive(Debug, Args)]
pub struct ServeGcArgs {
    /// distribution's config.yml (for its storage: filesystem or s3).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["root", "s3"])]
    pub config: Option<PathBuf>,
    /// The registry's storage.
    #[arg(long, value_name = "DIR", conflicts_with = "s3")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Also delete manifests that no tag reaches (directly, through an index, or as a referrer).
    #[arg(long)]
    pub delete_untagged: bool,
    /// Report what would go; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep whatever is younger than this many seconds (pushes in progress).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub min_age: u64,
    #[command(flatten)]
    pub out: JsonArgs,
}

/// What a sync source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncSource {
    /// A registry repository (`REGISTRY/REPO`, or `REGISTRY/REPO:TAG` for one tag).
    Docker,
    /// An OCI layout directory (every tag in its index).
    Oci,
    /// A `dir:` image directory, or a directory with `NAME:TAG` image directories below it.
    Dir,
    /// A skopeo sync YAML file.
    Yaml,
}

/// What a sync destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncDest {
    /// A registry repository prefix (`REGISTRY[/NAMESPACE]`).
    Docker,
    /// A directory of OCI layouts, one per repository.
    Oci,
    /// A directory of `dir:` images, `NAME:TAG` each (skopeo's `--dest dir`).
    Dir,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// What SOURCE is.
    #[arg(long = "src", value_enum, default_value = "docker")]
    pub src: SyncSource,
    /// What DESTINATION is.
    #[arg(long = "dest", value_enum, default_value = "docker")]
    pub dest: SyncDest,
    /// The repository, layout directory, image directory or YAML file.
    pub source: String,
    /// The registry prefix or directory.
    pub destination: String,
    /// Only tags matching this glob (`*`, `?`; repeatable), for a repository or layout source.
    #[arg(long = "tag", value_name = "GLOB")]
    pub tags: Vec<String>,
    /// Name each image by its whole source path (`REGISTRY/REPO`) under DESTINATION, not its last component.
    #[arg(long)]
    pub scoped: bool,
    /// Platform to pick from multi-platform images (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Copy every platform of multi-platform images.
    #[arg(short = 'a', long, conflicts_with = "platform")]
    pub all: bool,
    /// Images copied at a time.
    #[arg(short, long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
    /// Print what would be copied, and copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Credentials for the source registry only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub dest_creds: Option<String>,
    #[command(flatten)]
    pub out: JsonArgs,
}

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

/// Shells with completion support.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages to (default: print cargohold.1 on stdout).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `4194304`, `512K`, `4M`, `1G` (powers of 1024).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 1usize << 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 1 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: usize = num.parse().map_err(|_| format!("{s:?} is not a size like 4194304, 512K, 4M or 1G"))?;
    match n.checked_mul(mult) {
        Some(v) => Ok(v),
        _ => Err(format!("{s:?} is not a usable size")),
    }
}

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
    /// Also write the image here: oci:DIR:TAG, oci-archive:FILE, docker-archive:FILE or docker://REF (repeatable).
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
