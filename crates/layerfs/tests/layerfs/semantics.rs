//! OCI layer semantics: whiteouts, opaque directories, metadata and xattrs.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use cargohold_layerfs::ApplyOptions;

use crate::support::*;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn lower(s: &Scene) {
    let mut t = Tar::new();
    t.dir("d").file("d/a", b"a").file("d/b", b"b").dir("d/sub").file("d/sub/c", b"c").file("top", b"top");
    s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
}

#[test]
fn whiteouts_remove_lower_entries_only() {
    let s = Scene::new();
    lower(&s);
    let mut t = Tar::new();
    t.file("d/.wh.a", b"");
    // Same layer, both orders: created then whited out, whited out then created.
    t.file("d/new1", b"1").file("d/.wh.new1", b"");
    t.file("d/.wh.b", b"").file("d/b", b"recreated");
    t.file(".wh.top", b"");
    t.file("d/.wh.missing", b"");
    s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    assert_eq!(names(&s.root().join("d")), ["b", "new1", "sub"]);
    assert_eq!(std::fs::read(s.root().join("d/b")).unwrap(), b"recreated");
    assert!(!s.root().join("top").exists());
    assert!(tree(&s.root()).keys().all(|p| !p.to_string_lossy().contains(".wh.")), "no whiteout file is left");
}

#[test]
fn opaque_directories_hide_lower_children_wherever_the_marker_is() {
    for marker_first in [true, false] {
        let s = Scene::new();
        lower(&s);
        let mut t = Tar::new();
        t.dir("d");
        if marker_first {
            t.file("d/.wh..wh..opq", b"");
        }
        t.file("d/mine", b"m").dir("d/sub").file("d/sub/mine2", b"m2");
        if !marker_first {
            t.file("d/.wh..wh..opq", b"");
        }
        s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
        assert_eq!(names(&s.root().join("d")), ["mine", "sub"], "marker first: {marker_first}");
        assert_eq!(names(&s.root().join("d/sub")), ["mine2"], "lower d/sub/c is hidden too");
        assert!(s.root().join("top").exists());
    }
}

#[test]
fn bad_whiteout_names_are_refused() {
    for name in ["d/.wh.", "d/.wh..", "d/.wh...", "d/.wh..wh.x"] {
        let s = Scene::new();
        lower(&s);
        let e = s.apply(Tar::new().file(name, b"").bytes(), &ApplyOptions::default()).unwrap_err();
        assert!(e.to_string().contains(name), "{name}: {e}");
        assert_eq!(names(&s.root().join("d")), ["a", "b", "sub"]);
    }
}

#[test]
fn directories_keep_children_and_take_new_metadata() {
    let s = Scene::new();
    lower(&s);
    let mut t = Tar::new();
    t.add(b"d", Kind::Dir, 0o1750);
    t.add(b"d/suid", Kind::File(b"#!/bin/sh"), 0o4755);
    t.add(b"d/sgid", Kind::File(b""), 0o2711);
    s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    assert_eq!(names(&s.root().join("d")), ["a", "b", "sgid", "sub", "suid"]);
    let mode = |p: &str| std::fs::symlink_metadata(s.root().join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("d"), 0o1750);
    assert_eq!(mode("d/suid"), 0o4755);
    assert_eq!(mode("d/sgid"), 0o2711);
    assert_eq!(std::fs::metadata(s.root().join("d")).unwrap().mtime(), 1_600_000_000, "dir mtime set last");
}

#[test]
fn entry_types_ownership_and_hardlinks() {
    let s = Scene::new();
    lower(&s);
    let mut t = Tar::new();
    t.add_full(b"owned", Kind::File(b"o"), 0o640, (1000, 2000), &[]);
    t.add(b"fifo", Kind::Fifo, 0o600);
    t.add(b"dev/null", Kind::Char(1, 3), 0o666);
    t.add(b"ln-lower", Kind::Hardlink(b"d/a"), 0o644);
    t.file("same", b"s").add(b"ln-same", Kind::Hardlink(b"same"), 0o644);
    t.add(b"sym", Kind::Symlink(b"d/a"), 0o777);
    let report = s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    let m = |p: &str| std::fs::symlink_metadata(s.root().join(p)).unwrap();
    assert!(m("fifo").file_type().is_fifo());
    assert_eq!(m("ln-lower").ino(), m("d/a").ino());
    assert_eq!(m("ln-same").ino(), m("same").ino());
    assert_eq!(std::fs::read_link(s.root().join("sym")).unwrap(), Path::new("d/a"));
    if is_root() {
        assert_eq!((m("owned").uid(), m("owned").gid()), (1000, 2000));
        assert!(m("dev/null").file_type().is_char_device());
        assert_eq!(m("dev/null").rdev(), rustix::fs::makedev(1, 3));
    } else {
        assert!(report.warnings.iter().any(|w| w.contains("dev/null")), "{report:?}");
    }
}

