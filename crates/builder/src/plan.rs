//! From a parsed Dockerfile to a build plan: stages and their bases, ARG
//! scoping (global ARGs in FROM lines, stage ARGs, `--build-arg`, the
//! automatic platform ARGs), variable substitution where Docker does it,
//! `--target` (only the stages the target needs), `--deny`, and the history
//! line (`created_by`, `empty_layer`) of every step as BuildKit writes it.

use std::collections::{BTreeMap, BTreeSet};

use cargohold_image_core::Platform;

use crate::dockerfile::words::{WordError, key_values, word, words};
use crate::dockerfile::{Dockerfile, Heredoc, Instruction, Keyword, ParseError};

/// How to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target STAGE` (default: the last stage).
    pub target: Option<String>,
    /// Instructions that must not appear (`--deny ENTRYPOINT,CMD`).
    pub deny: Vec<Keyword>,
    /// The platform built for (`linux/amd64`; empty: the host's); sets the TARGET* ARGs.
    pub platform: String,
    /// The file name, for errors.
    pub file: String,
    /// `--build-context NAME=VALUE`: a name `FROM` or `COPY --from` uses,
    /// as `docker-image://REF` (an image) or a directory (absolute path).
    pub build_contexts: BTreeMap<String, String>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image (a reference or transport location), after substitution.
    Image(String),
}

/// Where `COPY --from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// The build context.
    Context,
    /// An earlier stage.
    Stage(usize),
    /// An image.
    Image(String),
    /// A directory given as a named build context.
    Dir(String),
}

/// What one step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// Run a command: the argv (exec form, or the shell plus the command).
    Run {
        /// The argv to execute.
        argv: Vec<String>,
        /// Here-documents (the first one feeds the shell when the command is only `<<EOF`).
        heredocs: Vec<Heredoc>,
        /// `--network` given on the instruction.
        network: Option<String>,
        /// The build ARGs in scope, passed as environment (never stored in the image).
        args_env: Vec<(String, String)>,
        /// `--mount`s, in order.
        mounts: Vec<RunMount>,
    },
    /// COPY or ADD.
    Copy {
        /// ADD (archives extracted, URLs) rather than COPY.
        add: bool,
        /// Source paths (or URLs), substituted.
        sources: Vec<String>,
        /// Destination, substituted.
        dest: String,
        /// Where the sources come from.
        from: CopySource,
        /// `--chown`.
        chown: Option<String>,
        /// `--chmod`.
        chmod: Option<String>,
        /// Here-documents copied as files.
        heredocs: Vec<Heredoc>,
        /// `ADD --checksum`: the digest the (http) source must have.
        checksum: Option<cargohold_image_core::Digest>,
        /// `--link`: the files go into a layer of their own, made on an
        /// empty root (nothing of the stage's filesystem is followed).
        link: bool,
        /// `--exclude` patterns (`.dockerignore` syntax), matched below each source.
        exclude: Vec<String>,
        /// `--parents`: the sources keep their directories under the destination.
        parents: bool,
    },
    /// A config change, ready for `ImageConfig::apply_change` (`ENV A=1`, `USER x`...).
    Config(String),
    /// `SHELL`: the shell for later shell-form commands.
    Shell(Vec<String>),
    /// `ONBUILD`: recorded in the config, not run.
    Onbuild(String),
    /// `ARG` or `MAINTAINER`, `HEALTHCHECK`: history (and config) only.
    Meta,
}

/// One step of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The line of the instruction.
    pub line: usize,
    /// Its keyword.
    pub keyword: Keyword,
    /// What to do.
    pub kind: StepKind,
    /// The history entry's `created_by`, as BuildKit writes it.
    pub created_by: String,
    /// Whether the step adds no layer (history `empty_layer`).
    pub empty_layer: bool,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position in the Dockerfile.
    pub index: usize,
    /// `AS name`.
    pub name: Option<String>,
    /// The line of its FROM.
    pub line: usize,
    /// What it starts from.
    pub base: Base,
    /// The platform it is built for: `FROM --platform=` (substituted),
    /// else the build's.
    pub platform: Platform,
    /// Its steps.
    pub steps: Vec<Step>,
}

/// A build plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every stage of the file (those not needed are listed in `skipped`).
    pub stages: Vec<Stage>,
    /// The stage that becomes the image.
    pub target: usize,
    /// Stages the target does not need (not built).
    pub skipped: Vec<usize>,
    /// `--build-arg`s no ARG declared (Docker warns about them).
    pub unused_args: Vec<String>,
    /// The platform the image is for (`TARGETPLATFORM`).
    pub platform: Platform,
}

