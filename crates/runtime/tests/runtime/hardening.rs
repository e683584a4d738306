//! Hostile probes (`crates/testkit/probe/probe.c`) inside containers of
//! every executor, each asserting the safe outcome, and the same probes
//! under Debian's podman: cargohold is never the weaker of the two.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cargohold_runtime::{
    DEFAULT_CAPABILITIES, ExecError, Executor, Namespaces, Network, OciRuntime, ProcessIo, RootFs, RunSpec, Seccomp,
    Security, capability_number,
};
use cargohold_testkit::{Probe, probe_binary, require, root_block_device};

use crate::exec::{CGROUP_TESTS, busybox, spec};

/// The attacks every confined container must lose.
const REFUSED: &[&str] = &[
    "mount_tmpfs",
    "mount_cgroup",
    "release_agent",
    "release_agent_unified",
    "remount_sys_rw",
    "remount_proc_sys_rw",
    "unshare_user",
    "unshare_mount",
    "unshare_net",
    "keyctl",
    "bpf",
    "proc_sys_write",
    "sysrq_trigger_write",
    "sys_write",
    "kcore",
    "proc_keys",
    "timer_list",
    "sched_debug",
    "sys_firmware",
    "block_device_read",
    "dev_block_device_read",
    "net_admin",
];

fn default_caps() -> u64 {
    DEFAULT_CAPABILITIES.iter().fold(0, |m, c| m | 1 << capability_number(c).unwrap())
}

/// A busybox root with the probe at `/probe`.
fn probe_root() -> (tempfile::TempDir, PathBuf) {
    let (t, root) = busybox();
    std::fs::copy(probe_binary(), root.join("probe")).unwrap();
    (t, root)
}

/// A descriptor of a host directory, inherited by children (no
/// close-on-exec), as a careless caller would leak it.
fn leaked_dir(dir: &Path) -> OwnedFd {
    nix::fcntl::open(dir, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty())
        .unwrap()
}

/// Runs the probe under `exec` with `s` and returns its report.
fn probe(exec: &dyn Executor, mut s: RunSpec, port: u16) -> Probe {
    s.argv = vec!["/probe".into(), "--block".into(), root_block_device(), "--port".into(), port.to_string()];
    s.cwd = "/".into();
    let out = tempfile::NamedTempFile::new().unwrap();
    let io = ProcessIo { stdin: Stdio::null(), stdout: Stdio::from(out.reopen().unwrap()), stderr: Stdio::inherit() };
    let code = exec.run(&s, io).unwrap();
    let text = std::fs::read_to_string(out.path()).unwrap();
    assert_eq!(code, 0, "the probe ran: {text}");
    Probe::parse(&text)
}

fn assert_confined(p: &Probe, what: &str) {
    let allowed = default_caps();
    for set in ["cap_eff", "cap_prm", "cap_bnd"] {
        assert_eq!(p.caps(set) & !allowed, 0, "{what}: {set} beyond Docker's 14: {p:?}");
    }
    assert_eq!(p.caps("cap_inh"), 0, "{what}: {p:?}");
    assert_eq!(p.caps("cap_amb"), 0, "{what}: {p:?}");
    assert_eq!(p.get("seccomp"), "2", "{what}: a seccomp filter: {p:?}");
    for attack in REFUSED {
        assert!(p.safe(attack), "{what}: {attack} must be refused: {}", p.get(attack));
    }
    assert_eq!(p.get("extra_fds"), "none", "{what}: no inherited descriptor: {p:?}");
    assert_eq!(p.get("pid"), "1", "{what}: the payload is pid 1");
    assert!(p.get("pid1").starts_with("/probe"), "{what}: {p:?}");
}

