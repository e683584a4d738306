//! Staged builds (`cargohold stage DIR`), with the conventions of
//! makina-states' image directories:
//!
//! ```text
//! DIR/stage.toml                 image, base, base_tarball, command, [env]
//! DIR/injected_volumes/...       copied to / (owner, mode, xattrs, POSIX ACLs)
//! DIR/image_rootfs/...           the same, over injected_volumes
//! DIR/*/bootstrap_scripts/       stage2.sh, stage3.sh, selfcheck.sh (+ helpers)
//! ```
//!
//! The pipeline: the base (an image of the store, `scratch`, or `scratch`
//! plus a rootfs tarball imported as the first layer) -> one layer with
//! the injected trees (`injected_volumes/`, then `image_rootfs/` over it;
//! see [`inject`](self) for the metadata rules) -> `stage2.sh` and
//! `stage3.sh`, each run in an isolated container on the layers so far and
//! committed as a layer -> `selfcheck.sh`, run on the result with its
//! changes thrown away. Only when every stage exits 0 is the image
//! committed and tagged `<image>:candidate`; [`promote`] retags it.
//!
//! The scripts come from `bootstrap_scripts/` of either tree (`image_rootfs`
//! wins, file by file), which is mounted read-only at `/bootstrap_scripts`
//! while the stages run and is not part of the image. A missing stage
//! script is skipped. Stage layers are cached like RUN steps (keyed by the
//! layers below, the scripts and the environment); `no_cache` runs them
//! again. The selfcheck always runs.

pub(crate) mod inject;
mod tarball;

/// A root filesystem tarball (plain, gzip, zstd or xz; anything that is
/// not a tar is refused) stored as a layer of `store` and unpacked into its
/// layer cache in the same pass: `import` and `stage`'s `base_tarball`.
pub fn import_tarball(store: &Store, path: &Path) -> Result<NewLayer, StageError> {
    tarball::import(store.layout(), &crate::build::layer_cache(store), path)
}

/// [`import_tarball`] from a stream (`import -`): spooled to the store's
/// scratch space first, the spool removed whatever happens.
pub fn import_tarball_stream(store: &Store, input: &mut dyn std::io::Read) -> Result<NewLayer, StageError> {
    let scratch = scratch_dir(store, "import-")?;
    let spool = scratch.path().join("standard-input");
    let mut file = std::fs::File::create(&spool).map_err(StageError::io("create", &spool))?;
    std::io::copy(input, &mut file).map_err(StageError::io("spool standard input to", &spool))?;
    drop(file);
    import_tarball(store, &spool)
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cargohold_image_core::{
    Descriptor, Digest, History, ImageConfig, NewLayer, Platform, Reference, ResolvedImage, Store, format_rfc3339,
};
use cargohold_layerfs::{LayerCache, Root};
use serde::Deserialize;

use crate::build::copyup::{CopyUp, use_overlay};
use crate::build::{commit_upper, scratch_dir};
use crate::exec::{BindMount, DEFAULT_PATH, ExecError, Executor, Network, ProcessIo, RunSpec};
use crate::step::{StepFailure, StepRoot, run_step_with};
use cargohold_runtime::{in_private_mounts, mount_overlay};

/// The stage scripts, in the order they run.
pub const STAGES: [&str; 3] = ["stage2", "stage3", "selfcheck"];

/// The trees copied into the image, in order (the later wins).
pub const TREES: [&str; 2] = ["injected_volumes", "image_rootfs"];

/// `stage.toml`; every key is also a flag of `cargohold stage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// The image's repository name (`mycompany/myimage`); the result is
    /// tagged `<image>:candidate`.
    pub image: Option<String>,
    /// `scratch` (the default) or an image of the store.
    pub base: Option<String>,
    /// A rootfs tarball (plain, `.gz`, `.zst`, `.xz`), relative to the
    /// image directory, imported as the first layer over a `scratch` base.
    pub base_tarball: Option<PathBuf>,
    /// The image's command (default `["/sbin/init"]`).
    pub command: Option<Vec<String>>,
    /// Environment of the stage scripts (not of the image).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Boot systemd (`/sbin/init`) for each stage and run its script in the
    /// booted system (then halt it), as the makina-states flow does.
    pub systemd: Option<bool>,
}

