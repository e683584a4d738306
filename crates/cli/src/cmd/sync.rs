//! `cargohold sync`: many images between registries and OCI layouts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cargohold_image_core::{CopyOptions, ImageLocation, OciLayout, Reference};
use cargohold_registry::{SyncImage, SyncResult, TagSelection};
use serde_json::json;

use super::{Ctx, PerRegistry};
use crate::cli::{SyncArgs, SyncDest, SyncSource};
use crate::output;

/// A repository to read tags from.
struct Repo {
    registry: String,
    repository: String,
    tags: TagSelection,
}

pub fn run(ctx: &Ctx, args: &SyncArgs) -> Result<ExitCode> {
    if ctx.creds_given() {
        bail!("sync talks to two registries: give --src-creds and --dest-creds instead of --creds");
    }
    let globs = (!args.tags.is_empty()).then(|| TagSelection::Globs(args.tags.clone()));
    // The destination: a registry prefix or a directory.
    let dest_prefix = match args.dest {
        SyncDest::Docker => {
            let probe = Reference::parse(&format!("{}/x", args.destination.trim_end_matches('/')))
                .with_context(|| format!("{} is not a registry[/namespace] to sync into", args.destination))?;
            if !args.destination.starts_with(probe.registry()) {
                bail!("{} names no registry (REGISTRY[/NAMESPACE], e.g. localhost:5000/mirror)", args.destination);
            }
            Some((probe.registry().to_owned(), args.destination.trim_end_matches('/').to_owned()))
        }
        SyncDest::Oci | SyncDest::Dir => None,
    };
    let mut named = PerRegistry::default();
    let t = &args.side;
    let src_creds = t.src_creds(args.src_creds.as_deref())?;
    let dest_creds = t.dest_creds(args.dest_creds.as_deref())?;
    let mut repos: Vec<Repo> = Vec::new();
    let mut layouts: Vec<(PathBuf, Vec<String>)> = Vec::new();
    // `dir:` images: (directory, name, tag).
    let mut dirs: Vec<(PathBuf, String, String)> = Vec::new();
    match args.src {
        SyncSource::Docker => {
            let r = Reference::parse(&args.source)?;
            let tags = match (r.tag(), r.digest()) {
                (_, Some(d)) if globs.is_none() => TagSelection::List(vec![d.to_string()]),
                (Some(t), None) if globs.is_none() => TagSelection::List(vec![t.to_owned()]),
                (None, None) => globs.clone().unwrap_or(TagSelection::All),
                _ => bail!("{} names one image already: drop --tag, or name the repository", args.source),
            };
            if let Some((_, c)) = src_creds {
                named.creds.push((r.registry().to_owned(), c));
            }
            ctx.side_options(&mut named, r.registry(), &t.src())?;
            repos.push(Repo { registry: r.registry().to_owned(), repository: r.repository().to_owned(), tags });
        }
        SyncSource::Yaml => {
            // --src-authfile: for the registries whose credentials the file does not give, as skopeo's.
            let side = crate::cli::OneSide { authfile: None, ..t.src() };
            if src_creds.is_some() || globs.is_some() || side.option().is_some() {
                bail!(
                    "with --src yaml, credentials, TLS settings and tags come from the YAML file (--src-creds, \
                     --src-no-creds, --src-registry-token, --src-tls-verify, --src-cert-dir and --tag are for a \
                     repository)"
                );
            }
            let text = std::fs::read_to_string(&args.source).with_context(|| format!("cannot read {}", args.source))?;
            for reg in cargohold_registry::parse_sync_yaml(&text, &args.source)? {
                match reg.credentials {
                    Some(c) => named.creds.push((reg.registry.clone(), c)),
                    None => ctx.side_options(
                        &mut named,
                        &reg.registry,
                        &crate::cli::OneSide {
                            authfile: t.src_authfile.as_deref(),
                            ..crate::cli::OneSide::none("src")
                        },
                    )?,
                }
                if !reg.tls_verify {
                    named.insecure.push(reg.registry.clone());
                }
                if let Some(dir) = reg.cert_dir {
                    named.cert_dirs.push((reg.registry.clone(), dir));
                }
                for (repository, tags) in reg.images {
                    repos.push(Repo { registry: reg.registry.clone(), repository, tags });
                }
            }
        }
        SyncSource::Dir => {
            if let Some(option) = src_creds.as_ref().map(|(o, _)| (*o).to_owned()).or(t.src().option()) {
                bail!("{option} is for a registry source, and {} is a directory", args.source);
            }
            let root = PathBuf::from(&args.source);
            for (dir, name, tag) in dir_images(&root)? {
                if globs.as_ref().is_none_or(|g| !g.select(std::slice::from_ref(&tag)).unwrap_or_default().is_empty()) {
                    dirs.push((dir, name, tag));
                }
            }
        }
        SyncSource::Oci => {
            if let Some(option) = src_creds.as_ref().map(|(o, _)| (*o).to_owned()).or(t.src().option()) {
                bail!("{option} is for a registry source, and {} is an OCI layout", args.source);
            }
            let dir = PathBuf::from(&args.source);
            let layout = OciLayout::open(&dir).with_context(|| format!("{} is not an OCI layout", dir.display()))?;
            let all: Vec<String> = layout
                .index()?
                .manifests
                .iter()
                .filter_map(|m| m.annotations.as_ref()?.get("org.opencontainers.image.ref.name").cloned())
                .collect();
            let tags = globs.clone().unwrap_or(TagSelection::All).select(&all).map_err(anyhow::Error::msg)?;
            layouts.push((dir, tags));
        }
    }
    match (dest_creds, &dest_prefix) {
        (Some((_, c)), Some((registry, _))) => {
            if named.creds.iter().any(|(r, given)| r == registry && given.username != c.username) {
                bail!(
                    "the source's and the destination's credentials name different users of the same registry {registry}"
                );
            }
            named.creds.push((registry.clone(), c));
        }
        (Some((option, _)), None) => {
            bail!("{option} is for a registry destination, and {} is a directory", args.destination)
        }
        (None, _) => {}
    }
    match &dest_prefix {
        Some((registry, _)) => {
            ctx.side_options(&mut named, registry, &t.dest())?;
        }
        None => {
            if let Some(option) = t.dest().option() {
                bail!("{option} is for a registry destination, and {} is a directory", args.destination);
            }
        }
    }
    let reg = ctx.registry_with(named)?;
    let store = ctx.store()?;

    // Every image: source, destination.
    let destination = |name: &str, tag: &str| -> Result<ImageLocation> {
        let sep = if tag.contains(':') { '@' } else { ':' };
        Ok(match &dest_prefix {
            Some((_, prefix)) => ImageLocation::Docker(format!("{prefix}/{name}{sep}{tag}")),
            None if sep == '@' => bail!("{name}@{tag}: a directory destination needs tags, not digests"),
            None if args.dest == SyncDest::Dir => {
                ImageLocation::Dir(PathBuf::from(&args.destination).join(format!("{name}:{tag}")))
            }
            None => ImageLocation::Oci { path: PathBuf::from(&args.destination).join(name), tag: Some(tag.to_owned()) },
        })
    };
    let mut images = Vec::new();
    for repo in &repos {
        let r = Reference::from_parts(&repo.registry, &repo.repository, None, None)?;
        let tags = match &repo.tags {
            TagSelection::List(t) => t.clone(),
            sel => {
                let all = reg.tags(&r).with_context(|| format!("could not list the tags of {}", r.name()))?;
                sel.select(&all).map_err(anyhow::Error::msg)?
            }
        };
        let name = if args.scoped {
            r.name()
        } else {
            repo.repository.rsplit('/').next().unwrap_or(&repo.repository).to_owned()
        };
        for tag in tags {
            let sep = if tag.contains(':') { '@' } else { ':' };
            images.push(SyncImage {
                source: ImageLocation::Docker(format!("{}{sep}{tag}", r.name())),
                destination: destination(&name, &tag)?,
            });
        }
    }
    for (dir, tags) in &layouts {
        let base = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        let name = base.file_name().and_then(|n| n.to_str()).unwrap_or("image").to_owned();
        let name = if args.scoped { base.to_string_lossy().trim_start_matches('/').to_owned() } else { name };
        for tag in tags {
            images.push(SyncImage {
                source: ImageLocation::Oci { path: dir.clone(), tag: Some(tag.clone()) },
                destination: destination(&name, tag)?,
            });
        }
    }
    for (dir, name, tag) in &dirs {
        images.push(SyncImage { source: ImageLocation::Dir(dir.clone()), destination: destination(name, tag)? });
    }
    if args.dry_run {
        if args.out.json {
            let list: Vec<_> = images
                .iter()
                .map(|i| json!({ "source": i.source.to_string(), "destination": i.destination.to_string() }))
                .collect();
            output::json(&json!({ "images": list }))?;
        } else {
            for i in &images {
                output::line(format!("would sync {} -> {}", i.source, i.destination))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = CopyOptions {
        platform: ctx.platform(args.platform.as_deref())?,
        all_platforms: args.all,
        format: args.format.get(),
        preserve_digests: args.preserve_digests,
        // An image held recompressed could not be found up to date.
        compression: None,
        additional_tags: Vec::new(),
    };
    let quiet = ctx.is_quiet() || args.out.json;
    let progress = |o: &cargohold_registry::SyncOutcome| {
        // Failures always reach standard error; progress only without -q/--json.
        if quiet && o.result.is_ok() {
            return;
        }
        let line = match &o.result {
            Ok(SyncResult::UpToDate(d)) => format!("up to date {} ({d})", o.image.destination),
            Ok(SyncResult::Copied(r)) => format!(
                "synced {} -> {} ({}; {} blobs copied, {} mounted, {} already present)",
                o.image.source,
                o.image.destination,
                r.manifest.digest,
                r.blobs_copied,
                r.blobs_mounted,
                r.blobs_skipped
            ),
            Err(e) => format!("failed {} -> {}: {}", o.image.source, o.image.destination, output::chain(e)),
        };
        output::status(&line);
    };
    let outcomes = cargohold_registry::sync(&reg, &store, &images, &opts, args.jobs.max(1), &progress);
    let (mut copied, mut current, mut failed) = (0, 0, 0);
    let mut rows = Vec::new();
    for o in &outcomes {
        let (source, destination) = (o.image.source.to_string(), o.image.destination.to_string());
        rows.push(match &o.result {
            Ok(SyncResult::UpToDate(d)) => {
                current += 1;
                json!({ "source": source, "destination": destination, "status": "up-to-date", "digest": d })
            }
            Ok(SyncResult::Copied(r)) => {
                copied += 1;
                json!({ "source": source, "destination": destination, "status": "copied",
                        "digest": r.manifest.digest, "blobs_copied": r.blobs_copied,
                        "blobs_mounted": r.blobs_mounted, "blobs_skipped": r.blobs_skipped, "bytes": r.bytes_copied })
            }
            Err(e) => {
                failed += 1;
                json!({ "source": source, "destination": destination, "status": "failed", "error": output::chain(e) })
            }
        });
    }
    if args.out.json {
        output::json(&json!({ "images": rows, "copied": copied, "up_to_date": current, "failed": failed }))?;
    } else {
        output::line(format!("{copied} copied, {current} up to date, {failed} failed"))?;
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The `dir:` images at or below `root` (skopeo sync's `--src dir`): a
/// directory with a `version` file is an image, named by its path below
/// `root` (`team/app:1` is repository `team/app`, tag `1`; no tag is
/// `latest`); `root` itself by its own name. Symbolic links are not
/// followed; the walk stops 16 levels down.
fn dir_images(root: &std::path::Path) -> Result<Vec<(PathBuf, String, String)>> {
    fn name_tag(rel: &str) -> (String, String) {
        let (dir, last) = rel.rsplit_once('/').map_or(("", rel), |(d, l)| (d, l));
        let (repo, tag) = last.rsplit_once(':').map_or((last, "latest"), |(r, t)| (r, t));
        let name = if dir.is_empty() { repo.to_owned() } else { format!("{dir}/{repo}") };
        (name, tag.to_owned())
    }
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        depth: usize,
        out: &mut Vec<(PathBuf, String, String)>,
    ) -> Result<()> {
        if dir.join("version").is_file() {
            let rel = dir.strip_prefix(root).unwrap_or(dir).to_string_lossy().into_owned();
            let (name, tag) = name_tag(&rel);
            out.push((dir.to_path_buf(), name, tag));
            return Ok(());
        }
        if depth == 0 {
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot read {}", dir.display()))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            if e.file_type().with_context(|| format!("cannot stat {}", e.path().display()))?.is_dir() {
                walk(root, &e.path(), depth - 1, out)?;
            }
        }
        Ok(())
    }
    if root.join("version").is_file() {
        let base = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let last = base.file_name().and_then(|n| n.to_str()).unwrap_or("image");
        let (name, tag) = name_tag(last);
        return Ok(vec![(root.to_path_buf(), name, tag)]);
    }
    let mut out = Vec::new();
    walk(root, root, 16, &mut out)?;
    if out.is_empty() {
        bail!("{} holds no dir: image (a directory with a version file, as skopeo writes them)", root.display());
    }
    Ok(out)
}
