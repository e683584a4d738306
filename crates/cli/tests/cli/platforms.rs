//! Multi-platform builds: an image index of two platforms, the foreign
//! one's RUN steps run by Debian's qemu-user-static through binfmt_misc,
//! read back by skopeo and through a registry.

use super::*;

/// Debian's arm64 busybox-static, which `scripts/test.sh` fetches.
const ARM64_BUSYBOX: &str = "/usr/local/lib/cargohold-test/busybox.arm64";

/// A build context with both busyboxes and a Dockerfile whose tools stage
/// runs on the build platform and whose final stage runs on the target.
fn context(dir: &Path) -> PathBuf {
    assert!(
        Path::new(ARM64_BUSYBOX).is_file(),
        "{ARM64_BUSYBOX} is missing: scripts/test.sh fetches Debian's busybox-static:arm64 there"
    );
    assert!(
        Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").is_file(),
        "qemu-user-static's aarch64 emulator is not registered in binfmt_misc (scripts/test.sh registers it)"
    );
    assert_eq!(std::env::consts::ARCH, "x86_64", "this test builds on amd64");
    require("busybox");
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let busybox = run(Command::new("sh").args(["-c", "command -v busybox"]));
    std::fs::copy(busybox.trim(), ctx.join("busybox-amd64")).unwrap();
    std::fs::copy(ARM64_BUSYBOX, ctx.join("busybox-arm64")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        r#"FROM --platform=$BUILDPLATFORM scratch AS tools
ARG TARGETPLATFORM BUILDPLATFORM
COPY busybox-amd64 /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "echo built on $BUILDPLATFORM for $TARGETPLATFORM > /note"]

FROM scratch
ARG TARGETARCH
COPY busybox-$TARGETARCH /bin/busybox
COPY --from=tools /note /note
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && uname -m > /arch"]
CMD ["cat", "/arch", "/note"]
"#,
    )
    .unwrap();
    ctx
}

#[test]
fn a_two_platform_build_is_an_index_whose_arm64_image_runs_under_qemu() {
    let t = tempfile::tempdir().unwrap();
    let ctx = context(t.path());
    let store = t.path().join("store");
    let c = ctx.to_str().unwrap();
    let built = json(&store, &["build", "--platform", "linux/amd64,linux/arm64", "-t", "multi:1", "--json", c]);
    let images = built["images"].as_array().unwrap();
    let platforms: Vec<&str> = images.iter().map(|i| i["platform"].as_str().unwrap()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(built["id"], built["digest"]);
    // Each platform's image runs its own busybox: the arm64 one through qemu.
    let host = ok(&store, &["run", "--network", "none", "multi:1"]);
    assert_eq!(host, "x86_64\nbuilt on linux/amd64 for linux/amd64\n");
    let arm = ok(&store, &["run", "--network", "none", "--platform", "linux/arm64", "multi:1"]);
    assert_eq!(arm, "aarch64\nbuilt on linux/amd64 for linux/arm64\n");
    // Its e_machine: EM_AARCH64.
    let elf = ["run", "--platform", "linux/arm64", "--network", "none", "multi:1", "od", "-An", "-tx1", "-j18", "-N2"];
    let machine = ok(&store, &[&elf[..], &["/bin/busybox"]].concat());
    assert_eq!(machine.trim(), "b7 00", "not an aarch64 executable");

    // skopeo reads the index, and each platform's config.
    let layout = t.path().join("layout");
    ok(&store, &["copy", "--all-platforms", "multi:1", &format!("oci:{}:1", layout.display())]);
    let oci = format!("oci:{}:1", layout.display());
    let raw: Value = serde_json::from_str(&run(skopeo(t.path()).args(["inspect", "--raw", &oci]))).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let archs: Vec<&str> =
        raw["manifests"].as_array().unwrap().iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let arm: Value =
        serde_json::from_str(&run(skopeo(t.path()).args(["--override-arch", "arm64", "inspect", &oci]))).unwrap();
    assert_eq!(arm["Architecture"], "arm64");
    // skopeo's --override-arch picks the same image from the index here.
    let ours = format!("oci:{}:1", t.path().join("ours-arm").display());
    ok(&store, &["--override-arch", "arm64", "copy", &oci, &ours]);
    let theirs = format!("oci:{}:1", t.path().join("skopeo-arm").display());
    run(skopeo(t.path()).args(["--override-arch", "arm64", "copy", &oci, &theirs]));
    let digest = |l: &str| run(skopeo(t.path()).args(["inspect", "--format", "{{.Digest}}", l]));
    assert_eq!(digest(&ours), digest(&theirs));
    let picked: Value = serde_json::from_str(&run(skopeo(t.path()).args(["inspect", &ours]))).unwrap();
    assert_eq!(picked["Architecture"], "arm64");
    let both = bin()
        .arg("--store")
        .arg(&store)
        .args(["--override-arch", "arm64", "copy", "--platform", "linux/amd64", &oci, &ours])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&both.stderr);
    assert!(!both.status.success() && err.contains("--override-arch cannot be used with --platform"), "{err}");
    // skopeo's --multi-arch: all, as --all-platforms; index-only refused.
    let all = format!("oci:{}:1", t.path().join("multi-all").display());
    ok(&store, &["copy", "--multi-arch", "all", "--remove-signatures", &oci, &all]);
    assert_eq!(digest(&all), digest(&oci), "the whole index, as it was");
    let index_only =
        bin().arg("--store").arg(&store).args(["copy", "--multi-arch", "index-only", &oci, &all]).output().unwrap();
    let err = String::from_utf8_lossy(&index_only.stderr);
    assert!(!index_only.status.success() && err.contains("index-only is not supported"), "{err}");

    // Pushed whole; a build for one platform pulls that one only, and a
    // later build for the other keeps both in the store.
    let reg = registry();
    let remote = format!("{}/multi:1", reg.1);
    ok(&store, &["push", "multi:1", &remote]);
    let raw: Value = serde_json::from_str(&run(skopeo(t.path()).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{remote}"),
    ])))
    .unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2, "{raw}");
    let child = t.path().join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(child.join("Dockerfile"), format!("FROM {remote}\nRUN uname -m > /child-arch\n")).unwrap();
    let store2 = t.path().join("store2");
    let cc = child.to_str().unwrap();
    ok(&store2, &["build", "--platform", "linux/arm64", "-t", "child:arm", cc]);
    ok(&store2, &["build", "-t", "child:amd", cc]);
    assert_eq!(ok(&store2, &["run", "--network", "none", "child:arm", "cat", "/child-arch"]), "aarch64\n");
    assert_eq!(ok(&store2, &["run", "--network", "none", "child:amd", "cat", "/child-arch"]), "x86_64\n");
    let base = json(&store2, &["inspect", "--raw", &remote]);
    let archs: Vec<&str> =
        base["manifests"].as_array().unwrap().iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    assert_eq!(archs, ["arm64", "amd64"], "{base}");
}
