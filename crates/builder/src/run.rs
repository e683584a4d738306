//! Running a command in a stored image (`cargohold run`): the image's
//! layers from the cache under a fresh upper directory, its config for the
//! command, environment, user and working directory, and, on request, the
//! changes committed as a new image.

use std::path::PathBuf;

use cargohold_image_core::media_type::Compression;
use cargohold_image_core::{Descriptor, History, Platform, Reference, Store, creation_time, format_rfc3339};
use cargohold_layerfs::{WriteOptions, store_layer_from, upper_to_layer};

use crate::build::BuildError;
use crate::exec::{
    BindMount, Container, ContainerConfig, Containers, DEFAULT_PATH, ExecError, Executor, Limits, MountRequest,
    Network, ProcessIo, RootFs, RunSpec, Volumes, lookup_user,
};
use crate::step::{StepFailure, StepRoot, run_step};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The stored image; with `rootfs`, only its name in messages.
    pub image: String,
    /// Times of what the run records (a committed image, the container's
    /// creation): the caller's `SOURCE_DATE_EPOCH`; `None`: now.
    pub source_date_epoch: Option<u64>,
    /// A plain root filesystem to run instead of an image (`--rootfs`):
    /// the read-only bottom of an overlay whose changes are discarded; no
    /// image config, so the command must be given.
    pub rootfs: Option<PathBuf>,
    /// Forward every port the image exposes to a free host port (`-P`).
    pub publish_all: bool,
    /// The command; empty for the image's entrypoint and command.
    pub argv: Vec<String>,
    /// Replaces the image's entrypoint (`--entrypoint`; empty: none).
    pub entrypoint: Option<Vec<String>>,
    /// Extra `NAME=value` environment (over the image's).
    pub env: Vec<String>,
    /// Bind mounts, volumes and tmpfs mounts (`-v`, `--mount`, `--tmpfs`).
    pub mounts: Vec<MountRequest>,
    /// Host ports forwarded into the container (`-p`).
    pub ports: Vec<crate::exec::PortMapping>,
    /// Nameservers (`--dns`).
    pub dns: Vec<std::net::IpAddr>,
    /// Extra `/etc/hosts` entries (`--add-host NAME:IP`).
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
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
    /// systemd mode (`--systemd`).
    pub systemd: crate::exec::SystemdMode,
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

/// An image resolved for a run: its details, layer directories, and the
/// process the options make of its config.
struct Prepared {
    /// `None` with `--rootfs`.
    details: Option<cargohold_image_core::ResolvedImage>,
    dirs: Vec<PathBuf>,
    ports: Vec<crate::exec::PortMapping>,
    argv: Vec<String>,
    env: Vec<String>,
    cwd: String,
    user: crate::exec::UserIds,
    binds: Vec<BindMount>,
    tmpfs: Vec<crate::exec::TmpfsMount>,
    /// Volumes used, and whether each is anonymous.
    volumes: Vec<(String, bool)>,
}

