//! Dockerfile builds on a busybox base in a temp store: RUN, COPY/ADD,
//! config, multi-stage, the cache, reproducibility, failures, and umoci
//! unpacking what we built exactly as we do.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargohold_builder::build::{BuildError, BuildOptions, Builder};
use cargohold_image_core::media_type::Compression;
use cargohold_image_core::{
    CopyOptions, History, ImageConfig, ImageLocation, NoProgress, Reference, Store, copy, open_dest,
};
use cargohold_layerfs::{ApplyOptions, UnpackOptions, WriteOptions, archive_tree, store_layer_from, unpack};
use cargohold_testkit::{busybox_rootfs, run, tree, tree_diff};

/// A store holding `busybox:test` (one layer from the busybox rootfs).
fn store_with_busybox(dir: &Path) -> Store {
    let rootfs = dir.join("busybox-rootfs");
    busybox_rootfs(&rootfs);
    let store = Store::open(dir.join("store")).unwrap();
    let _g = store.layout().write_guard().unwrap();
    let layer = store_layer_from(store.layout(), Compression::Gzip, |w| {
        archive_tree(&rootfs, w, &WriteOptions { clamp_mtime: Some(1_000_000_000) }).map(|_| ())
    })
    .unwrap();
    let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..ImageConfig::default() };
    let h = History { created_by: Some("busybox".into()), ..History::default() };
    store.commit_image(None, &[layer], config, h, Some(&Reference::parse("busybox:test").unwrap())).unwrap();
    store
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn opts(ctx: &Path, tag: &str) -> BuildOptions {
    BuildOptions {
        context: ctx.to_path_buf(),
        tags: vec![Reference::parse(tag).unwrap()],
        timestamp: Some(1_700_000_000),
        ..BuildOptions::default()
    }
}

fn unpacked(store: &Store, name: &str, dest: &Path) -> PathBuf {
    let mut src = store.source(name).unwrap();
    unpack(&mut src, dest, &UnpackOptions { apply: ApplyOptions::default(), platform: None }).unwrap();
    dest.to_path_buf()
}

const APP: &str = r#"FROM busybox:test
ARG GREETING=hello
ENV APP=/app
WORKDIR /app
COPY files/ ./
COPY --chown=app:staff --chmod=0640 secret.txt /etc/secret
ADD bundle.tar.gz /opt/
RUN echo "$GREETING from $(pwd) $APP" > out.txt && rm /bin/vi && mkdir -p /var/empty
RUN <<EOF
echo heredoc > /app/heredoc.txt
EOF
USER app
RUN id -u > /tmp/uid
CMD ["cat", "/app/out.txt"]
"#;

fn app_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    write(&ctx, "Dockerfile", APP);
    write(&ctx, "files/a.txt", "a\n");
    write(&ctx, "files/sub/b.txt", "b\n");
    write(&ctx, "secret.txt", "s3cret\n");
    write(&ctx, "ignored.log", "no\n");
    write(&ctx, ".dockerignore", "*.log\n");
    let bundle_src = dir.join("bundle");
    write(&bundle_src, "lib/x.so", "elf\n");
    run(Command::new("tar").arg("-czf").arg(ctx.join("bundle.tar.gz")).arg("-C").arg(&bundle_src).arg("."));
    ctx
}

