//! End-to-end tests of the `cargohold` binary, with umoci and skopeo as peers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod client;
mod containers;
mod platforms;
mod publish_tree;
mod serve;

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

/// Gives `nobody` subordinate IDs (as rootless Podman needs them).
fn nobody_has_subids() {
    require("newuidmap");
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with("nobody:")) {
            std::fs::write(file, format!("{text}nobody:300000:65536\n")).unwrap();
        }
    }
}

/// Rootless: build (RUN with a deletion and an opaque directory, COPY
/// --chown), stage and run as unprivileged users in user namespaces, one
/// with subordinate IDs (real owners, any USER) and one without (owners in
/// xattrs, root only); both build byte for byte the image root builds.
#[test]
fn rootless_build_stage_and_run_match_root() {
    nobody_has_subids();
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
    let out =
        bin().arg("--store").arg(&store).args(["load"]).stdin(std::fs::File::open(&junk).unwrap()).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("standard input"), "{out:?}");
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
    let bad = env(&["copy", "--src-creds", "alice:apass", "bb:1", &to]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--src-creds is for a registry"), "{bad:?}");

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
    assert!(!ch(&store, &["build", c, "--progress", "tty"]).status.success(), "an unsupported --progress is refused");
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