impl StageConfig {
    /// Reads `DIR/stage.toml` (an empty config when there is none).
    pub fn load(dir: &Path) -> Result<Self, StageError> {
        let path = dir.join("stage.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StageConfig::default()),
            Err(e) => return Err(StageError::io("read", &path)(e)),
        };
        toml::from_str(&text).map_err(|e| StageError::Config { path, message: e.to_string().trim_end().to_owned() })
    }

    /// `self` with every key `over` sets taken from `over` (`env` merged).
    pub fn overridden_by(mut self, over: StageConfig) -> Self {
        self.image = over.image.or(self.image);
        self.base = over.base.or(self.base);
        self.base_tarball = over.base_tarball.or(self.base_tarball);
        self.command = over.command.or(self.command);
        self.env.extend(over.env);
        self.systemd = over.systemd.or(self.systemd);
        self
    }
}

/// A staged build.
#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    /// The image directory.
    pub dir: PathBuf,
    /// Its `stage.toml` with the command line's overrides.
    pub config: StageConfig,
    /// Run every stage even when the cache has it.
    pub no_cache: bool,
    /// The network of the stages.
    pub network: Network,
    /// The confinement of the stage scripts (capabilities, seccomp).
    pub security: crate::exec::Security,
    /// Every timestamp (default: `SOURCE_DATE_EPOCH`, else now).
    pub timestamp: Option<u64>,
    /// Platform of a `scratch` image, and of the base image to use
    /// (default: this host's).
    pub platform: Option<Platform>,
    /// Never mount a writable overlay (see [`BuildOptions::copy_up`](crate::build::BuildOptions::copy_up)).
    pub copy_up: bool,
}

/// One step of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStep {
    /// `base`, `inject`, `stage2`, `stage3` or `selfcheck`.
    pub name: String,
    /// Taken from the cache.
    pub cached: bool,
    /// The layer it added.
    pub layer: Option<Digest>,
    /// Wall time.
    pub seconds: f64,
}

/// A successful staged build.
#[derive(Debug, Clone)]
pub struct StageReport {
    /// The image manifest.
    pub image: Descriptor,
    /// Its config digest (the image ID).
    pub config: Digest,
    /// `<image>:candidate`.
    pub tag: String,
    /// Every step, in order.
    pub steps: Vec<StageStep>,
    /// Stage scripts that were not there.
    pub skipped: Vec<String>,
    /// Things left out of the injected trees.
    pub warnings: Vec<String>,
}