fn host_addresses() -> String {
    let out = Command::new("ip").args(["-o", "addr"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_executor_confines_by_default() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    require("pasta");
    let (t, root) = probe_root();
    // A host service on loopback only, and a descriptor the container must
    // not inherit.
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port();
    let _leak = leaked_dir(t.path());
    let before = host_addresses();
    let mut executors: Vec<(String, Box<dyn Executor>)> = vec![("namespaces".into(), Box::new(Namespaces::new()))];
    for rt in ["crun", "runc"] {
        require(rt);
        executors.push((rt.into(), Box::new(OciRuntime::new(rt).unwrap())));
    }
    for (name, exec) in &executors {
        let mut s = spec(RootFs::Dir(root.clone()), "");
        s.network = Network::Private;
        let p = probe(exec.as_ref(), s, port);
        assert_confined(&p, name);
        assert!(p.safe("host_loopback"), "{name}: the host's loopback service is out of reach: {p:?}");
        assert_eq!(p.get("default_route"), "present", "{name}: pasta configured a way out: {p:?}");

        // The same with an overlay root and no network.
        let upper = t.path().join(format!("upper-{name}"));
        let work = t.path().join(format!("work-{name}"));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let mut s = spec(RootFs::Overlay { lower: vec![root.clone()], upper, work }, "");
        s.network = Network::None;
        let p = probe(exec.as_ref(), s, port);
        assert_confined(&p, &format!("{name} overlay"));
        assert_eq!(p.get("default_route"), "absent", "{name}: --network none has loopback only: {p:?}");
    }
    assert_eq!(host_addresses(), before, "the host's network configuration is unchanged");
}

#[test]
fn a_working_directory_through_an_inherited_descriptor_is_refused() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let (t, root) = probe_root();
    let secret_dir = t.path().join("host-secrets");
    std::fs::create_dir_all(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("password"), "hunter2").unwrap();
    let leak = leaked_dir(&secret_dir);
    let mut s = spec(RootFs::Dir(root.clone()), "cat password > /tmp/stolen; cat ../password >> /tmp/stolen");
    s.cwd = format!("/proc/self/fd/{}", leak.as_raw_fd());
    match Namespaces::new().run(&s, crate::exec::quiet()) {
        Err(ExecError::Setup { step, .. }) => assert!(step.contains("outside the container's root"), "{step}"),
        other => panic!("expected a setup error, got {other:?}"),
    }
    for rt in ["crun", "runc"] {
        require(rt);
        let code = OciRuntime::new(rt).unwrap().run(&s, crate::exec::quiet());
        assert!(!matches!(code, Ok(0)), "{rt}: {code:?}");
    }
    let stolen = std::fs::read_to_string(root.join("tmp/stolen")).unwrap_or_default();
    assert!(!stolen.contains("hunter2"), "a host file was read: {stolen}");
}

#[test]
fn less_confinement_only_when_asked_for() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let (_t, root) = probe_root();
    let exec = Namespaces::new();
    let mut s = spec(RootFs::Dir(root.clone()), "");
    s.security = Security { cap_add: vec!["NET_ADMIN".into()], ..Security::default() };
    let p = probe(&exec, s, 1);
    assert!(!p.safe("net_admin"), "--cap-add NET_ADMIN gives it: {p:?}");
    assert!(p.safe("mount_tmpfs") && p.get("seccomp") == "2", "{p:?}");

    let mut s = spec(RootFs::Dir(root.clone()), "");
    s.security.seccomp = Seccomp::Unconfined;
    let p = probe(&exec, s, 1);
    assert_eq!(p.get("seccomp"), "0", "{p:?}");
    assert_eq!(p.caps("cap_eff") & !default_caps(), 0, "unconfined seccomp keeps the capability set: {p:?}");

    let mut s = spec(RootFs::Dir(root.clone()), "");
    s.security.no_new_privileges = true;
    let out = tempfile::NamedTempFile::new().unwrap();
    s.argv = vec!["/bin/sh".into(), "-c".into(), "grep NoNewPrivs /proc/self/status".into()];
    let io = ProcessIo { stdin: Stdio::null(), stdout: Stdio::from(out.reopen().unwrap()), stderr: Stdio::inherit() };
    assert_eq!(exec.run(&s, io).unwrap(), 0);
    assert!(std::fs::read_to_string(out.path()).unwrap().contains('1'));

    let mut s = spec(RootFs::Dir(root), "");
    s.security.privileged = true;
    let p = probe(&exec, s, 1);
    assert_eq!(p.get("seccomp"), "0", "{p:?}");
    assert_ne!(p.caps("cap_eff") & (1 << 21), 0, "--privileged has CAP_SYS_ADMIN: {p:?}");
    assert!(!p.safe("mount_tmpfs") && !p.safe("remount_sys_rw"), "{p:?}");
}

