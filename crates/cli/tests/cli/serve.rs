//! `cargohold serve` as a real registry: skopeo, podman and cargohold push
//! to it and pull from it; a SIGKILL mid-push leaves nothing partial; SIGTERM
//! stops it cleanly.

use super::*;
use cargohold_testkit::{TestRegistry, TokenServer};

/// `cargohold serve` on a free port over `root`; killed on drop.
struct Served(std::process::Child, String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(root: &Path) -> Served {
    serve_with(|c| {
        c.arg("--root").arg(root);
    })
}

/// Waits until `child` (a `cargohold serve`) listens on `addr`.
fn listening(child: std::process::Child, addr: String) -> Served {
    let s = Served(child, addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&s.1).is_err() {
        assert!(std::time::Instant::now() < deadline, "cargohold serve did not listen on {}", s.1);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    s
}

/// `cargohold serve --addr (a free port)` with what `configure` adds.
fn serve_with(configure: impl FnOnce(&mut Command)) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = bin();
    cmd.args(["serve", "--addr", &addr]);
    configure(&mut cmd);
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    listening(child, addr)
}

/// `cargohold serve --config CONFIG`, whose `http.addr` is on `port`.
fn serve_config(config: &Path, port: u16) -> Served {
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
fn raw_upload(addr: &str) -> (std::net::TcpStream, String) {
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

/// A stalled upload holds SIGTERM back for the drain timeout, no longer; what
/// it sent stays, to be resumed.
#[test]
fn sigterm_waits_for_requests_in_flight_at_most_the_drain_timeout() {
    use std::io::Write as _;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("registry");
    let mut srv = serve_with(|c| {
        c.arg("--root").arg(&root).args(["--drain-timeout", "2"]);
    });
    let (mut conn, location) = raw_upload(&srv.1);
    write!(conn, "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Length: 3000000\r\n\r\n", srv.1).unwrap();
    conn.write_all(&[5u8; 1_500_000]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(srv.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = srv.0.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= std::time::Duration::from_millis(1800), "stopped before the drain timeout: {took:?}");
    assert!(took < std::time::Duration::from_secs(10), "the drain timeout did not stop it: {took:?}");
    drop(conn);
    // A second SIGTERM stops at once, whatever the drain timeout.
    let mut srv2 = serve_with(|c| {
        c.arg("--root").arg(&root).args(["--drain-timeout", "60"]);
    });
    let (mut conn2, location2) = raw_upload(&srv2.1);
    write!(conn2, "PATCH {location2} HTTP/1.1\r\nHost: {}\r\nContent-Length: 3000000\r\n\r\n", srv2.1).unwrap();
    conn2.write_all(&[5u8; 1_500_000]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
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
}

#[test]
fn basic_auth_anonymous_pull_and_distributions_config_yml() {
    require("htpasswd");
    require("curl");
    let t = tempfile::tempdir().unwrap();
    let htpasswd = t.path().join("htpasswd");
    std::fs::write(&htpasswd, run(Command::new("htpasswd").args(["-Bbn", "alice", "s3cret"]))).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A Debian-style config.yml, pointed at by --config.
    let config = t.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  headers:\n    \
             X-Content-Type-Options: [nosniff]\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\nhealth:\n  \
             storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n",
            t.path().join("data").display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let srv = serve_config(&config, port);
    let head =
        run(Command::new("curl").args(["-s", "-D", "-", "-o", "/dev/null"]).arg(format!("http://{}/v2/", srv.1)));
    assert!(head.starts_with("HTTP/1.1 401") && head.contains("basic-realm"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-content-type-options: nosniff"), "{head}");

    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let target = format!("{}/team/app:1", srv.1);
    let anonymous = |args: &[&str]| no_stored_creds(t.path()).arg("--store").arg(&store).args(args).output().unwrap();
    assert!(!anonymous(&["push", "app:1", &target]).status.success(), "no user, no push");
    assert!(!anonymous(&["--creds", "alice:wrong", "push", "app:1", &target]).status.success());
    let pushed = anonymous(&["--creds", "alice:s3cret", "push", "app:1", &target]);
    assert!(pushed.status.success(), "{pushed:?}");
    run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--creds", "alice:s3cret"])
        .arg(format!("docker://{target}")));
    // config.yml's htpasswd has no anonymous pulls.
    assert!(!anonymous(&["tags", &format!("{}/team/app", srv.1)]).status.success());
    drop(srv);

    // --htpasswd with --anonymous-pull: anyone pulls, only users push.
    let srv2 = serve_with(|c| {
        c.arg("--root").arg(t.path().join("data")).arg("--htpasswd").arg(&htpasswd).arg("--anonymous-pull");
    });
    let other = t.path().join("other");
    let pulled = no_stored_creds(t.path())
        .arg("--store")
        .arg(&other)
        .args(["pull", &format!("{}/team/app:1", srv2.1)])
        .output()
        .unwrap();
    assert!(pulled.status.success(), "anonymous pull: {pulled:?}");
    assert!(!anonymous(&["push", "app:1", &format!("{}/team/app:2", srv2.1)]).status.success());

    // Keys not supported yet are refused by name.
    let s3 = t.path().join("s3.yml");
    std::fs::write(&s3, "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    keyid: k\n").unwrap();
    let out = bin().args(["serve", "--config"]).arg(&s3).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("storage.s3.keyid") && err.contains("not supported"), "{err}");
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

/// curl's exit code and HTTP status for `https://ADDR/v2/` (the server's
/// certificate not checked) with `extra` options.
fn curl_tls(addr: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("curl")
        .args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(extra)
        .arg(format!("https://{addr}/v2/"))
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn https_and_mutual_tls() {
    let t = tempfile::tempdir().unwrap();
    let pki = super::client::Pki::new(&t.path().join("pki"));
    let start = |extra: &[&std::ffi::OsStr]| {
        serve_with(|c| {
            c.arg("--root")
                .arg(t.path().join("data"))
                .arg("--tls-cert")
                .arg(&pki.server_cert)
                .arg("--tls-key")
                .arg(&pki.server_key)
                .args(extra);
        })
    };
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    {
        let srv = start(&[]);
        let certs = pki.certs_d(&t.path().join("certs.d"), &srv.1, false);
        let target = format!("{}/team/app:1", srv.1);
        ok(&store, &["--cert-dir", certs.to_str().unwrap(), "push", "app:1", &target]);
        run(skopeo(t.path()).args(["inspect", "--cert-dir"]).arg(certs.join(&srv.1)).arg(format!("docker://{target}")));
        let plain = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}/v2/", srv.1))
            .output()
            .unwrap();
        assert_ne!(String::from_utf8_lossy(&plain.stdout), "200", "no plain HTTP on the TLS port");
        assert_eq!(curl_tls(&srv.1, &["--tls-max", "1.2"]), (Some(0), "200".to_owned()), "TLS 1.2 by default");
    }
    let ca = pki.ca.clone();
    let srv = start(&["--tls-client-ca".as_ref(), ca.as_os_str()]);
    let ca_only = pki.certs_d(&t.path().join("ca-only"), &srv.1, false);
    let target = format!("{}/team/app:2", srv.1);
    let refused = ch(&store, &["--cert-dir", ca_only.to_str().unwrap(), "push", "app:1", &target]);
    assert!(!refused.status.success(), "no client certificate, no push");
    let with_client = pki.certs_d(&t.path().join("client.d"), &srv.1, true);
    ok(&store, &["--cert-dir", with_client.to_str().unwrap(), "push", "app:1", &target]);
    let other = t.path().join("other");
    ok(&other, &["--cert-dir", with_client.to_str().unwrap(), "pull", &target]);
    drop(srv);
    // TLS 1.3 only: a TLS 1.2 client is refused, a 1.3 one served.
    let srv = start(&["--tls-min-version".as_ref(), "1.3".as_ref()]);
    assert_eq!(curl_tls(&srv.1, &["--tlsv1.3"]), (Some(0), "200".to_owned()));
    let (status, http) = curl_tls(&srv.1, &["--tls-max", "1.2"]);
    assert!(status != Some(0) && http == "000", "a TLS 1.2 client got {status:?} {http}");
    let data = t.path().join("data");
    let out =
        ch(&store, &["serve", "--root", data.to_str().unwrap(), "--addr", "127.0.0.1:0", "--tls-min-version", "1.3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--tls-min-version is for HTTPS"), "{err}");
}

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

/// Token auth with our own token service: per-repository rules for users
/// and anonymous pulls, checked through cargohold and skopeo; Debian's
/// docker-registry trusts the same tokens (our key ids and signatures are
/// distribution's).
#[test]
fn token_auth_with_our_issuer_and_per_repository_rules() {
    require("htpasswd");
    require("openssl");
    let t = tempfile::tempdir().unwrap();
    let htpasswd = t.path().join("htpasswd");
    let users = run(Command::new("htpasswd").args(["-Bbn", "alice", "s3cret"]))
        + &run(Command::new("htpasswd").args(["-Bbn", "bob", "b0b"]));
    std::fs::write(&htpasswd, users).unwrap();
    let acl = t.path().join("acl.yml");
    std::fs::write(
        &acl,
        "- account: alice\n  type: registry\n  name: catalog\n  actions: ['*']\n\
         - account: alice\n  name: '*'\n  actions: ['*']\n\
         - account: bob\n  name: team/*\n  actions: [pull]\n\
         - account: '*'\n  name: ${account}/*\n  actions: [pull, push]\n\
         - anonymous: true\n  name: public/*\n  actions: [pull]\n",
    )
    .unwrap();
    let (key, cert) = (t.path().join("token.key"), t.path().join("token.crt"));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cargohold-tokens"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null()));
    let srv = serve_with(|c| {
        c.arg("--root").arg(t.path().join("data")).arg("--htpasswd").arg(&htpasswd);
        c.arg("--token-acl").arg(&acl).arg("--token-key").arg(&key);
    });
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let as_user = |creds: Option<&str>, args: &[&str]| {
        let mut c = no_stored_creds(t.path());
        c.arg("--store").arg(&store);
        if let Some(cr) = creds {
            c.args(["--creds", cr]);
        }
        c.args(args).output().unwrap()
    };
    let (alice, bob) = (Some("alice:s3cret"), Some("bob:b0b"));
    let team = format!("{}/team/app:1", srv.1);
    let head =
        run(Command::new("curl").args(["-s", "-D", "-", "-o", "/dev/null"]).arg(format!("http://{}/v2/", srv.1)));
    assert!(
        head.starts_with("HTTP/1.1 401")
            && head.contains(&format!("Bearer realm=\"http://{}/token\",service=\"cargohold\"", srv.1)),
        "{head}"
    );
    assert!(!as_user(None, &["push", "app:1", &team]).status.success(), "anonymous pushes nothing");
    assert!(!as_user(Some("alice:wrong"), &["push", "app:1", &team]).status.success());
    let pushed = as_user(alice, &["push", "app:1", &team]);
    assert!(pushed.status.success(), "{pushed:?}");
    assert!(
        !as_user(bob, &["push", "app:1", &format!("{}/team/app:2", srv.1)]).status.success(),
        "bob only pulls team/*"
    );
    assert!(as_user(bob, &["tags", &format!("{}/team/app", srv.1)]).status.success());
    let mine = as_user(bob, &["push", "app:1", &format!("{}/bob/app:1", srv.1)]);
    assert!(mine.status.success(), "${{account}}/*: {mine:?}");
    assert!(!as_user(None, &["tags", &format!("{}/team/app", srv.1)]).status.success());
    assert!(as_user(alice, &["push", "app:1", &format!("{}/public/app:1", srv.1)]).status.success());
    assert!(as_user(None, &["tags", &format!("{}/public/app", srv.1)]).status.success(), "anonymous pulls public/*");
    let digest = run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--creds", "bob:b0b", "--format", "{{.Digest}}"])
        .arg(format!("docker://{team}")));
    assert!(digest.trim().starts_with("sha256:"));
    assert!(!as_user(bob, &["catalog", &srv.1]).status.success(), "the catalog is alice's");
    assert!(as_user(alice, &["catalog", &srv.1]).status.success());
    assert!(!as_user(bob, &["delete", &team]).status.success(), "bob may not delete");
    assert!(as_user(alice, &["delete", &format!("{}/public/app:1", srv.1)]).status.success());

    // distribution trusts our tokens: a docker-registry behind our /token.
    let ours = TokenServer {
        realm: format!("http://{}/token", srv.1),
        service: "cargohold".into(),
        issuer: "cargohold".into(),
        cert: cert.clone(),
        requests: Default::default(),
    };
    let reg = TestRegistry::start_trusting(&ours);
    let pushed = as_user(alice, &["push", "app:1", &format!("{}/team/app:1", reg.addr)]);
    assert!(pushed.status.success(), "docker-registry accepts our tokens: {pushed:?}");
    assert!(!as_user(bob, &["push", "app:1", &format!("{}/team/app:2", reg.addr)]).status.success());
    assert!(as_user(bob, &["tags", &format!("{}/team/app", reg.addr)]).status.success());
}

/// Token auth from an external token service (distribution's `auth.token`
/// in config.yml, the test token service that docker-registry trusts).
#[test]
fn token_auth_from_an_external_issuer() {
    let t = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(t.path(), "carol", "pa55", 300);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = t.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    \
             realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            t.path().join("data").display(),
            tokens.realm,
            tokens.service,
            tokens.issuer,
            tokens.cert.display()
        ),
    )
    .unwrap();
    let srv = serve_config(&config, port);
    let layout = umoci_image(t.path());
    let store = t.path().join("store");
    ok(&store, &["copy", &format!("oci:{}:v1", layout.display()), "app:1"]);
    let target = format!("{}/team/app:1", srv.1);
    let with = |creds: &str, args: &[&str]| {
        no_stored_creds(t.path()).arg("--store").arg(&store).args(["--creds", creds]).args(args).output().unwrap()
    };
    assert!(!with("carol:wrong", &["push", "app:1", &target]).status.success());
    let pushed = with("carol:pa55", &["push", "app:1", &target]);
    assert!(pushed.status.success(), "{pushed:?}");
    run(skopeo(t.path())
        .args(["copy", "-q", "--src-tls-verify=false", "--src-creds", "carol:pa55"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:1", t.path().join("back").display())));
    assert!(tokens.requests.lock().unwrap().iter().any(|r| r.contains("repository:team/app:pull,push")));
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
    let start_listen = || {
        let child = bin()
            .args(["publish", "listen"])
            .arg(&tree)
            .args(["--addr", &hook, "--queue"])
            .arg(&queue)
            .args(["--skip-thin-image", "--store"])
            .arg(t.path().join("lstore"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
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
            assert!(std::time::Instant::now() < deadline, "{why}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait(&|| published("team/app:1"), "the pushed image was not published");
    ok(&store, &["delete", &format!("{}/team/app:1", srv.1)]);
    wait(&|| !tree.join(format!("{}/team/app:1", srv.1)).exists(), "the deleted image stayed published");

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
    let queued = || std::fs::read_dir(&queue).unwrap().count();
    let tried = || {
        std::fs::read_dir(&queue)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .any(|j| j.contains("\"attempts\":1"))
    };
    wait(&tried, "the failing job was not tried");
    let _ = listener.0.kill();
    let _ = listener.0.wait();
    assert_eq!(queued(), 1, "the failed job is kept");
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
