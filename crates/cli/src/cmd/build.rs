//! `cargohold build` and `cargohold run`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cargohold_builder::build::{BuildOptions, Builder, StepReport, executor_for, export_cache, import_cache};
use cargohold_builder::dockerfile::{Keyword, parse};
use cargohold_builder::exec::{
    Limits, MountRequest, Network, PortMapping, ProcessIo, Security, parse_size, with_terminal,
};
use cargohold_builder::plan::{Base, CopySource, Plan, PlanOptions, plan};
use cargohold_builder::run::{ContainerOptions, RunOptions, create_container, run_image};
use cargohold_builder::stage::{StageConfig, StageOptions, StageStep, Stager, promote};
use cargohold_image_core::{CopyOptions, ImageLocation, Platform, Reference, Store, copy};
use cargohold_registry::{PullPolicy, ensure_image};
use serde_json::json;

use super::{Ctx, source_date_epoch};
use crate::cli::{BuildArgs, RunArgs, StageAction, StageArgs};
use crate::output;

/// The platforms of `--platform` (none given: this host's).
fn build_platforms(args: &BuildArgs) -> Result<Vec<Platform>> {
    let Some(list) = &args.platform else { return Ok(vec![Platform::host()]) };
    let mut out: Vec<Platform> = Vec::new();
    for p in list.split(',').map(str::trim) {
        let parsed = p.parse::<Platform>().with_context(|| format!("--platform {list}"))?;
        let parsed = cargohold_builder::plan::normalize_platform(&parsed);
        if out.contains(&parsed) {
            bail!("--platform {list}: {parsed} is given twice");
        }
        out.push(parsed);
    }
    Ok(out)
}

fn plan_options(args: &BuildArgs) -> Result<PlanOptions> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_owned(), v.to_owned()),
            // `--build-arg NAME` takes the value from the environment, as Docker does.
            None => build_args.insert(a.clone(), std::env::var(a).unwrap_or_default()),
        };
    }
    let mut deny = Vec::new();
    for d in args.deny.iter().filter(|d| !d.is_empty()) {
        deny.push(Keyword::parse(d).with_context(|| format!("--deny {d}: not a Dockerfile instruction"))?);
    }
    let platform = build_platforms(args)?.remove(0).to_string();
    let file =
        args.file.as_ref().and_then(|f| f.file_name()).map_or("Dockerfile".into(), |n| n.to_string_lossy().into());
    let mut build_contexts = std::collections::BTreeMap::new();
    for c in &args.build_contexts {
        let (name, value) = c.split_once('=').with_context(|| format!("--build-context {c}: not NAME=VALUE"))?;
        if name.is_empty() {
            bail!("--build-context {c}: the name is empty");
        }
        let value = if let Some(r) = value.strip_prefix("docker-image://") {
            Reference::parse(r).with_context(|| format!("--build-context {c}"))?;
            value.to_owned()
        } else if value.contains("://") {
            bail!("--build-context {c}: only directories and docker-image:// are supported");
        } else {
            let dir = std::path::absolute(value).with_context(|| format!("--build-context {c}"))?;
            if !dir.is_dir() {
                bail!("--build-context {c}: {} is not a directory", dir.display());
            }
            dir.to_string_lossy().into_owned()
        };
        build_contexts.insert(name.to_owned(), value);
    }
    Ok(PlanOptions { build_args, target: args.target.clone(), deny, platform, file, build_contexts })
}

