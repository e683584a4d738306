//! End-to-end tests of the `cargohold` binary, with umoci and skopeo as peers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod build;
mod client;
mod containers;
mod daemon;
mod platforms;
mod publish;
mod registry;
mod serve;
mod serve_auth;
mod serve_integration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cargohold"))
}

/// `cargohold` that finds no stored credentials (no auth file, Docker
/// config or home of the caller's; files under `dir` that do not exist).
fn no_stored_creds(dir: &Path) -> Command {
    let mut c = bin();
    c.env("REGISTRY_AUTH_FILE", dir.join("none.json"))
        .env("DOCKER_CONFIG", dir.join("no-docker"))
        .env("HOME", dir.join("nobody"))
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_CONFIG_HOME");
    c
}

/// Runs cargohold against `store`.
fn ch(store: &Path, args: &[&str]) -> Output {
    bin().arg("--store").arg(store).args(args).output().expect("cargohold runs")
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = ch(store, args);
    assert!(out.status.success(), "cargohold {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json(store: &Path, args: &[&str]) -> Value {
    let text = ok(store, args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("cargohold {args:?} printed no single JSON document ({e}): {text}"))
}

fn require(tool: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().expect("sh").status.success();
    assert!(found, "{tool} is required for this test and is not installed (apt-get install -y {tool})");
}

fn run_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("the command runs");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OCI layout made by umoci, tagged `v1`, with a couple of files.
fn umoci_image(dir: &Path) -> PathBuf {
    require("umoci");
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:v1", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci").args(["unpack", "--rootless", "--image", &image]).arg(&bundle));
    std::fs::create_dir_all(bundle.join("rootfs/etc")).expect("mkdir");
    std::fs::write(bundle.join("rootfs/etc/motd"), "made by umoci\n").expect("write");
    std::fs::write(bundle.join("rootfs/data.bin"), vec![7u8; 100_000]).expect("write");
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    run(Command::new("umoci").args(["config", "--image", &image, "--config.cmd", "/bin/sh", "--config.env", "A=1"]));
    layout
}

fn skopeo(dir: &Path) -> Command {
    require("skopeo");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).expect("policy");
    let mut c = Command::new("skopeo");
    c.arg("--policy").arg(policy);
    c
}

#[test]
fn ref_json_has_every_field() {
    let t = tempfile::tempdir().unwrap();
    let d = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";
    let cases = [
        (
            "ubuntu",
            "docker.io",
            "library/ubuntu",
            Value::Null,
            Value::Null,
            "docker.io/library/ubuntu",
            "ubuntu",
            "docker.io/library/ubuntu:latest",
        ),
        (
            "localhost:5000/a/b:1",
            "localhost:5000",
            "a/b",
            "1".into(),
            Value::Null,
            "localhost:5000/a/b:1",
            "localhost:5000/a/b:1",
            "localhost:5000/a/b:1",
        ),
    ];
    for (input, reg, repo, tag, digest, canonical, familiar, pull) in cases {
        let v = json(t.path(), &["ref", input, "--json"]);
        assert_eq!(v["input"], input);
        assert_eq!(v["registry"], reg);
        assert_eq!(v["repository"], repo);
        assert_eq!(v["tag"], tag);
        assert_eq!(v["digest"], digest);
        assert_eq!(v["canonical"], canonical);
        assert_eq!(v["familiar"], familiar);
        assert_eq!(v["pull"], pull);
    }
    let v = json(t.path(), &["ref", &format!("index.docker.io/busybox:1@{d}"), "--json"]);
    assert_eq!(v["canonical"], format!("docker.io/library/busybox:1@{d}"));
    assert_eq!(v["pull"], format!("docker.io/library/busybox@{d}"));
    assert_eq!(v["tag"], "1");
    assert_eq!(v["digest"], d);
    assert_eq!(v.as_object().unwrap().len(), 8);
}