fn prepare(store: &Store, opts: &RunOptions) -> Result<Prepared, BuildError> {
    let (details, dirs) = match &opts.rootfs {
        Some(dir) => {
            let meta = std::fs::metadata(dir).map_err(io("use the root filesystem", dir.clone()))?;
            if !meta.is_dir() {
                let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory");
                return Err(io("use the root filesystem", dir.clone())(e));
            }
            let dir = std::fs::canonicalize(dir).map_err(io("find the root filesystem", dir.clone()))?;
            (None, vec![dir])
        }
        None => {
            let img = store.resolve(&opts.image)?;
            let details = store.details(&img.descriptor, opts.platform.as_ref())?;
            // An image of another architecture runs through its emulator;
            // one of an architecture nobody emulates is tried as it is.
            let (os, arch, _) = Platform::new(&details.config.os, &details.config.architecture, None).normalized();
            let binfmt = std::path::Path::new(cargohold_runtime::BINFMT_MISC);
            match cargohold_runtime::emulation(&arch, binfmt) {
                Ok(_) | Err(cargohold_runtime::EmulationError::UnknownArchitecture(_)) => {}
                Err(source) => {
                    let platform = format!("{os}/{arch}");
                    return Err(BuildError::Emulation {
                        image: opts.image.clone(),
                        platform,
                        source: Box::new(source),
                    });
                }
            }
            let mut src = store.source(&opts.image)?;
            let dirs = crate::build::layer_cache(store).ensure(&mut src, opts.platform.as_ref())?;
            (Some(details), dirs)
        }
    };
    let cfg = details.as_ref().and_then(|d| d.config.config.clone()).unwrap_or_default();
    let mut ports = opts.ports.clone();
    if opts.publish_all {
        for exposed in cfg.exposed_ports.iter().flat_map(|p| p.keys()) {
            let wanted = crate::exec::PortMapping::parse(exposed).map_err(container_err(&opts.image))?;
            if !ports.iter().any(|p| p.container_port == wanted.container_port && p.udp == wanted.udp) {
                ports.push(wanted);
            }
        }
    }
    let mut argv = match &opts.entrypoint {
        Some(e) => e.clone(),
        None => cfg.entrypoint.clone().unwrap_or_default(),
    };
    if opts.argv.is_empty() && opts.entrypoint.is_none() {
        argv.extend(cfg.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(opts.argv.iter().cloned());
    }
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
    let cwd = opts.workdir.clone().or(cfg.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
    let volumes = Volumes::new(crate::build::state_dir(store).join("volumes"));
    let (mut binds, mut tmpfs, mut used) = (Vec::new(), Vec::new(), Vec::new());
    for m in &opts.mounts {
        match m {
            MountRequest::Bind { source, target, readonly } => {
                // A missing host directory is made, as Docker does.
                if !source.exists() {
                    std::fs::create_dir_all(source).map_err(io("create the volume source", source.clone()))?;
                }
                let source = std::fs::canonicalize(source).map_err(io("find the volume source", source.clone()))?;
                binds.push(BindMount { source, target: target.clone(), readonly: *readonly });
            }
            MountRequest::Volume { name, target, readonly } => {
                let v = volumes.ensure(name.as_deref()).map_err(container_err(&opts.image))?;
                // A new (empty) volume starts with what the image has there.
                volumes.populate(&v, &dirs, target).map_err(container_err(&opts.image))?;
                binds.push(BindMount { source: v.mountpoint, target: target.clone(), readonly: *readonly });
                used.push((v.name, name.is_none()));
            }
            MountRequest::Tmpfs(t) => tmpfs.push(t.clone()),
        }
    }
    Ok(Prepared { details, dirs, ports, argv, env, cwd, user, binds, tmpfs, volumes: used })
}

impl Prepared {
    fn spec(self, opts: &RunOptions, root: RootFs) -> RunSpec {
        let systemd = opts.systemd.applies(&self.argv);
        let spec = RunSpec {
            root,
            argv: self.argv,
            env: self.env,
            cwd: self.cwd,
            user: self.user,
            hostname: opts.hostname.clone().unwrap_or_else(|| "cargohold".into()),
            network: opts.network,
            binds: self.binds,
            ports: self.ports,
            tmpfs: self.tmpfs,
            dns: opts.dns.clone(),
            extra_hosts: opts.extra_hosts.clone(),
            limits: opts.limits,
            tty: opts.tty,
            security: opts.security.clone(),
            init: opts.init.clone(),
            systemd: false,
            state_dir: None,
        };
        if systemd { spec.with_systemd() } else { spec }
    }
}

/// Runs `opts` with `executor`; changes are discarded unless committed.
pub fn run_image(
    store: &Store,
    executor: &dyn Executor,
    opts: &RunOptions,
    streams: ProcessIo,
) -> Result<RunOutcome, BuildError> {
    let prepared = prepare(store, opts)?;
    let prepared_volumes = prepared.volumes.clone();
    let details = prepared.details.clone();
    let argv = prepared.argv.clone();
    let dirs = prepared.dirs.clone();
    let tmp = crate::build::state_dir(store).join("tmp");
    let scratch = crate::build::scratch_dir(store, "run-")?;
    let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(io("create", d.clone()))?;
    }
    let at = StepRoot {
        tmp: &tmp,
        layers: &dirs,
        upper: &upper,
        work: &work,
        scratch: scratch.path(),
        copy_up: opts.copy_up,
        keep: opts.commit.is_some(),
    };
    let make = |root| prepared.spec(opts, root);
    let result = run_step(executor, at, make, streams).map_err(|e| match e {
        StepFailure::Exec(e) => container_err(&opts.image)(e),
        StepFailure::Root(e) => BuildError::Io {
            action: "prepare or record the changes of a container of",
            path: opts.image.clone().into(),
            source: std::io::Error::other(e),
        },
    });
    // A foreground run leaves no container behind, so nothing could reach
    // its anonymous volumes again: they go now, as with Docker's --rm.
    let vs = volumes(store);
    for (name, _) in prepared_volumes.iter().filter(|(_, anonymous)| *anonymous) {
        vs.remove(name, &[]).map_err(container_err(&opts.image))?;
    }
    let code = result?;
    let committed = match (&opts.commit, code) {
        (Some(name), 0) => {
            let Some(details) = &details else {
                return Err(container_err(&opts.image)(ExecError::Invalid(
                    "--commit needs an image to commit onto; --rootfs has none".into(),
                )));
            };
            let created_by = format!("cargohold run {}", argv.join(" "));
            Some(commit_upper_as(store, details, &upper, name, created_by, &[], None, opts.source_date_epoch)?)
        }
        _ => None,
    };
    Ok(RunOutcome { code, committed })
}

/// The changes in `upper` (overlay form) as a new layer over the image
/// `details`, with `changes` to its config, stored and named `name`.
#[allow(clippy::too_many_arguments)]
fn commit_upper_as(
    store: &Store,
    details: &cargohold_image_core::ResolvedImage,
    upper: &std::path::Path,
    name: &Reference,
    created_by: String,
    changes: &[String],
    comment: Option<String>,
    epoch: Option<u64>,
) -> Result<Descriptor, BuildError> {
    let _guard = store.layout().write_guard()?;
    let layer = store_layer_from(store.layout(), Compression::Gzip, |w| {
        upper_to_layer(upper, w, &WriteOptions { clamp_mtime: epoch }).map(|_| ())
    })?;
    let mut config = details.config.clone();
    let now = format_rfc3339(creation_time(epoch));
    config.created = Some(now.clone());
    for c in changes {
        config.apply_change(c)?;
    }
    let history = History { created: Some(now), created_by: Some(created_by), comment, ..History::default() };
    Ok(store.commit_image(Some(details), std::slice::from_ref(&layer), config, history, Some(name))?)
}

/// `commit C NAME`: the container's changes as a new image on its image.
pub fn commit_container(
    store: &Store,
    container: &Container,
    name: &Reference,
    changes: &[String],
    comment: Option<String>,
    epoch: Option<u64>,
) -> Result<Descriptor, BuildError> {
    let image = &container.config.image_digest;
    if image.is_empty() {
        return Err(container_err(&container.config.name)(ExecError::Invalid(format!(
            "it runs the root filesystem {} (--rootfs), not an image: export it instead",
            container.config.image
        ))));
    }
    let img = store.resolve(image)?;
    let details = store.details(&img.descriptor, None)?;
    let created_by = format!("cargohold commit {}", &container.config.id[..12]);
    commit_upper_as(store, &details, &container.dir.join("upper"), name, created_by, changes, comment, epoch)
}

/// `export C`: the container's filesystem (its image's layers with its
/// changes on top) as a tar written to `out`; the number of entries.
pub fn export_container(
    container: &Container,
    out: &mut (dyn std::io::Write + Send),
    epoch: Option<u64>,
) -> Result<u64, BuildError> {
    let RootFs::Overlay { lower, upper, .. } = &container.config.spec.root else {
        return Err(container_err(&container.config.image)(ExecError::Invalid("not an overlay container".into())));
    };
    // The upper directory becomes the top read-only layer of a view
    // mounted in a private mount namespace.
    let mut layers = lower.clone();
    layers.push(upper.clone());
    let view =
        tempfile::Builder::new().prefix("cargohold-export-").tempdir().map_err(io("create", std::env::temp_dir()))?;
    let target = view.path().to_path_buf();
    let id = container.config.id.clone();
    crate::exec::in_private_mounts(move || -> Result<u64, BuildError> {
        crate::exec::mount_overlay(&layers, None, &target).map_err(|e| BuildError::Io {
            action: "mount the filesystem of container",
            path: id.clone().into(),
            source: std::io::Error::other(e),
        })?;
        let (_, entries) = cargohold_layerfs::archive_tree(&target, out, &WriteOptions { clamp_mtime: epoch })?;
        Ok(entries)
    })
    .map_err(|e| BuildError::Io {
        action: "mount the filesystem of a container in",
        path: "/".into(),
        source: std::io::Error::other(e),
    })?
}

/// How a detached container is kept (beyond what it runs).
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    /// Its name (`--name`); generated when `None`.
    pub name: Option<String>,
    /// Removed when it exits (`--rm`).
    pub auto_remove: bool,
    /// The signal `stop` sends first (default SIGTERM).
    pub stop_signal: Option<i32>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u64>,
    /// `crun` or `runc` instead of the built-in executor.
    pub runtime: Option<String>,
    /// When its monitor starts it again (`--restart`).
    pub restart: crate::exec::RestartPolicy,
    /// Its standard input stays open (`-i`).
    pub interactive: bool,
}

