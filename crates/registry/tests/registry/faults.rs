//! Faults injected by a proxy: connections cut mid-blob (resumed with Range),
//! slow answers (timeouts, retried), 416 on an upload chunk (resynchronised).
//! Whatever fails leaves the store as it was.

use std::time::Duration;

use cargohold_image_core::{CopyOptions, NoProgress, Reference, Store, copy};
use cargohold_registry::{ClientOptions, Registry};

use cargohold_testkit::*;

use crate::flows::push_layout;

fn biggest_layer(store: &Store, r: &Reference) -> cargohold_image_core::Descriptor {
    let img = store.resolve(&r.to_string()).unwrap();
    let layers = store.details(&img.descriptor, None).unwrap().image.layers;
    layers.into_iter().max_by_key(|l| l.size).unwrap()
}

#[test]
fn a_connection_cut_mid_blob_resumes_with_range() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let direct: Reference = format!("{}/cut/app:1", r.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &direct);
    let mut local = store.dest(Some(&direct)).unwrap();
    copy(&mut reg.source(&direct), &mut local, &CopyOptions::default(), &NoProgress).unwrap();
    let big = biggest_layer(&store, &direct);
    assert!(big.size > 300 << 10, "the test needs a layer of some size");

    // On the pooled connections, then on a connection of its own (read on
    // the thread that writes it), alike:
    for (own, name) in [(u64::MAX, "pooled"), (0, "own")] {
        let reg = Registry::new(ClientOptions { own_connection_size: own, ..ClientOptions::default() }).unwrap();
        // Cut twice, after 100 KiB and then again: the download resumes each time.
        let get_big = format!("GET /v2/cut/app/blobs/{}", big.digest);
        let proxy = fault_proxy(&r.addr, vec![Fault::cut(&get_big, 100 << 10, 2)]);
        let via: Reference = format!("{}/cut/app:1", proxy.addr).parse().unwrap();
        let fresh = Store::open(t.path().join(format!("fresh-{name}"))).unwrap();
        let pulled = cargohold_registry::pull(&reg, &via, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap();
        assert_eq!(pulled.manifest.digest, pushed.manifest.digest);
        let seen = proxy.seen.lock().unwrap().clone();
        let gets: Vec<&String> = seen.iter().filter(|h| h.starts_with(&get_big)).collect();
        assert_eq!(gets.len(), 3, "{name}: {gets:?}");
        assert!(!gets[0].to_ascii_lowercase().contains("range:"));
        assert!(gets[1].to_ascii_lowercase().contains("range: bytes=102400-"), "{}", gets[1]);
        assert!(gets[2].to_ascii_lowercase().contains("range: bytes=204800-"), "{}", gets[2]);
        // The blob as stored is whole and verified.
        let stored = std::fs::read(fresh.layout().root().join("blobs/sha256").join(big.digest.hex())).unwrap();
        assert_eq!(cargohold_image_core::Digest::sha256_of(&stored), big.digest);

        // Cut every time before any byte: a clear error naming the blob after
        // the retries, the store untouched.
        let hopeless = fault_proxy(&r.addr, vec![Fault::cut(&get_big, 0, 1000)]);
        let via: Reference = format!("{}/cut/app:1", hopeless.addr).parse().unwrap();
        let other = Store::open(t.path().join(format!("other-{name}"))).unwrap();
        let err = cargohold_registry::pull(&reg, &via, &other, &CopyOptions::default(), 4, &NoProgress).unwrap_err();
        assert!(err.to_string().contains(big.digest.as_str()), "{name}: {err}");
        assert!(other.list().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(other.layout().root().join("blobs/sha256")).unwrap().count(), 0);
    }
}

#[test]
fn slow_answers_time_out_and_are_retried() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let direct: Reference = format!("{}/slow/app:1", r.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &direct);

    let impatient =
        Registry::new(ClientOptions { timeout: Duration::from_millis(700), ..ClientOptions::default() }).unwrap();
    let proxy = fault_proxy(&r.addr, vec![Fault::delay("GET /v2/slow/app/manifests/1", Duration::from_secs(3), 1)]);
    let via: Reference = format!("{}/slow/app:1", proxy.addr).parse().unwrap();
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let pulled = cargohold_registry::pull(&impatient, &via, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest, pushed.manifest.digest);

    // Always slow: after the retries, an error that says what timed out.
    let stuck = fault_proxy(&r.addr, vec![Fault::delay("/manifests/", Duration::from_secs(3), 1000)]);
    let via: Reference = format!("{}/slow/app:1", stuck.addr).parse().unwrap();
    let other = Store::open(t.path().join("other")).unwrap();
    let err = cargohold_registry::pull(&impatient, &via, &other, &CopyOptions::default(), 4, &NoProgress).unwrap_err();
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(msg.contains(&stuck.addr) && msg.to_lowercase().contains("timed out"), "{msg}");
    assert!(other.list().unwrap().is_empty());
}

