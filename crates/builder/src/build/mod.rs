//! Building a Dockerfile's plan into an image in the local store.
//!
//! Each stage starts from `scratch`, an earlier stage or an image in the
//! store, whose layers are unpacked once into the store's layer cache. A RUN
//! runs in the [`Executor`] on an overlay of those layers plus a fresh upper
//! directory; a COPY/ADD writes through the same kind of overlay, mounted in
//! a private mount namespace of its own thread. Either way the upper
//! directory is the step's layer: it is written to the store as a gzip blob
//! and then becomes a cached lower layer for the next step. Config-only steps
//! (ENV, WORKDIR, CMD...) change the config and add history.
//!
//! The build cache maps a key (the base's config digest, then every step's
//! instruction, arguments and, for COPY, the content digest of what it
//! copies) to the layer a step made; a hit reuses the layer without running
//! anything. `SOURCE_DATE_EPOCH` (or [`BuildOptions::timestamp`]) fixes every
//! timestamp, so the same inputs build the same image digest.

pub(crate) mod cache;
pub(crate) mod copy;
pub(crate) mod copyup;
mod error;
mod fetch;
pub use fetch::redact_urls;

pub use error::BuildError;

use cache::Cache;
use cargohold_runtime::{in_private_mounts, mount_overlay};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cargohold_image_core::media_type::Compression;
use cargohold_image_core::{
    Descriptor, Digest, History, ImageConfig, NewLayer, Platform, Reference, Store, format_rfc3339,
};
use cargohold_layerfs::{LayerCache, Root, WriteOptions, store_layer_from, upper_to_layer};

use crate::context::{Context, ContextError};
use crate::dockerfile;
use crate::exec::{Executor, Namespaces, Network, ProcessIo, RunSpec, lookup_user};
use crate::plan::{Base, CopySource, Plan, PlanOptions, RunMount, Stage, Step, StepKind, plan};
use crate::step::{StepFailure, StepRoot, run_step};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (default: `Dockerfile` in the context).
    pub dockerfile: Option<PathBuf>,
    /// Build args, target, denied instructions, platform.
    pub plan: PlanOptions,
    /// The platforms [`Builder::build`] builds for, each into an image and
    /// all into an image index when there are several (empty: `plan`'s).
    pub platforms: Vec<Platform>,
    /// Names for the result.
    pub tags: Vec<Reference>,
    /// Run every step even when the cache has it.
    pub no_cache: bool,
    /// The network of RUN steps (`RUN --network` overrides it per step).
    pub network: Network,
    /// The confinement of RUN steps (capabilities, seccomp).
    pub security: crate::exec::Security,
    /// Every timestamp (config, history, file times in new layers, clamped);
    /// `SOURCE_DATE_EPOCH` when `None` and set, else now.
    pub timestamp: Option<u64>,
    /// Never mount a writable overlay: every step works on a copy of its
    /// layers and its layer is a tree diff (what happens anyway where
    /// overlayfs cannot be mounted).
    pub copy_up: bool,
    /// The build's secrets (`--secret id=...`), by id, for `RUN --mount=type=secret`.
    pub secrets: Vec<(String, SecretSource)>,
    /// The build's SSH agents (`--ssh id=SOCKET`), by id, for `RUN --mount=type=ssh`:
    /// the agent's Unix socket, bound into the step.
    pub ssh: Vec<(String, PathBuf)>,
    /// Let `RUN --network=host` have the host's network (`--allow network.host`).
    pub allow_host_network: bool,
    /// Where binfmt_misc lists the emulators that run RUN steps of other
    /// platforms (empty: [`BINFMT_MISC`](cargohold_runtime::BINFMT_MISC)).
    pub binfmt_misc: PathBuf,
    /// Annotations of the image manifest (`--annotation`).
    pub annotations: Vec<(String, String)>,
    /// Labels set on the image (`--label`), over the Dockerfile's; they do
    /// not change any step's cache key.
    pub labels: Vec<(String, String)>,
}

/// Where a build secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file, read when a step mounts it.
    File(PathBuf),
    /// The bytes themselves (from an environment variable, say).
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            // Never printed.
            SecretSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The platform of the build it is part of.
    pub platform: Platform,
    /// Stage index.
    pub stage: usize,
    /// Dockerfile line.
    pub line: usize,
    /// The history line.
    pub instruction: String,
    /// Taken from the build cache.
    pub cached: bool,
    /// The diff ID of the layer it added, if any.
    pub layer: Option<Digest>,
    /// Wall time.
    pub seconds: f64,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The image manifest, or the index of a build for several platforms.
    pub image: Descriptor,
    /// The image ID: its config digest (an index's own digest).
    pub config: Digest,
    /// Names given.
    pub tags: Vec<String>,
    /// Every step run or taken from the cache, in order.
    pub steps: Vec<StepReport>,
    /// The build cache entries of the RUN/COPY/ADD steps, in order (what
    /// [`export_cache`] shares).
    pub cache: Vec<CacheEntry>,
    /// Layers of the image (of every platform's).
    pub layers: usize,
    /// The image of each platform built.
    pub images: Vec<PlatformImage>,
}

/// The image a build made for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    /// The platform.
    pub platform: Platform,
    /// Its manifest.
    pub image: Descriptor,
    /// Its config digest.
    pub config: Digest,
}

/// One entry of the build cache: a layer step's key and the layer it made
/// (`None`: the step changed nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The step's cache key.
    pub key: Digest,
    /// Its layer.
    pub layer: Option<NewLayer>,
}

/// The config field of a cache image that maps cache keys to layers.
pub const CACHE_FIELD: &str = "cargohold.build-cache.v1";

/// Stores `entries` as an image named `name`, to be pushed to a registry
/// (`--cache-to`): its layers are the entries' layers, its config's
/// [`CACHE_FIELD`] maps each key to the index of its layer, or to null for
/// a step that made none.
pub fn export_cache(store: &Store, entries: &[CacheEntry], name: &Reference) -> Result<Descriptor, BuildError> {
    let _guard = store.layout().write_guard()?;
    let mut layers: Vec<NewLayer> = Vec::new();
    let mut map = serde_json::Map::new();
    for e in entries {
        let index = e.layer.as_ref().map(|l| match layers.iter().position(|x| x.diff_id == l.diff_id) {
            Some(i) => i,
            None => {
                layers.push(l.clone());
                layers.len() - 1
            }
        });
        map.insert(e.key.hex().to_owned(), serde_json::json!(index));
    }
    let host = Platform::host();
    let mut config =
        ImageConfig { architecture: host.architecture, os: host.os, variant: host.variant, ..ImageConfig::default() };
    config.extra.insert(CACHE_FIELD.into(), serde_json::Value::Object(map));
    let history = History { created_by: Some("cargohold build cache".into()), ..History::default() };
    Ok(store.commit_image(None, &layers, config, history, Some(name))?)
}

