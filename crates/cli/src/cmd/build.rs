//! `cargohold build` and `cargohold run`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cargohold_builder::build::{BuildOptions, Builder, StepReport};
use cargohold_builder::dockerfile::{Keyword, parse};
use cargohold_builder::exec::{BindMount, Namespaces, Network, ProcessIo};
use cargohold_builder::plan::{Base, CopySource, Plan, PlanOptions, plan};
use cargohold_builder::run::{RunOptions, run_image};
use cargohold_image_core::{CopyOptions, ImageLocation, ImageSource, Platform, Reference, Store, copy};
use serde_json::json;

use super::{Ctx, platform};
use crate::cli::{BuildArgs, RunArgs};
use crate::output;

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
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>()?.to_string(),
        None => Platform::host().to_string(),
    };
    let file =
        args.file.as_ref().and_then(|f| f.file_name()).map_or("Dockerfile".into(), |n| n.to_string_lossy().into());
    Ok(PlanOptions { build_args, target: args.target.clone(), deny, platform, file })
}

/// Pulls the base images (FROM and COPY --from) the store does not have.
fn pull_bases(ctx: &Ctx, store: &Store, p: &Plan, opts: &PlanOptions) -> Result<()> {
    let mut images: Vec<String> = Vec::new();
    for s in p.stages.iter().filter(|s| !p.skipped.contains(&s.index)) {
        if let Base::Image(i) = &s.base {
            images.push(i.clone());
        }
        for step in &s.steps {
            if let cargohold_builder::plan::StepKind::Copy { from: CopySource::Image(i), .. } = &step.kind {
                images.push(i.clone());
            }
        }
    }
    let mut reg = None;
    for name in images {
        if store.resolve(&name).is_ok() {
            continue;
        }
        let r = Reference::parse(&name).with_context(|| format!("base image {name}"))?;
        let reg = match &mut reg {
            Some(r) => r,
            None => reg.insert(ctx.registry()?),
        };
        let want: Option<Platform> = opts.platform.parse().ok();
        let copy_opts = CopyOptions { platform: want, all_platforms: false };
        let bars = ctx.progress();
        cargohold_registry::pull(reg, &r, store, &copy_opts, 4, &bars)
            .with_context(|| format!("base image {name} is not in the store and could not be pulled"))?;
    }
    Ok(())
}

fn step_line(quiet: bool, s: &StepReport) {
    if quiet {
        return;
    }
    let how = if s.cached { "CACHED".to_owned() } else { format!("{:.2}s", s.seconds) };
    eprintln!("#{} line {}: {} [{how}]", s.stage, s.line, s.instruction.trim_end_matches(" # buildkit"));
}

pub fn build(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    let store = ctx.store()?;
    let plan_opts = plan_options(args)?;
    let file = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&file).with_context(|| format!("could not read {}", file.display()))?;
    let planned = plan(&parse(&text, &plan_opts.file)?, &plan_opts)?;
    pull_bases(ctx, &store, &planned, &plan_opts)?;
    let tags = args.tags.iter().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let network: Network = args.network.parse().map_err(anyhow::Error::msg)?;
    let opts = BuildOptions {
        context: args.context.clone(),
        dockerfile: Some(file),
        plan: plan_opts.clone(),
        tags: tags.clone(),
        no_cache: args.no_cache,
        network,
        timestamp: args.timestamp,
    };
    let quiet = ctx.quiet;
    let started = std::time::Instant::now();
    let report =
        Builder::new(&store).on_step(move |s| step_line(quiet, s)).build_plan(&planned, &opts, &plan_opts.file)?;
    let image = report.image.digest.to_string();
    let mut outputs = Vec::new();
    for o in &args.outputs {
        let loc = ImageLocation::parse(o)?;
        let reg = ctx.registry()?;
        let mut src = store.source(&image)?;
        let bars = ctx.progress();
        let r = match &loc {
            ImageLocation::Docker(target) => {
                let target = Reference::parse(target)?;
                let open = || -> cargohold_image_core::Result<Box<dyn ImageSource + Send>> {
                    Ok(Box::new(store.source(&image)?))
                };
                cargohold_registry::push(&reg, &open, &target, &CopyOptions::default(), 4, &bars)
            }
            _ => {
                let hint = tags.first();
                let mut dst = cargohold_registry::open_dest(&loc, &store, &reg, hint)?;
                copy(&mut src, dst.as_mut(), &CopyOptions::default(), &bars)
            }
        }
        .with_context(|| format!("could not write the image to {o}"))?;
        outputs.push(json!({ "location": o, "digest": r.manifest.digest }));
    }
    if args.push {
        if tags.is_empty() {
            bail!("--push needs at least one --tag");
        }
        let reg = ctx.registry()?;
        for t in &tags {
            let open =
                || -> cargohold_image_core::Result<Box<dyn ImageSource + Send>> { Ok(Box::new(store.source(&image)?)) };
            let bars = ctx.progress();
            cargohold_registry::push(&reg, &open, t, &CopyOptions::default(), 4, &bars)
                .with_context(|| format!("could not push {}", t.familiar()))?;
            outputs.push(json!({ "location": format!("docker://{}", t.canonical()), "digest": report.image.digest }));
        }
    }
    if args.out.json {
        let steps: Vec<_> = report
            .steps
            .iter()
            .map(|s| {
                json!({ "stage": s.stage, "line": s.line, "instruction": s.instruction, "cached": s.cached,
                        "layer": s.layer, "seconds": s.seconds })
            })
            .collect();
        return output::json(&json!({
            "image": report.image.digest, "id": report.config, "tags": report.tags, "layers": report.layers,
            "steps": steps, "outputs": outputs, "seconds": started.elapsed().as_secs_f64(),
        }));
    }
    let name = report.tags.first().cloned().unwrap_or_else(|| report.config.to_string());
    output::line(format!("built {name} {} ({} layers)", report.image.digest, report.layers))
}

pub fn run(ctx: &Ctx, args: &RunArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let mut binds = Vec::new();
    for v in &args.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, true),
            [s, d, "rw"] => (*s, *d, false),
            _ => bail!("--volume {v}: expected HOST:CONTAINER[:ro]"),
        };
        let source = std::fs::canonicalize(src).with_context(|| format!("--volume {v}: {src} does not exist"))?;
        binds.push(BindMount { source, target: dst.into(), readonly: ro });
    }
    let opts = RunOptions {
        image: args.image.clone(),
        argv: args.command.clone(),
        env: args.env.clone(),
        binds,
        network: args.network.parse().map_err(anyhow::Error::msg)?,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        commit: args.commit.as_deref().map(Reference::parse).transpose()?,
        platform: platform(args.platform.as_deref())?,
    };
    let outcome = run_image(&store, &Namespaces::new(), &opts, ProcessIo::inherit())
        .with_context(|| format!("could not run {}", args.image))?;
    if let Some(d) = &outcome.committed {
        eprintln!("committed {} {}", args.commit.as_deref().unwrap_or_default(), d.digest);
    }
    Ok(ExitCode::from(u8::try_from(outcome.code).unwrap_or(1)))
}