#[test]
fn a_dockerfile_builds_runs_copies_and_configures() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_busybox(t.path());
    let ctx = app_context(t.path());
    let report = Builder::new(&store).build(&opts(&ctx, "app:1")).unwrap();
    assert!(report.steps.iter().all(|s| !s.cached));
    let root = unpacked(&store, "app:1", &t.path().join("root"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("app/out.txt"), "hello from /app /app\n");
    assert_eq!(read("app/a.txt"), "a\n");
    assert_eq!(read("app/sub/b.txt"), "b\n");
    assert_eq!(read("app/heredoc.txt"), "heredoc\n");
    assert_eq!(read("opt/lib/x.so"), "elf\n", "ADD extracted the archive");
    assert_eq!(read("tmp/uid"), "1000\n");
    assert!(!root.join("bin/vi").exists(), "the deletion is a whiteout in the RUN layer");
    assert!(root.join("var/empty").is_dir());
    assert!(!root.join("app/ignored.log").exists() && !root.join("ignored.log").exists());
    let secret = std::fs::metadata(root.join("etc/secret")).unwrap();
    assert_eq!((secret.uid(), secret.gid(), secret.mode() & 0o7777), (1000, 50, 0o640));
    // Mount points the RUN steps needed are not in the layers.
    for p in ["etc/hosts", "etc/resolv.conf", "etc/hostname"] {
        assert!(!root.join(p).exists(), "{p} leaked into the image");
    }
    let img = store.resolve("app:1").unwrap();
    let details = store.details(&img.descriptor, None).unwrap();
    let c = details.config.config.clone().unwrap();
    assert_eq!(c.cmd, Some(vec!["cat".into(), "/app/out.txt".into()]));
    assert_eq!(c.working_dir.as_deref(), Some("/app"));
    assert_eq!(c.user.as_deref(), Some("app"));
    assert!(c.env.unwrap().contains(&"APP=/app".to_string()));
    assert_eq!(details.config.rootfs.diff_ids.len(), 1 + 6, "base + 3 COPY/ADD + 3 RUN");
    assert_eq!(details.config.history.len(), 1 + 11);
    assert_eq!(report.layers, 7);

    // umoci unpacks what we built to the same tree.
    cargohold_testkit::require("umoci");
    let layout = t.path().join("layout");
    let mut src = store.source("app:1").unwrap();
    let mut dst =
        open_dest(&ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap(), &store, None).unwrap();
    copy(&mut src, dst.as_mut(), &CopyOptions::default(), &NoProgress).unwrap();
    let bundle = t.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:v1", layout.display())).arg(&bundle));
    let diffs = tree_diff(&tree(&root), &tree(&bundle.join("rootfs")));
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[test]
fn the_cache_reuses_steps_and_the_same_inputs_give_the_same_digest() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_busybox(t.path());
    let ctx = app_context(t.path());
    let first = Builder::new(&store).build(&opts(&ctx, "app:1")).unwrap();
    let started = std::time::Instant::now();
    let again = Builder::new(&store).build(&opts(&ctx, "app:2")).unwrap();
    let cached_secs = started.elapsed().as_secs_f64();
    assert!(again.steps.iter().filter(|s| s.layer.is_some()).all(|s| s.cached), "{:#?}", again.steps);
    assert_eq!(first.image.digest, again.image.digest, "a cached rebuild is the same image");
    assert!(cached_secs < 2.0, "a fully cached build took {cached_secs} s");

    // Without the cache, the same inputs and timestamp still give the same digest.
    let mut o = opts(&ctx, "app:3");
    o.no_cache = true;
    let fresh = Builder::new(&store).build(&o).unwrap();
    assert!(fresh.steps.iter().all(|s| !s.cached));
    assert_eq!(fresh.image.digest, first.image.digest, "builds are reproducible");

    // A changed context file re-runs its COPY and everything after it only.
    write(&ctx, "files/a.txt", "changed\n");
    let changed = Builder::new(&store).build(&opts(&ctx, "app:4")).unwrap();
    let layer_steps: Vec<(usize, bool)> = changed
        .steps
        .iter()
        .filter(|s| s.layer.is_some() || s.instruction.starts_with("RUN"))
        .map(|s| (s.line, s.cached))
        .collect();
    assert_eq!(layer_steps.first(), Some(&(5, false)), "{layer_steps:?}");
    assert!(layer_steps.iter().all(|(_, c)| !c), "{layer_steps:?}");
    assert_ne!(changed.image.digest, first.image.digest);
}

#[test]
fn multi_stage_copies_from_an_earlier_stage_and_targets_work() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_busybox(t.path());
    let ctx = t.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox:test AS build\nRUN mkdir -p /out && echo built > /out/artifact && ln -s artifact /out/link\n\
         FROM scratch AS unused\nCOPY nothing /nothing\n\
         FROM busybox:test\nCOPY --from=build /out/ /dist/\nRUN --network=none ls /sys/class/net > /dist/net\n",
    );
    let report = Builder::new(&store).build(&opts(&ctx, "multi:1")).unwrap();
    assert!(report.steps.iter().all(|s| s.stage != 1), "the unused stage was skipped");
    let root = unpacked(&store, "multi:1", &t.path().join("root"));
    assert_eq!(std::fs::read_to_string(root.join("dist/artifact")).unwrap(), "built\n");
    assert_eq!(std::fs::read_link(root.join("dist/link")).unwrap(), Path::new("artifact"));
    assert_eq!(std::fs::read_to_string(root.join("dist/net")).unwrap(), "lo\n");

    let mut o = opts(&ctx, "multi:build");
    o.plan.target = Some("build".into());
    Builder::new(&store).build(&o).unwrap();
    let root = unpacked(&store, "multi:build", &t.path().join("root-build"));
    assert!(root.join("out/artifact").is_file() && !root.join("dist").exists());
}

