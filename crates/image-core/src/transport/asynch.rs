//! The async seam: [`AsyncImageSource`] and [`AsyncImageDest`], which
//! [`copy_async`](crate::copy_async) moves images through with several blobs
//! in flight at once, inside the caller's tokio runtime.
//!
//! Every method takes `&self`, so one source and one destination serve all
//! the concurrent transfers of a copy. Blobs travel as [`BlobStream`]s of
//! [`Bytes`]. A blocking [`ImageSource`] or [`ImageDest`] (an archive) takes
//! part through [`Blocking`], which runs it on tokio's blocking pool.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::{BlobKind, ImageDest, ImageSource};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, RawManifest};
use crate::reference::Reference;

/// The bytes of a blob, as they arrive. The consumer of a stream handed to
/// [`AsyncImageDest::put_blob`] has already been wrapped by the copy to
/// verify it (unless the destination verifies blobs itself).
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The bytes of a blob, taken by blocking calls that do their own I/O on
/// the calling thread (see [`AsyncImageSource::blob_opener`]).
pub type BlobChunks = Box<dyn Iterator<Item = io::Result<Bytes>> + Send>;

/// Opens a blob as [`BlobChunks`], on the thread that will read them.
pub type BlobOpener = Box<dyn FnOnce() -> Result<BlobChunks> + Send>;

/// Where images are read from, for async programs. See [`ImageSource`] for
/// the meaning of each method; here they take `&self` and may run
/// concurrently (several blobs of one image read at once).
#[async_trait::async_trait]
pub trait AsyncImageSource: Send + Sync {
    /// A human-readable location, for messages.
    fn location(&self) -> String;
    /// The manifest (or index) this source designates.
    async fn top_manifest(&self) -> Result<RawManifest>;
    /// A manifest by descriptor (a child of an index).
    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest>;
    /// The raw bytes of a blob. The caller verifies them.
    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream>;
    /// The blob as chunks read by blocking calls that drive their own I/O
    /// on the thread taking them (a connection of its own, run by that
    /// thread: no hand-over between threads per chunk), for a destination
    /// that writes blobs on threads of its own
    /// ([`AsyncImageDest::takes_blob_chunks`]); `None` (the default): read
    /// it with [`AsyncImageSource::blob`]. The caller verifies the bytes.
    async fn blob_opener(&self, desc: &Descriptor) -> Result<Option<BlobOpener>> {
        let _ = desc;
        Ok(None)
    }
    /// Where a blob comes from, for error messages.
    fn blob_location(&self, desc: &Descriptor) -> String {
        let _ = desc;
        self.location()
    }
    /// The image's own name, when the source records one.
    fn name_hint(&self) -> Option<Reference> {
        None
    }
    /// The registry repository blobs are read from (for cross-repository mounts).
    fn registry_repository(&self) -> Option<Reference> {
        None
    }
}

/// Where images are written to, for async programs. Nothing becomes visible
/// before [`AsyncImageDest::commit`]. See [`ImageDest`].
#[async_trait::async_trait]
pub trait AsyncImageDest: Send + Sync {
    /// A human-readable location, for messages.
    fn location(&self) -> String;
    /// Whether the destination can store an index.
    fn supports_index(&self) -> bool {
        true
    }
    /// The one manifest format the destination writes whatever it is sent,
    /// if it has one (see [`ImageDest::fixed_format`]).
    fn fixed_format(&self) -> Option<crate::manifest::ManifestFormat> {
        None
    }
    /// Whether blobs may be sent concurrently; `false` (an archive written
    /// in order) makes a copy send them one at a time, in the image's order.
    fn concurrent_blobs(&self) -> bool {
        true
    }
    /// Whether [`AsyncImageDest::put_blob`] checks digest and size itself
    /// (as a layout does while it stages a blob), so the copy need not hash
    /// the stream a second time.
    fn verifies_blobs(&self) -> bool {
        false
    }
    /// Whether blobs put are held back until [`AsyncImageDest::commit`] and
    /// gone without it (as a layout stages them), so a copy may move layers
    /// while it still reads and checks the config: a bad config then stores
    /// nothing. `false` (a registry, where each blob lands as it is sent):
    /// the config is checked before any layer moves.
    fn stages_blobs(&self) -> bool {
        false
    }
    /// Whether the blob is already present.
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool>;
    /// Called first for each blob, before the copy checks for it
    /// ([`AsyncImageDest::has_blob`]) and asks its bytes of the source: a
    /// destination several copies write at once (a sync of many tags) may
    /// wait here until no other copy is sending the same blob, so that the
    /// check that follows finds it there; or answer `None` when it knows the
    /// blob is present. The claim is held until the blob is stored (or
    /// found). The default claims nothing and never waits.
    async fn claim_blob(&self, desc: &Descriptor) -> Result<Option<BlobClaim>> {
        let _ = desc;
        Ok(Some(BlobClaim::default()))
    }
    /// Stores a blob read from `data`; returns what was stored.
    async fn put_blob(&self, desc: &Descriptor, kind: BlobKind, data: BlobStream) -> Result<Descriptor>;
    /// Whether [`AsyncImageDest::put_blob_chunks`] takes blobs on a thread
    /// of its own, reading and writing there (a layout): a copy then asks
    /// the source for [`AsyncImageSource::blob_opener`].
    fn takes_blob_chunks(&self) -> bool {
        false
    }
    /// Stores a blob opened (on a blocking thread) by `open`, as
    /// [`AsyncImageDest::put_blob`]. The default reads the chunks on the
    /// blocking pool and hands them to `put_blob`.
    async fn put_blob_chunks(&self, desc: &Descriptor, kind: BlobKind, open: BlobOpener) -> Result<Descriptor> {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let (opened_tx, opened_rx) = oneshot::channel::<Result<()>>();
        tokio::task::spawn_blocking(move || match open() {
            Err(e) => {
                let _ = opened_tx.send(Err(e));
            }
            Ok(chunks) => {
                let _ = opened_tx.send(Ok(()));
                for chunk in chunks {
                    let failed = chunk.is_err();
                    if tx.blocking_send(chunk).is_err() || failed {
                        return;
                    }
                }
            }
        });
        match opened_rx.await {
            Ok(Ok(())) => self.put_blob(desc, kind, receiver_stream(rx)).await,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Io {
                action: "read",
                path: "a blob".into(),
                source: io::Error::other("the reading task ended without a word"),
            }),
        }
    }
    /// Makes a blob present by a cross-repository mount; `Ok(false)` when it
    /// cannot, and the blob must be sent.
    async fn mount_blob(&self, desc: &Descriptor, from: &Reference) -> Result<bool> {
        let _ = (desc, from);
        Ok(false)
    }
    /// Stores a child manifest of an index.
    async fn put_manifest(&self, manifest: &RawManifest) -> Result<()>;
    /// Stores the top manifest and makes the image visible.
    async fn commit(&self, top: &RawManifest) -> Result<()>;
}