/// The store's containers.
pub fn containers(store: &Store) -> Containers {
    Containers::new(crate::build::state_dir(store).join("containers"))
}

/// Makes a container of `opts` (its upper directory over the image's
/// layers, to be run by a monitor: [`Container::run_monitored`]).
pub fn create_container(store: &Store, opts: &RunOptions, keep: &ContainerOptions) -> Result<Container, BuildError> {
    if opts.commit.is_some() {
        return Err(container_err(&opts.image)(ExecError::Invalid(
            "--commit cannot be used with a detached container: commit the container afterwards".into(),
        )));
    }
    let tmp = crate::build::state_dir(store).join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io("create", tmp.clone()))?;
    if !crate::build::copyup::use_overlay(&tmp, opts.copy_up) {
        return Err(container_err(&opts.image)(ExecError::Invalid(
            "detached containers need overlayfs on the store's filesystem".into(),
        )));
    }
    let prepared = prepare(store, opts)?;
    let volumes = prepared.volumes.clone();
    // systemd halts on SIGRTMIN+3.
    let systemd = opts.systemd.applies(&prepared.argv);
    // A container of a plain root filesystem has no image digest.
    let digest = match &opts.rootfs {
        Some(_) => String::new(),
        None => store.resolve(&opts.image)?.descriptor.digest.to_string(),
    };
    let created = format_rfc3339(creation_time(opts.source_date_epoch));
    containers(store)
        .create(keep.name.as_deref(), |dir| {
            let root =
                RootFs::Overlay { lower: prepared.dirs.clone(), upper: dir.join("upper"), work: dir.join("work") };
            Ok(ContainerConfig {
                id: String::new(),
                name: String::new(),
                image: opts.image.clone(),
                image_digest: digest,
                created,
                spec: prepared.spec(opts, root),
                stop_signal: keep.stop_signal.unwrap_or(if systemd { libc::SIGRTMIN() + 3 } else { libc::SIGTERM }),
                stop_timeout: keep.stop_timeout.unwrap_or(10),
                auto_remove: keep.auto_remove,
                runtime: keep.runtime.clone(),
                restart: keep.restart,
                volumes,
                interactive: keep.interactive,
                volumes_dir: Some(crate::build::state_dir(store).join("volumes")),
            })
        })
        .map_err(BuildError::from)
}

