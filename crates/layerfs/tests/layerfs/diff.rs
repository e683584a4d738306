//! Diff and archive: applying a diff to the lower tree gives the upper tree,
//! and the same inputs give the same bytes.

use std::path::Path;

use cargohold_layerfs::{ApplyOptions, Root, WriteOptions, apply_layer, archive_tree, diff_trees};

use crate::support::*;

fn populate(root: &Path) {
    let mut t = Tar::new();
    t.dir("etc").file("etc/keep", b"same").file("etc/change", b"before").file("etc/gone", b"x");
    t.dir("only-lower").file("only-lower/a", b"a").file("only-lower/b", b"b");
    t.dir("replaced").file("replaced/old1", b"1").file("replaced/old2", b"2");
    t.add(b"link", Kind::Symlink(b"etc/keep"), 0o777);
    t.file("bin/tool", b"tool");
    let r = Root::open(root).unwrap();
    apply_layer(&r, &mut &t.bytes()[..], "lower", &ApplyOptions::default()).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status().unwrap();
    assert!(st.success());
}

#[test]
fn applying_the_diff_to_lower_gives_upper() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, replay) = (t.path().join("lower"), t.path().join("upper"), t.path().join("replay"));
    for d in [&lower, &upper, &replay] {
        std::fs::create_dir(d).unwrap();
    }
    populate(&lower);
    copy_tree(&lower, &upper);
    std::fs::write(upper.join("etc/change"), "after!").unwrap();
    std::fs::remove_file(upper.join("etc/gone")).unwrap();
    std::fs::remove_dir_all(upper.join("only-lower")).unwrap();
    std::fs::remove_file(upper.join("replaced/old1")).unwrap();
    std::fs::remove_file(upper.join("replaced/old2")).unwrap();
    std::fs::write(upper.join("replaced/new"), "n").unwrap();
    std::fs::write(upper.join("bin/tool2"), "t2").unwrap();
    std::fs::hard_link(upper.join("bin/tool2"), upper.join("bin/tool2-hard")).unwrap();
    std::fs::remove_file(upper.join("link")).unwrap();
    std::os::unix::fs::symlink("bin/tool", upper.join("link")).unwrap();
    rustix::fs::lsetxattr(upper.join("etc/keep"), "user.tag", b"v", rustix::fs::XattrFlags::empty()).unwrap();

    let (layer, report) = diff_trees(&lower, &upper, Vec::new(), &WriteOptions::default()).unwrap();
    assert_eq!(report.opaque, 1, "replaced/ lost all its lower children: {report:?}");
    assert!(report.deleted >= 2, "{report:?}");
    copy_tree(&lower, &replay);
    let r = Root::open(&replay).unwrap();
    apply_layer(&r, &mut &layer[..], "diff", &ApplyOptions::default()).unwrap();
    let diffs = tree_diff(&tree(&replay), &tree(&upper));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // Unchanged files are not in the layer.
    let mut names = Vec::new();
    for e in tar::Archive::new(&layer[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(!names.iter().any(|n| n == "bin/tool"), "{names:?}");
    assert!(
        names.contains(&"etc/.wh.gone".to_string()) && names.contains(&"replaced/.wh..wh..opq".to_string()),
        "{names:?}"
    );
}

/// A new name linked to an unchanged lower file: the layer carries the
/// file and the link (as overlay copies the file up), so one inode with
/// both names comes back, here and in umoci.
#[test]
fn a_new_link_to_an_unchanged_file_stays_a_link() {
    use std::os::unix::fs::MetadataExt as _;
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, replay) = (t.path().join("lower"), t.path().join("upper"), t.path().join("replay"));
    for d in [&lower, &upper, &replay] {
        std::fs::create_dir(d).unwrap();
    }
    populate(&lower);
    copy_tree(&lower, &upper);
    std::fs::hard_link(upper.join("bin/tool"), upper.join("bin/tool-link")).unwrap();
    let (layer, _) = diff_trees(&lower, &upper, Vec::new(), &WriteOptions::default()).unwrap();
    let mut kinds = Vec::new();
    for e in tar::Archive::new(&layer[..]).entries().unwrap() {
        let e = e.unwrap();
        kinds.push((e.path().unwrap().display().to_string(), e.header().entry_type()));
    }
    assert!(kinds.contains(&("bin/tool".into(), tar::EntryType::Regular)), "{kinds:?}");
    assert!(kinds.contains(&("bin/tool-link".into(), tar::EntryType::Link)), "{kinds:?}");
    copy_tree(&lower, &replay);
    let r = Root::open(&replay).unwrap();
    apply_layer(&r, &mut &layer[..], "diff", &ApplyOptions::default()).unwrap();
    let (a, b) =
        (std::fs::metadata(replay.join("bin/tool")).unwrap(), std::fs::metadata(replay.join("bin/tool-link")).unwrap());
    assert_eq!(a.ino(), b.ino(), "one inode, two names");
    // Files that were linked in lower and stay untouched are not rewritten.
    assert!(!kinds.iter().any(|(n, _)| n == "etc/keep"), "{kinds:?}");
}

#[test]
fn archives_are_deterministic_with_a_clamped_mtime() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    std::fs::create_dir(&a).unwrap();
    populate(&a);
    let opts = WriteOptions { clamp_mtime: Some(1_000_000) };
    let (one, n) = archive_tree(&a, Vec::new(), &opts).unwrap();
    // Touch everything: the clamp hides the new times.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(a.join("etc/keep"), "same").unwrap();
    let (two, _) = archive_tree(&a, Vec::new(), &opts).unwrap();
    assert_eq!(one, two);
    assert!(n >= 10);
    for e in tar::Archive::new(&one[..]).entries().unwrap() {
        assert!(e.unwrap().header().mtime().unwrap() <= 1_000_000);
    }
}