/// The right to send one blob, from [`AsyncImageDest::claim_blob`]; held
/// (it may hold a lock) until the blob is stored, dropped after.
#[derive(Default)]
pub struct BlobClaim(Option<Box<dyn Send + Sync>>);

impl BlobClaim {
    /// A claim that holds `guard` (a lock guard) for as long as it lives.
    pub fn holding(guard: impl Send + Sync + 'static) -> Self {
        BlobClaim(Some(Box::new(guard)))
    }
}

impl std::fmt::Debug for BlobClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "BlobClaim(held)" } else { "BlobClaim" })
    }
}

/// Runs blocking work on tokio's blocking pool and awaits it (a panic in it
/// is resumed here).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a blocking task was cancelled: {e}"),
    }
}

/// How much a blob stream carries per item.
const CHUNK: usize = 512 << 10;

/// A blob read from a blocking reader on the blocking pool, as a stream.
/// `open` runs there too (it may borrow from what it captures); its error
/// is returned here, before any byte.
pub async fn stream_blocking<F>(open: F) -> Result<BlobStream>
where
    F: FnOnce(&mut dyn FnMut(&mut dyn Read)) -> Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let (opened_tx, opened_rx) = oneshot::channel::<Result<()>>();
    tokio::task::spawn_blocking(move || {
        let mut opened_tx = Some(opened_tx);
        let mut pump = |r: &mut dyn Read| {
            if let Some(o) = opened_tx.take() {
                let _ = o.send(Ok(()));
            }
            pump(r, &tx);
        };
        if let Err(e) = open(&mut pump)
            && let Some(o) = opened_tx.take()
        {
            let _ = o.send(Err(e));
        }
    });
    match opened_rx.await {
        Ok(Ok(())) => Ok(receiver_stream(rx)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Io {
            action: "read",
            path: "a blob".into(),
            source: io::Error::other("the reading task ended without a word"),
        }),
    }
}

/// Sends what `r` reads, a chunk at a time, until it ends, fails, or the
/// receiver is gone.
fn pump(r: &mut dyn Read, tx: &mpsc::Sender<io::Result<Bytes>>) {
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        // Fill the chunk (fewer, larger items are cheaper downstream).
        let end = loop {
            match r.read(&mut buf[n..]) {
                Ok(0) => break true,
                Ok(k) => {
                    n += k;
                    if n == buf.len() {
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if n > 0 {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                    }
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        };
        if n > 0 {
            buf.truncate(n);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return;
            }
        }
        if end {
            return;
        }
    }
}

fn receiver_stream(rx: mpsc::Receiver<io::Result<Bytes>>) -> BlobStream {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).fuse())
}

/// A stream of one buffer.
pub fn bytes_stream(bytes: impl Into<Bytes>) -> BlobStream {
    let bytes: Bytes = bytes.into();
    Box::pin(futures_util::stream::iter((!bytes.is_empty()).then_some(Ok(bytes))))
}

/// A [`BlobStream`] read as a blocking [`Read`]: for blocking code running
/// on tokio's blocking pool (never on a runtime worker).
pub struct StreamReader {
    stream: BlobStream,
    buf: Bytes,
    ended: bool,
    next: Box<NextChunk>,
}

