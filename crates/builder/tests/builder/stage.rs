//! Staged builds: a rootfs tarball (xz, zstd) as the base, injected trees
//! with owners, modes and POSIX ACLs (checked with `getfacl` on our unpack
//! and umoci's), `image_rootfs` over `injected_volumes`, stage scripts in
//! the container, a failing stage or selfcheck tagging nothing, promotion,
//! and a Debian root (debootstrap) with its merged-/usr symlinks.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargohold_builder::build::{BuildOptions, Builder};
use cargohold_builder::exec::Network;
use cargohold_builder::stage::{StageConfig, StageError, StageOptions, Stager, promote};
use cargohold_image_core::{Reference, Store};
use cargohold_layerfs::{ApplyOptions, UnpackOptions, WriteOptions, archive_tree, unpack};
use cargohold_testkit::{busybox_rootfs, require, run, tree, tree_diff};

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// `rootfs` as a tarball at `out`: `.xz` or `.zst` by the name.
fn tarball(rootfs: &Path, out: &Path) {
    let file = std::fs::File::create(out).unwrap();
    let opts = WriteOptions { clamp_mtime: None };
    if out.extension().is_some_and(|e| e == "xz") {
        let enc = liblzma::write::XzEncoder::new(file, 1);
        let (enc, _) = archive_tree(rootfs, enc, &opts).unwrap();
        enc.finish().unwrap().sync_all().unwrap();
    } else {
        let enc = zstd::stream::write::Encoder::new(file, 3).unwrap();
        let (enc, _) = archive_tree(rootfs, enc, &opts).unwrap();
        enc.finish().unwrap().flush().unwrap();
    }
}

fn unpacked(store: &Store, name: &str, dest: &Path) -> PathBuf {
    let mut src = store.source(name).unwrap();
    unpack(&mut src, dest, &UnpackOptions { apply: ApplyOptions::default(), platform: None }).unwrap();
    dest.to_path_buf()
}

fn getfacl(path: &Path) -> String {
    run(Command::new("getfacl").arg("-cpn").arg(path))
}

fn setfacl(args: &[&str], path: &Path) {
    run(Command::new("setfacl").args(args).arg(path));
}

fn options(dir: &Path) -> StageOptions {
    StageOptions {
        dir: dir.to_path_buf(),
        config: StageConfig::load(dir).unwrap(),
        timestamp: Some(1_700_000_000),
        ..StageOptions::default()
    }
}