/// What `exec` runs in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// `NAME=value` over the container's environment.
    pub env: Vec<String>,
    /// User (default: the container's).
    pub user: Option<String>,
    /// Working directory (default: the container's).
    pub workdir: Option<String>,
    /// Standard input is a terminal for it.
    pub tty: bool,
}

/// `exec`: runs `opts` in the running container `c`, confined as it is.
pub fn exec_in_container(store: &Store, c: &Container, opts: &ExecOptions, io: ProcessIo) -> Result<i32, BuildError> {
    let spec = &c.config.spec;
    let user = match &opts.user {
        Some(u) => lookup_user(&[c.root_path()?], u).map_err(container_err(&c.config.name))?,
        None => spec.user.clone(),
    };
    let mut env = spec.env.clone();
    for kv in &opts.env {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.clone());
    }
    let process = crate::exec::ExecProcess {
        argv: opts.argv.clone(),
        env,
        cwd: opts.workdir.clone().unwrap_or_else(|| spec.cwd.clone()),
        user,
        tty: opts.tty,
    };
    Ok(c.exec(&process, io, Some(&crate::build::state_dir(store).join("seccomp")))?)
}

/// The store's volumes.
pub fn volumes(store: &Store) -> Volumes {
    Volumes::new(crate::build::state_dir(store).join("volumes"))
}