#[test]
fn failures_name_the_line_and_leave_the_store_as_it_was() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_busybox(t.path());
    let ctx = t.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM busybox:test\nRUN echo one > /one\nRUN exit 3\nRUN echo never\n");
    let before: Vec<_> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    match Builder::new(&store).build(&opts(&ctx, "bad:1")) {
        Err(e @ BuildError::Failed { line: 3, code: 3, .. }) => {
            assert_eq!(e.to_string(), "Dockerfile:3: RUN /bin/sh -c exit 3 # buildkit: exit code 3");
        }
        other => panic!("expected a failed RUN, got {other:?}"),
    }
    let after: Vec<_> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(before, after, "no image was named");

    write(&ctx, "Dockerfile", "FROM busybox:test\nCOPY missing.txt /x\n");
    let e = Builder::new(&store).build(&opts(&ctx, "bad:2")).unwrap_err().to_string();
    assert!(e.starts_with("Dockerfile:2: COPY"), "{e}");
    write(&ctx, "Dockerfile", "FROM nosuch:image\nRUN true\n");
    let e = Builder::new(&store).build(&opts(&ctx, "bad:3")).unwrap_err().to_string();
    assert!(e.contains("Dockerfile:1") && e.contains("nosuch:image"), "{e}");
    write(&ctx, "Dockerfile", "FROM busybox:test\nUSER nobody\nRUN true\n");
    let e = Builder::new(&store).build(&opts(&ctx, "bad:4")).unwrap_err().to_string();
    assert!(e.contains("Dockerfile:3") && e.contains("nobody"), "{e}");
    let after: Vec<_> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(before, after);
}

#[test]
fn onbuild_triggers_run_in_the_child_build_and_are_not_inherited() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let parent = tmp.path().join("parent");
    write(&parent, "Dockerfile", "FROM busybox:test\nONBUILD COPY msg /msg\nONBUILD RUN echo triggered > /onbuild\n");
    let built = Builder::new(&store).build(&opts(&parent, "parent:1")).unwrap();
    let cfg = store.details(&built.image, None).unwrap().config.config.unwrap();
    assert_eq!(cfg.extra["OnBuild"], serde_json::json!(["COPY msg /msg", "RUN echo triggered > /onbuild"]));

    let child = tmp.path().join("child");
    write(&child, "Dockerfile", "FROM parent:1\nRUN cat /msg > /seen\n");
    write(&child, "msg", "from the child\n");
    let report = Builder::new(&store).build(&opts(&child, "child:1")).unwrap();
    assert_eq!(report.steps.len(), 3, "two triggers, then the child's RUN");
    assert!(report.steps[..2].iter().all(|s| s.line == 1), "triggers are reported at the FROM line");
    let out = unpacked(&store, "child:1", &tmp.path().join("out"));
    assert_eq!(std::fs::read_to_string(out.join("onbuild")).unwrap(), "triggered\n");
    assert_eq!(std::fs::read_to_string(out.join("seen")).unwrap(), "from the child\n");
    let cfg = store.details(&report.image, None).unwrap().config.config.unwrap();
    assert!(!cfg.extra.contains_key("OnBuild"), "not inherited by grandchildren");

    // --deny covers the triggers too.
    let mut o = opts(&child, "child:2");
    o.plan.deny = vec![cargohold_builder::dockerfile::Keyword::Run];
    write(&child, "Dockerfile", "FROM parent:1\n");
    let err = Builder::new(&store).build(&o).unwrap_err().to_string();
    assert!(err.contains("Dockerfile:1") && err.contains("ONBUILD") && err.contains("--deny"), "{err}");
}