/// Pulls the base images (FROM and COPY --from) the store does not have,
/// each for the platform its stage is built for.
fn pull_bases(ctx: &Ctx, store: &Store, p: &Plan) -> Result<()> {
    let mut images: Vec<(String, Platform)> = Vec::new();
    for s in p.stages.iter().filter(|s| !p.skipped.contains(&s.index)) {
        if let Base::Image(i) = &s.base {
            images.push((i.clone(), s.platform.clone()));
        }
        for step in &s.steps {
            if let cargohold_builder::plan::StepKind::Copy { from: CopySource::Image(i), .. } = &step.kind {
                images.push((i.clone(), p.platform.clone()));
            }
        }
    }
    for (name, platform) in images {
        // oci:, oci-archive: and docker-archive: bases are read by the builder.
        if let Ok(ImageLocation::Store(n) | ImageLocation::Docker(n)) = ImageLocation::parse(&name) {
            ensure_base(ctx, store, &n, Some(platform))?;
        }
    }
    Ok(())
}

/// Pulls `name` into the store unless it is there (with `platform`, when
/// given, among its platforms).
fn ensure_base(ctx: &Ctx, store: &Store, name: &str, platform: Option<Platform>) -> Result<()> {
    if let Ok(img) = store.resolve(name)
        && platform.as_ref().is_none_or(|p| store.has_platform(&img.descriptor, p))
    {
        return Ok(());
    }
    let loc = ImageLocation::parse(name)?;
    let loc = match loc {
        ImageLocation::Store(n) => ImageLocation::Docker(n),
        other => other,
    };
    let reg = ctx.registry_for_locations(&[&loc])?;
    let copy_opts = CopyOptions { platform, all_platforms: false, ..CopyOptions::default() };
    let bars = ctx.progress();
    ensure_image(&reg, store, name, PullPolicy::Missing, &copy_opts, 4, &bars)
        .with_context(|| format!("base image {name} is not in the store and could not be pulled"))?;
    Ok(())
}

impl crate::cli::ContainerArgs {
    /// `--network`.
    pub fn network(&self) -> Result<Network> {
        self.network.parse().map_err(|e: String| anyhow::anyhow!("--network: {e}"))
    }

    /// `--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`.
    pub fn security(&self) -> Result<Security> {
        let mut s = Security {
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            ..Security::default()
        };
        for o in &self.security_opt {
            s.apply_opt(o)?;
        }
        s.capabilities()?;
        Ok(s)
    }
}

/// `--init`: podman's reaper, catatonit.
fn init_binary() -> Result<std::path::PathBuf> {
    cargohold_runtime::find_program("catatonit")
        .or_else(|| cargohold_runtime::find_program("/usr/libexec/podman/catatonit"))
        .context("--init: catatonit is not installed (Debian's catatonit package provides it)")
}

/// `CARGOHOLD_OVERLAY=0`: never mount a writable overlay (the copy-up fallback).
/// `build --check`: errors and warnings, with their lines.
fn check_only(args: &BuildArgs, text: &str, opts: &PlanOptions) -> Result<()> {
    match cargohold_builder::plan::check(text, opts) {
        Ok((planned, warnings)) => {
            let fail = warnings_fail(text, opts, &warnings);
            if args.out.json {
                output::json(&serde_json::json!({
                    "file": opts.file, "errors": [], "warnings": warnings,
                    "stages": planned.stages.len(), "target": planned.target,
                }))?;
            } else {
                for w in &warnings {
                    let at = if w.line == 0 { String::new() } else { format!(":{}", w.line) };
                    output::line(format!("{}{at}: warning: {}: {}", opts.file, w.rule, w.message))?;
                }
                output::line(format!(
                    "{}: {} stages, no errors, {} warnings",
                    opts.file,
                    planned.stages.len(),
                    warnings.len()
                ))?;
            }
            fail
        }
        Err(e) => {
            if args.out.json {
                output::json(&serde_json::json!({
                    "file": e.file, "errors": [{ "line": e.line, "column": e.column, "message": e.message }],
                    "warnings": [],
                }))?;
            }
            Err(e.into())
        }
    }
}

/// An error when there are warnings and the Dockerfile's `# check=error=true`
/// makes them fail the check and the build.
fn warnings_fail(text: &str, opts: &PlanOptions, warnings: &[cargohold_builder::plan::Warning]) -> Result<()> {
    if !warnings.is_empty() && parse(text, &opts.file)?.check.error {
        bail!("{}: {} warnings, which the check directive (error=true) makes errors", opts.file, warnings.len());
    }
    Ok(())
}