/// Waits for a stream's next item (see [`StreamReader::with_driver`]).
type NextChunk = dyn FnMut(&mut BlobStream) -> Option<io::Result<Bytes>> + Send;

impl StreamReader {
    /// Reads `stream`, driving it on the runtime `handle` belongs to.
    pub fn new(stream: BlobStream, handle: tokio::runtime::Handle) -> Self {
        Self::with_driver(stream, move |s| handle.block_on(s.next()))
    }

    /// Reads `stream`, each chunk taken by `next`, which waits for the
    /// stream's next item however the caller's runtime allows.
    pub fn with_driver(
        stream: BlobStream,
        next: impl FnMut(&mut BlobStream) -> Option<io::Result<Bytes>> + Send + 'static,
    ) -> Self {
        StreamReader { stream, buf: Bytes::new(), ended: false, next: Box::new(next) }
    }
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match (self.next)(&mut self.stream) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => self.ended = true,
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

/// A blocking [`ImageSource`] or [`ImageDest`] as an async one: each call
/// runs on tokio's blocking pool, one at a time (a destination takes its
/// blobs in order).
pub struct Blocking<T> {
    inner: Arc<Mutex<T>>,
    location: String,
    name_hint: Option<Reference>,
    registry_repository: Option<Reference>,
    supports_index: bool,
    fixed_format: Option<crate::manifest::ManifestFormat>,
}

impl<T> Blocking<T> {
    fn lock(inner: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: ImageSource + Send + 'static> Blocking<S> {
    /// Wraps a blocking source.
    pub fn source(src: S) -> Self {
        Blocking {
            location: src.location(),
            name_hint: src.name_hint(),
            registry_repository: src.registry_repository(),
            supports_index: true,
            fixed_format: None,
            inner: Arc::new(Mutex::new(src)),
        }
    }
}

impl<D: ImageDest + Send + 'static> Blocking<D> {
    /// Wraps a blocking destination.
    pub fn dest(dst: D) -> Self {
        Blocking {
            location: dst.location(),
            name_hint: None,
            registry_repository: None,
            supports_index: dst.supports_index(),
            fixed_format: dst.fixed_format(),
            inner: Arc::new(Mutex::new(dst)),
        }
    }
}

#[async_trait::async_trait]
impl<S: ImageSource + Send + 'static> AsyncImageSource for Blocking<S> {
    fn location(&self) -> String {
        self.location.clone()
    }
    async fn top_manifest(&self) -> Result<RawManifest> {
        let inner = Arc::clone(&self.inner);
        blocking(move || Self::lock(&inner).top_manifest()).await
    }
    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        let (inner, desc) = (Arc::clone(&self.inner), desc.clone());
        blocking(move || Self::lock(&inner).manifest(&desc)).await
    }
    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        let (inner, desc) = (Arc::clone(&self.inner), desc.clone());
        stream_blocking(move |pump| {
            let mut src = Self::lock(&inner);
            let mut r = src.blob(&desc)?;
            pump(&mut r);
            Ok(())
        })
        .await
    }
    fn blob_location(&self, desc: &Descriptor) -> String {
        // Asked for messages, after the blob's reader is done with the source.
        match self.inner.try_lock() {
            Ok(src) => src.blob_location(desc),
            Err(_) => self.location.clone(),
        }
    }
    fn name_hint(&self) -> Option<Reference> {
        self.name_hint.clone()
    }
    fn registry_repository(&self) -> Option<Reference> {
        self.registry_repository.clone()
    }
}

#[async_trait::async_trait]
impl<D: ImageDest + Send + 'static> AsyncImageDest for Blocking<D> {
    fn location(&self) -> String {
        self.location.clone()
    }
    fn supports_index(&self) -> bool {
        self.supports_index
    }
    fn fixed_format(&self) -> Option<crate::manifest::ManifestFormat> {
        self.fixed_format
    }
    fn concurrent_blobs(&self) -> bool {
        false
    }
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        let (inner, desc) = (Arc::clone(&self.inner), desc.clone());
        blocking(move || Self::lock(&inner).has_blob(&desc)).await
    }
    async fn put_blob(&self, desc: &Descriptor, kind: BlobKind, data: BlobStream) -> Result<Descriptor> {
        let (inner, desc) = (Arc::clone(&self.inner), desc.clone());
        let handle = tokio::runtime::Handle::current();
        blocking(move || Self::lock(&inner).put_blob(&desc, kind, &mut StreamReader::new(data, handle))).await
    }
    async fn mount_blob(&self, desc: &Descriptor, from: &Reference) -> Result<bool> {
        let (inner, desc, from) = (Arc::clone(&self.inner), desc.clone(), from.clone());
        blocking(move || Self::lock(&inner).mount_blob(&desc, &from)).await
    }
    async fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        let (inner, m) = (Arc::clone(&self.inner), manifest.clone());
        blocking(move || Self::lock(&inner).put_manifest(&m)).await
    }
    async fn commit(&self, top: &RawManifest) -> Result<()> {
        let (inner, m) = (Arc::clone(&self.inner), top.clone());
        blocking(move || Self::lock(&inner).commit(&m)).await
    }
}
