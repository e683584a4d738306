//! `cargohold publish convert|convert-single-image|check`.

use std::io::Write as _;

use anyhow::{Context, Result, bail};
use cargohold_image_core::ImageUrl;
use cargohold_publish::{
    CvmfsServer, DEFAULT_OUTPUT_FORMAT, ImageReport, LocalDir, PublishBackend, PublishOptions, Publisher, Status,
    ThinOptions, Wishlist, parse_ignore_errors, parse_wishlist,
};
use serde_json::json;

use super::{Ctx, platform};
use crate::cli::{BackendKind, PublishCommand, PublishOpts};
use crate::output;

pub fn run(ctx: &Ctx, cmd: &PublishCommand) -> Result<()> {
    match cmd {
        PublishCommand::Check(a) => {
            let w = read_wishlist(&a.wishlist)?;
            if a.out.json {
                let inputs: Vec<_> = w.inputs.iter().map(|i| json!({"line": i.line, "input": i.text})).collect();
                return output::json(&json!({
                    "user": w.user, "cvmfs_repo": w.cvmfs_repo, "output_format": w.output_format,
                    "inputs": inputs, "problems": w.problems,
                }));
            }
            for p in &w.problems {
                output::line(format!("line {}: {:?}: {}", p.line, p.text, p.reason))?;
            }
            output::line(format!("{} inputs, {} problems", w.inputs.len(), w.problems.len()))?;
            if !w.problems.is_empty() {
                bail!("the wish list {} has entries that cannot be used", a.wishlist.display());
            }
            Ok(())
        }
        PublishCommand::Convert(a) => {
            let w = read_wishlist(&a.wishlist)?;
            for p in &w.problems {
                let _ = writeln!(
                    std::io::stderr(),
                    "cargohold: skipping line {} of {}: {:?}: {}",
                    p.line,
                    a.wishlist.display(),
                    p.text,
                    p.reason
                );
            }
            let root = a.root.clone().unwrap_or_else(|| w.cvmfs_repo.clone().into());
            let thin = ThinOptions { output_format: w.output_format.clone(), cvmfs_repo: w.cvmfs_repo.clone() };
            convert(ctx, &a.opts, &root, (&w.user, thin), None, |p| p.convert_wishlist(&w))
        }
        PublishCommand::Loop(a) => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, std::sync::Arc::clone(&stop)).context("cannot handle signals")?;
            }
            let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
            while !stopped() {
                // The list is read afresh every round; a broken one is reported
                // and the loop goes on (the file may be being edited).
                let round = read_wishlist(&a.wishlist).and_then(|w| {
                    let root = a.root.clone().unwrap_or_else(|| w.cvmfs_repo.clone().into());
                    let thin = ThinOptions { output_format: w.output_format.clone(), cvmfs_repo: w.cvmfs_repo.clone() };
                    convert(ctx, &a.opts, &root, (&w.user, thin), Some(&stop), |p| p.convert_wishlist(&w))
                });
                if let Err(e) = round {
                    let _ = writeln!(std::io::stderr(), "cargohold: {e:#}");
                }
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(a.interval);
                while !stopped() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            Ok(())
        }
        PublishCommand::Gc(a) => {
            let backend: Box<dyn PublishBackend> = match a.backend {
                BackendKind::Local => {
                    if !a.target.is_dir() {
                        bail!("{} is not a publish tree (no such directory)", a.target.display());
                    }
                    Box::new(LocalDir::new(&a.target)?)
                }
                BackendKind::Cvmfs => Box::new(CvmfsServer::new(&cvmfs_repo_of(&a.target))?),
            };
            let grace = std::time::Duration::from_secs_f64(a.grace_period.max(0.0) * 86_400.0);
            let notifier = cargohold_publish::Notifier::new(a.notification_file.as_deref());
            let lock = a.lock_timeout.map(std::time::Duration::from_secs);
            let report = cargohold_publish::collect_in(backend.as_ref(), a.dry_run, grace, lock, &notifier)
                .with_context(|| format!("could not collect garbage in {}", a.target.display()))?;
            if a.out.json {
                return output::json(&report);
            }
            let verb = if a.dry_run { "would remove" } else { "removed" };
            for c in &report.collected {
                output::line(format!("{verb} {} {} ({} bytes)", c.kind, c.path.display(), c.bytes))?;
            }
            output::line(format!("{verb} {} entries, {} bytes", report.collected.len(), report.bytes))
        }
        PublishCommand::ConvertSingleImage(a) => {
            let url = ImageUrl::parse(&a.image).with_context(|| format!("{} is not an image", a.image))?;
            if url.is_tag_pattern() {
                bail!("{} is a tag pattern; use a wish list for patterns", a.image);
            }
            let repo = a.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let thin = ThinOptions { output_format: DEFAULT_OUTPUT_FORMAT.into(), cvmfs_repo: repo };
            convert(ctx, &a.opts, &a.target, ("", thin), None, |p| p.convert_image_all(&url))
        }
    }
}

