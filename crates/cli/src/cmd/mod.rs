//! Subcommands: parse -> call a library -> render.

mod archive;
mod build;
mod containers;
mod copy;
mod docs;
mod hygiene;
mod images;
mod inspect;
mod layers;
mod mount;
mod progress;
mod publish;
mod reference;
mod registry;
mod serve;
mod sync;
mod unpack;

use anyhow::{Context, Result, bail};
use cargohold_image_core::{ImageLocation, Platform, Reference, Store};

use crate::cli::{Cli, Command};

/// Runs the parsed command line; the exit code is `run`'s command's own.
pub fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let ctx = Ctx {
        store_path: cli.store.clone(),
        quiet: cli.quiet,
        insecure: cli.insecure.clone(),
        tls_verify: cli.tls_verify,
        cert_dir: cli.cert_dir.clone(),
        retry_delay: cli.retry_delay,
        no_creds: cli.no_creds,
        authfile: cli.authfile.clone(),
        overrides: cli.overrides.clone(),
        registries_conf: cli.registries_conf.clone(),
        registries: std::cell::OnceCell::new(),
        creds: cli.creds.clone(),
        creds_bound: std::cell::RefCell::new(None),
        timeout: cli.timeout,
        chunk_size: cli.chunk_size,
        retry_times: cli.retry_times,
    };
    if matches!(
        cli.command,
        Command::Build(_)
            | Command::Stage(_)
            | Command::Run(_)
            | Command::ContainerMonitor(_)
            | Command::Rm(_)
            | Command::Volume(_)
            | Command::Container(_)
            | Command::Image(_)
            | Command::System(_)
    ) && !rustix::process::geteuid().is_root()
    {
        cargohold_runtime::rootless::enter().context("rootless: could not enter a user namespace")?;
    }
    let done = match cli.command {
        Command::Run(a) => return build::run(&ctx, &a),
        Command::ContainerMonitor(a) => return containers::monitor(&ctx, &a),
        Command::Ps(a) => containers::ps(&ctx, &a),
        Command::Logs(a) => containers::logs(&ctx, &a),
        Command::Stop(a) => containers::stop(&ctx, &a),
        Command::Kill(a) => containers::kill(&ctx, &a),
        Command::Rm(a) => containers::rm(&ctx, &a),
        Command::Wait(a) => containers::wait(&ctx, &a),
        Command::Volume(c) => containers::volume(&ctx, &c),
        Command::Container(c) => hygiene::container(&ctx, &c),
        Command::Image(c) => hygiene::image(&ctx, &c),
        Command::System(c) => hygiene::system(&ctx, &c),
        Command::Port(a) => containers::port(&ctx, &a),
        Command::Cp(a) => containers::cp(&ctx, &a),
        Command::Start(a) => return containers::start(&ctx, &a),
        Command::Exec(a) => return containers::exec(&ctx, &a),
        Command::Restart(a) => containers::restart(&ctx, &a),
        Command::Ref(a) => reference::run(&a),
        Command::Pull(a) => registry::pull(&ctx, &a),
        Command::Push(a) => registry::push(&ctx, &a),
        Command::Tags(a) => registry::tags(&ctx, &a),
        Command::Catalog(a) => registry::catalog(&ctx, &a),
        Command::Delete(a) => registry::delete(&ctx, &a),
        Command::Digest(a) => registry::digest(&ctx, &a),
        Command::Referrers(a) => registry::referrers(&ctx, &a),
        Command::Login(a) => registry::login(&ctx, &a),
        Command::Logout(a) => registry::logout(&ctx, &a),
        Command::Inspect(a) => inspect::run(&ctx, &a),
        Command::Copy(a) => copy::run(&ctx, &a),
        Command::Sync(a) => return sync::run(&ctx, &a),
        Command::Serve(a) => serve::run(&ctx, &a),
        Command::Load(a) => archive::load(&ctx, &a),
        Command::Save(a) => archive::save(&ctx, &a),
        Command::Images(a) => images::list(&ctx, &a),
        Command::Unpack(a) => unpack::run(&ctx, &a),
        Command::Export(a) => layers::export(&ctx, &a),
        Command::Import(a) => layers::import(&ctx, &a),
        Command::Diff(a) => layers::diff(&ctx, &a),
        Command::Commit(a) => layers::commit(&ctx, &a),
        Command::Build(a) => build::build(&ctx, &a),
        Command::Stage(a) => build::stage(&ctx, &a),
        Command::Mount(a) => mount::mount(&ctx, &a),
        Command::Umount(a) => mount::umount(&a),
        Command::Tag(a) => images::tag(&ctx, &a),
        Command::Rmi(a) => images::rmi(&ctx, &a),
        Command::Prune(a) => images::prune(&ctx, &a),
        Command::Publish(c) => publish::run(&ctx, &c),
        Command::Completions(a) => docs::completions(&a),
        Command::Man(a) => docs::man(&a),
    };
    done.map(|()| std::process::ExitCode::SUCCESS)
}

