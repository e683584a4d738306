//! `cargohold inspect`: manifest and config of an image anywhere.

use anyhow::{Context, Result};
use cargohold_image_core::{ImageLocation, resolve_image};
use serde::Serialize;

use super::Ctx;
use crate::cli::InspectArgs;
use crate::output;

#[derive(Serialize)]
struct Layer<'a> {
    digest: &'a str,
    size: u64,
    media_type: &'a str,
}

#[derive(Serialize)]
struct InspectJson<'a> {
    name: &'a str,
    digest: &'a str,
    /// A registry image's repository's tags (skopeo's `RepoTags`); a store
    /// image's names (podman's); none elsewhere.
    repo_tags: Vec<String>,
    media_type: &'a str,
    manifest_digest: &'a str,
    id: &'a str,
    created: Option<&'a str>,
    architecture: &'a str,
    os: &'a str,
    variant: Option<&'a str>,
    author: Option<&'a str>,
    env: Vec<String>,
    entrypoint: Option<&'a [String]>,
    cmd: Option<&'a [String]>,
    working_dir: Option<&'a str>,
    user: Option<&'a str>,
    labels: serde_json::Value,
    exposed_ports: Vec<&'a str>,
    layers: Vec<Layer<'a>>,
    diff_ids: Vec<&'a str>,
    size: u64,
    history: &'a [cargohold_image_core::History],
}

pub fn run(ctx: &Ctx, args: &InspectArgs) -> Result<()> {
    let store = ctx.store()?;
    // A container by that ID, prefix or name comes first, as with Docker.
    if !args.raw
        && !args.config
        && let Ok(c) = cargohold_builder::run::containers(&store).find(&args.image)
    {
        let doc = serde_json::json!({ "Id": c.config.id, "Name": c.config.name, "Config": c.config,
                                      "State": c.state()?, "Path": c.dir });
        return match &args.format {
            Some(t) => output::templated(t, &doc),
            None => output::json(&doc),
        };
    }
    let loc = ImageLocation::parse(&args.image)?;
    super::daemon_host_for(args.daemon_host.as_ref(), &loc, "--daemon-host")?;
    let reg = match &args.daemon_host {
        Some(host) => {
            ctx.registry_with(super::PerRegistry { src_daemon_host: Some(host.clone()), ..Default::default() })?
        }
        None => ctx.registry_for_locations(&[&loc])?,
    };
    let mut src = cargohold_registry::open_source(&loc, &store, &reg)?;
    let want = ctx.platform(args.platform.as_deref())?;
    let img =
        resolve_image(src.as_mut(), want.as_ref()).with_context(|| format!("could not inspect {}", args.image))?;
    if args.raw || args.config {
        let bytes = if args.raw { &img.top.bytes } else { &img.config_bytes };
        return output::raw(bytes);
    }
    let repo_tags = match &loc {
        ImageLocation::Docker(r) if !args.no_tags => {
            let r = cargohold_image_core::Reference::parse(r)?;
            reg.tags(&r).with_context(|| format!("could not list the tags of {}", r.name()))?
        }
        ImageLocation::Store(_) => store
            .list()?
            .into_iter()
            .filter(|i| i.descriptor.digest == img.top.digest)
            .filter_map(|i| i.name.map(|n| n.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    let cc = img.config.config.clone().unwrap_or_default();
    let doc = InspectJson {
        name: &args.image,
        digest: img.top.digest.as_str(),
        repo_tags,
        media_type: &img.top.media_type,
        manifest_digest: img.manifest.digest.as_str(),
        id: img.image.config.digest.as_str(),
        created: img.config.created.as_deref(),
        architecture: &img.config.architecture,
        os: &img.config.os,
        variant: img.config.variant.as_deref(),
        author: img.config.author.as_deref(),
        env: cc.env.clone().unwrap_or_default(),
        entrypoint: cc.entrypoint.as_deref(),
        cmd: cc.cmd.as_deref(),
        working_dir: cc.working_dir.as_deref().filter(|w| !w.is_empty()),
        user: cc.user.as_deref().filter(|u| !u.is_empty()),
        labels: serde_json::to_value(cc.labels.clone().unwrap_or_default()).context("labels")?,
        exposed_ports: cc.exposed_ports.as_ref().map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default(),
        layers: img
            .image
            .layers
            .iter()
            .map(|l| Layer { digest: l.digest.as_str(), size: l.size, media_type: &l.media_type })
            .collect(),
        diff_ids: img.config.rootfs.diff_ids.iter().map(|d| d.as_str()).collect(),
        size: img.size(),
        history: &img.config.history,
    };
    if let Some(t) = &args.format {
        return output::templated(t, &doc);
    }
    if args.out.json {
        return output::json(&doc);
    }
    output::line(format!("Name:         {}", doc.name))?;
    output::line(format!("Digest:       {}", doc.digest))?;
    if !doc.repo_tags.is_empty() {
        output::line(format!("Tags:         {}", doc.repo_tags.join(", ")))?;
    }
    output::line(format!("Media type:   {}", doc.media_type))?;
    output::line(format!("Image ID:     {}", doc.id))?;
    output::line(format!("Created:      {}", doc.created.unwrap_or("(unknown)")))?;
    let variant = doc.variant.map(|v| format!("/{v}")).unwrap_or_default();
    output::line(format!("Platform:     {}/{}{variant}", doc.os, doc.architecture))?;
    if let Some(e) = doc.entrypoint {
        output::line(format!("Entrypoint:   {e:?}"))?;
    }
    if let Some(c) = doc.cmd {
        output::line(format!("Cmd:          {c:?}"))?;
    }
    for e in &doc.env {
        output::line(format!("Env:          {e}"))?;
    }
    output::line(format!("Size:         {}", output::human_size(doc.size)))?;
    output::line(format!("Layers:       {}", doc.layers.len()))?;
    for l in &doc.layers {
        output::line(format!("  {}  {:>10}  {}", l.digest, output::human_size(l.size), l.media_type))?;
    }
    Ok(())
}
