//! Taking connections: plain HTTP (HTTP/1 with `sendfile`, or HTTP/2) or
//! TLS, on the caller's tokio runtime or spread over threads of their own.
//!
//! A runtime with many worker threads moves a connection's work between
//! them, waking one thread for another's I/O; for a server whose requests
//! are mostly streaming bytes in and out, that waking costs as much as a
//! tenth of its CPU. With [`Listening::threads`], each thread runs a
//! single-threaded runtime that takes connections from the shared
//! listener and serves each to its end, as nginx's workers do. A thread
//! that wakes for a burst of connections would take them all (one core
//! serving sixteen pulls while the other idles): each connection goes to
//! whichever runtime serves fewest, handed over if that is another.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Extension;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};

use super::pacing::{MAX_BUF, RecvPace};
use super::sendfile::{SendQueue, SendfileIo};

/// How [`serve_with`] takes and serves connections.
#[derive(Clone, Default)]
pub struct Listening {
    /// TLS, from [`server_config`](super::server_config); plain HTTP
    /// when unset.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Threads of the server's own, each with a single-threaded tokio
    /// runtime, that take connections beside the caller's runtime (each
    /// connection served by whichever runtime serves fewest). 0: the
    /// caller's runtime serves every connection.
    pub threads: usize,
}

/// What the handlers of a plain HTTP/1 connection of our own share with
/// its socket: blob ranges to send with `sendfile`, and the receive mark
/// for the body being read.
#[derive(Clone, Default)]
pub(crate) struct Plain {
    pub(crate) sends: SendQueue,
    pub(crate) pace: RecvPace,
}

/// Serves `router` on `listener` until `shutdown` resolves; the
/// connections open then are finished first. Blobs stored in local files
/// go out over HTTP/1 with `sendfile`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, Listening::default(), shutdown).await
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves; the
/// connections open then are finished first.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, Listening { tls: Some(config), threads: 0 }, shutdown).await
}

/// Serves `router` on `listener` as `how` says until `shutdown` resolves;
/// the connections open then, on every thread, are finished first.
/// Dropping the future stops the server's threads at once (their
/// connections are closed).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    how: Listening,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if how.threads == 0 {
        serve_here(listener, router, how.tls, None, shutdown).await;
        return Ok(());
    }
    let listener = listener.into_std()?;
    // `true`: drain. Dropped: every thread stops, drained or not.
    let (drain, draining) = watch::channel(false);
    let mut finished = Vec::new();
    // The threads' blocking pools (for file system calls) are together as
    // large as one runtime's.
    let blocking = (512 / how.threads).max(8);
    // Runtime 0 is the caller's; runtime i + 1 is thread serve-i's.
    let (balance, inboxes) = Balance::new(how.threads + 1);
    let mut inboxes = inboxes.into_iter();
    let mine = inboxes.next().expect("a balance of at least one");
    for (i, inbox) in inboxes.enumerate() {
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let thread = ServeThread {
            listener: listener.try_clone()?,
            router: router.clone(),
            tls: how.tls.clone(),
            draining: draining.clone(),
            blocking,
            share: Share { balance: balance.clone(), me: i + 1, inbox },
            done,
        };
        std::thread::Builder::new().name(format!("serve-{i}")).spawn(move || thread.run())?;
        finished.push(done_rx);
    }
    let here = tokio::net::TcpListener::from_std(listener)?;
    let shutdown = {
        let drain = drain.clone();
        async move {
            shutdown.await;
            let _ = drain.send(true);
        }
    };
    let share = Share { balance, me: 0, inbox: mine };
    serve_here(here, router, how.tls, Some(share), shutdown).await;
    let mut result = Ok(());
    for (i, done) in finished.into_iter().enumerate() {
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(std::io::Error::new(e.kind(), format!("serving thread serve-{i}: {e}"))),
            Err(_) => result = Err(std::io::Error::other(format!("serving thread serve-{i} ended early"))),
        }
    }
    // Every thread has drained: they may stop (dropping `drain`). Until
    // now each kept its runtime running, for a connection a client shared
    // between threads pooled (the S3 driver's, a proxy's) may be driven by
    // another thread's runtime.
    result
}

/// One of [`serve_with`]'s threads.
struct ServeThread {
    listener: std::net::TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    draining: watch::Receiver<bool>,
    /// The most threads its runtime's blocking pool may have.
    blocking: usize,
    share: Share,
    done: tokio::sync::oneshot::Sender<std::io::Result<()>>,
}

impl ServeThread {
    fn run(self) {
        let ServeThread { listener, router, tls, draining, blocking, share, done } = self;
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(blocking).build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    let _ = done.send(Err(e));
                    return;
                }
            };
            let mut stopped = draining.clone();
            let mut draining = draining;
            let drain = async move {
                let _ = draining.wait_for(|d| *d).await;
            };
            let serving = async move {
                serve_here(listener, router, tls, Some(share), drain).await;
                let _ = done.send(Ok(()));
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = serving => {}
                // The sender is dropped: everything has drained, or the
                // server was dropped.
                () = async move { while stopped.changed().await.is_ok() {} } => {}
            }
        });
    }
}