/// Adds the entries of the cache image `name` (pulled from a registry for
/// `--cache-from`) to the store's build cache, its layers unpacked into the
/// layer cache. Returns the number of entries. An image without
/// [`CACHE_FIELD`] is an error naming it.
pub fn import_cache(store: &Store, name: &str) -> Result<usize, BuildError> {
    let _guard = store.layout().write_guard()?;
    let img = store.resolve(name)?;
    let details = store.details(&img.descriptor, None)?;
    let Some(map) = details.config.extra.get(CACHE_FIELD).and_then(|v| v.as_object()) else {
        return Err(BuildError::Cache {
            name: name.into(),
            reason: format!("not a build cache image (no {CACHE_FIELD} in its config)"),
        });
    };
    let layers = image_layers(&details);
    let mut src = store.source(name)?;
    layer_cache(store).ensure(&mut src, None)?;
    let cache = build_cache(store);
    let mut n = 0;
    for (key, index) in map {
        let Ok(key) = Digest::parse(&format!("sha256:{key}")) else { continue };
        let layer = match index.as_u64() {
            Some(i) => match layers.get(i as usize) {
                Some(l) => Some(l),
                None => continue,
            },
            None if index.is_null() => None,
            None => continue,
        };
        cache.put(&key, layer);
        n += 1;
    }
    Ok(n)
}

/// Called after every step.
type StepHook<'a> = Box<dyn Fn(&StepReport) + Send + Sync + 'a>;

/// A stage's state as its steps run.
#[derive(Debug, Clone)]
struct StageState {
    /// What its programs are built for.
    platform: Platform,
    layers: Vec<NewLayer>,
    dirs: Vec<PathBuf>,
    config: ImageConfig,
    key: Digest,
}

/// Builds images into a store.
pub struct Builder<'a> {
    store: &'a Store,
    executor: Box<dyn Executor + 'a>,
    on_step: Option<StepHook<'a>>,
    on_start: Option<StepHook<'a>>,
    on_output: Option<OutputHook<'a>>,
}

/// Given what RUN steps print.
type OutputHook<'a> = Box<dyn Fn(&[u8]) + Send + Sync + 'a>;

impl std::fmt::Debug for Builder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("store", &self.store.layout().root()).finish_non_exhaustive()
    }
}

impl<'a> Builder<'a> {
    /// A builder writing to `store`, running steps with [`Namespaces`].
    pub fn new(store: &'a Store) -> Self {
        Builder { store, executor: Box::new(default_executor(store)), on_step: None, on_start: None, on_output: None }
    }

    /// Runs RUN steps with `executor` instead.
    pub fn with_executor(mut self, executor: impl Executor + 'a) -> Self {
        self.executor = Box::new(executor);
        self
    }

    /// Calls `f` after every step.
    pub fn on_step(mut self, f: impl Fn(&StepReport) + Send + Sync + 'a) -> Self {
        self.on_step = Some(Box::new(f));
        self
    }

    /// Calls `f` before every step (its report not filled in yet: not
    /// cached, no layer, no time).
    pub fn on_start(mut self, f: impl Fn(&StepReport) + Send + Sync + 'a) -> Self {
        self.on_start = Some(Box::new(f));
        self
    }

    /// Gives `f` what RUN steps write to their standard output and error
    /// (as it comes, a chunk at a time), instead of letting them write to
    /// this process' standard error.
    pub fn on_output(mut self, f: impl Fn(&[u8]) + Send + Sync + 'a) -> Self {
        self.on_output = Some(Box::new(f));
        self
    }

    fn state_dir(&self) -> PathBuf {
        state_dir(self.store)
    }

    fn layer_cache(&self) -> LayerCache {
        layer_cache(self.store)
    }

    /// Reads, plans and builds the Dockerfile of `opts`: once per platform
    /// of [`BuildOptions::platforms`], joined in an image index when there
    /// are several.
    pub fn build(&self, opts: &BuildOptions) -> Result<BuildReport, BuildError> {
        let path = opts.dockerfile.clone().unwrap_or_else(|| opts.context.join("Dockerfile"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| BuildError::Dockerfile { path: path.clone(), source: e })?;
        let mut plan_opts = opts.plan.clone();
        if plan_opts.file.is_empty() {
            plan_opts.file = path.file_name().map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned());
        }
        let parsed = dockerfile::parse(&text, &plan_opts.file)?;
        let mut plans = Vec::new();
        if opts.platforms.is_empty() {
            plans.push(plan(&parsed, &plan_opts)?);
        }
        for p in &opts.platforms {
            plans.push(plan(&parsed, &PlanOptions { platform: p.to_string(), ..plan_opts.clone() })?);
        }
        self.build_plans(&plans, opts, &plan_opts.file)
    }

    /// Builds an already planned Dockerfile.
    pub fn build_plan(&self, p: &Plan, opts: &BuildOptions, file: &str) -> Result<BuildReport, BuildError> {
        self.build_plans(std::slice::from_ref(p), opts, file)
    }

