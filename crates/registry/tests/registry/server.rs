//! The registry server (`server` feature) against real clients: skopeo both
//! ways, our client (chunked pushes, mounts, pagination, delete, referrers),
//! and raw requests for the spec's error codes.

use std::sync::Arc;

use cargohold_image_core::{
    CopyOptions, Descriptor, Digest, ImageLocation, ImageManifest, NoProgress, RawManifest, Reference, Store,
    media_type as mt, open_source,
};
use cargohold_registry::server::{
    GcOptions, MIN_PART_SIZE, S3Driver, S3Options, ServerOptions, Storage, router, serve,
};
use cargohold_registry::{ClientOptions, Registry};
use cargohold_testkit::*;

use crate::flows::push_layout;

/// A server on a free loopback port, in a thread of its own, over `root`.
struct TestServer {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(root: &std::path::Path) -> Self {
        Self::with_storage(Storage::filesystem(root).unwrap())
    }

    fn with_storage(storage: Storage) -> Self {
        Self::with(storage, ServerOptions::default())
    }

    fn with(storage: Storage, opts: ServerOptions) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap().to_string()).unwrap();
                serve(listener, router(storage, opts), async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        TestServer { addr: addr_rx.recv().unwrap(), stop: Some(tx), thread: Some(thread) }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn skopeo_and_our_client_push_and_pull_bit_identically() {
    let t = tempfile::tempdir().unwrap();
    let srv = TestServer::start(&t.path().join("registry"));
    let layout = umoci_image(t.path());
    // skopeo pushes, we pull; we push (chunked), skopeo pulls.
    let target = format!("{}/team/app:1", srv.addr);
    run(skopeo(t.path())
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{target}")));
    let reg = Registry::new(ClientOptions { chunk_size: 32 << 10, ..ClientOptions::default() }).unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let r: Reference = target.parse().unwrap();
    let pulled = cargohold_registry::pull(&reg, &r, &store, &CopyOptions::default(), 4, &NoProgress).unwrap();
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap(), &store).unwrap();
    assert_eq!(pulled.manifest.digest, src.top_manifest().unwrap().digest, "the manifest as skopeo pushed it");

    let chunked: Reference = format!("{}/team/chunked:2", srv.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &chunked);
    let back = t.path().join("back");
    run(skopeo(t.path())
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{chunked}"))
        .arg(format!("oci:{}:2", back.display())));
    let mut again = open_source(&ImageLocation::parse(&format!("oci:{}:2", back.display())).unwrap(), &store).unwrap();
    assert_eq!(again.top_manifest().unwrap().digest, pushed.manifest.digest);

    // A mount into another repository sends no layer.
    let mounted: Reference = format!("{}/other/app:1", srv.addr).parse().unwrap();
    let report =
        cargohold_registry::push(&reg, &reg.source(&r), &mounted, &CopyOptions::default(), 4, &NoProgress).unwrap();
    assert!(report.blobs_mounted >= 1 && report.blobs_copied == 0, "{report:?}");
    let mut repos = reg.block_on(reg.client().catalog(&srv.addr)).unwrap();
    repos.sort();
    assert_eq!(repos, ["other/app", "team/app", "team/chunked"]);
}

#[test]
fn pagination_delete_and_referrers() {
    let t = tempfile::tempdir().unwrap();
    let srv = TestServer::start(&t.path().join("registry"));
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let client = reg.client();
    let first: Reference = format!("{}/many/app:t000", srv.addr).parse().unwrap();
    let pushed = push_layout(&reg, &layout, &store, &first);
    let raw = reg.block_on(client.get_manifest(&first)).unwrap();
    // 130 tags: past a page of 100.
    for i in 1..130 {
        reg.block_on(client.put_manifest(&srv.addr, "many/app", &format!("t{i:03}"), &raw)).unwrap();
    }
    let tags = reg.block_on(client.tags(&srv.addr, "many/app")).unwrap();
    assert_eq!(tags.len(), 130);
    assert_eq!(tags.first().map(String::as_str), Some("t000"));

    // A referrer (an SBOM-like artifact) with a subject.
    let empty = b"{}".to_vec();
    let empty_digest = Digest::sha256_of(&empty);
    let up = reg.block_on(client.start_upload(&srv.addr, "many/app")).unwrap();
    reg.block_on(client.finish_upload(up, &empty_digest, empty.clone())).unwrap();
    let mut artifact: ImageManifest = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": { "mediaType": mt::OCI_EMPTY, "digest": empty_digest.as_str(), "size": 2 },
        "layers": [{ "mediaType": mt::OCI_EMPTY, "digest": empty_digest.as_str(), "size": 2 }],
    }))
    .unwrap();
    artifact.subject = Some(Descriptor::new(mt::OCI_MANIFEST, pushed.manifest.digest.clone(), raw.bytes.len() as u64));
    let art = RawManifest::from_value(&artifact, mt::OCI_MANIFEST);
    let processed = reg.block_on(client.put_manifest(&srv.addr, "many/app", art.digest.as_str(), &art)).unwrap();
    assert!(processed, "the server answers with OCI-Subject");
    let list = reg
        .block_on(client.referrers(&srv.addr, "many/app", &pushed.manifest.digest, Some("application/spdx+json")))
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].digest, art.digest);
    let none =
        reg.block_on(client.referrers(&srv.addr, "many/app", &pushed.manifest.digest, Some("text/other"))).unwrap();
    assert!(none.is_empty());

    // Delete a tag, then the manifest (and every tag on it).
    reg.block_on(client.delete_manifest(&srv.addr, "many/app", "t005")).unwrap();
    assert_eq!(reg.block_on(client.tags(&srv.addr, "many/app")).unwrap().len(), 129);
    reg.block_on(client.delete_manifest(&srv.addr, "many/app", pushed.manifest.digest.as_str())).unwrap();
    assert!(reg.block_on(client.tags(&srv.addr, "many/app")).unwrap().is_empty());
    assert!(reg.block_on(client.head_manifest(&srv.addr, "many/app", "t001")).unwrap().is_none());
}