/// Why a staged build failed (nothing was tagged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// `stage.toml` or a setting is wrong.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The layers could not be mounted or copied for a step.
    #[error("{step}: {message}")]
    Root {
        /// `inject` or the script.
        step: String,
        /// What failed (it names the path).
        message: String,
    },
    /// The base image is not usable.
    #[error("base image {name}")]
    Base {
        /// The image.
        name: String,
        /// Why.
        #[source]
        source: Box<cargohold_image_core::Error>,
    },
    /// The rootfs tarball is not usable.
    #[error("tarball {}: {reason}", path.display())]
    Tarball {
        /// The tarball.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file of an injected tree could not be copied.
    #[error("could not {action} {}", path.display())]
    Inject {
        /// The file in the tree.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stage's container could not run.
    #[error("{stage}: the container could not run")]
    Exec {
        /// The script.
        stage: String,
        /// Why.
        #[source]
        source: ExecError,
    },
    /// A stage exited non-zero.
    #[error("{stage} failed with exit code {code}; nothing was tagged")]
    Failed {
        /// The script.
        stage: String,
        /// Its exit code.
        code: i32,
    },
    /// The store failed.
    #[error("the image store")]
    Store(#[source] Box<cargohold_image_core::Error>),
    /// Writing or unpacking a layer failed.
    #[error("a layer")]
    Layer(#[from] cargohold_layerfs::Error),
    /// A file operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<cargohold_image_core::Error> for StageError {
    fn from(e: cargohold_image_core::Error) -> Self {
        StageError::Store(Box::new(e))
    }
}

impl StageError {
    fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StageError + 'p {
        move |source| StageError::Io { action, path: path.to_path_buf(), source }
    }
}

/// The candidate tag of repository `image`.
pub fn candidate_of(image: &str) -> Result<Reference, String> {
    let r = Reference::parse(image).map_err(|e| format!("image {image:?}: {e}"))?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(format!("image {image:?} must be a repository name without a tag or digest"));
    }
    Reference::parse(&format!("{image}:candidate")).map_err(|e| format!("image {image:?}: {e}"))
}

/// Tags `<image>:candidate` as `<image>:<tag>`; returns the image.
pub fn promote(store: &Store, image: &str, tag: &str) -> Result<Descriptor, StageError> {
    let bad = |message: String| StageError::Config { path: PathBuf::from(image), message };
    let candidate = candidate_of(image).map_err(bad)?;
    let target = Reference::parse(&format!("{image}:{tag}")).map_err(|e| bad(format!("tag {tag:?}: {e}")))?;
    let _guard = store.layout().write_guard()?;
    let found = store
        .resolve(&candidate.canonical())
        .map_err(|e| StageError::Base { name: candidate.familiar(), source: Box::new(e) })?;
    store.tag(&target, found.descriptor.clone())?;
    Ok(found.descriptor)
}

/// The layers and config as the pipeline goes.
struct State {
    base: Option<ResolvedImage>,
    new: Vec<NewLayer>,
    dirs: Vec<PathBuf>,
    config: ImageConfig,
    key: Digest,
    history: Vec<History>,
}

/// Called after every step.
type StepHook<'a> = Box<dyn Fn(&StageStep) + Send + Sync + 'a>;

/// Runs staged builds into a store.
pub struct Stager<'a> {
    store: &'a Store,
    executor: Box<dyn Executor + 'a>,
    on_step: Option<StepHook<'a>>,
}

