//! `publish`: wish lists into a tree (kill -9, concurrent runs, bad lists),
//! DUCC's per-registry credentials, and `--read-only-tree` (a read-only
//! mount for everyone but the publisher, which writes it in a mount
//! namespace of its own).

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
    // Mountless publishing is CernVM-FS's, and has no transactions for layers.
    let out = ch(&store, &["publish", "gc", tree_arg, "--mountless"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--mountless is for --backend cvmfs")
    );
    let out = ch(
        &store,
        &[
            "publish",
            "convert-single-image",
            &url,
            "repo.example.org",
            "--backend",
            "cvmfs",
            "--mountless",
            "--cvmfs-layers",
            "transaction",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("mountless publishing has no transactions"), "{err}");
}

/// Checks the publish tree's invariants: every layer and flat complete,
/// every public link relative and resolving to a flat.
fn assert_tree_valid(root: &Path) {
    // A publisher killed before it made the tree left none: nothing to check.
    if !root.exists() {
        return;
    }
    for (dir, needs) in [(".layers", vec!["layerfs", ".metadata/layers.json"]), (".flat", vec![])] {
        let Ok(shards) = std::fs::read_dir(root.join(dir)) else { continue };
        for shard in shards {
            for entry in std::fs::read_dir(shard.unwrap().path()).unwrap() {
                let p = entry.unwrap().path();
                assert!(p.is_dir(), "{} is not a directory", p.display());
                for n in &needs {
                    assert!(p.join(n).exists(), "{} lacks {n}", p.display());
                }
            }
        }
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if d == root && name.starts_with('.') {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                assert!(target.is_relative(), "{} -> {}", p.display(), target.display());
                assert!(p.join("etc/motd").is_file(), "{} does not resolve to a complete flat", p.display());
            } else if m.is_dir() {
                stack.push(p);
            }
        }
    }
}