#[test]
fn bad_options_are_named_and_nothing_runs() {
    let (_t, root) = probe_root();
    let mut s = spec(RootFs::Dir(root.clone()), "touch /tmp/ran");
    s.security.cap_add = vec!["CAP_FLY".into()];
    let e = Namespaces::new().run(&s, crate::exec::quiet()).unwrap_err().to_string();
    assert!(e.contains("--cap-add CAP_FLY") && e.contains("unknown capability"), "{e}");
    let mut s = spec(RootFs::Dir(root.clone()), "touch /tmp/ran");
    s.security.seccomp = Seccomp::Profile("/nonexistent/profile.json".into());
    let e = Namespaces::new().run(&s, crate::exec::quiet()).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/profile.json"), "{e}");
    let bad = root.join("bad.json");
    std::fs::write(&bad, "{\"defaultAction\": 7}").unwrap();
    s.security.seccomp = Seccomp::Profile(bad.clone());
    let e = Namespaces::new().run(&s, crate::exec::quiet()).unwrap_err().to_string();
    assert!(e.contains(bad.to_str().unwrap()) && e.contains("not a seccomp profile"), "{e}");
    let mut s = spec(RootFs::Dir(root.clone()), "touch /tmp/ran");
    s.init = Some("/nonexistent/catatonit".into());
    let e = Namespaces::new().run(&s, crate::exec::quiet()).unwrap_err().to_string();
    assert!(e.contains("--init") && e.contains("catatonit"), "{e}");
    assert!(!root.join("tmp/ran").exists(), "nothing ran");
}

#[test]
fn init_reaps_and_is_pid_one() {
    require("catatonit");
    let (_t, root) = busybox();
    let mut s = spec(RootFs::Dir(root.clone()), "echo $$ > /tmp/pid; cat /proc/1/cmdline | tr '\\0' ' ' > /tmp/init");
    s.init = cargohold_runtime::find_program("catatonit");
    assert_eq!(Namespaces::new().run(&s, crate::exec::quiet()).unwrap(), 0);
    assert_ne!(std::fs::read_to_string(root.join("tmp/pid")).unwrap().trim(), "1");
    assert!(std::fs::read_to_string(root.join("tmp/init")).unwrap().starts_with("/dev/init -- /bin/sh"));
    s.argv = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
    assert_eq!(Namespaces::new().run(&s, crate::exec::quiet()).unwrap(), 3, "the command's exit code");
}

/// The same probes under `podman run` with its defaults: wherever podman
/// refuses an attack, cargohold refuses it too.
#[test]
fn podman_is_never_safer() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    require("podman");
    let (t, root) = probe_root();
    let image = format!("localhost/cargohold-probe-{}:1", std::process::id());
    let tar = t.path().join("root.tar");
    cargohold_testkit::run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg("."));
    cargohold_testkit::run(Command::new("podman").args(["import", "-q"]).arg(&tar).arg(&image));
    let out = Command::new("podman")
        .args(["run", "--rm", "--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096", "--network", "none", &image])
        .args(["/probe", "--block", &root_block_device(), "--port", "1"])
        .output()
        .unwrap();
    let _ = Command::new("podman").args(["rmi", "-f", &image]).output();
    assert!(out.status.success(), "podman ran the probe: {}", String::from_utf8_lossy(&out.stderr));
    let theirs = Probe::parse(&String::from_utf8_lossy(&out.stdout));
    let mut s = spec(RootFs::Dir(root), "");
    s.network = Network::None;
    let ours = probe(&Namespaces::new(), s, 1);
    for (name, value) in &theirs.values {
        let comparable = value.starts_with("refused") || value.starts_with("allowed") || value == "masked";
        if comparable && theirs.safe(name) {
            assert!(ours.safe(name), "podman refuses {name}, cargohold must too: ours {:?}", ours.get(name));
        }
    }
    assert_eq!(ours.caps("cap_bnd") & !theirs.caps("cap_bnd") & !default_caps(), 0);
    assert_eq!(theirs.get("seccomp"), ours.get("seccomp"));
    assert_eq!(theirs.get("pid"), ours.get("pid"), "both run the payload as pid 1");
}

/// Private networks are kept for the executor's next run only when the
/// container could not change them.
#[test]
fn a_network_a_container_could_change_is_not_passed_on() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    require("pasta");
    let (_t, root) = busybox();
    let exec = Namespaces::new();
    let mtu = |security: Security, script: &str| {
        let mut s = spec(RootFs::Dir(root.clone()), &format!("{script}; cat /sys/class/net/lo/mtu > /tmp/mtu"));
        s.network = Network::Private;
        s.cwd = "/".into();
        s.security = security;
        assert_eq!(exec.run(&s, crate::exec::quiet()).unwrap(), 0);
        std::fs::read_to_string(root.join("tmp/mtu")).unwrap().trim().to_owned()
    };
    let admin = Security { cap_add: vec!["NET_ADMIN".into()], ..Security::default() };
    assert_eq!(mtu(admin, "ip link set lo mtu 1300"), "1300");
    assert_eq!(mtu(Security::default(), "true"), "65536", "a fresh network after a NET_ADMIN container");
    assert_ne!(mtu(Security::default(), "ip link set lo mtu 1300 || true"), "1300");
    assert_eq!(mtu(Security::default(), "true"), "65536");
}
