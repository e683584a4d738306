//! The server spread over threads of its own (`serve_with`): uploads sent
//! in uneven pieces (the receive mark never strands a body's tail), every
//! thread drains before the server ends, and dropping the server stops its
//! threads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cargohold_image_core::Digest;
use cargohold_registry::server::{Listening, RequestLogger, ServerOptions, Storage, router, serve_with};
use cargohold_testkit::{noise, thread_names};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The tests here count the process's serving threads: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The names of this process's threads that serve connections.
fn serving_threads() -> Vec<String> {
    thread_names(std::process::id(), "serve-")
}

/// Waits (up to 5 s) for the serving threads to be `want`.
async fn wait_for_serving_threads(want: &[&str]) {
    for _ in 0..100 {
        if serving_threads() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(serving_threads(), want);
}

/// The status and body of the one response on `tcp`.
async fn response(tcp: &mut tokio::net::TcpStream) -> (u16, Vec<u8>) {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut got)).await.expect("an answer").unwrap();
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = std::str::from_utf8(&got[..end]).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, got[end..].to_vec())
}

/// Starts a monolithic upload of `data` (`POST ?digest=`), sending the
/// first `sent` bytes of its body.
async fn start_upload(addr: &str, data: &[u8], sent: usize) -> tokio::net::TcpStream {
    let d = Digest::sha256_of(data);
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v2/t/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&data[..sent]).await.unwrap();
    tcp
}

struct Running {
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    /// Drops the server (its future) where it stands.
    abort: tokio::sync::oneshot::Sender<()>,
    done: tokio::sync::oneshot::Receiver<std::io::Result<()>>,
    /// The threads requests were answered on.
    answered_on: Arc<Mutex<Vec<String>>>,
    runner: std::thread::JoinHandle<()>,
}

/// A server on 1 + `threads` threads; the caller's runtime is a
/// single-threaded one on a thread named `caller`.
fn start(root: &std::path::Path, threads: usize) -> Running {
    let answered_on = Arc::new(Mutex::new(Vec::new()));
    let seen = answered_on.clone();
    let logger: RequestLogger = Arc::new(move |_| {
        seen.lock().unwrap().push(std::thread::current().name().unwrap_or("?").to_owned());
    });
    let opts = ServerOptions { logger: Some(logger), ..ServerOptions::default() };
    let storage = Storage::filesystem(root).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (abort, aborted) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let runner = std::thread::Builder::new()
        .name("caller".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap().to_string()).unwrap();
                let how = Listening { tls: None, threads };
                let served = serve_with(listener, router(storage, opts), how, async {
                    let _ = stopped.await;
                });
                tokio::select! {
                    r = served => { let _ = done_tx.send(r); }
                    _ = aborted => {}
                }
            });
        })
        .unwrap();
    Running { addr: addr_rx.recv().unwrap(), stop, abort, done, answered_on, runner }
}

/// [`start`], once its `threads` serving threads run.
async fn serving(root: &std::path::Path, threads: usize) -> Running {
    let srv = start(root, threads);
    let names: Vec<String> = (0..threads).map(|i| format!("serve-{i}")).collect();
    wait_for_serving_threads(&names.iter().map(String::as_str).collect::<Vec<_>>()).await;
    srv
}