#[test]
fn add_downloads_urls_only_with_the_network() {
    let (addr, seen) = cargohold_testkit::canned_server(|head| {
        let ok = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let text = if head.starts_with("GET /files/tool.sh ") {
            ok("#!/bin/sh\necho tool\n")
        } else if head.starts_with("GET /files/data.txt ") {
            ok("data\n")
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
        };
        text.into_bytes()
    });
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "FROM busybox:test\nADD http://{addr}/files/tool.sh /opt/\nADD http://{addr}/files/data.txt /etc/data\n"
        ),
    );
    Builder::new(&store).build(&opts(&ctx, "fetched:1")).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
    let out = unpacked(&store, "fetched:1", &tmp.path().join("out"));
    assert_eq!(std::fs::read_to_string(out.join("opt/tool.sh")).unwrap(), "#!/bin/sh\necho tool\n");
    let m = std::fs::metadata(out.join("opt/tool.sh")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600, "Docker's mode for downloaded files");
    assert_eq!(m.mtime(), 784_111_777, "Last-Modified");
    assert_eq!(std::fs::read_to_string(out.join("etc/data")).unwrap(), "data\n");

    // A missing file, no network, and COPY with a URL: errors naming the URL.
    write(&ctx, "Dockerfile", &format!("FROM busybox:test\nADD http://{addr}/files/missing /x\n"));
    let err = Builder::new(&store).build(&opts(&ctx, "fetched:2")).unwrap_err().to_string();
    assert!(err.contains("Dockerfile:2") && err.contains("/files/missing") && err.contains("404"), "{err}");
    write(&ctx, "Dockerfile", &format!("FROM busybox:test\nADD http://{addr}/files/data.txt /x\n"));
    let mut o = opts(&ctx, "fetched:3");
    o.network = cargohold_builder::exec::Network::None;
    let err = Builder::new(&store).build(&o).unwrap_err().to_string();
    assert!(err.contains("needs the network"), "{err}");
    write(&ctx, "Dockerfile", &format!("FROM busybox:test\nCOPY http://{addr}/files/data.txt /x\n"));
    let err = Builder::new(&store).build(&opts(&ctx, "fetched:4")).unwrap_err().to_string();
    assert!(err.contains("COPY does not take URLs"), "{err}");

    // RUN --network=host only with the build's consent; default is the build's.
    write(&ctx, "Dockerfile", "FROM busybox:test\nRUN --network=host true\n");
    let err = Builder::new(&store).build(&opts(&ctx, "net:1")).unwrap_err().to_string();
    assert!(err.contains("Dockerfile:2") && err.contains("--allow network.host"), "{err}");
    let mut o = opts(&ctx, "net:1");
    o.allow_host_network = true;
    Builder::new(&store).build(&o).unwrap();
    write(&ctx, "Dockerfile", "FROM busybox:test\nRUN --network=default ls /sys/class/net > /n\n");
    let mut o = opts(&ctx, "net:2");
    o.network = cargohold_builder::exec::Network::None;
    Builder::new(&store).build(&o).unwrap();
    let out = unpacked(&store, "net:2", &tmp.path().join("net2"));
    assert_eq!(std::fs::read_to_string(out.join("n")).unwrap().trim(), "lo", "default is the build's network (none)");

    // ADD --checksum: the download must have it.
    let right = cargohold_image_core::Digest::sha256_of(b"data\n");
    write(&ctx, "Dockerfile", &format!("FROM busybox:test\nADD --checksum={right} http://{addr}/files/data.txt /x\n"));
    Builder::new(&store).build(&opts(&ctx, "fetched:7")).unwrap();
    let wrong = cargohold_image_core::Digest::sha256_of(b"other");
    write(&ctx, "Dockerfile", &format!("FROM busybox:test\nADD --checksum={wrong} http://{addr}/files/data.txt /x\n"));
    let err = Builder::new(&store).build(&opts(&ctx, "fetched:8")).unwrap_err().to_string();
    assert!(err.contains("Dockerfile:2") && err.contains("--checksum"), "{err}");

    // Credentials in a URL: used, and shown nowhere (history, errors).
    write(&ctx, "Dockerfile", &format!("FROM busybox:test\nADD http://al:s3cr3t@{addr}/files/data.txt /etc/data\n"));
    Builder::new(&store).build(&opts(&ctx, "fetched:5")).unwrap();
    assert!(seen.lock().unwrap().iter().any(|h| h.to_ascii_lowercase().contains("authorization: basic")));
    let img = store.resolve("fetched:5").unwrap();
    let history = serde_json::to_string(&store.details(&img.descriptor, None).unwrap().config.history).unwrap();
    assert!(!history.contains("s3cr3t") && history.contains("al:xxxxx@"), "{history}");
    write(&ctx, "Dockerfile", &format!("FROM busybox:test\nADD http://al:s3cr3t@{addr}/files/missing /x\n"));
    let err = Builder::new(&store).build(&opts(&ctx, "fetched:6")).unwrap_err().to_string();
    assert!(!err.contains("s3cr3t") && err.contains("al:xxxxx@"), "{err}");
}

