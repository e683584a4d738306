//! `cargohold publish convert|loop|convert-single-image|gc|check|delete-image|prune-images|expand-wildcard`.

use std::io::Write as _;

use anyhow::{Context, Result, bail};
use cargohold_image_core::ImageUrl;
use cargohold_publish::{
    CvmfsServer, DEFAULT_OUTPUT_FORMAT, HookOptions, ImageReport, LocalDir, PublishBackend, PublishOptions, Publisher,
    Queue, Status, ThinOptions, Wishlist, parse_ignore_errors, parse_wishlist,
};
use serde_json::json;

use super::Ctx;
use crate::cli::{BackendKind, PublishCommand, PublishOpts, PublishTreeArgs};
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
            if a.mountless && a.backend != BackendKind::Cvmfs {
                bail!("--mountless is for --backend cvmfs");
            }
            let backend: Box<dyn PublishBackend> = match a.backend {
                BackendKind::Local => {
                    if !a.target.is_dir() {
                        bail!("{} is not a publish tree (no such directory)", a.target.display());
                    }
                    Box::new(local_dir(&a.target, a.read_only_tree)?)
                }
                BackendKind::Cvmfs => {
                    Box::new(CvmfsServer::new(&cvmfs_repo_of(&a.target))?.mountless(mountless(a.mountless)))
                }
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
        PublishCommand::Listen(a) => {
            if a.opts.out.json {
                bail!("--json: listen logs on stderr; there is no JSON to print");
            }
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, std::sync::Arc::clone(&stop)).context("cannot handle signals")?;
            }
            let filter = a.wishlist.as_deref().map(read_wishlist).transpose()?;
            let (user, output_format) = match &filter {
                Some(w) => (w.user.clone(), w.output_format.clone()),
                None => (String::new(), DEFAULT_OUTPUT_FORMAT.into()),
            };
            let repo = a.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let thin = ThinOptions { output_format, cvmfs_repo: repo };
            let queue =
                Queue::open(&a.queue).with_context(|| format!("could not open the queue {}", a.queue.display()))?;
            let listener =
                std::net::TcpListener::bind(&a.addr).with_context(|| format!("cannot listen on {}", a.addr))?;
            let secret = std::env::var("CARGOHOLD_HOOK_SECRET").ok().filter(|s| !s.is_empty());
            let opts = HookOptions { secret, registry_url: a.registry_url.clone(), filter };
            let quiet = ctx.is_quiet();
            if !quiet {
                let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                output::status(&format!(
                    "listening for registry webhooks on http://{at}/ (queue {})",
                    a.queue.display()
                ));
            }
            let log = move |line: &str| {
                if !quiet {
                    output::status(line);
                }
            };
            with_publisher(ctx, &a.opts, &a.target, (&user, thin), Some(&stop), |p| {
                Ok(cargohold_publish::listen(&listener, &queue, p, &opts, &stop, &log)?)
            })
        }
        PublishCommand::CreatePodmanStore(a) => {
            let url = ImageUrl::parse(&a.image).with_context(|| format!("{} is not an image", a.image))?;
            let reg = input_registry(ctx)?;
            let tree = a.tree.canonicalize().with_context(|| format!("{} is not a publish tree", a.tree.display()))?;
            let store = std::path::absolute(&a.store).with_context(|| format!("{}", a.store.display()))?;
            let name = cargohold_publish::create_podman_store(&reg, &url, &tree, &store, ctx.platform(None)?.as_ref())
                .with_context(|| format!("could not make the podman store {}", store.display()))?;
            if !ctx.is_quiet() {
                output::status(&format!(
                    "{name} is in the podman store {0}: podman --storage-opt additionalimagestore={0} run {name}",
                    store.display()
                ));
            }
            Ok(())
        }
        PublishCommand::Scrub(a) => {
            let tree = PublishTreeArgs {
                backend: BackendKind::Local,
                dry_run: !a.repair,
                notification_file: a.notification_file.clone(),
                lock_timeout: a.lock_timeout,
                read_only_tree: a.read_only_tree,
                mountless: false,
                out: a.out.clone(),
            };
            let report = with_tree(ctx, &a.target, &tree, |p| Ok(p.scrub(a.repair)?))?;
            if a.out.json {
                output::json(&report)?;
            } else {
                for l in report.damaged_layers.iter().chain(&report.damaged_flats) {
                    output::line(format!("damaged: {l}"))?;
                }
                for e in &report.errors {
                    output::line(format!("not checked: {e}"))?;
                }
                output::line(format!(
                    "{} images whole, {} damaged{}; {} layers and {} flats checked",
                    report.images_ok.len(),
                    report.images_damaged.len(),
                    if a.repair && !report.images_damaged.is_empty() { " (repaired)" } else { "" },
                    report.layers_checked,
                    report.flats_checked
                ))?;
            }
            if !report.errors.is_empty() {
                bail!("{} images could not be checked", report.errors.len());
            }
            if !a.repair && !report.images_damaged.is_empty() {
                bail!("{} images are damaged (run with --repair)", report.images_damaged.len());
            }
            Ok(())
        }
        PublishCommand::DeleteImage(a) => {
            let url = ImageUrl::parse(&a.image).with_context(|| format!("{} is not an image", a.image))?;
            if url.is_tag_pattern() {
                bail!("{} is a tag pattern; delete-image takes one image", a.image);
            }
            let deleted = with_tree(ctx, &a.target, &a.tree, |p| Ok(p.delete_image(&url, a.tree.dry_run)?))?;
            let name = cargohold_publish::public_name(&url);
            if a.tree.out.json {
                return output::json(&json!({ "image": name, "deleted": deleted, "dry_run": a.tree.dry_run }));
            }
            match (deleted, a.tree.dry_run) {
                (false, _) => bail!("{name} is not published in {}", a.target.display()),
                (true, true) => output::line(format!("would delete {name}")),
                (true, false) => output::line(format!("deleted {name} (its data goes at the next gc)")),
            }
        }
        PublishCommand::PruneImages(a) => {
            let mut sources = a.wishlists.clone();
            let config = a.config.clone().or_else(|| {
                let default = std::path::PathBuf::from("ducc-prune.yaml");
                default.is_file().then_some(default)
            });
            if let Some(c) = &config {
                sources.extend(prune_config(c)?);
            }
            if sources.is_empty() {
                bail!("no wish lists: give them as arguments or in --config (wishlists: [...])");
            }
            let reg = ctx.registry_for(None)?;
            let mut lists = Vec::new();
            for src in &sources {
                let text = if src.starts_with("http://") || src.starts_with("https://") {
                    let mut body = reg.open_url(src).with_context(|| format!("could not download {src}"))?;
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::Read::take(&mut body, 16 << 20), &mut text)
                        .with_context(|| format!("could not read {src}"))?;
                    text
                } else if src.starts_with("git+") {
                    bail!("{src}: git wish list sources are not supported; give a file or an http(s) URL");
                } else {
                    std::fs::read_to_string(src).with_context(|| format!("could not read {src}"))?
                };
                lists.push(parse_wishlist(&text, src)?);
            }
            let outcomes = with_tree(ctx, &a.target, &a.tree, |p| {
                Ok(lists.iter().flat_map(|w| p.prune(w, a.tree.dry_run)).collect::<Vec<_>>())
            })?;
            let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
            if a.tree.out.json {
                output::json(&json!({ "dry_run": a.tree.dry_run, "images": outcomes }))?;
            } else {
                let verb = if a.tree.dry_run { "would delete" } else { "deleted" };
                for o in &outcomes {
                    match &o.error {
                        Some(e) => output::line(format!("{}: {e}", o.image))?,
                        None => output::line(format!("{verb} {}", o.image))?,
                    }
                }
                output::line(format!("{verb} {} images", outcomes.iter().filter(|o| o.deleted).count()))?;
            }
            if failed > 0 {
                bail!("{failed} wish list inputs could not be checked");
            }
            Ok(())
        }
        PublishCommand::ExpandWildcard(a) => {
            let reg = ctx.registry_for(None)?;
            let mut images = Vec::new();
            let mut failures = Vec::new();
            let inputs: Vec<(String, ImageUrl)> = match &a.image {
                Some(i) => vec![(i.clone(), ImageUrl::parse(i).with_context(|| format!("{i} is not an image"))?)],
                None => {
                    let mut v = Vec::new();
                    for f in &a.wishlist {
                        let w = read_wishlist(f)?;
                        for p in &w.problems {
                            failures.push(format!("{} line {}: {:?}: {}", f.display(), p.line, p.text, p.reason));
                        }
                        v.extend(w.inputs.into_iter().map(|i| (i.text, i.url)));
                    }
                    v
                }
            };
            for (text, url) in &inputs {
                match cargohold_publish::expand(&reg, url) {
                    Ok(found) if found.is_empty() => failures.push(format!("{text}: matches no tag")),
                    Ok(found) => images.extend(found.iter().map(ToString::to_string)),
                    Err(e) => failures.push(format!("{text}: {}", cargohold_publish::error_chain(&e))),
                }
            }
            // A plain tag is checked to exist (as DUCC does).
            if let Some(url) = inputs.first().map(|(_, u)| u).filter(|u| a.image.is_some() && !u.is_tag_pattern()) {
                let r = url.to_reference().map_err(anyhow::Error::msg)?;
                if let Err(e) = cargohold_image_core::ImageSource::top_manifest(&mut reg.source(&r)) {
                    failures.push(format!("{url}: {e}"));
                    images.clear();
                }
            }
            if let Some(out) = &a.output {
                let yaml = cargohold_publish::expanded_yaml(&images);
                cargohold_publish::write_atomic(out, yaml.as_bytes())
                    .with_context(|| format!("could not write {}", out.display()))?;
            } else if a.out.json {
                output::json(&json!({ "images": images, "failures": failures }))?;
            } else {
                for i in &images {
                    output::line(i)?;
                }
            }
            for f in &failures {
                let _ = writeln!(std::io::stderr(), "cargohold: {f}");
            }
            if !failures.is_empty() {
                bail!("{} inputs could not be expanded", failures.len());
            }
            Ok(())
        }
        PublishCommand::ConvertSingleImage(a) => {
            let url = ImageUrl::parse(&a.image).with_context(|| format!("{} is not an image", a.image))?;
            if url.is_tag_pattern() {
                bail!("{} is a tag pattern; use a wish list for patterns", a.image);
            }
            let repo = a.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let mut opts = a.opts.clone();
            // As DUCC: a thin image only with a name for it.
            let output_format = match &a.thin_image_name {
                Some(n) => n.clone(),
                None => {
                    opts.skip_thin_image = true;
                    DEFAULT_OUTPUT_FORMAT.into()
                }
            };
            let thin = ThinOptions { output_format, cvmfs_repo: repo };
            convert(ctx, &opts, &a.target, (&a.username, thin), None, |p| {
                let mut reports = p.convert_image_all(&url);
                for _ in 1..a.attempts {
                    if reports.iter().all(|r| r.status != Status::Failed) {
                        break;
                    }
                    reports = p.convert_image_all(&url);
                }
                reports
            })
        }
    }
}