/// A `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// `type=cache`: a directory kept in the store across builds.
    Cache {
        /// Its identity (`id`, else the target).
        id: String,
        /// Where in the container.
        target: String,
        /// `sharing=locked`: one step at a time (else shared).
        locked: bool,
        /// Permissions of a new cache directory.
        mode: u32,
        /// Owner of a new cache directory.
        uid: u32,
        /// Group of a new cache directory.
        gid: u32,
        /// Mounted read-only.
        readonly: bool,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Where in the container.
        target: String,
        /// `size=` in bytes, if given.
        size: Option<u64>,
    },
    /// `type=bind`: a directory or file of the build context, an earlier
    /// stage, an image or a named context (`from=`), read-only unless
    /// `rw` (then what the step writes there is thrown away after it).
    Bind {
        /// Where it comes from (`from=`; the build context by default).
        from: CopySource,
        /// The path in it.
        source: String,
        /// Where in the container.
        target: String,
        /// `rw`: writable, the writes discarded.
        readwrite: bool,
    },
    /// `type=ssh`: an SSH agent of the build (`build --ssh id=SOCKET`),
    /// its socket at `target` and `SSH_AUTH_SOCK` naming it.
    Ssh {
        /// Which agent (`default` unless given).
        id: String,
        /// Where the socket appears (`/run/buildkit/ssh_agent.N` by default).
        target: String,
        /// A missing agent is an error (else the mount is left out).
        required: bool,
        /// Permissions of the socket in the container.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
    },
    /// `type=secret`: a secret of the build (`build --secret id=...`),
    /// never in a layer, the history or a cache key.
    Secret {
        /// Which secret.
        id: String,
        /// Where in the container (`/run/secrets/<id>` by default).
        target: String,
        /// A missing secret is an error (else the mount is left out).
        required: bool,
        /// Permissions of the file in the container.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
    },
}

/// A boolean flag (`--link`, `--link=true`, `--link=false`).
fn bool_flag(i: &Instruction, name: &str) -> Result<bool, String> {
    match i.flag(name) {
        None => Ok(false),
        Some("" | "true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(format!("--{name}={v}: not true or false")),
    }
}

/// Parses one `--mount` value (`type=cache,target=/x,...`): every key known,
/// or an error saying which is not.
fn parse_mount(value: &str, resolve_from: &dyn Fn(&str) -> Result<CopySource, String>) -> Result<RunMount, String> {
    let mut kv: Vec<(String, Option<String>)> = Vec::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"').to_owned())),
            None => (part.trim().to_ascii_lowercase(), None),
        };
        kv.push((k, v));
    }
    let get = |names: &[&str]| kv.iter().rev().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone());
    let flag = |names: &[&str]| -> Result<bool, String> {
        match get(names) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) => match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!("{}={v}: not true or false", names[0])),
            },
        }
    };
    let num = |names: &[&str], radix: u32, default: u32| -> Result<u32, String> {
        match get(names).flatten() {
            None => Ok(default),
            Some(v) => u32::from_str_radix(&v, radix).map_err(|_| format!("{}={v}: not a number", names[0])),
        }
    };
    let kind = get(&["type"]).flatten().unwrap_or_else(|| "bind".into());
    let allowed: &[&str] = match kind.as_str() {
        "cache" => &["type", "id", "target", "dst", "destination", "sharing", "mode", "uid", "gid", "ro", "readonly"],
        "tmpfs" => &["type", "target", "dst", "destination", "size"],
        "bind" => {
            &["type", "from", "source", "src", "target", "dst", "destination", "ro", "readonly", "rw", "readwrite"]
        }
        "secret" => &["type", "id", "target", "dst", "destination", "required", "mode", "uid", "gid"],
        "ssh" => &["type", "id", "target", "dst", "destination", "required", "mode", "uid", "gid"],
        other => return Err(format!("type={other}: not a mount type (cache, tmpfs, bind, secret, ssh)")),
    };
    if let Some((k, _)) = kv.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(format!("{k} is not supported for type={kind} (by cargohold build, yet)"));
    }
    let target = get(&["target", "dst", "destination"]).flatten();
    let absolute =
        |t: String| if t.starts_with('/') { Ok(t) } else { Err(format!("target {t:?} is not an absolute path")) };
    Ok(match kind.as_str() {
        "cache" => {
            let target = absolute(target.ok_or("type=cache needs a target")?)?;
            let sharing = get(&["sharing"]).flatten().unwrap_or_else(|| "shared".into());
            let locked = match sharing.as_str() {
                "shared" => false,
                "locked" => true,
                other => return Err(format!("sharing={other}: only shared and locked are supported")),
            };
            RunMount::Cache {
                id: get(&["id"]).flatten().unwrap_or_else(|| target.clone()),
                target,
                locked,
                mode: num(&["mode"], 8, 0o755)?,
                uid: num(&["uid"], 10, 0)?,
                gid: num(&["gid"], 10, 0)?,
                readonly: flag(&["ro", "readonly"])?,
            }
        }
        "tmpfs" => RunMount::Tmpfs {
            target: absolute(target.ok_or("type=tmpfs needs a target")?)?,
            size: match get(&["size"]).flatten() {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| format!("size={v}: not a number of bytes"))?),
            },
        },
        "bind" => {
            let readwrite =
                flag(&["rw", "readwrite"])? || (get(&["ro", "readonly"]).is_some() && !flag(&["ro", "readonly"])?);
            RunMount::Bind {
                from: match get(&["from"]).flatten() {
                    None => CopySource::Context,
                    Some(f) => resolve_from(&f)?,
                },
                source: get(&["source", "src"]).flatten().unwrap_or_else(|| ".".into()),
                target: absolute(target.ok_or("type=bind needs a target")?)?,
                readwrite,
            }
        }
        "ssh" => RunMount::Ssh {
            id: get(&["id"]).flatten().unwrap_or_else(|| "default".into()),
            target: match target {
                Some(t) => absolute(t)?,
                // Numbered among the step's ssh mounts by the caller.
                None => String::new(),
            },
            required: flag(&["required"])?,
            mode: num(&["mode"], 8, 0o600)?,
            uid: num(&["uid"], 10, 0)?,
            gid: num(&["gid"], 10, 0)?,
        },
        _ => {
            let id = match (get(&["id"]).flatten(), &target) {
                (Some(id), _) => id,
                (None, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_owned(),
                (None, None) => return Err("type=secret needs an id or a target".into()),
            };
            if id.is_empty() {
                return Err("type=secret: an empty id".into());
            }
            RunMount::Secret {
                target: absolute(target.unwrap_or_else(|| format!("/run/secrets/{id}")))?,
                id,
                required: flag(&["required"])?,
                mode: num(&["mode"], 8, 0o400)?,
                uid: num(&["uid"], 10, 0)?,
                gid: num(&["gid"], 10, 0)?,
            }
        }
    })
}

