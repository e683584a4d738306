//! The command-line definition (also the source of completions and man pages).

use std::path::PathBuf;

mod build;
mod containers;
mod images;
mod publish;
mod registry;
pub use build::*;
pub use containers::*;
pub use images::*;
pub use publish::*;
pub use registry::*;

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
    /// Where registries' CA and client certificates are, instead of /etc/containers/certs.d and
    /// /etc/docker/certs.d: `*.crt` CAs and `NAME.cert` + `NAME.key` in DIR itself, for every registry (podman's
    /// and skopeo's --cert-dir), or a certs.d tree with them in `DIR/HOST[:PORT]/`.
    #[arg(long, global = true, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Upload large blobs in chunks of this size (`4M` for registries that cap requests at 4 MiB); 0, the default:
    /// each in one streamed request, as docker and skopeo do.
    #[arg(long, global = true, default_value = "0", value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: usize,
    /// Seconds to wait for a registry before an attempt fails (and is retried).
    #[arg(long, global = true, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
    /// How many times a registry request that failed in a way worth retrying (no connection, a timeout, 5xx, 429)
    /// is tried again, with growing pauses or the registry's Retry-After (as skopeo's --retry-times; default 4).
    #[arg(long, global = true, value_name = "N")]
    pub retry_times: Option<u32>,
    /// A fixed pause between those attempts (a Go duration: `2s`, `500ms`), in place of the growing ones, as
    /// skopeo's --retry-delay; a registry's Retry-After still wins.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_retry_delay)]
    pub retry_delay: Option<std::time::Duration>,
    /// The registries configuration (containers-registries.conf(5) v2: locations, mirrors, insecure, blocked,
    /// aliases) with its `FILE.d/*.conf` drop-ins, instead of podman's files (~/.config/containers/registries.conf
    /// or /etc/containers/registries.conf, and their `.d` directories).
    #[arg(long, global = true, value_name = "FILE", env = "CONTAINERS_REGISTRIES_CONF")]
    pub registries_conf: Option<PathBuf>,
    /// Registry credentials, instead of the stored ones.
    #[arg(long, global = true, value_name = "USER:PASSWORD", env = "CARGOHOLD_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
    /// Speak to registries anonymously: no stored credentials are read or sent (skopeo's --no-creds).
    #[arg(long, global = true, conflicts_with = "creds")]
    pub no_creds: bool,
    /// The credentials file read first, as podman's and skopeo's --authfile (default: REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json); then ~/.config/containers/auth.json and Docker's config.json.
    /// The file `login` writes and `logout` edits (there, default: REGISTRY_AUTH_FILE, else Docker's).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "no_creds")]
    pub authfile: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: PlatformOverrides,
    #[command(subcommand)]
    pub command: Command,
}

/// The platform picked from an index, changed from this host's, as
/// skopeo's global options (`--platform` names a whole one instead).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlatformOverrides {
    /// Pick images for this operating system instead of this host's (`linux`, `windows`).
    #[arg(long = "override-os", global = true, value_name = "OS")]
    pub os: Option<String>,
    /// Pick images for this architecture instead of this host's (`arm64`, `s390x`).
    #[arg(long = "override-arch", global = true, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Pick images for this architecture variant instead of this host's (`v7`, `v8`).
    #[arg(long = "override-variant", global = true, value_name = "VARIANT")]
    pub variant: Option<String>,
}

/// `--retry-delay`: a Go duration.
fn parse_retry_delay(s: &str) -> Result<std::time::Duration, String> {
    cargohold_registry::parse_go_duration(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 2s, 500ms, 1m)"))
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
    /// Copy an image between the store, registries, OCI layouts, archives, directories and Docker engines.
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

/// `--json` alone.
#[derive(Debug, Clone, Args)]
pub struct JsonArgs {
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
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
