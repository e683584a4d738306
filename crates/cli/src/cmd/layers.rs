//! `export`, `import`, `diff` and `commit`: moving between trees, tars and images.

use anyhow::{Context, Result, bail};
use cargohold_builder::run::{commit_container, container_changes, containers, export_container};
use cargohold_image_core::media_type::Compression;
use cargohold_image_core::{History, ImageConfig, ImageLocation, Platform, Reference, creation_time, format_rfc3339};
use cargohold_layerfs::{
    ApplyOptions, UnpackOptions, WriteOptions, archive_tree, diff_trees, store_layer_from, unpack, write_layer_file,
};
use serde_json::json;

use super::Ctx;
use crate::cli::{CommitArgs, DiffArgs, ExportArgs, ImportArgs};
use crate::output;

pub fn export(ctx: &Ctx, args: &ExportArgs) -> Result<()> {
    let store = ctx.store()?;
    let (path, to_stdout) = super::output_path(&args.output, args.out.json)?;
    let status = |line: String| -> Result<()> {
        if to_stdout {
            eprintln!("{line}");
            Ok(())
        } else {
            output::line(line)
        }
    };
    if let Ok(c) = containers(&store).find(&args.image) {
        let entries = {
            let out = cargohold_image_core::Output::create(&path)
                .with_context(|| format!("could not create {}", args.output.display()))?;
            let mut w = std::io::BufWriter::new(out.file());
            let n = export_container(&c, &mut w, super::source_date_epoch())
                .with_context(|| format!("could not export container {}", args.image))
                .map_err(|e| super::closed_output(e, to_stdout))?;
            std::io::Write::flush(&mut w)
                .with_context(|| format!("could not write {}", args.output.display()))
                .map_err(|e| super::closed_output(e, to_stdout))?;
            drop(w);
            out.finish().with_context(|| format!("could not write {}", args.output.display()))?;
            n
        };
        if args.out.json {
            return output::json(&json!({ "container": c.id(), "output": args.output, "entries": entries }));
        }
        return status(format!(
            "exported container {} to {} ({entries} entries)",
            c.config.name,
            args.output.display()
        ));
    }
    let loc = ImageLocation::parse(&args.image)?;
    let mut src = cargohold_registry::open_source(&loc, &store, &ctx.registry_for_locations(&[&loc])?)?;
    // Scratch on the output's filesystem (a temp directory for stdout).
    let temp = std::env::temp_dir();
    let dir = match args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        _ if to_stdout => temp.as_path(),
        Some(p) => p,
        None => std::path::Path::new("."),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".cargohold-export-")
        .tempdir_in(dir)
        .context("could not create a scratch directory")?;
    let rootfs = scratch.path().join("rootfs");
    unpack(src.as_mut(), &rootfs, &UnpackOptions { apply: ApplyOptions::for_current_user(), platform: None })
        .with_context(|| format!("could not unpack {}", args.image))?;
    let mut entries = 0;
    let (diff_id, _) = write_layer_file(&path, |w| {
        entries = archive_tree(&rootfs, w, &WriteOptions { clamp_mtime: super::source_date_epoch() })?.1;
        Ok(())
    })
    .with_context(|| format!("could not write {}", args.output.display()))
    .map_err(|e| super::closed_output(e, to_stdout))?;
    if args.out.json {
        return output::json(
            &json!({ "image": args.image, "output": args.output, "entries": entries, "diff_id": diff_id }),
        );
    }
    status(format!("exported {} to {} ({entries} entries)", args.image, args.output.display()))
}

fn new_config(changes: &[String]) -> Result<ImageConfig> {
    let host = Platform::host();
    let mut config = ImageConfig {
        created: Some(format_rfc3339(creation_time(super::source_date_epoch()))),
        architecture: host.architecture,
        os: host.os,
        variant: host.variant.filter(|_| false),
        ..ImageConfig::default()
    };
    for c in changes {
        config.apply_change(c)?;
    }
    Ok(config)
}

fn history(created_by: String, comment: Option<&String>) -> History {
    History {
        created: Some(format_rfc3339(creation_time(super::source_date_epoch()))),
        created_by: Some(created_by),
        comment: comment.cloned(),
        ..History::default()
    }
}

pub fn import(ctx: &Ctx, args: &ImportArgs) -> Result<()> {
    let name = Reference::parse(&args.name)?;
    let config = new_config(&args.changes)?;
    let store = ctx.store()?;
    let _guard = store.layout().write_guard()?;
    // One importer with stage: plain, gzip, zstd or xz, refused unless it
    // is a tar, before anything is named.
    let url = args.file.to_str().filter(|f| f.starts_with("http://") || f.starts_with("https://"));
    let layer = if args.file.as_os_str() == "-" {
        cargohold_builder::stage::import_tarball_stream(&store, &mut std::io::stdin().lock())
            .context("could not import the tarball on standard input")?
    } else if let Some(url) = url {
        let reg = ctx.registry_for(None)?;
        let mut body = reg.open_url(url).with_context(|| format!("could not download {url}"))?;
        cargohold_builder::stage::import_tarball_stream(&store, &mut body)
            .with_context(|| format!("could not import {url}"))?
    } else {
        cargohold_builder::stage::import_tarball(&store, &args.file)
            .with_context(|| format!("could not import {}", args.file.display()))?
    };
    let created_by = format!("cargohold import {}", args.file.display());
    let desc = store.commit_image(
        None,
        std::slice::from_ref(&layer),
        config,
        history(created_by, args.message.as_ref()),
        Some(&name),
    )?;
    report(args.out.json, &name, &desc.digest, &layer)
}

