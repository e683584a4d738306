//! The namespace executor on a busybox root: isolation, identity, exit
//! codes, overlay uppers as layers, hostile roots.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use cargohold_runtime::{
    BindMount, ExecError, Executor, Limits, Namespaces, Network, OciRuntime, ProcessIo, RootFs, RunSpec, UserIds,
    lookup_user,
};
use cargohold_testkit::busybox_rootfs;

pub(crate) fn spec(root: RootFs, script: &str) -> RunSpec {
    RunSpec {
        root,
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/bin".into(), "FOO=bar baz".into()],
        cwd: "/work/dir".into(),
        user: UserIds::default(),
        hostname: "buildhost".into(),
        network: Network::None,
        binds: Vec::new(),
        ports: Vec::new(),
        tmpfs: Vec::new(),
        dns: Vec::new(),
        extra_hosts: Vec::new(),
        limits: Limits::default(),
        tty: false,
        security: Default::default(),
        init: None,
        systemd: false,
        state_dir: None,
    }
}

pub(crate) fn quiet() -> ProcessIo {
    ProcessIo { stdin: Stdio::null(), stdout: Stdio::inherit(), stderr: Stdio::inherit() }
}

pub(crate) fn busybox() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("rootfs");
    busybox_rootfs(&root);
    (t, root)
}

#[test]
fn a_directory_root_is_isolated_and_reports_exit_codes() {
    let (_t, root) = busybox();
    let script = "set -e; { echo \"$FOO\"; pwd; hostname; id -u; echo $$; ls /sys/class/net; cat /etc/hostname; \
                  ls /dev; ls /proc | grep -c '^[0-9]*$'; } > /tmp/out; exit 7";
    let code = Namespaces::new().run(&spec(RootFs::Dir(root.clone()), script), quiet()).unwrap();
    assert_eq!(code, 7);
    let out = std::fs::read_to_string(root.join("tmp/out")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..5], &["bar baz", "/work/dir", "buildhost", "0", "1"], "{out}");
    assert_eq!(lines[5], "lo", "only loopback with --network none: {out}");
    assert_eq!(lines[6], "buildhost");
    assert!(out.contains("null") && out.contains("urandom") && out.contains("pts"), "{out}");
    let procs: usize = lines.last().unwrap().parse().unwrap();
    assert!(procs <= 5, "only the container's processes are visible: {out}");
    // The generated files are mounted, not written into the root.
    assert!(!root.join("etc/hostname").exists() || std::fs::read(root.join("etc/hostname")).unwrap().is_empty());
}

