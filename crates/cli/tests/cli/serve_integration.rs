//! `cargohold serve` with what surrounds it: webhooks delivered and retried,
//! a pull-through cache in front of docker-registry, two servers over one S3
//! bucket, publish on push, podman running published images.

use super::serve::{listening, serve, serve_with};
use super::*;

/// A webhook receiver: fails the first `failures` deliveries with 500, then
/// takes them; keeps every body it took.
fn receiver(
    failures: usize,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (taken2, tries2) = (taken.clone(), tries.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let Some(head) = cargohold_testkit::read_head(&mut c) else { continue };
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            if c.read_exact(&mut body).is_err() {
                continue;
            }
            let n = tries2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < failures {
                let _ = c.write_all(b"HTTP/1.1 500 Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            assert!(head.to_ascii_lowercase().contains("application/vnd.docker.distribution.events.v1+json"), "{head}");
            taken2.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, taken, tries)
}

#[test]
fn webhooks_are_delivered_in_distributions_envelope_and_retried() {
    let t = tempfile::tempdir().unwrap();
    let (hook, taken, tries) = receiver(2);
    let srv = serve_with(|c| {
        c.arg("--root").arg(t.path().join("data")).args(["--notify", &format!("http://{hook}/events")]);
    });
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let pushed = json(&store, &["push", "app:1", &format!("{}/team/app:1", srv.1), "--json"]);
    let digest = pushed["digest"].as_str().unwrap().to_owned();
    // The manifest push arrives, after the receiver's two failures.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let event = loop {
        let found = taken
            .lock()
            .unwrap()
            .iter()
            .flat_map(|e| e["events"].as_array().cloned().unwrap_or_default())
            .find(|e| e["action"] == "push" && e["target"]["digest"] == digest.as_str());
        if let Some(e) = found {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no push event for {digest}: {:?}", taken.lock().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(tries.load(std::sync::atomic::Ordering::SeqCst) >= 3, "failed deliveries are retried");
    assert_eq!(event["target"]["repository"], "team/app");
    assert_eq!(event["target"]["tag"], "1");
    assert!(event["target"]["mediaType"].as_str().unwrap().contains("manifest"), "{event}");
    assert!(event["target"]["url"].as_str().unwrap().ends_with(&format!("/v2/team/app/manifests/{digest}")), "{event}");
    assert!(event["id"].is_string() && event["timestamp"].is_string() && event["source"]["instanceID"].is_string());
    // Blob pushes come in order before it; pulls are reported too.
    let other = t.path().join("other");
    ok(&other, &["pull", &format!("{}/team/app:1", srv.1)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !taken
        .lock()
        .unwrap()
        .iter()
        .flat_map(|e| e["events"].as_array().cloned().unwrap_or_default())
        .any(|e| e["action"] == "pull")
    {
        assert!(std::time::Instant::now() < deadline, "no pull event");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_pull_through_cache_in_front_of_docker_registry() {
    let upstream = registry();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let want = json(&store, &["push", "app:1", &format!("{}/team/app:1", upstream.1), "--json"])["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let cache = serve_with(|c| {
        c.arg("--root").arg(t.path().join("cache")).args(["--proxy", &format!("http://{}", upstream.1)]);
    });
    let through = format!("{}/team/app:1", cache.1);
    let first = t.path().join("first");
    assert_eq!(json(&first, &["pull", &through, "--json"])["digest"], want.as_str());
    run(skopeo(t.path()).args(["inspect", "--tls-verify=false"]).arg(format!("docker://{through}")));
    // Pushes go to the upstream, not to a cache.
    let out = ch(&store, &["push", "app:1", &format!("{}/team/app:2", cache.1)]);
    assert!(!out.status.success(), "a cache takes no pushes");
    // Upstream gone: the cache still serves what it holds.
    drop(upstream);
    let second = t.path().join("second");
    assert_eq!(json(&second, &["pull", &through, "--json"])["digest"], want.as_str());
    let missing = ch(&second, &["pull", &format!("{}/team/other:1", cache.1)]);
    assert!(!missing.status.success());
}

/// Two `cargohold serve` processes over one S3 bucket (Swift's S3 API), one
/// from distribution's config.yml (`storage.s3`), one from `--s3` flags with
/// the keys in the environment: one registry. `serve gc` works on the bucket.
#[test]
fn two_servers_over_one_s3_bucket() {
    let t = tempfile::tempdir().unwrap();
    let swift = cargohold_testkit::Swift::start(Path::new(env!("CARGO_TARGET_TMPDIR")));
    swift.bucket("docker_images");
    let endpoint = swift.s3_endpoint.trim_start_matches("http://");
    let config = t.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  s3:\n    accesskey: {}\n    secretkey: {}\n    region: us-east-1\n    \
             regionendpoint: {endpoint}\n    secure: false\n    v4auth: true\n    bucket: docker_images\n    \
             rootdirectory: /registry\n    chunksize: 5242880\n  delete:\n    enabled: true\n",
            swift.access_key, swift.secret_key
        ),
    )
    .unwrap();
    let a = serve_with(|c| {
        c.arg("--config").arg(&config);
    });
    let b = serve_with(|c| {
        c.args(["--s3", "s3://docker_images/registry", "--s3-endpoint", &swift.s3_endpoint])
            .env("AWS_ACCESS_KEY_ID", &swift.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &swift.secret_key);
    });

    // cargohold pushes to A (in chunks); skopeo and cargohold read it from B.
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let want = json(&store, &["inspect", "app:1", "--json"])["digest"].as_str().unwrap().to_owned();
    ok(&store, &["--chunk-size", "64K", "push", "app:1", &format!("{}/team/app:1", a.1)]);
    let digest = run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{}/team/app:1", b.1)));
    assert_eq!(digest.trim(), want);
    // skopeo pushes to B; cargohold pulls from A, bit for bit.
    run(skopeo(t.path())
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/team/fromskopeo:1", b.1)));
    let other = t.path().join("other");
    assert_eq!(json(&other, &["pull", &format!("{}/team/fromskopeo:1", a.1), "--json"])["digest"], want.as_str());
    let keys = swift.list("docker_images");
    assert!(keys.iter().all(|k| k.starts_with("registry/")), "everything below rootdirectory: {keys:?}");
    assert!(!keys.iter().any(|k| k.contains("/uploads/")), "no upload left behind: {keys:?}");

    // A tag deleted through B is gone on A; gc then frees nothing in use.
    ok(&store, &["delete", &format!("{}/team/fromskopeo:1", b.1)]);
    let tags = ch(&store, &["tags", &format!("{}/team/fromskopeo", a.1), "--json"]);
    assert!(String::from_utf8_lossy(&tags.stdout).contains("[]"), "{tags:?}");
    let report = json(&store, &["serve", "gc", "--config", config.to_str().unwrap(), "--min-age", "0", "--json"]);
    assert_eq!(report["blobs_deleted"], serde_json::json!([]), "every blob is still used by team/app:1: {report}");
    assert_eq!(json(&other, &["pull", &format!("{}/team/app:1", b.1), "--json"])["digest"], want.as_str());
    drop((a, b));
}

/// Publish on push: `serve --notify` sends its webhooks to `publish listen`,
/// which converts what is pushed and unpublishes what is deleted; a job
/// that fails stays in the durable queue through a kill -9 and is retried.
#[test]
fn publish_listen_converts_pushes_and_keeps_its_queue_through_kill_9() {
    require("curl");
    let t = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hook = format!("127.0.0.1:{port}");
    let (tree, queue) = (t.path().join("tree"), t.path().join("queue"));
    // What the listener says, shown when a step fails.
    let log = t.path().join("listen.log");
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    let start_listen = || {
        let child = bin()
            .args(["publish", "listen"])
            .arg(&tree)
            .args(["--addr", &hook, "--queue"])
            .arg(&queue)
            .args(["--skip-thin-image", "--store"])
            .arg(t.path().join("lstore"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        listening(child, hook.clone())
    };
    std::fs::create_dir_all(&tree).unwrap();
    let mut listener = start_listen();
    let srv = serve_with(|c| {
        c.arg("--root").arg(t.path().join("registry")).args(["--notify", &format!("http://{hook}/events")]);
    });
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    ok(&store, &["push", "app:1", &format!("{}/team/app:1", srv.1)]);
    let published = |name: &str| tree.join(format!("{}/{name}/etc/motd", srv.1)).is_file();
    let wait = |what: &dyn Fn() -> bool, why: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !what() {
            assert!(std::time::Instant::now() < deadline, "{why}; the listener said:\n{}", said());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let queued = || std::fs::read_dir(&queue).unwrap().count();
    // Each job is done (its file gone) before the next step: the image is
    // deleted only once its publishing has ended.
    wait(&|| published("team/app:1") && queued() == 0, "the pushed image was not published");
    ok(&store, &["delete", &format!("{}/team/app:1", srv.1)]);
    wait(
        &|| !tree.join(format!("{}/team/app:1", srv.1)).exists() && queued() == 0,
        "the deleted image stayed published",
    );

    // An event for an image not there yet: the job fails, stays queued
    // (through a kill -9) and is retried until the image comes.
    let other = serve(&t.path().join("other"));
    let event = format!(
        "{{\"events\":[{{\"action\":\"push\",\"target\":{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
         \"repository\":\"team/late\",\"tag\":\"1\",\"url\":\"http://{}/v2/team/late/manifests/sha256:00\"}}}}]}}",
        other.1
    );
    let posted = run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json"])
        .args(["--data-binary", &event, &format!("http://{hook}/events")]));
    assert_eq!(posted, "200");
    let tried = || {
        std::fs::read_dir(&queue)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .any(|j| j.contains("\"attempts\":1"))
    };
    wait(&tried, "the failing job was not tried");
    let _ = listener.0.kill();
    let _ = listener.0.wait();
    let kept: Vec<String> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            format!("{}: {}", p.display(), std::fs::read_to_string(&p).unwrap_or_default())
        })
        .collect();
    assert_eq!(kept.len(), 1, "the failed job is kept, alone: {kept:#?}; the listener said:\n{}", said());
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), &format!("docker://{}/team/late:1", other.1)]);
    listener = start_listen();
    wait(&|| tree.join(format!("{}/team/late:1/etc/motd", other.1)).is_file(), "the queued job was lost");
    wait(&|| queued() == 0, "the finished job stayed queued");
    // Hostile bodies: refused, nothing queued.
    let bad = run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data-binary", "not json"])
        .arg(format!("http://{hook}/events")));
    assert_eq!(bad, "400");
    assert_eq!(queued(), 0);
    drop(listener);
}

/// Debian's podman runs a published image from the tree's podman store
/// (and from a store `create-podman-store` makes) without pulling it; the
/// store forgets an unpublished image.
#[test]
fn podman_runs_published_images_from_the_podman_stores() {
    require("podman");
    require("tar");
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    cargohold_testkit::busybox_rootfs(&rootfs);
    std::fs::write(rootfs.join("msg"), "hello from the flat\n").unwrap();
    let tar = t.path().join("root.tar");
    run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
    let store = t.path().join("store");
    ok(&store, &["import", tar.to_str().unwrap(), "bb:1", "-c", "CMD [\"/bin/sh\"]"]);
    let srv = serve(&t.path().join("registry"));
    ok(&store, &["push", "bb:1", &format!("{}/team/bb:1", srv.1)]);
    let tree = t.path().join("tree");
    let image = format!("http://{}/team/bb:1", srv.1);
    ok(&store, &["publish", "convert-single-image", &image, tree.to_str().unwrap(), "-q"]);
    let podman_with = |store_dir: &Path, n: &str| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(t.path().join(format!("podman-root{n}")))
            .arg("--runroot")
            .arg(t.path().join(format!("podman-run{n}")));
        c.args(["--storage-driver", "overlay", "--storage-opt"])
            .arg(format!("additionalimagestore={}", store_dir.display()));
        c
    };
    let run_msg = |store_dir: &Path, n: &str| {
        let out = podman_with(store_dir, n)
            .args(["run", "--rm", "--pull=never", "--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096", "--network", "none"])
            .arg(format!("{}/team/bb:1", srv.1))
            .args(["cat", "/msg"])
            .output()
            .unwrap();
        assert!(out.status.success(), "podman run: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run_msg(&tree.join("podmanStore"), "1"), "hello from the flat\n");
    // A store of this machine's own, pointing into the tree.
    let local = t.path().join("local-store");
    ok(&store, &["publish", "create-podman-store", &image, tree.to_str().unwrap(), local.to_str().unwrap()]);
    assert_eq!(run_msg(&local, "2"), "hello from the flat\n");
    // A local user changes a file of the flat (the layer's, by the shared
    // inode): scrub finds it and, with --repair, restores layer and flat.
    let msg = tree.join(format!("{}/team/bb:1/msg", srv.1));
    ok(&store, &["publish", "scrub", tree.to_str().unwrap()]);
    // convert notices the change (not "skipped") and converts again.
    let again = json(&store, &["publish", "convert-single-image", &image, tree.to_str().unwrap(), "--json"]);
    assert_eq!(again["images"][0]["status"], "skipped", "{again}");
    std::fs::write(&msg, "tampered\n").unwrap();
    let again = json(&store, &["publish", "convert-single-image", &image, tree.to_str().unwrap(), "--json"]);
    assert!(again["images"][0]["status"] == "converted" && again["images"][0]["damaged"] == true, "{again}");
    assert_eq!(std::fs::read_to_string(&msg).unwrap(), "hello from the flat\n");
    std::fs::write(&msg, "tampered\n").unwrap();
    let found = ch(&store, &["publish", "scrub", tree.to_str().unwrap(), "--json"]);
    assert!(!found.status.success());
    let v: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(v["damaged_layers"].as_array().unwrap().len(), 1, "{v}");
    let v = json(&store, &["publish", "scrub", tree.to_str().unwrap(), "--repair", "--json"]);
    assert_eq!(v["images_damaged"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(std::fs::read_to_string(&msg).unwrap(), "hello from the flat\n");
    ok(&store, &["publish", "scrub", tree.to_str().unwrap()]);
    assert_eq!(run_msg(&tree.join("podmanStore"), "4"), "hello from the flat\n");

    // Unpublished: gone from the tree's store.
    ok(&store, &["publish", "delete-image", tree.to_str().unwrap(), &image]);
    let images = run(podman_with(&tree.join("podmanStore"), "3").args(["images", "--format", "{{.Repository}}"]));
    assert!(!images.contains("team/bb"), "{images}");
}