/// What every command may need.
pub struct Ctx {
    store_path: Option<std::path::PathBuf>,
    pub quiet: bool,
    insecure: Vec<String>,
    tls_verify: bool,
    cert_dir: Option<std::path::PathBuf>,
    registries_conf: Option<std::path::PathBuf>,
    /// registries.conf, read when a registry is first used.
    registries: std::cell::OnceCell<cargohold_registry::RegistriesConf>,
    creds: Option<String>,
    /// The registry `--creds` went to first (see [`Ctx::registry_for`]).
    creds_bound: std::cell::RefCell<Option<String>>,
    timeout: u64,
    chunk_size: usize,
    retry_times: Option<u32>,
    retry_delay: Option<std::time::Duration>,
    no_creds: bool,
    /// `--authfile`.
    authfile: Option<std::path::PathBuf>,
    /// `--override-os`, `--override-arch`, `--override-variant`.
    overrides: crate::cli::PlatformOverrides,
}

/// What a two-sided command (copy, sync) gives for named registries.
#[derive(Default)]
pub struct PerRegistry {
    /// Credentials, each for its registry only.
    pub creds: Vec<(String, cargohold_registry::Credentials)>,
    /// Registries as with --insecure-registry (`--src-tls-verify=false`,
    /// a sync file's `tls-verify: false`).
    pub insecure: Vec<String>,
    /// Registries whose certificates are verified whatever registries.conf
    /// says (`--src-tls-verify=true`).
    pub verified: Vec<String>,
    /// Registries' own certificate directories (`--src-cert-dir`, a sync
    /// file's `cert-dir`).
    pub cert_dirs: Vec<(String, std::path::PathBuf)>,
    /// Registries spoken to without credentials (`--src-no-creds`).
    pub anonymous: Vec<String>,
    /// Bearer tokens of registries (`--src-registry-token`).
    pub tokens: Vec<(String, String)>,
    /// Registries' own credentials files (`--src-authfile`).
    pub auth_files: Vec<(String, std::path::PathBuf)>,
    /// The Docker engine a `docker-daemon:` source is read from
    /// (`--src-daemon-host`), in place of `DOCKER_HOST`'s.
    pub src_daemon_host: Option<String>,
    /// The one a `docker-daemon:` destination is loaded into (`--dest-daemon-host`).
    pub dest_daemon_host: Option<String>,
    /// Where images moving to or from an engine wait (`--tmpdir`).
    pub tmpdir: Option<std::path::PathBuf>,
}