    /// Builds plans of one Dockerfile for different platforms (see
    /// [`Plan::platform`]): each into an image, and those into an image
    /// index named by [`BuildOptions::tags`] when there are several
    /// (its digest is then the report's `image` and `config`).
    pub fn build_plans(&self, plans: &[Plan], opts: &BuildOptions, file: &str) -> Result<BuildReport, BuildError> {
        let Some(first) = plans.first() else {
            return Err(BuildError::Platforms("no platform to build for".into()));
        };
        for (i, p) in plans.iter().enumerate() {
            if plans[..i].iter().any(|q| q.platform == p.platform) {
                return Err(BuildError::Platforms(format!("{} is given twice", p.platform)));
            }
        }
        let _guard = self.store.layout().write_guard()?;
        if !opts.context.is_dir() {
            return Err(BuildError::Io {
                action: "use as the build context",
                path: opts.context.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let context = Context::open(&opts.context).map_err(|e| match e {
            ContextError::Io { path, source } => BuildError::Io { action: "read", path, source },
            other => BuildError::Context {
                file: file.into(),
                line: 0,
                instruction: "the build context".into(),
                source: other,
            },
        })?;
        let time = opts.timestamp;
        let run = |p: &Plan, named: bool| {
            let platform = p.platform.clone();
            let run =
                Run { b: self, opts, file, context: &context, time, platform, steps: Vec::new(), cache: Vec::new() };
            run.build(p, named)
        };
        if plans.len() == 1 {
            return run(first, true);
        }
        let mut reports = Vec::new();
        for p in plans {
            reports.push(run(p, false)?);
        }
        let images: Vec<PlatformImage> = reports.iter().flat_map(|r| r.images.clone()).collect();
        let manifests: Vec<(Descriptor, Platform)> =
            images.iter().map(|i| (i.image.clone(), i.platform.clone())).collect();
        let index = self.store.commit_index(&manifests, &opts.tags)?;
        Ok(BuildReport {
            config: index.digest.clone(),
            image: index,
            tags: opts.tags.iter().map(|t| t.pull_reference().familiar()).collect(),
            steps: reports.iter().flat_map(|r| r.steps.clone()).collect(),
            cache: reports.iter().flat_map(|r| r.cache.clone()).collect(),
            layers: reports.iter().map(|r| r.layers).sum(),
            images,
        })
    }
}

/// A layer step's directories: the overlay's upper and work directories
/// and a scratch directory for mount points and generated files.
struct StepDirs {
    upper: PathBuf,
    work: PathBuf,
    scratch: PathBuf,
}

/// One build in progress (of one platform).
struct Run<'b, 'a> {
    b: &'b Builder<'a>,
    opts: &'b BuildOptions,
    file: &'b str,
    context: &'b Context,
    time: Option<u64>,
    /// The platform built for (`TARGETPLATFORM`).
    platform: Platform,
    steps: Vec<StepReport>,
    cache: Vec<CacheEntry>,
}

/// Writes `upper` (an overlay upper directory) as a gzip layer blob into
/// `store` and moves it into `layers`, the layer cache; `None` when it is
/// empty. File times are clamped to `clamp`.
pub(crate) fn commit_upper(
    store: &Store,
    layers: &LayerCache,
    upper: &Path,
    clamp: Option<u64>,
) -> Result<Option<NewLayer>, cargohold_layerfs::Error> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| cargohold_layerfs::Error::Io { action, path, source }
    };
    let empty = std::fs::read_dir(upper).map_err(io("list", upper))?.next().is_none();
    if empty {
        return Ok(None);
    }
    let opts = WriteOptions { clamp_mtime: clamp };
    let layer = store_layer_from(store.layout(), Compression::Gzip, |w| upper_to_layer(upper, w, &opts).map(|_| ()))?;
    let dest = layers.layer_dir(&layer.diff_id);
    if !dest.is_dir() {
        let parent = dest.parent().expect("layer dirs have a parent");
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        if let Err(e) = std::fs::rename(upper, &dest)
            && !dest.is_dir()
        {
            return Err(io("move a new layer into", &dest)(e));
        }
    }
    Ok(Some(layer))
}

/// The store name of the base image `name`: an image of the store as it
/// is, `docker://REF` as `REF` (pulled beforehand by the caller), and an
/// `oci:`, `oci-archive:` or `docker-archive:` image (paths relative to
/// the build context) copied into the store first, named by its digest.
pub(crate) fn import_base(
    store: &Store,
    name: &str,
    context: &Path,
    platform: &Platform,
) -> Result<String, cargohold_image_core::Error> {
    use cargohold_image_core::{CopyOptions, ImageLocation, NoProgress, copy, open_source};
    let loc = match ImageLocation::parse(name)? {
        ImageLocation::Store(n) => return Ok(n),
        ImageLocation::Docker(r) => return Ok(r),
        ImageLocation::Oci { path, tag } => ImageLocation::Oci { path: context.join(path), tag },
        ImageLocation::OciArchive { path, tag } => ImageLocation::OciArchive { path: context.join(path), tag },
        ImageLocation::DockerArchive { path, reference } => {
            ImageLocation::DockerArchive { path: context.join(path), reference }
        }
        other => other,
    };
    let mut src = open_source(&loc, store)?;
    let mut dest = store.dest(None)?;
    let opts = CopyOptions { platform: Some(platform.clone()), all_platforms: false, ..CopyOptions::default() };
    let done = copy(src.as_mut(), &mut dest, &opts, &NoProgress)?;
    Ok(done.manifest.digest.to_string())
}

/// `<store>/.cargohold`: the layer cache, the build cache, scratch space.
pub(crate) fn state_dir(store: &Store) -> PathBuf {
    store.layout().root().join(".cargohold")
}

/// The built-in executor, keeping compiled seccomp filters in the store's
/// private directory.
pub(crate) fn default_executor(store: &Store) -> Namespaces {
    Namespaces::with_cache_dir(state_dir(store).join("seccomp"))
}

/// The executor a command line names (`None`: the built-in one, with its
/// seccomp cache in the store; else `crun`, `runc` or a path to either).
pub fn executor_for(store: &Store, runtime: Option<&str>) -> Result<Box<dyn Executor>, crate::exec::ExecError> {
    crate::exec::executor(runtime, Some(&state_dir(store).join("seccomp")))
}

/// The store's cache of unpacked layers.
pub(crate) fn layer_cache(store: &Store) -> LayerCache {
    LayerCache::new(state_dir(store).join("layers"))
}

/// The store's build cache.
pub(crate) fn build_cache(store: &Store) -> Cache {
    Cache { dir: state_dir(store).join("build-cache") }
}

/// An image's layers with their diff IDs.
pub(crate) fn image_layers(details: &cargohold_image_core::ResolvedImage) -> Vec<NewLayer> {
    details
        .image
        .layers
        .iter()
        .zip(&details.config.rootfs.diff_ids)
        .map(|(d, id)| NewLayer { descriptor: d.clone(), diff_id: id.clone() })
        .collect()
}

/// A new scratch directory `<store>/.cargohold/tmp/<prefix>*` (on the
/// store's filesystem, so its contents can be renamed into the layer
/// cache), removed on drop.
pub(crate) fn scratch_dir(store: &Store, prefix: &str) -> Result<tempfile::TempDir, cargohold_layerfs::Error> {
    let tmp = state_dir(store).join("tmp");
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| cargohold_layerfs::Error::Io { action, path, source }
    };
    std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
    tempfile::Builder::new().prefix(prefix).tempdir_in(&tmp).map_err(io("create a directory in", &tmp))
}

/// `entries` without those `--exclude` patterns match: below each source
/// (a copied directory's contents), or the source itself by name.
fn without_excluded(
    entries: Vec<crate::context::ContextEntry>,
    exclude: &[String],
) -> Vec<crate::context::ContextEntry> {
    if exclude.is_empty() {
        return entries;
    }
    let ignore = crate::dockerignore::Dockerignore::parse(&exclude.join("\n"));
    entries
        .into_iter()
        .filter(|e| {
            let below = e.rel.strip_prefix(&e.matched).unwrap_or(&e.rel);
            let name =
                if below.as_os_str().is_empty() { Path::new(e.rel.file_name().unwrap_or_default()) } else { below };
            !ignore.excluded_path(name) && !ignore.excluded_path(&e.rel)
        })
        .collect()
}

