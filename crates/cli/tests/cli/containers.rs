//! Containers through the command line: confinement in run, build and
//! stage (root and rootless), detached containers and their commands,
//! published ports, volumes, and the same flows beside podman.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::{bin, ch, import_busybox, json, ok, registry, require, rootless_ready, run, user_ok};

/// Removes every container of a store when a test ends, passed or failed:
/// a test that fails midway leaves no detached container running.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(out) = bin().arg("--store").arg(&self.0).args(["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = bin().arg("--store").arg(&self.0).args(["rm", "-f", id]).output();
            }
        }
    }
}

/// What the hostile probe must find in every container: the attacks
/// refused, nothing of the host reachable or inherited.
fn assert_probe_confined(out: &str, what: &str) {
    let p = cargohold_testkit::Probe::parse(out);
    let docker: u64 = 0xa80425fb;
    for set in ["cap_eff", "cap_prm", "cap_bnd"] {
        assert_eq!(p.caps(set) & !docker, 0, "{what}: {set} beyond Docker's 14: {out}");
    }
    assert_eq!(p.get("seccomp"), "2", "{what}: {out}");
    for attack in [
        "mount_tmpfs",
        "mount_cgroup",
        "remount_sys_rw",
        "unshare_user",
        "unshare_mount",
        "keyctl",
        "bpf",
        "proc_sys_write",
        "sys_write",
        "kcore",
        "proc_keys",
        "sys_firmware",
        "block_device_read",
        "dev_block_device_read",
        "net_admin",
        "host_loopback",
        "secret",
    ] {
        assert!(p.safe(attack), "{what}: {attack} must be refused: {out}");
    }
    assert_eq!(p.get("extra_fds"), "none", "{what}: {out}");
}

