//! Converting generated images that share a base layer.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargohold_publish::{PublishOptions, Publisher, Status, ThinOptions, parse_wishlist};
use cargohold_registry::{ClientOptions, Registry};
use cargohold_testkit::*;

use crate::images::{E, layer, push};

fn base() -> Vec<u8> {
    layer(&[
        E::Dir("etc"),
        E::File("etc/os-release", b"ID=test\n"),
        E::File("etc/hosts", b"127.0.0.1 from-the-image\n"),
        E::Dir("a"),
        E::File("a/keep", b"kept"),
        E::File("a/gone", b"whited out above"),
        E::Dir("d"),
        E::File("d/x", b"x"),
        E::File("d/y", b"y"),
        E::Dir("usr/lib"),
        E::File("usr/lib/libz.so", &[7u8; 50_000]),
        E::Link("lib", "usr/lib"),
    ])
}

fn top_a() -> Vec<u8> {
    layer(&[
        E::Dir("a"),
        E::File("a/.wh.gone", b""),
        E::Dir("d"),
        E::File("d/.wh..wh..opq", b""),
        E::File("d/z", b"z"),
        E::File("etc/new", b"new in a"),
        E::Hard("etc/new-again", "etc/new"),
    ])
}

fn top_b(n: u8) -> Vec<u8> {
    layer(&[E::File("b.txt", &[n; 10]), E::File("lib/.wh.libz.so", b"")])
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// (relative path -> kind and content) of a tree, skipping what DUCC adds.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let key = r.display().to_string();
            if [".singularity.d", "dev", "proc", "sys", "etc/hosts", "etc/resolv.conf"].contains(&key.as_str()) {
                continue;
            }
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let v = if m.is_dir() {
                stack.push(r.clone());
                format!("dir {:o}", m.mode() & 0o7777)
            } else if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(e.path()).unwrap().display())
            } else {
                let data = std::fs::read(e.path()).unwrap();
                format!("file {:o} {}", m.mode() & 0o7777, cargohold_image_core::Digest::sha256_of(&data))
            };
            out.insert(key, v);
        }
    }
    out
}