/// An image directory over a busybox rootfs tarball, with ACLs, owners,
/// an override and all three scripts.
fn image_dir(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    tarball(&rootfs, &dir.join("rootfs.tar.xz"));
    let img = dir.join("img");
    write(
        &img,
        "stage.toml",
        "image = \"test/os\"\nbase = \"scratch\"\nbase_tarball = \"../rootfs.tar.xz\"\n\n[env]\nGREETING = \"hi\"\n",
    );
    let inj = img.join("injected_volumes");
    let acl_file = write(&inj, "etc/app/acl-file", "acl\n");
    setfacl(&["-m", "u:1000:rw"], &acl_file);
    let owned = write(&inj, "etc/app/owned", "owned\n");
    std::os::unix::fs::chown(&owned, Some(1234), Some(50)).unwrap();
    std::fs::set_permissions(&owned, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("owned", inj.join("etc/app/link")).unwrap();
    std::fs::hard_link(&owned, inj.join("etc/app/hard")).unwrap();
    rustix::fs::setxattr(&owned, "user.origin", b"injected", rustix::fs::XattrFlags::empty()).unwrap();
    std::fs::create_dir_all(inj.join("srv/shared")).unwrap();
    setfacl(&["-d", "-m", "g:50:rwx"], &inj.join("srv/shared"));
    write(&inj, "etc/app/conf", "injected\n");
    write(&img.join("image_rootfs"), "etc/app/conf", "rootfs\n");
    write(
        &inj,
        "bootstrap_scripts/stage2.sh",
        "#!/bin/sh\nset -e\necho \"$GREETING $CARGOHOLD_STAGE\" > /etc/app/stage2\ntest \"$(cat /etc/app/conf)\" = rootfs\ntouch /srv/shared/made-in-stage2\n",
    );
    // No #! line: run with /bin/sh.
    write(&inj, "bootstrap_scripts/stage3.sh", "echo three > /etc/app/stage3\n");
    write(&inj, "bootstrap_scripts/selfcheck.sh", "#!/bin/sh\necho the injected selfcheck must not run\nexit 1\n");
    write(&img.join("image_rootfs"), "bootstrap_scripts/selfcheck.sh", "#!/bin/sh\nset -e\ntest -f /etc/app/stage3\n");
    img
}

#[test]
fn a_staged_build_keeps_owners_acls_and_overrides_and_tags_the_candidate() {
    require("getfacl");
    require("umoci");
    let tmp = tempfile::tempdir().unwrap();
    let img = image_dir(tmp.path());
    let store = Store::open(tmp.path().join("store")).unwrap();
    let report = Stager::new(&store).run(&options(&img)).unwrap();
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["base", "inject", "stage2", "stage3", "selfcheck"]);
    assert_eq!(report.tag, "test/os:candidate");
    assert!(report.skipped.is_empty());
    let found = store.resolve("test/os:candidate").unwrap();
    assert_eq!(found.descriptor.digest, report.image.digest);

    let ours = unpacked(&store, "test/os:candidate", &tmp.path().join("ours"));
    let read = |rel: &str| std::fs::read_to_string(ours.join(rel)).unwrap();
    assert_eq!(read("etc/app/conf"), "rootfs\n", "image_rootfs wins over injected_volumes");
    assert_eq!(read("etc/app/stage2"), "hi stage2\n", "the env table and the stage name reach the script");
    assert_eq!(read("etc/app/stage3"), "three\n");
    assert!(!ours.join("bootstrap_scripts").exists(), "the scripts are mounted, not copied");
    let m = std::fs::symlink_metadata(ours.join("etc/app/owned")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 50, 0o640));
    assert_eq!(m.ino(), std::fs::metadata(ours.join("etc/app/hard")).unwrap().ino(), "hardlink kept");
    assert_eq!(std::fs::read_link(ours.join("etc/app/link")).unwrap(), Path::new("owned"));
    let mut v = [0u8; 32];
    let n = rustix::fs::getxattr(ours.join("etc/app/owned"), "user.origin", &mut v).unwrap();
    assert_eq!(&v[..n], b"injected");
    assert!(getfacl(&ours.join("etc/app/acl-file")).contains("user:1000:rw-"));
    assert!(getfacl(&ours.join("srv/shared")).contains("default:group:50:rwx"));
    // Made by the stage script under the default ACL: inherited in the container.
    assert!(getfacl(&ours.join("srv/shared/made-in-stage2")).contains("group:50:rwx"));
    assert!(!getfacl(&ours.join("etc/app/conf")).contains("user:1000"));

    // umoci reads the same tree, ACLs included.
    let layout = tmp.path().join("store");
    let bundle = tmp.path().join("umoci");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:docker.io/test/os:candidate", layout.display()))
        .arg(&bundle));
    let theirs = bundle.join("rootfs");
    assert_eq!(tree_diff(&tree(&ours), &tree(&theirs)), Vec::<String>::new());
    assert_eq!(getfacl(&ours.join("etc/app/acl-file")), getfacl(&theirs.join("etc/app/acl-file")));
    assert_eq!(getfacl(&ours.join("srv/shared")), getfacl(&theirs.join("srv/shared")));

    let details = store.details(&report.image, None).unwrap();
    let cfg = details.config.config.clone().unwrap();
    assert_eq!(cfg.cmd, Some(vec!["/sbin/init".to_owned()]));
    assert_eq!(details.image.layers.len(), 4, "rootfs, injected files, stage2, stage3");
    let by: Vec<String> = details.config.history.iter().filter_map(|h| h.created_by.clone()).collect();
    assert!(by[0].contains("rootfs.tar.xz") && by[2].ends_with("stage2.sh"), "{by:?}");

    // Again: the stages come from the cache and the digest is the same.
    let again = Stager::new(&store).run(&options(&img)).unwrap();
    let cached: Vec<bool> = again.steps.iter().map(|s| s.cached).collect();
    assert_eq!(cached, [false, false, true, true, false]);
    assert_eq!(again.image.digest, report.image.digest);

    promote(&store, "test/os", "1.0").unwrap();
    assert_eq!(store.resolve("test/os:1.0").unwrap().descriptor.digest, report.image.digest);
    assert!(promote(&store, "test/none", "1.0").is_err());
}