fn no_overlay() -> bool {
    std::env::var("CARGOHOLD_OVERLAY").is_ok_and(|v| v == "0")
}

fn step_line(quiet: bool, several: bool, s: &StepReport) {
    if quiet {
        return;
    }
    let how = if s.cached { "CACHED".to_owned() } else { format!("{:.2}s", s.seconds) };
    eprintln!("{} [{how}]", step_label(several, s));
}

fn step_label(several: bool, s: &StepReport) -> String {
    let platform = if several { format!("[{}] ", s.platform) } else { String::new() };
    format!("{platform}#{} line {}: {}", s.stage, s.line, s.instruction.trim_end_matches(" # buildkit"))
}

/// `--progress tty`: finished steps as plain lines, the running one as a
/// line redrawn in place with its time, RUN output printed above it.
#[derive(Default)]
struct Board {
    state: std::sync::Mutex<BoardState>,
    done: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct BoardState {
    running: Option<(String, std::time::Instant)>,
    /// The last output did not end a line: nothing is drawn below it.
    partial: bool,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn draw(st: &BoardState) {
        if let (Some((label, since)), false) = (&st.running, st.partial) {
            // One line, whatever the terminal's width: a wrapped line would
            // not be redrawn in place.
            let label: String = match label.char_indices().nth(60) {
                Some((i, _)) => format!("{}...", &label[..i]),
                None => label.clone(),
            };
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K\x1b[1m=> {label} {:.1}s\x1b[0m", since.elapsed().as_secs_f64());
            let _ = err.flush();
        }
    }

    fn start(&self, several: bool, s: &StepReport) {
        let mut st = self.lock();
        st.running = Some((step_label(several, s), std::time::Instant::now()));
        Self::draw(&st);
    }

    fn output(&self, bytes: &[u8]) {
        let mut st = self.lock();
        let mut err = std::io::stderr().lock();
        if !st.partial {
            let _ = err.write_all(b"\r\x1b[K");
        }
        let _ = err.write_all(bytes);
        st.partial = !bytes.ends_with(b"\n");
        drop(err);
        Self::draw(&st);
    }

    fn finish(&self, several: bool, s: &StepReport) {
        let mut st = self.lock();
        let how = if s.cached { "CACHED".to_owned() } else { format!("{:.2}s", s.seconds) };
        let end = if st.partial { "\n" } else { "\r\x1b[K" };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{end}{} [{how}]", step_label(several, s));
        st.running = None;
        st.partial = false;
    }

    /// Redraws the running step's time until the build ends.
    fn tick(&self) {
        while !self.done.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
            Self::draw(&self.lock());
        }
        let st = self.lock();
        if st.running.is_some() && !st.partial {
            eprint!("\r\x1b[K");
        }
    }
}

pub fn build(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    let plan_opts = plan_options(args)?;
    let file = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&file).with_context(|| format!("could not read {}", file.display()))?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let live = match args.progress.as_str() {
        "plain" => false,
        "auto" => terminal,
        "tty" if terminal => true,
        "tty" => bail!("--progress tty: standard error is not a terminal (use plain)"),
        other => bail!("--progress {other}: use auto, plain or tty"),
    };
    let mut labels = Vec::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').with_context(|| format!("--label {l}: not KEY=VALUE"))?;
        if k.is_empty() {
            bail!("--label {l}: the key is empty");
        }
        labels.push((k.to_owned(), v.to_owned()));
    }
    if let Some(a) = args.allow.iter().find(|a| a.as_str() != "network.host") {
        bail!("--allow {a}: only network.host is supported");
    }
    let mut annotations = Vec::new();
    for a in &args.annotations {
        let (k, v) = a.split_once('=').with_context(|| format!("--annotation {a}: not KEY=VALUE"))?;
        if k.is_empty() {
            bail!("--annotation {a}: the key is empty");
        }
        annotations.push((k.to_owned(), v.to_owned()));
    }
    let mut secrets = Vec::new();
    for spec in &args.secrets {
        let mut id = None;
        let mut source = None;
        for part in spec.split(',') {
            let (k, v) = part.split_once('=').with_context(|| format!("--secret {spec}: {part:?} is not KEY=VALUE"))?;
            match k {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => source = Some(cargohold_builder::build::SecretSource::File(v.into())),
                "env" => {
                    let value = std::env::var_os(v).with_context(|| format!("--secret {spec}: ${v} is not set"))?;
                    source = Some(cargohold_builder::build::SecretSource::Bytes(
                        std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec(),
                    ));
                }
                "type" if v == "file" || v == "env" => {}
                other => bail!("--secret {spec}: {other} is not id, src or env"),
            }
        }
        let id = id.with_context(|| format!("--secret {spec}: needs id=NAME"))?;
        let source = match source {
            Some(s) => s,
            // As buildx: the variable of the secret's name, when set.
            None => match std::env::var_os(&id) {
                Some(v) => cargohold_builder::build::SecretSource::Bytes(
                    std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec(),
                ),
                None => bail!("--secret {spec}: give src=FILE or env=VAR"),
            },
        };
        secrets.push((id, source));
    }
    let mut ssh = Vec::new();
    for spec in &args.ssh {
        let (id, socket) = match spec.split_once('=') {
            Some((id, path)) => (id.to_owned(), std::path::PathBuf::from(path)),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK")
                    .with_context(|| format!("--ssh {spec}: SSH_AUTH_SOCK is not set (give {spec}=SOCKET)"))?;
                (spec.clone(), std::path::PathBuf::from(sock))
            }
        };
        let meta = std::fs::metadata(&socket).with_context(|| format!("--ssh {spec}: {}", socket.display()))?;
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            bail!(
                "--ssh {spec}: {} is not an agent's socket (for keys, start ssh-agent, ssh-add them and give its socket)",
                socket.display()
            );
        }
        ssh.push((id, socket));
    }
    if args.check {
        return check_only(args, &text, &plan_opts);
    }
    let store = ctx.store()?;
    let parsed = parse(&text, &plan_opts.file)?;
    if parsed.check.error {
        let (_, warnings) = cargohold_builder::plan::check(&text, &plan_opts)?;
        for w in &warnings {
            let at = if w.line == 0 { String::new() } else { format!(":{}", w.line) };
            output::status(&format!("{}{at}: warning: {}: {}", plan_opts.file, w.rule, w.message));
        }
        warnings_fail(&text, &plan_opts, &warnings)?;
    }
    let mut plans = Vec::new();
    for p in build_platforms(args)? {
        plans.push(plan(&parsed, &PlanOptions { platform: p.to_string(), ..plan_opts.clone() })?);
    }
    if !ctx.is_quiet() {
        for a in &plans[0].unused_args {
            output::status(&format!("warning: --build-arg {a} is not declared by any ARG (UnusedBuildArgs)"));
        }
    }
    for p in &plans {
        pull_bases(ctx, &store, p)?;
    }
    let tags = args.tags.iter().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let network = args.container.network()?;
    let opts = BuildOptions {
        context: args.context.clone(),
        dockerfile: Some(file),
        plan: plan_opts.clone(),
        tags: tags.clone(),
        no_cache: args.no_cache,
        network,
        security: args.container.security()?,
        timestamp: args.timestamp.or_else(source_date_epoch),
        copy_up: no_overlay(),
        labels,
        annotations,
        secrets,
        ssh,
        allow_host_network: args.allow.iter().any(|a| a == "network.host"),
        platforms: plans.iter().map(|p| p.platform.clone()).collect(),
        binfmt_misc: PathBuf::new(),
    };
    for from in &args.cache_from {
        let r = Reference::parse(from.strip_prefix("docker://").unwrap_or(from))
            .with_context(|| format!("--cache-from {from}"))?;
        let reg = ctx.registry_for(Some(r.registry()))?;
        let pulled = cargohold_registry::pull(&reg, &r, &store, &CopyOptions::default(), 4, &ctx.progress());
        match pulled {
            Ok(_) => {
                let name = r.canonical();
                let n = import_cache(&store, &name).with_context(|| format!("--cache-from {from}"))?;
                let _ = store.untag(&name);
                if !ctx.quiet {
                    eprintln!("cache: {n} steps from {from}");
                }
            }
            Err(e) if !ctx.quiet => eprintln!("warning: --cache-from {from}: {e:#} (building without it)"),
            Err(_) => {}
        }
    }
    let quiet = ctx.quiet;
    let started = std::time::Instant::now();
    let several = plans.len() > 1;
    let executor = executor_for(&store, args.container.runtime.as_deref())?;
    let report = if live && !quiet {
        let board = Board::default();
        std::thread::scope(|s| {
            s.spawn(|| board.tick());
            let built = Builder::new(&store)
                .with_executor(executor)
                .on_start(|s| board.start(several, s))
                .on_output(|b| board.output(b))
                .on_step(|s| board.finish(several, s))
                .build_plans(&plans, &opts, &plan_opts.file);
            board.done.store(true, std::sync::atomic::Ordering::Relaxed);
            built
        })?
    } else {
        Builder::new(&store).with_executor(executor).on_step(move |s| step_line(quiet, several, s)).build_plans(
            &plans,
            &opts,
            &plan_opts.file,
        )?
    };
    // An index goes out with every platform's image.
    let out_opts = CopyOptions { platform: None, all_platforms: several, ..CopyOptions::default() };
    let image = report.image.digest.to_string();
    if let Some(f) = &args.iidfile {
        super::write_output_file(f, &report.config.to_string(), "the image ID")?;
    }
    let mut outputs = Vec::new();
    for o in &args.outputs {
        let loc = ImageLocation::parse(o)?;
        let reg = ctx.registry_for_locations(&[&loc])?;
        let mut src = store.source(&image)?;
        let bars = ctx.progress();
        let r = match &loc {
            ImageLocation::Docker(target) => {
                let target = Reference::parse(target)?;
                cargohold_registry::push(&reg, &src, &target, &out_opts, 4, &bars)
            }
            _ => {
                let hint = tags.first();
                let mut dst = cargohold_registry::open_dest(&loc, &store, &reg, hint)?;
                copy(&mut src, dst.as_mut(), &out_opts, &bars)
            }
        }
        .with_context(|| format!("could not write the image to {o}"))?;
        outputs.push(json!({ "location": o, "digest": r.manifest.digest }));
    }
    if args.push {
        if tags.is_empty() {
            bail!("--push needs at least one --tag");
        }
        for t in &tags {
            let reg = ctx.registry_for(Some(t.registry()))?;
            let src = store.source(&image)?;
            let bars = ctx.progress();
            cargohold_registry::push(&reg, &src, t, &out_opts, 4, &bars)
                .with_context(|| format!("could not push {}", t.familiar()))?;
            outputs.push(json!({ "location": format!("docker://{}", t.canonical()), "digest": report.image.digest }));
        }
    }
    if let Some(to) = &args.cache_to {
        let r =
            Reference::parse(to.strip_prefix("docker://").unwrap_or(to)).with_context(|| format!("--cache-to {to}"))?;
        let local = export_cache(&store, &report.cache, &r)?;
        let src = store.source(&local.digest.to_string())?;
        let reg = ctx.registry_for(Some(r.registry()))?;
        let pushed = cargohold_registry::push(&reg, &src, &r, &CopyOptions::default(), 4, &ctx.progress());
        let _ = store.untag(&r.canonical());
        pushed.with_context(|| format!("could not push the build cache to {to}"))?;
        outputs.push(json!({ "location": format!("cache:docker://{}", r.canonical()), "digest": local.digest }));
    }
    if args.out.json {
        let steps: Vec<_> = report
            .steps
            .iter()
            .map(|s| {
                json!({ "platform": s.platform.to_string(), "stage": s.stage, "line": s.line,
                        "instruction": s.instruction, "cached": s.cached, "layer": s.layer, "seconds": s.seconds })
            })
            .collect();
        let images: Vec<_> = report
            .images
            .iter()
            .map(|i| json!({ "platform": i.platform.to_string(), "digest": i.image.digest, "id": i.config }))
            .collect();
        return output::json(&json!({
            "digest": report.image.digest, "id": report.config, "tags": report.tags, "layers": report.layers,
            "images": images, "steps": steps, "outputs": outputs, "seconds": started.elapsed().as_secs_f64(),
        }));
    }
    let name = report.tags.first().cloned().unwrap_or_else(|| report.config.to_string());
    if several {
        let platforms: Vec<String> = report.images.iter().map(|i| i.platform.to_string()).collect();
        return output::line(format!(
            "built {name} {} (an index of {}; {} layers)",
            report.image.digest,
            platforms.join(", "),
            report.layers
        ));
    }
    output::line(format!("built {name} {} ({} layers)", report.image.digest, report.layers))
}

