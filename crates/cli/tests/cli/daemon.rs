//! `docker-daemon:` images, against Debian's docker.io daemon, with skopeo
//! reading and writing the same engine.

use std::path::Path;

use super::{bin, ch, json, ok, run, skopeo, umoci_image};

/// The config's layer diff IDs of the image in OCI layout `dir` at `tag`.
fn diff_ids(dir: &Path, tag: &str) -> serde_json::Value {
    let read = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{tag} in {index}"));
    let manifest = read(entry["digest"].as_str().unwrap());
    read(manifest["config"]["digest"].as_str().unwrap())["rootfs"]["diff_ids"].clone()
}

/// As skopeo's transport: what cargohold loads into a Docker engine is the
/// image docker reports (its ID our config's digest) and skopeo reads back
/// (the same layers); what skopeo loads, cargohold reads as docker's image
/// (by name, with `DOCKER_HOST`, and by image ID); a missing image, a bare
/// name, an unusable host and a daemon host for a non-daemon side are
/// named, the store left as it was; the archives in between are gone.
#[test]
fn docker_daemon_images_move_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let dockerd = cargohold_testkit::Dockerd::start();
    let host = dockerd.host.as_str();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let tmp_s = tmp.to_str().unwrap();
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let ours = json(&store, &["inspect", "app:1", "--json"]);

    // Ours into the engine: docker's image ID is our config's digest.
    let to_docker = [
        "copy",
        "--tmpdir",
        tmp_s,
        "--dest-daemon-host",
        host,
        "--additional-tag",
        "team/also:2",
        "app:1",
        "docker-daemon:team/app:1",
    ];
    ok(&store, &to_docker);
    // Under each name (--additional-tag, as skopeo's).
    for name in ["team/app:1", "team/also:2"] {
        let id = run(dockerd.docker().args(["image", "inspect", "--format", "{{.Id}}", name]));
        assert_eq!(id.trim(), ours["id"].as_str().unwrap(), "{name}: {ours}");
    }
    // An image of zstd layers loads too (they go in inflated: engines
    // before Docker 20.10 cannot read zstd; gzip ones go as they are).
    ok(&store, &["copy", "--dest-compress-format", "zstd", "app:1", "appz:1"]);
    ok(&store, &["copy", "--dest-daemon-host", host, "appz:1", "docker-daemon:team/appz:1"]);
    let id = run(dockerd.docker().args(["image", "inspect", "--format", "{{.Id}}", "team/appz:1"]));
    assert_eq!(id.trim(), ours["id"].as_str().unwrap());
    // skopeo reads it from the engine: the same layers.
    let sk = t.path().join("skopeo-read");
    run(skopeo(t.path())
        .args(["copy", "-q", "--src-daemon-host", host, "docker-daemon:team/app:1"])
        .arg(format!("oci:{}:x", sk.display())));
    let ours_read = t.path().join("ours-read");
    ok(
        &store,
        &["copy", "--src-daemon-host", host, "docker-daemon:team/app:1", &format!("oci:{}:x", ours_read.display())],
    );
    assert_eq!(diff_ids(&sk, "x"), diff_ids(&ours_read, "x"));
    assert_eq!(diff_ids(&ours_read, "x"), diff_ids(&layout, "v1"));

    // skopeo loads into the engine; we read it, with DOCKER_HOST, as docker's image.
    run(skopeo(t.path())
        .args(["copy", "-q", "--dest-daemon-host", host])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg("docker-daemon:fromskopeo:1"));
    let docker_id = run(dockerd.docker().args(["image", "inspect", "--format", "{{.Id}}", "fromskopeo:1"]));
    let docker_id = docker_id.trim();
    let with_host = |args: &[&str]| {
        let out = bin().env("DOCKER_HOST", host).arg("--store").arg(&store).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let tmpdir = format!("--tmpdir={tmp_s}");
    with_host(&["copy", &tmpdir, "docker-daemon:fromskopeo:1", "fromdocker:1"]);
    assert_eq!(json(&store, &["inspect", "fromdocker:1", "--json"])["id"], docker_id);
    with_host(&["copy", &tmpdir, &format!("docker-daemon:{docker_id}"), "byid:1"]);
    assert_eq!(json(&store, &["inspect", "byid:1", "--json"])["id"], docker_id);
    let inspected: serde_json::Value =
        serde_json::from_str(&with_host(&["inspect", "docker-daemon:fromskopeo:1", "--json"])).unwrap();
    assert_eq!(inspected["id"], docker_id);
    let template = ["inspect", "--daemon-host", host, "-f", "{{.Id}}", "docker-daemon:fromskopeo:1"];
    assert_eq!(ok(&store, &template).trim(), docker_id);

    // A build's output goes to the engine too.
    let context = t.path().join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    std::fs::write(context.join("f"), "built\n").unwrap();
    with_host(&["build", "-q", "-t", "built:1", "-o", "docker-daemon:built:1", context.to_str().unwrap()]);
    let id = run(dockerd.docker().args(["image", "inspect", "--format", "{{.Id}}", "built:1"]));
    assert_eq!(id.trim(), json(&store, &["inspect", "built:1", "--json"])["id"].as_str().unwrap());

    // `run` takes an engine's image, as podman's.
    super::import_busybox(t.path(), &store);
    ok(&store, &["copy", "--dest-daemon-host", host, "bb:1", "docker-daemon:bb:2"]);
    let said = with_host(&["run", "--rm", "docker-daemon:bb:2", "--", "echo", "from the engine"]);
    assert_eq!(said.trim(), "from the engine");

    // Refusals name what is wrong, and change nothing.
    let index = std::fs::read(store.join("index.json")).unwrap();
    let fails = |args: &[&str], env: Option<&str>, says: &[&str]| {
        let mut c = bin();
        c.env("DOCKER_HOST", env.unwrap_or(host)).arg("--store").arg(&store).args(args);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        for s in says {
            assert!(err.contains(s), "{args:?}: {err}");
        }
    };
    fails(
        &["copy", "--tmpdir", tmp_s, "docker-daemon:nope:1", "x:1"],
        None,
        &["docker-daemon:nope:1", "reference does not exist"],
    );
    fails(
        &["copy", "app:1", "docker-daemon:team/app"],
        None,
        &["docker-daemon:team/app", "neither a tag nor a digest"],
    );
    fails(&["copy", "app:1", &format!("docker-daemon:{docker_id}")], None, &["give NAME:TAG"]);
    fails(&["copy", "docker-daemon:fromskopeo:1", "y:1"], Some("ssh://me@there"), &["ssh://me@there", "not supported"]);
    let gone = format!("unix://{}/none.sock", t.path().display());
    fails(&["copy", "docker-daemon:fromskopeo:1", "y:1"], Some(&gone), &[&gone, "cannot connect"]);
    fails(&["copy", "--src-daemon-host", host, "app:1", "z:1"], None, &["--src-daemon-host", "app:1"]);
    fails(&["inspect", "--daemon-host", host, "app:1"], None, &["--daemon-host", "app:1"]);
    assert_eq!(std::fs::read(store.join("index.json")).unwrap(), index, "the store changed");
    assert!(!ch(&store, &["inspect", "x:1"]).status.success());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "archives left in --tmpdir");
}
