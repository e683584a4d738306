//! The reference images of `../shared/images/make-images.sh` (a debootstrap
//! base, then additions, deletions, whiteouts, a replaced directory,
//! chmod/chown, links) pushed by skopeo and published: every flat is exactly
//! what `umoci unpack` makes of the same image, owners, modes, devices, xattrs
//! and hardlinks included, and the three images share their layers.

use std::path::Path;
use std::process::Command;

use cargohold_publish::{PublishOptions, Publisher, Status, parse_wishlist};
use cargohold_registry::{ClientOptions, Registry};
use cargohold_testkit::*;

#[test]
fn reference_images_publish_like_umoci_unpacks() {
    require("umoci");
    assert!(is_root(), "the reference images carry root-owned files and devices; run the suite as root (CI does)");
    let layout = reference_images(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let tags = ["base", "multi-l2", "multi"];
    for tag in tags {
        run(skopeo(t.path())
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/ref/debian:{tag}", r.addr)));
    }
    let root = t.path().join("tree");
    let w = parse_wishlist(
        &format!("version: 1\ncvmfs_repo: {}\ninput:\n  - 'http://{}/ref/debian:*'\n", root.display(), r.addr),
        "reference.yaml",
    )
    .unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let publisher = Publisher::new(&root, &reg, PublishOptions { jobs: 4, ..Default::default() }, None).unwrap();
    let reports = publisher.convert_wishlist(&w);
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r.status == Status::Converted), "{reports:?}");
    let new: usize = reports.iter().map(|r| r.layers_new).sum();
    assert_eq!(new, 3, "three distinct layers, each unpacked once: {reports:?}");
    for tag in tags {
        let theirs = t.path().join(format!("umoci-{tag}"));
        run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:{tag}", layout.display())).arg(&theirs));
        let flat = root.join(format!("{}/ref/debian:{tag}", r.addr));
        let ours = tree(&flat.canonicalize().unwrap());
        let mut theirs = tree(&theirs.join("rootfs"));
        let ours: std::collections::BTreeMap<_, _> = ours
            .into_iter()
            .filter(|(p, _)| {
                let s = p.to_string_lossy();
                // What DUCC adds for Singularity (and the root's own times).
                !(s.starts_with(".singularity.d") || s == "etc/hosts" || s == "etc/resolv.conf" || s.is_empty())
            })
            .collect();
        theirs.retain(|p, _| {
            let s = p.to_string_lossy();
            !(s == "etc/hosts" || s == "etc/resolv.conf" || s.is_empty())
        });
        let diffs = tree_diff(&ours, &theirs);
        assert!(
            diffs.is_empty(),
            "{tag}: {} differences, first:\n{}",
            diffs.len(),
            diffs[..diffs.len().min(10)].join("\n")
        );
    }
}