pub fn run(ctx: &Ctx, args: &RunArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let mut mounts = Vec::new();
    for v in &args.volumes {
        mounts.push(MountRequest::parse_volume(v)?);
    }
    for m in &args.mounts {
        mounts.push(MountRequest::parse_mount(m)?);
    }
    for t in &args.tmpfs {
        mounts.push(MountRequest::parse_tmpfs(t)?);
    }
    let mut env = Vec::new();
    for f in &args.env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("--env-file {}", f.display()))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            match line.split_once('=') {
                Some(_) => env.push(line.to_owned()),
                // Docker: a name alone takes the value from our environment.
                None => env.extend(std::env::var(line).ok().map(|v| format!("{line}={v}"))),
            }
        }
    }
    env.extend(args.env.iter().cloned());
    let mut extra_hosts = Vec::new();
    for h in &args.add_host {
        let (name, ip) = h.split_once(':').with_context(|| format!("--add-host {h}: expected NAME:IP"))?;
        extra_hosts
            .push((name.to_owned(), ip.parse().with_context(|| format!("--add-host {h}: {ip} is not an IP address"))?));
    }
    let image = if args.rootfs {
        args.image.clone()
    } else {
        let policy: PullPolicy = args.pull.parse().map_err(anyhow::Error::msg)?;
        let copy_opts = CopyOptions {
            platform: ctx.platform(args.platform.as_deref())?,
            all_platforms: false,
            ..CopyOptions::default()
        };
        // --creds go to the image's registry, only when it is pulled.
        let loc = match ImageLocation::parse(&args.image)? {
            ImageLocation::Store(n) => ImageLocation::Docker(n),
            other => other,
        };
        let pulls = match policy {
            PullPolicy::Never => false,
            PullPolicy::Missing => store.resolve(&args.image).is_err(),
            PullPolicy::Always => true,
        };
        let reg = if pulls { ctx.registry_for_locations(&[&loc])? } else { ctx.registry_for(None)? };
        let bars = ctx.progress();
        ensure_image(&reg, &store, &args.image, policy, &copy_opts, 4, &bars)
            .with_context(|| format!("could not find or pull the image {}", args.image))?
            .name
    };
    let opts = RunOptions {
        image,
        source_date_epoch: source_date_epoch(),
        rootfs: args.rootfs.then(|| PathBuf::from(&args.image)),
        publish_all: args.publish_all,
        systemd: args.systemd.parse()?,
        argv: args.command.strip_prefix(&["--".to_owned()]).unwrap_or(&args.command).to_vec(),
        entrypoint: args.entrypoint.as_ref().map(|e| e.split_whitespace().map(str::to_owned).collect()),
        env,
        mounts,
        dns: args.dns.clone(),
        extra_hosts,
        ports: args.publish.iter().map(|p| PortMapping::parse(p)).collect::<Result<_, _>>()?,
        network: args.container.network()?,
        security: args.container.security()?,
        init: if args.init { Some(init_binary()?) } else { None },
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        commit: args.commit.as_deref().map(Reference::parse).transpose()?,
        platform: ctx.platform(args.platform.as_deref())?,
        copy_up: no_overlay(),
        tty: args.tty,
        limits: Limits {
            memory: args.memory.as_deref().map(parse_size).transpose().map_err(|e| anyhow::anyhow!("--memory {e}"))?,
            cpus: args.cpus,
        },
    };
    if args.detach {
        return detach(ctx, &store, args, &opts);
    }
    // A name, a restart policy or stop settings make a foreground run a
    // container that is kept (as `docker run --name` does): attached to
    // its output, there afterwards for logs, cp, commit, rm.
    let kept = args.name.is_some() || args.restart != "no" || args.stop_signal.is_some() || args.stop_timeout.is_some();
    if kept {
        if args.tty || args.interactive {
            bail!(
                "a named foreground run takes no -i/-t yet: run it with -d, then `cargohold exec -it` into it, or drop --name"
            );
        }
        return attached(ctx, &store, args, &opts);
    }
    let exec = executor_for(&store, args.container.runtime.as_deref())?;
    let outcome = if args.tty {
        with_terminal(|io| run_image(&store, exec.as_ref(), &opts, io)).context("could not open a terminal")?
    } else {
        run_image(&store, exec.as_ref(), &opts, ProcessIo::inherit())
    }
    .with_context(|| format!("could not run {}", args.image))?;
    if outcome.code == 137 && opts.limits.memory.is_some() && !ctx.quiet {
        eprintln!("note: the command was killed (exit 137), most likely by the OOM killer under --memory");
    }
    if let Some(d) = &outcome.committed {
        eprintln!("committed {} {}", args.commit.as_deref().unwrap_or_default(), d.digest);
    }
    Ok(ExitCode::from(u8::try_from(outcome.code).unwrap_or(1)))
}