/// Without overlayfs (forced here; on hosts whose store is on overlayfs or
/// NFS it is the only way) every step works on a copy of its layers: the
/// image is byte for byte the one the overlay path builds.
#[test]
fn the_copy_up_fallback_builds_the_same_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = app_context(tmp.path());
    let over = Builder::new(&store).build(&opts(&ctx, "app:overlay")).unwrap();
    let mut o = opts(&ctx, "app:copy");
    o.no_cache = true;
    o.copy_up = true;
    let copied = Builder::new(&store).build(&o).unwrap();
    assert!(copied.steps.iter().all(|s| !s.cached));
    assert_eq!(copied.image.digest, over.image.digest);
}

#[test]
fn names_that_are_not_utf8_round_trip() {
    use std::os::unix::ffi::OsStrExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let ctx = tmp.path().join("ctx");
    let raw = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY caf* /x/\nCOPY . /all/\n");
    std::fs::write(ctx.join(raw), "bytes").unwrap();
    Builder::new(&store).build(&opts(&ctx, "raw:1")).unwrap();
    let out = unpacked(&store, "raw:1", &tmp.path().join("out"));
    assert_eq!(std::fs::read_to_string(out.join("x").join(raw)).unwrap(), "bytes");
    assert_eq!(std::fs::read_to_string(out.join("all").join(raw)).unwrap(), "bytes");
}

/// `RUN --mount`: a cache reused by the next build (and not in the layer),
/// a secret present in the step and nowhere after, a tmpfs, a read-only
/// bind of the context.
#[test]
fn run_mounts_cache_secret_tmpfs_and_bind() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "files/a", "from the context\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox:test\n\
         RUN --mount=type=cache,target=/cache,id=c1 sh -c 'echo x >> /cache/n; wc -l < /cache/n > /count'\n\
         RUN --mount=type=secret,id=tok,required sh -c 'test $(wc -c < /run/secrets/tok) -eq 6 && touch /ok'\n\
         RUN --mount=type=tmpfs,target=/t sh -c 'echo hi > /t/x && test -f /t/x'\n\
         RUN --mount=type=bind,source=files,target=/src sh -c 'cat /src/a > /copied; ! touch /src/new 2>/dev/null'\n",
    );
    let mut o = opts(&ctx, "mounts:1");
    o.secrets = vec![("tok".into(), cargohold_builder::build::SecretSource::Bytes(b"s3cr3t".to_vec()))];
    Builder::new(&store).build(&o).unwrap();
    let out = unpacked(&store, "mounts:1", &tmp.path().join("one"));
    assert_eq!(std::fs::read_to_string(out.join("count")).unwrap().trim(), "1");
    assert!(out.join("ok").is_file(), "the secret was there");
    assert_eq!(std::fs::read_to_string(out.join("copied")).unwrap(), "from the context\n");
    for gone in ["cache", "run/secrets", "t", "src"] {
        assert!(!out.join(gone).exists(), "{gone}: a mount point left in the image");
    }
    // The secret is in no layer, no history, no cache entry.
    let img = store.resolve("mounts:1").unwrap();
    let history = serde_json::to_string(&store.details(&img.descriptor, None).unwrap().config.history).unwrap();
    assert!(!history.contains("s3cr3t"), "{history}");
    let found = std::process::Command::new("grep")
        .args(["-r", "-a", "-l", "s3cr3t"])
        .arg(tmp.path().join("store"))
        .output()
        .unwrap();
    assert!(found.stdout.is_empty(), "the secret is stored: {}", String::from_utf8_lossy(&found.stdout));
    // The cache mount is kept: a second (uncached) build sees its first run.
    let mut o = opts(&ctx, "mounts:2");
    o.no_cache = true;
    o.secrets = vec![("tok".into(), cargohold_builder::build::SecretSource::Bytes(b"s3cr3t".to_vec()))];
    Builder::new(&store).build(&o).unwrap();
    let out = unpacked(&store, "mounts:2", &tmp.path().join("two"));
    assert_eq!(std::fs::read_to_string(out.join("count")).unwrap().trim(), "2");
    // A required secret not given: an error naming the line.
    let mut o = opts(&ctx, "mounts:3");
    o.no_cache = true;
    let err = Builder::new(&store).build(&o).unwrap_err().to_string();
    assert!(err.contains("Dockerfile:3") && err.contains("secret tok is required"), "{err}");
}