#[test]
fn users_groups_and_missing_programs() {
    let (_t, root) = busybox();
    let roots = [root.clone()];
    let mut s = spec(RootFs::Dir(root.clone()), "id -u > /tmp/id; id -G >> /tmp/id; touch /tmp/mine");
    s.user = lookup_user(&roots, "app").unwrap();
    assert_eq!(Namespaces::new().run(&s, quiet()).unwrap(), 0);
    assert_eq!(std::fs::read_to_string(root.join("tmp/id")).unwrap(), "1000\n1000 50\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(root.join("tmp/mine")).unwrap().uid(), 1000);

    let mut s = spec(RootFs::Dir(root), "");
    s.argv = vec!["no-such-program".into()];
    match Namespaces::new().run(&s, quiet()) {
        Err(ExecError::Spawn { program, source }) => {
            assert_eq!(program, "no-such-program");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[test]
fn background_processes_die_with_the_step() {
    let (_t, root) = busybox();
    let marker = format!("cargohold-bg-{}", std::process::id());
    let script = format!("sleep 300 {marker} & sleep 300 & echo started > /tmp/bg");
    let mut s = spec(RootFs::Dir(root.clone()), &script);
    s.argv = vec!["/bin/sh".into(), "-c".into(), script.replace(&format!(" {marker}"), "")];
    s.env.push(format!("MARK={marker}"));
    let started = std::time::Instant::now();
    assert_eq!(Namespaces::new().run(&s, quiet()).unwrap(), 0);
    assert!(started.elapsed().as_secs() < 30);
    assert!(root.join("tmp/bg").exists());
    // Nothing with the container's environment is left on the host.
    std::thread::sleep(std::time::Duration::from_millis(200));
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(env) = std::fs::read(p.path().join("environ")) {
            assert!(!env.windows(marker.len()).any(|w| w == marker.as_bytes()), "process {:?} survived", p.path());
        }
    }
}

#[test]
fn an_overlay_upper_holds_exactly_the_changes() {
    let (t, root) = busybox();
    let upper = t.path().join("upper");
    let work = t.path().join("work");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(root.join("opt/old")).unwrap();
    std::fs::write(root.join("opt/old/a"), "a").unwrap();
    let before = cargohold_testkit::tree(&root);
    let overlay = RootFs::Overlay { lower: vec![root.clone()], upper: upper.clone(), work };
    let script = "rm /bin/vi && echo new > /new && rm -r /opt/old && mkdir -p /opt/old && echo b > /opt/old/b";
    let mut s = spec(overlay, script);
    s.network = Network::Host;
    s.cwd = "/".into();
    assert_eq!(Namespaces::new().run(&s, quiet()).unwrap(), 0);
    assert_eq!(cargohold_testkit::tree(&root), before, "the lower layer is untouched");
    let (tar, report) =
        cargohold_layerfs::upper_to_layer(&upper, Vec::new(), &cargohold_layerfs::WriteOptions::default()).unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["bin/.wh.vi", "new", "opt/old/", "opt/old/.wh..wh..opq", "opt/old/b"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("proc") || n.starts_with("dev/")), "{names:?}");
    assert_eq!(report.deleted, 1);
    assert_eq!(report.opaque, 1);
}

#[test]
fn hostile_roots_cannot_reach_the_host() {
    let (t, root) = busybox();
    let victim = t.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    // Symlinks at mount targets resolve inside the root, never on the host:
    // /etc points at the host directory's path (absent inside: the
    // generated /etc files are skipped), /data at a directory inside.
    std::fs::remove_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink(&victim, root.join("etc")).unwrap();
    std::fs::create_dir(root.join("inside")).unwrap();
    std::os::unix::fs::symlink("../../../../../../inside", root.join("data")).unwrap();
    let host_file = t.path().join("shared.txt");
    std::fs::write(&host_file, "shared").unwrap();
    let mut s = spec(RootFs::Dir(root.clone()), "cat /data/x/shared.txt > /tmp/seen");
    s.binds.push(BindMount { source: host_file.clone(), target: "/data/x/shared.txt".into(), readonly: true });
    assert_eq!(Namespaces::new().run(&s, quiet()).unwrap(), 0);
    assert_eq!(std::fs::read_to_string(root.join("tmp/seen")).unwrap(), "shared");
    assert!(root.join("inside/x/shared.txt").is_file(), "the mount target was made inside the root");
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0, "nothing reached the host directory");

    // A /proc that climbs out to the host directory is a setup error naming it.
    std::fs::remove_dir_all(root.join("proc")).ok();
    std::os::unix::fs::symlink(format!("../../../../../..{}", victim.display()), root.join("proc")).unwrap();
    match Namespaces::new().run(&spec(RootFs::Dir(root.clone()), "true"), quiet()) {
        Err(ExecError::Setup { step, .. }) => assert!(step.contains("/proc"), "{step}"),
        other => panic!("expected a setup error, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0, "nothing reached the host directory");
}

#[test]
fn unknown_users_are_named() {
    let (_t, root) = busybox();
    let e = lookup_user(&[root], "nobody:nogroup").unwrap_err();
    assert!(e.to_string().contains("nobody"), "{e}");
}

/// The tests that look at this process' cgroups take turns (tests run as
/// threads of one process under `cargo test`).
pub(crate) static CGROUP_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The cgroups of this process' runs: `cargohold-<pid>-*` under /sys/fs/cgroup.
fn our_cgroups() -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, prefix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p);
            } else if depth > 0 {
                walk(&p, depth - 1, prefix, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 4, &format!("cargohold-{}-", std::process::id()), &mut out);
    out
}

#[test]
fn memory_and_cpu_limits_apply_to_the_container_and_are_removed_after() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let (_t, root) = busybox();
    // 64 MiB touched by dd under a 32 MiB limit: killed (SIGKILL, 137).
    let mut s = spec(RootFs::Dir(root.clone()), "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null");
    assert_eq!(Namespaces::new().run(&s, quiet()).unwrap(), 0, "fits without a limit");
    s.limits = Limits { memory: Some(32 << 20), cpus: None };
    assert_eq!(Namespaces::new().run(&s, quiet()).unwrap(), 137, "the OOM killer ends it under --memory 32m");
    s.argv[2] = "dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null".into();
    assert_eq!(Namespaces::new().run(&s, quiet()).unwrap(), 0, "a smaller buffer fits");

    // Half a CPU: the quota is on the container's cgroup while it runs.
    let mut s = spec(RootFs::Dir(root), "sleep 2");
    s.limits = Limits { memory: None, cpus: Some(0.5) };
    let running = std::thread::spawn(move || Namespaces::new().run(&s, quiet()).unwrap());
    let mut quota = None;
    for _ in 0..150 {
        for dir in our_cgroups() {
            let v1 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok();
            let v2 = std::fs::read_to_string(dir.join("cpu.max")).ok();
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if let Some(q) = v1.or(v2)
                && !procs.trim().is_empty()
            {
                quota = Some(q.trim().to_owned());
            }
        }
        if quota.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(running.join().unwrap(), 0);
    let q = quota.expect("a cgroup with the container's processes and a CPU quota");
    assert!(q == "50000" || q == "50000 100000", "{q}");
    assert!(our_cgroups().is_empty(), "the cgroups are removed: {:?}", our_cgroups());
}

/// The same containers through crun's and runc's OCI bundles: isolation,
/// user, exit codes, an overlay root whose upper directory gets only the
/// changes, bind mounts, and a memory limit.
#[test]
fn crun_and_runc_run_the_same_containers_from_a_bundle() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    for runtime in ["crun", "runc"] {
        cargohold_testkit::require(runtime);
        runtime_runs_containers(&OciRuntime::new(runtime).unwrap());
    }
}