/// Bad input: the spec's codes and statuses, nothing stored, the server
/// keeps serving.
#[tokio::test(flavor = "current_thread")]
async fn bad_input_gets_the_specs_errors_and_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("registry");
    let srv = TestServer::start(&root);
    let http = reqwest::Client::new();
    let base = format!("http://{}", srv.addr);
    let code = |v: serde_json::Value| v["errors"][0]["code"].as_str().unwrap_or_default().to_owned();
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, headers, body)
    };

    // A malformed name.
    let (s, _, b) = send(http.get(format!("{base}/v2/Bad..Name/tags/list"))).await;
    assert_eq!((s, code(b)), (400, "NAME_INVALID".to_owned()));
    // An upload with the wrong digest: refused, the blob is not there.
    let (s, h, _) = send(http.post(format!("{base}/v2/x/app/blobs/uploads/"))).await;
    assert_eq!(s, 202);
    let location = h["location"].to_str().unwrap().to_owned();
    let wrong = Digest::sha256_of(b"something else");
    let (s, _, b) = send(http.put(format!("{base}{location}?digest={wrong}")).body("hello")).await;
    assert_eq!((s, code(b)), (400, "DIGEST_INVALID".to_owned()));
    let (s, _, _) = send(http.head(format!("{base}/v2/x/app/blobs/{wrong}"))).await;
    assert_eq!(s, 404);
    let right = Digest::sha256_of(b"hello");
    let (s, _, _) = send(http.head(format!("{base}/v2/x/app/blobs/{right}"))).await;
    assert_eq!(s, 404, "nothing of the refused upload was stored");
    // An unknown upload.
    let (s, _, b) =
        send(http.patch(format!("{base}/v2/x/app/blobs/uploads/0123456789abcdef0123456789abcdef")).body("x")).await;
    assert_eq!((s, code(b)), (404, "BLOB_UPLOAD_UNKNOWN".to_owned()));
    let (s, _, b) = send(http.patch(format!("{base}/v2/x/app/blobs/uploads/..%2F..%2Fetc")).body("x")).await;
    assert_eq!((s, code(b)), (404, "BLOB_UPLOAD_UNKNOWN".to_owned()));
    // An out-of-order chunk: 416 with the range held.
    let (_, h, _) = send(http.post(format!("{base}/v2/x/app/blobs/uploads/"))).await;
    let location = h["location"].to_str().unwrap().to_owned();
    let (s, _, _) = send(http.patch(format!("{base}{location}")).header("content-range", "0-4").body("hello")).await;
    assert_eq!(s, 202);
    let (s, h, _) = send(http.patch(format!("{base}{location}")).header("content-range", "9-11").body("abc")).await;
    assert_eq!(s, 416);
    assert_eq!(h["range"].to_str().unwrap(), "0-4");
    let (s, h, _) = send(http.get(format!("{base}{location}"))).await;
    assert_eq!((s, h["range"].to_str().unwrap()), (204, "0-4"));
    // A manifest naming blobs that are not there; one too large.
    let ghost = serde_json::json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": { "mediaType": mt::OCI_CONFIG, "digest": wrong.as_str(), "size": 14 },
        "layers": [],
    });
    let (s, _, b) = send(
        http.put(format!("{base}/v2/x/app/manifests/1"))
            .header("content-type", mt::OCI_MANIFEST)
            .body(ghost.to_string()),
    )
    .await;
    assert_eq!((s, code(b)), (400, "MANIFEST_BLOB_UNKNOWN".to_owned()));
    let (s, _, b) = send(
        http.put(format!("{base}/v2/x/app/manifests/1"))
            .header("content-type", mt::OCI_MANIFEST)
            .body(vec![b' '; 5 << 20]),
    )
    .await;
    assert_eq!((s, code(b)), (413, "SIZE_INVALID".to_owned()));
    let (s, _, b) = send(http.put(format!("{base}/v2/x/app/manifests/1")).body("not json")).await;
    assert_eq!((s, code(b)), (400, "MANIFEST_INVALID".to_owned()));
    let (s, _, b) = send(http.get(format!("{base}/v2/x/app/manifests/1"))).await;
    assert_eq!((s, code(b)), (404, "MANIFEST_UNKNOWN".to_owned()));
    // A blob Range past its end.
    let (_, h, _) = send(http.post(format!("{base}/v2/x/app/blobs/uploads/?digest={right}")).body("hello")).await;
    assert!(h["location"].to_str().unwrap().ends_with(right.as_str()));
    let resp = http.get(format!("{base}/v2/x/app/blobs/{right}")).header("range", "bytes=1-3").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(resp.text().await.unwrap(), "ell");
    let (s, _, _) = send(http.get(format!("{base}/v2/x/app/blobs/{right}")).header("range", "bytes=10-")).await;
    assert_eq!(s, 416);
    // Still serving.
    let (s, _, _) = send(http.get(format!("{base}/v2/"))).await;
    assert_eq!(s, 200);
}