/// The client publish reads images with: the stored credentials, and
/// DUCC's per-registry ones (`DUCC_AUTH_REGISTRIES=a,b` with
/// `DUCC_a_IDENT` the registry, `DUCC_a_USER`, `DUCC_a_PASS`).
fn input_registry(ctx: &Ctx) -> Result<cargohold_registry::Registry> {
    let mut opts = ctx.client_options()?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    for name in env("DUCC_AUTH_REGISTRIES").unwrap_or_default().split(',').filter(|n| !n.is_empty()) {
        if env(&format!("DUCC_{name}_PROXY")).is_some() {
            bail!("DUCC_{name}_PROXY: registry proxies are not supported; unset it");
        }
        let (Some(ident), Some(user), Some(pass)) =
            (env(&format!("DUCC_{name}_IDENT")), env(&format!("DUCC_{name}_USER")), env(&format!("DUCC_{name}_PASS")))
        else {
            bail!("DUCC_AUTH_REGISTRIES names {name}: set DUCC_{name}_IDENT, DUCC_{name}_USER and DUCC_{name}_PASS");
        };
        let host = ident.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
        opts.registry_credentials.push((host.to_owned(), cargohold_registry::Credentials::new(user, pass)));
    }
    Ok(cargohold_registry::Registry::new(opts)?)
}

