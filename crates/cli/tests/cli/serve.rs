//! `cargohold serve` as a real registry: skopeo, podman, docker and cargohold
//! push to it and pull from it; a SIGKILL mid-push leaves nothing partial;
//! SIGTERM drains, then stops; gc; read-only mode. The helpers that start a
//! server are shared with `serve_auth` and `serve_integration`.

use super::*;

/// `cargohold serve` on a free port over `root`; killed on drop.
pub(crate) struct Served(pub(crate) std::process::Child, pub(crate) String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn serve(root: &Path) -> Served {
    serve_with(|c| {
        c.arg("--root").arg(root);
    })
}

/// Waits until `child` (a `cargohold serve`) listens on `addr`.
pub(crate) fn listening(child: std::process::Child, addr: String) -> Served {
    let s = Served(child, addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&s.1).is_err() {
        assert!(std::time::Instant::now() < deadline, "cargohold serve did not listen on {}", s.1);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    s
}

/// `cargohold serve --addr (a free port)` with what `configure` adds.
pub(crate) fn serve_with(configure: impl FnOnce(&mut Command)) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = bin();
    cmd.args(["serve", "--addr", &addr]);
    configure(&mut cmd);
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    listening(child, addr)
}

/// `cargohold serve --config CONFIG`, whose `http.addr` is on `port`.
pub(crate) fn serve_config(config: &Path, port: u16) -> Served {
    let child = bin()
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    listening(child, format!("127.0.0.1:{port}"))
}

fn podman(t: &Path) -> Command {
    require("podman");
    let mut c = Command::new("podman");
    c.arg("--root").arg(t.join("podman-root")).arg("--runroot").arg(t.join("podman-run"));
    c.args(["--storage-driver", "vfs"]);
    c
}

#[test]
fn skopeo_podman_and_cargohold_push_and_pull_through_serve() {
    let t = tempfile::tempdir().unwrap();
    let srv = serve(&t.path().join("registry"));
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let want = json(&store, &["inspect", "app:1", "--json"])["digest"].as_str().unwrap().to_owned();

    // cargohold pushes (in small chunks); skopeo and podman read it.
    let target = format!("{}/team/app:1", srv.1);
    ok(&store, &["--chunk-size", "16K", "push", "app:1", &target]);
    let digest = run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{target}")));
    assert_eq!(digest.trim(), want);
    run(podman(t.path()).args(["pull", "-q", "--tls-verify=false", &target]));
    // podman pushes; cargohold pulls what podman wrote, bit for bit.
    let from_podman = format!("{}/team/frompodman:1", srv.1);
    run(podman(t.path()).args(["push", "-q", "--tls-verify=false", &target, &from_podman]));
    let pushed_by_podman =
        run(skopeo(t.path()).args(["inspect", "--raw", "--tls-verify=false"]).arg(format!("docker://{from_podman}")));
    let other = t.path().join("other");
    let pulled = json(&other, &["pull", &from_podman, "--json"]);
    assert_eq!(pulled["digest"].as_str().unwrap(), cargohold_digest(pushed_by_podman.as_bytes()));
    // skopeo pushes; cargohold pulls.
    let from_skopeo = format!("{}/team/fromskopeo:1", srv.1);
    run(skopeo(t.path())
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{from_skopeo}")));
    assert_eq!(json(&other, &["pull", &from_skopeo, "--json"])["digest"].as_str().unwrap(), want);
    let tags = json(&other, &["catalog", &srv.1, "--json"]);
    assert_eq!(tags["repositories"].as_array().unwrap().len(), 3, "{tags}");
}

/// An upload opened in `k/app` on a raw connection to `addr`: the
/// connection (for what follows) and the upload's location.
pub(crate) fn raw_upload(addr: &str) -> (std::net::TcpStream, String) {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "POST /v2/k/app/blobs/uploads/ HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut head = [0u8; 1024];
    let n = conn.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    let location = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("location:").then(|| l[9..].trim().to_owned()))
        .unwrap();
    (conn, location)
}

#[test]
fn a_killed_server_leaves_nothing_partial_and_sigterm_stops_it() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("registry");
    let mut srv = serve(&root);
    // Half an upload, then SIGKILL.
    let data = vec![7u8; 300_000];
    let digest = cargohold_digest(&data);
    let (mut conn, location) = raw_upload(&srv.1);
    use std::io::Write as _;
    write!(
        conn,
        "PUT {location}?digest={digest} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        srv.1,
        data.len()
    )
    .unwrap();
    conn.write_all(&data[..100_000]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(srv.0.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = srv.0.wait();
    drop(conn);
    // Restarted on the same storage: the blob is not there; a push works.
    let srv = serve(&root);
    let blob = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .arg(format!("http://{}/v2/k/app/blobs/{digest}", srv.1))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&blob.stdout), "404");
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), &format!("docker://{}/k/app:1", srv.1)]);
    // SIGTERM: a clean stop.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(srv.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut srv = srv;
    let status = srv.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// An upload on `addr` stalled half way through a PATCH of 3 MB (the