#[test]
fn converts_shares_layers_agrees_with_umoci_and_skips_what_is_done() {
    let r = TestRegistry::start();
    let proxy = fault_proxy(&r.addr, Vec::new());
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let base = base();
    let a = push(&reg, &r.addr, "team/a", "1", &[base.clone(), top_a()]);
    push(&reg, &r.addr, "team/b", "1", &[base.clone(), top_b(1)]);
    push(&reg, &r.addr, "team/b", "2", &[base.clone(), top_b(2)]);
    let root = t.path().join("tree");
    let wishlist = format!(
        "version: 1\nuser: tester\ncvmfs_repo: {}\ninput:\n  - 'http://{p}/team/a:1'\n  - 'http://{p}/Bad Entry'\n  - 'http://{p}/team/b:*'\n",
        root.display(),
        p = proxy.addr
    );
    let w = parse_wishlist(&wishlist, "wishlist.yaml").unwrap();
    assert_eq!(w.problems.len(), 1);
    assert_eq!(w.problems[0].line, 6);
    let notes = t.path().join("notifications.jsonl");
    let thin = ThinOptions {
        output_format: format!("http://{}/thin/$(image)", r.addr),
        cvmfs_repo: "unpacked.example.org".into(),
    };
    let publisher = Publisher::new(&root, &reg, PublishOptions { jobs: 4, ..Default::default() }, Some(&notes))
        .unwrap()
        .with_thin_images(&reg, thin);
    let reports = publisher.convert_wishlist(&w);
    assert_eq!(reports.len(), 3, "{reports:?}");
    for rep in &reports {
        assert_eq!(rep.status, Status::Converted, "{rep:?}");
    }
    // The base layer was unpacked once and shared.
    let layers_new: usize = reports.iter().map(|r| r.layers_new).sum();
    assert_eq!(layers_new, 4, "base + three tops: {reports:?}");
    assert!(reports[1].layers_reused >= 1);

    let tree = publisher.tree();
    let name_a = format!("{}/team/a:1", proxy.addr);
    let link = tree.public_path(&name_a);
    let target = std::fs::read_link(&link).unwrap();
    assert!(target.is_relative() && target.starts_with("../../"), "{}", target.display());
    let flat = link.parent().unwrap().join(&target);
    assert_eq!(std::fs::read(link.join("a/keep")).unwrap(), b"kept");
    assert!(!flat.join("a/gone").exists(), "whiteout applied in the flat");
    let d: Vec<_> = std::fs::read_dir(flat.join("d")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(d, vec![std::ffi::OsString::from("z")], "opaque directory");
    // The layer trees keep whiteouts as files, like DUCC's.
    let m: cargohold_image_core::ImageManifest = serde_json::from_slice(&a.bytes).unwrap();
    let top_layer = tree.layer_dir(&m.layers[1].digest);
    assert!(top_layer.join("layerfs/a/.wh.gone").is_file());
    assert!(top_layer.join("layerfs/d/.wh..wh..opq").is_file());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(top_layer.join(".metadata/layers.json")).unwrap()).unwrap();
    assert_eq!(meta["digest"], m.layers[1].digest.to_string());
    // Flat files are hardlinks into the layers: no bytes copied.
    let in_layer = std::fs::metadata(tree.layer_dir(&m.layers[0].digest).join("layerfs/usr/lib/libz.so")).unwrap();
    let in_flat = std::fs::metadata(flat.join("usr/lib/libz.so")).unwrap();
    assert_eq!(in_layer.ino(), in_flat.ino());
    assert_eq!(
        std::fs::metadata(flat.join("etc/new")).unwrap().ino(),
        std::fs::metadata(flat.join("etc/new-again")).unwrap().ino()
    );
    assert!(reports[0].bytes_deduplicated >= 50_000, "{:?}", reports[0]);
    // Singularity additions; the image's etc/hosts replaced, not written through.
    assert!(flat.join(".singularity.d/runscript").is_file());
    let env = std::fs::read_to_string(flat.join(".singularity.d/env/10-docker2singularity.sh")).unwrap();
    assert!(env.contains("export GREETING='it'\\''s \"quoted\"'"), "{env}");
    assert_eq!(std::fs::read(flat.join("etc/hosts")).unwrap(), b"");
    assert_eq!(
        std::fs::read(tree.layer_dir(&m.layers[0].digest).join("layerfs/etc/hosts")).unwrap(),
        b"127.0.0.1 from-the-image\n"
    );
    for d in ["dev", "proc", "sys"] {
        assert!(flat.join(d).is_dir());
    }
    // The manifest exactly as served.
    assert_eq!(std::fs::read(tree.metadata_dir(&name_a).join("manifest.json")).unwrap(), a.bytes);
    // b's top layer whites out a file reached through a symlinked directory
    // in the base: the base layer itself is untouched.
    let name_b = format!("{}/team/b:2", proxy.addr);
    assert!(tree.public_path(&name_b).join("b.txt").is_file());
    assert!(tree.layer_dir(&m.layers[0].digest).join("layerfs/usr/lib/libz.so").is_file());

    // The thin image: one layer with thin.json pointing into the tree, the
    // source's env and cmd plus CVMFS_IMAGE=true; skopeo reads it.
    assert_eq!(reports[0].thin_image.as_deref(), Some(format!("{}/thin/team/a:1", r.addr).as_str()));
    let out = run(skopeo(t.path())
        .args(["inspect", "--config", "--tls-verify=false"])
        .arg(format!("docker://{}/thin/team/a:1", r.addr)));
    let cfg: serde_json::Value = serde_json::from_str(&out).unwrap();
    let env = cfg["config"]["Env"].as_array().unwrap();
    assert!(
        env.contains(&serde_json::json!("CVMFS_IMAGE=true")) && env.contains(&serde_json::json!("PATH=/usr/bin:/bin"))
    );
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/bin/sh", "-c", "echo hi"]));
    let thin_ref: cargohold_image_core::Reference = format!("{}/thin/team/a:1", r.addr).parse().unwrap();
    let thin_m = reg.block_on(reg.client().get_manifest(&thin_ref)).unwrap();
    let thin_m: cargohold_image_core::ImageManifest = serde_json::from_slice(&thin_m.bytes).unwrap();
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut cargohold_image_core::ImageSource::blob(&mut reg.source(&thin_ref), &thin_m.layers[0]).unwrap(),
        &mut body,
    )
    .unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&body[..]));
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("thin.json"));
    let doc: serde_json::Value = serde_json::from_reader(&mut entry).unwrap();
    assert_eq!(doc["version"], "1.0");
    let hex = m.layers[1].digest.hex();
    assert_eq!(doc["layers"][1]["url"], format!("cvmfs://unpacked.example.org/.layers/{}/{hex}/layerfs", &hex[..2]));

    // The same image unpacked by umoci (via skopeo) has the same files.
    let layout = t.path().join("oci");
    run(skopeo(t.path())
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{}/team/a:1", r.addr))
        .arg(format!("oci:{}:a", layout.display())));
    require("umoci");
    let bundle = t.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:a", layout.display()))
        .arg(&bundle));
    assert_eq!(listing(&flat), listing(&bundle.join("rootfs")));

    // Notifications: JSON lines, starts paired with ends.
    let text = std::fs::read_to_string(&notes).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let starts = events.iter().filter(|e| e["action"] == "start_layer_conversion").count();
    let ends = events.iter().filter(|e| e["action"] == "end_layer_conversion" && e["status"] == "ok").count();
    assert_eq!((starts, ends), (4, 4), "{text}");
    assert_eq!(events.iter().filter(|e| e["action"] == "publish_flat_image").count(), 3);

    // A second run: everything skipped, not one blob downloaded.
    let blob_gets = |p: &FaultProxy| p.seen.lock().unwrap().iter().filter(|h| h.contains("/blobs/sha256:")).count();
    let before = blob_gets(&proxy);
    let again = publisher.convert_wishlist(&w);
    assert!(again.iter().all(|r| r.status == Status::Skipped), "{again:?}");
    assert_eq!(blob_gets(&proxy), before, "no blob downloaded for unchanged images");

    // A changed tag: reconverted, only its new layer fetched, the link moved.
    let old_target = std::fs::read_link(&link).unwrap();
    push(&reg, &r.addr, "team/a", "1", &[base, top_b(9)]);
    let changed = publisher.convert_wishlist(&w);
    assert_eq!(changed[0].status, Status::Converted);
    assert_eq!((changed[0].layers_new, changed[0].layers_reused), (1, 1), "{:?}", changed[0]);
    assert_ne!(std::fs::read_link(&link).unwrap(), old_target);
    assert!(link.join("b.txt").is_file());

    // GC: the old flat of a:1 and its own top layer go; shared ones stay.
    let old_flat = link.parent().unwrap().join(&old_target);
    let old_top = tree.layer_dir(&m.layers[1].digest);
    let notifier = cargohold_publish::Notifier::new(None);
    let dry = cargohold_publish::collect(tree, true, std::time::Duration::ZERO, None, &notifier).unwrap();
    let paths: Vec<_> = dry.collected.iter().map(|c| c.path.clone()).collect();
    assert!(paths.contains(&normalize(&old_flat)) && paths.contains(&old_top), "{paths:?}");
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(old_flat.exists(), "a dry run removes nothing");
    let done = cargohold_publish::collect(tree, false, std::time::Duration::ZERO, None, &notifier).unwrap();
    assert_eq!(done.collected.len(), 2);
    assert!(done.bytes > 0);
    assert!(!old_flat.exists() && !old_top.exists());
    assert!(tree.layer_dir(&m.layers[0].digest).join("layerfs").is_dir(), "the shared base stays");
    assert!(link.join("b.txt").is_file() && tree.public_path(&name_b).join("b.txt").is_file());
    // Within the grace period nothing is collected.
    push(&reg, &r.addr, "team/a", "1", &[top_b(5)]);
    assert_eq!(publisher.convert_wishlist(&w)[0].status, Status::Converted);
    let graced =
        cargohold_publish::collect(tree, false, std::time::Duration::from_secs(3600), None, &notifier).unwrap();
    assert!(graced.collected.is_empty(), "{graced:?}");

    // An image that does not exist: reported, nothing published for it.
    let missing = cargohold_image_core::ImageUrl::parse(&format!("http://{}/team/nope:1", proxy.addr)).unwrap();
    let rep = publisher.convert_image(&missing);
    assert_eq!(rep.status, Status::Failed);
    assert!(rep.error.as_deref().unwrap_or_default().contains("team/nope"), "{rep:?}");
    assert!(!tree.public_path(&format!("{}/team/nope:1", proxy.addr)).exists());
    assert_eq!(std::fs::read_dir(root.join(".cargohold/staging")).unwrap().count(), 0, "no staging left behind");
}