/// Whether `--cert-dir DIR` is one registry's certificates (`*.crt`,
/// `*.cert`, `*.key` in DIR itself, as podman's and skopeo's) rather than a
/// certs.d tree of `HOST[:PORT]/` directories.
fn holds_certificates(dir: &std::path::Path) -> Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("--cert-dir {}: cannot read it", dir.display()))),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("--cert-dir {}: cannot read it", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if [".crt", ".cert", ".key"].iter().any(|ext| name.ends_with(ext)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Layers recompressed into `format` (at `level`), written meanwhile in
/// `tmpdir` (`--tmpdir`), else `$TMPDIR`, else /var/tmp (as podman's image
/// copies: not a tmpfs that large layers would fill).
pub fn recompress(
    format: Option<cargohold_image_core::CompressionFormat>,
    level: Option<i32>,
    tmpdir: Option<&std::path::Path>,
) -> Option<cargohold_image_core::Recompress> {
    let temp_dir = temp_dir(tmpdir);
    format.map(|format| cargohold_image_core::Recompress { format, level, temp_dir })
}

/// Where large temporary files go: `tmpdir` (`--tmpdir`), else `$TMPDIR`,
/// else /var/tmp.
pub fn temp_dir(tmpdir: Option<&std::path::Path>) -> std::path::PathBuf {
    tmpdir.map(std::path::Path::to_path_buf).unwrap_or_else(|| {
        std::env::var_os("TMPDIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| std::path::PathBuf::from("/var/tmp"), std::path::PathBuf::from)
    })
}

/// A Docker host flag (`option`, when `given`) is for a `docker-daemon:`
/// location only: on another, an error naming both.
pub fn daemon_host_for(given: Option<&String>, loc: &ImageLocation, option: &str) -> Result<()> {
    match (given, loc) {
        (Some(_), ImageLocation::DockerDaemon(_)) | (None, _) => Ok(()),
        (Some(_), _) => bail!("{option} is for a docker-daemon: image, and {loc} is not one"),
    }
}

/// The registries `locations` reach, each once, in order (a name that is
/// no reference reaches none).
pub fn registries_of(locations: &[&ImageLocation]) -> Vec<String> {
    let mut regs: Vec<String> = Vec::new();
    for l in locations {
        if let ImageLocation::Docker(r) = l
            && let Ok(r) = Reference::parse(r)
            && !regs.iter().any(|x| x == r.registry())
        {
            regs.push(r.registry().to_owned());
        }
    }
    regs
}

/// Records `path` (given as `option`) as `registry`'s; the other side
/// naming another for the same registry is an error.
fn one_path(
    list: &mut Vec<(String, std::path::PathBuf)>,
    registry: &str,
    path: &std::path::Path,
    option: &str,
    what: &str,
) -> Result<()> {
    match list.iter().find(|(r, _)| r == registry) {
        Some((_, other)) if other != path => bail!(
            "{option} {}: the other side's registry is {registry} too, with {what} from {}",
            path.display(),
            other.display()
        ),
        Some(_) => Ok(()),
        None => {
            list.push((registry.to_owned(), path.to_owned()));
            Ok(())
        }
    }
}

/// The standard credentials files with `file`, given as `option`, read
/// first; a file that is not there is an error, as with podman and skopeo.
fn auth_files_from(file: &std::path::Path, option: &str) -> Result<cargohold_registry::AuthFiles> {
    if !file.exists() {
        bail!("{option} {}: no such file", file.display());
    }
    Ok(cargohold_registry::AuthFiles::with_primary(file, &|k| std::env::var_os(k)))
}

/// `USER:PASSWORD` of a credentials option.
pub fn parse_creds(c: &str, option: &str) -> Result<cargohold_registry::Credentials> {
    let (u, p) = c.split_once(':').with_context(|| format!("{option} must be USER:PASSWORD"))?;
    Ok(cargohold_registry::Credentials { username: u.into(), password: p.into() })
}

impl Ctx {
    /// registries.conf: `--registries-conf FILE` (with `FILE.d`), else
    /// podman's files.
    pub fn registries_conf(&self) -> Result<&cargohold_registry::RegistriesConf> {
        if let Some(c) = self.registries.get() {
            return Ok(c);
        }
        let paths = match &self.registries_conf {
            Some(file) => {
                if !file.exists() {
                    bail!("--registries-conf {}: no such file", file.display());
                }
                cargohold_registry::RegistriesConf::default_paths(file, None)
            }
            None => {
                let user = std::env::var_os("XDG_CONFIG_HOME")
                    .filter(|v| !v.is_empty())
                    .map(std::path::PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))
                    .map(|d| d.join("containers/registries.conf"));
                cargohold_registry::RegistriesConf::default_paths(
                    std::path::Path::new("/etc/containers/registries.conf"),
                    user.as_deref(),
                )
            }
        };
        let conf = cargohold_registry::RegistriesConf::load(&paths)?;
        Ok(self.registries.get_or_init(|| conf))
    }

    /// A reference as typed, a short-name alias of registries.conf expanded
    /// (`fedora:40` -> `registry.fedoraproject.org/fedora:40`), for pulls.
    pub fn remote_reference(&self, input: &str) -> Result<Reference> {
        let expanded = self.registries_conf()?.expand_alias(input);
        Ok(Reference::parse(expanded.as_deref().unwrap_or(input))?)
    }

    /// The registry client settings the global options make.
    pub fn client_options(&self) -> Result<cargohold_registry::ClientOptions> {
        let source: std::sync::Arc<dyn cargohold_registry::CredentialSource> = match &self.authfile {
            _ if self.no_creds => std::sync::Arc::new(cargohold_registry::NoCredentials),
            Some(file) => std::sync::Arc::new(auth_files_from(file, "--authfile")?),
            None => std::sync::Arc::new(cargohold_registry::AuthFiles::standard(&|k| std::env::var_os(k))),
        };
        self.client_options_with(source)
    }

    /// The file `login` writes and `logout` edits: `--authfile`, else
    /// `REGISTRY_AUTH_FILE`, else Docker's.
    pub fn login_file(&self) -> std::path::PathBuf {
        self.authfile.clone().unwrap_or_else(|| cargohold_registry::login_file(&|k| std::env::var_os(k)))
    }

    /// [`Ctx::client_options`] with credentials from `source`.
    fn client_options_with(
        &self,
        source: std::sync::Arc<dyn cargohold_registry::CredentialSource>,
    ) -> Result<cargohold_registry::ClientOptions> {
        let defaults = cargohold_registry::ClientOptions::default();
        // --cert-dir: one registry's certificates (podman's meaning), or a certs.d tree.
        let (cert_dir, cert_dirs) = match &self.cert_dir {
            Some(d) if holds_certificates(d)? => (Some(d.clone()), Vec::new()),
            Some(d) => (None, vec![d.clone()]),
            None => (None, defaults.cert_dirs.clone()),
        };
        Ok(cargohold_registry::ClientOptions {
            registries: self.registries_conf()?.clone(),
            insecure: self.insecure.clone(),
            tls_verify: self.tls_verify,
            cert_dirs,
            cert_dir,
            timeout: std::time::Duration::from_secs(self.timeout.max(1)),
            chunk_size: self.chunk_size,
            max_attempts: self.retry_times.map_or(defaults.max_attempts, |n| n.saturating_add(1)),
            retry_delay: self.retry_delay,
            credential_source: source,
            // docker-daemon: images: the engine DOCKER_HOST names, and their
            // archives in $TMPDIR (else /var/tmp, as skopeo's).
            daemon_host: std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| cargohold_registry::DEFAULT_DOCKER_HOST.into()),
            tmpdir: temp_dir(None),
            ..defaults
        })
    }

    /// A registry client for a command that talks to `registry` (`None`:
    /// no registry, or none known): `--creds` goes to that registry only,
    /// and binds to the first one a command names; a command that names a
    /// second registry with `--creds` given is an error, never a leak of
    /// one registry's password to another.
    pub fn registry_for(&self, registry: Option<&str>) -> Result<cargohold_registry::Registry> {
        let mut opts = self.client_options()?;
        if let (Some(c), Some(r)) = (&self.creds, registry) {
            let mut bound = self.creds_bound.borrow_mut();
            match bound.as_deref() {
                Some(b) if b != r => bail!(
                    "--creds belong to {b}, and this command also talks to {r}: give each registry its own \
                     (copy: --src-creds and --dest-creds; else `cargohold login`)"
                ),
                _ => *bound = Some(r.to_owned()),
            }
            opts.registry_credentials.push((r.to_owned(), parse_creds(c, "--creds")?));
        }
        Ok(cargohold_registry::Registry::new(opts)?)
    }

    /// A client for a command that talks to the registries of `locations`
    /// (as `copy` names them), with `--creds` bound as [`Ctx::registry_for`].
    pub fn registry_for_locations(&self, locations: &[&ImageLocation]) -> Result<cargohold_registry::Registry> {
        let regs = registries_of(locations);
        match regs.as_slice() {
            [] => self.registry_for(None),
            [one] => self.registry_for(Some(one)),
            [first, rest @ ..] => {
                let reg = self.registry_for(Some(first))?;
                for r in rest {
                    self.registry_for(Some(r))?;
                }
                Ok(reg)
            }
        }
    }

    /// `--creds`, when given.
    pub fn creds(&self) -> Result<Option<cargohold_registry::Credentials>> {
        self.creds.as_deref().map(|c| parse_creds(c, "--creds")).transpose()
    }

    /// Whether `--creds` was given (for commands that cannot take it).
    pub fn creds_given(&self) -> bool {
        self.creds.is_some()
    }

    /// A client with what a two-sided command (copy, sync) says of named
    /// registries: each side's credentials, TLS verification and
    /// certificates go to that side's registry only.
    pub fn registry_with(&self, named: PerRegistry) -> Result<cargohold_registry::Registry> {
        let mut opts = self.client_options()?;
        if let Some((r, _)) = named.creds.iter().find(|(r, _)| named.anonymous.contains(r)) {
            bail!("both sides are {r}: credentials for one, none (--src-no-creds or --dest-no-creds) for the other");
        }
        if let Some((r, _)) =
            named.tokens.iter().find(|(r, _)| named.anonymous.contains(r) || named.creds.iter().any(|(c, _)| c == r))
        {
            bail!("both sides are {r}: a registry token for one, other credentials (or none) for the other");
        }
        if let Some((r, _)) = named.auth_files.iter().find(|(r, _)| {
            named.anonymous.contains(r)
                || named.creds.iter().any(|(c, _)| c == r)
                || named.tokens.iter().any(|(t, _)| t == r)
        }) {
            bail!("both sides are {r}: a credentials file for one, other credentials (or none) for the other");
        }
        if !named.auth_files.is_empty() {
            let mut sources: Vec<(String, std::sync::Arc<dyn cargohold_registry::CredentialSource>)> = Vec::new();
            // Each there: side_options checked.
            for (r, file) in &named.auth_files {
                let files = cargohold_registry::AuthFiles::with_primary(file, &|k| std::env::var_os(k));
                sources.push((r.clone(), std::sync::Arc::new(files)));
            }
            opts.credential_source =
                std::sync::Arc::new(cargohold_registry::PerRegistrySources { sources, rest: opts.credential_source });
        }
        opts.registry_tokens = named.tokens;
        opts.registry_credentials = named.creds;
        opts.anonymous = named.anonymous;
        opts.insecure.extend(named.insecure);
        opts.verified = named.verified;
        opts.registry_cert_dirs = named.cert_dirs;
        if let Some(host) = named.src_daemon_host {
            opts.daemon_host = host;
        }
        if let Some(host) = named.dest_daemon_host {
            opts.dest_daemon_host = Some(host);
        }
        if let Some(dir) = named.tmpdir {
            opts.tmpdir = dir;
        }
        Ok(cargohold_registry::Registry::new(opts)?)
    }

    /// Records what one side of a copy or sync gives for its registry.
    pub fn side_options(&self, named: &mut PerRegistry, registry: &str, given: &crate::cli::OneSide) -> Result<()> {
        let crate::cli::OneSide { name: side, tls_verify, cert_dir, no_creds, token, authfile } = *given;
        if let Some(file) = authfile {
            auth_files_from(file, &format!("--{side}-authfile"))?;
            one_path(&mut named.auth_files, registry, file, &format!("--{side}-authfile"), "credentials")?;
        }
        if no_creds && !named.anonymous.iter().any(|r| r == registry) {
            named.anonymous.push(registry.to_owned());
        }
        if let Some(token) = token {
            match named.tokens.iter().find(|(r, _)| r == registry) {
                Some((_, other)) if other != token => {
                    bail!("--{side}-registry-token: the other side's registry is {registry} too, with another token")
                }
                Some(_) => {}
                None => named.tokens.push((registry.to_owned(), token.to_owned())),
            }
        }
        match tls_verify {
            Some(true) if !self.tls_verify => {
                bail!("--{side}-tls-verify=true contradicts --tls-verify=false")
            }
            Some(true) if self.insecure.iter().any(|r| r == registry) => {
                bail!("--{side}-tls-verify=true contradicts --insecure-registry {registry}")
            }
            Some(true) if named.insecure.iter().any(|r| r == registry) => {
                bail!(
                    "--{side}-tls-verify=true: the other side's registry is {registry} too, with its TLS verification off"
                )
            }
            Some(false) if named.verified.iter().any(|r| r == registry) => {
                bail!(
                    "--{side}-tls-verify=false: the other side's registry is {registry} too, with its TLS verification on"
                )
            }
            Some(true) => named.verified.push(registry.to_owned()),
            Some(false) => named.insecure.push(registry.to_owned()),
            None => {}
        }
        if let Some(dir) = cert_dir {
            one_path(&mut named.cert_dirs, registry, dir, &format!("--{side}-cert-dir"), "certificates")?;
        }
        Ok(())
    }

    /// A registry client with these credentials for every registry (no
    /// stored ones read).
    pub fn registry_as(&self, credentials: cargohold_registry::Credentials) -> Result<cargohold_registry::Registry> {
        let opts = cargohold_registry::ClientOptions {
            credentials: Some(credentials),
            ..self.client_options_with(std::sync::Arc::new(cargohold_registry::NoCredentials))?
        };
        Ok(cargohold_registry::Registry::new(opts)?)
    }

    /// The platform a command picks from an index: `--platform` (`given`),
    /// else this host's with what `--override-os`, `--override-arch` and
    /// `--override-variant` change (skopeo's; an overridden architecture
    /// drops the host's variant); `None`: the host's.
    pub fn platform(&self, given: Option<&str>) -> Result<Option<Platform>> {
        let overrides = [
            ("--override-os", &self.overrides.os),
            ("--override-arch", &self.overrides.arch),
            ("--override-variant", &self.overrides.variant),
        ];
        if let Some((name, Some(v))) = overrides.iter().find(|(_, v)| v.as_deref().is_some_and(|v| v.contains('/'))) {
            bail!("{name} {v}: one part of a platform, without a '/' (or --platform OS/ARCH[/VARIANT])");
        }
        let overridden = overrides.iter().find(|(_, v)| v.is_some()).map(|(name, _)| *name);
        match (given, overridden) {
            (Some(_), Some(name)) => bail!("{name} cannot be used with --platform (which names the whole platform)"),
            (Some(s), None) => Ok(Some(s.parse::<Platform>()?)),
            (None, None) => Ok(None),
            (None, Some(_)) => {
                let host = Platform::host();
                let o = &self.overrides;
                let variant = match (&o.variant, &o.arch) {
                    (Some(v), _) => Some(v.as_str()),
                    (None, Some(_)) => None,
                    (None, None) => host.variant.as_deref(),
                };
                let os = o.os.as_deref().unwrap_or(&host.os);
                let arch = o.arch.as_deref().unwrap_or(&host.architecture);
                let text = match variant {
                    Some(v) => format!("{os}/{arch}/{v}"),
                    None => format!("{os}/{arch}"),
                };
                // Parsed as --platform is: the same checks and normal form.
                let given = overrides.iter().filter(|(_, v)| v.is_some()).map(|(name, _)| *name);
                let given = given.collect::<Vec<_>>().join(", ");
                Ok(Some(text.parse::<Platform>().with_context(|| format!("{given}: {text} is not a platform"))?))
            }
        }
    }

    /// Whether `-q` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Progress bars on stderr when it is a terminal and `-q` was not given.
    pub fn progress(&self) -> progress::Bars {
        progress::Bars::new(self.quiet)
    }

    /// Opens (creating if needed) the local store.
    /// The store's directory (`--store`, else the default).
    pub fn store_dir(&self) -> std::path::PathBuf {
        self.store_path.clone().unwrap_or_else(default_store_path)
    }

    pub fn store(&self) -> Result<Store> {
        let path = self.store_dir();
        Store::open(&path).with_context(|| format!("could not open the image store at {}", path.display()))
    }
}

/// Writes a small output file (`--iidfile`, `--digestfile`): a regular
/// file (or a new one) replaced whole by rename, so that a reader never sees
/// half of it; a FIFO, a device or a symlink written through.
pub fn write_output_file(path: &std::path::Path, text: &str, what: &str) -> Result<()> {
    let through = std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file());
    let written = if through {
        std::fs::write(path, text)
    } else {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    };
    written.with_context(|| format!("could not write {what} to {}", path.display()))
}