impl std::fmt::Debug for Stager<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stager").field("store", &self.store.layout().root()).finish_non_exhaustive()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl<'a> Stager<'a> {
    /// A stager writing to `store`, running stages with [`Namespaces`](crate::exec::Namespaces).
    pub fn new(store: &'a Store) -> Self {
        Stager { store, executor: Box::new(crate::build::default_executor(store)), on_step: None }
    }

    /// Runs the stages with `executor` instead.
    pub fn with_executor(mut self, executor: impl Executor + 'a) -> Self {
        self.executor = Box::new(executor);
        self
    }

    /// Calls `f` after every step.
    pub fn on_step(mut self, f: impl Fn(&StageStep) + Send + Sync + 'a) -> Self {
        self.on_step = Some(Box::new(f));
        self
    }

    fn state_dir(&self) -> PathBuf {
        crate::build::state_dir(self.store)
    }

    fn layer_cache(&self) -> LayerCache {
        crate::build::layer_cache(self.store)
    }

    /// Runs the pipeline of `opts`; tags `<image>:candidate` only when every
    /// stage passed.
    pub fn run(&self, opts: &StageOptions) -> Result<StageReport, StageError> {
        let dir = &opts.dir;
        if !dir.is_dir() {
            return Err(StageError::Config { path: dir.clone(), message: "not a directory".into() });
        }
        let cfg = &opts.config;
        let image = cfg.image.clone().ok_or_else(|| StageError::Config {
            path: dir.join("stage.toml"),
            message: "no image name (set `image = \"NAME\"` or pass --image)".into(),
        })?;
        let candidate =
            candidate_of(&image).map_err(|message| StageError::Config { path: dir.join("stage.toml"), message })?;
        let time = opts.timestamp;
        let created = format_rfc3339(time.unwrap_or_else(now));
        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let _guard = self.store.layout().write_guard()?;
        let scratch = scratch_dir(self.store, "stage-")?;
        let mut steps = Vec::new();
        let mut report_step = |name: &str, cached: bool, layer: Option<Digest>, started: Instant| {
            let s = StageStep { name: name.into(), cached, layer, seconds: started.elapsed().as_secs_f64() };
            if let Some(f) = &self.on_step {
                f(&s);
            }
            steps.push(s);
        };

        // The base.
        let started = Instant::now();
        let mut st = self.base(opts, &platform, &created)?;
        let base_layer = st.new.last().map(|l| l.diff_id.clone());
        report_step("base", false, base_layer, started);
        st.key = Digest::sha256_of(format!("{}\n{time:?}", st.key).as_bytes());

        // The injected trees.
        let started = Instant::now();
        let mut warnings = Vec::new();
        let layer = self.inject(dir, &st, scratch.path(), (time, opts.copy_up), &mut warnings)?;
        st.key = Digest::sha256_of(format!("{}\ninject {:?}", st.key, layer.as_ref().map(|l| &l.diff_id)).as_bytes());
        st.history.push(History {
            created: Some(created.clone()),
            created_by: Some(format!("cargohold stage: copy {} to /", TREES.join(", "))),
            empty_layer: layer.is_none().then_some(true),
            ..History::default()
        });
        let diff = layer.as_ref().map(|l| l.diff_id.clone());
        if let Some(l) = layer {
            st.dirs.push(self.layer_cache().layer_dir(&l.diff_id));
            st.new.push(l);
        }
        report_step("inject", false, diff, started);

        // The scripts.
        let scripts = scratch.path().join("bootstrap_scripts");
        std::fs::create_dir(&scripts).map_err(StageError::io("create", &scripts))?;
        for tree in TREES {
            let from = dir.join(tree).join("bootstrap_scripts");
            if from.is_dir() {
                copy_plain(&from, &scripts)?;
            }
        }
        let scripts_digest = tree_digest(&scripts)?;
        let mut skipped = Vec::new();
        for stage in STAGES {
            let file = format!("{stage}.sh");
            let path = scripts.join(&file);
            if !path.is_file() {
                skipped.push(file);
                continue;
            }
            let started = Instant::now();
            let env: Vec<String> = cfg.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let key = Digest::sha256_of(
                format!("{}\n{stage}\n{scripts_digest}\n{env:?}\n{:?}\n{:?}", st.key, opts.network, cfg.systemd)
                    .as_bytes(),
            );
            let cache = crate::build::build_cache(self.store);
            let last = stage == "selfcheck";
            let hit = (!opts.no_cache && !last).then(|| cache.get(&key)).flatten().and_then(|hit| match hit {
                None => Some(None),
                Some(l) => {
                    let dir = self.layer_cache().layer_dir(&l.diff_id);
                    let blob = self.store.layout().blob_path(&l.descriptor.digest);
                    (dir.is_dir() && blob.is_file()).then_some(Some(l))
                }
            });
            let (cached, layer) = match hit {
                Some(layer) => (true, layer),
                None => {
                    let layer = self.run_stage(stage, &path, &scripts, &st, scratch.path(), opts, time)?;
                    if !last {
                        cache.put(&key, layer.as_ref());
                    }
                    (false, layer)
                }
            };
            let diff = layer.as_ref().map(|l| l.diff_id.clone());
            if !last {
                st.key = key;
                st.history.push(History {
                    created: Some(created.clone()),
                    created_by: Some(format!("cargohold stage: /bootstrap_scripts/{file}")),
                    empty_layer: layer.is_none().then_some(true),
                    ..History::default()
                });
                if let Some(l) = layer {
                    st.dirs.push(self.layer_cache().layer_dir(&l.diff_id));
                    st.new.push(l);
                }
            }
            report_step(stage, cached, diff, started);
        }

        // The candidate.
        let command = cfg.command.clone().unwrap_or_else(|| vec!["/sbin/init".into()]);
        let mut config = st.config;
        config.created = Some(created.clone());
        let c = config.config.get_or_insert_with(Default::default);
        c.cmd = Some(command.clone());
        config.history.extend(st.history);
        let last = History {
            created: Some(created),
            created_by: Some(format!("CMD {}", serde_json::to_string(&command).unwrap_or_default())),
            empty_layer: Some(true),
            ..History::default()
        };
        let image = self.store.commit_image(st.base.as_ref(), &st.new, config, last, Some(&candidate))?;
        let config_digest = self.store.details(&image, None)?.image.config.digest;
        Ok(StageReport { image, config: config_digest, tag: candidate.familiar(), steps, skipped, warnings })
    }

    fn base(&self, opts: &StageOptions, platform: &Platform, created: &str) -> Result<State, StageError> {
        let cfg = &opts.config;
        let base = cfg.base.clone().unwrap_or_else(|| "scratch".into());
        if base != "scratch" {
            if let Some(t) = &cfg.base_tarball {
                return Err(StageError::Config {
                    path: opts.dir.join("stage.toml"),
                    message: format!("base_tarball {} needs base = \"scratch\" (the base is {base})", t.display()),
                });
            }
            let base_err = |e| StageError::Base { name: base.clone(), source: Box::new(e) };
            let img = self.store.resolve(&base).map_err(base_err)?;
            let details = self.store.details(&img.descriptor, Some(platform)).map_err(base_err)?;
            let mut src = self.store.source(&base).map_err(base_err)?;
            let dirs = self.layer_cache().ensure(&mut src, Some(platform))?;
            let key = Digest::sha256_of(format!("image {}", details.image.config.digest).as_bytes());
            let config = details.config.clone();
            return Ok(State { base: Some(details), new: Vec::new(), dirs, config, key, history: Vec::new() });
        }
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            ..ImageConfig::default()
        };
        let mut st = State {
            base: None,
            new: Vec::new(),
            dirs: Vec::new(),
            config,
            key: Digest::sha256_of(format!("scratch {platform}").as_bytes()),
            history: Vec::new(),
        };
        if let Some(t) = &cfg.base_tarball {
            let path = opts.dir.join(t);
            if !path.is_file() {
                return Err(StageError::Tarball { path, reason: "no such file".into() });
            }
            let file_key = tarball::file_digest(&path)?;
            let key = Digest::sha256_of(format!("rootfs tarball {file_key}").as_bytes());
            let cache = crate::build::build_cache(self.store);
            let cached = cache.get(&key).flatten().filter(|l| {
                self.layer_cache().layer_dir(&l.diff_id).is_dir()
                    && self.store.layout().blob_path(&l.descriptor.digest).is_file()
            });
            let layer = match cached {
                Some(l) => l,
                None => {
                    let l = tarball::import(self.store.layout(), &self.layer_cache(), &path)?;
                    cache.put(&key, Some(&l));
                    l
                }
            };
            st.key = Digest::sha256_of(format!("{}\n{}", st.key, layer.diff_id).as_bytes());
            st.dirs.push(self.layer_cache().layer_dir(&layer.diff_id));
            st.history.push(History {
                created: Some(created.into()),
                created_by: Some(format!(
                    "cargohold stage: import {} to /",
                    t.file_name().map_or_else(|| t.display().to_string(), |n| n.to_string_lossy().into_owned())
                )),
                ..History::default()
            });
            st.new.push(layer);
        }
        Ok(st)
    }

    /// Copies the injected trees over the layers of `st` into a new layer.
    fn inject(
        &self,
        dir: &Path,
        st: &State,
        scratch: &Path,
        (time, copy_up): (Option<u64>, bool),
        warnings: &mut Vec<String>,
    ) -> Result<Option<NewLayer>, StageError> {
        let work_dir = scratch.join("inject");
        let (upper, work, merged) = (work_dir.join("upper"), work_dir.join("work"), work_dir.join("merged"));
        for d in [&work_dir, &upper, &work, &merged] {
            std::fs::create_dir(d).map_err(StageError::io("create", d))?;
        }
        let trees: Vec<PathBuf> = TREES.iter().map(|t| dir.join(t)).filter(|p| p.is_dir()).collect();
        if trees.is_empty() {
            return Ok(None);
        }
        let copyup = if st.dirs.is_empty() || use_overlay(&self.state_dir().join("tmp"), copy_up) {
            None
        } else {
            let c = CopyUp::prepare(&st.dirs, &work_dir);
            Some(c.map_err(|message| StageError::Root { step: "inject".into(), message })?)
        };
        let result = in_private_mounts(|| -> Result<(), StageError> {
            let root_dir = match &copyup {
                _ if st.dirs.is_empty() => upper.clone(),
                Some(c) => c.root.clone(),
                None => {
                    mount_overlay(&st.dirs, Some((&upper, &work)), &merged)
                        .map_err(|message| StageError::Root { step: "inject".into(), message })?;
                    merged.clone()
                }
            };
            let root = Root::open(&root_dir).map_err(|e| StageError::io("open", &root_dir)(e.into()))?;
            let mut report = inject::InjectReport::default();
            for tree in &trees {
                inject::inject_tree(&root, tree, &["bootstrap_scripts"], &mut report)
                    .map_err(|f| StageError::Inject { path: f.path, action: f.action, source: f.source })?;
            }
            warnings.extend(report.warnings);
            Ok(())
        })
        .map_err(|message| StageError::Root { step: "inject".into(), message })?;
        result?;
        if let Some(c) = copyup {
            c.finish(&upper).map_err(|message| StageError::Root { step: "inject".into(), message })?;
        }
        Ok(commit_upper(self.store, &self.layer_cache(), &upper, time)?)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_stage(
        &self,
        stage: &str,
        script: &Path,
        scripts: &Path,
        st: &State,
        scratch: &Path,
        opts: &StageOptions,
        time: Option<u64>,
    ) -> Result<Option<NewLayer>, StageError> {
        let dir = scratch.join(stage);
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for d in [&dir, &upper, &work] {
            std::fs::create_dir(d).map_err(StageError::io("create", d))?;
        }
        let cfg = st.config.config.clone().unwrap_or_default();
        let mut env = cfg.env.clone().unwrap_or_default();
        let mut set = |kv: String| {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k).to_owned();
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            env.push(kv);
        };
        for (k, v) in &opts.config.env {
            set(format!("{k}={v}"));
        }
        set(format!("CARGOHOLD_STAGE={stage}"));
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(DEFAULT_PATH.into());
        }
        let file = script.file_name().expect("a script has a name").to_string_lossy().into_owned();
        let in_container = format!("/bootstrap_scripts/{file}");
        let shebang = has_shebang(script)?;
        let argv = if shebang { vec![in_container] } else { vec!["/bin/sh".into(), in_container] };
        let tmp = self.state_dir().join("tmp");
        let at = StepRoot {
            tmp: &tmp,
            layers: &st.dirs,
            upper: &upper,
            work: &work,
            scratch: &dir,
            copy_up: opts.copy_up,
            keep: stage != "selfcheck",
        };
        let systemd = opts.config.systemd == Some(true);
        let script_env = env.clone();
        let script_argv = argv.clone();
        let make = |root| {
            let spec = RunSpec {
                root,
                argv: if systemd { vec!["/sbin/init".into()] } else { argv },
                env,
                cwd: "/".into(),
                user: crate::exec::UserIds { uid: 0, gid: 0, groups: Vec::new() },
                hostname: "cargohold".into(),
                network: opts.network,
                binds: vec![BindMount {
                    source: scripts.to_path_buf(),
                    target: "/bootstrap_scripts".into(),
                    readonly: true,
                }],
                ports: Vec::new(),
                tmpfs: Vec::new(),
                dns: Vec::new(),
                extra_hosts: Vec::new(),
                limits: crate::exec::Limits::default(),
                tty: false,
                security: opts.security.clone(),
                init: None,
                systemd: false,
                state_dir: None,
            };
            if systemd { spec.with_systemd() } else { spec }
        };
        let executor = self.executor.as_ref();
        let seccomp = self.state_dir().join("seccomp");
        let run = |spec: &RunSpec| -> Result<i32, ExecError> {
            if !systemd {
                return executor.run(spec, ProcessIo::to_stderr());
            }
            // Boot, the script in the booted system, halt.
            let script = crate::exec::ExecProcess {
                argv: script_argv,
                env: script_env,
                cwd: "/".into(),
                user: crate::exec::UserIds { uid: 0, gid: 0, groups: Vec::new() },
                tty: false,
            };
            let timeouts = (std::time::Duration::from_secs(120), std::time::Duration::from_secs(60));
            let (code, _) = crate::exec::with_booted_system(
                executor,
                spec,
                ProcessIo::to_stderr(),
                Some(&seccomp),
                timeouts,
                |booted| booted.exec(&script, ProcessIo::to_stderr()),
            )?;
            code
        };
        let code = run_step_with(at, make, run).map_err(|e| match e {
            StepFailure::Exec(source) => StageError::Exec { stage: file.clone(), source },
            StepFailure::Root(message) => StageError::Root { step: stage.into(), message },
        })?;
        if systemd && code == 0 {
            forget_boot(&upper, &st.dirs)?;
        }
        if code != 0 {
            return Err(StageError::Failed { stage: file, code });
        }
        if stage == "selfcheck" {
            return Ok(None);
        }
        Ok(commit_upper(self.store, &self.layer_cache(), &upper, time)?)
    }
}