/// The repository (and subdirectory) a cvmfs target names: `REPO[/SUBDIR]`,
/// or `/cvmfs/REPO[/SUBDIR]`.
fn cvmfs_repo_of(target: &std::path::Path) -> String {
    let t = target.to_string_lossy();
    t.strip_prefix("/cvmfs/").unwrap_or(&t).to_owned()
}

/// A wish list, with the `ignoreErrors` of `DUCC_IGNORE_ERRORS_FILE` added (as DUCC).
fn read_wishlist(path: &std::path::Path) -> Result<Wishlist> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    let mut w = parse_wishlist(&text, &path.display().to_string())?;
    if let Some(file) = std::env::var_os("DUCC_IGNORE_ERRORS_FILE").filter(|f| !f.is_empty()) {
        let file = std::path::PathBuf::from(file);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("could not read DUCC_IGNORE_ERRORS_FILE {}", file.display()))?;
        w.ignore_errors.extend(parse_ignore_errors(&text, &file.display().to_string())?);
    }
    Ok(w)
}

fn convert(
    ctx: &Ctx,
    o: &PublishOpts,
    root: &std::path::Path,
    (user, thin): (&str, ThinOptions),
    stop: Option<&std::sync::atomic::AtomicBool>,
    work: impl FnOnce(&Publisher<'_>) -> Vec<ImageReport>,
) -> Result<()> {
    if ctx.creds_given() {
        anyhow::bail!(
            "publish reads images from the registries its wish list names, each with its stored credentials \
             (cargohold login), not --creds"
        );
    }
    let reg = ctx.registry_for(None)?;
    // Thin images go up as the wish list's user, with the password DUCC
    // reads from the environment, else with the stored credentials.
    let password =
        std::env::var("DUCC_OUTPUT_REGISTRY_PASS").or_else(|_| std::env::var("DOCKER2CVMFS_DOCKER_REGISTRY_PASS")).ok();
    let thin_reg = match password {
        Some(p) if !user.is_empty() => ctx.registry_as(cargohold_registry::Credentials::new(user, p))?,
        _ => ctx.registry_for(None)?,
    };
    let opts = PublishOptions {
        jobs: o.jobs,
        skip_flat: o.skip_flat,
        convert_again: o.convert_again,
        overwrite_layers: o.overwrite_layers,
        lock_timeout: o.lock_timeout.map(std::time::Duration::from_secs),
        platform: platform(o.platform.as_deref())?,
        multi_arch: o.multi_arch,
    };
    let quiet = ctx.is_quiet();
    let backend: Box<dyn PublishBackend> = match o.backend {
        BackendKind::Local => Box::new(
            LocalDir::new(root).with_context(|| format!("could not open the publish tree {}", root.display()))?,
        ),
        BackendKind::Cvmfs => Box::new(CvmfsServer::new(&cvmfs_repo_of(root))?),
    };
    let mut publisher = Publisher::with_backend(backend, &reg, opts, o.notification_file.as_deref())
        .with_context(|| format!("could not open the publish tree {}", root.display()))?
        .on_lock_wait(move |lock| {
            if !quiet {
                let _ =
                    writeln!(std::io::stderr(), "cargohold: waiting for another publisher (lock {})", lock.display());
            }
        });
    if !o.skip_thin_image {
        publisher = publisher.with_thin_images(&thin_reg, thin);
    }
    if let Some(flag) = stop {
        publisher = publisher.with_stop_flag(flag);
    }
    let reports = publisher.run(work);
    let failed = reports.iter().filter(|r| r.status == Status::Failed && !r.ignored).count();
    if o.out.json {
        output::json(&json!({ "root": root, "images": reports }))?;
    } else {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|r| {
                vec![
                    r.image.clone(),
                    if r.ignored { "failed (ignored)".into() } else { format!("{:?}", r.status).to_lowercase() },
                    format!("{}/{}", r.layers_new, r.layers_reused),
                    r.bytes_downloaded.to_string(),
                    r.bytes_written.to_string(),
                    format!("{:.2}", r.seconds),
                    r.error.clone().or_else(|| r.thin_image.as_ref().map(|t| format!("thin: {t}"))).unwrap_or_default(),
                ]
            })
            .collect();
        output::table(&["IMAGE", "STATUS", "LAYERS NEW/REUSED", "DOWNLOADED", "WRITTEN", "SECONDS", "NOTE"], &rows)?;
    }
    if failed > 0 {
        bail!("{failed} of {} images failed", reports.len());
    }
    Ok(())
}