/// server has read what was sent): its connection and location.
fn stalled_upload(addr: &str) -> (std::net::TcpStream, String) {
    use std::io::Write as _;
    let (mut conn, location) = raw_upload(addr);
    write!(conn, "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 3000000\r\n\r\n").unwrap();
    conn.write_all(&[5u8; 1_500_000]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    (conn, location)
}

/// A stalled upload holds SIGTERM back for the drain timeout, no longer; what
/// it sent stays, to be resumed. A second SIGTERM does not wait.
#[test]
fn sigterm_waits_for_requests_in_flight_at_most_the_drain_timeout() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("registry");
    let mut srv = serve_with(|c| {
        c.arg("--root").arg(&root).args(["--drain-timeout", "2"]);
    });
    let (conn, location) = stalled_upload(&srv.1);
    let started = std::time::Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(srv.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = srv.0.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= std::time::Duration::from_millis(1800), "stopped before the drain timeout: {took:?}");
    assert!(took < std::time::Duration::from_secs(10), "the drain timeout did not stop it: {took:?}");
    drop(conn);
    // A second SIGTERM stops at once, whatever the drain timeout (with
    // connections served on three threads: the main one and two more).
    let mut srv2 = serve_with(|c| {
        c.arg("--root").arg(&root).args(["--drain-timeout", "60", "--threads", "3"]);
    });
    let serving = || cargohold_testkit::thread_names(srv2.0.id(), "serve-");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while serving().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(serving(), ["serve-0", "serve-1"]);
    let (conn2, _) = stalled_upload(&srv2.1);
    let pid = nix::unistd::Pid::from_raw(srv2.0.id() as i32);
    let started = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(srv2.0.try_wait().unwrap().is_none(), "the first SIGTERM waits for the upload");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = srv2.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    drop(conn2);
    // Restarted: the upload is there, holding what it received (1 MiB
    // writes; the rest is the client's to send again).
    let srv = serve(&root);
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-"])
        .arg(format!("http://{}{location}", srv.1))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 204"), "{head}");
    let range = head.lines().find_map(|l| l.strip_prefix("range:")).expect("a Range header").trim().to_owned();
    let end: u64 = range.strip_prefix("0-").expect("0-END").parse().unwrap();
    assert!(end + 1 >= 1 << 20 && end < 1_500_000, "{range}");
    // No threads at all is not a way to serve.
    let out = bin().args(["serve", "--threads", "0", "--root"]).arg(&root).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn gc_deletes_what_nothing_uses_and_spares_young_blobs() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("registry");
    let srv = serve(&root);
    let store = t.path().join("store");
    // Two one-layer images of different content.
    for (name, content) in [("a", "first"), ("b", "second")] {
        let dir = t.path().join(name);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/motd"), content).unwrap();
        std::fs::write(dir.join("data.bin"), vec![name.as_bytes()[0]; 50_000]).unwrap();
        let tar = t.path().join(format!("{name}.tar"));
        run(Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&dir).arg("."));
        ok(&store, &["import", tar.to_str().unwrap(), &format!("img:{name}")]);
    }
    let target = format!("{}/team/app:1", srv.1);
    ok(&store, &["push", "img:a", &target]);
    ok(&store, &["push", "img:b", &target]); // img:a's manifest is now untagged
    let root_s = root.to_str().unwrap();
    // Everything is young: the default min age deletes nothing, even untagged.
    let young = json(&store, &["serve", "gc", "--root", root_s, "--delete-untagged", "--json"]);
    assert_eq!(young["blobs_deleted"].as_array().unwrap().len(), 0, "{young}");
    assert_eq!(young["manifests_deleted"].as_array().unwrap().len(), 0, "{young}");
    // Without --delete-untagged nothing is garbage either.
    let kept = json(&store, &["serve", "gc", "--root", root_s, "--min-age", "0", "--json"]);
    assert!(kept["blobs_deleted"].as_array().unwrap().is_empty(), "{kept}");
    // Untagged: a dry run says, then the real one deletes img:a's manifest
    // and its own layer and config, never what img:b uses.
    let dry =
        json(&store, &["serve", "gc", "--root", root_s, "--min-age", "0", "--delete-untagged", "--dry-run", "--json"]);
    assert_eq!(dry["manifests_deleted"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["blobs_deleted"].as_array().unwrap().len(), 3, "manifest, config, layer of img:a: {dry}");
    let done = json(&store, &["serve", "gc", "--root", root_s, "--min-age", "0", "--delete-untagged", "--json"]);
    assert_eq!(done["blobs_deleted"], dry["blobs_deleted"]);
    let other = t.path().join("other");
    let pulled = json(&other, &["pull", &target, "--json"]);
    assert_eq!(pulled["digest"], json(&store, &["inspect", "img:b", "--json"])["digest"]);
    let again = json(&store, &["serve", "gc", "--root", root_s, "--min-age", "0", "--delete-untagged", "--json"]);
    assert!(again["blobs_deleted"].as_array().unwrap().is_empty(), "{again}");
}

