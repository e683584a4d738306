//! Hostile layers: nothing outside the root is created, changed or read, and
//! every refusal names the entry.

use std::os::unix::fs::MetadataExt;

use cargohold_layerfs::{ApplyOptions, Error, Limits};

use crate::support::*;

/// Applies `tar` and checks the outside tree (and the scene's top level) did
/// not change. Returns the result for further checks.
fn contained(tar: Vec<u8>, opts: &ApplyOptions) -> (Scene, Result<cargohold_layerfs::ApplyReport, Error>) {
    let s = Scene::new();
    let before = tree(&s.outside());
    let top_before: Vec<_> = std::fs::read_dir(s.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let r = s.apply(tar, opts);
    assert_eq!(tree(&s.outside()), before, "the outside tree changed");
    let top_after: Vec<_> = std::fs::read_dir(s.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(top_after.len(), top_before.len(), "something appeared next to the root");
    (s, r)
}

fn refused(r: Result<cargohold_layerfs::ApplyReport, Error>, entry: &str) {
    let e = r.expect_err("the layer must be refused");
    let msg = e.to_string();
    assert!(msg.contains(entry), "error does not name {entry:?}: {msg}");
}

#[test]
fn dotdot_names_are_refused_and_absolute_names_stay_inside() {
    let (_, r) = contained(Tar::new().file("../outside/victim", b"pwned").bytes(), &ApplyOptions::default());
    refused(r, "../outside/victim");
    let (_, r) = contained(Tar::new().file("a/../../outside/victim", b"pwned").bytes(), &ApplyOptions::default());
    refused(r, "a/../../outside/victim");
    let (s, r) = contained(Tar::new().file("/etc/passwd", b"root-relative").bytes(), &ApplyOptions::default());
    r.unwrap();
    assert_eq!(std::fs::read(s.root().join("etc/passwd")).unwrap(), b"root-relative");
}

#[test]
fn symlink_to_slash_then_write_through_it() {
    let s = Scene::new();
    let outside = s.outside().display().to_string();
    let before = tree(&s.outside());
    let mut t = Tar::new();
    t.add(b"link", Kind::Symlink(b"/"), 0o777);
    t.file("link/etc/x", b"inside");
    t.add(b"host", Kind::Symlink(outside.as_bytes()), 0o777);
    t.file("host/victim", b"pwned");
    s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    assert_eq!(std::fs::read(s.root().join("etc/x")).unwrap(), b"inside");
    // The absolute path of the outside dir, re-rooted, is a new dir in the root.
    let rerooted = s.root().join(outside.trim_start_matches('/')).join("victim");
    assert_eq!(std::fs::read(rerooted).unwrap(), b"pwned");
    assert_eq!(tree(&s.outside()), before);
}

#[test]
fn relative_symlink_chains_cannot_climb_out() {
    let mut t = Tar::new();
    t.dir("a");
    t.add(b"a/up", Kind::Symlink(b"../../../../../.."), 0o777);
    t.add(b"a/up2", Kind::Symlink(b"up/.."), 0o777);
    t.file("a/up2/outside/victim", b"pwned");
    let (s, r) = contained(t.bytes(), &ApplyOptions::default());
    r.unwrap();
    assert_eq!(std::fs::read(s.root().join("outside/victim")).unwrap(), b"pwned");
}

#[test]
fn an_existing_symlink_at_the_final_component_is_replaced_not_followed() {
    let s = Scene::new();
    let victim = s.outside().join("victim");
    let before = tree(&s.outside());
    let mut t = Tar::new();
    t.add(b"f", Kind::Symlink(victim.to_str().unwrap().as_bytes()), 0o777);
    t.add(b"f", Kind::File(b"new content"), 0o4755);
    t.add(b"d", Kind::Symlink(s.outside().to_str().unwrap().as_bytes()), 0o777);
    t.add(b"d", Kind::Dir, 0o700);
    s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    assert_eq!(std::fs::read(s.root().join("f")).unwrap(), b"new content");
    assert!(std::fs::symlink_metadata(s.root().join("d")).unwrap().is_dir());
    assert_eq!(tree(&s.outside()), before, "neither written nor chmodded through the links");
}

#[test]
fn hardlinks_cannot_reach_outside() {
    let outside = Scene::new().outside();
    for target in [
        b"/etc/shadow".to_vec(),
        b"../../outside/etc/shadow".to_vec(),
        format!("{}/etc/shadow", outside.display()).into_bytes(),
    ] {
        let mut t = Tar::new();
        t.add(b"stolen", Kind::Hardlink(&target), 0o644);
        let (s, r) = contained(t.bytes(), &ApplyOptions::default());
        refused(r, "stolen");
        assert!(!s.root().join("stolen").exists());
    }
    // Through a symlinked directory.
    let s = Scene::new();
    let before = tree(&s.outside());
    let mut t = Tar::new();
    t.add(b"etcdir", Kind::Symlink(s.outside().join("etc").to_str().unwrap().as_bytes()), 0o777);
    t.add(b"stolen", Kind::Hardlink(b"etcdir/shadow"), 0o644);
    refused(s.apply(t.bytes(), &ApplyOptions::default()), "stolen");
    assert_eq!(tree(&s.outside()), before);
    // A hardlink before its target: a clear error.
    let (_, r) = contained(
        Tar::new().add(b"early", Kind::Hardlink(b"later"), 0o644).file("later", b"x").bytes(),
        &ApplyOptions::default(),
    );
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("early") && msg.contains("does not exist"), "{msg}");
}

#[test]
fn chmod_and_chown_never_go_through_links() {
    let s = Scene::new();
    let victim = s.outside().join("victim");
    let mode_before = std::fs::metadata(&victim).unwrap().mode();
    // A hardlink to a lower file, then a new file at that name with other
    // metadata: the link is replaced, the shared inode is untouched.
    std::fs::write(s.root().join("lower"), "lower").unwrap();
    let mut t = Tar::new();
    t.add(b"ln", Kind::Hardlink(b"lower"), 0o644);
    t.add_full(b"ln", Kind::File(b"mine"), 0o4777, (1234, 1234), &[]);
    t.add(b"sl", Kind::Symlink(victim.to_str().unwrap().as_bytes()), 0o777);
    t.add_full(b"sl", Kind::File(b"mine too"), 0o777, (1234, 1234), &[]);
    s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    assert_eq!(std::fs::read(s.root().join("lower")).unwrap(), b"lower");
    assert_eq!(std::fs::metadata(s.root().join("lower")).unwrap().mode() & 0o7777, 0o644);
    assert_eq!(std::fs::metadata(&victim).unwrap().mode(), mode_before);
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
}

#[test]
fn whiteouts_under_a_symlinked_parent_stay_inside() {
    let s = Scene::new();
    let before = tree(&s.outside());
    let mut t = Tar::new();
    t.add(b"p", Kind::Symlink(s.outside().to_str().unwrap().as_bytes()), 0o777);
    t.file("p/.wh.victim", b"");
    t.add(b"q", Kind::Symlink(s.outside().to_str().unwrap().as_bytes()), 0o777);
    t.file("q/.wh..wh..opq", b"");
    s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    assert_eq!(tree(&s.outside()), before);
}

#[test]
fn the_root_cannot_change_type() {
    for name in [&b"."[..], b"/", b"./", b"a/.."] {
        let mut t = Tar::new();
        t.add(name, Kind::Symlink(b"/outside"), 0o777);
        let (s, r) = contained(t.bytes(), &ApplyOptions::default());
        refused(r, std::str::from_utf8(name).unwrap());
        assert!(s.root().is_dir());
    }
    // A directory entry for "." just sets the root's metadata.
    let (s, r) = contained(Tar::new().add(b"./", Kind::Dir, 0o750).bytes(), &ApplyOptions::default());
    r.unwrap();
    assert_eq!(std::fs::metadata(s.root()).unwrap().mode() & 0o7777, 0o750);
}

#[test]
fn pax_size_disagreeing_with_ustar_size() {
    // A PAX "size" record says 5 bytes; the ustar field says 100. The PAX
    // value wins (POSIX), so the next header is found right after 5 bytes of
    // data (one 512-byte block), never inside a file's contents.
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", &b"5"[..])]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("small").unwrap();
    h.set_size(100);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut data = b"hello".to_vec();
    data.resize(512, 0);
    b.append(&h, &data[..5]).unwrap();
    let mut raw = b.into_inner().unwrap();
    // Replace the data area written by `append` (5 bytes padded) — already padded to 512.
    let next = Tar::new().file("after", b"ok").bytes();
    raw.truncate(raw.len() - 1024); // drop the end-of-archive blocks
    raw.extend_from_slice(&next);
    let (s, r) = contained(raw, &ApplyOptions::default());
    match r {
        Ok(_) => {
            assert_eq!(std::fs::read(s.root().join("small")).unwrap(), b"hello");
            assert_eq!(std::fs::read(s.root().join("after")).unwrap(), b"ok");
        }
        Err(e) => assert!(e.to_string().contains("small") || e.to_string().contains("tar"), "{e}"),
    }
}

#[test]
fn out_of_range_device_numbers_are_refused() {
    let mut t = Tar::new();
    t.add(b"dev/bad", Kind::Char(1, 3), 0o666);
    let mut raw = t.bytes();
    // Corrupt the devmajor field (offset 329, 8 bytes) with non-octal garbage.
    raw[329..337].copy_from_slice(b"99999999");
    let hdr = &mut raw[..512];
    hdr[148..156].copy_from_slice(b"        ");
    let sum: u32 = hdr.iter().map(|&b| u32::from(b)).sum();
    hdr[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let (_, r) = contained(raw, &ApplyOptions::default());
    if is_root() {
        refused(r, "dev/bad");
    } else {
        // Unprivileged: devices are skipped before their numbers matter.
        let _ = r;
    }
}

#[test]
fn limits_stop_bombs_deep_and_wide_trees() {
    let small = ApplyOptions {
        limits: Limits { max_bytes: 1 << 20, max_entries: 100, max_depth: 10, max_path_len: 200 },
        ..ApplyOptions::default()
    };
    let big = vec![0u8; 2 << 20];
    let (_, r) = contained(Tar::new().file("bomb", &big).bytes(), &small);
    assert!(matches!(r, Err(Error::Limit { ref entry, .. }) if entry == "bomb"), "{r:?}");

    let deep = (0..20).map(|i| format!("d{i}")).collect::<Vec<_>>().join("/");
    let (_, r) = contained(Tar::new().file(&deep, b"x").bytes(), &small);
    assert!(matches!(r, Err(Error::Limit { .. })), "{r:?}");

    let mut wide = Tar::new();
    for i in 0..150 {
        wide.file(&format!("f{i}"), b"");
    }
    let (_, r) = contained(wide.bytes(), &small);
    assert!(matches!(r, Err(Error::Limit { ref entry, .. }) if entry == "f100"), "{r:?}");

    // A gzip bomb: 64 MiB of zeros in a few KiB, refused by the byte cap.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &Tar::new().file("zeros", &vec![0u8; 64 << 20]).bytes()).unwrap();
    let compressed = gz.finish().unwrap();
    assert!(compressed.len() < 1 << 20);
    let s = Scene::new();
    let root = cargohold_layerfs::Root::open(&s.root()).unwrap();
    let mut r = flate2::read::GzDecoder::new(&compressed[..]);
    let e = cargohold_layerfs::apply_layer(&root, &mut r, "bomb-layer", &small).unwrap_err();
    assert!(matches!(e, Error::Limit { .. }), "{e:?}");
}

#[test]
fn ten_thousand_opaque_markers_cost_one_scan() {
    let s = Scene::new();
    std::fs::create_dir(s.root().join("d")).unwrap();
    for i in 0..1000 {
        std::fs::write(s.root().join("d").join(format!("lower{i}")), "x").unwrap();
    }
    let mut t = Tar::new();
    t.file("d/mine", b"kept");
    for _ in 0..10_000 {
        t.file("d/.wh..wh..opq", b"");
    }
    let report = s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    assert_eq!(report.entries, 10_001);
    let left: Vec<_> = std::fs::read_dir(s.root().join("d")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["mine"]);
}