/// A finding of [`check`]: a warning (the build would go on) with its line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The Dockerfile line (0: the build as a whole).
    pub line: usize,
    /// BuildKit's name for the rule (`JSONArgsRecommended`, ...).
    pub rule: &'static str,
    /// What is wrong.
    pub message: String,
}

/// `build --check`: parses and plans `text` as the build would (nothing is
/// run or pulled), and lists BuildKit's warnings it finds, but those the
/// `# check=skip=...` directive skips: a shell-form
/// `CMD`/`ENTRYPOINT` (JSONArgsRecommended), `MAINTAINER`
/// (MaintainerDeprecated), `FROM x as y` casing that differs from the
/// keyword's (FromAsCasing), stage names not in lower case
/// (StageNameCasing), `--build-arg`s no `ARG` declares (UnusedBuildArgs).
pub fn check(text: &str, opts: &PlanOptions) -> Result<(Plan, Vec<Warning>), ParseError> {
    let file = if opts.file.is_empty() { "Dockerfile" } else { opts.file.as_str() };
    let d = crate::dockerfile::parse(text, file)?;
    let p = plan(&d, opts)?;
    let mut warnings = Vec::new();
    for i in &d.instructions {
        if i.empty_continuation {
            warnings.push(Warning {
                line: i.line,
                rule: "NoEmptyContinuation",
                message: format!(
                    "Empty continuation line found in: {} (empty continuation lines will become errors in a future release)",
                    i.original
                ),
            });
        }
        match i.keyword {
            Keyword::Cmd | Keyword::Entrypoint if i.exec.is_none() => warnings.push(Warning {
                line: i.line,
                rule: "JSONArgsRecommended",
                message: format!("{} in shell form: signals do not reach the program; use the JSON form", i.keyword),
            }),
            Keyword::Maintainer => warnings.push(Warning {
                line: i.line,
                rule: "MaintainerDeprecated",
                message: "MAINTAINER is deprecated; use LABEL org.opencontainers.image.authors=...".into(),
            }),
            Keyword::From => {
                let words: Vec<&str> = i.original.split_whitespace().collect();
                let keyword = words.first().copied().unwrap_or_default();
                if let Some(pos) = words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
                    let as_word = words[pos];
                    let upper_kw = keyword.chars().all(|c| !c.is_ascii_lowercase());
                    let upper_as = as_word.chars().all(|c| !c.is_ascii_lowercase());
                    if upper_kw != upper_as {
                        warnings.push(Warning {
                            line: i.line,
                            rule: "FromAsCasing",
                            message: format!("'{as_word}' and '{keyword}' keywords' casing do not match"),
                        });
                    }
                    if let Some(name) = words.get(pos + 1)
                        && name.chars().any(|c| c.is_ascii_uppercase())
                    {
                        warnings.push(Warning {
                            line: i.line,
                            rule: "StageNameCasing",
                            message: format!("stage name {name:?} should be lower case"),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    for a in &p.unused_args {
        warnings.push(Warning {
            line: 0,
            rule: "UnusedBuildArgs",
            message: format!("--build-arg {a} is not declared by any ARG"),
        });
    }
    warnings.retain(|w| d.check.reports(w.rule));
    Ok((p, warnings))
}

/// `p` as BuildKit names platforms (containerd's normalization): `x86_64`
/// is `amd64`, `aarch64` is `arm64` and its default variant `v8` is left
/// out, `arm` is `arm/v7` unless given another variant.
pub fn normalize_platform(p: &Platform) -> Platform {
    let (os, arch, variant) = p.normalized();
    let variant = variant.filter(|v| !(arch == "arm64" && v == "v8"));
    Platform::new(&os, &arch, variant.as_deref())
}

/// The automatic platform ARGs: `TARGET*` for the platform built for,
/// `BUILD*` for the one building (this machine's), as BuildKit sets them.
fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default()));
    }
    out
}

/// Plans the build of `d`.
pub fn plan(d: &Dockerfile, opts: &PlanOptions) -> Result<Plan, ParseError> {
    let file = if opts.file.is_empty() { "Dockerfile" } else { opts.file.as_str() };
    let err = |i: &Instruction, message: String| ParseError { file: file.into(), line: i.line, column: 1, message };
    let wrap = |i: &Instruction, e: WordError| err(i, format!("{}: {}", i.keyword, e.0));
    // The host's unless asked otherwise (as BuildKit).
    let build_platform = normalize_platform(&Platform::host());
    let target_platform = if opts.platform.is_empty() {
        build_platform.clone()
    } else {
        opts.platform.parse::<Platform>().as_ref().map(normalize_platform).map_err(|e| ParseError {
            file: file.into(),
            line: 0,
            column: 0,
            message: format!("--platform {}: {e}", opts.platform),
        })?
    };
    let automatic: BTreeMap<String, String> = platform_args(&target_platform, &build_platform).into_iter().collect();
    let mut declared: BTreeSet<String> = BTreeSet::new();
    // Global ARGs (before the first FROM) and their values.
    let mut global: BTreeMap<String, String> = automatic.clone();
    let mut stages: Vec<Stage> = Vec::new();
    // Per stage: ARG values and ENV values in scope (ENV wins over ARG).
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut shell: Vec<String> = vec!["/bin/sh".into(), "-c".into()];
    for i in &d.instructions {
        // A flag this builder does not act on is an error, never ignored.
        let known: &[&str] = match i.keyword {
            Keyword::From => &["platform"],
            Keyword::Run => &["network", "mount"],
            Keyword::Copy => &["from", "chown", "chmod", "link", "exclude", "parents"],
            Keyword::Add => &["chown", "chmod", "checksum", "link", "exclude"],
            _ => &[],
        };
        if let Some(f) = i.flags.iter().find(|f| !known.contains(&f.name.as_str())) {
            return Err(err(i, format!("{} --{} is not supported by cargohold build yet", i.keyword, f.name)));
        }
        if let Some(n) = i.flag("network")
            && !["default", "none", "host"].contains(&n)
        {
            return Err(err(i, format!("RUN --network={n}: use default, none or host")));
        }
        if opts.deny.contains(&i.keyword) {
            return Err(err(i, format!("{} is not allowed in this build (--deny)", i.keyword)));
        }
        let lookup = |n: &str| env.get(n).or_else(|| args.get(n)).cloned();
        let sub = |text: &str| word(text, d.escape, &lookup).map_err(|e| wrap(i, e));
        if i.keyword == Keyword::From {
            let g = |n: &str| global.get(n).cloned();
            let ws = words(&i.args, d.escape, &g).map_err(|e| wrap(i, e))?;
            let (image, name) = match ws.as_slice() {
                [image] => (image.clone(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (image.clone(), Some(name.to_ascii_lowercase()))
                }
                _ => return Err(err(i, format!("FROM takes IMAGE [AS NAME], got {:?}", i.args))),
            };
            if image.is_empty() {
                return Err(err(i, format!("FROM {:?} names no image after substitution", i.args)));
            }
            if let Some(n) = &name
                && stages.iter().any(|s| s.name.as_deref() == Some(n))
            {
                return Err(err(i, format!("stage name {n:?} is used twice")));
            }
            let named = opts.build_contexts.get(&image).cloned();
            let base = if let Some(ctx) = named {
                match ctx.strip_prefix("docker-image://") {
                    Some(r) => Base::Image(r.to_owned()),
                    None => {
                        return Err(err(
                            i,
                            format!(
                                "FROM {image}: a directory build context cannot be a base (yet); use docker-image://"
                            ),
                        ));
                    }
                }
            } else if image.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else if let Some(s) =
                stages.iter().find(|s| s.name.as_deref() == Some(image.to_ascii_lowercase().as_str()))
            {
                Base::Stage(s.index)
            } else {
                Base::Image(image)
            };
            // A stage of another platform runs its steps for that platform
            // (emulated when this machine cannot run it).
            let platform = match i.flag("platform") {
                Some(p) => {
                    let p = word(p, d.escape, &g).map_err(|e| wrap(i, e))?;
                    p.parse::<Platform>()
                        .as_ref()
                        .map(normalize_platform)
                        .map_err(|e| err(i, format!("FROM --platform={p}: {e}")))?
                }
                // A stage built on an earlier one keeps its platform (its
                // programs are that platform's).
                None => match &base {
                    Base::Stage(i) => stages[*i].platform.clone(),
                    _ => target_platform.clone(),
                },
            };
            stages.push(Stage { index: stages.len(), name, line: i.line, base, platform, steps: Vec::new() });
            args.clear();
            env.clear();
            shell = vec!["/bin/sh".into(), "-c".into()];
            continue;
        }
        if i.keyword == Keyword::Arg {
            let pairs = arg_pairs(&i.args, d.escape, &lookup).map_err(|e| wrap(i, e))?;
            for (name, default) in pairs {
                declared.insert(name.clone());
                let value = opts
                    .build_args
                    .get(&name)
                    .cloned()
                    .or(default)
                    .or_else(|| if stages.is_empty() { None } else { global.get(&name).cloned() })
                    .unwrap_or_default();
                if stages.is_empty() {
                    global.insert(name, value);
                } else {
                    args.insert(name, value);
                }
            }
            if let Some(stage) = stages.last_mut() {
                stage.steps.push(Step {
                    line: i.line,
                    keyword: Keyword::Arg,
                    kind: StepKind::Meta,
                    created_by: format!("ARG {}", i.args),
                    empty_layer: true,
                });
            }
            continue;
        }
        let Some(stage_index) = stages.len().checked_sub(1) else {
            return Err(err(i, format!("{} before the first FROM (only ARG may come first)", i.keyword)));
        };
        let (kind, created_by, empty_layer) = match i.keyword {
            Keyword::Run => {
                let argv = match &i.exec {
                    Some(v) => v.clone(),
                    None => shell.iter().cloned().chain(std::iter::once(i.args.clone())).collect(),
                };
                // Every ARG the stage declared, the automatic platform ones
                // included (BuildKit's `|1 TARGETARCH=amd64 ...`).
                let args_env: Vec<(String, String)> = args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let prefix = if args_env.is_empty() {
                    String::new()
                } else {
                    let list: Vec<String> = args_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("|{} {} ", list.len(), list.join(" "))
                };
                let shown = match &i.exec {
                    Some(v) => v.join(" "),
                    None => format!("{} {}", shell.join(" "), i.args),
                };
                let network = i.flag("network").map(str::to_owned);
                let mut mounts = Vec::new();
                for f in i.flags.iter().filter(|f| f.name == "mount") {
                    let value = sub(f.value.as_deref().unwrap_or_default())?;
                    let from = |f: &str| {
                        resolve_from(&stages, stage_index, &opts.build_contexts, f).map_err(|why| format!("from={why}"))
                    };
                    mounts
                        .push(parse_mount(&value, &from).map_err(|why| err(i, format!("RUN --mount={value}: {why}")))?);
                }
                // As BuildKit: the N-th ssh mount without a target at /run/buildkit/ssh_agent.N.
                let mut agents = 0;
                for m in &mut mounts {
                    if let RunMount::Ssh { target, .. } = m {
                        if target.is_empty() {
                            *target = format!("/run/buildkit/ssh_agent.{agents}");
                        }
                        agents += 1;
                    }
                }
                (
                    StepKind::Run { argv, heredocs: i.heredocs.clone(), network, args_env, mounts },
                    format!("RUN {prefix}{shown} # buildkit"),
                    false,
                )
            }
            Keyword::Copy | Keyword::Add => {
                let add = i.keyword == Keyword::Add;
                let mut ws = match &i.exec {
                    Some(v) => v.iter().map(|w| sub(w)).collect::<Result<Vec<_>, _>>()?,
                    None => words(&i.args, d.escape, &lookup).map_err(|e| wrap(i, e))?,
                };
                // Heredoc words (`<<EOF`) name files, not context paths.
                ws.retain(|w| !w.starts_with("<<"));
                let dest = ws.pop().ok_or_else(|| err(i, format!("{} needs a destination", i.keyword)))?;
                if ws.is_empty() && i.heredocs.is_empty() {
                    return Err(err(i, format!("{} needs a source and a destination", i.keyword)));
                }
                let from = match i.flag("from") {
                    None => CopySource::Context,
                    Some(f) => resolve_from(&stages, stage_index, &opts.build_contexts, &sub(f)?)
                        .map_err(|why| err(i, format!("--from={why}")))?,
                };
                let chown = i.flag("chown").map(&sub).transpose()?;
                let chmod = i.flag("chmod").map(str::to_owned);
                // URL credentials never reach the history (or anything shown).
                let shown = crate::build::redact_urls(&format!("{} {} {}", i.keyword, ws.join(" "), dest));
                // Unquoted heredoc delimiters: variables in the file are expanded.
                let expanded_heredocs = || -> Result<Vec<Heredoc>, ParseError> {
                    i.heredocs
                        .iter()
                        .map(|h| {
                            let mut h = h.clone();
                            if h.expand {
                                h.body = crate::dockerfile::words::expand(&h.body, d.escape, &lookup)
                                    .map_err(|e| wrap(i, e))?;
                            }
                            Ok(h)
                        })
                        .collect()
                };
                (
                    StepKind::Copy {
                        add,
                        link: bool_flag(i, "link").map_err(|m| err(i, m))?,
                        parents: bool_flag(i, "parents").map_err(|m| err(i, m))?,
                        exclude: i
                            .flags
                            .iter()
                            .filter(|f| f.name == "exclude")
                            .map(|f| sub(f.value.as_deref().unwrap_or_default()))
                            .collect::<Result<Vec<_>, _>>()?,
                        checksum: match i.flag("checksum") {
                            Some(c) => {
                                let c = sub(c)?;
                                if ws.iter().any(|w| !w.starts_with("http://") && !w.starts_with("https://")) {
                                    return Err(err(i, "ADD --checksum takes http(s) sources only".into()));
                                }
                                Some(
                                    cargohold_image_core::Digest::parse(&c)
                                        .map_err(|e| err(i, format!("--checksum={c}: {e}")))?,
                                )
                            }
                            None => None,
                        },
                        sources: ws,
                        dest,
                        from,
                        chown,
                        chmod,
                        heredocs: expanded_heredocs()?,
                    },
                    format!("{shown} # buildkit"),
                    false,
                )
            }
            Keyword::Env => {
                let pairs = key_values(&i.args, d.escape, &lookup, true).map_err(|e| wrap(i, e))?;
                let mut change = String::from("ENV");
                for (k, v) in &pairs {
                    env.insert(k.clone(), v.clone());
                    change.push_str(&format!(" {k}={}", quote(v)));
                }
                let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (StepKind::Config(change), format!("ENV {}", shown.join(" ")), true)
            }
            Keyword::Label => {
                let pairs = key_values(&i.args, d.escape, &lookup, false).map_err(|e| wrap(i, e))?;
                let change: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", quote(k), quote(v))).collect();
                let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (StepKind::Config(format!("LABEL {}", change.join(" "))), format!("LABEL {}", shown.join(" ")), true)
            }
            Keyword::Cmd | Keyword::Entrypoint => {
                let argv = match &i.exec {
                    Some(v) => v.clone(),
                    None if i.args.is_empty() => Vec::new(),
                    None => shell.iter().cloned().chain(std::iter::once(i.args.clone())).collect(),
                };
                let json = serde_json::to_string(&argv).expect("strings serialize");
                (StepKind::Config(format!("{} {json}", i.keyword)), format!("{} {json}", i.keyword), true)
            }
            Keyword::Workdir | Keyword::User | Keyword::Stopsignal => {
                let v = sub(&i.args)?;
                (StepKind::Config(format!("{} {v}", i.keyword)), format!("{} {v}", i.keyword), true)
            }
            Keyword::Expose => {
                let ports = words(&i.args, d.escape, &lookup).map_err(|e| wrap(i, e))?;
                let shown: Vec<String> = ports
                    .iter()
                    .map(|p| if p.contains('/') { format!("{p}:{{}}") } else { format!("{p}/tcp:{{}}") })
                    .collect();
                (
                    StepKind::Config(format!("EXPOSE {}", ports.join(" "))),
                    format!("EXPOSE map[{}]", shown.join(" ")),
                    true,
                )
            }
            Keyword::Volume => {
                let vols = match &i.exec {
                    Some(v) => v.iter().map(|w| sub(w)).collect::<Result<Vec<_>, _>>()?,
                    None => words(&i.args, d.escape, &lookup).map_err(|e| wrap(i, e))?,
                };
                let json = serde_json::to_string(&vols).expect("strings serialize");
                (StepKind::Config(format!("VOLUME {json}")), format!("VOLUME [{}]", vols.join(" ")), true)
            }
            Keyword::Shell => {
                let v = i.exec.clone().unwrap_or_default();
                if v.is_empty() {
                    return Err(err(i, "SHELL needs at least the shell itself".into()));
                }
                shell = v.clone();
                (StepKind::Shell(v.clone()), format!("SHELL [{}]", v.join(" ")), true)
            }
            Keyword::Onbuild => {
                let (w, _) = i.args.split_once(char::is_whitespace).unwrap_or((i.args.as_str(), ""));
                if matches!(Keyword::parse(w), Some(Keyword::Onbuild | Keyword::From | Keyword::Maintainer) | None) {
                    return Err(err(i, format!("ONBUILD cannot take {w:?}")));
                }
                (StepKind::Onbuild(i.args.clone()), format!("ONBUILD {}", i.args), true)
            }
            Keyword::Maintainer => (StepKind::Meta, format!("MAINTAINER {}", i.args), true),
            Keyword::Healthcheck => (StepKind::Meta, format!("HEALTHCHECK {}", i.args), true),
            Keyword::From | Keyword::Arg => unreachable!("handled above"),
        };
        stages[stage_index].steps.push(Step { line: i.line, keyword: i.keyword, kind, created_by, empty_layer });
    }
    if stages.is_empty() {
        return Err(ParseError { file: file.into(), line: 1, column: 1, message: "no FROM instruction".into() });
    }
    let target = match &opts.target {
        None => stages.len() - 1,
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())).map(|s| s.index).ok_or_else(|| {
                let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
                ParseError {
                    file: file.into(),
                    line: 1,
                    column: 1,
                    message: format!("target stage {t:?} not found (stages: {})", names.join(", ")),
                }
            })?
        }
    };
    // The stages the target needs: its base chain and COPY --from sources.
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(s) = todo.pop() {
        if !needed.insert(s) {
            continue;
        }
        if let Base::Stage(b) = stages[s].base {
            todo.push(b);
        }
        for step in &stages[s].steps {
            match &step.kind {
                StepKind::Copy { from: CopySource::Stage(b), .. } => todo.push(*b),
                StepKind::Run { mounts, .. } => {
                    for m in mounts {
                        if let RunMount::Bind { from: CopySource::Stage(b), .. } = m {
                            todo.push(*b);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let skipped = (0..stages.len()).filter(|s| !needed.contains(s)).collect();
    let unused_args = opts.build_args.keys().filter(|k| !declared.contains(*k)).cloned().collect();
    Ok(Plan { stages, target, skipped, unused_args, platform: target_platform })
}

/// What a `--from=` (COPY) or `from=` (a RUN bind mount) names: an earlier
/// stage by name or number, a named build context, else an image. The
/// error starts with the value, for the caller's `--from=` prefix.
fn resolve_from(
    stages: &[Stage],
    stage_index: usize,
    contexts: &std::collections::BTreeMap<String, String>,
    f: &str,
) -> Result<CopySource, String> {
    let lower = f.to_ascii_lowercase();
    if let Some(s) = stages[..stage_index].iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
        Ok(CopySource::Stage(s.index))
    } else if let Ok(n) = f.parse::<usize>() {
        if n >= stage_index {
            return Err(format!("{n} names this or a later stage"));
        }
        Ok(CopySource::Stage(n))
    } else if stages.iter().any(|s| s.name.as_deref() == Some(lower.as_str())) {
        Err(format!("{f} names this or a later stage"))
    } else if let Some(ctx) = contexts.get(f) {
        Ok(match ctx.strip_prefix("docker-image://") {
            Some(r) => CopySource::Image(r.to_owned()),
            None => CopySource::Dir(ctx.clone()),
        })
    } else {
        Ok(CopySource::Image(f.to_owned()))
    }
}

/// `ARG a=1 b` -> [(a, Some(1)), (b, None)].
fn arg_pairs(
    text: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, Option<String>)>, WordError> {
    let mut out = Vec::new();
    for w in words(text, escape, vars)? {
        match w.split_once('=') {
            Some((k, v)) => out.push((k.to_owned(), Some(v.to_owned()))),
            None => out.push((w, None)),
        }
        if out.last().is_some_and(|(k, _)| k.is_empty()) {
            return Err(WordError("ARG needs a name".into()));
        }
    }
    Ok(out)
}

/// Double-quotes a value for a config change line when it needs it.
fn quote(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\' || c == '\'') {
        return v.to_owned();
    }
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    fn plan_of(text: &str, opts: PlanOptions) -> Result<Plan, ParseError> {
        plan(&parse(text, "Dockerfile").unwrap(), &opts)
    }

    #[test]
    fn check_lists_buildkits_warnings_with_lines() {
        let text = "FROM scratch as Build\nMAINTAINER me\nCMD echo hi\nFROM scratch\nENTRYPOINT [\"/x\"]\n";
        let mut opts = PlanOptions::default();
        opts.build_args.insert("NOPE".into(), "1".into());
        let (_, w) = check(text, &opts).unwrap();
        let got: Vec<(usize, &str)> = w.iter().map(|w| (w.line, w.rule)).collect();
        assert_eq!(
            got,
            [
                (1, "FromAsCasing"),
                (1, "StageNameCasing"),
                (2, "MaintainerDeprecated"),
                (3, "JSONArgsRecommended"),
                (0, "UnusedBuildArgs")
            ]
        );
        let e = check("FROM scratch\nRUN --mount=type=sh,target=/x true\n", &PlanOptions::default()).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn stages_take_the_from_platform_and_the_automatic_args_follow_buildkit() {
        let opts = || PlanOptions { platform: "linux/arm64".into(), ..PlanOptions::default() };
        let p = plan_of(
            "FROM --platform=$BUILDPLATFORM scratch AS b\nARG TARGETARCH BUILDARCH TARGETVARIANT\nENV T=$TARGETARCH B=$BUILDARCH V=$TARGETVARIANT\nFROM scratch\nFROM --platform=linux/ppc64le scratch\nFROM b\n",
            opts(),
        )
        .unwrap();
        let host = normalize_platform(&Platform::host());
        assert_eq!(p.platform.to_string(), "linux/arm64");
        assert_eq!(p.stages[0].platform, host);
        assert_eq!(p.stages[1].platform.to_string(), "linux/arm64");
        assert_eq!(p.stages[2].platform.to_string(), "linux/ppc64le");
        assert_eq!(p.stages[3].platform, host, "a stage on a stage keeps its platform");
        let env = p.stages[0].steps.iter().find_map(|s| match &s.kind {
            StepKind::Config(c) if c.starts_with("ENV") => Some(c.clone()),
            _ => None,
        });
        let want = format!("ENV T=arm64 B={} V=\"\"", host.architecture);
        assert_eq!(env.as_deref(), Some(want.as_str()));
        let e = plan_of("FROM scratch\nFROM --platform=linux scratch\n", opts()).unwrap_err();
        assert!(e.line == 2 && e.to_string().contains("--platform=linux"), "{e}");
        let e = plan_of("FROM scratch\n", PlanOptions { platform: "x".into(), ..PlanOptions::default() }).unwrap_err();
        assert!(e.to_string().contains("--platform x"), "{e}");
        let arm = PlanOptions { platform: "linux/arm".into(), ..PlanOptions::default() };
        assert_eq!(plan_of("FROM scratch\n", arm).unwrap().platform.to_string(), "linux/arm/v7");
        let amd = PlanOptions { platform: "linux/x86_64".into(), ..PlanOptions::default() };
        assert_eq!(plan_of("FROM scratch\n", amd).unwrap().platform.to_string(), "linux/amd64");
    }

    #[test]
    fn unsupported_flags_are_refused_by_line() {
        for (text, needle) in [
            ("FROM scratch\nRUN --mount=type=ssh,bogus=1 true\n", "bogus is not supported for type=ssh"),
            ("FROM scratch\nRUN --mount=type=cache,target=/c,sharing=private true\n", "sharing=private"),
            ("FROM scratch\nRUN --mount=type=cache,target=/c,bogus=1 true\n", "bogus is not supported"),
            (
                "FROM scratch\nRUN --mount=type=bind,target=/c,bind-propagation=shared true\n",
                "bind-propagation is not supported",
            ),
            ("FROM scratch AS a\nRUN --mount=type=bind,from=a,target=/c true\n", "from=a names this or a later stage"),
            ("FROM scratch\nCOPY --chmod-all a /b\n", "COPY --chmod-all"),
            ("FROM scratch\nADD --checksum=sha256:00 a /b\n", "ADD --checksum takes http(s)"),
            ("FROM scratch\nADD --keep-git-dir a /b\n", "ADD --keep-git-dir"),
            ("FROM scratch\nRUN --network=bridge true\n", "--network=bridge"),
        ] {
            let e = plan_of(text, PlanOptions::default()).unwrap_err();
            assert_eq!(e.line, 2, "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn copy_heredocs_expand_unless_the_delimiter_is_quoted() {
        let text = "FROM scratch\nARG NAME=world\nCOPY <<EOF /a\nhello \"$NAME\" \\$HOME ${NAME:-x}\nEOF\nCOPY <<\"EOF\" /b\nhello $NAME\nEOF\n";
        let p = plan_of(text, PlanOptions::default()).unwrap();
        let bodies: Vec<String> = p.stages[0]
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Copy { heredocs, .. } => Some(heredocs[0].body.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(bodies, ["hello \"world\" $HOME world\n", "hello $NAME\n"]);
    }

    #[test]
    fn stages_args_and_targets() {
        let text = "ARG BASE=busybox\nARG TAG=1\nFROM ${BASE}:${TAG} AS build\nARG TAG\nARG MODE=debug\nENV OUT=/out/$MODE\nRUN make $MODE\nFROM build AS test\nRUN true\nFROM scratch\nCOPY --from=build ${OUT:-/fallback} /app\nCMD [\"/app\"]\n";
        let mut opts = PlanOptions::default();
        opts.build_args.insert("MODE".into(), "release".into());
        opts.build_args.insert("UNUSED".into(), "x".into());
        let p = plan_of(text, opts.clone()).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("busybox:1".into()));
        assert_eq!(p.stages[1].base, Base::Stage(0));
        assert_eq!(p.target, 2);
        assert_eq!(p.skipped, vec![1], "the test stage is not needed");
        assert_eq!(p.unused_args, vec!["UNUSED".to_owned()]);
        let build = &p.stages[0].steps;
        assert_eq!(build[2].kind, StepKind::Config("ENV OUT=/out/release".into()));
        match &build[3].kind {
            StepKind::Run { argv, args_env, .. } => {
                assert_eq!(argv, &["/bin/sh", "-c", "make $MODE"]);
                assert_eq!(args_env, &[("MODE".to_owned(), "release".to_owned()), ("TAG".to_owned(), "1".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(build[3].created_by, "RUN |2 MODE=release TAG=1 /bin/sh -c make $MODE # buildkit");
        // Stage scope: ENV of another stage does not leak; the default applies.
        match &p.stages[2].steps[0].kind {
            StepKind::Copy { from, sources, dest, .. } => {
                assert_eq!(from, &CopySource::Stage(0));
                assert_eq!((sources.as_slice(), dest.as_str()), (&["/fallback".to_owned()][..], "/app"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.stages[2].steps[1].created_by, "CMD [\"/app\"]");
        assert!(p.stages[2].steps[1].empty_layer && !p.stages[2].steps[0].empty_layer);
        let t = plan_of(text, PlanOptions { target: Some("TEST".into()), ..opts }).unwrap();
        assert_eq!((t.target, t.skipped.clone()), (1, vec![2]));
    }

    #[test]
    fn history_lines_and_config_changes() {
        let p = plan_of(
            "FROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\nRUN echo hi\nRUN [\"echo\", \"x\"]\nENV A=1 B=\"two words\"\nLABEL a=b\nEXPOSE 80 53/udp\nVOLUME /data\nWORKDIR /srv\nUSER nobody\nENTRYPOINT echo\n",
            PlanOptions::default(),
        )
        .unwrap();
        let by: Vec<&str> = p.stages[0].steps.iter().map(|s| s.created_by.as_str()).collect();
        assert_eq!(
            by,
            [
                "SHELL [/bin/bash -c]",
                "RUN /bin/bash -c echo hi # buildkit",
                "RUN echo x # buildkit",
                "ENV A=1 B=two words",
                "LABEL a=b",
                "EXPOSE map[80/tcp:{} 53/udp:{}]",
                "VOLUME [/data]",
                "WORKDIR /srv",
                "USER nobody",
                "ENTRYPOINT [\"/bin/bash\",\"-c\",\"echo\"]",
            ]
        );
        assert_eq!(p.stages[0].steps[3].kind, StepKind::Config("ENV A=1 B=\"two words\"".into()));
        // Every config change is one image-core applies as Docker would.
        let mut config = cargohold_image_core::ImageConfig::default();
        for s in &p.stages[0].steps {
            if let StepKind::Config(c) = &s.kind {
                config.apply_change(c).unwrap_or_else(|e| panic!("{c}: {e}"));
            }
        }
        let c = config.config.unwrap();
        assert_eq!(c.env.unwrap(), ["A=1", "B=two words"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.entrypoint.unwrap(), ["/bin/bash", "-c", "echo"]);
        assert_eq!(c.labels.unwrap().get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn errors_name_the_line() {
        for (text, opts, line, needle) in [
            ("RUN x\n", PlanOptions::default(), 1, "before the first FROM"),
            (
                "FROM a\nENTRYPOINT x\n",
                PlanOptions { deny: vec![Keyword::Entrypoint], ..Default::default() },
                2,
                "not allowed",
            ),
            ("FROM a AS x\nFROM b AS x\n", PlanOptions::default(), 2, "twice"),
            ("FROM a\nCOPY --from=1 x y\n", PlanOptions::default(), 2, "later stage"),
            ("FROM a\nFROM b\n", PlanOptions { target: Some("nope".into()), ..Default::default() }, 1, "not found"),
            ("FROM a b c d\n", PlanOptions::default(), 1, "FROM takes"),
            ("FROM a\nENV X=${Y:?needed}\n", PlanOptions::default(), 2, "needed"),
        ] {
            let e = plan_of(text, opts).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{e}");
        }
    }
}
