//! Push, pull, tags and auth against a real registry; skopeo both ways.

use cargohold_image_core::{CopyOptions, ImageLocation, NoProgress, Reference, Store, copy, open_source};
use cargohold_registry::{ClientOptions, Credentials, Registry};

use cargohold_testkit::*;

/// Pushes the `v1` image of an OCI layout to `target` with `copy`.
pub fn push_layout(
    reg: &Registry,
    layout: &std::path::Path,
    store: &Store,
    target: &Reference,
) -> cargohold_image_core::CopyReport {
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap(), store).unwrap();
    copy(src.as_mut(), &mut reg.dest(target), &CopyOptions::default(), &NoProgress).unwrap()
}

#[test]
fn push_then_pull_round_trips_bit_identically_with_chunked_uploads() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    // 1 MiB chunks: the 9 MB layer goes up in PATCHes.
    let reg = Registry::new(ClientOptions { chunk_size: 1 << 20, ..ClientOptions::default() }).unwrap();
    let target: Reference = format!("{}/team/app:1", r.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &target);
    assert_eq!(pushed.blobs_copied, 2);
    // Pushing again sends no layer.
    let again = push_layout(&reg, &layout, &store, &target);
    assert_eq!((again.blobs_copied, again.blobs_skipped), (0, 2));

    let mut dst = store.dest(Some(&target)).unwrap();
    let pulled = copy(&mut reg.source(&target), &mut dst, &CopyOptions::default(), &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest, pushed.manifest.digest, "same manifest digest both ways");
    let stored = store.resolve(&target.to_string()).unwrap();
    assert_eq!(stored.descriptor.digest, pushed.manifest.digest);

    // skopeo reads what we pushed.
    let out = run(skopeo(t.path()).args(["inspect", "--tls-verify=false"]).arg(format!("docker://{target}")));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], pushed.manifest.digest.to_string());
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
}

#[test]
fn we_pull_what_skopeo_pushed() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let target = format!("{}/peer/img:2", r.addr);
    run(skopeo(t.path())
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{target}")));
    let digest = run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{target}")));
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let reference: Reference = target.parse().unwrap();
    let mut dst = store.dest(Some(&reference)).unwrap();
    let pulled = copy(&mut reg.source(&reference), &mut dst, &CopyOptions::default(), &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest.to_string(), digest.trim());
    // Pulling by digest works too, and a wrong digest is refused.
    let by_digest = reference.with_digest(pulled.manifest.digest.clone());
    let mut src = reg.source(&by_digest);
    assert_eq!(cargohold_image_core::ImageSource::top_manifest(&mut src).unwrap().digest, pulled.manifest.digest);
}

#[test]
fn tags_paginate_past_one_hundred() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let base: Reference = format!("{}/many/tags:t000", r.addr).parse().unwrap();
    let report = push_layout(&reg, &layout, &store, &base);
    let manifest_bytes = {
        let mut src = reg.source(&base);
        cargohold_image_core::ImageSource::top_manifest(&mut src).unwrap()
    };
    assert_eq!(manifest_bytes.digest, report.manifest.digest);
    for i in 1..130 {
        reg.block_on(reg.client().put_manifest(&r.addr, "many/tags", &format!("t{i:03}"), &manifest_bytes)).unwrap();
    }
    let mut tags = reg.tags(&base).unwrap();
    tags.sort();
    assert_eq!(tags.len(), 130);
    assert_eq!(tags.first().unwrap(), "t000");
    assert_eq!(tags.last().unwrap(), "t129");

    // A registry (here a proxy) that sends no Link header: `last=` carries on.
    let proxy = fault_proxy(&r.addr, vec![Fault::strip_link("/tags/list", 100)]);
    let via: Reference = format!("{}/many/tags", proxy.addr).parse().unwrap();
    let mut again = reg.tags(&via).unwrap();
    again.sort();
    assert_eq!(again, tags);
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|h| h.starts_with("GET /v2/many/tags/tags/list?n=100&last=")), "{seen:?}");
}