/// `COPY --exclude`, `--parents` and `--link` (onto an empty root: a
/// symlink of the stage at the destination is not followed).
#[test]
fn copy_exclude_parents_and_link() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "files/a", "a\n");
    write(&ctx, "files/x.log", "log\n");
    write(&ctx, "files/sub/y.log", "log\n");
    write(&ctx, "files/sub/b", "b\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox:test\nRUN ln -s /etc /linked\n\
         COPY --exclude=*.log --exclude=**/*.log files/ /f/\n\
         COPY --parents files/a files/sub/b /p/\n\
         COPY --link files/a /linked/a\n",
    );
    Builder::new(&store).build(&opts(&ctx, "cp:1")).unwrap();
    let out = unpacked(&store, "cp:1", &tmp.path().join("out"));
    assert!(out.join("f/a").is_file() && out.join("f/sub/b").is_file());
    assert!(!out.join("f/x.log").exists() && !out.join("f/sub/y.log").exists(), "excluded");
    assert!(out.join("p/files/a").is_file() && out.join("p/files/sub/b").is_file(), "parents kept");
    // The --link layer carries /linked as a directory over the symlink.
    assert!(out.join("linked").is_dir() && !out.join("linked").is_symlink());
    assert!(out.join("linked/a").is_file() && !out.join("etc/a").exists(), "the symlink was not followed");
}

/// `RUN --mount=type=bind` from an earlier stage and from an image, a
/// writable bind whose writes are thrown away, and the bound content in the
/// step's cache key (a changed file reruns the step); a source that leaves
/// its tree or goes through a symlink is refused by line.
#[test]
fn run_binds_from_stages_images_and_read_write() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "files/a", "one\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox:test AS build\n\
         RUN mkdir /out && echo built > /out/file && ln -s /etc /out/link\n\
         FROM busybox:test\n\
         RUN --mount=type=bind,from=build,source=/out,target=/mnt cat /mnt/file > /from-stage\n\
         RUN --mount=type=bind,from=busybox:test,source=/bin,target=/b test -x /b/busybox && touch /from-image\n\
         RUN --mount=type=bind,source=files,target=/src,rw sh -c 'echo scribble > /src/new && cat /src/a > /ctx-copy'\n",
    );
    let first = Builder::new(&store).build(&opts(&ctx, "binds:1")).unwrap();
    let out = unpacked(&store, "binds:1", &tmp.path().join("one"));
    assert_eq!(std::fs::read_to_string(out.join("from-stage")).unwrap(), "built\n");
    assert!(out.join("from-image").is_file());
    assert_eq!(std::fs::read_to_string(out.join("ctx-copy")).unwrap(), "one\n");
    assert!(!ctx.join("files/new").exists(), "a writable bind wrote into the context");
    for gone in ["mnt", "b", "src"] {
        assert!(!out.join(gone).exists(), "{gone}: a mount point left in the image");
    }
    // Unchanged: all cached. A changed bound file: that step runs again.
    let again = Builder::new(&store).build(&opts(&ctx, "binds:2")).unwrap();
    assert!(again.steps.iter().all(|s| s.cached), "{:?}", again.steps);
    write(&ctx, "files/a", "two\n");
    let changed = Builder::new(&store).build(&opts(&ctx, "binds:3")).unwrap();
    assert_ne!(changed.image.digest, first.image.digest);
    let out = unpacked(&store, "binds:3", &tmp.path().join("three"));
    assert_eq!(std::fs::read_to_string(out.join("ctx-copy")).unwrap(), "two\n");

    // A source through a symlink of the stage, and one leaving it: refused by line.
    for (line, source) in [("/out/link/passwd", "through a symlink"), ("/../..", "leaves")] {
        write(
            &ctx,
            "Dockerfile",
            &format!(
                "FROM busybox:test AS build\nRUN mkdir /out && ln -s /etc /out/link\nFROM busybox:test\n\
                 RUN --mount=type=bind,from=build,source={line},target=/x cat /x\n"
            ),
        );
        let err = Builder::new(&store).build(&opts(&ctx, "bad:1")).unwrap_err().to_string();
        assert!(err.contains("Dockerfile:4") && err.contains(source), "{err}");
    }
}

