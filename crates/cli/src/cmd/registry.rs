//! Registry commands: pull, push, tags, catalog, delete, digest, referrers,
//! login and logout.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context, Result, bail};
use cargohold_image_core::{CopyOptions, ImageLocation, ImageSource, Reference, resolve_image};
use cargohold_registry::{Credentials, Registry};
use serde_json::json;

use super::Ctx;
use crate::cli::{
    CatalogArgs, DeleteArgs, DigestArgs, LoginArgs, LogoutArgs, PullArgs, PushArgs, ReferrersArgs, TagsArgs,
};
use crate::output;

pub fn pull(ctx: &Ctx, args: &PullArgs) -> Result<()> {
    let r = ctx.remote_reference(&args.reference)?;
    let reg = ctx.registry_for(Some(r.registry()))?;
    let store = ctx.store()?;
    let opts = CopyOptions {
        platform: ctx.platform(args.platform.as_deref())?,
        all_platforms: args.all_platforms,
        ..CopyOptions::default()
    };
    let bars = ctx.progress();
    let report = cargohold_registry::pull(&reg, &r, &store, &opts, args.jobs, &bars)
        .with_context(|| format!("could not pull {}", args.reference))?;
    drop(bars);
    if args.out.json {
        return output::json(
            &json!({ "reference": r.pull_reference().canonical(), "digest": report.manifest.digest, "report": report }),
        );
    }
    output::line(format!(
        "pulled {} ({}; {} blobs fetched, {} already present)",
        r.pull_reference().familiar(),
        report.manifest.digest,
        report.blobs_copied,
        report.blobs_skipped
    ))
}

pub fn push(ctx: &Ctx, args: &PushArgs) -> Result<()> {
    let store = ctx.store()?;
    let img = store.resolve(&args.image)?;
    let target = match (&args.reference, &img.name) {
        (Some(r), _) => Reference::parse(r)?,
        (None, Some(n)) => n.clone(),
        (None, None) => bail!("{} has no name to push to; give a target reference", args.image),
    };
    let reg = ctx.registry_for(Some(target.registry()))?;
    let src = store.source(&args.image)?;
    let bars = ctx.progress();
    // The image as the store has it: an index with every platform it holds.
    let opts = CopyOptions {
        platform: None,
        all_platforms: true,
        format: args.format.get(),
        compression: super::recompress(args.compression_format, args.compression_level, None),
        ..CopyOptions::default()
    };
    let report = cargohold_registry::push(&reg, &src, &target, &opts, args.jobs, &bars)
        .with_context(|| format!("could not push {} to {}", args.image, target))?;
    drop(bars);
    if let Some(f) = &args.digestfile {
        super::write_output_file(f, report.manifest.digest.as_str(), "the digest")?;
    }
    if args.out.json {
        return output::json(
            &json!({ "reference": target.pull_reference().canonical(), "digest": report.manifest.digest, "report": report }),
        );
    }
    output::line(format!(
        "pushed {} ({}; {} blobs sent, {} mounted, {} already there)",
        target.pull_reference().familiar(),
        report.manifest.digest,
        report.blobs_copied,
        report.blobs_mounted,
        report.blobs_skipped
    ))
}

pub fn tags(ctx: &Ctx, args: &TagsArgs) -> Result<()> {
    let r = Reference::parse(&args.repository)?;
    let reg = ctx.registry_for(Some(r.registry()))?;
    let tags = reg.tags(&r).with_context(|| format!("could not list the tags of {}", r.name()))?;
    if args.out.json {
        return output::json(&json!({ "repository": r.name(), "tags": tags }));
    }
    for t in tags {
        output::line(t)?;
    }
    Ok(())
}

/// `host[:port]` from what a user may type (`https://host/v1/`, `index.docker.io`).
fn registry_name(input: &str) -> Result<String> {
    let host = input.trim().trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
        bail!("{input:?} is not a registry host name (HOST[:PORT])");
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_owned(),
    })
}

pub fn catalog(ctx: &Ctx, args: &CatalogArgs) -> Result<()> {
    let registry = registry_name(&args.registry)?;
    let reg = ctx.registry_for(Some(&registry))?;
    let repos = reg
        .block_on(reg.client().catalog(&registry))
        .with_context(|| format!("could not list the repositories of {registry}"))?;
    if args.out.json {
        return output::json(&json!({ "registry": registry, "repositories": repos }));
    }
    for r in repos {
        output::line(r)?;
    }
    Ok(())
}

/// The digest `r` names: its own, or what its tag points at.
fn resolve_digest(reg: &Registry, r: &Reference) -> Result<cargohold_image_core::Digest> {
    if let Some(d) = r.digest() {
        return Ok(d.clone());
    }
    let r = &reg.resolve(r)?;
    let tag = r.tag().unwrap_or("latest");
    reg.block_on(reg.client().head_manifest(r.registry(), r.repository(), tag))
        .with_context(|| format!("could not look up {r}"))?
        .map(|d| d.digest)
        .with_context(|| format!("{} has no tag {tag}", r.name()))
}