/// A kept foreground run: made and started as with `-d`, then followed
/// (output and exit code, as `start -a`); `--rm` removes it (and its
/// anonymous volumes) once its exit code is known.
fn attached(ctx: &Ctx, store: &Store, args: &RunArgs, opts: &RunOptions) -> Result<ExitCode> {
    let keep = container_options(args, false)?;
    let c = create_container(store, opts, &keep)
        .with_context(|| format!("could not create a container of {}", args.image))?;
    if let Err(e) = super::containers::start_monitor(ctx, &c) {
        let _ = c.remove(true);
        return Err(e);
    }
    let code = super::containers::follow(ctx, &c)?;
    if args.rm {
        cargohold_builder::run::remove_container(store, &c, true, true)
            .with_context(|| format!("could not remove container {}", c.config.name))?;
    }
    Ok(code)
}

fn container_options(args: &RunArgs, auto_remove: bool) -> Result<ContainerOptions> {
    Ok(ContainerOptions {
        name: args.name.clone(),
        auto_remove,
        stop_signal: args.stop_signal.as_deref().map(super::containers::parse_signal).transpose()?,
        stop_timeout: args.stop_timeout,
        runtime: args.container.runtime.clone(),
        restart: args.restart.parse().map_err(anyhow::Error::msg)?,
        interactive: args.interactive,
    })
}