/// A client of the SSH agent protocol, static so it runs in busybox: asks
/// for the agent's identities and prints how many there are.
const AGENT_PROBE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
    const char *p = getenv("SSH_AUTH_SOCK");
    if (!p) return 2;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, p, sizeof a.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) return 3;
    unsigned char req[5] = {0, 0, 0, 1, 11}; /* SSH2_AGENTC_REQUEST_IDENTITIES */
    if (write(fd, req, 5) != 5) return 4;
    unsigned char h[9];
    size_t n = 0;
    while (n < 9) { ssize_t k = read(fd, h + n, 9 - n); if (k <= 0) return 5; n += k; }
    if (h[4] != 12) return 6; /* SSH2_AGENT_IDENTITIES_ANSWER */
    printf("%u\n", (unsigned)((h[5] << 24) | (h[6] << 16) | (h[7] << 8) | h[8]));
    return 0;
}
"#;

/// `RUN --mount=type=ssh`: the step talks to the build's SSH agent through
/// a socket of its own at BuildKit's default path (`SSH_AUTH_SOCK` naming
/// it), with the mode asked for; nothing of it stays in the image; a
/// required agent not given is an error naming the line.
#[test]
fn run_ssh_mounts_forward_the_agent() {
    for tool in ["ssh-agent", "ssh-add", "ssh-keygen", "gcc"] {
        cargohold_testkit::require(tool);
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "agent.c", AGENT_PROBE);
    run(Command::new("gcc").args(["-static", "-O1", "-o"]).arg(ctx.join("agent-probe")).arg(ctx.join("agent.c")));
    // An agent holding one key.
    let sock = tmp.path().join("agent.sock");
    let mut agent =
        Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).stdout(std::process::Stdio::null()).spawn().unwrap();
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let key = tmp.path().join("key");
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key));
    run(Command::new("ssh-add").arg("-q").arg(&key).env("SSH_AUTH_SOCK", &sock));

    write(
        &ctx,
        "Dockerfile",
        "FROM busybox:test\nCOPY agent-probe /agent-probe\n\
         RUN --mount=type=ssh,mode=0660 sh -c 'test \"$SSH_AUTH_SOCK\" = /run/buildkit/ssh_agent.0 && \
         stat -c %a \"$SSH_AUTH_SOCK\" > /mode && /agent-probe > /identities'\n\
         RUN --mount=type=ssh,id=work,target=/work.sock,required /agent-probe > /work-identities\n",
    );
    let mut o = opts(&ctx, "ssh:1");
    o.ssh = vec![("default".into(), sock.clone()), ("work".into(), sock.clone())];
    let built = Builder::new(&store).build(&o);
    // A required agent not given: an error naming the line.
    let mut o = opts(&ctx, "ssh:2");
    o.no_cache = true;
    o.ssh = vec![("default".into(), sock.clone())];
    let missing = Builder::new(&store).build(&o);
    let _ = agent.kill();
    let _ = agent.wait();
    built.unwrap();
    let err = missing.unwrap_err().to_string();
    assert!(err.contains("Dockerfile:4") && err.contains("ssh agent work is required"), "{err}");
    let out = unpacked(&store, "ssh:1", &tmp.path().join("one"));
    assert_eq!(std::fs::read_to_string(out.join("identities")).unwrap().trim(), "1");
    assert_eq!(std::fs::read_to_string(out.join("work-identities")).unwrap().trim(), "1");
    assert_eq!(std::fs::read_to_string(out.join("mode")).unwrap().trim(), "660");
    assert!(!out.join("run/buildkit").exists() && !out.join("work.sock").exists(), "a mount point left in the image");
    let img = store.resolve("ssh:1").unwrap();
    let env = store.details(&img.descriptor, None).unwrap().config.config.and_then(|c| c.env).unwrap_or_default();
    assert!(!env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK")), "{env:?}");
}