#[test]
fn a_busy_tree_is_waited_for_then_given_up_naming_the_lock() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    push(&reg, &r.addr, "busy/app", "1", &[base()]);
    let root = t.path().join("tree");
    let told = std::sync::atomic::AtomicBool::new(false);
    let opts = PublishOptions { lock_timeout: Some(std::time::Duration::from_millis(300)), ..Default::default() };
    let publisher = Publisher::new(&root, &reg, opts, None)
        .unwrap()
        .on_lock_wait(|_| told.store(true, std::sync::atomic::Ordering::Relaxed));
    let url = cargohold_image_core::ImageUrl::parse(&format!("http://{}/busy/app:1", r.addr)).unwrap();
    let held = publisher.tree().lock(None, &|_| {}).unwrap();
    let rep = publisher.convert_image(&url);
    assert_eq!(rep.status, Status::Failed);
    let err = rep.error.unwrap_or_default();
    assert!(err.contains("another publisher holds the lock") && err.contains("publish.lock"), "{err}");
    assert!(told.load(std::sync::atomic::Ordering::Relaxed), "the wait was announced");
    assert!(!publisher.tree().public_path(&format!("{}/busy/app:1", r.addr)).exists());
    drop(held);
    assert_eq!(publisher.convert_image(&url).status, Status::Converted);
}
