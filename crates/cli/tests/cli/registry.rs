//! Talking to a registry (Debian's docker-registry): push, pull, copy,
//! tags, catalog, referrers, delete, login and credentials by registry.

use super::*;

#[test]
fn push_tags_pull_and_copy_through_a_registry() {
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let (_, store, target, digest) = push_umoci_image(&reg, t.path());
    ok(&store, &["tag", "app:1", &target]);
    ok(&store, &["push", &target]);
    let tags = json(&store, &["tags", &format!("{}/team/app", reg.1), "--json"]);
    assert_eq!(tags["tags"], serde_json::json!(["1"]));

    let other = t.path().join("other-store");
    let pulled = json(&other, &["pull", &target, "--json"]);
    assert_eq!(pulled["report"]["manifest"]["digest"], digest.as_str());
    assert_eq!(json(&other, &["inspect", &target, "--json"])["digest"], digest.as_str());
    // Registry to registry, and inspect of a registry image.
    let copied =
        json(&other, &["copy", &format!("docker://{target}"), &format!("docker://{}/team/copy:2", reg.1), "--json"]);
    assert_eq!(copied["blobs_mounted"], 1, "same registry: the layer is mounted, not sent: {copied}");
    let remote = json(&other, &["inspect", &format!("docker://{}/team/copy:2", reg.1), "--json"]);
    assert_eq!(remote["digest"], digest.as_str());
    // --digestfile, as skopeo's and podman's: the digest alone, no newline;
    // a symlink is written through.
    let (ours, theirs) = (t.path().join("ours.digest"), t.path().join("theirs.digest"));
    let layout = format!("oci:{}:1", t.path().join("layout").display());
    ok(&other, &["copy", &format!("docker://{target}"), &layout, "--digestfile", ours.to_str().unwrap()]);
    run(skopeo(t.path())
        .args(["copy", "-q", "--src-tls-verify=false", "--digestfile"])
        .arg(&theirs)
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:1", t.path().join("skopeo-layout").display())));
    assert_eq!(std::fs::read_to_string(&ours).unwrap(), std::fs::read_to_string(&theirs).unwrap());
    assert_eq!(std::fs::read_to_string(&ours).unwrap(), digest);
    let real = t.path().join("real.digest");
    let link = t.path().join("link.digest");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ok(&store, &["push", "app:1", &format!("{}/team/pushed:1", reg.1), "--digestfile", link.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&real).unwrap(), digest);
    // A missing image: an error naming it.
    let out = ch(&other, &["pull", &format!("{}/team/nope:1", reg.1)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("team/nope"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn digest_catalog_referrers_and_delete() {
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let (layout, store, target, digest) = push_umoci_image(&reg, t.path());
    assert_eq!(ok(&store, &["digest", &target]).trim(), digest);
    assert_eq!(ok(&store, &["digest", &format!("oci:{}:v1", layout.display())]).trim(), digest);
    let catalog = json(&store, &["catalog", &reg.1, "--json"]);
    assert_eq!(catalog["repositories"], serde_json::json!(["team/app"]));
    let refs = json(&store, &["referrers", &target, "--json"]);
    assert_eq!(refs["subject"], digest.as_str());
    assert_eq!(refs["manifests"], serde_json::json!([]));
    let deleted = json(&store, &["delete", &target, "--json"]);
    assert_eq!(deleted["target"], digest.as_str());
    let out = ch(&store, &["digest", &target]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tag 1"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn login_logout_and_credential_helpers() {
    let reg = registry_with(Some(("alice", "s3cret")));
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    let config = t.path().join("docker");
    let with_env = |args: &[&str], stdin: Option<&str>| -> Output {
        use std::io::Write as _;
        let mut cmd = bin();
        cmd.env("DOCKER_CONFIG", &config)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env("PATH", format!("{}:{}", t.path().join("bin").display(), std::env::var("PATH").unwrap()))
            .arg("--store")
            .arg(&store)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let target = format!("{}/private/app:1", reg.1);

    // Not logged in: refused. A wrong password: login fails, nothing written.
    assert!(!with_env(&["push", "app:1", &target], None).status.success());
    let out = with_env(&["login", &reg.1, "-u", "alice", "--password-stdin"], Some("wrong\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&reg.1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!config.join("config.json").exists());

    // Login writes Docker's file (mode 0600), which skopeo reads too.
    let out = with_env(&["login", &reg.1, "-u", "alice", "--password-stdin"], Some("s3cret\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(config.join("config.json")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(with_env(&["push", "app:1", &target], None).status.success());
    run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--authfile"])
        .arg(config.join("config.json"))
        .arg(format!("docker://{target}")));
    assert!(with_env(&["logout", &reg.1], None).status.success());
    assert!(!with_env(&["pull", &target], None).status.success());
    assert!(!with_env(&["logout", &reg.1], None).status.success(), "a second logout says there was nothing");

    // A credsStore helper (the docker-credential-* protocol): login stores
    // through it, pulls get through it.
    let bin_dir = t.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let vault = t.path().join("vault");
    let helper = bin_dir.join("docker-credential-testvault");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nset -e\nvault={}\ncase \"$1\" in\n  store) cat > \"$vault\" ;;\n  get) server=$(cat); if [ -s \"$vault\" ]; then cat \"$vault\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) server=$(cat); rm -f \"$vault\" ;;\nesac\n",
            vault.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(config.join("config.json"), r#"{"credsStore":"testvault"}"#).unwrap();
    let out = with_env(&["login", &reg.1, "-u", "alice", "-p", "s3cret"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = std::fs::read_to_string(&vault).unwrap();
    assert!(stored.contains("\"Secret\":\"s3cret\""), "{stored}");
    let written = std::fs::read_to_string(config.join("config.json")).unwrap();
    assert!(!written.contains("s3cret"), "the secret stays in the helper: {written}");
    let out = with_env(&["pull", &target], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(with_env(&["logout", &reg.1], None).status.success());
    assert!(!vault.exists());
}

/// Credentials go to the registry they belong to: a copy between two
/// registries with their own users takes --src-creds and --dest-creds,
/// `--creds` with two registries is refused (it went to both), and a
/// registry that asks for nothing never sees the other's password.
#[test]
fn credentials_only_go_to_their_registry() {
    let a = registry_with(Some(("alice", "apass")));
    let b = registry_with(Some(("bob", "bpass")));
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let env = |args: &[&str]| -> Output {
        bin()
            .env("DOCKER_CONFIG", t.path().join("no-docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env("XDG_CONFIG_HOME", t.path().join("no-config"))
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .unwrap()
    };
    let (from, to) = (format!("docker://{}/team/bb:1", a.1), format!("docker://{}/team/bb:1", b.1));
    let pushed = env(&["--creds", "alice:apass", "push", "bb:1", &from[9..]]);
    assert!(pushed.status.success(), "{pushed:?}");
    let both = env(&["--creds", "alice:apass", "copy", &from, &to]);
    let err = String::from_utf8_lossy(&both.stderr);
    assert!(!both.status.success() && err.contains("--src-creds"), "{err}");
    let copied = env(&["copy", "--src-creds", "alice:apass", "--dest-creds", "bob:bpass", &from, &to]);
    assert!(copied.status.success(), "{copied:?}");
    let check = env(&["--creds", "bob:bpass", "digest", &to[9..]]);
    assert!(check.status.success(), "{check:?}");
    // skopeo's --src-username/--src-password: the same, in two parts.
    let to4 = format!("docker://{}/team/bb:4", b.1);
    let parts = ["--src-username", "alice", "--src-password", "apass", "--dest-username", "bob", "--dest-password"];
    let copied = env(&[&["copy"][..], &parts, &["bpass", &from, &to4]].concat());
    assert!(copied.status.success(), "{copied:?}");
    let half = env(&["copy", "--src-username", "alice", &from, &to4]);
    assert!(!half.status.success() && String::from_utf8_lossy(&half.stderr).contains("--src-password"), "{half:?}");
    let not_registry = env(&["copy", "--dest-username", "bob", "--dest-password", "x", &from, "oci:/tmp/y:1"]);
    let err = String::from_utf8_lossy(&not_registry.stderr);
    assert!(err.contains("--dest-username is for a registry"), "{err}");
    let bad = env(&["copy", "--src-creds", "alice:apass", "bb:1", &to]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--src-creds is for a registry"), "{bad:?}");

    // --authfile, --src-authfile and --dest-authfile, as skopeo's: each
    // registry's credentials from the file given for it, and no other.
    let auth_file = |name: &str, registry: &str, user_pass: &str| {
        let auth = run(Command::new("sh").arg("-c").arg(format!("printf {user_pass} | base64")));
        let path = t.path().join(name);
        std::fs::write(&path, format!("{{\"auths\": {{\"{registry}\": {{\"auth\": \"{}\"}}}}}}", auth.trim())).unwrap();
        path.display().to_string()
    };
    let (a_json, b_json) = (auth_file("a.json", &a.1, "alice:apass"), auth_file("b.json", &b.1, "bob:bpass"));
    let to2 = format!("docker://{}/team/bb:2", b.1);
    let sides = env(&["copy", "--src-authfile", &a_json, "--dest-authfile", &b_json, &from, &to2]);
    assert!(sides.status.success(), "{sides:?}");
    let only_a = env(&["--authfile", &a_json, "copy", &from, &format!("docker://{}/team/bb:3", b.1)]);
    let err = String::from_utf8_lossy(&only_a.stderr);
    assert!(!only_a.status.success() && err.contains("wants a user name and password"), "{err}");
    let mixed = env(&["--authfile", &b_json, "copy", "--src-authfile", &a_json, &from, &to2]);
    assert!(mixed.status.success(), "{mixed:?}");
    // A sync YAML's registry without credentials of its own: --src-authfile's.
    let yaml = t.path().join("authed.yaml");
    std::fs::write(&yaml, format!("{}:\n  images:\n    team/bb: ['1']\n", a.1)).unwrap();
    let synced = |extra: &[&str], dir: &str| {
        let to = t.path().join(dir).display().to_string();
        env(&[&["sync", "-s", "yaml", "-d", "oci"][..], extra, &[yaml.to_str().unwrap(), &to]].concat())
    };
    assert!(!synced(&[], "no-auth").status.success(), "alice's registry wants her password");
    let out = synced(&["--src-authfile", &a_json], "with-auth");
    assert!(out.status.success(), "{out:?}");
    let listed = env(&["--authfile", &a_json, "tags", &format!("{}/team/bb", a.1)]);
    assert!(listed.status.success(), "{listed:?}");
    let missing = env(&["--authfile", "/nonexistent/auth.json", "tags", &format!("{}/team/bb", a.1)]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("--authfile /nonexistent/auth.json: no such file"), "{err}");
    let both = env(&["copy", "--src-authfile", &a_json, "--src-creds", "alice:apass", &from, &to2]);
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"), "{both:?}");
    let not_registry = env(&["copy", "--dest-authfile", &b_json, &from, "oci:/tmp/x:1"]);
    let err = String::from_utf8_lossy(&not_registry.stderr);
    assert!(err.contains("--dest-authfile is for a registry"), "{err}");
    // login writes the --authfile given, which then serves.
    let fresh = t.path().join("fresh.json").display().to_string();
    let login = env(&["--authfile", &fresh, "login", &b.1, "-u", "bob", "-p", "bpass"]);
    assert!(login.status.success(), "{login:?}");
    let digest = env(&["--authfile", &fresh, "digest", &to2[9..]]);
    assert!(digest.status.success(), "{digest:?}");
    assert!(env(&["--authfile", &fresh, "logout", &b.1]).status.success());
    assert!(!env(&["--authfile", &fresh, "digest", &to2[9..]]).status.success(), "logged out");

    // podman's default auth.json (~/.config/containers/auth.json) is read.
    let home = t.path().join("home");
    std::fs::create_dir_all(home.join(".config/containers")).unwrap();
    let auth = run(Command::new("sh").arg("-c").arg("printf alice:apass | base64"));
    std::fs::write(
        home.join(".config/containers/auth.json"),
        format!("{{\"auths\": {{\"{}\": {{\"auth\": \"{}\"}}}}}}", a.1, auth.trim()),
    )
    .unwrap();
    let tags = |with_home: bool| {
        let mut cmd = bin();
        cmd.env("DOCKER_CONFIG", t.path().join("no-docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", if with_home { home.clone() } else { t.path().join("nobody-home") })
            .arg("--store")
            .arg(&store)
            .args(["tags", &format!("{}/team/bb", a.1)]);
        cmd.output().unwrap()
    };
    assert!(!tags(false).status.success(), "no credentials, no tags");
    let listed = tags(true);
    assert!(listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains('1'), "{listed:?}");
    // --src-no-creds, as skopeo's: the stored credentials stay unsent, and
    // the registry, asking for them, refuses.
    let copy_out = |extra: &[&str], to: &str| {
        bin()
            .env("DOCKER_CONFIG", t.path().join("no-docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", &home)
            .arg("--store")
            .arg(&store)
            .arg("copy")
            .args(extra)
            .args([from.as_str(), to])
            .output()
            .unwrap()
    };
    let layout = |name: &str| format!("oci:{}:1", t.path().join(name).display());
    let no_creds = bin()
        .env("DOCKER_CONFIG", t.path().join("no-docker-config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", &home)
        .args(["--no-creds", "tags", &format!("{}/team/bb", a.1)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&no_creds.stderr);
    assert!(!no_creds.status.success() && err.contains("wants a user name and password"), "{err}");
    let anon = copy_out(&["--src-no-creds"], &layout("anon"));
    let err = String::from_utf8_lossy(&anon.stderr);
    assert!(!anon.status.success() && err.contains("wants a user name and password"), "{err}");
    let blobs = std::fs::read_dir(t.path().join("anon/blobs/sha256")).map_or(0, |d| d.count());
    assert_eq!(blobs, 0, "nothing copied");
    assert!(copy_out(&[], &layout("stored")).status.success());
    let out = copy_out(&["--dest-no-creds"], &layout("x"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dest-no-creds is for a registry"), "{out:?}");
    let out = copy_out(&["--src-no-creds", "--src-creds", "alice:apass"], &layout("x"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{out:?}");

    // The most specific auth.json key wins: a wrong password for the host,
    // the right one for the repository.
    let wrong = run(Command::new("sh").arg("-c").arg("printf alice:nope | base64"));
    let keyed = t.path().join("keyed.json");
    std::fs::write(
        &keyed,
        format!(
            "{{\"auths\": {{\"{0}\": {{\"auth\": \"{1}\"}}, \"{0}/team/bb\": {{\"auth\": \"{2}\"}}}}}}",
            a.1,
            wrong.trim(),
            auth.trim()
        ),
    )
    .unwrap();
    let with_keyed = |repo: &str| {
        bin()
            .env("REGISTRY_AUTH_FILE", &keyed)
            .env("DOCKER_CONFIG", t.path().join("no-docker-config"))
            .env("HOME", t.path().join("nobody-home"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .arg("--store")
            .arg(&store)
            .args(["tags", &format!("{}/{repo}", a.1)])
            .output()
            .unwrap()
    };
    let ok_repo = with_keyed("team/bb");
    assert!(ok_repo.status.success(), "the repository's key: {ok_repo:?}");
    assert!(!with_keyed("team/other").status.success(), "the host's (wrong) key for another repository");

    // A registry that asks for nothing never sees --dest-creds' password.
    let (plain, seen) = cargohold_testkit::canned_server(|_| {
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    });
    let out = env(&["copy", "--dest-creds", "bob:bpass", &format!("docker://{plain}/x/y:1"), &to]);
    assert!(!out.status.success());
    let heads = seen.lock().unwrap().clone();
    assert!(!heads.is_empty() && heads.iter().all(|h| !h.to_ascii_lowercase().contains("authorization")), "{heads:?}");
}

/// `--format`, as skopeo's: `v2s2` writes skopeo's very bytes (the same
/// manifest digest) over the same blobs, `oci` brings it back; a push
/// converts as a copy does; a docker archive cannot be asked for OCI.
#[test]
fn copy_and_push_write_the_manifest_format_asked() {
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    let src = format!("oci:{}:v1", layout.display());
    let raw = |name: &str| {
        run(skopeo(t.path()).args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{}/{name}", reg.1)))
    };
    let ours = json(&store, &["copy", "--format", "v2s2", &src, &format!("docker://{}/fmt/ours:1", reg.1), "--json"]);
    run(skopeo(t.path())
        .args(["copy", "-q", "--dest-tls-verify=false", "--format", "v2s2"])
        .arg(&src)
        .arg(format!("docker://{}/fmt/skopeo:1", reg.1)));
    let theirs = raw("fmt/skopeo:1");
    assert_eq!(ours["manifest"]["digest"].as_str().unwrap(), cargohold_digest(theirs.as_bytes()), "{theirs}");
    assert_eq!(raw("fmt/ours:1"), theirs);
    let docker: Value = serde_json::from_str(&theirs).unwrap();
    assert_eq!(docker["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    // --preserve-digests: a format change is refused before anything moves.
    let kept = format!("docker://{}/fmt/kept:1", reg.1);
    let out = ch(&store, &["copy", "--preserve-digests", "--format", "v2s2", &src, &kept]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("under its own digest"), "{err}");
    let out = skopeo(t.path()).args(["inspect", "--raw", "--tls-verify=false"]).arg(&kept).output().unwrap();
    assert!(!out.status.success(), "nothing was pushed");
    ok(&store, &["copy", "--preserve-digests", &src, &kept]);
    // Back to OCI: the same blobs under OCI types.
    ok(
        &store,
        &[
            "copy",
            "--format",
            "oci",
            &format!("docker://{}/fmt/ours:1", reg.1),
            &format!("docker://{}/fmt/oci:1", reg.1),
        ],
    );
    let oci: Value = serde_json::from_str(&raw("fmt/oci:1")).unwrap();
    assert_eq!(oci["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(oci["config"]["digest"], docker["config"]["digest"]);
    assert_eq!(oci["layers"][0]["digest"], docker["layers"][0]["digest"]);
    assert_eq!(oci["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    // push converts too; the v2s2 image pulls back.
    ok(&store, &["copy", &src, "app:1"]);
    let pushed = json(&store, &["push", "--format", "v2s2", "app:1", &format!("{}/fmt/pushed:1", reg.1), "--json"]);
    assert_eq!(pushed["digest"], ours["manifest"]["digest"]);
    let other = t.path().join("other");
    let pulled = json(&other, &["pull", &format!("{}/fmt/pushed:1", reg.1), "--json"]);
    assert_eq!(pulled["digest"], ours["manifest"]["digest"]);
    // An index of two platforms becomes a Docker manifest list: skopeo's
    // bytes again.
    run(Command::new("umoci")
        .args(["config", "--image", &format!("{}:v1", layout.display()), "--tag", "arm"])
        .args(["--architecture", "arm64"]));
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = |tag: &str, arch: &str| {
        let mut e = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone();
        e.as_object_mut().unwrap().remove("annotations");
        e["platform"] = serde_json::json!({ "architecture": arch, "os": "linux" });
        e
    };
    let multi = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("v1", "amd64"), entry("arm", "arm64")],
    })
    .to_string();
    let digest = cargohold_digest(multi.as_bytes());
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), &multi).unwrap();
    index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": multi.len(),
        "annotations": { "org.opencontainers.image.ref.name": "multi" },
    }));
    std::fs::write(&index_path, index.to_string()).unwrap();
    let multi_src = format!("oci:{}:multi", layout.display());
    ok(&store, &["copy", "--all-platforms", "--format", "v2s2", &multi_src, &format!("docker://{}/fmt/list:1", reg.1)]);
    run(skopeo(t.path())
        .args(["copy", "-q", "--all", "--dest-tls-verify=false", "--format", "v2s2"])
        .arg(&multi_src)
        .arg(format!("docker://{}/fmt/list-skopeo:1", reg.1)));
    let list = raw("fmt/list:1");
    assert!(list.contains("application/vnd.docker.distribution.manifest.list.v2+json"), "{list}");
    assert_eq!(list, raw("fmt/list-skopeo:1"));
    let out = ch(
        &store,
        &["copy", "--format", "oci", "app:1", &format!("docker-archive:{}", t.path().join("a.tar").display())],
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("written as oci (it writes v2s2 only)"),
        "{out:?}"
    );
}

/// `--retry-times N` and `--retry-delay D`, as skopeo's: a request that
/// keeps failing in a way worth retrying (503 here) is tried N more times, D
/// apart, then the error names it.
#[test]
fn retry_times_bounds_the_attempts() {
    let (addr, seen) = cargohold_testkit::canned_server(|_| {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    });
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    for (n, asked) in [("0", 1), ("2", 3)] {
        seen.lock().unwrap().clear();
        let out = ch(&store, &["--retry-times", n, "tags", &format!("{addr}/team/app")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("503"), "{err}");
        let gets = seen.lock().unwrap().iter().filter(|h| h.starts_with("GET /v2/team/app/tags/list")).count();
        assert_eq!(gets, asked, "--retry-times {n}");
    }
    // --retry-delay: that pause between attempts, in place of the growing
    // ones (200 ms, 400 ms...).
    seen.lock().unwrap().clear();
    let started = std::time::Instant::now();
    let out = ch(&store, &["--retry-times", "2", "--retry-delay", "1500ms", "tags", &format!("{addr}/team/app")]);
    assert!(!out.status.success(), "{out:?}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(seen.lock().unwrap().iter().filter(|h| h.starts_with("GET /v2/team/app/tags/list")).count(), 3);
    let out = ch(&store, &["--retry-delay", "5", "tags", &format!("{addr}/team/app")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"5\" is not a duration"), "{out:?}");
    assert!(seen.lock().unwrap().len() == 3, "nothing was sent");
}

/// Layers written in another compression, as skopeo's
/// `--dest-compress-format` and podman's `--compression-format`: skopeo
/// reads what we recompress and we read what it does; the config (and so
/// the diff IDs) stays, every layer still unpacks to them; a Docker schema 2
/// image given zstd layers becomes OCI, one already in the format asked
/// for keeps its digest; what cannot be done is refused before anything is
/// stored.
#[test]
fn copy_and_push_recompress_layers_as_skopeo_and_podman_do() {
    let a = registry();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    let src = format!("oci:{}:v1", layout.display());
    ok(&store, &["copy", &src, "app:1"]);
    let raw = |r: &str| -> Value {
        serde_json::from_str(&run(skopeo(t.path()).args(["inspect", "--raw", "--tls-verify=false"]).arg(r))).unwrap()
    };
    let layer_types = |m: &Value| -> Vec<String> {
        m["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap().to_owned()).collect()
    };
    let original = raw(&src);
    let n = original["layers"].as_array().unwrap().len();
    assert!(layer_types(&original).iter().all(|t| t.ends_with("tar+gzip")), "{original}");

    // gzip -> zstd into a registry: skopeo reads it; it unpacks.
    let z = format!("docker://{}/team/z:1", a.1);
    let copied = json(&store, &["copy", "--dest-compress-format", "zstd", &src, &z, "--json"]);
    assert_eq!(copied["blobs_copied"].as_u64(), Some(n as u64), "{copied}");
    let zm = raw(&z);
    assert_eq!(layer_types(&zm), vec!["application/vnd.oci.image.layer.v1.tar+zstd".to_owned(); n]);
    assert_eq!(zm["config"], original["config"], "the config stays");
    run(skopeo(t.path())
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(&z)
        .arg(format!("oci:{}:1", t.path().join("skopeo-read").display())));
    ok(&store, &["pull", &z[9..]]);
    ok(&store, &["unpack", &z[9..], t.path().join("z-rootfs").to_str().unwrap()]);
    ok(&store, &["unpack", "app:1", t.path().join("rootfs").to_str().unwrap()]);
    let tree = tree_of(&t.path().join("rootfs"));
    assert!(!tree.is_empty());
    assert_eq!(tree_of(&t.path().join("z-rootfs")), tree, "the same files");

    // What skopeo recompressed, back to gzip by us: it unpacks too.
    let sz = format!("docker://{}/team/sz:1", a.1);
    run(skopeo(t.path())
        .args(["copy", "-q", "--dest-tls-verify=false", "--dest-compress-format", "zstd"])
        .arg(&src)
        .arg(&sz));
    let back = format!("oci:{}:1", t.path().join("back").display());
    // --tmpdir is where the recompressed layers wait.
    let nowhere = t.path().join("no-such-dir");
    let out = bin()
        .arg("--store")
        .arg(&store)
        .args(["copy", "--dest-compress-format", "gzip", "--tmpdir", nowhere.to_str().unwrap(), &sz, &back])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(nowhere.to_str().unwrap()), "{err}");
    let scratch = t.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let (s, b) = (scratch.to_str().unwrap(), &back);
    ok(&store, &["copy", "--dest-compress-format", "gzip", "--dest-compress-level", "1", "--tmpdir", s, &sz, b]);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0, "nothing left behind");
    let bm = raw(&back);
    assert_eq!(layer_types(&bm), vec!["application/vnd.oci.image.layer.v1.tar+gzip".to_owned(); n]);
    assert_eq!(bm["config"], original["config"]);
    ok(&store, &["unpack", &back, t.path().join("back-rootfs").to_str().unwrap()]);
    assert_eq!(tree_of(&t.path().join("back-rootfs")), tree, "the same files");

    // Docker schema 2: zstd makes it OCI; gzip keeps it, digest and all.
    let v2 = format!("docker://{}/team/v2:1", a.1);
    run(skopeo(t.path()).args(["copy", "-q", "--dest-tls-verify=false", "--format", "v2s2"]).arg(&src).arg(&v2));
    let v2z = format!("docker://{}/team/v2z:1", a.1);
    ok(&store, &["copy", "--dest-compress-format", "zstd", &v2, &v2z]);
    let m = raw(&v2z);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json", "{m}");
    assert!(layer_types(&m).iter().all(|t| t.ends_with("tar+zstd")), "{m}");
    let v2g = format!("docker://{}/team/v2g:1", a.1);
    let kept = json(&store, &["copy", "--dest-compress-format", "gzip", &v2, &v2g, "--json"]);
    let digest_of =
        |r: &str| run(skopeo(t.path()).args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]).arg(r));
    assert_eq!(kept["manifest"]["digest"].as_str().unwrap(), digest_of(&v2).trim());

    // push, as podman's --compression-format.
    let pushed =
        json(&store, &["push", "--compression-format", "zstd", "app:1", &format!("{}/team/pz:1", a.1), "--json"]);
    let pz = raw(&format!("docker://{}/team/pz:1", a.1));
    assert!(layer_types(&pz).iter().all(|t| t.ends_with("tar+zstd")), "{pz}");
    assert_eq!(pushed["digest"].as_str().unwrap(), digest_of(&format!("docker://{}/team/pz:1", a.1)).trim());

    // Refused, nothing stored.
    let refused = |args: &[&str], wanted: &str| {
        let out = ch(&store, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(wanted), "{wanted:?} not in: {err}");
    };
    let r = format!("docker://{}/team/refused:1", a.1);
    refused(&["copy", "--dest-compress-format", "zstd:chunked", &src, &r], "zstd:chunked is not supported");
    refused(&["copy", "--dest-compress-format", "zstd", "--dest-compress-level", "30", &src, &r], "levels 1 to 22");
    refused(&["copy", "--dest-compress-level", "3", &src, &r], "--dest-compress-format");
    refused(&["copy", "--dest-compress-format", "zstd", "--format", "v2s2", &src, &r], "Docker schema 2");
    refused(&["copy", "--dest-compress-format", "zstd", "--preserve-digests", &src, &r], "own digest");
    let archive = format!("docker-archive:{}", t.path().join("a.tar").display());
    refused(&["copy", "--dest-compress-format", "gzip", &src, &archive], "stores layers in a form of its own");
    assert!(!t.path().join("a.tar").exists());
    let tags = ch(&store, &["tags", &format!("{}/team/refused", a.1)]);
    assert!(!tags.status.success(), "nothing was stored: {tags:?}");
}

/// Every regular file below `root`: its path there and its bytes.
fn tree_of(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let kind = e.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(e.path());
            } else if kind.is_file() {
                out.push((e.path().strip_prefix(root).unwrap().to_owned(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `--format` Go templates, as skopeo's and docker's: `inspect` prints what
/// skopeo's `inspect --format` prints for the same fields; `images` a line
/// per image; a mistake names the field.
#[test]
fn format_templates_print_as_skopeo_does() {
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    ok(&store, &["push", "app:1", &format!("{}/team/app:1", reg.1)]);
    let remote = format!("docker://{}/team/app:1", reg.1);
    ok(&store, &["push", "app:1", &format!("{}/team/app:2", reg.1)]);
    let template = "{{.Digest}} {{.Os}}/{{.Architecture}} {{len .Layers}} {{.Env}} {{.Labels}} {{.RepoTags}}";
    let theirs = run(skopeo(t.path()).args(["inspect", "--tls-verify=false", "--format", template]).arg(&remote));
    let ours = ok(&store, &["inspect", "--tls-verify=false", "-f", template, &remote]);
    assert_eq!(ours, theirs);
    assert!(ours.ends_with(" [1 2]\n") || ours.ends_with(" [2 1]\n"), "the repository's tags: {ours}");
    let theirs = run(skopeo(t.path()).args(["inspect", "-n", "--tls-verify=false", "--format", template]).arg(&remote));
    assert_eq!(ok(&store, &["inspect", "-n", "--tls-verify=false", "-f", template, &remote]), theirs);
    assert_eq!(ok(&store, &["inspect", "--format", "{{json .Labels}}", "app:1"]), "{}\n");
    ok(&store, &["tag", "app:1", "app:2"]);
    assert_eq!(ok(&store, &["images", "--format", "{{.Repository}}:{{.Tag}}"]), "app:1\napp:2\n");
    let out = ch(&store, &["images", "--format", "{{.Repo}}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--format: .Repo: no such field"), "{err}");
    let out = ch(&store, &["images", "--format", "{{.Tag}}", "--json"]);
    assert!(!out.status.success(), "--format and --json: {out:?}");
}