#[test]
fn a_416_on_an_upload_chunk_resynchronises() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let proxy = fault_proxy(&r.addr, vec![Fault::status("PATCH /v2/resync/app/blobs/uploads/", 416, None, 2)]);
    // 64 KiB chunks: the larger layer goes up in several PATCHes.
    let reg = Registry::new(ClientOptions { chunk_size: 64 << 10, ..ClientOptions::default() }).unwrap();
    let target: Reference = format!("{}/resync/app:1", proxy.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &target);
    let seen = proxy.seen.lock().unwrap().clone();
    let status_queries = seen.iter().filter(|h| h.starts_with("GET /v2/resync/app/blobs/uploads/")).count();
    assert_eq!(status_queries, 2, "each 416 asks for the upload's status: {seen:?}");
    // What arrived is intact: skopeo reads it, and so do we.
    let direct: Reference = format!("{}/resync/app:1", r.addr).parse().unwrap();
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let pulled = cargohold_registry::pull(&reg, &direct, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest, pushed.manifest.digest);
    run(skopeo(t.path()).args(["inspect", "--tls-verify=false"]).arg(format!("docker://{direct}")));
}

#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    let blob = b"layer bytes kept in blob storage".to_vec();
    let digest = cargohold_image_core::Digest::sha256_of(&blob);
    let body = blob.clone();
    let (storage, storage_seen) = canned_server(move |_| {
        let mut r =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(&body);
        r
    });
    let target = format!("http://{storage}/bucket/{}", digest.hex());
    let (registry, registry_seen) = canned_server(move |head| {
        let authorized = head.to_ascii_lowercase().contains("authorization: basic");
        if !authorized {
            return b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
        }
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    });
    let reg = Registry::new(ClientOptions {
        credentials: Some(cargohold_registry::Credentials::new("alice", "s3cret")),
        ..ClientOptions::default()
    })
    .unwrap();
    let desc = cargohold_image_core::Descriptor::new(
        cargohold_image_core::media_type::OCI_LAYER_GZIP,
        digest.clone(),
        blob.len() as u64,
    );
    let mut src = reg.source(&format!("{registry}/team/app:1").parse().unwrap());
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut cargohold_image_core::ImageSource::blob(&mut src, &desc).unwrap(), &mut got)
        .unwrap();
    assert_eq!(got, blob, "the redirect to blob storage was followed");
    assert!(registry_seen.lock().unwrap().iter().any(|h| h.to_ascii_lowercase().contains("authorization: basic")));
    let at_storage = storage_seen.lock().unwrap().clone();
    assert_eq!(at_storage.len(), 1);
    assert!(!at_storage[0].to_ascii_lowercase().contains("authorization"), "credentials leaked: {}", at_storage[0]);
}

/// A hostile registry cannot make the client hold what it sends: a tag list
/// page, a token response and a manifest past their caps are errors naming
/// the URL (with or without a Content-Length), an error body is cut short.
#[test]
fn hostile_bodies_are_capped() {
    let huge = 20usize << 20;
    let (addr, _) = canned_server(move |head| {
        let first = head.lines().next().unwrap_or_default().to_owned();
        let flood = |announce: bool| {
            let mut r = if announce {
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {huge}\r\nConnection: close\r\n\r\n")
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".to_owned()
            }
            .into_bytes();
            r.extend_from_slice(b"{\"tags\":[\"");
            r.resize(huge, b'a');
            r
        };
        if first.contains("/token") {
            flood(false)
        } else if first.contains("/needs-token/") && !head.to_ascii_lowercase().contains("authorization:") {
            format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"s\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                head.lines().find_map(|l| l.strip_prefix("Host: ").or_else(|| l.strip_prefix("host: "))).unwrap_or_default()
            )
            .into_bytes()
        } else if first.contains("/tags/list") {
            flood(first.contains("announced"))
        } else {
            let mut r = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n".to_vec();
            r.resize(huge, b'e');
            r
        }
    });
    let reg = Registry::new(ClientOptions::default()).unwrap();
    for repo in ["silent", "announced"] {
        let err = reg.tags(&format!("{addr}/{repo}/app").parse().unwrap()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(&addr) && text.contains("tags/list"), "{text}");
        assert!(matches!(err, cargohold_registry::Error::TooLarge { .. }), "{text}");
    }
    let err = reg.tags(&format!("{addr}/needs-token/app").parse().unwrap()).unwrap_err();
    assert!(format!("{err:#}").contains("/token"), "{err:#}");
    let err = reg.source(&format!("{addr}/gone/app:1").parse().unwrap());
    let mut src = err;
    let e = cargohold_image_core::ImageSource::top_manifest(&mut src).unwrap_err();
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        text = format!("{text}: {c}");
        cur = c.source();
    }
    assert!(text.contains("404") && text.len() < 2000, "an error body is cut short: {text}");
}