#[test]
fn a_failing_stage_or_selfcheck_tags_nothing_and_names_the_script() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image_dir(tmp.path());
    let store = Store::open(tmp.path().join("store")).unwrap();
    let first = Stager::new(&store).run(&options(&img)).unwrap();
    let index = std::fs::read(tmp.path().join("store/index.json")).unwrap();

    write(&img.join("image_rootfs"), "bootstrap_scripts/selfcheck.sh", "#!/bin/sh\nexit 3\n");
    let err = Stager::new(&store).run(&options(&img)).unwrap_err();
    assert!(matches!(&err, StageError::Failed { stage, code: 3 } if stage == "selfcheck.sh"), "{err:?}");
    assert!(err.to_string().contains("nothing was tagged"), "{err}");
    assert_eq!(std::fs::read(tmp.path().join("store/index.json")).unwrap(), index, "no tag moved");
    assert_eq!(store.resolve("test/os:candidate").unwrap().descriptor.digest, first.image.digest);

    write(&img.join("image_rootfs"), "bootstrap_scripts/stage2.sh", "#!/bin/sh\necho broken >&2\nexit 7\n");
    let err = Stager::new(&store).run(&options(&img)).unwrap_err();
    assert!(matches!(&err, StageError::Failed { stage, code: 7 } if stage == "stage2.sh"), "{err:?}");
    assert_eq!(std::fs::read(tmp.path().join("store/index.json")).unwrap(), index);

    // Bad settings are named.
    write(&img, "stage.toml", "image = \"test/os\"\nbase_tarbal = \"x\"\n");
    let err = StageConfig::load(&img).unwrap_err().to_string();
    assert!(err.contains("stage.toml") && err.contains("base_tarbal"), "{err}");
    let mut o = StageOptions { dir: img.clone(), ..StageOptions::default() };
    o.config = StageConfig { image: Some("test/os:1".into()), ..StageConfig::default() };
    let err = Stager::new(&store).run(&o).unwrap_err().to_string();
    assert!(err.contains("without a tag"), "{err}");
    o.config =
        StageConfig { image: Some("test/os".into()), base_tarball: Some("nope.tar".into()), ..StageConfig::default() };
    let err = Stager::new(&store).run(&o).unwrap_err().to_string();
    assert!(err.contains("nope.tar"), "{err}");
    std::fs::write(tmp.path().join("junk.tar.gz"), b"this is not gzip").unwrap();
    o.config.base_tarball = Some("../junk.tar.gz".into());
    let err = Stager::new(&store).run(&o).unwrap_err().to_string();
    assert!(err.contains("junk.tar.gz") && err.contains("not a tar"), "{err}");
    assert_eq!(std::fs::read(tmp.path().join("store/index.json")).unwrap(), index);
}

/// A Debian bookworm minbase root, made once per target directory.
fn debian_rootfs() -> PathBuf {
    require("debootstrap");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debootstrap-bookworm");
    let done = dir.join(".complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        run(Command::new("debootstrap").args(["--variant=minbase", "bookworm"]).arg(&root));
        std::fs::write(&done, "").unwrap();
    }
    dir.join("root")
}