fn report(
    json_out: bool,
    name: &Reference,
    digest: &cargohold_image_core::Digest,
    layer: &cargohold_image_core::NewLayer,
) -> Result<()> {
    if json_out {
        return output::json(&json!({
            "name": name.pull_reference().canonical(),
            "digest": digest,
            "layer": layer.descriptor.digest,
            "diff_id": layer.diff_id,
            "layer_size": layer.descriptor.size,
        }));
    }
    output::line(format!("{} {}", name.pull_reference().familiar(), digest))
}

pub fn diff(ctx: &Ctx, args: &DiffArgs) -> Result<()> {
    let (Some(upper), Some(output)) = (&args.upper, &args.output) else {
        if args.upper.is_some() || args.output.is_some() {
            bail!("diff takes a container, or two trees and -o LAYER");
        }
        let what = args.lower.to_string_lossy();
        let store = ctx.store()?;
        let c = containers(&store)
            .find(&what)
            .with_context(|| format!("{what}: not a container (diff two trees with: diff BEFORE AFTER -o LAYER)"))?;
        let changes = container_changes(&c)?;
        if args.out.json {
            let list: Vec<_> = changes.iter().map(|(k, p)| json!({ "Kind": k.to_string(), "Path": p })).collect();
            return output::json(&list);
        }
        return changes.iter().try_for_each(|(k, p)| output::line(format!("{k} {p}")));
    };
    let args = &TwoTrees { lower: &args.lower, upper, output, json: args.out.json };
    for d in [args.lower, args.upper] {
        if !d.is_dir() {
            bail!("{} is not a directory", d.display());
        }
    }
    let mut report = None;
    let (diff_id, digest) = write_layer_file(args.output, |w| {
        report =
            Some(diff_trees(args.lower, args.upper, w, &WriteOptions { clamp_mtime: super::source_date_epoch() })?.1);
        Ok(())
    })
    .with_context(|| format!("could not write {}", args.output.display()))?;
    let r = report.expect("the diff ran");
    if args.json {
        return output::json(&json!({
            "output": args.output, "changed": r.changed, "deleted": r.deleted, "opaque": r.opaque,
            "diff_id": diff_id, "digest": digest,
        }));
    }
    output::line(format!(
        "wrote {}: {} changed, {} deleted, {} opaque directories ({})",
        args.output.display(),
        r.changed,
        r.deleted,
        r.opaque,
        diff_id
    ))
}

pub fn commit(ctx: &Ctx, args: &CommitArgs) -> Result<()> {
    let name = Reference::parse(&args.name)?;
    let store = ctx.store()?;
    let Some(base) = &args.base else {
        let what = args.dir.to_string_lossy();
        let c = containers(&store)
            .find(&what)
            .with_context(|| format!("{what}: not a container (give --base IMAGE to commit a directory)"))?;
        let desc =
            commit_container(&store, &c, &name, &args.changes, args.message.clone(), super::source_date_epoch())?;
        if args.out.json {
            return output::json(&json!({ "digest": desc.digest, "name": name.familiar(), "container": c.id() }));
        }
        return output::line(format!("committed {} as {} {}", c.config.name, name.familiar(), desc.digest));
    };
    let base_name = base;
    if !args.dir.is_dir() {
        bail!("{} is not a directory", args.dir.display());
    }
    let _guard = store.layout().write_guard()?;
    let base_img = store.resolve(base_name)?;
    let base = store.details(&base_img.descriptor, None)?;
    let scratch = tempfile::Builder::new()
        .prefix(".cargohold-commit-")
        .tempdir()
        .context("could not create a scratch directory")?;
    let lower = scratch.path().join("base");
    let mut src = store.source(base_name)?;
    unpack(&mut src, &lower, &UnpackOptions { apply: ApplyOptions::for_current_user(), platform: None })
        .with_context(|| format!("could not unpack the base image {base_name}"))?;
    let layer = store_layer_from(store.layout(), Compression::Gzip, |w| {
        diff_trees(&lower, &args.dir, w, &WriteOptions { clamp_mtime: super::source_date_epoch() }).map(|_| ())
    })
    .with_context(|| format!("could not diff {} against {base_name}", args.dir.display()))?;
    let mut config = base.config.clone();
    config.created = Some(format_rfc3339(creation_time(super::source_date_epoch())));
    for c in &args.changes {
        config.apply_change(c)?;
    }
    let created_by = format!("cargohold commit {}", args.dir.display());
    let desc = store.commit_image(
        Some(&base),
        std::slice::from_ref(&layer),
        config,
        history(created_by, args.message.as_ref()),
        Some(&name),
    )?;
    report(args.out.json, &name, &desc.digest, &layer)
}

/// `diff BEFORE AFTER -o LAYER`'s arguments.
struct TwoTrees<'a> {
    lower: &'a std::path::Path,
    upper: &'a std::path::Path,
    output: &'a std::path::Path,
    json: bool,
}