/// `run -d`: the container is made, its monitor started in a process of
/// its own (outliving this one), and its ID printed once it runs.
fn detach(ctx: &Ctx, store: &Store, args: &RunArgs, opts: &RunOptions) -> Result<ExitCode> {
    let keep = container_options(args, args.rm)?;
    let c = create_container(store, opts, &keep)
        .with_context(|| format!("could not create a container of {}", args.image))?;
    if let Err(e) = super::containers::start_monitor(ctx, &c) {
        let _ = c.remove(true);
        return Err(e);
    }
    output::line(c.id())?;
    Ok(ExitCode::SUCCESS)
}

fn stage_line(quiet: bool, s: &StageStep) {
    if quiet {
        return;
    }
    let how = if s.cached { "CACHED".to_owned() } else { format!("{:.2}s", s.seconds) };
    let layer = s.layer.as_ref().map_or_else(|| "no layer".to_owned(), |l| l.to_string());
    eprintln!("{}: {layer} [{how}]", s.name);
}

pub fn stage(ctx: &Ctx, args: &StageArgs) -> Result<()> {
    let store = ctx.store()?;
    if let Some(StageAction::Promote(p)) = &args.action {
        let image = promote(&store, &p.image, &p.tag)?;
        if p.out.json {
            return output::json(&json!({ "digest": image.digest, "tag": format!("{}:{}", p.image, p.tag) }));
        }
        return output::line(format!("{}:{} is {}", p.image, p.tag, image.digest));
    }
    let dir = args.dir.clone().context("stage needs an image directory")?;
    let command = match args.command.as_deref() {
        None => None,
        Some(c) if c.trim_start().starts_with('[') => Some(
            serde_json::from_str::<Vec<String>>(c)
                .with_context(|| format!("--command {c}: not a JSON string array"))?,
        ),
        Some(c) => Some(c.split_whitespace().map(str::to_owned).collect()),
    };
    let mut env = BTreeMap::new();
    for e in &args.env {
        let (k, v) = e.split_once('=').with_context(|| format!("--env {e}: expected NAME=VALUE"))?;
        env.insert(k.to_owned(), v.to_owned());
    }
    let base_tarball = match &args.base_tarball {
        Some(t) => Some(std::path::absolute(t).with_context(|| format!("--base-tarball {}", t.display()))?),
        None => None,
    };
    let flags = StageConfig {
        image: args.image.clone(),
        base: args.base.clone(),
        base_tarball,
        command,
        env,
        systemd: args.systemd.then_some(true),
    };
    let config = StageConfig::load(&dir)?.overridden_by(flags);
    let platform = ctx.platform(args.platform.as_deref())?;
    if let Some(base) = config.base.as_deref().filter(|b| *b != "scratch") {
        ensure_base(ctx, &store, base, platform.clone())?;
    }
    let opts = StageOptions {
        dir: dir.clone(),
        config,
        no_cache: args.no_cache,
        network: args.container.network()?,
        security: args.container.security()?,
        timestamp: args.timestamp.or_else(source_date_epoch),
        platform,
        copy_up: no_overlay(),
    };
    let quiet = ctx.quiet;
    let started = std::time::Instant::now();
    let report = Stager::new(&store)
        .with_executor(executor_for(&store, args.container.runtime.as_deref())?)
        .on_step(move |s| stage_line(quiet, s))
        .run(&opts)
        .with_context(|| format!("staged build of {}", dir.display()))?;
    if !quiet {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for s in &report.skipped {
            eprintln!("note: no {s}: skipped");
        }
    }
    if args.out.json {
        let steps: Vec<_> = report
            .steps
            .iter()
            .map(|s| json!({ "name": s.name, "cached": s.cached, "layer": s.layer, "seconds": s.seconds }))
            .collect();
        return output::json(&json!({
            "digest": report.image.digest, "id": report.config, "tag": report.tag, "steps": steps,
            "skipped": report.skipped, "warnings": report.warnings, "seconds": started.elapsed().as_secs_f64(),
        }));
    }
    output::line(format!("built {} {}", report.tag, report.image.digest))
}