#[test]
fn basic_auth_from_options_and_from_an_auth_file() {
    let r = TestRegistry::start_basic("alice", "s3cret");
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let target: Reference = format!("{}/private/app:1", r.addr).parse().unwrap();

    // Without credentials: refused, naming the registry.
    let anonymous = Registry::new(ClientOptions { credentials: None, ..ClientOptions::default() }).unwrap();
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap(), &store).unwrap();
    let err = copy(src.as_mut(), &mut anonymous.dest(&target), &CopyOptions::default(), &NoProgress).unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default());
    assert!(msg.contains(&r.addr), "{msg}");

    let creds = Credentials { username: "alice".into(), password: "s3cret".into() };
    let reg = Registry::new(ClientOptions { credentials: Some(creds), ..ClientOptions::default() }).unwrap();
    let pushed = push_layout(&reg, &layout, &store, &target);
    let mut dst = store.dest(Some(&target)).unwrap();
    let pulled = copy(&mut reg.source(&target), &mut dst, &CopyOptions::default(), &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest, pushed.manifest.digest);
}

#[test]
fn parallel_pull_stages_layers_and_publishes_all_at_once() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let target: Reference = format!("{}/par/app:1", r.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &target);

    let other = Store::open(t.path().join("other")).unwrap();
    let first = cargohold_registry::pull(&reg, &target, &other, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(first.manifest.digest, pushed.manifest.digest);
    // The layers were downloaded in parallel, adopted, and counted as fetched.
    assert_eq!((first.blobs_copied, first.blobs_skipped), (2, 0));
    assert_eq!(other.resolve(&target.to_string()).unwrap().descriptor.digest, pushed.manifest.digest);
    let again = cargohold_registry::pull(&reg, &target, &other, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(again.manifest.digest, pushed.manifest.digest);
    // Each layer on a connection of its own, read on the thread that hashes
    // and writes it: the same image.
    let own = Registry::new(ClientOptions { own_connection_size: 0, ..ClientOptions::default() }).unwrap();
    let good = Store::open(t.path().join("good-own")).unwrap();
    let pulled = cargohold_registry::pull(&own, &target, &good, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!((&pulled.manifest.digest, pulled.blobs_copied), (&pushed.manifest.digest, 2));

    // A registry that serves a corrupted layer: nothing enters the store.
    let victim: Reference = format!("{}/par/bad:1", r.addr).parse().unwrap();
    push_layout(&reg, &layout, &store, &victim);
    let data = r.data_dir();
    let layer = &first_layer_digest(&other, &target);
    let blob = find_blob(&data, layer.hex()).expect("the registry stores the layer");
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let err = cargohold_registry::pull(&reg, &victim, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap_err();
    assert!(err.to_string().contains(layer.as_str()), "{err}");
    assert!(fresh.list().unwrap().is_empty());
    let blobs = std::fs::read_dir(fresh.layout().root().join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 0, "no blob of a failed pull is visible");

    // The same through connections of their own (each layer read on the
    // thread that hashes and writes it): refused, nothing of it stored.
    let fresh = Store::open(t.path().join("fresh-own")).unwrap();
    let err = cargohold_registry::pull(&own, &victim, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap_err();
    let msg = err.to_string() + &std::error::Error::source(&err).map(|s| format!(": {s}")).unwrap_or_default();
    assert!(msg.contains(layer.as_str()) && msg.contains(&r.addr) && msg.contains("digest mismatch"), "{msg}");
    assert!(fresh.list().unwrap().is_empty());
    let blobs = std::fs::read_dir(fresh.layout().root().join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 0, "no blob of a failed pull is visible");
}

/// What a copy reported, per blob size: starts, progress values, ends.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<(&'static str, u64, u64)>>);

impl cargohold_image_core::Progress for Recorded {
    fn blob_started(&self, desc: &cargohold_image_core::Descriptor) {
        self.0.lock().unwrap().push(("started", desc.size, 0));
    }
    fn blob_progress(&self, desc: &cargohold_image_core::Descriptor, done: u64) {
        self.0.lock().unwrap().push(("progress", desc.size, done));
    }
    fn blob_done(&self, desc: &cargohold_image_core::Descriptor) {
        self.0.lock().unwrap().push(("done", desc.size, 0));
    }
}

impl Recorded {
    /// The blob of `size` started once, moved forward (some of the way, then
    /// all of it) and ended once.
    fn check(&self, size: u64, how: &str) {
        let all = self.0.lock().unwrap();
        let of: Vec<&(&str, u64, u64)> = all.iter().filter(|e| e.1 == size).collect();
        assert_eq!(of.iter().filter(|e| e.0 == "started").count(), 1, "{how}: {of:?}");
        assert_eq!(of.last().map(|e| e.0), Some("done"), "{how}: {of:?}");
        let done: Vec<u64> = of.iter().filter(|e| e.0 == "progress").map(|e| e.2).collect();
        assert!(done.windows(2).all(|w| w[0] <= w[1]), "{how}: {done:?}");
        assert_eq!(done.last(), Some(&size), "{how}: {done:?}");
        assert!(done.iter().any(|&d| d > 0 && d < size), "{how}: reported on the way: {done:?}");
    }
}

fn pushed_layer_sizes(store: &Store, manifest: &cargohold_image_core::Descriptor) -> Vec<u64> {
    store.details(manifest, None).unwrap().image.layers.iter().map(|l| l.size).collect()
}

fn first_layer_digest(store: &Store, r: &Reference) -> cargohold_image_core::Digest {
    let img = store.resolve(&r.to_string()).unwrap();
    store.details(&img.descriptor, None).unwrap().image.layers[0].digest.clone()
}

/// distribution stores a blob at `.../blobs/sha256/<xx>/<hex>/data`.
fn find_blob(dir: &std::path::Path, hex: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.is_dir() {
            if let Some(found) = find_blob(&p, hex) {
                return Some(found);
            }
        } else if p.file_name().is_some_and(|n| n == "data")
            && p.parent().is_some_and(|d| d.file_name().is_some_and(|n| n == hex))
        {
            return Some(p);
        }
    }
    None
}

#[test]
fn retries_5xx_and_429_with_retry_after() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let direct: Reference = format!("{}/flaky/app:1", r.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &direct);

    let proxy = fault_proxy(
        &r.addr,
        vec![
            Fault::status("/manifests/", 500, None, 2),
            Fault::status("/blobs/sha256:", 429, Some(1), 1),
            Fault::status("/blobs/sha256:", 503, None, 1),
        ],
    );
    let via: Reference = format!("{}/flaky/app:1", proxy.addr).parse().unwrap();
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let pulled = cargohold_registry::pull(&reg, &via, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest, pushed.manifest.digest);
    let seen = proxy.seen.lock().unwrap().clone();
    let manifest_gets = seen.iter().filter(|l| l.contains("/manifests/1")).count();
    assert!(manifest_gets >= 3, "two 500s then success: {seen:?}");

    // A registry that keeps failing: a clear error after the retries, store unchanged.
    let broken = fault_proxy(&r.addr, vec![Fault::status("/manifests/", 500, None, 100)]);
    let dead: Reference = format!("{}/flaky/app:1", broken.addr).parse().unwrap();
    let other = Store::open(t.path().join("other")).unwrap();
    let err = cargohold_registry::pull(&reg, &dead, &other, &CopyOptions::default(), 4, &NoProgress).unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default());
    assert!(msg.contains("500") && msg.contains(&broken.addr), "{msg}");
    assert_eq!(broken.seen.lock().unwrap().len(), cargohold_registry::MAX_ATTEMPTS as usize);
    assert!(other.list().unwrap().is_empty());
}

/// A program's own tokio runtime: the async client on it, and the blocking
/// facade called from async code and dropped there, without a panic.
#[tokio::test(flavor = "current_thread")]
async fn embedded_in_a_programs_own_tokio_runtime() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let target: Reference = format!("{}/team/app:1", r.addr).parse().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    push_layout(&reg, &layout, &store, &target);

    let client = cargohold_registry::RegistryClient::new(ClientOptions::default()).unwrap();
    assert_eq!(client.tags(target.registry(), target.repository()).await.unwrap(), ["1"]);
    let manifest = client.get_manifest(&target).await.unwrap();

    let other = Store::open(t.path().join("other")).unwrap();
    let pulled = cargohold_registry::pull(&reg, &target, &other, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest, manifest.digest);
    // The async transfers: the runtime keeps running while they move data.
    let third = Store::open(t.path().join("third")).unwrap();
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    };
    let pulled = reg.pull_async(target.clone(), third.clone(), CopyOptions::default(), 4).await.unwrap();
    assert_eq!(pulled.manifest.digest, manifest.digest);
    let copy_target: Reference = format!("{}/team/copy:1", r.addr).parse().unwrap();
    let pushed = reg
        .push_async(ImageLocation::Store(target.to_string()), third, copy_target.clone(), CopyOptions::default(), 4)
        .await
        .unwrap();
    assert_eq!(pushed.manifest.digest, manifest.digest);
    assert_eq!(client.tags(copy_target.registry(), copy_target.repository()).await.unwrap(), ["1"]);
    ticker.abort();
    assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) > 1, "the caller's runtime was not blocked");
    drop(reg);
}