/// A pull asks the registry for the manifest once, the config once and
/// each layer once (resolving the image and copying it share what was read).
#[test]
fn a_pull_fetches_each_thing_once() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let direct: Reference = format!("{}/once/app:1", r.addr).parse().unwrap();
    push_layout(&reg, &layout, &store, &direct);
    let proxy = fault_proxy(&r.addr, Vec::new());
    let via: Reference = format!("{}/once/app:1", proxy.addr).parse().unwrap();
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let pulled = cargohold_registry::pull(&reg, &via, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap();
    let layers = fresh.details(&pulled.manifest, None).unwrap().image.layers.len();
    let seen = proxy.seen.lock().unwrap().clone();
    let gets: Vec<&String> = seen.iter().filter(|h| h.starts_with("GET /v2/once/")).collect();
    let manifests = gets.iter().filter(|h| h.contains("/manifests/")).count();
    let blobs = gets.iter().filter(|h| h.contains("/blobs/")).count();
    assert_eq!(manifests, 1, "{seen:#?}");
    assert_eq!(blobs, layers + 1, "the config and each layer once: {seen:#?}");
}

/// A pull resolves the image once: one manifest request, one request per
/// blob (config and each layer), nothing asked twice; a second pull of what
/// the store holds reads the manifest and config only.
#[test]
fn a_pull_asks_for_each_thing_once() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let direct: Reference = format!("{}/count/app:1", r.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &direct);

    let proxy = fault_proxy(&r.addr, Vec::new());
    let via: Reference = format!("{}/count/app:1", proxy.addr).parse().unwrap();
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let pulled = cargohold_registry::pull(&reg, &via, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(pulled.manifest.digest, pushed.manifest.digest);
    let layers = fresh.details(&fresh.resolve(&via.to_string()).unwrap().descriptor, None).unwrap().image.layers;
    assert_eq!(pulled.blobs_copied, layers.len());
    let lines = |p: &FaultProxy| -> Vec<String> {
        let seen = p.seen.lock().unwrap();
        let lines = seen.iter().map(|h| h.lines().next().unwrap_or_default().to_owned());
        lines.filter(|l| l != "GET /v2/ HTTP/1.1").collect()
    };
    let asked = lines(&proxy);
    assert_eq!(asked.len(), 2 + layers.len(), "{asked:#?}");
    assert_eq!(asked.iter().filter(|l| l.starts_with("GET /v2/count/app/manifests/1 ")).count(), 1, "{asked:#?}");
    for l in &layers {
        let get = format!("GET /v2/count/app/blobs/{} ", l.digest);
        assert_eq!(asked.iter().filter(|a| a.starts_with(&get)).count(), 1, "{asked:#?}");
    }

    // Again, into the same store: every layer is there.
    let again_proxy = fault_proxy(&r.addr, Vec::new());
    let via: Reference = format!("{}/count/app:1", again_proxy.addr).parse().unwrap();
    let again = cargohold_registry::pull(&reg, &via, &fresh, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!((again.blobs_copied, again.blobs_skipped), (0, layers.len()));
    let asked = lines(&again_proxy);
    assert_eq!(asked.len(), 2, "{asked:#?}");

    // A push checks for each blob once (then sends it), config included.
    let push_proxy = fault_proxy(&r.addr, Vec::new());
    let to: Reference = format!("{}/count/copy:1", push_proxy.addr).parse().unwrap();
    let src = fresh.source(&via.to_string()).unwrap();
    let pushed = cargohold_registry::push(&reg, &src, &to, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert_eq!(pushed.blobs_copied, layers.len());
    let asked = lines(&push_proxy);
    let config = fresh.details(&fresh.resolve(&via.to_string()).unwrap().descriptor, None).unwrap().image.config;
    for d in layers.iter().map(|l| &l.digest).chain([&config.digest]) {
        let head = format!("HEAD /v2/count/copy/blobs/{d} ");
        assert_eq!(asked.iter().filter(|a| a.starts_with(&head)).count(), 1, "{d}: {asked:#?}");
    }
}
