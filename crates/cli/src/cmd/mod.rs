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
mod unpack;

use anyhow::{Context, Result};
use cargohold_image_core::{Platform, Store};

use crate::cli::{Cli, Command};

/// Runs the parsed command line; the exit code is `run`'s command's own.
pub fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let ctx = Ctx {
        store_path: cli.store.clone(),
        quiet: cli.quiet,
        insecure: cli.insecure.clone(),
        creds: cli.creds.clone(),
        timeout: cli.timeout,
        chunk_size: cli.chunk_size,
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
        Command::Logout(a) => registry::logout(&a),
        Command::Inspect(a) => inspect::run(&ctx, &a),
        Command::Copy(a) => copy::run(&ctx, &a),
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
    creds: Option<String>,
    timeout: u64,
    chunk_size: usize,
}

impl Ctx {
    /// A registry client configured from the global options.
    pub fn registry(&self) -> Result<cargohold_registry::Registry> {
        let credentials = match &self.creds {
            Some(c) => {
                let (u, p) = c.split_once(':').context("--creds must be USER:PASSWORD")?;
                Some(cargohold_registry::Credentials { username: u.into(), password: p.into() })
            }
            None => None,
        };
        let opts = cargohold_registry::ClientOptions {
            insecure: self.insecure.clone(),
            credentials,
            timeout: std::time::Duration::from_secs(self.timeout.max(1)),
            chunk_size: self.chunk_size,
        };
        Ok(cargohold_registry::Registry::new(opts)?)
    }

    /// A registry client with these credentials for every registry.
    pub fn registry_as(&self, credentials: cargohold_registry::Credentials) -> Result<cargohold_registry::Registry> {
        let opts = cargohold_registry::ClientOptions {
            insecure: self.insecure.clone(),
            credentials: Some(credentials),
            timeout: std::time::Duration::from_secs(self.timeout.max(1)),
            chunk_size: self.chunk_size,
        };
        Ok(cargohold_registry::Registry::new(opts)?)
    }

    /// Whether `-q` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// The registries the user allowed plain HTTP for.
    pub fn insecure_registries(&self) -> Vec<String> {
        self.insecure.clone()
    }

    /// Progress bars on stderr when it is a terminal and `-q` was not given.
    pub fn progress(&self) -> progress::Bars {
        progress::Bars::new(self.quiet)
    }

    /// Opens (creating if needed) the local store.
    /// The store's directory (`--store`, else the default).
    pub fn store_dir(&self) -> std::path::PathBuf {
        self.store_path.clone().unwrap_or_else(Store::default_path)
    }

    pub fn store(&self) -> Result<Store> {
        let path = self.store_dir();
        Store::open(&path).with_context(|| format!("could not open the image store at {}", path.display()))
    }
}

/// Parses a `--platform` value.
pub fn platform(p: Option<&str>) -> Result<Option<Platform>> {
    p.map(|s| s.parse::<Platform>().map_err(anyhow::Error::from)).transpose()
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
    Ok((path, to_stdout))
}