/// What booting systemd leaves behind that is the booted machine's, not
/// the image's: `/etc/machine-id` (when the image's is empty or missing),
/// the random seed and the credential secret (when the image had none).
/// Removed from the stage's changes (resolved inside the upper directory,
/// which the container wrote).
fn forget_boot(upper: &Path, lower: &[PathBuf]) -> Result<(), StageError> {
    let root = cargohold_layerfs::Root::open(upper).map_err(|e| StageError::io("open", upper)(e.into()))?;
    let in_image = |rel: &str| {
        lower.iter().rev().find_map(|l| {
            let r = cargohold_layerfs::Root::open(l).ok()?;
            let fd = r.open_in(Path::new(rel), rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW).ok()?;
            rustix::fs::fstat(&fd).ok().map(|s| s.st_size)
        })
    };
    for (dir, name, keep_if) in [
        ("etc", "machine-id", in_image("etc/machine-id").is_some_and(|size| size > 0)),
        ("var/lib/systemd", "random-seed", in_image("var/lib/systemd/random-seed").is_some()),
        ("var/lib/systemd", "credential.secret", in_image("var/lib/systemd/credential.secret").is_some()),
    ] {
        if keep_if {
            continue;
        }
        let Ok(parent) = root.open_in(Path::new(dir), rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY) else {
            continue;
        };
        match rustix::fs::unlinkat(&parent, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(StageError::io("remove", &upper.join(dir).join(name))(e.into())),
        }
    }
    Ok(())
}