pub fn delete(ctx: &Ctx, args: &DeleteArgs) -> Result<()> {
    let r = Reference::parse(&args.reference)?;
    let reg = ctx.registry_for(Some(r.registry()))?;
    let r = reg.resolve(&r)?;
    let client = reg.client();
    let (what, target) = if args.blob {
        let d = r.digest().with_context(|| format!("{} names no blob digest (REPO@sha256:...)", args.reference))?;
        reg.block_on(client.delete_blob(r.registry(), r.repository(), d))
            .with_context(|| format!("could not delete blob {d} of {}", r.name()))?;
        ("blob", d.to_string())
    } else if args.tag_only {
        let tag = r.tag().with_context(|| format!("{} has no tag", args.reference))?;
        reg.block_on(client.delete_manifest(r.registry(), r.repository(), tag))
            .with_context(|| format!("could not delete tag {tag} of {}", r.name()))?;
        ("tag", tag.to_owned())
    } else {
        let d = resolve_digest(&reg, &r)?;
        reg.block_on(client.delete_manifest(r.registry(), r.repository(), d.as_str()))
            .with_context(|| format!("could not delete manifest {d} of {}", r.name()))?;
        ("manifest", d.to_string())
    };
    if args.out.json {
        return output::json(&json!({ "repository": r.name(), "deleted": what, "target": target }));
    }
    output::line(format!("deleted {what} {target} of {}", r.name()))
}

pub fn digest(ctx: &Ctx, args: &DigestArgs) -> Result<()> {
    let plat = ctx.platform(args.platform.as_deref())?;
    let loc = match ImageLocation::parse(&args.reference)? {
        ImageLocation::Store(name) => ImageLocation::Docker(name),
        other => other,
    };
    let reg = ctx.registry_for_locations(&[&loc])?;
    let digest = match (&loc, &plat) {
        (ImageLocation::Docker(name), None) => resolve_digest(&reg, &Reference::parse(name)?)?,
        _ => {
            let store = ctx.store()?;
            let mut src = cargohold_registry::open_source(&loc, &store, &reg)?;
            let found = match &plat {
                Some(p) => resolve_image(src.as_mut(), Some(p)).map(|i| i.manifest.digest),
                None => src.top_manifest().map(|m| m.digest),
            };
            found.with_context(|| format!("could not read the manifest of {}", args.reference))?
        }
    };
    if args.out.json {
        return output::json(&json!({ "reference": args.reference, "digest": digest }));
    }
    output::line(digest.as_str())
}

pub fn referrers(ctx: &Ctx, args: &ReferrersArgs) -> Result<()> {
    let r = Reference::parse(&args.reference)?;
    let reg = ctx.registry_for(Some(r.registry()))?;
    let subject = resolve_digest(&reg, &r)?;
    let r = reg.resolve(&r)?;
    let list = reg
        .block_on(reg.client().referrers(r.registry(), r.repository(), &subject, args.artifact_type.as_deref()))
        .with_context(|| format!("could not list the referrers of {}@{subject}", r.name()))?;
    if args.out.json {
        return output::json(&json!({ "subject": subject, "manifests": list }));
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| vec![d.digest.to_string(), d.artifact_type.clone().unwrap_or_default(), d.size.to_string()])
        .collect();
    output::table(&["DIGEST", "ARTIFACT TYPE", "SIZE"], &rows)
}

fn prompt(question: &str, hidden: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("no terminal to ask for the {question}; pass it as an option (or --password-stdin)");
    }
    let mut err = std::io::stderr();
    write!(err, "{question}: ")?;
    err.flush()?;
    let saved = if hidden {
        let fd = std::io::stdin();
        let old = rustix::termios::tcgetattr(&fd).context("cannot read the terminal settings")?;
        let mut quiet = old.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &quiet)
            .context("cannot turn off echo")?;
        Some(old)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(old) = saved {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &old);
        writeln!(err)?;
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

pub fn login(ctx: &Ctx, args: &LoginArgs) -> Result<()> {
    let registry = registry_name(&args.registry)?;
    let username = match &args.username {
        Some(u) => u.clone(),
        None => prompt("Username", false)?,
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut p = String::new();
            std::io::stdin().lock().read_line(&mut p).context("cannot read the password from stdin")?;
            p.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => prompt("Password", true)?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("a user name and a password are needed to log in to {registry}");
    }
    let creds = Credentials::new(username, password);
    let reg = ctx.registry_as(creds.clone())?;
    reg.block_on(reg.client().ping(&registry)).with_context(|| format!("login to {registry} failed"))?;
    let file = ctx.login_file();
    cargohold_registry::save_credentials(&file, &registry, &creds)
        .with_context(|| format!("could not save the credentials for {registry}"))?;
    output::line(format!("logged in to {registry} (credentials in {})", file.display()))
}

pub fn logout(ctx: &Ctx, args: &LogoutArgs) -> Result<()> {
    let registry = registry_name(&args.registry)?;
    let file = ctx.login_file();
    let removed = cargohold_registry::remove_credentials(&file, &registry)
        .with_context(|| format!("could not remove the credentials for {registry}"))?;
    if !removed {
        bail!("not logged in to {registry} (nothing in {})", file.display());
    }
    output::line(format!("logged out of {registry}"))
}