fn runtime_runs_containers(crun: &OciRuntime) {
    let (t, root) = busybox();
    let script = "set -e; { echo \"$FOO\"; pwd; hostname; id -u; echo $$; ls /sys/class/net; \
                  cat /sys/class/net/lo/operstate; ls /proc | grep -c '^[0-9]*$'; } > /tmp/out; exit 7";
    assert_eq!(crun.run(&spec(RootFs::Dir(root.clone()), script), quiet()).unwrap(), 7);
    let out = std::fs::read_to_string(root.join("tmp/out")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..6], &["bar baz", "/work/dir", "buildhost", "0", "1", "lo"], "{out}");
    assert_ne!(lines[6], "down", "loopback is up: {out}");
    assert!(lines[7].parse::<usize>().unwrap() <= 3, "only the container's processes: {out}");

    // Overlay root: the upper directory holds the change and nothing else.
    let upper = t.path().join("upper");
    let work = t.path().join("work");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let data = t.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in"), "from the host\n").unwrap();
    let mut s = spec(
        RootFs::Overlay { lower: vec![root.clone()], upper: upper.clone(), work },
        "cat /data/in > /tmp/made-by-app; id -u >> /tmp/made-by-app",
    );
    s.cwd = "/".into();
    s.user = lookup_user(std::slice::from_ref(&root), "app").unwrap();
    s.binds.push(BindMount { source: data.clone(), target: "/data".into(), readonly: true });
    assert_eq!(crun.run(&s, quiet()).unwrap(), 0);
    assert_eq!(std::fs::read_to_string(upper.join("tmp/made-by-app")).unwrap(), "from the host\n1000\n");
    let mut names: Vec<String> =
        std::fs::read_dir(&upper).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["tmp"], "mount points are not left in the upper directory");

    // A memory limit through our cgroup.
    let mut s = spec(RootFs::Dir(root), "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null");
    s.limits = Limits { memory: Some(32 << 20), cpus: None };
    assert_eq!(crun.run(&s, quiet()).unwrap(), 137);
    assert!(our_cgroups().is_empty());
}