/// Layers that name URLs (foreign, non-distributable: fetched from there,
/// not pushed) as distribution takes them: only URLs an allow pattern
/// matches and no deny pattern does, http(s) without a fragment; none with
/// no allow pattern. The config, and a layer without URLs, must be here.
#[tokio::test(flavor = "current_thread")]
async fn layer_urls_are_taken_only_as_allowed() {
    let t = tempfile::tempdir().unwrap();
    let rules = |allow: &[&str], deny: &[&str]| {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        cargohold_registry::server::LayerUrls::new(&owned(allow), &owned(deny)).unwrap()
    };
    let http = reqwest::Client::new();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = Digest::sha256_of(config);
    let elsewhere = Digest::sha256_of(b"a layer that lives elsewhere");
    let manifest = |layer: serde_json::Value, config: &Digest| {
        serde_json::json!({
            "schemaVersion": 2, "mediaType": mt::DOCKER_MANIFEST,
            "config": { "mediaType": mt::DOCKER_CONFIG, "digest": config.as_str(), "size": 82,
                        "urls": ["https://example.com/config"] },
            "layers": [layer],
        })
        .to_string()
    };
    let foreign = |urls: &[&str]| {
        serde_json::json!({ "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                            "digest": elsewhere.as_str(), "size": 28, "urls": urls })
    };
    for (i, (allow, deny, urls, taken)) in [
        (&[][..], &[][..], &["https://example.com/l.tgz"][..], false),
        (&[r"^https://example\.com/"], &[], &["https://example.com/l.tgz"], true),
        (&[r"^https://example\.com/"], &[], &["https://example.com/l.tgz", "https://other.org/l.tgz"], false),
        (&["^https?://"], &["other"], &["https://other.org/l.tgz"], false),
        (&["."], &[], &["ftp://example.com/l.tgz"], false),
        (&["."], &[], &["https://example.com/l.tgz#x"], false),
        (&["."], &[], &[], false),
    ]
    .into_iter()
    .enumerate()
    {
        let root = t.path().join(format!("r{i}"));
        let srv = TestServer::with(
            Storage::filesystem(&root).unwrap(),
            ServerOptions { layer_urls: rules(allow, deny), ..ServerOptions::default() },
        );
        let base = format!("http://{}", srv.addr);
        let put = http
            .post(format!("{base}/v2/x/app/blobs/uploads/?digest={config_digest}"))
            .body(config.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 201);
        let resp = http
            .put(format!("{base}/v2/x/app/manifests/1"))
            .header("content-type", mt::DOCKER_MANIFEST)
            .body(manifest(foreign(urls), &config_digest))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        let case = format!("allow {allow:?} deny {deny:?} urls {urls:?}: {status} {body}");
        if taken {
            assert_eq!(status, 201, "{case}");
        } else {
            assert_eq!(status, 400, "{case}");
            let code = if urls.is_empty() { "MANIFEST_BLOB_UNKNOWN" } else { "MANIFEST_INVALID" };
            assert!(body.contains(code), "{case}");
            let got = http.get(format!("{base}/v2/x/app/manifests/1")).send().await.unwrap();
            assert_eq!(got.status().as_u16(), 404, "nothing stored: {case}");
        }
    }
    // The config must be here whatever URLs it names.
    let srv = TestServer::with(
        Storage::filesystem(t.path().join("config")).unwrap(),
        ServerOptions { layer_urls: rules(&["."], &[]), ..ServerOptions::default() },
    );
    let resp = http
        .put(format!("http://{}/v2/x/app/manifests/1", srv.addr))
        .header("content-type", mt::DOCKER_MANIFEST)
        .body(manifest(foreign(&["https://example.com/l.tgz"]), &Digest::sha256_of(b"no such config")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("MANIFEST_BLOB_UNKNOWN"));
}

/// Request metrics count a blob pull until its body has gone out, as
/// distribution counts its handlers: in flight while the client has not
/// read it, its bytes sent and its time recorded when it has.
#[tokio::test(flavor = "current_thread")]
async fn metrics_count_a_pull_until_its_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = tempfile::tempdir().unwrap();
    let metrics = Arc::new(cargohold_registry::server::Metrics::new());
    let srv = TestServer::with(
        Storage::filesystem(t.path().join("r")).unwrap(),
        ServerOptions { metrics: Some(Arc::clone(&metrics)), ..ServerOptions::default() },
    );
    let blob: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&blob);
    let http = reqwest::Client::new();
    let put = http
        .post(format!("http://{}/v2/x/app/blobs/uploads/?digest={digest}", srv.addr))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    let line = |name: &str| {
        let text = metrics.render();
        text.lines().find(|l| l.starts_with(name)).map(str::to_owned).unwrap_or_default()
    };
    // A client that reads the head and stops: the pull is in flight.
    let mut conn = tokio::net::TcpStream::connect(&srv.addr).await.unwrap();
    conn.write_all(format!("GET /v2/x/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = conn.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        line(r#"registry_http_in_flight_requests{handler="blob"}"#),
        r#"registry_http_in_flight_requests{handler="blob"} 1"#
    );
    assert_eq!(line(r#"registry_http_requests_total{code="200",handler="blob""#), "");
    // It reads the rest: recorded, with every byte.
    let mut got = n;
    while got < blob.len() {
        let n = conn.read(&mut head).await.unwrap();
        assert!(n > 0, "the body ended early");
        got += n;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while line(r#"registry_http_in_flight_requests{handler="blob"}"#).ends_with(" 1") {
        assert!(std::time::Instant::now() < deadline, "still in flight");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        line(r#"registry_http_requests_total{code="200",handler="blob",method="get"}"#),
        r#"registry_http_requests_total{code="200",handler="blob",method="get"} 1"#
    );
    assert_eq!(
        line(r#"registry_http_response_size_bytes_sum{handler="blob"}"#),
        format!(r#"registry_http_response_size_bytes_sum{{handler="blob"}} {}"#, blob.len())
    );
    let seconds: f64 = line(r#"registry_http_request_duration_seconds_sum{handler="blob",method="get"}"#)
        .rsplit_once(' ')
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(seconds >= 0.2, "the time the body took counts: {seconds}");
}

/// Blobs in local files go out with `sendfile`: whole, in ranges across its
/// 1 MiB frames, pipelined on one HTTP/1 connection between small blobs
/// (sent as bytes) and headers, and over HTTP/2 (no sendfile there).
// Multi-threaded: the HTTP/2 client's connection task answers the server's
// shutdown while the test waits for the server to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blobs_are_sent_whole_in_ranges_and_pipelined() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = tempfile::tempdir().unwrap();
    let srv = TestServer::start(&t.path().join("registry"));
    let http = reqwest::Client::new();
    let base = format!("http://{}", srv.addr);
    let big = noise((3 << 20) + 12345, 7);
    let small = noise(1000, 8);
    let mut digests = Vec::new();
    for data in [&big, &small] {
        let d = Digest::sha256_of(data);
        let resp =
            http.post(format!("{base}/v2/x/app/blobs/uploads/?digest={d}")).body(data.clone()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        digests.push(d);
    }
    let (big_url, small_url) = (format!("/v2/x/app/blobs/{}", digests[0]), format!("/v2/x/app/blobs/{}", digests[1]));

    let whole = http.get(format!("{base}{big_url}")).send().await.unwrap().bytes().await.unwrap();
    assert!(whole[..] == big[..], "the whole blob");
    let resp = http.get(format!("{base}{big_url}")).header("range", "bytes=1000000-2200000").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    assert!(resp.bytes().await.unwrap()[..] == big[1_000_000..=2_200_000], "a range across frames");

    // Pipelined on one connection: big, small, a range of big, big again.
    let mut tcp = tokio::net::TcpStream::connect(&srv.addr).await.unwrap();
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    let requests = [
        get(&big_url, ""),
        get(&small_url, ""),
        get(&big_url, "Range: bytes=100-1048675\r\n"),
        get(&big_url, "Connection: close\r\n"),
    ]
    .concat();
    tcp.write_all(requests.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).await.unwrap();
    let mut rest = &got[..];
    for want in [&big[..], &small[..], &big[100..=1_048_675], &big[..]] {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
        let head = std::str::from_utf8(&rest[..end]).unwrap().to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .expect("a content-length")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(len, want.len(), "{head}");
        assert!(rest[end..end + len] == *want, "a pipelined body");
        rest = &rest[end + len..];
    }
    assert!(rest.is_empty());

    // HTTP/2 (cleartext, prior knowledge): the bytes, not markers.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let resp = h2.get(format!("{base}{big_url}")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert!(resp.bytes().await.unwrap()[..] == big[..], "the whole blob over HTTP/2");
}

/// S3 storage on a real object store (Swift's S3 API): two servers over one
/// bucket are one registry, uploads move between them mid-way, large blobs
/// go up as multipart uploads, and a wrong digest stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_storage_on_swift_two_servers_one_bucket() {
    let t = tempfile::tempdir().unwrap();
    let swift =
        tokio::task::spawn_blocking(|| Swift::start(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))).await.unwrap();
    swift.bucket("registry");
    let opts = S3Options {
        bucket: "registry".into(),
        endpoint: Some(swift.s3_endpoint.clone()),
        path_style: true,
        access_key: swift.access_key.clone(),
        secret_key: swift.secret_key.clone(),
        root: "site/one".into(),
        part_size: MIN_PART_SIZE,
        ..S3Options::default()
    };
    let storage = || Storage::new(Arc::new(S3Driver::new(&opts).unwrap()));
    let (a, b) = (TestServer::with_storage(storage()), TestServer::with_storage(storage()));

    // skopeo pushes to one server, and pulls from the other bit-identically.
    let layout = umoci_image(t.path());
    let (dir, la) = (t.path().to_owned(), layout.clone());
    let (addr_a, addr_b) = (a.addr.clone(), b.addr.clone());
    tokio::task::spawn_blocking(move || {
        run(skopeo(&dir)
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", la.display()))
            .arg(format!("docker://{addr_a}/team/app:1")));
        run(skopeo(&dir)
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{addr_b}/team/app:1"))
            .arg(format!("oci:{}:1", dir.join("back").display())));
    })
    .await
    .unwrap();
    let ours = std::fs::read_dir(layout.join("blobs/sha256")).unwrap().count();
    for e in std::fs::read_dir(t.path().join("back/blobs/sha256")).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            std::fs::read(e.path()).unwrap(),
            std::fs::read(layout.join("blobs/sha256").join(e.file_name())).unwrap()
        );
    }
    // Manifest, config and layers (the layout holds other images too).
    assert!((3..=ours).contains(&std::fs::read_dir(t.path().join("back/blobs/sha256")).unwrap().count()));

    // A chunked upload started on A, continued on B, finished on A: 12 MiB
    // in two chunks, so the blob goes up as a multipart upload.
    let http = reqwest::Client::new();
    let data: Vec<u8> = (0..12u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let d = Digest::sha256_of(&data);
    let resp = http.post(format!("http://{}/v2/team/big/blobs/uploads/", a.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let (first, second) = data.split_at(7 << 20);
    let resp = http
        .patch(format!("http://{}{location}", a.addr))
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["range"].to_str().unwrap()), (202, "0-7340031"));
    let resp = http.get(format!("http://{}{location}", b.addr)).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["range"].to_str().unwrap()), (204, "0-7340031"));
    let resp = http
        .patch(format!("http://{}{location}", b.addr))
        .header("content-range", format!("{}-{}", first.len(), data.len() - 1))
        .body(second.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // A wrong digest first: refused, and the upload (and nothing else) stays.
    let wrong = Digest::sha256_of(b"not it");
    let resp = http.put(format!("http://{}{location}?digest={wrong}", a.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http.head(format!("http://{}/v2/team/big/blobs/{wrong}", b.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    // That upload was cancelled with the refusal: start again, in one go.
    let resp = http
        .post(format!("http://{}/v2/team/big/blobs/uploads/?digest={d}", a.addr))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let got = http.get(format!("http://{}/v2/team/big/blobs/{d}", b.addr)).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap() == data, "B serves what A stored");
    let part = http
        .get(format!("http://{}/v2/team/big/blobs/{d}", b.addr))
        .header("range", "bytes=10485760-10485769")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &data[10 << 20..(10 << 20) + 10]);

    // The same, chunked across servers, in a second repository.
    let resp = http.post(format!("http://{}/v2/team/big2/blobs/uploads/", b.addr)).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    for (i, (server, chunk)) in [(&a, first), (&b, second)].into_iter().enumerate() {
        let start = if i == 0 { 0 } else { first.len() };
        let resp = http
            .patch(format!("http://{}{location}", server.addr))
            .header("content-range", format!("{start}-{}", start + chunk.len() - 1))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let resp = http.put(format!("http://{}{location}?digest={d}", a.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let got = http.get(format!("http://{}/v2/team/big2/blobs/{d}", a.addr)).send().await.unwrap();
    assert!(got.bytes().await.unwrap() == data);
    let leftovers: Vec<String> = swift.list("registry").into_iter().filter(|k| k.contains("/uploads/")).collect();
    assert!(leftovers.is_empty(), "finished uploads leave nothing: {leftovers:?}");

    // Tags and catalog agree on both; a delete on one is seen on the other.
    for srv in [&a, &b] {
        let cat: serde_json::Value =
            http.get(format!("http://{}/v2/_catalog", srv.addr)).send().await.unwrap().json().await.unwrap();
        assert_eq!(cat["repositories"], serde_json::json!(["team/app", "team/big", "team/big2"]));
    }
    let resp = http.delete(format!("http://{}/v2/team/big2/blobs/{d}", a.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let resp = http.head(format!("http://{}/v2/team/big2/blobs/{d}", b.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    // gc over the bucket: the blobs no manifest uses go (none young: min_age 0).
    let report =
        storage().gc(&GcOptions { delete_untagged: false, dry_run: false, min_age: Default::default() }).await.unwrap();
    assert_eq!(report.blobs_deleted, [d.to_string()], "{report:?}");
    assert_eq!(report.manifests_kept, 1);
    let resp = http.get(format!("http://{}/v2/team/app/manifests/1", b.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the image is whole after gc");
    drop((a, b));
}