/// A valid binary POSIX access ACL: user::rwx, user:1000:r-x, group::r-x, mask::r-x, other::r--.
pub fn sample_acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in
        [(0x01u16, 7u16, u32::MAX), (0x02, 5, 1000), (0x04, 5, u32::MAX), (0x10, 5, u32::MAX), (0x20, 4, u32::MAX)]
    {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn xattr_policy_is_applied() {
    let s = Scene::new();
    let acl = sample_acl();
    let mut t = Tar::new();
    t.add_full(
        b"f",
        Kind::File(b"x"),
        0o754,
        (0, 0),
        &[
            ("user.note", b"hello"),
            ("system.posix_acl_access", &acl),
            ("trusted.overlay.opaque", b"y"),
            ("security.selinux", b"system_u:object_r:etc_t:s0"),
        ],
    );
    let report = s.apply(t.bytes(), &ApplyOptions::default()).unwrap();
    let node = tree(&s.root()).remove(Path::new("f")).unwrap();
    assert_eq!(node.xattrs.get("user.note").map(Vec::as_slice), Some(&b"hello"[..]));
    assert_eq!(node.xattrs.get("system.posix_acl_access"), Some(&acl));
    assert!(!node.xattrs.contains_key("trusted.overlay.opaque"));
    assert!(!node.xattrs.contains_key("security.selinux"));
    assert_eq!(report.warnings.len(), 2, "{report:?}");
    assert!(report.warnings.iter().any(|w| w.contains("trusted.overlay.opaque")));
}

#[test]
fn rootless_mode_records_ownership_and_skips_devices() {
    let s = Scene::new();
    let mut t = Tar::new();
    t.add_full(b"owned", Kind::File(b"o"), 0o644, (1000, 0), &[]);
    t.add_full(b"rootfile", Kind::File(b"r"), 0o644, (0, 0), &[]);
    t.add(b"ro", Kind::Dir, 0o555);
    t.file("ro/inside", b"can still be written during extraction");
    t.add(b"dev/null", Kind::Char(1, 3), 0o666);
    let opts = ApplyOptions { rootless: true, ..ApplyOptions::default() };
    let report = s.apply(t.bytes(), &opts).unwrap();
    let nodes = tree(&s.root());
    let rec = cargohold_layerfs::rootless::rootless_record(1000, 0);
    assert_eq!(nodes[Path::new("owned")].xattrs.get(cargohold_layerfs::rootless::ROOTLESS_XATTR), Some(&rec));
    assert!(nodes[Path::new("rootfile")].xattrs.is_empty());
    assert_eq!(nodes[Path::new("ro")].mode, 0o555);
    assert!(nodes.contains_key(Path::new("ro/inside")));
    assert!(!nodes.contains_key(Path::new("dev/null")));
    assert!(report.warnings.iter().any(|w| w.contains("dev/null")));
    // uid 1000 -> field 1 = 1000, gid 0 -> noop (0xFFFFFFFF)
    assert_eq!(rec, [0x08, 0xe8, 0x07, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f]);
}

#[test]
fn gnu_sparse_files_and_long_names_from_gnu_tar() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let long_dir = src.join("d".repeat(120)).join("e".repeat(120));
    std::fs::create_dir_all(&long_dir).unwrap();
    std::fs::write(long_dir.join(format!("{}.txt", "f".repeat(150))), "deep and long").unwrap();
    // A sparse file: 8 MiB with data only at both ends.
    let sparse = src.join("sparse.img");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"head", 0).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"tail", (8 << 20) - 4).unwrap();
    drop(f);
    for format in ["gnu", "posix"] {
        let tarball = t.path().join(format!("{format}.tar"));
        let st = std::process::Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("--sparse")
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let s = Scene::new();
        s.apply(std::fs::read(&tarball).unwrap(), &ApplyOptions::default()).unwrap_or_else(|e| panic!("{format}: {e}"));
        let rel_long = long_dir.strip_prefix(&src).unwrap().join(format!("{}.txt", "f".repeat(150)));
        assert_eq!(std::fs::read(s.root().join(rel_long)).unwrap(), b"deep and long", "{format}");
        let data = std::fs::read(s.root().join("sparse.img")).unwrap();
        assert_eq!(data.len(), 8 << 20, "{format}");
        assert_eq!((&data[..4], &data[data.len() - 4..]), (&b"head"[..], &b"tail"[..]), "{format}");
        assert!(data[4..data.len() - 4].iter().all(|&b| b == 0), "{format}");
    }
}