#[test]
fn a_debian_rootfs_stages_offline_and_builds_on_top() {
    let root = debian_rootfs();
    let tmp = tempfile::tempdir().unwrap();
    tarball(&root, &tmp.path().join("bookworm.tar.zst"));
    let img = tmp.path().join("img");
    write(
        &img,
        "stage.toml",
        "image = \"test/debian\"\nbase_tarball = \"../bookworm.tar.zst\"\ncommand = [\"/bin/bash\"]\n",
    );
    // /bin is a symlink to usr/bin in bookworm: the file must land in /usr/bin.
    let tool = write(&img.join("injected_volumes"), "bin/injected-tool", "#!/bin/sh\necho injected\n");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write(
        &img.join("injected_volumes"),
        "bootstrap_scripts/stage2.sh",
        "#!/bin/bash\nset -euo pipefail\ndpkg-query -W dash >/dev/null\nuseradd -m -u 1500 app\ninjected-tool > /home/app/said\n",
    );
    write(
        &img.join("injected_volumes"),
        "bootstrap_scripts/selfcheck.sh",
        "#!/bin/sh\nset -e\ntest -L /bin\ntest -x /usr/bin/injected-tool\nid app\ntest \"$(grep -c : /proc/net/dev)\" = 1\n",
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    let mut opts = options(&img);
    opts.network = Network::None;
    let report = Stager::new(&store).run(&opts).unwrap();
    assert_eq!(report.skipped, ["stage3.sh"]);

    // A Dockerfile build on the candidate.
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM test/debian:candidate\nRUN apt-get --version > /etc/apt-version && su app -c 'id -u' > /tmp/uid\nUSER app\nCMD [\"cat\", \"/home/app/said\"]\n",
    );
    let build = BuildOptions {
        context: ctx.clone(),
        tags: vec![Reference::parse("test/debian-app:1").unwrap()],
        network: Network::None,
        timestamp: Some(1_700_000_000),
        ..BuildOptions::default()
    };
    Builder::new(&store).build(&build).unwrap();
    let out = unpacked(&store, "test/debian-app:1", &tmp.path().join("out"));
    assert!(std::fs::symlink_metadata(out.join("bin")).unwrap().is_symlink(), "/bin is still a symlink");
    assert_eq!(std::fs::read_to_string(out.join("home/app/said")).unwrap(), "injected\n");
    assert_eq!(std::fs::read_to_string(out.join("tmp/uid")).unwrap(), "1500\n");
    assert!(std::fs::read_to_string(out.join("etc/apt-version")).unwrap().starts_with("apt "));
}

#[test]
fn the_copy_up_fallback_stages_the_same_image() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image_dir(tmp.path());
    let store = Store::open(tmp.path().join("store")).unwrap();
    let over = Stager::new(&store).run(&options(&img)).unwrap();
    let copied = Stager::new(&store).run(&StageOptions { no_cache: true, copy_up: true, ..options(&img) }).unwrap();
    assert_eq!(copied.image.digest, over.image.digest);
}

/// Hostile inputs: a rootfs tarball escaping its root is refused, naming
/// it; a base symlink pointing at host paths cannot carry injected files
/// out of the image.
#[test]
fn hostile_tarballs_and_symlinks_stay_inside_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("host-side");
    std::fs::create_dir_all(&outside).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();

    // A tarball with ../ in a name.
    let evil = tmp.path().join("evil.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&evil).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_gnu_mut().unwrap().name[..15].copy_from_slice(b"../../escape.tx");
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
        b.finish().unwrap();
    }
    let img = tmp.path().join("img");
    write(&img, "stage.toml", "image = \"test/evil\"\nbase_tarball = \"../evil.tar\"\n");
    let err = Stager::new(&store).run(&options(&img)).unwrap_err().to_string();
    assert!(err.contains("evil.tar"), "{err}");
    assert!(!tmp.path().join("escape.tx").exists() && !Path::new("/escape.tx").exists());
    assert!(store.resolve("test/evil:candidate").is_err());

    // A rootfs whose /opt/link points at the host directory, absolutely.
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs);
    std::fs::create_dir_all(rootfs.join("opt")).unwrap();
    std::os::unix::fs::symlink(&outside, rootfs.join("opt/link")).unwrap();
    std::os::unix::fs::symlink("/etc", rootfs.join("opt/etc-link")).unwrap();
    tarball(&rootfs, &tmp.path().join("rootfs.tar.zst"));
    write(&img, "stage.toml", "image = \"test/evil\"\nbase_tarball = \"../rootfs.tar.zst\"\n");
    write(&img.join("injected_volumes"), "opt/link/pwned", "no\n");
    write(&img.join("injected_volumes"), "opt/etc-link/cargohold-test-marker", "image\n");
    let report = Stager::new(&store).run(&options(&img)).unwrap();
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "nothing written on the host side");
    let out = unpacked(&store, "test/evil:candidate", &tmp.path().join("out"));
    // The link dangles inside the image (its target is a host path), so
    // the injected directory replaces it, inside the image.
    assert_eq!(std::fs::read_to_string(out.join("opt/link/pwned")).unwrap(), "no\n");
    // A link to /etc is followed to the image's /etc, never the host's.
    assert_eq!(std::fs::read_to_string(out.join("etc/cargohold-test-marker")).unwrap(), "image\n");
    assert!(!Path::new("/etc/cargohold-test-marker").exists());
    assert_eq!(report.tag, "test/evil:candidate");
}