#[test]
fn publish_survives_kill_9_concurrent_runs_and_bad_wishlists() {
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    for tag in ["1", "2"] {
        ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), &format!("docker://{}/team/app:{tag}", reg.1)]);
    }
    let root = t.path().join("tree");
    let wishlist = t.path().join("wishlist.yaml");
    std::fs::write(
        &wishlist,
        format!("version: 1\nuser: me\ncvmfs_repo: {}\ninput:\n  - 'http://{}/team/app:*'\n", root.display(), reg.1),
    )
    .unwrap();
    let wl = wishlist.to_str().unwrap();
    let check = json(&store, &["publish", "check", wl, "--json"]);
    assert_eq!(check["inputs"].as_array().unwrap().len(), 1);

    // Killed at various points, over and over: the tree stays valid.
    for i in 0..8u64 {
        let mut child = bin()
            .arg("--store")
            .arg(&store)
            .args(["publish", "convert", wl, "--skip-thin-image", "--convert-again", "--overwrite-layers", "-q"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20 + i * 45));
        let _ = child.kill();
        let _ = child.wait();
        assert_tree_valid(&root);
    }
    // Two publishers at once on one tree: both succeed, the tree is whole.
    let spawn = || {
        bin()
            .arg("--store")
            .arg(&store)
            .args(["publish", "convert", wl, "--skip-thin-image", "--convert-again", "--json"])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    for out in [&a, &b] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["images"].as_array().unwrap().len(), 2);
    }
    assert_tree_valid(&root);
    assert!(root.join(format!("{}/team/app:1/etc/motd", reg.1)).is_file());
    assert!(root.join(format!("{}/team/app:2/etc/motd", reg.1)).is_file());
    assert_eq!(std::fs::read_dir(root.join(".cargohold/staging")).unwrap().count(), 0, "stale staging cleaned");

    // A third run has nothing to do.
    let again = json(&store, &["publish", "convert", wl, "--skip-thin-image", "--json"]);
    assert!(again["images"].as_array().unwrap().iter().all(|i| i["status"] == "skipped"), "{again}");

    // ignoreErrors (DUCC's key, and DUCC_IGNORE_ERRORS_FILE): a failing
    // image covered by a pattern is reported, and does not fail the run.
    let ignoring = t.path().join("ignoring.yaml");
    let missing = format!("http://{}/team/missing:1", reg.1);
    let with_ignores = |ignores: &str| {
        format!(
            "version: 1\ncvmfs_repo: {}\ninput:\n  - '{missing}'\n  - 'http://{}/team/app:1'\n{ignores}",
            root.display(),
            reg.1
        )
    };
    std::fs::write(&ignoring, with_ignores("")).unwrap();
    let out = ch(&store, &["publish", "convert", ignoring.to_str().unwrap(), "--skip-thin-image", "--json"]);
    assert!(!out.status.success(), "a failure not ignored fails the run");
    std::fs::write(&ignoring, with_ignores(&format!("ignoreErrors:\n  - 'http://{}/team/miss*'\n", reg.1))).unwrap();
    let notes = t.path().join("notes.jsonl");
    let v = json(
        &store,
        &[
            "publish",
            "convert",
            ignoring.to_str().unwrap(),
            "--skip-thin-image",
            "--json",
            "-n",
            notes.to_str().unwrap(),
        ],
    );
    // DUCC's notification format: flat string maps, a closing line for
    // every image (the failed one too), run start and end.
    let lines: Vec<std::collections::HashMap<String, String>> = std::fs::read_to_string(&notes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: not DUCC's string map: {e}")))
        .collect();
    let actions: Vec<&str> = lines.iter().map(|l| l["action"].as_str()).collect();
    assert_eq!((actions.first(), actions.last()), (Some(&"start_run"), Some(&"end_run")), "{actions:?}");
    let ends: Vec<_> = lines.iter().filter(|l| l["action"] == "end_image_conversion").collect();
    assert_eq!(ends.len(), 2, "{lines:?}");
    assert!(
        ends.iter().any(|l| l["status"] == "error" && l["image"].contains("team/missing") && !l["error"].is_empty())
    );
    let starts: Vec<_> = lines.iter().filter(|l| l["action"] == "start_image_conversion").collect();
    assert!(ends.iter().all(|e| starts.iter().any(|s| s["id"] == e["id"] && e["id"].len() == 36)));
    assert!(lines.iter().all(|l| l["time"].contains(" - ") && l["time"].len() == 26), "{lines:?}");
    let failed: Vec<&Value> = v["images"].as_array().unwrap().iter().filter(|i| i["status"] == "failed").collect();
    assert!(failed.len() == 1 && failed[0]["ignored"] == true, "{v}");
    std::fs::write(&ignoring, with_ignores("")).unwrap();
    let file = t.path().join("ignore-errors.yaml");
    std::fs::write(&file, format!("ignoreErrors: ['{}/team/missing:*']\n", reg.1)).unwrap();
    let out = bin()
        .env("DUCC_IGNORE_ERRORS_FILE", &file)
        .arg("--store")
        .arg(&store)
        .args(["publish", "convert", ignoring.to_str().unwrap(), "--skip-thin-image", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // expand-wildcard: one pattern, or wish lists into DUCC's YAML.
    let pattern = format!("http://{}/team/app:*", reg.1);
    let listed = ok(&store, &["publish", "expand-wildcard", &pattern]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let expanded = t.path().join("expanded.yaml");
    ok(&store, &["publish", "expand-wildcard", "-w", wl, "-o", expanded.to_str().unwrap()]);
    let yaml = std::fs::read_to_string(&expanded).unwrap();
    assert!(yaml.starts_with("images:") && yaml.contains("team/app:1") && yaml.contains("team/app:2"), "{yaml}");
    assert!(!ch(&store, &["publish", "expand-wildcard", &format!("http://{}/team/nothing:*", reg.1)]).status.success());

    // delete-image: the public path and metadata go (the data stays for gc).
    let tree = root.to_str().unwrap();
    let two = format!("http://{}/team/app:2", reg.1);
    let public2 = root.join(format!("{}/team/app:2", reg.1));
    ok(&store, &["publish", "delete-image", tree, &two, "--dry-run"]);
    assert!(public2.exists(), "a dry run deletes nothing");
    ok(&store, &["publish", "delete-image", tree, &two]);
    assert!(!public2.exists() && !root.join(format!(".metadata/{}/team/app:2", reg.1)).exists());
    assert!(root.join(format!("{}/team/app:1/etc/motd", reg.1)).is_file(), "the other tag's flat is whole");
    assert!(!ch(&store, &["publish", "delete-image", tree, &two]).status.success(), "not published any more");

    // prune-images: what the registry no longer has is unpublished.
    ok(&store, &["publish", "convert", wl, "--skip-thin-image", "-q"]);
    let v = json(&store, &["publish", "prune-images", tree, wl, "--json"]);
    assert_eq!(v["images"], serde_json::json!([]), "everything is still in the registry: {v}");
    ok(&store, &["delete", &format!("{}/team/app:2", reg.1)]);
    let v = json(&store, &["publish", "prune-images", tree, wl, "--json", "--dry-run"]);
    assert!(public2.exists(), "{v}");
    let v = json(&store, &["publish", "prune-images", tree, wl, "--json"]);
    let gone: Vec<&str> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["deleted"] == true)
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert!(!gone.is_empty() && !public2.exists(), "{v}");
    // (Both tags were one manifest: put them back for what follows.)
    for tag in ["1", "2"] {
        ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), &format!("docker://{}/team/app:{tag}", reg.1)]);
    }

    // A bad wish list: a clear error naming it, the tree untouched.
    let snapshot = |p: &Path| {
        let mut v = Vec::new();
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                }
                v.push((e.path(), m.len(), m.file_type().is_symlink()));
            }
        }
        v.sort();
        v
    };
    let before = snapshot(&root);
    let bad = t.path().join("bad.yaml");
    std::fs::write(&bad, format!("version: 2\ncvmfs_repo: {}\ninput: []\n", root.display())).unwrap();
    let out = ch(&store, &["publish", "convert", bad.to_str().unwrap(), "--skip-thin-image"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("version must be 1"), "{err}");
    assert_eq!(snapshot(&root), before);

    // The loop: converts into a fresh tree, goes round again, and stops
    // cleanly on SIGTERM.
    let root2 = t.path().join("tree2");
    let wl2 = t.path().join("loop.yaml");
    std::fs::write(
        &wl2,
        format!("version: 1\ncvmfs_repo: {}\ninput:\n  - 'http://{}/team/app:1'\n", root2.display(), reg.1),
    )
    .unwrap();
    let notes = t.path().join("loop.jsonl");
    let mut child = bin()
        .arg("--store")
        .arg(&store)
        .args(["publish", "loop", wl2.to_str().unwrap(), "--interval", "1", "--skip-thin-image", "-q", "-n"])
        .arg(&notes)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Two rounds: the second one skips the image.
    while std::fs::read_to_string(&notes).unwrap_or_default().matches("skip_image").count() < 1 {
        assert!(std::time::Instant::now() < deadline, "the loop did not go round twice");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(root2.join(format!("{}/team/app:1/etc/motd", reg.1)).is_file());
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the loop did not stop on SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// DUCC's per-registry input credentials (`DUCC_AUTH_REGISTRIES`,
/// `DUCC_<name>_IDENT/_USER/_PASS`) reach the registry they name.
#[test]
fn publish_reads_with_duccs_per_registry_credentials() {
    let reg = registry_with(Some(("ducc", "s3cret")));
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(
        &store,
        &[
            "--creds",
            "ducc:s3cret",
            "copy",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/team/app:1", reg.1),
        ],
    );
    let tree = t.path().join("tree");
    let publish = |with_env: bool| {
        let mut c = no_stored_creds(t.path());
        c.arg("--store")
            .arg(&store)
            .args(["publish", "convert-single-image", &format!("http://{}/team/app:1", reg.1)])
            .arg(&tree)
            .args(["--skip-thin-image", "-q"]);
        if with_env {
            c.env("DUCC_AUTH_REGISTRIES", "local")
                .env("DUCC_local_IDENT", format!("http://{}", reg.1))
                .env("DUCC_local_USER", "ducc")
                .env("DUCC_local_PASS", "s3cret");
        }
        c.output().unwrap()
    };
    assert!(!publish(false).status.success(), "no credentials, no image");
    let out = publish(true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(tree.join(format!("{}/team/app:1/etc/motd", reg.1)).is_file());
    // DUCC's convert-single-image flags: a thin image only by name, pushed
    // as -u with DUCC_OUTPUT_REGISTRY_PASS; -r attempts.
    let thin = format!("http://{}/team/app_thin:1", reg.1);
    let out = no_stored_creds(t.path())
        .env("DUCC_AUTH_REGISTRIES", "local")
        .env("DUCC_local_IDENT", &reg.1)
        .env("DUCC_local_USER", "ducc")
        .env("DUCC_local_PASS", "s3cret")
        .env("DUCC_OUTPUT_REGISTRY_PASS", "s3cret")
        .arg("--store")
        .arg(&store)
        .args(["publish", "convert-single-image", &format!("http://{}/team/app:1", reg.1)])
        .arg(&tree)
        .args(["--thin-image-name", &thin, "-u", "ducc", "-r", "2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tags = json(&store, &["--creds", "ducc:s3cret", "tags", &format!("{}/team/app_thin", reg.1), "--json"]);
    assert!(tags.to_string().contains("\"1\""), "{tags}");
}
