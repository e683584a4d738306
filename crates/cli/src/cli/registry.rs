//! Arguments of the registry commands: `ref`, `pull`, `push`, `tags`, `catalog`,
//! `delete`, `digest`, `referrers`, `login`, `logout`, `inspect`, `copy`,
//! `serve` and `sync`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::JsonArgs;

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
    pub format: FormatArgs,
    /// Push image layers compressed with gzip or zstd, as podman's --compression-format: a layer in another
    /// compression (or none) is recompressed, its digest changing with the manifest's; a Docker schema 2 image
    /// given zstd layers becomes OCI.
    #[arg(long, value_name = "FORMAT", value_parser = parse_compression)]
    pub compression_format: Option<cargohold_image_core::CompressionFormat>,
    /// The level of --compression-format (gzip 1-9, default 6; zstd 1-22, default 3).
    #[arg(long, value_name = "LEVEL", requires = "compression_format")]
    pub compression_level: Option<i32>,
    /// Write the pushed manifest's digest to this file (as podman push --digestfile).
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
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
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry.
    pub registry: String,
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
    /// A container (ID, ID prefix or name), or an image: a store name, `docker://REF`, `oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`, `dir:DIR`, `docker-daemon:REF`.
    pub image: String,
    /// The Docker engine a docker-daemon: image is read from (unix:///PATH or tcp://HOST:PORT), as skopeo's
    /// (default: $DOCKER_HOST, else unix:///var/run/docker.sock).
    #[arg(long, value_name = "HOST", value_parser = parse_docker_host)]
    pub daemon_host: Option<String>,
    /// Print the manifest bytes exactly as stored.
    #[arg(long, conflicts_with = "config")]
    pub raw: bool,
    /// Print the config bytes exactly as stored.
    #[arg(long)]
    pub config: bool,
    /// Platform to pick from a multi-platform image (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print through this Go template, as docker's, podman's and skopeo's --format (`{{.Digest}}`,
    /// `{{json .Labels}}`, `{{range .Layers}}{{.Digest}}{{"\\n"}}{{end}}`): the fields are those --json prints,
    /// `.MediaType` naming `media_type`; a list's records one per line.
    #[arg(short = 'f', long, value_name = "TEMPLATE", conflicts_with_all = ["json", "raw", "config"])]
    pub format: Option<String>,
    /// Do not list the repository's tags (`repo_tags`) of a registry image, as skopeo's --no-tags.
    #[arg(short = 'n', long)]
    pub no_tags: bool,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source location: a store name, `docker://REF`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE[:REF]`, `dir:DIR` or `docker-daemon:REF` (NAME:TAG, NAME@DIGEST or an image ID).
    pub source: String,
    /// Destination location, as the source (`docker-daemon:NAME:TAG`).
    pub destination: String,
    /// Platform to pick from a multi-platform source (default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Copy every platform of a multi-platform image (skopeo's --all, -a).
    #[arg(short = 'a', long, visible_alias = "all", conflicts_with = "platform")]
    pub all_platforms: bool,
    /// Credentials for the source registry only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub dest_creds: Option<String>,
    #[command(flatten)]
    pub side: SideArgs,
    #[command(flatten)]
    pub format: FormatArgs,
    /// Write image layers compressed with gzip or zstd, as skopeo's --dest-compress-format: a layer in another
    /// compression (or none) is recompressed, its digest changing with the manifest's; a Docker schema 2 image
    /// given zstd layers becomes OCI. Layers already in it are sent as they are.
    #[arg(long, value_name = "FORMAT", value_parser = parse_compression)]
    pub dest_compress_format: Option<cargohold_image_core::CompressionFormat>,
    /// The level of --dest-compress-format (gzip 1-9, default 6; zstd 1-22, default 3).
    #[arg(long, value_name = "LEVEL", requires = "dest_compress_format")]
    pub dest_compress_level: Option<i32>,
    /// Fail, storing nothing, when the image would not keep its manifest digest (a --format change, a docker
    /// archive's inflated layers), as skopeo's --preserve-digests.
    #[arg(long)]
    pub preserve_digests: bool,
    /// Which images of a multi-platform source are copied, as skopeo's --multi-arch: `system`, this host's (or
    /// --platform's); `all`, every one (as --all-platforms). `index-only` (the index without its images) is
    /// refused.
    #[arg(long, value_name = "WHICH", value_parser = ["system", "all", "index-only"], conflicts_with = "all_platforms")]
    pub multi_arch: Option<String>,
    /// Copy no signatures, as skopeo's: cargohold neither copies nor checks image signatures, so every copy is
    /// one without them (accepted for skopeo's command lines).
    #[arg(long)]
    pub remove_signatures: bool,
    /// Where recompressed layers (--dest-compress-format) and images moving to or from a Docker engine are
    /// written meanwhile, as skopeo's --tmpdir (default: $TMPDIR, else /var/tmp).
    #[arg(long, value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,
    /// The Docker engine a docker-daemon: source is read from (unix:///PATH or tcp://HOST:PORT), as skopeo's
    /// (default: $DOCKER_HOST, else unix:///var/run/docker.sock).
    #[arg(long, value_name = "HOST", value_parser = parse_docker_host)]
    pub src_daemon_host: Option<String>,
    /// The Docker engine a docker-daemon: destination is loaded into, as skopeo's (default: as the source's).
    #[arg(long, value_name = "HOST", value_parser = parse_docker_host)]
    pub dest_daemon_host: Option<String>,
    /// Write the copied manifest's digest to this file (as skopeo copy --digestfile).
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Name the image this too, as skopeo's --additional-tag (repeatable): a docker-archive: destination records
    /// every name, a docker-daemon: one loads the image under each. Other destinations refuse it.
    #[arg(long = "additional-tag", value_name = "NAME:TAG", value_parser = parse_additional_tag)]
    pub additional_tags: Vec<cargohold_image_core::Reference>,
    #[command(flatten)]
    pub out: JsonArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub command: Option<ServeCommand>,
    /// distribution's config.yml (storage.filesystem, storage.s3, storage.delete, storage.maintenance.uploadpurging,
    /// http.addr, http.tls, http.headers, http.draintimeout, http.debug, auth.htpasswd, auth.token, proxy,
    /// notifications, validation.manifests.urls, log);
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
    /// Serve /debug/health and Prometheus metrics (/metrics, under distribution's names) on this address, apart
    /// from the registry's (as http.debug.addr with http.debug.prometheus.enabled).
    #[arg(long, value_name = "HOST:PORT")]
    pub debug_addr: Option<String>,
    /// Take pushed manifests whose layers name URLs (foreign, non-distributable layers, fetched from there) that
    /// match this regular expression (repeatable; validation.manifests.urls.allow). Without one, no layer URL is
    /// taken, as distribution.
    #[arg(long = "allow-layer-url", value_name = "REGEX")]
    pub allow_layer_url: Vec<String>,
    /// ... but none that matches this one (repeatable; validation.manifests.urls.deny).
    #[arg(long = "deny-layer-url", value_name = "REGEX")]
    pub deny_layer_url: Vec<String>,
    /// Threads that take and serve connections, each serving its connections to their end, a new connection going
    /// to whichever serves fewest (default: one per CPU, at most 16).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
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
    #[arg(short = 's', long = "src", value_enum, default_value = "docker")]
    pub src: SyncSource,
    /// What DESTINATION is.
    #[arg(short = 'd', long = "dest", value_enum, default_value = "docker")]
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
    #[command(flatten)]
    pub format: FormatArgs,
    /// Fail, storing nothing, when the image would not keep its manifest digest (a --format change, a docker
    /// archive's inflated layers), as skopeo's --preserve-digests.
    #[arg(long)]
    pub preserve_digests: bool,
    /// Images copied at a time.
    #[arg(short, long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
    /// Print what would be copied, and copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go on with the other images when one fails, as skopeo's --keep-going: what sync always does here (the
    /// failures are listed, and the exit status is 1).
    #[arg(long)]
    pub keep_going: bool,
    /// Copy no signatures, as skopeo's: cargohold neither copies nor checks image signatures, so every sync is
    /// one without them (accepted for skopeo's command lines).
    #[arg(long)]
    pub remove_signatures: bool,
    /// Credentials for the source registry only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub dest_creds: Option<String>,
    #[command(flatten)]
    pub side: SideArgs,
    #[command(flatten)]
    pub out: JsonArgs,
}

/// `--format`, for the commands that write manifests (copy, push, sync).
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Write the manifests as oci or v2s2 (Docker schema 2), as skopeo's and podman's --format: the blobs are
    /// the same, the manifest digest changes; annotations are dropped for v2s2 (it has none), and what it cannot
    /// say (zstd layers, a subject) is an error; sync finds an image held in that form up to date (default: as
    /// the source has them).
    #[arg(long = "format", value_name = "FORMAT", value_parser = ["oci", "v2s2"])]
    pub name: Option<String>,
}

impl FormatArgs {
    /// The format asked for.
    pub fn get(&self) -> Option<cargohold_image_core::ManifestFormat> {
        // The parser took only the names the format parses.
        self.name.as_deref().map(|n| n.parse().expect("oci or v2s2"))
    }
}

/// Each side's TLS and anonymity, for the commands that talk to two
/// registries (copy, sync), as skopeo's: what is given for one side's
/// registry applies to it alone.
#[derive(Debug, Args)]
pub struct SideArgs {
    /// Speak to the source registry anonymously: no credentials, given or stored.
    #[arg(long, conflicts_with = "src_creds")]
    pub src_no_creds: bool,
    /// Speak to the destination registry anonymously.
    #[arg(long, conflicts_with = "dest_creds")]
    pub dest_no_creds: bool,
    /// A bearer token for the source registry, sent as it is (no credentials, no token request).
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["src_creds", "src_no_creds"])]
    pub src_registry_token: Option<String>,
    /// A bearer token for the destination registry.
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["dest_creds", "dest_no_creds"])]
    pub dest_registry_token: Option<String>,
    /// Verify the source registry's TLS certificate: `false`, that registry as with --insecure-registry; `true`,
    /// verified even where registries.conf marks it insecure.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub src_tls_verify: Option<bool>,
    /// Verify the destination registry's TLS certificate (as --src-tls-verify).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub dest_tls_verify: Option<bool>,
    /// The source registry's certificates: `*.crt` CAs, `NAME.cert` + `NAME.key` a client certificate, in place
    /// of its certs.d ones.
    #[arg(long, value_name = "DIR")]
    pub src_cert_dir: Option<PathBuf>,
    /// The destination registry's certificates (as --src-cert-dir).
    #[arg(long, value_name = "DIR")]
    pub dest_cert_dir: Option<PathBuf>,
    /// The user name for the source registry (with --src-password), as skopeo's: --src-creds in two parts.
    #[arg(long, value_name = "USERNAME", requires = "src_password", conflicts_with_all = ["src_creds", "src_no_creds", "src_registry_token", "src_authfile"])]
    pub src_username: Option<String>,
    /// The password for the source registry (with --src-username).
    #[arg(long, value_name = "PASSWORD", requires = "src_username")]
    pub src_password: Option<String>,
    /// The user name for the destination registry (with --dest-password).
    #[arg(long, value_name = "USERNAME", requires = "dest_password", conflicts_with_all = ["dest_creds", "dest_no_creds", "dest_registry_token", "dest_authfile"])]
    pub dest_username: Option<String>,
    /// The password for the destination registry (with --dest-username).
    #[arg(long, value_name = "PASSWORD", requires = "dest_username")]
    pub dest_password: Option<String>,
    /// The credentials file read first for the source registry (as --authfile, for that registry alone).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["src_creds", "src_no_creds", "src_registry_token"])]
    pub src_authfile: Option<PathBuf>,
    /// The credentials file read first for the destination registry.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dest_creds", "dest_no_creds", "dest_registry_token"])]
    pub dest_authfile: Option<PathBuf>,
}

impl SideArgs {
    /// The source's credentials and the option that gave them:
    /// `--src-creds` (`creds`), or --src-username with --src-password.
    pub fn src_creds(
        &self,
        creds: Option<&str>,
    ) -> anyhow::Result<Option<(&'static str, cargohold_registry::Credentials)>> {
        side_creds(creds, self.src_username.as_deref(), self.src_password.as_deref(), ["--src-creds", "--src-username"])
    }

    /// The destination's, as [`SideArgs::src_creds`].
    pub fn dest_creds(
        &self,
        creds: Option<&str>,
    ) -> anyhow::Result<Option<(&'static str, cargohold_registry::Credentials)>> {
        side_creds(
            creds,
            self.dest_username.as_deref(),
            self.dest_password.as_deref(),
            ["--dest-creds", "--dest-username"],
        )
    }

    /// Whether any is given.
    pub fn given(&self) -> bool {
        self.src().option().is_some() || self.dest().option().is_some()
    }

    /// What is given for the source.
    pub fn src(&self) -> OneSide<'_> {
        OneSide {
            name: "src",
            tls_verify: self.src_tls_verify,
            cert_dir: self.src_cert_dir.as_deref(),
            no_creds: self.src_no_creds,
            token: self.src_registry_token.as_deref(),
            authfile: self.src_authfile.as_deref(),
        }
    }

    /// What is given for the destination.
    pub fn dest(&self) -> OneSide<'_> {
        OneSide {
            name: "dest",
            tls_verify: self.dest_tls_verify,
            cert_dir: self.dest_cert_dir.as_deref(),
            no_creds: self.dest_no_creds,
            token: self.dest_registry_token.as_deref(),
            authfile: self.dest_authfile.as_deref(),
        }
    }
}

/// A side's credentials from `USER:PASSWORD` or a user name and a password
/// (the parser makes sure both are given, and not with the other).
fn side_creds(
    creds: Option<&str>,
    username: Option<&str>,
    password: Option<&str>,
    [creds_option, username_option]: [&'static str; 2],
) -> anyhow::Result<Option<(&'static str, cargohold_registry::Credentials)>> {
    match (creds, username, password) {
        (Some(c), _, _) => Ok(Some((creds_option, crate::cmd::parse_creds(c, creds_option)?))),
        (None, Some(u), Some(p)) => Ok(Some((username_option, cargohold_registry::Credentials::new(u, p)))),
        _ => Ok(None),
    }
}

/// One side's options of [`SideArgs`].
pub struct OneSide<'a> {
    /// `src` or `dest`, as the options spell it.
    pub name: &'static str,
    pub tls_verify: Option<bool>,
    pub cert_dir: Option<&'a std::path::Path>,
    pub no_creds: bool,
    pub token: Option<&'a str>,
    pub authfile: Option<&'a std::path::Path>,
}

impl OneSide<'_> {
    /// A side given nothing.
    pub fn none(name: &'static str) -> Self {
        OneSide { name, tls_verify: None, cert_dir: None, no_creds: false, token: None, authfile: None }
    }

    /// The first of its options given (for errors), if any.
    pub fn option(&self) -> Option<String> {
        let given = [
            (self.tls_verify.is_some(), "tls-verify"),
            (self.cert_dir.is_some(), "cert-dir"),
            (self.no_creds, "no-creds"),
            (self.token.is_some(), "registry-token"),
            (self.authfile.is_some(), "authfile"),
        ];
        given.into_iter().find_map(|(is, option)| is.then(|| format!("--{}-{option}", self.name)))
    }
}

/// A layer compression: `gzip` or `zstd`.
fn parse_compression(s: &str) -> Result<cargohold_image_core::CompressionFormat, String> {
    s.parse()
}

/// `NAME:TAG`: a tag, no digest (as skopeo's --additional-tag).
fn parse_additional_tag(s: &str) -> Result<cargohold_image_core::Reference, String> {
    let r = cargohold_image_core::Reference::parse(s).map_err(|e| e.to_string())?;
    if r.tag().is_none() || r.digest().is_some() {
        return Err(format!("{s:?} is not NAME:TAG (an additional tag is a tag, without a digest)"));
    }
    Ok(r)
}

/// A Docker host (`unix:///PATH`, `tcp://HOST:PORT`), checked.
fn parse_docker_host(s: &str) -> Result<String, String> {
    cargohold_registry::DockerHost::parse(s).map(|_| s.to_owned())
}
