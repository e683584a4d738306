//! `build`, `stage`, `run`: Dockerfile builds (as root and rootless), the
//! build cache through a registry, staged OS images, `build --check` and
//! secrets.

use super::*;

#[test]
fn build_then_run_with_exit_codes_isolation_and_commit() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("msg"), "hello\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nCOPY msg /msg\nRUN cat /msg > /copy\nCMD [\"cat\", \"/copy\"]\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let first = json(&store, &["build", "-t", "app:1", "--timestamp", "0", "--json", c]);
    assert_eq!(first["tags"], serde_json::json!(["app:1"]));
    assert_eq!(first["steps"].as_array().unwrap().len(), 3);
    let again = json(&store, &["build", "-t", "app:2", "--timestamp", "0", "--json", c]);
    assert_eq!(again["digest"], first["digest"], "cached and reproducible");
    assert!(again["steps"].as_array().unwrap().iter().filter(|s| !s["layer"].is_null()).all(|s| s["cached"] == true));

    // The image's command, exit codes passed through, --network none.
    let out = ch(&store, &["run", "app:1"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(ch(&store, &["run", "app:1", "--", "sh", "-c", "exit 42"]).status.code(), Some(42));
    // The same through crun: the exit code, and the very same image built.
    let code = ch(&store, &["run", "--runtime", "crun", "app:1", "--", "sh", "-c", "exit 42"]).status.code();
    assert_eq!(code, Some(42));
    let crun =
        json(&store, &["build", "--runtime", "crun", "--no-cache", "-t", "app:crun", "--timestamp", "0", "--json", c]);
    assert_eq!(crun["digest"], first["digest"], "crun builds the same image");
    assert!(crun["steps"].as_array().unwrap().iter().all(|s| s["cached"] == false));
    let out =
        ch(&store, &["run", "--network", "none", "-e", "X=1", "app:1", "--", "sh", "-c", "ls /sys/class/net; echo $X"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "lo\n1\n");
    // -t: a new terminal, the command's controlling one, relayed to our stdout.
    let script = "test -t 0 && test -t 1 && echo tty; cut -d' ' -f7 /proc/self/stat; exit 4";
    let out = ch(&store, &["run", "-t", "app:1", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "tty", "{text:?}");
    assert_ne!(lines[1], "0", "a controlling terminal (tty_nr): {text:?}");
    // Limits: 64 MiB touched under --memory 16m is killed; --cpus is accepted.
    let dd = ["--", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];
    let limited: Vec<&str> = ["run", "--memory", "16m", "--cpus", "0.5", "app:1"].into_iter().chain(dd).collect();
    assert_eq!(ch(&store, &limited).status.code(), Some(137));
    let bad = ch(&store, &["run", "--memory", "lots", "app:1", "--", "true"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--memory"), "{bad:?}");
    // Changes are discarded unless committed.
    ok(&store, &["run", "app:1", "--", "sh", "-c", "echo gone > /msg"]);
    assert_eq!(String::from_utf8_lossy(&ch(&store, &["run", "app:1", "--", "cat", "/msg"]).stdout), "hello\n");
    ok(&store, &["run", "--commit", "app:patched", "app:1", "--", "sh", "-c", "echo patched > /msg"]);
    assert_eq!(String::from_utf8_lossy(&ch(&store, &["run", "app:patched", "--", "cat", "/msg"]).stdout), "patched\n");

    // --deny refuses what the engine owns (the Storlets rule), naming the line.
    std::fs::write(ctx.join("Dockerfile"), "FROM bb:1\nRUN true\nENTRYPOINT [\"sh\"]\n").unwrap();
    let out = ch(&store, &["build", "--deny", "ENTRYPOINT,CMD", "-t", "x:1", c]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:3") && err.contains("ENTRYPOINT"), "{err}");

    // The result goes to a docker-archive that the store loads back.
    let archive = t.path().join("app.tar");
    let dest = format!("docker-archive:{}", archive.display());
    ok(&store, &["build", "-t", "app:3", "--output", &dest, c]);
    let loaded = t.path().join("store2");
    ok(&loaded, &["load", archive.to_str().unwrap()]);
    assert_eq!(ok(&loaded, &["images", "--json"]).matches("app:3").count(), 1);
}

/// The Storlets tenant: a provider's `docker save` tar (written by skopeo)
/// in, RUN and COPY with ENTRYPOINT and CMD denied, a shell run in the
/// result, a docker-archive out that skopeo reads.
#[test]
fn storlets_flow_docker_archive_in_and_out() {
    require("skopeo");
    let t = tempfile::tempdir().unwrap();
    let provider = t.path().join("provider");
    import_busybox(t.path(), &provider);
    let layout = t.path().join("layout");
    ok(&provider, &["copy", "bb:1", &format!("oci:{}:bb", layout.display())]);
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    run(skopeo(t.path())
        .arg("copy")
        .arg(format!("oci:{}:bb", layout.display()))
        .arg(format!("docker-archive:{}:provider/base:1", ctx.join("base.tar").display())));
    std::fs::write(ctx.join("storlet.sh"), "#!/bin/sh\necho storlet\n").unwrap();
    let dockerfile = "FROM docker-archive:base.tar\nRUN echo tenant > /tenant.txt && mkdir /storlet\nCOPY --chmod=0755 storlet.sh /storlet/run.sh\n";
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();

    // The tenant's store starts empty.
    let store = t.path().join("tenant");
    let out_tar = t.path().join("out.tar");
    let c = ctx.to_str().unwrap();
    let out = format!("docker-archive:{}", out_tar.display());
    ok(&store, &["build", "--deny", "ENTRYPOINT,CMD", "-t", "tenant/storlet:1", "--output", &out, c]);
    let said = ok(&store, &["run", "tenant/storlet:1", "--", "sh", "-c", "cat /tenant.txt && /storlet/run.sh"]);
    assert_eq!(said, "tenant\nstorlet\n");

    // A CMD is refused at its line; the store is left as it was.
    let before = ok(&store, &["images", "--json"]);
    std::fs::write(ctx.join("Dockerfile"), format!("{dockerfile}CMD [\"/storlet/run.sh\"]\n")).unwrap();
    let res = ch(&store, &["build", "--deny", "ENTRYPOINT,CMD", "-t", "tenant/storlet:2", c]);
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("Dockerfile:4") && err.contains("CMD"), "{err}");
    assert_eq!(ok(&store, &["images", "--json"]), before);

    // skopeo reads the archive: three layers, our history, no command added.
    let inspect: Value = serde_json::from_str(&run(skopeo(t.path())
        .args(["inspect", "--config"])
        .arg(format!("docker-archive:{}", out_tar.display()))))
    .unwrap();
    assert_eq!(inspect["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    let history: Vec<String> = inspect["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str().map(str::to_owned))
        .collect();
    assert!(history.iter().any(|h| h.contains("echo tenant")), "{history:?}");
    assert!(inspect["config"]["Cmd"].is_null(), "{inspect}");
    let copied = t.path().join("copied");
    run(skopeo(t.path())
        .arg("copy")
        .arg(format!("docker-archive:{}", out_tar.display()))
        .arg(format!("oci:{}:x", copied.display())));
}

/// `--cache-to` on one machine, `--cache-from` on another: every step comes
/// from the shared cache (the RUN's random nonce proves it did not run
/// again) and the image is the same.
#[test]
fn the_build_cache_travels_through_a_registry() {
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let first = t.path().join("ci-1");
    import_busybox(t.path(), &first);
    // The base travels byte for byte (as it would through a registry).
    let base = format!("oci:{}:bb", t.path().join("bb").display());
    ok(&first, &["copy", "bb:1", &base]);
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("msg"), "hello\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nRUN cat /proc/sys/kernel/random/uuid > /nonce\nCOPY msg /msg\nRUN true\nENV A=1\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let cache = format!("docker://{}/cache/app:buildcache", reg.1);
    let built = json(&first, &["build", "--timestamp", "0", "--cache-to", &cache, "-t", "app:1", "--json", c]);
    assert!(built["steps"].as_array().unwrap().iter().all(|s| s["cached"] == false));
    assert_eq!(ok(&first, &["images", "--json"]).matches("buildcache").count(), 0, "the cache image is not kept");

    let second = t.path().join("ci-2");
    ok(&second, &["copy", &base, "bb:1"]);
    let again = json(&second, &["build", "--timestamp", "0", "--cache-from", &cache, "-t", "app:1", "--json", c]);
    let layer_steps: Vec<&Value> =
        again["steps"].as_array().unwrap().iter().filter(|s| !s["layer"].is_null()).collect();
    assert_eq!(layer_steps.len(), 2);
    assert!(layer_steps.iter().all(|s| s["cached"] == true), "{again}");
    assert_eq!(again["digest"], built["digest"], "the same image, the RUN not run again");

    // A cache that is not there yet: a warning, and the build goes on.
    let third = t.path().join("ci-3");
    ok(&third, &["copy", &base, "bb:1"]);
    let missing = format!("docker://{}/cache/none:buildcache", reg.1);
    let out = ch(&third, &["build", "--cache-from", &missing, "-t", "app:1", c]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: --cache-from"));
}

#[test]
fn stage_builds_a_candidate_from_flags_and_promote_retags_it() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    // The rootfs tarball comes from a store image's flattened export.
    import_busybox(t.path(), &store);
    let rootfs = t.path().join("rootfs.tar");
    ok(&store, &["export", "bb:1", "-o", rootfs.to_str().unwrap()]);
    let dir = t.path().join("os");
    std::fs::create_dir_all(dir.join("image_rootfs/bootstrap_scripts")).unwrap();
    std::fs::create_dir_all(dir.join("injected_volumes/etc")).unwrap();
    std::fs::write(dir.join("injected_volumes/etc/motd"), "welcome\n").unwrap();
    std::fs::write(dir.join("image_rootfs/bootstrap_scripts/stage3.sh"), "echo \"$ROLE\" > /etc/role\n").unwrap();
    std::fs::write(dir.join("image_rootfs/bootstrap_scripts/selfcheck.sh"), "grep -q web /etc/role\n").unwrap();
    let d = dir.to_str().unwrap();
    let args =
        ["stage", "--image", "corp/os", "--base-tarball", rootfs.to_str().unwrap(), "--command", "[\"/bin/sh\"]"];
    let report = json(&store, &[&args[..], &["-e", "ROLE=web", "--timestamp", "0", "--json", d]].concat());
    assert_eq!(report["tag"], "corp/os:candidate");
    let names: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["base", "inject", "stage3", "selfcheck"]);
    assert_eq!(report["skipped"], serde_json::json!(["stage2.sh"]));
    let said = ok(&store, &["run", "corp/os:candidate", "--", "cat", "/etc/motd", "/etc/role"]);
    assert_eq!(said, "welcome\nweb\n");
    let inspect = json(&store, &["inspect", "corp/os:candidate", "--json"]);
    assert!(inspect.to_string().contains("/bin/sh"), "{inspect}");

    let promoted = json(&store, &["stage", "promote", "corp/os", "2.0", "--json"]);
    assert_eq!(promoted["digest"], report["digest"]);
    assert!(ok(&store, &["images", "--json"]).contains("corp/os:2.0"));

    // A failing selfcheck exits non-zero, names the script, tags nothing new.
    let before = ok(&store, &["images", "--json"]);
    let out = ch(&store, &[&args[..], &["-e", "ROLE=db", d]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("selfcheck.sh") && err.contains("nothing was tagged"), "{err}");
    assert_eq!(ok(&store, &["images", "--json"]), before);
    let out = ch(&store, &["stage", t.path().join("missing").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

/// Rootless: build (RUN with a deletion and an opaque directory, COPY
/// --chown), stage and run as unprivileged users in user namespaces, one
/// with subordinate IDs (real owners, any USER) and one without (owners in
/// xattrs, root only); both build byte for byte the image root builds.
#[test]
fn rootless_build_stage_and_run_match_root() {
    rootless_ready();
    let t = tempfile::tempdir().unwrap();
    let root_store = t.path().join("root-store");
    import_busybox(t.path(), &root_store);
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("f"), "file\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nRUN echo rootless > /r && rm /bin/vi && mkdir -p /d && touch /d/x\nCOPY --chown=1000:50 f /f\nRUN rm -rf /d && mkdir /d && echo y > /d/y\n",
    )
    .unwrap();
    let base = format!("oci:{}:bb", t.path().join("bb").display());
    ok(&root_store, &["copy", "bb:1", &base]);
    let img = t.path().join("os");
    std::fs::create_dir_all(img.join("injected_volumes/etc")).unwrap();
    std::fs::create_dir_all(img.join("injected_volumes/bootstrap_scripts")).unwrap();
    std::fs::write(img.join("injected_volumes/etc/motd"), "rootless os\n").unwrap();
    std::fs::write(img.join("injected_volumes/bootstrap_scripts/stage2.sh"), "echo staged >> /etc/motd\n").unwrap();
    let rootfs = t.path().join("rootfs.tar");
    ok(&root_store, &["export", "bb:1", "-o", rootfs.to_str().unwrap()]);
    let c = ctx.to_str().unwrap();
    let by_root = json(&root_store, &["build", "--timestamp", "0", "-t", "app:1", "--json", c]);
    run(Command::new("chmod").arg("-R").arg("a+rX").arg(t.path()));

    // 65534 (nobody) has subordinate IDs; 65533 has none (one ID mapped).
    for uid in [65534u32, 65533] {
        let home = t.path().join(format!("home-{uid}"));
        std::fs::create_dir_all(&home).unwrap();
        run(Command::new("chown").arg(format!("{uid}:{uid}")).arg(&home));
        let store = home.join("store");
        user_ok(uid, &store, &["copy", &base, "bb:1"]);
        let built: Value =
            serde_json::from_str(&user_ok(uid, &store, &["build", "--timestamp", "0", "-t", "app:1", "--json", c]))
                .unwrap();
        assert_eq!(built["digest"], by_root["digest"], "{uid}: rootless builds the same image as root");

        let said = user_ok(
            uid,
            &store,
            &["run", "--network", "none", "app:1", "--", "sh", "-c", "cat /r /f; ls /d; id -u; ls /sys/class/net"],
        );
        assert_eq!(said, "rootless\nfile\ny\n0\nlo\n", "{uid}");
        for runtime in ["crun", "runc"] {
            let said = user_ok(uid, &store, &["run", "--runtime", runtime, "app:1", "--", "sh", "-c", "cat /r; id -u"]);
            assert_eq!(said, "rootless\n0\n", "{uid} {runtime}");
        }
        let other_user =
            as_user(uid, &store, &["run", "-u", "1000", "app:1", "--", "sh", "-c", "id -u; stat -c %u /f"]);
        if uid == 65534 {
            assert_eq!(String::from_utf8_lossy(&other_user.stdout), "1000\n1000\n", "{other_user:?}");
            // With subordinate IDs, RUN may chown and USER may be anyone.
            let sub = ctx.join("Dockerfile.sub");
            std::fs::write(
                &sub,
                "FROM app:1\nRUN chown 1000:50 /d/y && mkdir -m 1777 /tmp\nUSER 1000\nRUN id -u > /tmp/me\n",
            )
            .unwrap();
            user_ok(uid, &store, &["build", "-f", sub.to_str().unwrap(), "-t", "app:sub", c]);
            let said = user_ok(uid, &store, &["run", "app:sub", "--", "sh", "-c", "cat /tmp/me; stat -c %u:%g /d/y"]);
            assert_eq!(said, "1000\n1000:50\n");
        } else {
            assert!(!other_user.status.success());
            assert!(String::from_utf8_lossy(&other_user.stderr).contains("subordinate IDs"), "{other_user:?}");
        }
        let out = as_user(uid, &store, &["run", "--memory", "16m", "app:1", "--", "true"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cgroup"), "{out:?}");

        let staged = user_ok(
            uid,
            &store,
            &["stage", "--image", "me/os", "--base-tarball", rootfs.to_str().unwrap(), img.to_str().unwrap()],
        );
        assert!(staged.contains("me/os:candidate"), "{staged}");
        assert_eq!(
            user_ok(uid, &store, &["run", "me/os:candidate", "--", "cat", "/etc/motd"]),
            "rootless os\nstaged\n"
        );
    }
}

/// `build --check`: plans without running or pulling, warnings and errors
/// with their Dockerfile lines (text and JSON), non-zero on an error.
#[test]
fn build_check_reports_lines_without_building() {
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM nowhere.invalid/base:1 as Build\nCMD run me\n").unwrap();
    let store = t.path().join("store");
    let out = ok(&store, &["build", "--check", ctx.to_str().unwrap(), "--build-arg", "X=1"]);
    assert!(
        out.contains("Dockerfile:1: warning: FromAsCasing")
            && out.contains("Dockerfile:2: warning: JSONArgsRecommended"),
        "{out}"
    );
    assert!(out.contains("UnusedBuildArgs"), "{out}");
    assert!(!store.join("blobs").exists(), "nothing pulled or stored");
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nRUN --mount=type=cache,target=/c,sharing=private true\n")
        .unwrap();
    let failed = ch(&store, &["build", "--check", ctx.to_str().unwrap(), "--json"]);
    assert!(!failed.status.success());
    let v: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(v["errors"][0]["line"], 2, "{v}");
    // `# check=`: skipped rules are not reported; error=true fails the
    // check and the build on what is left; an unknown key is an error.
    let c = ctx.to_str().unwrap();
    std::fs::write(ctx.join("Dockerfile"), "# check=skip=JSONArgsRecommended\nFROM scratch\nCMD run me\n").unwrap();
    let out = ok(&store, &["build", "--check", c]);
    assert!(out.contains("0 warnings"), "{out}");
    std::fs::write(ctx.join("Dockerfile"), "# check=error=true\nFROM scratch\nCMD run me\n").unwrap();
    let failed = ch(&store, &["build", "--check", c]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success() && stderr.contains("error=true"), "{stderr}");
    let failed = ch(&store, &["build", "-t", "never:1", c]);
    assert!(!failed.status.success(), "{}", String::from_utf8_lossy(&failed.stderr));
    assert!(!ch(&store, &["inspect", "never:1"]).status.success());
    std::fs::write(ctx.join("Dockerfile"), "# check=fail=yes\nFROM scratch\n").unwrap();
    let failed = ch(&store, &["build", "--check", c]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success() && stderr.contains("Dockerfile:1:1: check directive: unknown key"), "{stderr}");
    // --label over the Dockerfile's, --iidfile, --progress.
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nLABEL a=1\nCOPY f /f\n").unwrap();
    std::fs::write(ctx.join("f"), "x").unwrap();
    let iid = t.path().join("iid");
    let c = ctx.to_str().unwrap();
    ok(
        &store,
        &[
            "build",
            c,
            "-t",
            "lbl:1",
            "--label",
            "a=3",
            "--label",
            "b=2",
            "--iidfile",
            iid.to_str().unwrap(),
            "--progress",
            "plain",
            "--annotation",
            "org.opencontainers.image.source=https://example.invalid/x",
        ],
    );
    let raw = ok(&store, &["inspect", "lbl:1", "--raw"]);
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(manifest["annotations"]["org.opencontainers.image.source"], "https://example.invalid/x", "{raw}");
    let info = json(&store, &["inspect", "lbl:1", "--json"]);
    assert_eq!(info["labels"], serde_json::json!({"a": "3", "b": "2"}), "{info}");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), info["id"].as_str().unwrap());
    assert!(!ch(&store, &["build", c, "--progress", "fancy"]).status.success(), "an unknown --progress is refused");
    // tty: only on a terminal; there, the running step is redrawn in place
    // and what RUN prints comes above it.
    let no_tty = ch(&store, &["build", c, "--progress", "tty"]);
    assert!(String::from_utf8_lossy(&no_tty.stderr).contains("not a terminal"), "{no_tty:?}");
    import_busybox(t.path(), &store);
    std::fs::write(ctx.join("Dockerfile"), "FROM bb:1\nRUN echo printed by run\n").unwrap();
    let line = format!(
        "{} --store {} build --progress tty --no-cache -t tty:1 {c}",
        env!("CARGO_BIN_EXE_cargohold"),
        store.display()
    );
    let shown = run(Command::new("script").args(["-qec", &line, "/dev/null"]));
    assert!(shown.contains("\x1b[K") && shown.contains("printed by run"), "{shown:?}");
    assert!(shown.contains("#0 line 2: RUN /bin/sh -c echo printed by run ["), "{shown:?}");
    assert!(ch(&store, &["inspect", "tty:1"]).status.success());
}

/// `build --secret` from a file and from the environment reach
/// `RUN --mount=type=secret`, and the image keeps neither.
#[test]
fn build_secrets_from_files_and_the_environment() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nRUN --mount=type=secret,id=f,required --mount=type=secret,id=e,required,target=/e \
         sh -c 'cat /run/secrets/f /e | wc -c > /n'\n",
    )
    .unwrap();
    let file = t.path().join("secret.txt");
    std::fs::write(&file, "filesecret").unwrap();
    let out = bin()
        .env("MY_SECRET", "envsecret")
        .arg("--store")
        .arg(&store)
        .args(["build", ctx.to_str().unwrap(), "-t", "sec:1", "--secret"])
        .arg(format!("id=f,src={}", file.display()))
        .args(["--secret", "id=e,env=MY_SECRET"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = t.path().join("root");
    ok(&store, &["unpack", "sec:1", root.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(root.join("n")).unwrap().trim(), "19");
    assert!(!root.join("run/secrets").exists() && !root.join("e").exists());
    let missing = ch(&store, &["build", ctx.to_str().unwrap(), "--no-cache", "--secret", "id=e,env=NOT_SET_ANYWHERE"]);
    assert!(!missing.status.success());
    // --build-context: a base image by another name, and a directory.
    let extra = t.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("f"), "from elsewhere\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM base\nCOPY --from=extra f /f\n").unwrap();
    ok(
        &store,
        &[
            "build",
            ctx.to_str().unwrap(),
            "-t",
            "named:1",
            "--build-context",
            "base=docker-image://bb:1",
            "--build-context",
            &format!("extra={}", extra.display()),
        ],
    );
    let root = t.path().join("named");
    ok(&store, &["unpack", "named:1", root.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "from elsewhere\n");
    assert!(root.join("bin/busybox").is_file(), "FROM base was bb:1");
}
