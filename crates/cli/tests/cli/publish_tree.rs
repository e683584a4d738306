//! `publish --read-only-tree`: the tree is a read-only mount for everyone
//! but the publisher, which writes it in a mount namespace of its own.

use super::*;

/// Lifts every mount stacked on `0` when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        for _ in 0..4 {
            let _ = Command::new("umount").arg(&self.0).output();
        }
    }
}

fn mounts_at(dir: &Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy();
    info.lines().filter(|l| l.split(' ').nth(4) == Some(&*dir)).count()
}

#[test]
fn a_read_only_tree_is_written_only_by_its_publisher() {
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let (_, store, target, _) = push_umoci_image(&reg, t.path());
    let tree = t.path().join("tree");
    let _unmount = Unmount(tree.clone());
    let url = format!("http://{target}");
    let tree_arg = tree.to_str().unwrap();
    ok(&store, &["publish", "convert-single-image", &url, tree_arg, "--skip-thin-image", "--read-only-tree", "-q"]);
    let motd = tree.join(format!("{target}/etc/motd"));
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "made by umoci\n");
    // Anyone else, root included, cannot change it.
    for attempt in [std::fs::write(tree.join("planted"), "x"), std::fs::write(&motd, "changed\n")] {
        assert_eq!(attempt.unwrap_err().raw_os_error(), Some(30), "EROFS");
    }
    assert_eq!(mounts_at(&tree), 1, "one read-only mount");
    // The next publisher finds it read-only already and still writes it.
    ok(&store, &["publish", "delete-image", tree_arg, &url, "--read-only-tree", "-q"]);
    assert!(!tree.join(&target).exists(), "the public path is gone");
    assert_eq!(mounts_at(&tree), 1, "not stacked again");
    let gc = json(&store, &["publish", "gc", tree_arg, "--grace-period", "0", "--read-only-tree", "--json"]);
    let kinds: Vec<&str> = gc["collected"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"flat") && kinds.contains(&"layer"), "{gc}");
    // Not for a CernVM-FS repository, which is read-only by itself.
    let out =
        ch(&store, &["publish", "delete-image", "repo.example.org", &url, "--backend", "cvmfs", "--read-only-tree"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--read-only-tree is for a local"));
}