/// The default upload: a large blob in one streamed request; a source that
/// does not verify aborts it, and the registry stores nothing of it.
#[test]
fn streamed_uploads_round_trip_and_a_corrupt_source_stores_nothing() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    // The reference base image: one 50 MB layer.
    let shared = reference_images(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let layout = t.path().join("layout");
    run(std::process::Command::new("cp").arg("-r").arg(&shared).arg(&layout));
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    assert_eq!(reg.client().chunk_size(), 0, "streamed by default");
    let target: Reference = format!("{}/stream/base:1", r.addr).parse().unwrap();
    let mut src =
        open_source(&ImageLocation::parse(&format!("oci:{}:base", layout.display())).unwrap(), &store).unwrap();
    let pushed = copy(src.as_mut(), &mut reg.dest(&target), &CopyOptions::default(), &NoProgress).unwrap();
    assert!(pushed.blobs_copied >= 1, "{pushed:?}");
    let out = run(skopeo(t.path())
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{target}")));
    assert_eq!(out.trim(), pushed.manifest.digest.to_string());
    let other = Store::open(t.path().join("other")).unwrap();
    let seen = Recorded::default();
    let pulled = cargohold_registry::pull(&reg, &target, &other, &CopyOptions::default(), 4, &seen).unwrap();
    assert_eq!(pulled.manifest.digest, pushed.manifest.digest);
    // Progress as the big layer moves, on its own connection and on the
    // pooled ones alike.
    let big_size = pushed_layer_sizes(&other, &pulled.manifest).into_iter().max().unwrap();
    seen.check(big_size, "own connection");
    let pooled = Registry::new(ClientOptions { own_connection_size: u64::MAX, ..ClientOptions::default() }).unwrap();
    let again = Store::open(t.path().join("again")).unwrap();
    let seen = Recorded::default();
    cargohold_registry::pull(&pooled, &target, &again, &CopyOptions::default(), 4, &seen).unwrap();
    seen.check(big_size, "pooled connections");

    // The big layer, corrupted in the layout (same size): the push fails
    // and the new repository has no such blob.
    let manifest = other.details(&pulled.manifest, None).unwrap();
    let big = manifest.image.layers.iter().max_by_key(|l| l.size).unwrap().clone();
    assert!(big.size > 4 << 20, "a layer large enough to stream: {}", big.size);
    let path = layout.join("blobs/sha256").join(big.digest.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let corrupt: Reference = format!("{}/corrupt/base:1", r.addr).parse().unwrap();
    let mut src =
        open_source(&ImageLocation::parse(&format!("oci:{}:base", layout.display())).unwrap(), &fresh).unwrap();
    let err = copy(src.as_mut(), &mut reg.dest(&corrupt), &CopyOptions::default(), &NoProgress)
        .expect_err("a corrupt layer is not pushed");
    assert!(!reg.block_on(reg.client().has_blob(&r.addr, "corrupt/base", &big.digest)).unwrap());
    // The registry refused it (we do not hash what we send: it does); the
    // source, read again, is named as the culprit, with what it holds.
    let msg = err.to_string() + &std::error::Error::source(&err).map(|s| format!(": {s}")).unwrap_or_default();
    assert!(
        msg.contains(&path.display().to_string())
            && msg.contains("digest mismatch")
            && msg.contains(big.digest.as_str()),
        "{msg}"
    );
}