#[test]
fn invalid_references_exit_nonzero_naming_the_rule() {
    let t = tempfile::tempdir().unwrap();
    let long = "a".repeat(300);
    let cases = [
        ("", "at least one component"),
        ("Ubuntu", "must be lowercase"),
        ("foo::bar", "invalid reference format"),
        (long.as_str(), "not be more than 255"),
        ("7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa", "64-byte hexadecimal"),
        ("foo@sha256:abcdabcdabcdabcdabcdabcdabcdabcd", "invalid checksum digest length"),
    ];
    for (input, rule) in cases {
        let out = ch(t.path(), &["ref", input, "--json"]);
        assert!(!out.status.success(), "{input:?} accepted");
        assert!(out.stdout.is_empty(), "nothing on stdout for {input:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(rule), "{input:?}: {err}");
    }
}

#[test]
fn load_save_inspect_tag_rmi_prune() {
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    // skopeo writes a docker archive; we load it.
    let sk = t.path().join("sk.tar");
    run(skopeo(t.path())
        .args(["copy", "-q"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-archive:{}:example.com/app:1", sk.display())));
    let loaded = json(&store, &["load", sk.to_str().unwrap(), "--json"]);
    assert_eq!(loaded["images"][0]["names"][0], "example.com/app:1");
    let text = ok(&store, &["load", sk.to_str().unwrap()]);
    assert_eq!(text.trim(), "Loaded image: example.com/app:1");

    let info = json(&store, &["inspect", "example.com/app:1", "--json"]);
    assert_eq!(info["cmd"][0], "/bin/sh");
    assert_eq!(info["env"][0], "A=1");
    assert_eq!(info["layers"].as_array().unwrap().len(), 1);
    let digest = info["digest"].as_str().unwrap().to_owned();
    let raw = ch(&store, &["inspect", "example.com/app:1", "--raw"]).stdout;
    assert_eq!(cargohold_digest(&raw), digest, "--raw prints the exact manifest bytes");
    let config = ch(&store, &["inspect", "example.com/app:1", "--config"]).stdout;
    assert_eq!(cargohold_digest(&config), info["id"].as_str().unwrap());

    ok(&store, &["tag", "example.com/app:1", "app:2"]);
    let images = json(&store, &["images", "--json"]);
    let names: Vec<&str> = images.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["docker.io/library/app:2", "example.com/app:1"]);
    assert_eq!(images[0]["repository"], "app");
    assert_eq!(images[0]["tag"], "2");
    assert_eq!(images[0]["id"], info["id"]);

    // Both archive formats read by skopeo.
    let ours = t.path().join("ours.tar");
    ok(&store, &["save", "app:2", "-o", ours.to_str().unwrap()]);
    let sk_view: Value =
        serde_json::from_str(&run(skopeo(t.path()).arg("inspect").arg(format!("docker-archive:{}", ours.display()))))
            .unwrap();
    assert_eq!(sk_view["Env"][0], "A=1");
    let ours_oci = t.path().join("ours-oci.tar");
    ok(&store, &["save", "app:2", "-o", ours_oci.to_str().unwrap(), "--format", "oci"]);
    let sk_view: Value = serde_json::from_str(&run(skopeo(t.path())
        .arg("inspect")
        .arg(format!("oci-archive:{}:2", ours_oci.display()))))
    .unwrap();
    assert_eq!(sk_view["Digest"], digest);

    // copy between transports and inspect of a transport.
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "umoci-made:1"]);
    let via_transport = json(&store, &["inspect", &format!("oci:{}:v1", layout.display()), "--json"]);
    assert_eq!(via_transport["id"], json(&store, &["inspect", "umoci-made:1", "--json"])["id"]);

    let rmi = json(&store, &["rmi", "app:2", "example.com/app:1", "--json"]);
    assert_eq!(rmi["untagged"].as_array().unwrap().len(), 2);
    let pruned = json(&store, &["prune", "--json"]);
    assert!(pruned["blobs_removed"].as_array().unwrap().len() >= 2, "{pruned}");
    assert!(pruned["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(json(&store, &["images", "--json"]).as_array().unwrap().len(), 1);
}

/// sha256 via coreutils, so the test does not trust our own hasher.
fn cargohold_digest(bytes: &[u8]) -> String {
    let t = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(t.path(), bytes).unwrap();
    let out = run(Command::new("sha256sum").arg(t.path()));
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

#[test]
fn two_processes_tagging_concurrently_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "base:1"]);
    let workers: Vec<_> = ["p", "q"]
        .into_iter()
        .map(|prefix| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let out = ch(&store, &["tag", "base:1", &format!("{prefix}{i}:1")]);
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker finished");
    }
    let images = json(&store, &["images", "--json"]);
    let names: std::collections::HashSet<String> =
        images.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect();
    for prefix in ["p", "q"] {
        for i in 0..100 {
            assert!(names.contains(&format!("docker.io/library/{prefix}{i}:1")), "{prefix}{i} lost");
        }
    }
    assert_eq!(names.len(), 201);
}

#[test]
fn errors_name_the_thing_at_fault() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let out = ch(&store, &["inspect", "nope:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope:1"));
    let out = ch(&store, &["load", "/nonexistent/file.tar"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file.tar"));
    let out = ch(&store, &["copy", "nope", "oci:/tmp/x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let out = ch(&store, &["tag", "nope", "UPPER"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("lowercase"));
}

#[test]
fn help_completions_and_man_pages() {
    let t = tempfile::tempdir().unwrap();
    let subcommands = [
        "ref",
        "pull",
        "push",
        "tags",
        "inspect",
        "copy",
        "load",
        "save",
        "unpack",
        "export",
        "import",
        "diff",
        "commit",
        "images",
        "tag",
        "rmi",
        "prune",
        "completions",
        "man",
    ];
    for sub in subcommands {
        let help = ok(t.path(), &[sub, "--help"]);
        assert!(help.contains("Example"), "`cargohold {sub} --help` shows no example:\n{help}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(t.path(), &["completions", shell]);
        assert!(script.contains("cargohold") && script.contains("inspect"), "{shell}");
    }
    let page = ok(t.path(), &["man"]);
    assert!(page.contains(".TH cargohold"), "{page}");
    let dir = t.path().join("man");
    ok(t.path(), &["man", "--out", dir.to_str().unwrap()]);
    for sub in subcommands {
        assert!(dir.join(format!("cargohold-{sub}.1")).exists(), "{sub}");
    }
}

#[test]
fn import_unpack_commit_export_and_umoci_agrees() {
    require("umoci");
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::write(rootfs.join("etc/motd"), "hello\n").unwrap();
    // Over 1 MiB of varied data: the layer is written as several gzip members
    // (parallel compression), which umoci must read back below.
    let tool: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(rootfs.join("bin/tool"), &tool).unwrap();
    let tarball = t.path().join("rootfs.tar.gz");
    run(Command::new("tar").arg("-C").arg(&rootfs).arg("-czf").arg(&tarball).arg("."));

    let imported = json(
        &store,
        &["import", tarball.to_str().unwrap(), "myos:1", "-c", r#"CMD ["/bin/tool"]"#, "-c", "ENV A=1", "--json"],
    );
    assert_eq!(imported["name"], "docker.io/library/myos:1");
    let work = t.path().join("work");
    ok(&store, &["unpack", "myos:1", work.to_str().unwrap()]);
    assert_eq!(std::fs::read(work.join("etc/motd")).unwrap(), b"hello\n");
    std::fs::remove_file(work.join("etc/motd")).unwrap();
    std::fs::write(work.join("etc/new"), "new\n").unwrap();
    // A new name for an unchanged file: kept a link (overlay's, umoci's way).
    std::fs::hard_link(work.join("bin/tool"), work.join("bin/tool-again")).unwrap();
    ok(&store, &["commit", work.to_str().unwrap(), "--base", "myos:1", "myos:2", "-c", "ENV B=2"]);
    let info = json(&store, &["inspect", "myos:2", "--json"]);
    assert_eq!(info["layers"].as_array().unwrap().len(), 2);
    assert_eq!(info["env"], serde_json::json!(["A=1", "B=2"]));
    assert_eq!(info["cmd"][0], "/bin/tool");

    // umoci unpacks the committed image to the same files.
    let layout = t.path().join("layout");
    ok(&store, &["copy", "myos:2", &format!("oci:{}:2", layout.display())]);
    let bundle = t.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image", &format!("{}:2", layout.display())]).arg(&bundle));
    assert!(!bundle.join("rootfs/etc/motd").exists(), "the deletion is a whiteout umoci applies");
    assert_eq!(std::fs::read(bundle.join("rootfs/etc/new")).unwrap(), b"new\n");
    assert_eq!(std::fs::read(bundle.join("rootfs/bin/tool")).unwrap(), tool);
    {
        use std::os::unix::fs::MetadataExt as _;
        let (x, y) = (bundle.join("rootfs/bin/tool"), bundle.join("rootfs/bin/tool-again"));
        assert_eq!(
            std::fs::metadata(&x).unwrap().ino(),
            std::fs::metadata(&y).unwrap().ino(),
            "one inode in umoci's unpack"
        );
    }

    // export: the flattened tree as a tar.
    let exported = t.path().join("exp.tar");
    ok(&store, &["export", "myos:2", "-o", exported.to_str().unwrap()]);
    let listing = run(Command::new("tar").arg("-tf").arg(&exported));
    assert!(listing.contains("etc/new") && !listing.contains("motd") && !listing.contains(".wh."), "{listing}");

    // diff between two trees.
    let layer = t.path().join("d.tar.zst");
    let d = json(
        &store,
        &["diff", rootfs.to_str().unwrap(), work.to_str().unwrap(), "-o", layer.to_str().unwrap(), "--json"],
    );
    assert!(d["changed"].as_u64().unwrap() >= 1, "{d}");
    assert!(layer.exists());
}

/// The Debian `docker-registry` on a free loopback port; killed on drop.
/// The temp dir holds its storage and lives as long as it does.
struct Registry(std::process::Child, String, #[allow(dead_code, reason = "kept alive, not read")] tempfile::TempDir);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registry() -> Registry {
    registry_with(None)
}

/// With htpasswd Basic auth for `(user, password)` when given.
fn registry_with(basic: Option<(&str, &str)>) -> Registry {
    require("docker-registry");
    let dir = tempfile::tempdir().unwrap();
    let auth = match basic {
        Some((user, password)) => {
            require("htpasswd");
            let line = run(Command::new("htpasswd").args(["-Bbn", user, password]));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, line).unwrap();
            format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", file.display())
        }
        None => String::new(),
    };
    start_registry(dir, &auth, "")
}

/// docker-registry with `auth` (a config.yml `auth:` section) and `http`
/// (more of its `http:` section, indented two spaces), listening on a free
/// loopback port; its files in `dir`.
fn start_registry(dir: tempfile::TempDir, auth: &str, http: &str) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{http}{auth}",
        dir.path().join("data").display()
    );
    std::fs::write(&config, yaml).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Registry(child, addr, dir)
}

/// A umoci image copied into a store under `dir` as `app:1` and pushed to
/// `<registry>/team/app:1`: (layout, store, target, manifest digest).
fn push_umoci_image(reg: &Registry, dir: &Path) -> (PathBuf, PathBuf, String, String) {
    let layout = umoci_image(dir);
    let store = dir.join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let target = format!("{}/team/app:1", reg.1);
    let pushed = json(&store, &["push", "app:1", &target, "--json"]);
    let digest = pushed["report"]["manifest"]["digest"].as_str().unwrap().to_owned();
    (layout, store, target, digest)
}

/// A busybox root filesystem as a tar, imported as `bb:1`.
fn import_busybox(dir: &Path, store: &Path) {
    require("busybox");
    let root = dir.join("bb-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let busybox = run(Command::new("sh").args(["-c", "command -v busybox"]));
    std::fs::copy(busybox.trim(), root.join("bin/busybox")).unwrap();
    for applet in run(Command::new(busybox.trim()).arg("--list")).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let tar = dir.join("bb.tar");
    run(Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&root).arg("."));
    ok(store, &["import", tar.to_str().unwrap(), "bb:1"]);
}

/// `cargohold` as the unprivileged user `uid` (through setpriv).
fn as_user(uid: u32, store: &Path, args: &[&str]) -> Output {
    require("setpriv");
    Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--".into()])
        .arg(env!("CARGO_BIN_EXE_cargohold"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("HOME", store.parent().unwrap())
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap()
}

fn user_ok(uid: u32, store: &Path, args: &[&str]) -> String {
    let out = as_user(uid, store, args);
    assert!(out.status.success(), "{uid}: {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What rootless containers need of the machine, as on a booted Debian:
/// `nobody` has subordinate IDs (as rootless Podman needs them) and every
/// user may open `/dev/net/tun` (pasta makes the container's interface
/// with it; Debian's udev makes it 0666, some VM images leave it root-only).
fn rootless_ready() {
    use std::os::unix::fs::PermissionsExt;
    require("newuidmap");
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with("nobody:")) {
            std::fs::write(file, format!("{text}nobody:300000:65536\n")).unwrap();
        }
    }
    let tun = Path::new("/dev/net/tun");
    if tun.metadata().is_ok_and(|m| m.permissions().mode() & 0o006 != 0o006) {
        std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
}

/// `copy --additional-tag`, as skopeo's: a docker archive records every
/// name (the ones skopeo records for the same command line), skopeo reads
/// the image by an added name, load brings each back; a destination that
/// records one name, and a name that is not NAME:TAG, are refused with
/// nothing written.
#[test]
fn copy_additional_tags_as_skopeo() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let layout = t.path().join("layout");
    ok(&store, &["copy", "bb:1", &format!("oci:{}:v1", layout.display())]);
    let repo_tags = |archive: &Path| -> Vec<String> {
        let m: Value =
            serde_json::from_slice(&run_bytes(Command::new("tar").arg("-xOf").arg(archive).arg("manifest.json")))
                .unwrap();
        // skopeo writes docker.io/library/NAME; docker and cargohold NAME.
        let names = m[0]["RepoTags"].as_array().unwrap().iter();
        names
            .map(|n| {
                let n = n.as_str().unwrap();
                let n = n.strip_prefix("docker.io/").unwrap_or(n);
                n.strip_prefix("library/").unwrap_or(n).to_owned()
            })
            .collect()
    };
    let extra = ["--additional-tag", "extra:2", "--additional-tag", "team/more:3", "--additional-tag", "extra:2"];
    let ours = t.path().join("ours.tar");
    let mut args = vec!["copy"];
    args.extend(extra);
    let dest = format!("docker-archive:{}:app:1", ours.display());
    args.extend(["bb:1", dest.as_str()]);
    ok(&store, &args);
    let theirs = t.path().join("theirs.tar");
    run(skopeo(t.path())
        .args(["copy", "-q"])
        .args(extra)
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-archive:{}:app:1", theirs.display())));
    let mut want = repo_tags(&theirs);
    want.dedup();
    assert_eq!(repo_tags(&ours), want);
    assert_eq!(repo_tags(&ours), ["app:1", "extra:2", "team/more:3"]);
    run(skopeo(t.path()).arg("inspect").arg(format!("docker-archive:{}:team/more:3", ours.display())));
    let fresh = t.path().join("fresh");
    let loaded = ok(&fresh, &["load", ours.to_str().unwrap()]);
    for name in ["app:1", "extra:2", "team/more:3"] {
        assert!(loaded.contains(name), "{loaded}");
    }

    // Refused: a destination of one name, a name without a tag or with a digest.
    let index = std::fs::read(store.join("index.json")).unwrap();
    let other = t.path().join("other");
    for (args, says) in [
        (
            vec!["copy", "--additional-tag", "extra:2", "bb:1", &format!("oci:{}:x", other.display())],
            vec!["additional tag extra:2", "records one name"],
        ),
        (vec!["copy", "--additional-tag", "extra:2", "bb:1", "copy:1"], vec!["additional tag extra:2", "copy:1"]),
        (vec!["copy", "--additional-tag", "extra", "bb:1", "copy:1"], vec!["\"extra\" is not NAME:TAG"]),
        (
            vec!["copy", "--additional-tag", &format!("x@sha256:{}", "a".repeat(64)), "bb:1", "copy:1"],
            vec!["is not NAME:TAG"],
        ),
    ] {
        let out = ch(&store, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        for s in says {
            assert!(err.contains(s), "{args:?}: {err}");
        }
    }
    assert!(!other.exists(), "the refused layout was made");
    assert_eq!(std::fs::read(store.join("index.json")).unwrap(), index, "the store changed");
}

/// Outputs as Docker writes them: `-o -` and `/dev/stdout` are standard
/// output (the status on standard error), a FIFO is written through, a
/// symlink's target is replaced (the link stays), a new archive gets
/// 0666 & ~umask, and `/dev/stdout` is never renamed over.
#[test]
fn archives_go_to_stdout_fifos_and_through_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let listed = |bytes: &[u8]| tar::Archive::new(bytes).entries().unwrap().count();
    for out in ["-", "/dev/stdout"] {
        for cmd in ["save", "export"] {
            let got = ch(&store, &[cmd, "bb:1", "-o", out]);
            assert!(got.status.success(), "{cmd} -o {out}: {got:?}");
            assert!(listed(&got.stdout) > 3, "{cmd} -o {out}: a tar on stdout");
            assert!(String::from_utf8_lossy(&got.stderr).contains("to "), "the status goes to stderr");
        }
    }
    // No -o: standard output (a pipe here), as docker save.
    for cmd in ["save", "export"] {
        let got = ch(&store, &[cmd, "bb:1"]);
        assert!(got.status.success() && listed(&got.stdout) > 3, "{cmd} to a pipe: {got:?}");
    }
    // ... but never to a terminal.
    {
        let pty = rustix::pty::openpt(rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY).unwrap();
        rustix::pty::grantpt(&pty).unwrap();
        rustix::pty::unlockpt(&pty).unwrap();
        let name = rustix::pty::ptsname(&pty, Vec::new()).unwrap();
        let tty = std::fs::OpenOptions::new().write(true).open(name.to_str().unwrap()).unwrap();
        let got = bin().arg("--store").arg(&store).args(["save", "bb:1"]).stdout(tty).output().unwrap();
        let err = String::from_utf8_lossy(&got.stderr);
        assert!(!got.status.success() && err.contains("terminal"), "{err}");
    }
    assert!(std::fs::symlink_metadata("/dev/stdout").unwrap().file_type().is_symlink());
    let out = ch(&store, &["save", "bb:1", "-o", "-", "--json"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("-o -"));
    // A FIFO: written through.
    let fifo = t.path().join("fifo");
    run(Command::new("mkfifo").arg(&fifo));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    ok(&store, &["save", "bb:1", "-o", fifo.to_str().unwrap()]);
    assert!(listed(&reader.join().unwrap()) > 3);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
    // A symlink: its target replaced.
    let real = t.path().join("real.tar");
    std::fs::write(&real, "old").unwrap();
    let link = t.path().join("link.tar");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ok(&store, &["save", "bb:1", "-o", link.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(listed(&std::fs::read(&real).unwrap()) > 3);
    // A new archive: 0666 & ~umask (022 here).
    let fresh = t.path().join("fresh.tar");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022; exec {} --store {} save bb:1 -o {}",
            env!("CARGO_BIN_EXE_cargohold"),
            store.display(),
            fresh.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o644);

    // import: xz too; anything that is not a tar is refused, nothing named.
    require("xz");
    let tar = t.path().join("bb.tar");
    run(Command::new("xz").arg("-k").arg("-f").arg(&tar));
    ok(&store, &["import", &format!("{}.xz", tar.display()), "fromxz:1"]);
    assert_eq!(ok(&store, &["run", "--rm", "fromxz:1", "echo", "xz"]), "xz\n");
    let junk = t.path().join("notes.txt");
    std::fs::write(&junk, "just some text, not a tar\n").unwrap();
    let out = ch(&store, &["import", junk.to_str().unwrap(), "junk:1"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a tar"), "{out:?}");
    assert!(!ok(&store, &["images"]).contains("junk"));

    // load and import from standard input, load -i.
    let saved = t.path().join("saved.tar");
    ok(&store, &["save", "bb:1", "-o", saved.to_str().unwrap()]);
    let piped = |args: &[&str], input: &Path| {
        let out =
            bin().arg("--store").arg(&store).args(args).stdin(std::fs::File::open(input).unwrap()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // bzip2 as well, for import and for load (xz too).
    require("bzip2");
    run(Command::new("bzip2").arg("-k").arg("-f").arg(&tar));
    ok(&store, &["import", &format!("{}.bz2", tar.display()), "frombz2:1"]);
    assert_eq!(ok(&store, &["run", "--rm", "frombz2:1", "echo", "bz2"]), "bz2\n");
    run(Command::new("xz").arg("-k").arg("-f").arg(&saved));
    run(Command::new("bzip2").arg("-k").arg("-f").arg(&saved));
    for ext in ["xz", "bz2"] {
        let name = format!("{ext}:1");
        assert!(ok(&store, &["load", &format!("{}.{ext}", saved.display()), "--name", &name]).contains(&name));
    }
    // And from URLs (streamed, never spooled by name), a 404 named.
    let files = [
        ("/bb.tar.xz", std::fs::read(format!("{}.xz", tar.display())).unwrap()),
        ("/saved.tar.bz2", std::fs::read(format!("{}.bz2", saved.display())).unwrap()),
    ];
    let (web, _) = cargohold_testkit::canned_server(move |head| {
        let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
        match files.iter().find(|(p, _)| *p == path) {
            Some((_, body)) => {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                    .into_bytes();
                r.extend_from_slice(body);
                r
            }
            None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        }
    });
    ok(&store, &["import", &format!("http://{web}/bb.tar.xz"), "fromurl:1"]);
    assert_eq!(ok(&store, &["run", "--rm", "fromurl:1", "echo", "url"]), "url\n");
    assert!(ok(&store, &["load", &format!("http://{web}/saved.tar.bz2"), "--name", "loadurl:1"]).contains("loadurl:1"));
    let before = ok(&store, &["images", "-q"]);
    let out = ch(&store, &["import", &format!("http://{web}/missing.tar"), "missing:1"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains("missing.tar") && err.contains("404"), "{err}");
    assert_eq!(ok(&store, &["images", "-q"]), before);
    assert!(piped(&["load", "--name", "stdin:1"], &saved).contains("stdin:1"));
    assert!(piped(&["load", "-", "--name", "dash:1"], &saved).contains("dash:1"));
    ok(&store, &["load", "-i", saved.to_str().unwrap(), "--name", "input:1"]);
    piped(&["import", "-", "imported:1"], &tar);
    assert_eq!(ok(&store, &["run", "--rm", "imported:1", "echo", "piped"]), "piped\n");
    // Several images into one docker archive, their shared layer once;
    // skopeo reads each, load brings both back.
    let two = t.path().join("two.tar");
    ok(&store, &["save", "bb:1", "imported:1", "-o", two.to_str().unwrap()]);
    let manifest: Value =
        serde_json::from_slice(&run_bytes(Command::new("tar").arg("-xOf").arg(&two).arg("manifest.json"))).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 2, "{manifest}");
    run(skopeo(t.path()).arg("inspect").arg(format!("docker-archive:{}:imported:1", two.display())));
    let fresh = t.path().join("fresh-store");
    let loaded = ok(&fresh, &["load", two.to_str().unwrap()]);
    assert!(loaded.contains("bb:1") && loaded.contains("imported:1"), "{loaded}");
    let oci = t.path().join("x.tar");
    let out = ch(&store, &["save", "bb:1", "imported:1", "--format", "oci", "-o", oci.to_str().unwrap()]);
    assert!(!out.status.success() && !oci.exists(), "{out:?}");
    // Junk on standard input is named as that, not as the spool it went to.
    let out =
        bin().arg("--store").arg(&store).args(["load"]).stdin(std::fs::File::open(&junk).unwrap()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("invalid archive standard input: not a tar"), "{err}");
    assert!(!err.contains(".cargohold"), "the spool is not named: {err}");

    // A reader that stops reading (`| head`): the end of a process killed
    // by SIGPIPE (status 141, nothing said), as docker and podman.
    let commands: [&[&str]; 5] = [
        &["save", "bb:1", "-o", "-"],
        &["export", "bb:1", "-o", "-"],
        &["inspect", "bb:1", "--json"],
        &["inspect", "bb:1"],
        &["images"],
    ];
    for cmd in commands {
        let mut child = bin()
            .arg("--store")
            .arg(&store)
            .args(cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(141), "{cmd:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A full disk is the output's failure, not the image's.
    for (cmd, says) in [("save", "could not write /dev/full"), ("export", "could not archive ")] {
        let out = ch(&store, &[cmd, "bb:1", "-o", "/dev/full"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says) && err.contains("No space left"), "{cmd}: {err}");
        assert!(!err.contains("could not read blob"), "{cmd}: {err}");
    }
}