/// A command's output went to standard output and its reader stopped
/// reading (`| head`): the command ends as one killed by `SIGPIPE` does,
/// with status 141 and nothing said, as docker, podman and skopeo do.
#[derive(Debug)]
pub struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for OutputClosed {}

/// `err`, or [`OutputClosed`] when the output is standard output and a
/// write to it found the pipe closed.
pub fn closed_output(err: anyhow::Error, to_stdout: bool) -> anyhow::Error {
    let broken = err
        .chain()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe));
    if to_stdout && broken { anyhow::Error::new(OutputClosed) } else { err }
}

/// `-o -` is standard output (`/dev/stdout`, written through); whether it
/// is, so that status lines go to standard error instead.
pub fn output_path(p: &std::path::Path, json: bool) -> Result<(std::path::PathBuf, bool)> {
    use std::os::unix::fs::MetadataExt;
    let path: std::path::PathBuf = if p.as_os_str() == "-" { "/dev/stdout".into() } else { p.to_path_buf() };
    // `/dev/stdout`, `/dev/fd/1` or any other name of our standard output.
    let stdout = rustix::fs::fstat(std::io::stdout()).ok();
    let same = std::fs::metadata(&path)
        .ok()
        .zip(stdout)
        .is_some_and(|(m, s)| m.dev() == s.st_dev && m.ino() == s.st_ino && !m.is_file());
    let to_stdout = p.as_os_str() == "-" || same;
    if to_stdout && json {
        anyhow::bail!("--json cannot be used with -o {}: standard output is the archive", p.display());
    }
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        anyhow::bail!("refusing to write an archive to a terminal: give -o FILE, or redirect standard output");
    }
    Ok((path, to_stdout))
}

/// The default store: `$CARGOHOLD_STORE`, else
/// `$XDG_DATA_HOME/cargohold/store`, else `~/.local/share/cargohold/store`.
fn default_store_path() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os("CARGOHOLD_STORE").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let data = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        home.join(".local").join("share")
    });
    data.join("cargohold").join("store")
}

/// `SOURCE_DATE_EPOCH`, the reproducible-builds convention (the libraries
/// take it as an option).
pub fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok())
}
