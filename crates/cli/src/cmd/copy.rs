//! `cargohold copy`: between the store, OCI layouts, archives and registries.

use anyhow::{Context, Result};
use cargohold_image_core::{CopyOptions, ImageLocation, Reference};

use super::{Ctx, PerRegistry};
use crate::cli::CopyArgs;
use crate::output;

pub fn run(ctx: &Ctx, args: &CopyArgs) -> Result<()> {
    let src_loc = ImageLocation::parse(&args.source)?;
    let dst_loc = ImageLocation::parse(&args.destination)?;
    let store = ctx.store()?;
    let src_creds = args.side.src_creds(args.src_creds.as_deref())?;
    let dest_creds = args.side.dest_creds(args.dest_creds.as_deref())?;
    super::daemon_host_for(args.src_daemon_host.as_ref(), &src_loc, "--src-daemon-host")?;
    super::daemon_host_for(args.dest_daemon_host.as_ref(), &dst_loc, "--dest-daemon-host")?;
    let daemons_given = args.src_daemon_host.is_some() || args.dest_daemon_host.is_some() || args.tmpdir.is_some();
    let reg = if src_creds.is_some() || dest_creds.is_some() || args.side.given() || daemons_given {
        // Each side's credentials, TLS verification and certificates go to
        // its own registry only.
        let registry_of = |loc: &ImageLocation, option: &str| -> Result<String> {
            match loc {
                ImageLocation::Docker(r) => Ok(Reference::parse(r)?.registry().to_owned()),
                _ => anyhow::bail!("{option} is for a registry, and {loc} is not one"),
            }
        };
        let mut named = PerRegistry::default();
        if let Some((option, c)) = src_creds {
            named.creds.push((registry_of(&src_loc, option)?, c));
        }
        if let Some((option, c)) = dest_creds {
            let r = registry_of(&dst_loc, option)?;
            if named.creds.iter().any(|(s, given)| *s == r && given.username != c.username) {
                anyhow::bail!(
                    "the source's and the destination's credentials name different users of the same registry {r}"
                );
            }
            named.creds.push((r, c));
        }
        // --creds: for the one registry the copy talks to.
        if let Some(c) = ctx.creds()? {
            match super::registries_of(&[&src_loc, &dst_loc]).as_slice() {
                [one] if !named.creds.iter().any(|(r, _)| r == one) => named.creds.push((one.clone(), c)),
                _ => anyhow::bail!(
                    "--creds is for a copy that talks to one registry and names no other credentials: give each \
                     registry its own with --src-creds and --dest-creds"
                ),
            }
        }
        for (side, loc) in [(args.side.src(), &src_loc), (args.side.dest(), &dst_loc)] {
            if let Some(option) = side.option() {
                let r = registry_of(loc, &option)?;
                ctx.side_options(&mut named, &r, &side)?;
            }
        }
        named.src_daemon_host = args.src_daemon_host.clone();
        named.dest_daemon_host = args.dest_daemon_host.clone();
        named.tmpdir = args.tmpdir.clone();
        ctx.registry_with(named)?
    } else {
        ctx.registry_for_locations(&[&src_loc, &dst_loc])?
    };
    let format = args.format.get();
    let opts = CopyOptions {
        platform: ctx.platform(args.platform.as_deref())?,
        all_platforms: match args.multi_arch.as_deref() {
            Some("index-only") => anyhow::bail!(
                "--multi-arch index-only is not supported: cargohold copies an index with its images (system or all)"
            ),
            Some("all") if args.platform.is_some() => {
                anyhow::bail!("--multi-arch all copies every platform: drop --platform, or use --multi-arch system")
            }
            Some("all") => true,
            _ => args.all_platforms,
        },
        format,
        preserve_digests: args.preserve_digests,
        compression: super::recompress(args.dest_compress_format, args.dest_compress_level, args.tmpdir.as_deref()),
        additional_tags: args.additional_tags.clone(),
    };
    let bars = ctx.progress();
    // Layers move in parallel (mounted when the source is another repository
    // of the same registry), streamed from the source.
    let report = cargohold_registry::copy_image(&reg, &src_loc, &dst_loc, &store, &opts, 4, &bars)
        .with_context(|| format!("could not copy {} to {}", args.source, args.destination))?;
    drop(bars);
    if let Some(f) = &args.digestfile {
        super::write_output_file(f, report.manifest.digest.as_str(), "the digest")?;
    }
    if args.out.json {
        return output::json(&report);
    }
    output::line(format!(
        "copied {} -> {} ({}; {} blobs copied, {} mounted, {} already present)",
        args.source,
        args.destination,
        report.manifest.digest,
        report.blobs_copied,
        report.blobs_mounted,
        report.blobs_skipped
    ))
}