/// The hostile probe through the command line, as root and as two
/// unprivileged users, in `run` (each executor), a Dockerfile RUN step and a
/// stage script: the caller's environment holds a secret and an open
/// descriptor, a service listens on the host's loopback.
#[test]
fn containers_are_confined_in_run_build_and_stage_as_root_and_rootless() {
    rootless_ready();
    require("pasta");
    let t = tempfile::tempdir().unwrap();
    let root_store = t.path().join("root-store");
    import_busybox(t.path(), &root_store);
    let base = format!("oci:{}:bb", t.path().join("bb").display());
    ok(&root_store, &["copy", "bb:1", &base]);
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(cargohold_testkit::probe_binary(), ctx.join("probe")).unwrap();
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port().to_string();
    let block = cargohold_testkit::root_block_device();
    let secret = format!("cargohold-secret-{}", std::process::id());
    let reversed: String = secret.chars().rev().collect();
    let probe_args = ["/probe", "--block", &block, "--port", &port, "--secret", &reversed];
    std::fs::write(ctx.join("Dockerfile"), format!("FROM bb:1\nCOPY probe /probe\nRUN {}\n", probe_args.join(" ")))
        .unwrap();
    let img = t.path().join("os");
    std::fs::create_dir_all(img.join("injected_volumes/bootstrap_scripts")).unwrap();
    std::fs::copy(ctx.join("probe"), img.join("injected_volumes/bootstrap_scripts/probe")).unwrap();
    let script = probe_args.join(" ").replace("/probe", "/bootstrap_scripts/probe");
    std::fs::write(img.join("injected_volumes/bootstrap_scripts/stage2.sh"), format!("{script}\n")).unwrap();
    run(Command::new("chmod").arg("-R").arg("a+rX").arg(t.path()));
    let probe = ctx.join("probe");
    let volume = format!("{}:/probe:ro", probe.display());

    // cargohold as `uid` (0: root), with the secret in its environment and
    // descriptor 7 open on a host directory.
    let cargohold = |uid: u32, store: &Path, args: &[&str]| -> Output {
        let mut cmd = Command::new("setpriv");
        cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--".into()]);
        cmd.args(["sh", "-c", "exec 7</etc; exec \"$@\"", "sh", env!("CARGO_BIN_EXE_cargohold"), "--store"])
            .arg(store)
            .args(args)
            .env("CARGOHOLD_PROBE_SECRET", &secret)
            .env("HOME", store.parent().unwrap())
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap()
    };
    for uid in [0u32, 65534, 65533] {
        let store = if uid == 0 {
            root_store.clone()
        } else {
            let home = t.path().join(format!("home-{uid}"));
            std::fs::create_dir_all(&home).unwrap();
            run(Command::new("chown").arg(format!("{uid}:{uid}")).arg(&home));
            let store = home.join("store");
            user_ok(uid, &store, &["copy", &base, "bb:1"]);
            store
        };
        for runtime in [None, Some("crun"), Some("runc")] {
            let mut args = vec!["run", "-v", &volume];
            if let Some(r) = runtime {
                args.extend(["--runtime", r]);
            }
            args.extend(["bb:1", "--"]);
            args.extend(probe_args);
            let out = cargohold(uid, &store, &args);
            let what = format!("run as {uid} with {runtime:?}");
            assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
            assert_probe_confined(&String::from_utf8_lossy(&out.stdout), &what);
        }
        let out = cargohold(uid, &store, &["build", "--no-cache", "-t", "probed:1", ctx.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "build as {uid}: {said}");
        assert_probe_confined(&said, &format!("RUN as {uid}"));
        let out = cargohold(
            uid,
            &store,
            &["stage", "--no-cache", "--base", "bb:1", "--image", "probed/os", img.to_str().unwrap()],
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "stage as {uid}: {said}");
        assert_probe_confined(&said, &format!("stage2.sh as {uid}"));
        // Unpacked layers and containers' scratch are nobody else's business.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.join(".cargohold")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{uid}: the store's private directory");
    }
    drop(service);
}

/// Options that loosen or cannot be honoured are named, and nothing runs.
#[test]
fn bad_container_options_are_named() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    for (args, want) in [
        (&["run", "--cap-add", "CAP_FLY", "bb:1", "--", "true"][..], "--cap-add CAP_FLY"),
        (&["run", "--cap-drop", "nope", "bb:1", "--", "true"][..], "--cap-drop nope"),
        (&["run", "--security-opt", "seccomp=/nonexistent.json", "bb:1", "--", "true"][..], "/nonexistent.json"),
        (&["run", "--security-opt", "apparmor=x", "bb:1", "--", "true"][..], "--security-opt apparmor=x"),
        (&["run", "--network", "bridge0", "bb:1", "--", "true"][..], "--network"),
    ] {
        let out = ch(&store, args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Without pasta the private network is an error that names the way out.
    let out = bin()
        .env("PATH", "/nonexistent")
        .arg("--store")
        .arg(&store)
        .args(["run", "bb:1", "--", "/bin/true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pasta") && err.contains("--network none"), "{err}");
    // --privileged and --cap-add are the explicit way to less confinement.
    let out = ok(
        &store,
        &["run", "--network", "none", "--cap-add", "NET_ADMIN", "bb:1", "--", "ip", "link", "set", "lo", "mtu", "1500"],
    );
    assert_eq!(out, "");
    let out = ok(
        &store,
        &["run", "--network", "none", "--privileged", "bb:1", "--", "grep", "Seccomp:", "/proc/self/status"],
    );
    assert!(out.contains('0'), "{out}");
}

/// Polls `f` until it holds (at most 20 s).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed().as_secs() < 20, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Detached containers without a daemon: `run -d` returns at once, the
/// container outlives the command that started it, its output goes to
/// `logs`, `ps`, `stop`, `kill`, `wait` and `rm` work by name and ID
/// prefix, a killed monitor is reported as such, and bad input is named.
#[test]
fn detached_containers_logs_ps_stop_kill_wait_rm() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    let id = ok(
        &store,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "bb:1",
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; echo oops >&2; i=$((i+1)); sleep 0.1; done",
        ],
    );
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64, "{id}");
    let ps = ok(&store, &["ps"]);
    assert!(ps.contains("ticker") && ps.contains(&id[..12]) && ps.contains("Up"), "{ps}");
    // The logs grow while it runs; stdout and stderr stay apart.
    eventually("three lines of output", || ok(&store, &["logs", "ticker"]).lines().count() >= 3);
    let first = ok(&store, &["logs", "ticker"]).lines().count();
    eventually("more output", || ok(&store, &["logs", &id[..8]]).lines().count() > first);
    let out = ch(&store, &["logs", "--tail", "4", "-t", "ticker"]);
    let (text, errs) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().count() + errs.lines().count(), 4, "{text}{errs}");
    assert!(text.lines().all(|l| l.contains("tick") && l.starts_with("20") && l.contains('T')), "{text}");
    assert!(errs.lines().all(|l| l.ends_with("oops")), "{errs}");
    // Bad input: named, nothing changed.
    for (args, want) in [
        (&["run", "-d", "--name", "ticker", "bb:1", "true"][..], "already in use"),
        (&["rm", "ticker"][..], "is running"),
        (&["logs", "nope"][..], "no such container: nope"),
        (&["stop", "nope"][..], "no such container"),
        (&["run", "-d", "--name", "bad/name", "bb:1", "true"][..], "invalid container name"),
        (&["kill", "-s", "NOPE", "ticker"][..], "unknown signal"),
    ] {
        let out = ch(&store, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(ok(&store, &["ps", "-a", "-q"]).lines().count(), 1, "nothing half-created");
    // stop: TERM is ignored by a shell as pid 1, so SIGKILL after the timeout.
    assert_eq!(ok(&store, &["stop", "-t", "1", "ticker"]).trim(), "ticker");
    let all: Value = json(&store, &["ps", "-a", "--json"]);
    assert_eq!(all[0]["State"], "exited");
    assert_eq!(all[0]["ExitCode"], 137);
    assert!(!ok(&store, &["ps"]).contains("ticker"), "ps without -a shows running ones only");
    let logged = ok(&store, &["logs", "ticker"]).lines().count();
    assert!(logged >= first);

    // Exit codes through wait; kill with a signal the command handles.
    // Started from under nohup (SIGHUP ignored): the container still
    // starts with default signals, so its shell can trap HUP.
    let started = Command::new("nohup")
        .arg(env!("CARGO_BIN_EXE_cargohold"))
        .arg("--store")
        .arg(&store)
        .args(["run", "-d", "bb:1", "sh", "-c", "trap 'echo got HUP; exit 7' HUP; while true; do sleep 0.1; done"])
        .output()
        .unwrap();
    assert!(started.status.success(), "{started:?}");
    let id2 = String::from_utf8(started.stdout).unwrap();
    let id2 = id2.trim();
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(&store, &["kill", "-s", "HUP", &id2[..10]]);
    assert_eq!(ok(&store, &["wait", id2]).trim(), "7");
    assert_eq!(ok(&store, &["logs", id2]), "got HUP\n");
    // -f follows until the container exits.
    let id3 = ok(&store, &["run", "-d", "bb:1", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done; exit 4"]);
    assert_eq!(ok(&store, &["logs", "-f", id3.trim()]), "1\n2\n3\n");
    assert_eq!(ok(&store, &["wait", id3.trim()]).trim(), "4");

    // A killed monitor: the container is dead, not running.
    let id4 = ok(&store, &["run", "-d", "--name", "orphan", "bb:1", "sleep", "60"]);
    run(Command::new("pkill").args(["-9", "-f", &format!("container-monitor {}", id4.trim())]));
    eventually("the dead monitor to show", || {
        let all: Value = json(&store, &["ps", "-a", "--json", "--filter", "name=orphan"]);
        all[0]["State"] == "dead"
    });
    // --rm removes it when it exits.
    let id5 = ok(&store, &["run", "-d", "--rm", "bb:1", "true"]);
    eventually("--rm", || !ok(&store, &["ps", "-a", "-q"]).contains(&id5.trim()[..12]));
    // rm -f kills a running one; rm by names; the records are gone.
    ok(&store, &["run", "-d", "--name", "sleeper", "bb:1", "sleep", "60"]);
    ok(&store, &["rm", "-f", "sleeper", "ticker", "orphan", id2, id3.trim()]);
    assert_eq!(ok(&store, &["ps", "-a", "-q"]), "");
    // No pasta is left behind, not even the killed monitor's.
    let store_text = store.to_string_lossy().into_owned();
    eventually("every pasta of the store's containers to quit", || {
        !std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("pasta") && cmd.contains(&store_text)
        })
    });
}

/// The same detached container under podman and cargohold: the same logs
/// and the same exit code.
#[test]
fn detached_logs_and_exit_codes_match_podman() {
    require("podman");
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    let image = format!("localhost/cargohold-detach-{}:1", std::process::id());
    run(Command::new("podman").args(["import", "-q"]).arg(t.path().join("bb.tar")).arg(&image));
    let script = "echo one; echo two >&2; printf 'no newline'; exit 3";
    let podman = [
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
    ];
    let pid = run(Command::new("podman").arg("run").args(podman).args([
        "-d",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        script,
    ]));
    let their_code = run(Command::new("podman").args(["wait", pid.trim()]));
    let their_out = Command::new("podman").args(["logs", pid.trim()]).output().unwrap();
    let _ = Command::new("podman").args(["rm", "-f", pid.trim()]).output();
    let _ = Command::new("podman").args(["rmi", "-f", &image]).output();
    let id = ok(&store, &["run", "-d", "--network", "none", "bb:1", "sh", "-c", script]);
    assert_eq!(ok(&store, &["wait", id.trim()]), their_code);
    let our_out = ch(&store, &["logs", id.trim()]);
    assert_eq!(String::from_utf8_lossy(&our_out.stdout), String::from_utf8_lossy(&their_out.stdout));
    assert_eq!(String::from_utf8_lossy(&our_out.stderr), String::from_utf8_lossy(&their_out.stderr));
}

/// `port` and volumes beside podman on the same image: the same `port`
/// lines for the same mappings, the same data, modes and owners in a named
/// volume across containers and in an anonymous one, and `rm -v` removing
/// the anonymous volume in both.
#[test]
fn ports_and_volumes_match_podman() {
    require("podman");
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    let tag = std::process::id();
    let image = format!("localhost/cargohold-ports-{tag}:1");
    run(Command::new("podman").args(["import", "-q"]).arg(t.path().join("bb.tar")).arg(&image));
    let podman = |args: &[&str]| -> String {
        let mut cmd = Command::new("podman");
        cmd.arg(args[0]);
        if args[0] == "run" {
            cmd.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
            cmd.args(["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]);
        }
        run(cmd.args(&args[1..]))
    };
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (theirs_port, ours_port) = (free(), free());
    let theirs =
        podman(&["run", "-d", "-p", &format!("127.0.0.1:{theirs_port}:4444"), "-p", "5353/udp", &image, "sleep", "60"]);
    let ours = ok(
        &store,
        &["run", "-d", "-p", &format!("127.0.0.1:{ours_port}:4444"), "-p", "5353/udp", "bb:1", "sleep", "60"],
    );
    let normalize = |text: &str, port: u16| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| {
                let l = l.replace(&port.to_string(), "HOSTPORT");
                // A free port the kernel picked: only its shape matters.
                match l.rsplit_once(':') {
                    Some((head, p)) if p.parse::<u16>().is_ok() => format!("{head}:FREE"),
                    _ => l,
                }
            })
            .collect();
        lines.sort();
        lines
    };
    let their_lines = normalize(&podman(&["port", theirs.trim()]), theirs_port);
    assert_eq!(normalize(&ok(&store, &["port", ours.trim()]), ours_port), their_lines);
    assert_eq!(
        normalize(&ok(&store, &["port", ours.trim(), "4444"]), ours_port),
        normalize(&podman(&["port", theirs.trim(), "4444"]), theirs_port)
    );
    let _ = Command::new("podman").args(["rm", "-f", "-t", "0", theirs.trim()]).output();
    ok(&store, &["rm", "-f", ours.trim()]);

    // A named volume across containers, an anonymous one, rm -v.
    let volume = format!("cargohold-vol-{tag}");
    let write = "mkdir -p /data/d && echo kept > /data/d/f && chmod 640 /data/d/f && chown 12:34 /data/d";
    let read = "cat /data/d/f; stat -c '%a %u %g' /data /data/d /data/d/f";
    podman(&["run", "--rm", "-v", &format!("{volume}:/data"), &image, "sh", "-c", write]);
    let their_read = podman(&["run", "--rm", "-v", &format!("{volume}:/data"), &image, "sh", "-c", read]);
    ok(&store, &["run", "--rm", "-v", &format!("{volume}:/data"), "bb:1", "sh", "-c", write]);
    let our_read = ok(&store, &["run", "--rm", "-v", &format!("{volume}:/data"), "bb:1", "sh", "-c", read]);
    assert_eq!(our_read, their_read);
    let anon = "stat -c '%a %u %g' /anon; ls -A /anon";
    let their_anon = podman(&["run", "-d", "-v", "/anon", &image, "sh", "-c", anon]);
    podman(&["wait", their_anon.trim()]);
    let their_anon_out = podman(&["logs", their_anon.trim()]);
    let our_anon = ok(&store, &["run", "-d", "-v", "/anon", "bb:1", "sh", "-c", anon]);
    ok(&store, &["wait", our_anon.trim()]);
    assert_eq!(ok(&store, &["logs", our_anon.trim()]), their_anon_out);
    let count = |text: String| text.lines().count();
    let (their_before, our_before) = (count(podman(&["volume", "ls", "-q"])), count(ok(&store, &["volume", "ls"])));
    podman(&["rm", "-v", their_anon.trim()]);
    ok(&store, &["rm", "-v", our_anon.trim()]);
    assert_eq!(count(podman(&["volume", "ls", "-q"])), their_before - 1, "podman's rm -v removes the anonymous volume");
    assert_eq!(count(ok(&store, &["volume", "ls"])), our_before - 1, "so does ours");
    let _ = Command::new("podman").args(["volume", "rm", "-f", &volume]).output();
    let _ = Command::new("podman").args(["rmi", "-f", &image]).output();
}

/// `run -d -p`: a netcat listener reached on a published port of the host's
/// loopback, its `logs` show what was sent, `port` prints the mapping, a
/// port in use is named, and the port is free again once it is removed.
#[test]
fn published_ports_reach_a_detached_listener() {
    require("pasta");
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    ok(&store, &["run", "-d", "--name", "listener", "-p", "127.0.0.1::4444", "bb:1", "nc", "-l", "-p", "4444"]);
    let all = ok(&store, &["port", "listener"]);
    assert!(ok(&store, &["ps"]).contains("->4444/tcp"), "{}", ok(&store, &["ps"]));
    let host = ok(&store, &["port", "listener", "4444/tcp"]);
    let port: u16 = host.trim().strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
    assert_eq!(all.trim(), format!("4444/tcp -> 127.0.0.1:{port}"));
    let mut sent = false;
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            // The listener may not be up yet: pasta accepts, then drops.
            if s.write_all(b"hello through the published port\n").is_ok() {
                drop(s);
                std::thread::sleep(std::time::Duration::from_millis(200));
                if ok(&store, &["logs", "listener"]).contains("hello") {
                    sent = true;
                    break;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(sent, "the listener got the line: {}", ok(&store, &["logs", "listener"]));
    assert_eq!(ok(&store, &["wait", "listener"]).trim(), "0");
    let out = ch(&store, &["port", "listener", "80"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no public port 80"));
    // A port in use: named, nothing made.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = format!("127.0.0.1:{}:80", busy.local_addr().unwrap().port());
    let out = ch(&store, &["run", "-d", "-p", &taken, "bb:1", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not available"), "{out:?}");
    for bad in ["70000", "1.2.3:80:80", "80/sctp"] {
        let out = ch(&store, &["run", "-p", bad, "bb:1", "true"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("-p {bad}")), "{out:?}");
    }
    ok(&store, &["rm", "listener"]);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
    assert_eq!(ok(&store, &["ps", "-a", "-q"]), "");
}

/// Restart policies, `start -a`, `restart`, and `stop` between two runs.
#[test]
fn restart_policies_start_and_restart() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    ok(&store, &["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "bb:1", "sh", "-c", "echo run; exit 5"]);
    assert_eq!(ok(&store, &["wait", "flaky"]).trim(), "5");
    eventually("three runs", || ok(&store, &["logs", "flaky"]) == "run\nrun\nrun\n");
    let ps: Value = json(&store, &["ps", "-a", "--json", "--filter", "name=flaky"]);
    assert_eq!(ps[0]["ExitCode"], 5);
    // start -a: its output, and its exit code as ours.
    let out = ch(&store, &["start", "-a", "flaky"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("run\n"), "{out:?}");
    ok(&store, &["run", "-d", "--name", "always", "--restart", "always", "bb:1", "sh", "-c", "echo again; sleep 0.1"]);
    eventually("a restart", || ok(&store, &["logs", "always"]).lines().count() >= 2);
    ok(&store, &["stop", "-t", "1", "always"]);
    let stopped = ok(&store, &["logs", "always"]).lines().count();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(ok(&store, &["logs", "always"]).lines().count(), stopped, "a stopped container stays stopped");
    assert!(!ok(&store, &["ps"]).contains("always"));
    ok(&store, &["restart", "always"]);
    assert!(ok(&store, &["ps"]).contains("always"), "restart starts it again");
    let bad = ch(&store, &["run", "-d", "--restart", "sometimes", "bb:1", "true"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--restart sometimes"), "{bad:?}");
    ok(&store, &["rm", "-f", "always", "flaky"]);
    assert_eq!(ok(&store, &["ps", "-a", "-q"]), "");
}

/// `commit C IMAGE` and `export C`: a container's changes (a new file, a
/// deletion) become a layer of a new image, and its filesystem a tar.
#[test]
fn commit_and_export_a_container() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    ok(
        &store,
        &["run", "-d", "--name", "work", "bb:1", "sh", "-c", "mkdir /data && echo kept > /data/f && rm /bin/vi"],
    );
    assert_eq!(ok(&store, &["wait", "work"]).trim(), "0");
    let made: Value = json(&store, &["commit", "work", "snap:1", "-c", "CMD [\"cat\", \"/data/f\"]", "--json"]);
    assert!(made["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(ok(&store, &["run", "--network", "none", "snap:1"]), "kept\n");
    assert!(
        !ch(&store, &["run", "--network", "none", "snap:1", "ls", "/bin/vi"]).status.success(),
        "the deletion is kept"
    );
    assert_eq!(ok(&store, &["diff", "work"]), "C /bin\nD /bin/vi\nA /data\nA /data/f\n", "as docker diff lists it");
    let tar = t.path().join("work.tar");
    ok(&store, &["export", "work", "-o", tar.to_str().unwrap()]);
    let names = run(Command::new("tar").arg("-tf").arg(&tar));
    assert!(names.lines().any(|l| l.trim_start_matches("./") == "data/f"), "{names}");
    assert!(names.lines().any(|l| l.trim_start_matches("./") == "bin/sh"));
    assert!(!names.lines().any(|l| l.trim_start_matches("./") == "bin/vi"), "deleted in the container");
    assert!(!names.contains(".wh."), "no whiteouts in an export");
    ok(&store, &["rm", "work"]);
    let out = ch(&store, &["commit", "work", "x:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a container"), "{out:?}");
}

/// `exec` into a running container (each executor): its filesystem, pid
/// namespace and host name, the same confinement, exit codes, -e, -w, -u.
#[test]
fn exec_joins_a_running_container_confined_as_it_is() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    for runtime in [None, Some("crun"), Some("runc")] {
        let mut args = vec!["run", "-d", "--name", "box", "--hostname", "inside"];
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        args.extend(["bb:1", "sh", "-c", "mkdir -p /tmp && echo ready > /tmp/flag && exec sleep 60"]);
        ok(&store, &args);
        eventually("the container's file", || ch(&store, &["exec", "box", "cat", "/tmp/flag"]).status.success());
        let said = ok(
            &store,
            &[
                "exec",
                "box",
                "sh",
                "-c",
                "hostname; cat /proc/1/cmdline; echo; grep -E '^(CapEff|Seccomp):' /proc/self/status",
            ],
        );
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(lines[0], "inside", "{runtime:?}: {said}");
        assert!(lines[1].starts_with("sleep"), "{runtime:?}: the container's pid 1: {said}");
        assert!(lines[2].ends_with("00000000a80425fb") && lines[3].ends_with('2'), "{runtime:?}: confined: {said}");
        assert_eq!(ch(&store, &["exec", "box", "sh", "-c", "exit 9"]).status.code(), Some(9));
        assert_eq!(
            ok(&store, &["exec", "-e", "X=7", "-w", "/tmp", "-u", "1000", "box", "sh", "-c", "pwd; echo $X; id -u"]),
            "/tmp\n7\n1000\n"
        );
        ok(&store, &["rm", "-f", "box"]);
    }
    let out = ch(&store, &["exec", "box", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such container: box"), "{out:?}");
    ok(&store, &["run", "-d", "--name", "done", "bb:1", "true"]);
    assert_eq!(ok(&store, &["wait", "done"]).trim(), "0");
    let out = ch(&store, &["exec", "done", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running"), "{out:?}");
    // The container's limits hold for what exec adds.
    ok(&store, &["run", "-d", "--name", "small", "-m", "64m", "bb:1", "sleep", "60"]);
    let out = ch(&store, &["exec", "small", "sh", "-c", "head -c 300m /dev/zero | tail > /dev/null"]);
    assert_eq!(out.status.code(), Some(137), "exec'd memory hog escaped -m 64m: {out:?}");
    assert_eq!(ok(&store, &["exec", "small", "echo", "ok"]), "ok\n");
    ok(&store, &["rm", "-f", "small"]);
}

/// Volumes: a named one persists across containers and is refused for
/// removal while a container uses it; an anonymous one goes with `rm -v`;
/// a missing host directory is made; `--tmpfs`; bad specs are named.
#[test]
fn volumes_persist_across_containers() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    ok(&store, &["run", "--network", "none", "-v", "data:/data", "bb:1", "sh", "-c", "echo kept > /data/f"]);
    assert_eq!(ok(&store, &["run", "--network", "none", "-v", "data:/d:ro", "bb:1", "cat", "/d/f"]), "kept\n");
    assert!(!ch(&store, &["run", "--network", "none", "-v", "data:/d:ro", "bb:1", "touch", "/d/x"]).status.success());
    ok(
        &store,
        &[
            "run",
            "-d",
            "--name",
            "user",
            "-v",
            "data:/data",
            "-v",
            "/anon",
            "--tmpfs",
            "/scratch:size=1m",
            "bb:1",
            "sh",
            "-c",
            "echo a > /anon/a; grep ' /scratch ' /proc/mounts; sleep 30",
        ],
    );
    let vols: Value = json(&store, &["volume", "ls", "--json"]);
    assert_eq!(vols.as_array().unwrap().len(), 2, "{vols}");
    let out = ch(&store, &["volume", "rm", "data"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{out:?}");
    eventually("the tmpfs line", || ok(&store, &["logs", "user"]).contains("tmpfs /scratch tmpfs rw,nosuid,nodev"));
    ok(&store, &["rm", "-f", "-v", "user"]);
    let vols: Value = json(&store, &["volume", "ls", "--json"]);
    assert_eq!(vols[0]["name"], "data", "the anonymous volume went with rm -v: {vols}");
    let host = t.path().join("made/by/run");
    ok(
        &store,
        &["run", "--network", "none", "-v", &format!("{}:/h", host.display()), "bb:1", "sh", "-c", "echo h > /h/x"],
    );
    assert_eq!(std::fs::read_to_string(host.join("x")).unwrap(), "h\n");
    for (bad, want) in [("rel:/x:rx", "unknown mode"), ("x", "not absolute"), ("bad name:/x", "neither")] {
        let out = ch(&store, &["run", "-v", bad, "bb:1", "true"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains(want), "{bad}: {out:?}");
    }
    // prune: anonymous volumes only, unless -a; a foreground run's and a
    // --rm container's anonymous volumes are gone already.
    ok(&store, &["run", "--rm", "-v", "/gone", "bb:1", "true"]);
    let id = ok(&store, &["run", "-d", "--rm", "-v", "/gone", "bb:1", "true"]);
    eventually("--rm", || !ok(&store, &["ps", "-aq"]).contains(&id[..12]));
    let kept = ok(&store, &["run", "-d", "-v", "/kept", "bb:1", "true"]);
    ok(&store, &["wait", kept.trim()]);
    ok(&store, &["rm", kept.trim()]);
    let vols: Value = json(&store, &["volume", "ls", "--json"]);
    assert_eq!(vols.as_array().unwrap().len(), 2, "data and the one rm left: {vols}");
    let pruned: Value = json(&store, &["volume", "prune", "-f", "--json"]);
    assert_eq!(pruned["volumes"].as_array().unwrap().len(), 1, "{pruned}");
    assert_ne!(pruned["volumes"][0], "data", "{pruned}");
    let pruned: Value = json(&store, &["volume", "prune", "-a", "-f", "--json"]);
    assert_eq!(pruned["volumes"], serde_json::json!(["data"]), "{pruned}");
    // A new volume starts with what the image has at its mount point.
    assert_eq!(
        ok(&store, &["run", "--rm", "-v", "etc:/etc", "bb:1", "cat", "/etc/passwd"]),
        "root:x:0:0::/root:/bin/sh\n"
    );
    ok(&store, &["run", "--rm", "-v", "etc:/etc", "bb:1", "sh", "-c", "echo changed > /etc/passwd"]);
    assert_eq!(
        ok(&store, &["run", "--rm", "-v", "etc:/etc", "bb:1", "cat", "/etc/passwd"]),
        "changed\n",
        "not copied again"
    );
    ok(&store, &["volume", "rm", "etc"]);
    assert_eq!(ok(&store, &["volume", "ls", "--json"]).trim(), "[]");
}

/// `--env-file`, `--dns`, `--add-host`: the generated /etc files and the
/// environment, as Docker makes them.
#[test]
fn env_files_dns_and_extra_hosts() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    let envf = t.path().join("env");
    std::fs::write(&envf, "# a comment\nA=1\nFROM_HOST\n\nB=two words\n").unwrap();
    let out = bin()
        .env("FROM_HOST", "ours")
        .arg("--store")
        .arg(&store)
        .args(["run", "--network", "none", "--env-file", envf.to_str().unwrap(), "-e", "A=2"])
        .args(["--dns", "192.0.2.53", "--add-host", "db:192.0.2.10", "bb:1"])
        .args(["sh", "-c", "echo $A $FROM_HOST \"$B\"; grep nameserver /etc/resolv.conf; grep db /etc/hosts"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 ours two words\nnameserver 192.0.2.53\n192.0.2.10\tdb\n");
    let out = ch(&store, &["run", "--add-host", "nocolon", "bb:1", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--add-host nocolon"), "{out:?}");
    let out = ch(&store, &["run", "--env-file", "/nonexistent-env", "bb:1", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--env-file /nonexistent-env"), "{out:?}");
}

/// `inspect` of a container (before images of the same name) and
/// `container prune` (stopped ones only).
#[test]
fn inspect_a_container_and_prune_stopped_ones() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    let id = ok(&store, &["run", "-d", "--name", "up", "bb:1", "sleep", "30"]);
    ok(&store, &["run", "-d", "--name", "down", "bb:1", "true"]);
    assert_eq!(ok(&store, &["wait", "down"]).trim(), "0");
    let v: Value = json(&store, &["inspect", "up"]);
    assert_eq!(v["Id"], id.trim());
    assert_eq!(v["State"]["status"], "running");
    assert_eq!(v["Config"]["spec"]["argv"], serde_json::json!(["sleep", "30"]));
    let pruned: Value = json(&store, &["container", "prune", "-f", "--json"]);
    assert_eq!(pruned["containers"].as_array().unwrap().len(), 1, "{pruned}");
    assert_eq!(pruned["blobs"], 0, "container prune leaves images alone: {pruned}");
    assert!(ok(&store, &["ps", "-a"]).contains("up"));
    ok(&store, &["rm", "-f", "up"]);
    assert!(json(&store, &["inspect", "bb:1", "--json"])["digest"].is_string(), "images still inspect");
}

/// systemd as pid 1: a debootstrap'd Debian with systemd boots to
/// `running` (or `degraded`) in a detached container with podman's
/// systemd mode (tmpfs on /run, /tmp..., its own writable cgroup2 subtree,
/// `container=cargohold`, a machine ID), still confined, and halts within
/// seconds on `stop` (SIGRTMIN+3). `--systemd=false|always` and bad values;
/// rootless without a delegated cgroup v2 hierarchy is refused, named.
#[test]
fn systemd_boots_to_running_and_halts_on_stop() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let _cleanup = Cleanup(store.clone());
    let tar = cargohold_testkit::debian_tar(Path::new(env!("CARGO_TARGET_TMPDIR")), &["systemd", "systemd-sysv"]);
    ok(&store, &["import", tar.to_str().unwrap(), "deb:systemd"]);
    let id = ok(&store, &["run", "-d", "--name", "sd", "deb:systemd", "/sbin/init"]);
    // SIGRTMIN+3 (glibc's SIGRTMIN is 34).
    let inspect = json(&store, &["inspect", "sd"]);
    assert_eq!(inspect["Config"]["stop_signal"], 37, "{inspect}");
    // systemd's bus comes up a moment after start.
    let mut state = String::new();
    eventually("systemd's manager to answer", || {
        let out = ch(&store, &["exec", "sd", "systemctl", "is-system-running", "--wait"]);
        state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        !state.is_empty()
    });
    assert!(
        state == "running" || state == "degraded",
        "{state}: {}",
        ok(&store, &["exec", "sd", "systemctl", "--failed", "--no-pager"])
    );
    let pid1 = ok(&store, &["exec", "sd", "cat", "/proc/1/cgroup", "/proc/1/environ"]);
    assert!(pid1.contains("0::/init.scope"), "{pid1}");
    assert!(pid1.contains("container=cargohold"), "{pid1}");
    let mounts = ok(&store, &["exec", "sd", "cat", "/proc/self/mountinfo"]);
    for point in ["/run", "/run/lock", "/tmp", "/var/log/journal"] {
        assert!(
            mounts.lines().any(|l| l.split(' ').nth(4) == Some(point) && l.contains(" - tmpfs ")),
            "{point}: {mounts}"
        );
    }
    assert!(
        mounts.lines().any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup") && l.contains(" - cgroup2 ")),
        "{mounts}"
    );
    let machine_id = ok(&store, &["exec", "sd", "cat", "/etc/machine-id"]);
    assert_eq!(machine_id.trim().len(), 32, "{machine_id}");
    // Still confined: Docker's capabilities, seccomp.
    let status = ok(&store, &["exec", "sd", "grep", "-E", "^(CapBnd|Seccomp):", "/proc/1/status"]);
    assert!(status.contains("00000000a80425fb") && status.contains("Seccomp:\t2"), "{status}");
    let started = std::time::Instant::now();
    ok(&store, &["stop", "-t", "30", "sd"]);
    assert!(started.elapsed().as_secs() < 15, "halting took {:?}", started.elapsed());
    let ps = ok(&store, &["ps", "-a", "--filter", "name=sd"]);
    assert!(ps.contains("Exited (0)"), "systemd halts cleanly: {ps}");
    assert!(id.trim().len() == 64);

    // --systemd=false: no systemd mode; always: whatever the command.
    let plain = ok(&store, &["run", "--rm", "--systemd=false", "deb:systemd", "cat", "/proc/self/mountinfo"]);
    assert!(!plain.lines().any(|l| l.split(' ').nth(4) == Some("/run")), "{plain}");
    let always = ok(&store, &["run", "--rm", "--systemd", "always", "deb:systemd", "cat", "/proc/self/mountinfo"]);
    assert!(always.lines().any(|l| l.split(' ').nth(4) == Some("/run")), "{always}");
    let bad = ch(&store, &["run", "--rm", "--systemd", "maybe", "deb:systemd", "true"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--systemd maybe"));
    let crun = ch(&store, &["run", "--rm", "--runtime", "crun", "deb:systemd", "/sbin/init"]);
    assert!(!crun.status.success() && String::from_utf8_lossy(&crun.stderr).contains("built-in executor"));

    // stage with systemd = true: each script runs in the booted system,
    // which halts before the commit; the boot leaves no machine ID behind.
    let img = t.path().join("os");
    let scripts = img.join("injected_volumes/bootstrap_scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(img.join("stage.toml"), "image = \"test/booted\"\nbase = \"deb:systemd\"\nsystemd = true\n")
        .unwrap();
    std::fs::write(
        scripts.join("stage2.sh"),
        "#!/bin/sh\nset -e\necho \"pid 1: $(cat /proc/1/comm), $(systemctl is-system-running)\"\nsystemctl is-active systemd-journald\necho staged > /etc/staged\n",
    )
    .unwrap();
    std::fs::write(
        scripts.join("selfcheck.sh"),
        "#!/bin/sh\nset -e\ntest -f /etc/staged\ntest \"$(cat /proc/1/comm)\" = systemd\n",
    )
    .unwrap();
    let out = ch(&store, &["stage", img.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("pid 1: systemd, running") || said.contains("pid 1: systemd, degraded"), "{said}");
    let image =
        ok(&store, &["run", "--rm", "test/booted:candidate", "sh", "-c", "cat /etc/staged; wc -c < /etc/machine-id"]);
    assert_eq!(image, "staged\n0\n");
    // A script that fails in the booted system fails the stage.
    std::fs::write(scripts.join("stage2.sh"), "#!/bin/sh\nexit 3\n").unwrap();
    let out = ch(&store, &["stage", img.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("exit code 3"), "{out:?}");
}

/// `run` from anything cargohold reads: an OCI layout, a docker-archive, a
/// registry image missing from the store (pulled, as `--pull missing`
/// does), a plain root filesystem (`--rootfs`, left untouched); `--pull
/// never|always`; `-P` publishing the exposed ports; `-d` with `-i` (stdin
/// kept open) and `-t` (a terminal whose output is the log).
#[test]
fn run_from_layouts_archives_registries_and_root_filesystems() {
    let reg = registry();
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    let layout = format!("oci:{}:v1", t.path().join("layout").display());
    ok(&store, &["copy", "bb:1", &layout]);
    let archive = t.path().join("bb.tar");
    ok(&store, &["save", "bb:1", "-o", archive.to_str().unwrap()]);
    let remote = format!("{}/team/bb:1", reg.1);
    ok(&store, &["push", "bb:1", &remote]);

    let fresh = t.path().join("fresh");
    assert_eq!(ok(&fresh, &["run", "--rm", &layout, "echo", "from a layout"]), "from a layout\n");
    let from_archive = format!("docker-archive:{}", archive.display());
    assert_eq!(ok(&fresh, &["run", "--rm", &from_archive, "echo", "from an archive"]), "from an archive\n");
    assert!(ok(&fresh, &["images"]).contains("bb "), "the archive's name is kept: {}", ok(&fresh, &["images"]));
    let never = ch(&fresh, &["run", "--rm", "--pull", "never", &remote, "true"]);
    assert!(!never.status.success() && String::from_utf8_lossy(&never.stderr).contains(&remote), "{never:?}");
    assert_eq!(ok(&fresh, &["run", "--rm", &remote, "echo", "pulled"]), "pulled\n");
    assert_eq!(ok(&fresh, &["run", "--rm", "--pull", "always", &remote, "echo", "again"]), "again\n");
    assert_eq!(ok(&fresh, &["run", "--rm", &format!("docker://{remote}"), "echo", "docker"]), "docker\n");
    // Out of reach: the store's copy is not run in its stead under always.
    let gone = "127.0.0.1:9/team/bb:1";
    ok(&fresh, &["tag", &remote, gone]);
    assert_eq!(ok(&fresh, &["run", "--rm", gone, "echo", "present"]), "present\n");
    let always = ch(&fresh, &["run", "--rm", "--pull", "always", gone, "true"]);
    assert!(!always.status.success() && String::from_utf8_lossy(&always.stderr).contains("127.0.0.1:9"), "{always:?}");
    let bad = ch(&fresh, &["run", "--pull", "sometimes", "bb:1", "true"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--pull sometimes"), "{bad:?}");

    // --rootfs: the directory is the read-only bottom; changes are dropped.
    let rootfs = t.path().join("bb-root");
    let r = rootfs.to_str().unwrap();
    assert_eq!(ok(&fresh, &["run", "--rm", "--rootfs", r, "sh", "-c", "echo x > /new && cat /new"]), "x\n");
    assert!(!rootfs.join("new").exists());
    let out = ch(&fresh, &["run", "--rootfs", r, "--commit", "x:1", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rootfs"), "{out:?}");
    let out = ch(&fresh, &["run", "--rootfs", "/nonexistent/root", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/root"), "{out:?}");

    // -P: every exposed port gets a free host port.
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM bb:1\nEXPOSE 4444 5353/udp\n").unwrap();
    ok(&store, &["build", "-t", "exposed:1", ctx.to_str().unwrap()]);
    ok(&store, &["run", "-d", "--name", "all", "-P", "exposed:1", "sleep", "30"]);
    let ports = ok(&store, &["port", "all"]);
    assert!(ports.contains("4444/tcp -> 0.0.0.0:") && ports.contains("5353/udp -> 0.0.0.0:"), "{ports}");
    ok(&store, &["rm", "-f", "all"]);

    // -d -i: standard input stays open; -d -t: a terminal, logged.
    ok(&store, &["run", "-d", "-i", "--name", "in", "bb:1", "sh"]);
    ok(&store, &["run", "-d", "-i", "-t", "--name", "tty", "bb:1", "sh"]);
    ok(&store, &["run", "-d", "-t", "--name", "said", "bb:1", "sh", "-c", "test -t 0 && echo on a terminal; tty"]);
    assert_eq!(ok(&store, &["wait", "said"]).trim(), "0");
    // The terminal is the container's /dev/console, so it has a name.
    assert_eq!(ok(&store, &["logs", "said"]), "on a terminal\r\n/dev/console\r\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let running = ok(&store, &["ps", "--filter", "status=running"]);
    assert!(running.contains(" in\n") && running.contains(" tty\n"), "sh waits on its open input: {running}");
    assert!(ok(&store, &["exec", "in", "ls", "-l", "/proc/1/fd/0"]).contains("pipe:"));
    assert!(ok(&store, &["exec", "tty", "ls", "-l", "/proc/1/fd/0"]).contains("/dev/pts/"));
    ok(&store, &["rm", "-f", "in", "tty", "said"]);
}

/// Hygiene: `system df` accounts for images, containers, volumes and
/// unpacked layers; `rmi` of an image a container uses needs `-f` and
/// leaves it unnamed (`images --filter dangling=true`) while the container
/// lives; `image prune`, `system prune [-a] [--volumes]` remove only what
/// nothing uses (a running container keeps its image, layers and volume),
/// and ask first unless `-f`.
#[test]
fn system_df_and_prune_keep_what_containers_use() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM bb:1\nRUN echo built > /built\n").unwrap();
    ok(&store, &["build", "-t", "app:1", ctx.to_str().unwrap()]);
    let ctx2 = t.path().join("ctx2");
    std::fs::create_dir_all(&ctx2).unwrap();
    std::fs::write(ctx2.join("Dockerfile"), "FROM bb:1\nRUN echo spare > /spare\n").unwrap();
    ok(&store, &["build", "-t", "spare:1", ctx2.to_str().unwrap()]);
    ok(&store, &["tag", "bb:1", "other:1"]);
    ok(&store, &["run", "-d", "--name", "live", "-v", "kept:/data", "bb:1", "sleep", "60"]);
    ok(&store, &["run", "-d", "--name", "done", "app:1", "cat", "/built"]);
    assert_eq!(ok(&store, &["wait", "done"]).trim(), "0");
    ok(&store, &["volume", "create", "orphan"]);

    let df = json(&store, &["system", "df", "--json"]);
    assert_eq!(df["containers"]["total"], 2, "{df}");
    assert_eq!(df["containers"]["active"], 1, "{df}");
    assert_eq!(df["volumes"]["total"], 2, "{df}");
    assert_eq!(df["volumes"]["active"], 1, "{df}");
    assert_eq!(df["images"]["active"], 2, "{df}");
    assert!(df["layers"]["total"].as_u64().unwrap() >= 2, "{df}");
    assert!(df["images"]["size"].as_u64().unwrap() > df["images"]["reclaimable"].as_u64().unwrap(), "{df}");
    let table = ok(&store, &["system", "df"]);
    assert!(table.starts_with("TYPE") && table.contains("Local Volumes"), "{table}");

    // rmi of an image a container uses.
    let out = ch(&store, &["rmi", "app:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("in use by the container") && err.contains("done"), "{err}");
    ok(&store, &["rmi", "-f", "app:1"]);
    let dangling = ok(&store, &["images", "--filter", "dangling=true", "-q"]);
    assert_eq!(dangling.lines().count(), 1, "{dangling}");
    assert!(!ok(&store, &["images", "--filter", "dangling=false"]).contains("app"));
    // A running container's image keeps its last name even with -f.
    ok(&store, &["rmi", "other:1"]);
    let out = ch(&store, &["rmi", "-f", "bb:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("running container"), "{out:?}");

    // Asked first; no answer is no.
    let mut asked =
        bin().arg("--store").arg(&store).args(["system", "prune"]).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(!asked.status.success() && String::from_utf8_lossy(&asked.stderr).contains("not confirmed"));
    asked = bin()
        .arg("--store")
        .arg(&store)
        .args(["image", "prune", "--json"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!asked.status.success());
    assert_eq!(ok(&store, &["ps", "-aq"]).lines().count(), 2);

    // The stopped container goes, then its (unnamed) image with it.
    let pruned = json(&store, &["system", "prune", "-f", "--json"]);
    assert_eq!(pruned["containers"].as_array().unwrap().len(), 1, "{pruned}");
    assert_eq!(pruned["images"].as_array().unwrap().len(), 1, "{pruned}");
    assert!(pruned["volumes"].as_array().unwrap().is_empty(), "{pruned}");
    assert_eq!(ok(&store, &["images", "--filter", "dangling=true", "-q"]), "");
    assert!(ok(&store, &["images"]).contains("spare"), "named images stay without -a");
    // -a --volumes: every unused image, volume and unpacked layer.
    let anon = ok(&store, &["run", "-d", "-v", "/anon", "bb:1", "true"]);
    ok(&store, &["wait", anon.trim()]);
    ok(&store, &["rm", anon.trim()]);
    let all = json(&store, &["system", "prune", "-a", "--volumes", "-f", "--json"]);
    let removed = all["volumes"].as_array().unwrap();
    assert!(removed.len() == 1 && removed[0] != "orphan", "anonymous volumes only: {all}");
    assert!(ok(&store, &["volume", "ls"]).contains("orphan"), "named volumes stay");
    assert!(all["layers"].as_u64().unwrap() >= 1, "{all}");
    let images = ok(&store, &["images"]);
    assert!(images.contains("bb ") && !images.contains("spare"), "{images}");
    // What the running container uses still works.
    assert_eq!(ok(&store, &["exec", "live", "sh", "-c", "echo ok > /data/f && cat /data/f"]), "ok\n");
    ok(&store, &["rm", "-f", "live"]);
    ok(&store, &["run", "--rm", "bb:1", "true"]);
    let df = json(&store, &["system", "df", "--json"]);
    assert_eq!(df["containers"]["total"], 0, "{df}");
    ok(&store, &["image", "prune", "-a", "-f"]);
    assert_eq!(ok(&store, &["images", "-q"]), "");
    let df = json(&store, &["system", "df", "--json"]);
    assert_eq!(df["images"]["total"], 0, "{df}");
    assert_eq!(df["layers"]["total"], 0, "{df}");
}

/// `cp` both ways, running and stopped, with Docker's destination rules;
/// the container's symlinks resolve inside its root (never the host's),
/// a symlink is copied as itself, and a device node it made is refused.
#[test]
fn cp_between_a_container_and_the_host() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a"), "hello\n").unwrap();
    std::fs::write(src.join("sub/b"), "deep\n").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", src.join("link")).unwrap();
    ok(&store, &["run", "-d", "--name", "box", "bb:1", "sleep", "60"]);
    let s = src.to_str().unwrap();
    // A new name, into an existing directory, a directory's contents.
    ok(&store, &["cp", s, "box:/srv"]);
    ok(&store, &["exec", "box", "mkdir", "/into"]);
    ok(&store, &["cp", s, "box:/into"]);
    ok(&store, &["cp", &format!("{s}/."), "box:/into"]);
    let listing =
        ok(&store, &["exec", "box", "sh", "-c", "cat /srv/a /srv/sub/b /into/src/a /into/sub/b; readlink /srv/link"]);
    assert_eq!(listing, "hello\ndeep\nhello\ndeep\n/etc/shadow\n");
    assert_eq!(ok(&store, &["exec", "box", "stat", "-c", "%u", "/srv/a"]).trim(), "0", "owned by the container's root");

    // Out: through the container's own symlinks, which stay inside it.
    ok(&store, &["exec", "box", "sh", "-c", "echo container > /etc/secret && ln -s / /escape && ln -s /etc /etclink"]);
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = out.to_str().unwrap();
    ok(&store, &["cp", "box:/escape/etc/passwd", &format!("{o}/passwd")]);
    assert_eq!(std::fs::read_to_string(out.join("passwd")).unwrap(), "root:x:0:0::/root:/bin/sh\n");
    ok(&store, &["cp", "box:/etclink", o]);
    assert_eq!(std::fs::read_link(out.join("etclink")).unwrap(), Path::new("/etc"), "copied as a link");
    ok(&store, &["cp", "box:/etclink/", &format!("{o}/etc-copy")]);
    assert_eq!(std::fs::read_to_string(out.join("etc-copy/secret")).unwrap(), "container\n");
    // Into the container through its symlink: lands in its /tmp, not ours.
    ok(&store, &["exec", "box", "mkdir", "/tmp"]);
    ok(&store, &["cp", &format!("{s}/a"), "box:/escape/tmp/from-host"]);
    assert_eq!(ok(&store, &["exec", "box", "cat", "/tmp/from-host"]), "hello\n");
    assert!(!Path::new("/tmp/from-host").exists());

    // Refused: a device node, missing paths, a directory onto a file.
    ok(&store, &["exec", "box", "mknod", "/dev-node", "c", "1", "3"]);
    let e = ch(&store, &["cp", "box:/dev-node", o]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("device node"), "{e:?}");
    assert!(!out.join("dev-node").exists());
    let e = ch(&store, &["cp", "box:/nope", o]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("box:/nope"), "{e:?}");
    let e = ch(&store, &["cp", "box:/etc/passwd", &format!("{o}/missing/")]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("does not exist"), "{e:?}");
    let e = ch(&store, &["cp", "box:/srv", &format!("{o}/passwd")]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("onto a file"), "{e:?}");
    let e = ch(&store, &["cp", s, o]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("CONTAINER:PATH"), "{e:?}");
    let e = ch(&store, &["cp", "nosuch:/x", o]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("nosuch"), "{e:?}");

    // `-`: a tar on standard output and from standard input.
    let tar = bin().arg("--store").arg(&store).args(["cp", "box:/srv", "-"]).output().unwrap();
    assert!(tar.status.success(), "{tar:?}");
    let names: Vec<String> = tar::Archive::new(&tar.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["srv", "srv/a", "srv/link", "srv/sub", "srv/sub/b"], "{names:?}");
    let mut child = bin()
        .arg("--store")
        .arg(&store)
        .args(["cp", "-", "box:/into"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut b = tar::Builder::new(child.stdin.take().unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "streamed/.wh.plain", &b"tar\n"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, "streamed/up", "../../../../..").unwrap();
        b.finish().unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(ok(&store, &["exec", "box", "cat", "/into/streamed/.wh.plain"]), "tar\n", "a .wh. name is a file here");
    // A link out of the tree in the stream stays a link inside the container.
    assert!(!Path::new("/into").exists());

    // A named foreground run is kept, as `docker run --name` is: the CI
    // flow of building in a container and copying the result out.
    let built =
        ch(&store, &["run", "--name", "build", "bb:1", "sh", "-c", "mkdir /out; echo a > /out/a; echo built; exit 3"]);
    assert_eq!(built.status.code(), Some(3), "{built:?}");
    assert_eq!(String::from_utf8_lossy(&built.stdout), "built\n");
    ok(&store, &["cp", "build:/out", &format!("{o}/out")]);
    assert_eq!(std::fs::read_to_string(out.join("out/a")).unwrap(), "a\n");
    assert_eq!(ok(&store, &["logs", "build"]), "built\n");
    ok(&store, &["rm", "build"]);
    assert_eq!(ok(&store, &["run", "--rm", "--name", "gone", "bb:1", "echo", "x"]), "x\n");
    assert!(!ok(&store, &["ps", "-a"]).contains("gone"));
    let e = ch(&store, &["run", "--name", "tty", "-t", "bb:1", "true"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("-i/-t"), "{e:?}");

    // A stopped container: into its changes, and back out.
    ok(&store, &["stop", "-t", "0", "box"]);
    ok(&store, &["cp", &format!("{s}/a"), "box:/stopped"]);
    ok(&store, &["cp", "box:/stopped", &format!("{o}/stopped")]);
    assert_eq!(std::fs::read_to_string(out.join("stopped")).unwrap(), "hello\n");
    assert!(ok(&store, &["diff", "box"]).contains("A /stopped"));
}

/// Rootless detached containers: a port published from a user namespace
/// reaches a listener whose `logs` show what was sent, and `cp` works both
/// ways, running (as its owner) and stopped.
#[test]
fn rootless_containers_publish_ports_and_copy() {
    rootless_ready();
    require("pasta");
    let t = tempfile::tempdir().unwrap();
    let seed = t.path().join("seed");
    import_busybox(t.path(), &seed);
    let base = format!("oci:{}:bb", t.path().join("bb").display());
    ok(&seed, &["copy", "bb:1", &base]);
    std::fs::write(t.path().join("f"), "from the host\n").unwrap();
    run(Command::new("chmod").arg("-R").arg("a+rX").arg(t.path()));
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    run(Command::new("chown").arg("65534:65534").arg(&home));
    let store = home.join("store");
    let _cleanup = Cleanup(store.clone());
    user_ok(65534, &store, &["copy", &base, "bb:1"]);
    let listen = "nc -l -p 4444; sleep 60";
    user_ok(65534, &store, &["run", "-d", "--name", "l", "-p", "127.0.0.1::4444", "bb:1", "sh", "-c", listen]);
    let host = user_ok(65534, &store, &["port", "l", "4444"]);
    let port: u16 = host.trim().strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
    eventually("the line through the rootless published port", || {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = s.write_all(b"hello rootless\n");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        user_ok(65534, &store, &["logs", "l"]).contains("hello rootless")
    });
    let f = t.path().join("f");
    user_ok(65534, &store, &["cp", f.to_str().unwrap(), "l:/copied"]);
    assert_eq!(user_ok(65534, &store, &["exec", "l", "cat", "/copied"]), "from the host\n");
    assert_eq!(user_ok(65534, &store, &["exec", "l", "stat", "-c", "%u", "/copied"]).trim(), "0");
    user_ok(65534, &store, &["stop", "-t", "0", "l"]);
    let back = home.join("back");
    user_ok(65534, &store, &["cp", "l:/copied", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "from the host\n");
    user_ok(65534, &store, &["rm", "l"]);
}

/// `run -d` with its CLI killed (-9) at any moment: every container left
/// is whole (created or running, never corrupt), each can be removed, and
/// one whose CLI's whole process group is killed after the start keeps
/// running under its monitor.
#[test]
fn containers_survive_kill_9_of_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    import_busybox(t.path(), &store);
    let _cleanup = Cleanup(store.clone());
    for delay in [0u64, 2, 5, 10, 20, 40] {
        let mut child = bin().arg("--store").arg(&store).args(["run", "-d", "bb:1", "sleep", "30"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    let all: Value = json(&store, &["ps", "-a", "--json"]);
    for c in all.as_array().unwrap() {
        let state = c["State"].as_str().unwrap();
        assert!(state == "created" || state == "running", "{c}");
    }
    for id in ok(&store, &["ps", "-aq"]).lines() {
        ok(&store, &["rm", "-f", id]);
    }
    assert_eq!(ok(&store, &["ps", "-aq"]), "");
    // The CLI and everything in its process group killed after the start.
    let script = format!(
        "{} --store {} run -d --name survivor bb:1 sh -c 'while true; do echo alive; sleep 0.1; done'; sleep 30",
        env!("CARGO_BIN_EXE_cargohold"),
        store.display()
    );
    let mut group = Command::new("setsid").args(["sh", "-c", &script]).spawn().unwrap();
    eventually("the container to run", || ch(&store, &["ps", "-q", "--filter", "name=survivor"]).stdout.len() > 1);
    // killpg(2) itself: this machine's kill(1) reads `-PGID` as a signal
    // and a pid (`kill -9 -14736` became kill(-1, 9), everything).
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(group.id()).unwrap());
    nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = group.wait();
    let before = ok(&store, &["logs", "survivor"]).lines().count();
    eventually("more output after the kill", || ok(&store, &["logs", "survivor"]).lines().count() > before + 2);
    assert!(ok(&store, &["ps"]).contains("survivor"));
    ok(&store, &["rm", "-f", "survivor"]);
}