/// `wishlists:` of a prune config (DUCC's ducc-prune.yaml).
fn prune_config(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    Ok(cargohold_publish::parse_prune_config(&text, &path.display().to_string())?)
}

/// Runs `work` with a publisher over the tree `target` names.
fn with_tree<T>(
    ctx: &Ctx,
    target: &std::path::Path,
    a: &PublishTreeArgs,
    work: impl FnOnce(&Publisher<'_>) -> Result<T>,
) -> Result<T> {
    if a.read_only_tree && a.backend != BackendKind::Local {
        bail!("--read-only-tree is for a local tree (a CernVM-FS repository is read-only by itself)");
    }
    if a.mountless && a.backend != BackendKind::Cvmfs {
        bail!("--mountless is for --backend cvmfs");
    }
    let backend: Box<dyn PublishBackend> = match a.backend {
        BackendKind::Local => {
            if !target.is_dir() {
                bail!("{} is not a publish tree (no such directory)", target.display());
            }
            Box::new(local_dir(target, a.read_only_tree)?)
        }
        BackendKind::Cvmfs => Box::new(CvmfsServer::new(&cvmfs_repo_of(target))?.mountless(mountless(a.mountless))),
    };
    let reg = ctx.registry_for(None)?;
    let opts = PublishOptions {
        lock_timeout: a.lock_timeout.map(std::time::Duration::from_secs),
        ..PublishOptions::default()
    };
    let publisher = Publisher::with_backend(backend, &reg, opts, a.notification_file.as_deref())
        .with_context(|| format!("could not open the publish tree {}", target.display()))?;
    work(&publisher).with_context(|| format!("in the publish tree {}", target.display()))
}

/// Whether to publish mountless: `--mountless`, or DUCC's
/// `CVMFS_DUCC_MOUNTLESS_PUBLISHING` set (to anything but empty).
fn mountless(flag: bool) -> bool {
    flag || std::env::var_os("CVMFS_DUCC_MOUNTLESS_PUBLISHING").is_some_and(|v| !v.is_empty())
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
    let reports = with_publisher(ctx, o, root, (user, thin), stop, |p| Ok(p.run(work)))?;
    render_reports(o, root, &reports)
}

/// The local tree at `root`: with `read_only`, served read-only to everyone
/// else (set up before any thread starts: before any registry client).
fn local_dir(root: &std::path::Path, read_only: bool) -> Result<LocalDir> {
    let dir = if read_only { LocalDir::read_only(root) } else { LocalDir::new(root) };
    dir.with_context(|| format!("could not open the publish tree {}", root.display()))
}

/// Runs `work` with a publisher of `root` as the options say.
fn with_publisher<T>(
    ctx: &Ctx,
    o: &PublishOpts,
    root: &std::path::Path,
    (user, thin): (&str, ThinOptions),
    stop: Option<&std::sync::atomic::AtomicBool>,
    work: impl FnOnce(&Publisher<'_>) -> Result<T>,
) -> Result<T> {
    if ctx.creds_given() {
        anyhow::bail!(
            "publish reads images from the registries its wish list names, each with its stored credentials \
             (cargohold login), not --creds"
        );
    }
    if o.read_only_tree && o.backend != BackendKind::Local {
        bail!("--read-only-tree is for a local tree (a CernVM-FS repository is read-only by itself)");
    }
    if o.cvmfs_layers.is_some() && o.backend != BackendKind::Cvmfs {
        bail!("--cvmfs-layers is for --backend cvmfs");
    }
    if o.mountless && o.backend != BackendKind::Cvmfs {
        bail!("--mountless is for --backend cvmfs");
    }
    let backend: Box<dyn PublishBackend> = match o.backend {
        BackendKind::Local => Box::new(local_dir(root, o.read_only_tree)?),
        BackendKind::Cvmfs => {
            let ingest = match o.cvmfs_layers.as_deref() {
                None | Some("ingest") => true,
                Some("transaction") => false,
                Some(other) => bail!("--cvmfs-layers {other}: use ingest or transaction"),
            };
            let mountless = mountless(o.mountless);
            if mountless && !ingest {
                bail!("--cvmfs-layers transaction: mountless publishing has no transactions (layers are ingested)");
            }
            Box::new(CvmfsServer::new(&cvmfs_repo_of(root))?.layers_by_ingest(ingest).mountless(mountless))
        }
    };
    let reg = input_registry(ctx)?;
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
        skip_podman: o.skip_podman,
        convert_again: o.convert_again,
        overwrite_layers: o.overwrite_layers,
        lock_timeout: o.lock_timeout.map(std::time::Duration::from_secs),
        platform: ctx.platform(o.platform.as_deref())?,
        multi_arch: o.multi_arch,
    };
    let quiet = ctx.is_quiet();
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
    work(&publisher)
}

fn render_reports(o: &PublishOpts, root: &std::path::Path, reports: &[ImageReport]) -> Result<()> {
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
                    r.error
                        .clone()
                        .or_else(|| r.damaged.then(|| "was changed since published: converted again".to_owned()))
                        .or_else(|| r.thin_image.as_ref().map(|t| format!("thin: {t}")))
                        .unwrap_or_default(),
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