/// Serves connections from `listener` on the current runtime until
/// `shutdown` resolves, then waits for the connections open.
async fn serve_here(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    share: Option<Share>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    match tls {
        None => {
            accept_until(listener, share, shutdown, |tcp, watcher, served| {
                let plain = Plain::default();
                let service =
                    hyper_util::service::TowerToHyperService::new(router.clone().layer(Extension(plain.clone())));
                let mut builder = connection_builder();
                // Body frames handed to the writer as they are (see
                // `sendfile`); what hyper may hold of a body bounded (see
                // `pacing`).
                builder.http1().writev(true).max_buf_size(MAX_BUF);
                let io = TokioIo::new(SendfileIo::new(tcp, plain.sends, plain.pace));
                let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
                tokio::spawn(async move {
                    let _served = served;
                    let _ = watcher.watch(conn).await;
                });
            })
            .await;
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            accept_until(listener, share, shutdown, |tcp, watcher, served| {
                let acceptor = acceptor.clone();
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let builder = connection_builder();
                tokio::spawn(async move {
                    let _served = served;
                    // A failed handshake (wrong client certificate, not
                    // TLS) ends that connection only.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).into_owned();
                    let _ = watcher.watch(conn).await;
                });
            })
            .await;
        }
    }
}

/// How each connection is served: HTTP/1 or HTTP/2, by what the client
/// speaks.
fn connection_builder() -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
}

/// The runtimes serving one listener, and how many connections each is
/// serving (counted from when one is chosen for it).
#[derive(Clone)]
struct Balance {
    load: Arc<[AtomicUsize]>,
    inboxes: Arc<[mpsc::UnboundedSender<(std::net::TcpStream, Served)>]>,
}

/// One runtime's part in a [`Balance`]: its number, and where connections
/// handed to it arrive.
struct Share {
    balance: Balance,
    me: usize,
    inbox: mpsc::UnboundedReceiver<(std::net::TcpStream, Served)>,
}

impl Balance {
    /// A balance of `n` runtimes, and their inboxes.
    fn new(n: usize) -> (Balance, Vec<mpsc::UnboundedReceiver<(std::net::TcpStream, Served)>>) {
        let (senders, inboxes): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        let load = (0..n).map(|_| AtomicUsize::new(0)).collect();
        (Balance { load, inboxes: senders.into() }, inboxes)
    }

    /// The runtime a connection `me` accepted goes to: `me`, unless
    /// another serves fewer.
    fn pick(&self, me: usize) -> usize {
        let load = |i: usize| self.load[i].load(Ordering::Relaxed);
        (0..self.load.len()).fold(me, |best, i| if load(i) < load(best) { i } else { best })
    }

    /// Counts one more connection for runtime `i`, until it drops.
    fn count(&self, i: usize) -> Served {
        self.load[i].fetch_add(1, Ordering::Relaxed);
        Served { load: self.load.clone(), i }
    }
}

/// One connection a runtime is counted as serving (see [`Balance`]).
struct Served {
    load: Arc<[AtomicUsize]>,
    i: usize,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.load[self.i].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, handing
/// each to `start` (which spawns its task, holding the [`Served`] until it
/// ends) with the watcher that holds shutdown back until it is done; then
/// waits for them all. With a `share`, a connection goes to the runtime
/// serving fewest, and those handed over arrive here too.
async fn accept_until(
    listener: tokio::net::TcpListener,
    mut share: Option<Share>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut start: impl FnMut(tokio::net::TcpStream, hyper_util::server::graceful::Watcher, Option<Served>),
) {
    enum Next {
        Accepted(tokio::net::TcpStream),
        Handed((std::net::TcpStream, Served)),
        Retry,
        Stop,
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let handed = async {
            match &mut share {
                Some(share) => share.inbox.recv().await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => Next::Accepted(tcp),
                // A refused or reset connection is that client's problem.
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
                ) => Next::Retry,
                // Out of descriptors, or memory: let the connections open
                // finish before accepting more.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    Next::Retry
                }
            },
            Some(tcp) = handed => Next::Handed(tcp),
            () = &mut shutdown => Next::Stop,
        };
        match next {
            Next::Accepted(tcp) => {
                // Responses go out as written (a small body after its
                // headers does not wait for the client's delayed ACK).
                let _ = tcp.set_nodelay(true);
                match &share {
                    None => start(tcp, graceful.watcher(), None),
                    Some(share) => hand(share, tcp, &graceful, &mut start),
                }
            }
            Next::Handed((socket, served)) => adopt(socket, served, &graceful, &mut start),
            Next::Retry => {}
            Next::Stop => break,
        }
    }
    // Connections handed here before the shutdown are served too.
    if let Some(share) = &mut share {
        share.inbox.close();
        while let Ok((socket, served)) = share.inbox.try_recv() {
            adopt(socket, served, &graceful, &mut start);
        }
    }
    graceful.shutdown().await;
}

/// Serves `tcp`, accepted by `share`'s runtime, there or on the runtime
/// serving fewest.
fn hand(
    share: &Share,
    tcp: tokio::net::TcpStream,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    start: &mut impl FnMut(tokio::net::TcpStream, hyper_util::server::graceful::Watcher, Option<Served>),
) {
    let balance = &share.balance;
    let to = balance.pick(share.me);
    if to == share.me {
        return start(tcp, graceful.watcher(), Some(balance.count(to)));
    }
    // Out of this runtime's reactor, into the other's. A socket that
    // cannot leave it (never seen) is closed.
    let Ok(socket) = tcp.into_std() else { return };
    // That runtime has stopped taking connections (a drain): this one
    // serves it.
    if let Err(mpsc::error::SendError((socket, there))) = balance.inboxes[to].send((socket, balance.count(to))) {
        drop(there);
        adopt(socket, balance.count(share.me), graceful, start);
    }
}

/// Serves `socket`, handed over as a plain socket and counted as `served`,
/// on this runtime.
fn adopt(
    socket: std::net::TcpStream,
    served: Served,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    start: &mut impl FnMut(tokio::net::TcpStream, hyper_util::server::graceful::Watcher, Option<Served>),
) {
    if let Ok(tcp) = tokio::net::TcpStream::from_std(socket) {
        start(tcp, graceful.watcher(), Some(served));
    }
}