/// Every file under `dir` with its content, for comparing before and after.
fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn read_only_serves_pulls_and_refuses_every_write() {
    require("curl");
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("registry");
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let srv = serve(&root);
    ok(&store, &["push", "app:1", &format!("{}/team/app:1", srv.1)]);
    drop(srv);
    let before = files_under(&root);

    let srv = serve_with(|c| {
        c.arg("--root").arg(&root).arg("--read-only");
    });
    // Pulls as ever.
    let other = t.path().join("other");
    let pulled = json(&other, &["pull", &format!("{}/team/app:1", srv.1), "--json"]);
    assert_eq!(pulled["digest"], json(&store, &["inspect", "app:1", "--json"])["digest"]);
    // Pushes fail naming why, with the spec's code.
    let pushed = ch(&store, &["push", "app:1", &format!("{}/team/app:2", srv.1)]);
    let err = String::from_utf8_lossy(&pushed.stderr);
    assert!(!pushed.status.success() && err.contains("read-only") && err.contains("UNSUPPORTED"), "{err}");
    let digest = pulled["digest"].as_str().unwrap().to_owned();
    for (method, path) in [
        ("POST", "/v2/team/app/blobs/uploads/".to_owned()),
        ("DELETE", format!("/v2/team/app/manifests/{digest}")),
        ("DELETE", format!("/v2/team/app/blobs/{digest}")),
        ("PUT", "/v2/team/app/manifests/3".to_owned()),
    ] {
        let head = run(Command::new("curl").args(["-s", "-i", "-X", method]).arg(format!("http://{}{path}", srv.1)));
        assert!(head.starts_with("HTTP/1.1 405") && head.contains("UNSUPPORTED"), "{method} {path}: {head}");
        assert!(head.to_ascii_lowercase().contains("allow: get, head"), "{head}");
    }
    drop(srv);
    assert_eq!(files_under(&root).keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    assert!(files_under(&root) == before, "a read-only registry wrote to its storage");

    // The same from distribution's config.yml; a proxy cannot be read-only;
    // a storage that is not there is not made.
    let config = t.path().join("config.yml");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    readonly:\n      \
             enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.display()
        ),
    )
    .unwrap();
    let srv = serve_config(&config, port);
    let pushed = ch(&store, &["push", "app:1", &format!("{}/team/app:4", srv.1)]);
    assert!(!pushed.status.success() && String::from_utf8_lossy(&pushed.stderr).contains("read-only"));
    drop(srv);
    assert!(files_under(&root) == before, "a read-only registry wrote to its storage");
    let proxied = format!("{}proxy:\n  remoteurl: http://127.0.0.1:1\n", std::fs::read_to_string(&config).unwrap());
    std::fs::write(&config, proxied).unwrap();
    let out = bin().args(["serve", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("read-only") && err.contains("pull-through"), "{err}");
    let missing = t.path().join("missing");
    let out = bin().args(["serve", "--read-only", "--root"]).arg(&missing).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(missing.to_str().unwrap()), "{err}");
    assert!(!missing.exists());
}

