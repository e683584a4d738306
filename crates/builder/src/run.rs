//! Running a command in a stored image (`cargohold run`): the image's
//! layers from the cache under a fresh upper directory, its config for the
//! command, environment, user and working directory, and, on request, the
//! changes committed as a new image.

use std::path::PathBuf;

use cargohold_image_core::media_type::Compression;
use cargohold_image_core::{Descriptor, History, Platform, Reference, Store, creation_time, format_rfc3339};
use cargohold_layerfs::{WriteOptions, store_layer_from, upper_to_layer};

use crate::build::BuildError;
use crate::exec::{BindMount, DEFAULT_PATH, ExecError, Executor, Limits, Network, ProcessIo, RunSpec, lookup_user};
use crate::step::{StepFailure, StepRoot, run_step};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The stored image.
    pub image: String,
    /// The command; empty for the image's entrypoint and command.
    pub argv: Vec<String>,
    /// Extra `NAME=value` environment (over the image's).
    pub env: Vec<String>,
    /// Bind mounts.
    pub binds: Vec<BindMount>,
    /// Network mode.
    pub network: Network,
    /// Working directory (default: the image's, else `/`).
    pub workdir: Option<String>,
    /// User (default: the image's).
    pub user: Option<String>,
    /// Host name (default: `cargohold`).
    pub hostname: Option<String>,
    /// Commit the changes as this image when the command exits 0.
    pub commit: Option<Reference>,
    /// Platform of a multi-platform image.
    pub platform: Option<Platform>,
    /// Memory and CPU limits.
    pub limits: Limits,
    /// Standard input is a terminal for the command (see
    /// [`with_terminal`](crate::exec::with_terminal)).
    pub tty: bool,
    /// Capabilities, seccomp, `--privileged`.
    pub security: crate::exec::Security,
    /// A minimal init on the host (catatonit) to run as pid 1 (`--init`).
    pub init: Option<PathBuf>,
    /// Never mount a writable overlay (see [`BuildOptions::copy_up`](crate::build::BuildOptions::copy_up)).
    pub copy_up: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The command's exit code.
    pub code: i32,
    /// The committed image, with `commit`.
    pub committed: Option<Descriptor>,
}

fn io(action: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> BuildError {
    move |source| BuildError::Io { action, path, source }
}

fn container_err(image: &str) -> impl FnOnce(ExecError) -> BuildError + '_ {
    move |source| BuildError::Run { image: image.into(), source }
}

/// Runs `opts` with `executor`; changes are discarded unless committed.
pub fn run_image(
    store: &Store,
    executor: &dyn Executor,
    opts: &RunOptions,
    streams: ProcessIo,
) -> Result<RunOutcome, BuildError> {
    let img = store.resolve(&opts.image)?;
    let details = store.details(&img.descriptor, opts.platform.as_ref())?;
    let mut src = store.source(&opts.image)?;
    let dirs = crate::build::layer_cache(store).ensure(&mut src, opts.platform.as_ref())?;
    let tmp = crate::build::state_dir(store).join("tmp");
    let scratch = crate::build::scratch_dir(store, "run-")?;
    let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(io("create", d.clone()))?;
    }
    let cfg = details.config.config.clone().unwrap_or_default();
    let argv = if opts.argv.is_empty() {
        let mut v = cfg.entrypoint.clone().unwrap_or_default();
        v.extend(cfg.cmd.clone().unwrap_or_default());
        v
    } else {
        let mut v = cfg.entrypoint.clone().unwrap_or_default();
        v.extend(opts.argv.iter().cloned());
        v
    };
    if argv.is_empty() {
        let e = ExecError::Invalid("no command given and the image has no entrypoint or command".into());
        return Err(container_err(&opts.image)(e));
    }
    let mut env = cfg.env.clone().unwrap_or_default();
    for kv in &opts.env {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.into());
    }
    let user_spec = opts.user.clone().or(cfg.user.clone()).unwrap_or_default();
    let user = lookup_user(&dirs, &user_spec).map_err(container_err(&opts.image))?;
    let at = StepRoot {
        tmp: &tmp,
        layers: &dirs,
        upper: &upper,
        work: &work,
        scratch: scratch.path(),
        copy_up: opts.copy_up,
        keep: opts.commit.is_some(),
    };
    let make = |root| RunSpec {
        root,
        argv: argv.clone(),
        env,
        cwd: opts.workdir.clone().or(cfg.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
        user,
        hostname: opts.hostname.clone().unwrap_or_else(|| "cargohold".into()),
        network: opts.network,
        binds: opts.binds.clone(),
        limits: opts.limits,
        tty: opts.tty,
        security: opts.security.clone(),
        init: opts.init.clone(),
    };
    let code = run_step(executor, at, make, streams).map_err(|e| match e {
        StepFailure::Exec(e) => container_err(&opts.image)(e),
        StepFailure::Root(e) => BuildError::Io {
            action: "prepare or record the changes of a container of",
            path: opts.image.clone().into(),
            source: std::io::Error::other(e),
        },
    })?;
    let committed = match (&opts.commit, code) {
        (Some(name), 0) => {
            let _guard = store.layout().write_guard()?;
            let layer = store_layer_from(store.layout(), Compression::Gzip, |w| {
                upper_to_layer(&upper, w, &WriteOptions::from_env()).map(|_| ())
            })?;
            let mut config = details.config.clone();
            let now = format_rfc3339(creation_time());
            config.created = Some(now.clone());
            let history = History {
                created: Some(now),
                created_by: Some(format!("cargohold run {}", argv.join(" "))),
                ..History::default()
            };
            Some(store.commit_image(Some(&details), std::slice::from_ref(&layer), config, history, Some(name))?)
        }
        _ => None,
    };
    Ok(RunOutcome { code, committed })
}