/// `source` (a path in the build context) as a host path: never out of the
/// context (no `..` above it, no symlink on the way).
/// A Unix socket that forwards each connection to an SSH agent's socket,
/// until dropped: what `RUN --mount=type=ssh` binds into the step (the
/// agent's own socket keeps its mode and owner).
struct AgentProxy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The proxy's socket: a connection to it wakes the accepting thread to stop.
    at: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentProxy {
    fn start(agent: &Path, at: &Path, mode: u32, uid: u32, gid: u32) -> std::io::Result<Self> {
        use std::os::unix::net::{UnixListener, UnixStream};
        // The agent must answer now, not halfway through the step.
        UnixStream::connect(agent)?;
        let listener = UnixListener::bind(at)?;
        std::fs::set_permissions(at, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        std::os::unix::fs::chown(at, Some(uid), Some(gid))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (agent, stopping) = (agent.to_path_buf(), std::sync::Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            // Blocks in accept until a client comes, or the drop's wake-up.
            while let Ok((client, _)) = listener.accept() {
                if stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(upstream) = UnixStream::connect(&agent) else { continue };
                let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else { continue };
                let (mut c1, mut u1) = (client, upstream);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut u1);
                    let _ = u1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Ok(AgentProxy { stop, at: at.to_path_buf(), thread: Some(thread) })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wakes the accept. Were the socket gone (it lives as long as the
        // step's scratch directory), the thread is left blocked rather than
        // waited for.
        if std::os::unix::net::UnixStream::connect(&self.at).is_ok()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

/// What a RUN bind mount reads.
enum BindBase {
    /// A host directory: the build context, or a named context.
    Host(PathBuf),
    /// A stage's or image's layers (mounted as one tree while the step runs).
    Layers(Vec<PathBuf>),
}

/// A bind mount that needs mounts of its own (see `Run::special_bind`).
struct SpecialBind {
    /// Its place among the step's mounts.
    n: usize,
    base: BindBase,
    source: String,
    target: String,
    readwrite: bool,
}

fn context_path(root: &Path, source: &str) -> Result<PathBuf, String> {
    let mut path = root.to_path_buf();
    for c in source.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(format!("--mount source {source:?} leaves the build context")),
            c => {
                path.push(c);
                let m = std::fs::symlink_metadata(&path)
                    .map_err(|e| format!("--mount source {source:?}: {e} (in the build context)"))?;
                if m.file_type().is_symlink() {
                    return Err(format!("--mount source {source:?} goes through a symlink"));
                }
            }
        }
    }
    Ok(path)
}

/// Removes from `upper` a mount point the step's mount made (an empty
/// directory or file no lower layer has), and its new empty parents.
fn remove_mountpoint(upper: &Path, lower: &[PathBuf], target: &str) {
    let mut rel = PathBuf::from(target.trim_start_matches('/'));
    loop {
        if rel.as_os_str().is_empty() || lower.iter().any(|d| std::fs::symlink_metadata(d.join(&rel)).is_ok()) {
            return;
        }
        let p = upper.join(&rel);
        let gone = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir(&p).is_ok(),
            Ok(m) if m.is_file() && m.len() == 0 => std::fs::remove_file(&p).is_ok(),
            _ => false,
        };
        if !gone {
            return;
        }
        if !rel.pop() {
            return;
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Run<'_, '_> {
    fn created(&self) -> String {
        format_rfc3339(self.time.unwrap_or_else(now))
    }

    fn step_err(&self, s: &Step, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.file.into(),
            line: s.line,
            instruction: s.created_by.clone(),
            message: message.into(),
        }
    }

    /// Builds the plan's target; names the image with the build's tags when `named`.
    fn build(mut self, p: &Plan, named: bool) -> Result<BuildReport, BuildError> {
        let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
        for stage in p.stages.iter().filter(|s| !p.skipped.contains(&s.index)) {
            let state = self.stage(stage, &done)?;
            done.insert(stage.index, state);
        }
        let target = done.remove(&p.target).expect("the target stage was built");
        let mut config = target.config;
        if !self.opts.labels.is_empty() {
            let c = config.config.get_or_insert_with(Default::default);
            let labels = c.labels.get_or_insert_with(Default::default);
            for (k, v) in &self.opts.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        let last = config.history.pop().unwrap_or_else(|| History {
            created: Some(self.created()),
            created_by: Some("cargohold build".into()),
            empty_layer: Some(true),
            ..History::default()
        });
        // The index names it by the platform asked for (BuildKit's TARGETPLATFORM).
        let platform = self.platform.clone();
        let tags: &[Reference] = if named { &self.opts.tags } else { &[] };
        let image = self.b.store.commit_image_annotated(
            None,
            &target.layers,
            config,
            last,
            tags.first(),
            &self.opts.annotations,
        )?;
        for t in tags.iter().skip(1) {
            self.b.store.tag(t, image.clone())?;
        }
        let config_digest = self.b.store.details(&image, None)?.image.config.digest;
        Ok(BuildReport {
            images: vec![PlatformImage { platform, image: image.clone(), config: config_digest.clone() }],
            image,
            config: config_digest,
            tags: tags.iter().map(|t| t.pull_reference().familiar()).collect(),
            steps: self.steps,
            cache: self.cache,
            layers: target.layers.len(),
        })
    }

    /// The state of an image from the store, for `platform`, its layers
    /// unpacked in the cache.
    fn image_state(&self, name: &str, line: usize, platform: &Platform) -> Result<StageState, BuildError> {
        let base_err =
            |source| BuildError::Base { file: self.file.into(), line, name: name.into(), source: Box::new(source) };
        let store = self.b.store;
        let platform = platform.clone();
        let stored = import_base(store, name, &self.opts.context, &platform).map_err(base_err)?;
        let name = stored.as_str();
        let img = store.resolve(name).map_err(base_err)?;
        let details = store.details(&img.descriptor, Some(&platform)).map_err(base_err)?;
        // A single-platform image is what it is: never used for another.
        let c = &details.config;
        let offered = Platform::new(&c.os, &c.architecture, c.variant.as_deref());
        if !c.architecture.is_empty() && !platform.matches(&offered) {
            return Err(base_err(cargohold_image_core::Error::NoMatchingPlatform {
                wanted: platform.to_string(),
                location: format!("image {name} in the store"),
                available: offered.to_string(),
            }));
        }
        let mut src = store.source(name).map_err(base_err)?;
        let dirs = self.b.layer_cache().ensure(&mut src, Some(&platform))?;
        let layers = image_layers(&details);
        let key = Digest::sha256_of(format!("image {}", details.image.config.digest).as_bytes());
        Ok(StageState { platform, layers, dirs, config: details.config, key })
    }

    fn stage(&mut self, stage: &Stage, done: &BTreeMap<usize, StageState>) -> Result<StageState, BuildError> {
        let mut st = match &stage.base {
            Base::Scratch => {
                let platform = stage.platform.clone();
                let config = ImageConfig {
                    architecture: platform.architecture.clone(),
                    os: platform.os.clone(),
                    variant: platform.variant.clone(),
                    ..ImageConfig::default()
                };
                let key = Digest::sha256_of(format!("scratch {platform}").as_bytes());
                StageState { platform, layers: Vec::new(), dirs: Vec::new(), config, key }
            }
            Base::Stage(i) => {
                let mut st = done.get(i).cloned().expect("stages build in order");
                st.platform = stage.platform.clone();
                st
            }
            Base::Image(name) => self.image_state(name, stage.line, &stage.platform)?,
        };
        // The epoch is part of every key: it changes the bytes of new layers.
        st.key = Digest::sha256_of(format!("{}\n{:?}", st.key, self.time).as_bytes());
        // An image's ONBUILD triggers run first, and are not inherited further.
        let triggers = match &stage.base {
            Base::Image(_) => self.onbuild_steps(stage, &mut st.config)?,
            _ => Vec::new(),
        };
        for step in triggers.iter().chain(&stage.steps) {
            let started = Instant::now();
            if let Some(f) = &self.b.on_start {
                f(&StepReport {
                    platform: self.platform.clone(),
                    stage: stage.index,
                    line: step.line,
                    instruction: step.created_by.clone(),
                    cached: false,
                    layer: None,
                    seconds: 0.0,
                });
            }
            let (cached, layer) = self.step(stage, step, &mut st, done)?;
            st.config.history.push(History {
                created: Some(self.created()),
                created_by: Some(step.created_by.clone()),
                comment: Some("buildkit.dockerfile.v0".into()),
                empty_layer: layer.is_none().then_some(true),
                ..History::default()
            });
            let report = StepReport {
                platform: self.platform.clone(),
                stage: stage.index,
                line: step.line,
                instruction: step.created_by.clone(),
                cached,
                layer: layer.clone(),
                seconds: started.elapsed().as_secs_f64(),
            };
            if let Some(f) = &self.b.on_step {
                f(&report);
            }
            self.steps.push(report);
        }
        st.config.created = Some(self.created());
        Ok(st)
    }

    /// The ONBUILD triggers of a base image's `config`, planned as steps at
    /// the FROM line (taken out of the config: Docker does not pass them on
    /// to the next image). `--deny` applies to them as to the Dockerfile.
    fn onbuild_steps(&self, stage: &Stage, config: &mut ImageConfig) -> Result<Vec<Step>, BuildError> {
        let Some(c) = config.config.as_mut() else { return Ok(Vec::new()) };
        let Some(list) = c.extra.remove("OnBuild") else { return Ok(Vec::new()) };
        let triggers: Vec<String> = serde_json::from_value(list).unwrap_or_default();
        if triggers.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |message: String| BuildError::Step {
            file: self.file.into(),
            line: stage.line,
            instruction: format!("ONBUILD triggers of the base image ({})", triggers.join("; ")),
            message,
        };
        let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
        let parsed = dockerfile::parse(&text, "ONBUILD").map_err(|e| fail(e.message.clone()))?;
        let opts = PlanOptions { target: None, ..self.opts.plan.clone() };
        let planned = plan(&parsed, &opts).map_err(|e| fail(e.message.clone()))?;
        let mut steps = planned.stages.into_iter().next().map(|s| s.steps).unwrap_or_default();
        for s in &mut steps {
            s.line = stage.line;
        }
        Ok(steps)
    }

    /// Runs one step; returns whether it came from the cache and the layer it added.
    fn step(
        &mut self,
        stage: &Stage,
        step: &Step,
        st: &mut StageState,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<(bool, Option<Digest>), BuildError> {
        let _ = stage;
        match &step.kind {
            StepKind::Config(change) => {
                let change = match change.strip_prefix("WORKDIR ") {
                    Some(dir) if !dir.starts_with('/') => {
                        let cur =
                            st.config.config.as_ref().and_then(|c| c.working_dir.clone()).unwrap_or_else(|| "/".into());
                        format!("WORKDIR {}", Path::new(&cur).join(dir).display())
                    }
                    _ => change.clone(),
                };
                st.config.apply_change(&change).map_err(|e| self.step_err(step, e.to_string()))?;
                st.key = Digest::sha256_of(format!("{}\n{change}", st.key).as_bytes());
                Ok((false, None))
            }
            StepKind::Shell(argv) => {
                let c = st.config.config.get_or_insert_with(Default::default);
                c.extra.insert("Shell".into(), serde_json::json!(argv));
                st.key = Digest::sha256_of(format!("{}\nSHELL {argv:?}", st.key).as_bytes());
                Ok((false, None))
            }
            StepKind::Onbuild(trigger) => {
                let c = st.config.config.get_or_insert_with(Default::default);
                let list = c.extra.entry("OnBuild".into()).or_insert_with(|| serde_json::json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(serde_json::json!(trigger));
                }
                st.key = Digest::sha256_of(format!("{}\nONBUILD {trigger}", st.key).as_bytes());
                Ok((false, None))
            }
            StepKind::Meta => Ok((false, None)),
            StepKind::Run { .. } | StepKind::Copy { .. } => self.layer_step(step, st, done),
        }
    }

    fn layer_step(
        &mut self,
        step: &Step,
        st: &mut StageState,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<(bool, Option<Digest>), BuildError> {
        // What the step reads beyond its own text: the content it copies.
        let mut extra = String::new();
        let mut copy_from: Option<StageState> = None;
        let mut entries = Vec::new();
        let mut downloads: (Option<tempfile::TempDir>, Vec<fetch::Download>) = (None, Vec::new());
        if let StepKind::Copy { sources, from, checksum, exclude, .. } = &step.kind {
            match from {
                CopySource::Context => {
                    let (urls, local): (Vec<String>, Vec<String>) =
                        sources.iter().cloned().partition(|s| s.contains("://"));
                    if !urls.is_empty() {
                        downloads = self.fetch(step, &urls)?;
                        if let Some(want) = checksum {
                            for d in &downloads.1 {
                                if d.digest.algorithm() != want.algorithm() || d.digest != *want {
                                    return Err(self.step_err(
                                        step,
                                        format!(
                                            "{}: the download's digest is {}, not --checksum {want}",
                                            d.name, d.digest
                                        ),
                                    ));
                                }
                            }
                        }
                        for d in &downloads.1 {
                            extra.push_str(&format!("{} {} {:?}\n", d.name, d.digest, d.mtime));
                        }
                    }
                    if !local.is_empty() {
                        entries = self.context.resolve(&local).map_err(|e| self.ctx_err(step, e))?;
                        entries = without_excluded(entries, exclude);
                        extra.push_str(&self.context.digest(&entries).map_err(|e| self.ctx_err(step, e))?.to_string());
                    }
                }
                CopySource::Dir(dir) => {
                    let c = Context::open_plain(Path::new(dir));
                    entries = without_excluded(c.resolve(sources).map_err(|e| self.ctx_err(step, e))?, exclude);
                    extra = format!("dir {}", c.digest(&entries).map_err(|e| self.ctx_err(step, e))?);
                }
                CopySource::Stage(i) => {
                    let s = done.get(i).cloned().expect("stages build in order");
                    extra = format!("stage {}", s.key);
                    copy_from = Some(s);
                }
                CopySource::Image(name) => {
                    let s = self.image_state(name, step.line, &self.platform)?;
                    extra = format!("image {}", s.key);
                    copy_from = Some(s);
                }
            }
        }
        // What a RUN's bind mounts show the step: part of its key too.
        let mut bind_from: Vec<Option<StageState>> = Vec::new();
        if let StepKind::Run { mounts, .. } = &step.kind {
            for m in mounts {
                let RunMount::Bind { from, source, .. } = m else {
                    bind_from.push(None);
                    continue;
                };
                let shown = match from {
                    CopySource::Context => {
                        let entries =
                            self.context.resolve(std::slice::from_ref(source)).map_err(|e| self.ctx_err(step, e))?;
                        self.context.digest(&entries).map_err(|e| self.ctx_err(step, e))?.to_string()
                    }
                    CopySource::Dir(dir) => {
                        let c = Context::open_plain(Path::new(dir));
                        let entries = c.resolve(std::slice::from_ref(source)).map_err(|e| self.ctx_err(step, e))?;
                        format!("dir {}", c.digest(&entries).map_err(|e| self.ctx_err(step, e))?)
                    }
                    CopySource::Stage(i) => {
                        let s = done.get(i).cloned().expect("stages build in order");
                        let key = format!("stage {}", s.key);
                        bind_from.push(Some(s));
                        extra.push_str(&format!("bind {key}\n"));
                        continue;
                    }
                    CopySource::Image(name) => {
                        let s = self.image_state(name, step.line, &self.platform)?;
                        let key = format!("image {}", s.key);
                        bind_from.push(Some(s));
                        extra.push_str(&format!("bind {key}\n"));
                        continue;
                    }
                };
                bind_from.push(None);
                extra.push_str(&format!("bind {shown}\n"));
            }
        }
        let key = Digest::sha256_of(format!("{}\n{:?}\n{extra}", st.key, step.kind).as_bytes());
        st.key = key.clone();
        let cache = build_cache(self.b.store);
        if !self.opts.no_cache
            && let Some(hit) = cache.get(&key)
        {
            match hit {
                None => {
                    self.cache.push(CacheEntry { key, layer: None });
                    return Ok((true, None));
                }
                Some(layer) => {
                    let dir = self.b.layer_cache().layer_dir(&layer.diff_id);
                    if dir.is_dir() && self.b.store.layout().blob_path(&layer.descriptor.digest).is_file() {
                        st.dirs.push(dir);
                        st.layers.push(layer.clone());
                        self.cache.push(CacheEntry { key, layer: Some(layer.clone()) });
                        return Ok((true, Some(layer.diff_id)));
                    }
                }
            }
        }
        let scratch = scratch_dir(self.b.store, "step-")?;
        let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir(d).map_err(|e| BuildError::Io { action: "create", path: d.clone(), source: e })?;
        }
        let dirs = StepDirs { upper: upper.clone(), work, scratch: scratch.path().to_path_buf() };
        match &step.kind {
            StepKind::Run { .. } => self.run_step(step, st, &dirs, &bind_from)?,
            StepKind::Copy { .. } => self.copy_step(step, st, &dirs, copy_from.as_ref(), entries, &downloads.1)?,
            _ => unreachable!("only RUN and COPY make layers"),
        }
        let layer = self.commit_upper(&upper)?;
        cache.put(&key, layer.as_ref());
        self.cache.push(CacheEntry { key, layer: layer.clone() });
        if let Some(l) = &layer {
            st.dirs.push(self.b.layer_cache().layer_dir(&l.diff_id));
            st.layers.push(l.clone());
        }
        Ok((false, layer.map(|l| l.diff_id)))
    }

    /// Downloads the URLs of an ADD (only ADD takes them, and only with
    /// the network); the directory holding them lives as long as the step.
    fn fetch(
        &self,
        step: &Step,
        urls: &[String],
    ) -> Result<(Option<tempfile::TempDir>, Vec<fetch::Download>), BuildError> {
        if step.keyword != dockerfile::Keyword::Add {
            return Err(self.step_err(step, format!("{}: COPY does not take URLs (ADD does)", urls[0])));
        }
        if self.opts.network == Network::None {
            return Err(self.step_err(
                step,
                format!("{}: ADD from a URL needs the network (this build has --network none)", urls[0]),
            ));
        }
        let dir = scratch_dir(self.b.store, "add-")?;
        let mut got = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            got.push(fetch::download(url, dir.path(), i).map_err(|e| self.step_err(step, e))?);
        }
        Ok((Some(dir), got))
    }

    fn ctx_err(&self, step: &Step, e: ContextError) -> BuildError {
        BuildError::Context { file: self.file.into(), line: step.line, instruction: step.created_by.clone(), source: e }
    }

    fn commit_upper(&self, upper: &Path) -> Result<Option<NewLayer>, BuildError> {
        Ok(commit_upper(self.b.store, &self.b.layer_cache(), upper, self.time)?)
    }

    fn run_step(
        &self,
        step: &Step,
        st: &StageState,
        dirs: &StepDirs,
        bind_from: &[Option<StageState>],
    ) -> Result<(), BuildError> {
        let StepKind::Run { argv, heredocs, network, args_env, mounts } = &step.kind else {
            unreachable!("run_step runs RUN steps")
        };
        // A stage of another platform runs through its emulator, if any.
        let binfmt = if self.opts.binfmt_misc.as_os_str().is_empty() {
            Path::new(cargohold_runtime::BINFMT_MISC)
        } else {
            self.opts.binfmt_misc.as_path()
        };
        cargohold_runtime::emulation(&st.platform.architecture, binfmt)
            .map_err(|e| self.step_err(step, format!("for {}: {e}", st.platform)))?;
        let network = network.as_deref();
        let scratch = dirs.scratch.as_path();
        let cfg = st.config.config.clone().unwrap_or_default();
        let mut env: Vec<String> = cfg.env.clone().unwrap_or_default();
        for (k, v) in args_env {
            if !env.iter().any(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k)) {
                env.push(format!("{k}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(crate::exec::DEFAULT_PATH.into());
        }
        let user =
            lookup_user(&st.dirs, cfg.user.as_deref().unwrap_or("")).map_err(|e| self.step_err(step, e.to_string()))?;
        let network = match network {
            // `default` is the build's own network (as BuildKit).
            None | Some("default") => self.opts.network,
            Some(n) => n.parse::<Network>().map_err(|e| self.step_err(step, e))?,
        };
        // A Dockerfile does not get the host's network on its own say-so.
        if network == Network::Host && self.opts.network != Network::Host && !self.opts.allow_host_network {
            return Err(self.step_err(
                step,
                "RUN --network=host needs the build's consent (--allow network.host, or --network host)",
            ));
        }
        let mut argv = argv.to_vec();
        let mut binds = Vec::new();
        if !heredocs.is_empty() {
            let shell_form = argv.len() >= 2 && argv[..argv.len() - 1] == self.shell_of(st)[..];
            let only_heredoc = argv.last().is_some_and(|c| c.trim().starts_with("<<") && !c.trim().contains(' '));
            if shell_form && only_heredoc && heredocs[0].body.starts_with("#!") {
                let script = scratch.join("heredoc");
                std::fs::write(&script, &heredocs[0].body).map_err(|e| BuildError::Io {
                    action: "write",
                    path: script.clone(),
                    source: e,
                })?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| BuildError::Io { action: "chmod", path: script.clone(), source: e })?;
                binds.push(crate::exec::BindMount {
                    source: script,
                    target: "/dev/pipes/heredoc".into(),
                    readonly: true,
                });
                argv = vec!["/dev/pipes/heredoc".into()];
            } else if shell_form && only_heredoc {
                let last = argv.len() - 1;
                argv[last] = heredocs[0].body.clone();
            } else if shell_form {
                // The shell reads the here-documents itself.
                let last = argv.len() - 1;
                let mut script = argv[last].clone();
                script.push('\n');
                for h in heredocs {
                    script.push_str(&h.body);
                    script.push_str(&h.name);
                    script.push('\n');
                }
                argv[last] = script;
            }
        }
        let mut tmpfs = Vec::new();
        // Binds that need a mount of their own while the step runs: from a
        // stage or image (its layers), or writable (an overlay whose
        // writes are thrown away).
        let mut special: Vec<SpecialBind> = Vec::new();
        // Held until the step ends: `sharing=locked` cache mounts, and the
        // sockets forwarding to SSH agents.
        let mut _locks: Vec<std::fs::File> = Vec::new();
        let mut _agents: Vec<AgentProxy> = Vec::new();
        let targets: Vec<String> = mounts
            .iter()
            .map(|m| match m {
                RunMount::Cache { target, .. }
                | RunMount::Tmpfs { target, .. }
                | RunMount::Bind { target, .. }
                | RunMount::Secret { target, .. }
                | RunMount::Ssh { target, .. } => target.clone(),
            })
            .collect();
        for (n, m) in mounts.iter().enumerate() {
            match m {
                RunMount::Cache { id, target, locked, mode, uid, gid, readonly } => {
                    let dir = self.cache_mount_dir(id, *mode, *uid, *gid).map_err(|e| self.step_err(step, e))?;
                    if *locked {
                        let lock = dir.with_extension("lock");
                        let f = std::fs::File::create(&lock).map_err(|e| BuildError::Io {
                            action: "create",
                            path: lock.clone(),
                            source: e,
                        })?;
                        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                            .map_err(|e| BuildError::Io { action: "lock", path: lock, source: e.into() })?;
                        _locks.push(f);
                    }
                    binds.push(crate::exec::BindMount { source: dir, target: target.into(), readonly: *readonly });
                }
                RunMount::Tmpfs { target, size } => tmpfs.push(cargohold_runtime::TmpfsMount {
                    target: target.into(),
                    options: size.map(|s| format!("size={s}")).unwrap_or_default(),
                }),
                RunMount::Bind { from, source, target, readwrite } => {
                    let base = match from {
                        CopySource::Context => BindBase::Host(self.context.root().to_path_buf()),
                        CopySource::Dir(d) => BindBase::Host(PathBuf::from(d)),
                        CopySource::Stage(_) | CopySource::Image(_) => match bind_from.get(n).cloned().flatten() {
                            Some(s) => BindBase::Layers(s.dirs),
                            None => unreachable!("a stage or image bind has its state"),
                        },
                    };
                    if matches!(base, BindBase::Host(_)) && !readwrite {
                        let BindBase::Host(root) = &base else { unreachable!() };
                        let path = context_path(root, source).map_err(|e| self.step_err(step, e))?;
                        binds.push(crate::exec::BindMount { source: path, target: target.into(), readonly: true });
                    } else {
                        special.push(SpecialBind {
                            n,
                            base,
                            source: source.clone(),
                            target: target.clone(),
                            readwrite: *readwrite,
                        });
                    }
                }
                RunMount::Ssh { id, target, required, mode, uid, gid } => {
                    let Some((_, socket)) = self.opts.ssh.iter().find(|(i, _)| i == id) else {
                        if *required {
                            return Err(self.step_err(step, format!("ssh agent {id} is required: build --ssh {id}")));
                        }
                        continue;
                    };
                    // A socket of the step's own (with the mode and owner
                    // asked for) forwarding to the agent while the step runs.
                    let at = scratch.join(format!("ssh-{n}.sock"));
                    let proxy = AgentProxy::start(socket, &at, *mode, *uid, *gid)
                        .map_err(|e| self.step_err(step, format!("ssh agent {id} ({}): {e}", socket.display())))?;
                    _agents.push(proxy);
                    binds.push(crate::exec::BindMount { source: at, target: target.into(), readonly: false });
                    env.retain(|e| !e.starts_with("SSH_AUTH_SOCK="));
                    env.push(format!("SSH_AUTH_SOCK={target}"));
                }
                RunMount::Secret { id, target, required, mode, uid, gid } => {
                    let Some((_, src)) = self.opts.secrets.iter().find(|(i, _)| i == id) else {
                        if *required {
                            return Err(self
                                .step_err(step, format!("secret {id} is required: build --secret id={id},src=FILE")));
                        }
                        continue;
                    };
                    let bytes = match src {
                        SecretSource::Bytes(b) => b.clone(),
                        SecretSource::File(p) => std::fs::read(p).map_err(|e| {
                            self.step_err(step, format!("secret {id}: could not read {}: {e}", p.display()))
                        })?,
                    };
                    // A copy of the step's own, with the mode and owner asked for.
                    let file = scratch.join(format!("secret-{n}"));
                    {
                        use std::io::Write as _;
                        use std::os::unix::fs::OpenOptionsExt as _;
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o600)
                            .open(&file)
                            .map_err(|e| BuildError::Io { action: "create", path: file.clone(), source: e })?;
                        f.write_all(&bytes).map_err(|e| BuildError::Io {
                            action: "write",
                            path: file.clone(),
                            source: e,
                        })?;
                    }
                    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(*mode))
                        .map_err(|e| BuildError::Io { action: "chmod", path: file.clone(), source: e })?;
                    std::os::unix::fs::chown(&file, Some(*uid), Some(*gid)).map_err(|e| BuildError::Io {
                        action: "chown",
                        path: file.clone(),
                        source: e,
                    })?;
                    binds.push(crate::exec::BindMount { source: file, target: target.into(), readonly: true });
                }
            }
        }
        let tmp = self.b.state_dir().join("tmp");
        let at = StepRoot {
            tmp: &tmp,
            layers: &st.dirs,
            upper: &dirs.upper,
            work: &dirs.work,
            scratch: &dirs.scratch,
            copy_up: self.opts.copy_up,
            keep: true,
        };
        let make = |root, binds| RunSpec {
            root,
            argv,
            env,
            cwd: cfg.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
            user,
            hostname: "buildkitsandbox".into(),
            network,
            binds,
            ports: Vec::new(),
            tmpfs,
            dns: Vec::new(),
            extra_hosts: Vec::new(),
            limits: crate::exec::Limits::default(),
            tty: false,
            security: self.opts.security.clone(),
            init: None,
            systemd: false,
            state_dir: None,
        };
        let run = |binds: Vec<crate::exec::BindMount>| match &self.b.on_output {
            None => run_step(self.b.executor.as_ref(), at, |root| make(root, binds), ProcessIo::to_stderr()),
            Some(f) => {
                // The step's output through a pipe, to the caller.
                let (mut reader, writer) = std::io::pipe()
                    .map_err(|e| StepFailure::Root(format!("could not make a pipe for its output: {e}")))?;
                let io = ProcessIo {
                    stdin: std::process::Stdio::null(),
                    stdout: writer.try_clone().map_or_else(|_| std::process::Stdio::null(), Into::into),
                    stderr: writer.into(),
                };
                std::thread::scope(|s| {
                    s.spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                            if n == 0 {
                                break;
                            }
                            f(&buf[..n]);
                        }
                    });
                    run_step(self.b.executor.as_ref(), at, |root| make(root, binds), io)
                })
            }
        };
        let code = if special.is_empty() {
            run(binds)
        } else {
            in_private_mounts(|| -> Result<Result<i32, StepFailure>, BuildError> {
                let mut binds = binds;
                for b in &special {
                    binds.push(self.special_bind(step, scratch, b)?);
                }
                Ok(run(binds))
            })
            .map_err(|e| self.step_err(step, e))??
        };
        let code = code.map_err(|e| match e {
            StepFailure::Exec(e) => BuildError::Exec {
                file: self.file.into(),
                line: step.line,
                instruction: step.created_by.clone(),
                source: e,
            },
            StepFailure::Root(e) => self.step_err(step, e),
        })?;
        if code != 0 {
            return Err(BuildError::Failed {
                file: self.file.into(),
                line: step.line,
                instruction: step.created_by.clone(),
                code,
            });
        }
        // Mount points the step's mounts made are not the layer's.
        for t in &targets {
            remove_mountpoint(&dirs.upper, &st.dirs, t);
        }
        Ok(())
    }

    /// Mounts what a [`SpecialBind`] shows (in the step's private mount
    /// namespace) and returns the bind for the container. The source is
    /// resolved inside the stage's or context's tree without following
    /// symbolic links or leaving it.
    fn special_bind(&self, step: &Step, scratch: &Path, b: &SpecialBind) -> Result<crate::exec::BindMount, BuildError> {
        let dir = scratch.join(format!("bind-{}", b.n));
        let made = |d: &Path| {
            std::fs::create_dir_all(d).map_err(|e| BuildError::Io { action: "create", path: d.into(), source: e })
        };
        let root = match &b.base {
            BindBase::Host(root) => root.clone(),
            BindBase::Layers(layers) => {
                let view = dir.join("view");
                made(&view)?;
                if !layers.is_empty() {
                    mount_overlay(layers, None, &view).map_err(|e| self.step_err(step, e))?;
                }
                view
            }
        };
        let path = context_path(&root, &b.source).map_err(|e| self.step_err(step, e))?;
        if !b.readwrite {
            return Ok(crate::exec::BindMount { source: path, target: b.target.clone().into(), readonly: true });
        }
        // Writable, the writes thrown away: a directory under an overlay
        // with a scratch upper; a file as a scratch copy.
        let meta = std::fs::symlink_metadata(&path).map_err(|e| BuildError::Io {
            action: "stat",
            path: path.clone(),
            source: e,
        })?;
        let source = if meta.is_dir() {
            let (upper, work, rw) = (dir.join("upper"), dir.join("work"), dir.join("rw"));
            for d in [&upper, &work, &rw] {
                made(d)?;
            }
            mount_overlay(std::slice::from_ref(&path), Some((&upper, &work)), &rw)
                .map_err(|e| self.step_err(step, e))?;
            rw
        } else {
            let copy = dir.join("file");
            made(&dir)?;
            std::fs::copy(&path, &copy).map_err(|e| BuildError::Io {
                action: "copy",
                path: path.clone(),
                source: e,
            })?;
            copy
        };
        Ok(crate::exec::BindMount { source, target: b.target.clone().into(), readonly: false })
    }

    /// The directory of a cache mount (made, with its mode and owner, the
    /// first time).
    fn cache_mount_dir(&self, id: &str, mode: u32, uid: u32, gid: u32) -> Result<PathBuf, String> {
        let base = self.b.state_dir().join("cache-mounts");
        let dir = base.join(Digest::sha256_of(id.as_bytes()).hex());
        if dir.is_dir() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&base).map_err(|e| format!("could not create {}: {e}", base.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&base)
            .map_err(|e| format!("could not create a cache mount in {}: {e}", base.display()))?;
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(mode))
            .and_then(|()| std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid)))
            .map_err(|e| format!("could not prepare a cache mount: {e}"))?;
        let made = tmp.keep();
        // Another build may have made it meanwhile: theirs stays.
        if std::fs::rename(&made, &dir).is_err() {
            let _ = std::fs::remove_dir(&made);
        }
        Ok(dir)
    }

    fn shell_of(&self, st: &StageState) -> Vec<String> {
        st.config
            .config
            .as_ref()
            .and_then(|c| c.extra.get("Shell"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn copy_step(
        &self,
        step: &Step,
        st: &StageState,
        dirs: &StepDirs,
        from: Option<&StageState>,
        entries: Vec<crate::context::ContextEntry>,
        downloads: &[fetch::Download],
    ) -> Result<(), BuildError> {
        let StepKind::Copy { add, sources, dest, chown, chmod, heredocs, from: source, link, parents, .. } = &step.kind
        else {
            unreachable!("copy_step runs COPY and ADD steps")
        };
        let owner = match chown {
            Some(c) => {
                let ids = lookup_user(&st.dirs, c).map_err(|e| self.step_err(step, e.to_string()))?;
                (ids.uid, ids.gid)
            }
            None => (0, 0),
        };
        let chmod = match chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| self.step_err(step, format!("--chmod={m} is not an octal mode")))?,
            ),
            None => None,
        };
        let workdir = st.config.config.as_ref().and_then(|c| c.working_dir.clone()).unwrap_or_else(|| "/".into());
        let dest =
            if dest.starts_with('/') { dest.clone() } else { format!("{}/{dest}", workdir.trim_end_matches('/')) };
        let (upper, work, scratch) = (dirs.upper.as_path(), dirs.work.as_path(), dirs.scratch.as_path());
        let merged = scratch.join("merged");
        let src_view = scratch.join("from");
        for d in [&merged, &src_view] {
            std::fs::create_dir(d).map_err(|e| BuildError::Io { action: "create", path: d.clone(), source: e })?;
        }
        // --link: the files go onto an empty root (nothing below is followed).
        let copyup =
            if st.dirs.is_empty() || *link || copyup::use_overlay(&self.b.state_dir().join("tmp"), self.opts.copy_up) {
                None
            } else {
                Some(copyup::CopyUp::prepare(&st.dirs, scratch).map_err(|e| self.step_err(step, e))?)
            };
        let result: Result<(), BuildError> = in_private_mounts(|| {
            let root_dir = match &copyup {
                _ if st.dirs.is_empty() || *link => upper.to_path_buf(),
                Some(c) => c.root.clone(),
                None => {
                    mount_overlay(&st.dirs, Some((upper, work)), &merged).map_err(|e| self.step_err(step, e))?;
                    merged.clone()
                }
            };
            let (src_root, entries) = match from {
                None => match source {
                    CopySource::Dir(d) => (PathBuf::from(d), entries),
                    _ => (self.context.root().to_path_buf(), entries),
                },
                Some(s) => {
                    if !s.dirs.is_empty() {
                        mount_overlay(&s.dirs, None, &src_view).map_err(|e| self.step_err(step, e))?;
                    }
                    let ctx = Context::open_plain(&src_view);
                    let excluded = match &step.kind {
                        StepKind::Copy { exclude, .. } => exclude.clone(),
                        _ => Vec::new(),
                    };
                    let entries = without_excluded(ctx.resolve(sources).map_err(|e| self.ctx_err(step, e))?, &excluded);
                    (src_view.clone(), entries)
                }
            };
            let root = Root::open(&root_dir)
                .map_err(|e| self.step_err(step, format!("could not open {}: {e}", root_dir.display())))?;
            let job = copy::CopyJob {
                src_root: &src_root,
                entries,
                heredocs,
                downloads,
                dest: dest.clone(),
                owner,
                chmod,
                extract: *add,
                parents: *parents,
            };
            copy::copy_into(&root, &job).map_err(|f| {
                self.step_err(step, format!("could not {} {}: {}", f.action, f.path.display(), f.source))
            })?;
            Ok(())
        })
        .map_err(|e| self.step_err(step, e))?;
        result?;
        if let Some(c) = copyup {
            c.finish(upper).map_err(|e| self.step_err(step, e))?;
        }
        Ok(())
    }
}
