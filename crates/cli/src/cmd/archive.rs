//! `cargohold load` and `cargohold save`.

use anyhow::{Context, Result};
use cargohold_image_core::{ArchiveFormat, NoProgress, Reference};
use serde_json::json;

use super::Ctx;
use crate::cli::{Format, LoadArgs, SaveArgs};
use crate::output;

pub fn load(ctx: &Ctx, args: &LoadArgs) -> Result<()> {
    let name = args.name.as_deref().map(Reference::parse).transpose()?;
    let store = ctx.store()?;
    let given = args.file.as_ref().or(args.input.as_ref()).filter(|f| f.as_os_str() != "-");
    let url = given.and_then(|f| f.to_str()).filter(|f| f.starts_with("http://") || f.starts_with("https://"));
    let loaded = match given {
        Some(_) if url.is_some() => {
            let url = url.unwrap_or_default();
            let reg = ctx.registry_for(None)?;
            let mut body = reg.open_url(url).with_context(|| format!("could not download {url}"))?;
            store
                .load_archive_stream(&mut body, name.as_ref(), &NoProgress)
                .with_context(|| format!("could not load {url}"))?
        }
        Some(file) => store
            .load_archive(file, name.as_ref(), &NoProgress)
            .with_context(|| format!("could not load {}", file.display()))?,
        None => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "load reads the archive from standard input, which is a terminal: give a FILE or pipe it"
                );
            }
            store
                .load_archive_stream(&mut std::io::stdin().lock(), name.as_ref(), &NoProgress)
                .context("could not load the archive on standard input")?
        }
    };
    if args.out.json {
        return output::json(&json!({ "images": loaded }));
    }
    for img in &loaded {
        if img.names.is_empty() {
            output::line(format!("Loaded image ID: {}", img.id))?;
        }
        for n in &img.names {
            let familiar = Reference::parse(n).map(|r| r.familiar()).unwrap_or_else(|_| n.clone());
            output::line(format!("Loaded image: {familiar}"))?;
        }
    }
    Ok(())
}

pub fn save(ctx: &Ctx, args: &SaveArgs) -> Result<()> {
    let store = ctx.store()?;
    let format = match args.format {
        Format::Docker => ArchiveFormat::Docker,
        Format::Oci => ArchiveFormat::Oci,
    };
    let (path, to_stdout) = super::output_path(&args.output, args.out.json)?;
    let names = args.images.join(", ");
    let reports = store
        .save_many(&args.images, &path, format, &NoProgress)
        .with_context(|| format!("could not save {names} to {}", args.output.display()))
        .map_err(|e| super::closed_output(e, to_stdout))?;
    if args.out.json {
        if let [report] = reports.as_slice() {
            return output::json(
                &json!({ "image": names, "output": args.output, "digest": report.manifest.digest, "manifest": report.manifest }),
            );
        }
        let images: Vec<_> = args
            .images
            .iter()
            .zip(&reports)
            .map(|(i, r)| json!({ "image": i, "digest": r.manifest.digest, "manifest": r.manifest }))
            .collect();
        return output::json(&json!({ "images": images, "output": args.output }));
    }
    let digests: Vec<String> = reports.iter().map(|r| r.manifest.digest.to_string()).collect();
    let line = format!("saved {names} to {} ({})", args.output.display(), digests.join(", "));
    match (ctx_quiet(ctx), to_stdout) {
        (true, _) => Ok(()),
        (false, true) => {
            eprintln!("{line}");
            Ok(())
        }
        (false, false) => output::line(line),
    }
}

fn ctx_quiet(ctx: &Ctx) -> bool {
    ctx.quiet
}
