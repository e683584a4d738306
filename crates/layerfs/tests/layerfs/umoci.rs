//! Equality with `umoci unpack` on images with every entry type.

use std::path::Path;
use std::process::Command;

use cargohold_image_core::{ImageLocation, Store, open_source};
use cargohold_layerfs::{ApplyOptions, UnpackOptions, unpack};

use crate::support::*;

fn require(tool: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap().status.success();
    assert!(ok, "{tool} is required for this test and is not installed (apt-get install -y {tool})");
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Builds a 3-layer image with umoci: a base tree, a repack after deletions,
/// chmods and new links, and a crafted layer with opaque and plain whiteouts.
fn build(dir: &Path) -> String {
    require("umoci");
    let layout = dir.join("layout");
    let image = format!("{}:t", layout.display());
    let bundle = dir.join("bundle");
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
    let r = bundle.join("rootfs");
    for d in ["etc", "usr/bin", "usr/share/doc/pkg", "opt/app/data", "var/empty"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("usr/bin/tool"), vec![0x7f; 50_000]).unwrap();
    std::fs::write(r.join("usr/share/doc/pkg/README"), "docs").unwrap();
    std::fs::write(r.join("opt/app/data/big.bin"), (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>())
        .unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", r.join("etc/tool-link")).unwrap();
    std::fs::hard_link(r.join("usr/bin/tool"), r.join("usr/bin/tool-hard")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("var/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let p = |m: u32| std::os::unix::fs::PermissionsExt::from_mode(m);
    std::fs::set_permissions(r.join("usr/bin/tool"), p(0o4755)).unwrap();
    std::fs::set_permissions(r.join("var/empty"), p(0o1777)).unwrap();
    rustix::fs::lsetxattr(r.join("etc/passwd"), "user.origin", b"test", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(
        r.join("opt/app/data/big.bin"),
        "system.posix_acl_access",
        &crate::semantics::sample_acl(),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    if is_root() {
        rustix::fs::chownat(
            rustix::fs::CWD,
            r.join("opt/app/data"),
            Some(rustix::fs::Uid::from_raw(1000)),
            Some(rustix::fs::Gid::from_raw(1000)),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("var/null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
    }
    run(Command::new("umoci").args(["repack", "--refresh-bundle", "--image", &image]).arg(&bundle));
    // Layer 2: deletions (whiteouts), a replaced directory, metadata-only changes, links.
    std::fs::remove_dir_all(r.join("usr/share/doc")).unwrap();
    std::fs::remove_file(r.join("etc/tool-link")).unwrap();
    std::fs::remove_dir_all(r.join("opt/app/data")).unwrap();
    std::fs::create_dir(r.join("opt/app/data")).unwrap();
    std::fs::write(r.join("opt/app/data/new.txt"), "replaced").unwrap();
    std::fs::set_permissions(r.join("etc/passwd"), p(0o600)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", r.join("etc/abs-link")).unwrap();
    std::fs::hard_link(r.join("etc/passwd"), r.join("etc/passwd-hard")).unwrap();
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    // Layer 3, crafted: an opaque directory and whiteouts in both orders.
    let mut t = Tar::new();
    t.dir("opt").dir("opt/app").file("opt/app/.wh..wh..opq", b"").file("opt/app/fresh", b"fresh");
    t.file("etc/.wh.passwd-hard", b"").file("etc/added", b"a");
    let tar_path = dir.join("layer3.tar");
    std::fs::write(&tar_path, t.bytes()).unwrap();
    run(Command::new("umoci").args(["raw", "add-layer", "--image", &image]).arg(&tar_path));
    image
}

#[test]
fn unpack_matches_umoci() {
    require("umoci");
    let t = tempfile::tempdir().unwrap();
    let image = build(t.path());
    let theirs = t.path().join("umoci-bundle");
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&theirs));
    let store = Store::open(t.path().join("store")).unwrap();
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{image}")).unwrap(), &store).unwrap();
    let ours = t.path().join("ours");
    let report =
        unpack(src.as_mut(), &ours, &UnpackOptions { apply: ApplyOptions::for_current_user(), platform: None })
            .unwrap();
    assert_eq!(report.layers, 3);
    let diffs = tree_diff(&tree(&ours), &tree(&theirs.join("rootfs")));
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
    let listing = tree(&ours);
    assert!(listing.contains_key(Path::new("opt/app/fresh")) && !listing.contains_key(Path::new("opt/app/data")));
    assert!(!listing.contains_key(Path::new("usr/share/doc")));
}

#[test]
fn a_corrupted_layer_is_caught_and_the_new_dir_removed() {
    require("umoci");
    let t = tempfile::tempdir().unwrap();
    let image = build(t.path());
    // Flip a byte in the middle of the largest blob (a layer).
    let blobs = t.path().join("layout/blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&biggest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&biggest, bytes).unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{image}")).unwrap(), &store).unwrap();
    let dest = t.path().join("ours");
    let e = unpack(src.as_mut(), &dest, &UnpackOptions::default()).unwrap_err();
    let name = biggest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(e.to_string().contains(&name), "names the layer {name}: {e}");
    assert!(!dest.exists(), "the partly written directory is removed");
}

#[test]
fn overlay_mount_of_cached_layers_matches_umoci() {
    require("umoci");
    assert!(is_root(), "overlay mounts need root; run the suite as root (CI does)");
    let t = tempfile::tempdir().unwrap();
    let image = build(t.path());
    let theirs = t.path().join("umoci-bundle");
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&theirs));
    let store = Store::open(t.path().join("store")).unwrap();
    let cache = cargohold_layerfs::LayerCache::new(t.path().join("cache"));
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{image}")).unwrap(), &store).unwrap();
    let layers = cache.ensure(src.as_mut(), None).unwrap();
    assert_eq!(layers.len(), 3);
    // A second call finds everything cached.
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{image}")).unwrap(), &store).unwrap();
    assert_eq!(cache.ensure(src.as_mut(), None).unwrap(), layers);
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    cargohold_layerfs::mount_layers(&layers, &mnt).unwrap();
    let diffs = tree_diff(&tree(&mnt), &tree(&theirs.join("rootfs")));
    let read_only = std::fs::write(mnt.join("etc/new-file"), "x").is_err();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap())).unwrap().to_owned();
    cargohold_layerfs::unmount(&mnt).unwrap();
    let flags = line.split(' ').nth(5).unwrap();
    assert!(
        flags.contains("nosuid") && flags.contains("nodev"),
        "an image's setuid files and devices grant nothing: {line}"
    );
    assert!(diffs.is_empty(), "mounted tree differs:\n{}", diffs.join("\n"));
    assert!(read_only, "the mount is read-only");
}

fn reference_images() -> std::path::PathBuf {
    cargohold_testkit::reference_images(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

#[test]
fn reference_images_unpack_like_umoci() {
    require("umoci");
    assert!(is_root(), "the reference images carry root-owned files and devices; run the suite as root (CI does)");
    let layout = reference_images();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    for tag in ["base", "multi-l2", "multi"] {
        let image = format!("{}:{tag}", layout.display());
        let theirs = t.path().join(format!("umoci-{tag}"));
        run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&theirs));
        let mut src = open_source(&ImageLocation::parse(&format!("oci:{image}")).unwrap(), &store).unwrap();
        let ours = t.path().join(format!("ours-{tag}"));
        unpack(src.as_mut(), &ours, &UnpackOptions::default()).unwrap();
        let diffs = tree_diff(&tree(&ours), &tree(&theirs.join("rootfs")));
        assert!(
            diffs.is_empty(),
            "{tag}: {} differences, first:\n{}",
            diffs.len(),
            diffs[..diffs.len().min(10)].join("\n")
        );
        std::fs::remove_dir_all(&ours).unwrap();
        std::fs::remove_dir_all(&theirs).unwrap();
    }
}