/// The status and body of the next response on a kept-alive `tcp` (one
/// with a `Content-Length`).
async fn next_response(tcp: &mut tokio::net::TcpStream) -> (u16, Vec<u8>) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut byte)).await.expect("an answer").unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .expect("a Content-Length");
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).await.unwrap();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_serve_paced_uploads_and_drain_together() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let t = tempfile::tempdir().unwrap();
    let srv = serving(&t.path().join("registry"), 2).await;

    // Uploads of 3.5 MiB (the receive mark is set for them), each sent in
    // uneven pieces with pauses, the last below the mark.
    let pieces = [1 << 20, 700 << 10, 1300 << 10];
    let mut uploads = Vec::new();
    for i in 0..12u64 {
        let addr = srv.addr.clone();
        uploads.push(tokio::spawn(async move {
            let data = noise((3 << 20) + (512 << 10) + i as usize, i);
            let mut tcp = start_upload(&addr, &data, 0).await;
            let mut at = 0;
            for n in pieces {
                tcp.write_all(&data[at..at + n]).await.unwrap();
                at += n;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            tcp.write_all(&data[at..]).await.unwrap();
            let (status, body) = response(&mut tcp).await;
            assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
            data
        }));
    }
    let http = reqwest::Client::new();
    for u in uploads {
        let data = u.await.unwrap();
        let url = format!("http://{}/v2/t/app/blobs/{}", srv.addr, Digest::sha256_of(&data));
        let got = http.get(url).send().await.unwrap().bytes().await.unwrap();
        assert!(got[..] == data[..], "the blob as uploaded");
    }
    for name in srv.answered_on.lock().unwrap().iter() {
        assert!(["caller", "serve-0", "serve-1"].contains(&name.as_str()), "answered on {name}");
    }

    // Uploads in flight when the server is told to stop: it ends only when
    // every one of them, on whichever thread, has been answered.
    let data: Vec<Vec<u8>> = (0..6).map(|i| noise(3 << 20, 100 + i)).collect();
    let mut open = Vec::new();
    for d in &data {
        open.push(start_upload(&srv.addr, d, 1 << 20).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.stop.send(()).unwrap();
    let mut done = srv.done;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut done).await.is_err(),
        "the server waits for the uploads in flight"
    );
    for (tcp, d) in open.iter_mut().zip(&data) {
        tcp.write_all(&d[1 << 20..]).await.unwrap();
        let (status, body) = response(tcp).await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    }
    tokio::time::timeout(Duration::from_secs(10), done).await.expect("drained").unwrap().unwrap();
    srv.runner.join().unwrap();
    wait_for_serving_threads(&[]).await;
    for d in &data {
        let path = t.path().join("registry/blobs/sha256").join(Digest::sha256_of(d).hex());
        assert!(std::fs::read(&path).unwrap() == *d, "{} stored whole", path.display());
    }

    // A server dropped while an upload is in flight stops its threads at
    // once: the upload's connection is closed unanswered.
    let srv = serving(&t.path().join("registry"), 3).await;
    let mut open = Vec::new();
    for i in 0..4 {
        open.push(start_upload(&srv.addr, &noise(3 << 20, 200 + i), 1 << 20).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.abort.send(()).unwrap();
    srv.runner.join().unwrap();
    wait_for_serving_threads(&[]).await;
    for mut tcp in open {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await.expect("closed");
        assert!(read.is_err() || got.is_empty(), "no answer: {}", String::from_utf8_lossy(&got));
    }
    assert!(tokio::net::TcpStream::connect(&srv.addr).await.is_err(), "nothing listens any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_is_spread_over_the_runtimes() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let t = tempfile::tempdir().unwrap();
    let srv = serving(&t.path().join("registry"), 2).await;

    // 24 connections opened at once and kept open: whichever runtime
    // accepts them, each of the three serves a third (give or take two).
    let addr = srv.addr.clone();
    let mut open = tokio::task::spawn_blocking(move || {
        (0..24).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap()
    .into_iter()
    .map(|tcp| {
        tcp.set_nonblocking(true).unwrap();
        tokio::net::TcpStream::from_std(tcp).unwrap()
    })
    .collect::<Vec<_>>();
    for tcp in &mut open {
        tcp.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (status, body) = next_response(tcp).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let answered = srv.answered_on.lock().unwrap().clone();
    assert_eq!(answered.len(), 24);
    for name in ["caller", "serve-0", "serve-1"] {
        let n = answered.iter().filter(|a| *a == name).count();
        assert!((6..=10).contains(&n), "{name} answered {n} of 24: {answered:?}");
    }
    drop(open);
    srv.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), srv.done).await.expect("drained").unwrap().unwrap();
    srv.runner.join().unwrap();
}