/// The volumes some container of the store uses.
pub fn volumes_in_use(store: &Store) -> Result<Vec<String>, BuildError> {
    Ok(containers(store).list()?.into_iter().flat_map(|c| c.config.volumes.into_iter().map(|(n, _)| n)).collect())
}

/// `rm [-f] [-v]`: removes the container, and with `volumes` its anonymous
/// volumes (named ones stay, as with Docker).
pub fn remove_container(store: &Store, c: &Container, force: bool, with_volumes: bool) -> Result<(), BuildError> {
    c.remove(force)?;
    if with_volumes {
        let in_use = volumes_in_use(store)?;
        for (name, _) in c.config.volumes.iter().filter(|(_, anonymous)| *anonymous) {
            volumes(store).remove(name, &in_use).map_err(container_err(&c.config.name))?;
        }
    }
    Ok(())
}

/// `diff C`: what the container changed, as Docker lists it: `A` added,
/// `C` changed (or a directory with changes below), `D` deleted, by path,
/// sorted. Read from its upper directory without following any link in it.
pub fn container_changes(c: &Container) -> Result<Vec<(char, String)>, BuildError> {
    let RootFs::Overlay { lower, upper, .. } = &c.config.spec.root else {
        return Err(container_err(&c.config.image)(ExecError::Invalid("not an overlay container".into())));
    };
    // Mount points the runtime made for the running container (gone when
    // it ends) are not changes.
    let spec = &c.config.spec;
    let points: Vec<String> = crate::exec::MOUNT_POINTS
        .iter()
        .map(|p| format!("/{p}"))
        .chain(spec.binds.iter().map(|b| b.target.display().to_string()))
        .chain(spec.tmpfs.iter().map(|t| t.target.display().to_string()))
        .collect();
    fn walk(
        dir: &std::path::Path,
        rel: &str,
        lower: &[PathBuf],
        points: &[String],
        out: &mut Vec<(char, String)>,
    ) -> Result<(), BuildError> {
        let entries = std::fs::read_dir(dir).map_err(io("list", dir.to_path_buf()))?;
        for e in entries {
            let e = e.map_err(io("list", dir.to_path_buf()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().map_err(io("read", e.path()))?;
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            let (name, whiteout) = match name.strip_prefix(".wh.") {
                Some(n) if n != ".wh..opq" => (n.to_owned(), true),
                Some(_) => continue,
                None => (name.clone(), meta.file_type().is_char_device() && meta.rdev() == 0),
            };
            let path = format!("{rel}/{name}");
            let existed = lower.iter().any(|l| l.join(path.trim_start_matches('/')).symlink_metadata().is_ok());
            if !existed && !whiteout && points.contains(&path) {
                continue;
            }
            out.push((
                if whiteout {
                    'D'
                } else if existed {
                    'C'
                } else {
                    'A'
                },
                path.clone(),
            ));
            if meta.is_dir() && !whiteout {
                walk(&e.path(), &path, lower, points, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(upper, "", lower, &points, &mut out)?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}