/// Copies the tree `from` into `to` (contents, modes; later copies win);
/// scripts with a `#!` line are made executable.
fn copy_plain(from: &Path, to: &Path) -> Result<(), StageError> {
    for entry in std::fs::read_dir(from).map_err(StageError::io("list", from))? {
        let entry = entry.map_err(StageError::io("list", from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::metadata(&src).map_err(StageError::io("read", &src))?;
        if meta.is_dir() {
            std::fs::create_dir_all(&dst).map_err(StageError::io("create", &dst))?;
            copy_plain(&src, &dst)?;
        } else if meta.is_file() {
            if dst.is_dir() {
                std::fs::remove_dir_all(&dst).map_err(StageError::io("replace", &dst))?;
            }
            std::fs::copy(&src, &dst).map_err(StageError::io("copy", &src))?;
            if has_shebang(&dst)? {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755))
                    .map_err(StageError::io("chmod", &dst))?;
            }
        }
    }
    Ok(())
}

/// Whether the file starts with `#!` (run it directly, else with /bin/sh).
fn has_shebang(path: &Path) -> Result<bool, StageError> {
    use std::io::Read;
    let mut head = [0u8; 2];
    let mut f = std::fs::File::open(path).map_err(StageError::io("open", path))?;
    let n = f.read(&mut head).map_err(StageError::io("read", path))?;
    Ok(n == 2 && head == *b"#!")
}

/// A digest of every path, mode and content under `dir`.
fn tree_digest(dir: &Path) -> Result<Digest, StageError> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<u8>) -> Result<(), StageError> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(StageError::io("list", dir))?
            .collect::<Result<_, _>>()
            .map_err(StageError::io("list", dir))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let p = e.path();
            let name = format!("{rel}/{}", e.file_name().to_string_lossy());
            let meta = std::fs::metadata(&p).map_err(StageError::io("read", &p))?;
            use std::os::unix::fs::MetadataExt;
            out.extend_from_slice(format!("{name} {:o}\n", meta.mode()).as_bytes());
            if meta.is_dir() {
                walk(&p, &name, out)?;
            } else {
                let data = std::fs::read(&p).map_err(StageError::io("read", &p))?;
                out.extend_from_slice(Digest::sha256_of(&data).to_string().as_bytes());
                out.push(b'\n');
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    Ok(Digest::sha256_of(&out))
}
