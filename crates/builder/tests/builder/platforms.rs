//! Builds for other platforms: image indexes, stage platforms, and the
//! emulator a foreign RUN step needs.

use std::path::Path;

use cargohold_builder::build::{BuildError, BuildOptions, Builder};
use cargohold_image_core::{Platform, Reference, Store};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn opts(ctx: &Path, tag: &str, platforms: &[&str]) -> BuildOptions {
    BuildOptions {
        context: ctx.to_path_buf(),
        tags: vec![Reference::parse(tag).unwrap()],
        timestamp: Some(1_700_000_000),
        platforms: platforms.iter().map(|p| p.parse().unwrap()).collect(),
        ..BuildOptions::default()
    }
}

/// Not this machine's architecture (and one no test registers an emulator for).
const FOREIGN: &str = "linux/riscv64";

#[test]
fn several_platforms_make_an_index_and_args_follow_each() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "a.txt", "a\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM scratch AS tools\nCOPY a.txt /a\n\
         FROM scratch\nARG TARGETPLATFORM TARGETARCH\nCOPY --from=tools /a /a-$TARGETARCH\nLABEL for=$TARGETPLATFORM\n",
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    let report = Builder::new(&store).build(&opts(&ctx, "multi:1", &["linux/arm64", FOREIGN])).unwrap();
    assert_eq!(report.image.media_type, cargohold_image_core::media_type::OCI_INDEX);
    assert_eq!(report.config, report.image.digest);
    let platforms: Vec<String> = report.images.iter().map(|i| i.platform.to_string()).collect();
    assert_eq!(platforms, ["linux/arm64", FOREIGN]);
    // Only the index is named; its manifests are reached through it.
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].descriptor.digest, report.image.digest);
    let offered = store.platforms(&report.image).unwrap();
    assert_eq!(offered.len(), 2);
    for (want, arch) in [("linux/arm64", "arm64"), (FOREIGN, "riscv64")] {
        let p: Platform = want.parse().unwrap();
        let d = store.details(&report.image, Some(&p)).unwrap();
        assert_eq!(d.config.architecture, arch);
        let labels = d.config.config.and_then(|c| c.labels).unwrap_or_default();
        assert_eq!(labels.get("for").map(String::as_str), Some(want));
        assert_eq!(d.image.layers.len(), 1);
    }
    // The BUILDPLATFORM stage was built once per target, from the same
    // key: the second target took its layer from the cache.
    let tools: Vec<bool> = report.steps.iter().filter(|s| s.instruction.contains("a.txt")).map(|s| s.cached).collect();
    assert_eq!(tools, [false, true]);
    // A platform twice is an error.
    let e = Builder::new(&store).build(&opts(&ctx, "multi:2", &["linux/arm64", "linux/aarch64"])).unwrap_err();
    assert!(matches!(e, BuildError::Platforms(_)) && e.to_string().contains("twice"), "{e}");
}

#[test]
fn a_foreign_run_step_without_an_emulator_is_an_error_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY x /x\nRUN [\"/x\"]\n");
    write(&ctx, "x", "");
    let store = Store::open(tmp.path().join("store")).unwrap();
    let mut o = opts(&ctx, "foreign:1", &[FOREIGN]);
    // A binfmt_misc with no handler registered.
    o.binfmt_misc = tmp.path().join("binfmt_misc");
    std::fs::create_dir(&o.binfmt_misc).unwrap();
    let e = Builder::new(&store).build(&o).unwrap_err().to_string();
    assert!(e.starts_with("Dockerfile:3: RUN /x # buildkit: for linux/riscv64: running riscv64 programs"), "{e}");
    assert!(e.contains("qemu-user-static") && e.contains("qemu-riscv64.conf"), "{e}");
    assert!(store.resolve("foreign:1").is_err());
}

#[test]
fn a_base_of_another_platform_is_not_used_for_a_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let store = Store::open(tmp.path().join("store")).unwrap();
    Builder::new(&store).build(&opts(&ctx, "base:1", &["linux/arm64"])).unwrap();
    write(&ctx, "Dockerfile", "FROM base:1\nCOPY Dockerfile /again\n");
    let e = Builder::new(&store).build(&opts(&ctx, "child:1", &[FOREIGN])).unwrap_err();
    let text = format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default());
    assert!(
        text.contains("Dockerfile:1: base image base:1") && text.contains("no image for platform linux/riscv64"),
        "{text}"
    );
    assert!(text.contains("available: linux/arm64"), "{text}");
    Builder::new(&store).build(&opts(&ctx, "child:2", &["linux/arm64"])).unwrap();
}
