//! Multi-platform images with `--multi-arch`: one flat per platform.

use cargohold_publish::{PublishOptions, Publisher, Status};
use cargohold_registry::{ClientOptions, Registry};
use cargohold_testkit::*;

use crate::images::{E, layer};

#[test]
fn multi_arch_publishes_every_platform_and_links_the_hosts() {
    use cargohold_image_core::{Descriptor, ImageIndex, Platform, RawManifest, media_type as mt};
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let amd = crate::images::push_arch(&reg, &r.addr, "ma/app", "amd", &[layer(&[E::File("arch", b"amd64")])], "amd64");
    let arm = crate::images::push_arch(&reg, &r.addr, "ma/app", "arm", &[layer(&[E::File("arch", b"arm64")])], "arm64");
    let mut idx = ImageIndex::new_oci();
    for (raw, arch, variant) in [(&amd, "amd64", None), (&arm, "arm64", Some("v8"))] {
        let mut d: Descriptor = raw.descriptor();
        d.platform = Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(str::to_owned),
            ..Platform::host()
        });
        idx.manifests.push(d);
    }
    let index = RawManifest::from_value(&idx, mt::OCI_INDEX);
    reg.block_on(reg.client().put_manifest(&r.addr, "ma/app", "1", &index)).unwrap();

    let root = t.path().join("tree");
    let opts =
        PublishOptions { multi_arch: true, platform: Some("linux/amd64".parse().unwrap()), ..Default::default() };
    let publisher = Publisher::new(&root, &reg, opts, None).unwrap();
    let url = cargohold_image_core::ImageUrl::parse(&format!("http://{}/ma/app:1", r.addr)).unwrap();
    let reports = publisher.convert_image_all(&url);
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(reports.iter().all(|r| r.status == Status::Converted), "{reports:?}");
    let name = format!("{}/ma/app:1", r.addr);
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p.join("arch")).unwrap();
    assert_eq!(read(root.join(".multiarch/amd64").join(&name)), "amd64");
    assert_eq!(read(root.join(".multiarch/arm64:v8").join(&name)), "arm64");
    assert_eq!(read(root.join(&name)), "amd64", "the public path is the chosen platform's");
    // GC keeps the per-platform flats.
    let gc = cargohold_publish::collect(publisher.tree(), true, std::time::Duration::ZERO, None, &Default::default())
        .unwrap();
    assert!(gc.collected.is_empty(), "{gc:?}");
}

/// A registry's platform strings never become paths outside the tree: an
/// index naming `../../..` architectures or variants gets an error report
/// for those platforms, the others are published.
#[test]
fn hostile_platform_strings_stay_inside_the_tree() {
    use cargohold_image_core::{Descriptor, ImageIndex, Platform, RawManifest, media_type as mt};
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let good =
        crate::images::push_arch(&reg, &r.addr, "evil/app", "g", &[layer(&[E::File("arch", b"amd64")])], "amd64");
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let escape = format!("../../../../../../../..{}/x", outside.display());
    let mut idx = ImageIndex::new_oci();
    for (arch, variant) in
        [("amd64", None), (escape.as_str(), None), ("arm64", Some("../../../../../../../../tmp")), ("..", None)]
    {
        let mut d: Descriptor = good.descriptor();
        d.platform = Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(str::to_owned),
            ..Platform::host()
        });
        idx.manifests.push(d);
    }
    let index = RawManifest::from_value(&idx, mt::OCI_INDEX);
    reg.block_on(reg.client().put_manifest(&r.addr, "evil/app", "1", &index)).unwrap();
    let root = t.path().join("tree");
    let opts =
        PublishOptions { multi_arch: true, platform: Some("linux/amd64".parse().unwrap()), ..Default::default() };
    let publisher = Publisher::new(&root, &reg, opts, None).unwrap();
    let url = cargohold_image_core::ImageUrl::parse(&format!("http://{}/evil/app:1", r.addr)).unwrap();
    let reports = publisher.convert_image_all(&url);
    let refused: Vec<_> =
        reports.iter().filter(|r| r.error.as_deref().is_some_and(|e| e.contains("not a plain name"))).collect();
    assert_eq!(refused.len(), 3, "{reports:?}");
    assert!(
        reports.iter().filter(|r| r.error.is_none()).count() >= 2,
        "the good platform and the public path: {reports:?}"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was created outside the tree");
    let entries: Vec<_> = std::fs::read_dir(root.join(".multiarch")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, [std::ffi::OsString::from("amd64")], "only the plain platform: {entries:?}");
}

/// Symlinks planted inside the tree (by whoever could write there) are
/// never followed: the conversion fails naming the path, and nothing is
/// written where they point.
#[test]
fn symlinks_planted_in_the_tree_are_refused_not_followed() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    crate::images::push(&reg, &r.addr, "ev/a", "1", &[layer(&[E::File("a", b"a")])]);
    crate::images::push(&reg, &r.addr, "ev/b", "1", &[layer(&[E::File("b", b"b")])]);
    let root = t.path().join("tree");
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let publisher = Publisher::new(&root, &reg, PublishOptions::default(), None).unwrap();
    let url = |repo: &str| cargohold_image_core::ImageUrl::parse(&format!("http://{}/{repo}:1", r.addr)).unwrap();
    let first = publisher.convert_image(&url("ev/a"));
    assert_eq!(first.status, Status::Converted, "{first:?}");
    for planted in [root.join(".metadata").join(&r.addr), root.join(&r.addr), root.join(".flat")] {
        let aside = t.path().join("aside");
        std::fs::rename(&planted, &aside).unwrap();
        std::os::unix::fs::symlink(&outside, &planted).unwrap();
        let report = publisher.convert_image(&url("ev/b"));
        assert_eq!(report.status, Status::Failed, "{planted:?}: {report:?}");
        let error = report.error.unwrap_or_default();
        assert!(error.contains("symlink") && error.contains(&*planted.to_string_lossy()), "{error}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "{planted:?}: something was written outside");
        std::fs::remove_file(&planted).unwrap();
        std::fs::rename(&aside, &planted).unwrap();
    }
    assert_eq!(publisher.convert_image(&url("ev/b")).status, Status::Converted);
}