/// Docker (Debian's docker.io daemon) pushes to `cargohold serve` and pulls
/// from it; what docker pushed, cargohold pulls with the digest docker
/// reported, and what cargohold pushed, docker runs the same image of.
#[test]
fn docker_pushes_to_and_pulls_from_serve() {
    let t = tempfile::tempdir().unwrap();
    let dockerd = cargohold_testkit::Dockerd::start();
    let srv = serve(&t.path().join("registry"));
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let tar = t.path().join("app.tar");
    ok(&store, &["save", "app:1", "-o", tar.to_str().unwrap()]);
    run(dockerd.docker().arg("load").arg("-i").arg(&tar));
    let target = format!("{}/team/fromdocker:1", srv.1);
    run(dockerd.docker().args(["tag", "app:1", &target]));
    let pushed = run(dockerd.docker().args(["push", &target]));
    let digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:") && w.len() == 71)
        .unwrap_or_else(|| panic!("docker push named no digest: {pushed}"))
        .to_owned();
    let other = t.path().join("other");
    assert_eq!(json(&other, &["pull", &target, "--json"])["digest"], digest.as_str(), "what docker pushed");
    run(dockerd.docker().args(["rmi", &target]));
    run(dockerd.docker().args(["pull", &target]));
    // cargohold pushes; docker pulls it and sees the same image (its config).
    let ours = format!("{}/team/fromcargohold:1", srv.1);
    ok(&store, &["push", "app:1", &ours]);
    run(dockerd.docker().args(["pull", &ours]));
    let id = run(dockerd.docker().args(["image", "inspect", "--format", "{{.Id}}", &ours]));
    let config = json(&store, &["inspect", "app:1", "--json"]);
    assert_eq!(id.trim(), config["id"].as_str().unwrap_or_default(), "{config}");
}

/// GETs `url` (a debug listener that may still be starting), its body.
fn fetch(url: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = Command::new("curl").args(["-sf", url]).output().unwrap();
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "{url}: {out:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `registry_http_requests_total` by its labels.
fn request_counts(metrics: &str) -> std::collections::BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("registry_http_requests_total"))
        .map(|l| {
            let (labels, n) = l.rsplit_once(' ').unwrap();
            (labels.to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// `http.debug` as distribution's: `/debug/health`, and Prometheus metrics
/// at the configured path that count the same skopeo push and pulls under
/// the same handler, method and status as docker-registry's own, in a form
/// Prometheus' checker (promtool) accepts.
#[test]
fn debug_address_serves_health_and_metrics_as_distribution_does() {
    require("promtool");
    require("curl");
    let t = tempfile::tempdir().unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let debug = |port: u16| {
        format!("  debug:\n    addr: 127.0.0.1:{port}\n    prometheus:\n      enabled: true\n      path: /m\n")
    };
    let (port, ours_debug, dist_debug) = (free(), free(), free());
    let config = t.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{}",
            t.path().join("ours").display(),
            debug(ours_debug)
        ),
    )
    .unwrap();
    let ours = serve_config(&config, port);
    let dist = start_registry(tempfile::tempdir().unwrap(), "", &debug(dist_debug));
    let layout = umoci_image(t.path());
    for addr in [&ours.1, &dist.1] {
        run(skopeo(t.path())
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("docker://{addr}/team/app:1")));
        run(skopeo(t.path()).args(["inspect", "--tls-verify=false"]).arg(format!("docker://{addr}/team/app:1")));
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{addr}/v2/team/app/manifests/nope"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    }
    let theirs = fetch(&format!("http://127.0.0.1:{dist_debug}/m"));
    let mine = fetch(&format!("http://127.0.0.1:{ours_debug}/m"));
    let counts = request_counts(&mine);
    assert!(counts.get(r#"{code="201",handler="manifest",method="put"}"#) == Some(&1), "{mine}");
    assert_eq!(counts, request_counts(&theirs), "ours:\n{mine}\ndistribution's:\n{theirs}");
    for family in [
        "registry_http_request_duration_seconds_bucket",
        "registry_http_request_size_bytes_sum",
        "registry_http_response_size_bytes_count",
        "registry_http_in_flight_requests",
        "process_resident_memory_bytes",
    ] {
        assert!(mine.lines().any(|l| l.starts_with(family)), "{family} missing:\n{mine}");
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), mine.as_bytes()).unwrap();
    drop(check.stdin.take());
    let checked = check.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool: {checked:?}");
    assert_eq!(fetch(&format!("http://127.0.0.1:{ours_debug}/debug/health")), "{}");
    // The flag: health, and the metrics at /metrics.
    let flagged_debug = free();
    let flagged = serve_with(|c| {
        c.arg("--root").arg(t.path().join("flagged")).arg("--debug-addr").arg(format!("127.0.0.1:{flagged_debug}"));
    });
    fetch(&format!("http://{}/v2/", flagged.1));
    let m = fetch(&format!("http://127.0.0.1:{flagged_debug}/metrics"));
    assert_eq!(request_counts(&m).get(r#"{code="200",handler="base",method="get"}"#), Some(&1), "{m}");
    assert_eq!(fetch(&format!("http://127.0.0.1:{flagged_debug}/debug/health")), "{}");
}
