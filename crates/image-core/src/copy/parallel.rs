//! [`copy_async`]: the copy for async programs, with several blobs in flight.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};

use super::{
    CopyOptions, CopyReport, Progress, Recompress, check_config, check_config_size, check_format, check_preserved,
    child_image, in_format, pick_platform, rebuilt_index, stored_manifest,
};
use crate::digest::{Digest, Hasher, VerifyError};
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, ImageManifest, Manifest, RawManifest};
use crate::transport::{
    AsyncImageDest, AsyncImageSource, BlobChunks, BlobKind, BlobOpener, BlobStream, StreamReader, blocking,
    bytes_stream, stream_blocking,
};

/// Copies the image `src` designates into `dst`, like [`copy`](super::copy()),
/// with up to `jobs` layers moving at once (one at a time when the
/// destination takes blobs in order). Each distinct layer is checked for,
/// mounted or sent once; every blob is verified while it streams (by the
/// copy, or by a destination that verifies what it stores); nothing is
/// committed unless everything verified. Runs inside the caller's tokio
/// runtime (blocking work goes to its blocking pool).
pub async fn copy_async(
    src: &dyn AsyncImageSource,
    dst: &dyn AsyncImageDest,
    opts: &CopyOptions,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    check_format(opts, dst.fixed_format(), &dst.location())?;
    let top = src.top_manifest().await?;
    let mut report = CopyReport::of(&top);
    let jobs = if dst.concurrent_blobs() { jobs.max(1) } else { 1 };
    // A digest a format change would not keep: refused before any blob
    // moves (what a destination changes is caught before the commit).
    if opts.preserve_digests && opts.format.is_some() {
        let read = copied_digest(src, &CopyOptions { format: None, ..opts.clone() }).await?;
        check_preserved(&read, &copied_digest(src, opts).await?, opts, &dst.location())?;
    }
    // What the copy reads: the top manifest, or the platform's.
    let mut read = top.digest.clone();
    let stored_top = match top.parse()? {
        Manifest::Image(m) => in_format(copy_image(src, dst, top, m, jobs, opts, &mut report, progress).await?, opts)?,
        Manifest::Index(idx) if opts.all_platforms && dst.supports_index() => {
            let mut new_index = idx.clone();
            for entry in new_index.manifests.iter_mut() {
                let child = src.manifest(entry).await?;
                let m = child_image(&child, &dst.location())?;
                let stored = in_format(copy_image(src, dst, child, m, jobs, opts, &mut report, progress).await?, opts)?;
                dst.put_manifest(&stored).await?;
                entry.digest = stored.digest.clone();
                entry.size = stored.bytes.len() as u64;
                entry.media_type = stored.media_type.clone();
            }
            let top_type = top.media_type.clone();
            let index = rebuilt_index(top, &idx, new_index);
            let index = if opts.compression.is_some() { Recompress::manifest(&top_type, index) } else { index };
            in_format(index, opts)?
        }
        Manifest::Index(idx) => {
            let entry = pick_platform(&idx, opts, &src.location())?;
            read = entry.digest.clone();
            let child = src.manifest(&entry).await?;
            let m = child_image(&child, &src.location())?;
            in_format(copy_image(src, dst, child, m, jobs, opts, &mut report, progress).await?, opts)?
        }
    };
    check_preserved(&read, &stored_top.digest, opts, &dst.location())?;
    dst.commit(&stored_top).await?;
    report.manifest = stored_top.descriptor();
    Ok(report)
}

/// The digest of the top manifest [`copy_async`] of `src` with `opts` would
/// store where blobs are stored as sent (a registry, an OCI layout): what a
/// destination holding it already has, without reading a blob. Indexes and
/// their children are written in `opts.format` as the copy writes them. An
/// error with `opts.compression` (the layers' digests are known only once
/// they are written).
pub async fn copied_digest(src: &dyn AsyncImageSource, opts: &CopyOptions) -> Result<Digest> {
    if opts.compression.is_some() {
        return Err(Error::BadOption {
            option: "recompressed layers".into(),
            reason: format!(
                "the digest a copy of {} stores is known only once its layers are recompressed",
                src.location()
            ),
        });
    }
    let top = src.top_manifest().await?;
    match top.parse()? {
        Manifest::Image(_) => Ok(in_format(top, opts)?.digest),
        Manifest::Index(idx) if opts.all_platforms => {
            let mut new_index = idx.clone();
            for entry in new_index.manifests.iter_mut() {
                let child = in_format(src.manifest(entry).await?, opts)?;
                entry.digest = child.digest.clone();
                entry.size = child.bytes.len() as u64;
                entry.media_type = child.media_type.clone();
            }
            Ok(in_format(rebuilt_index(top, &idx, new_index), opts)?.digest)
        }
        Manifest::Index(idx) => {
            let entry = pick_platform(&idx, opts, &src.location())?;
            Ok(in_format(src.manifest(&entry).await?, opts)?.digest)
        }
    }
}

/// What became of one layer.
enum Moved {
    Present,
    Mounted,
    Sent(Box<Descriptor>),
    /// Written in another compression: as stored, and whether it was sent
    /// (else the destination had it).
    Recompressed(Box<Descriptor>, bool),
}

#[allow(clippy::too_many_arguments)] // the copy's state, passed down as the blocking copy's is
async fn copy_image(
    src: &dyn AsyncImageSource,
    dst: &dyn AsyncImageDest,
    raw: RawManifest,
    m: ImageManifest,
    jobs: usize,
    opts: &CopyOptions,
    report: &mut CopyReport,
    progress: &dyn Progress,
) -> Result<RawManifest> {
    check_config_size(&m)?;
    let recompress = Recompress::checked(opts, &raw, &m, &src.location())?;
    let source_type = raw.media_type.clone();
    // Where the destination stages blobs, the config is read and checked
    // beside the layers (its round trip then holds none back; a bad config
    // stops them and nothing is stored); elsewhere, and with one job (one
    // blob at a time), before any layer moves.
    let (manifest, location) = (&m, src.location());
    let config = || async {
        let bytes = read_verified(src, &manifest.config).await?;
        check_config(&bytes, manifest, &raw, &location)?;
        Ok::<_, Error>(bytes)
    };
    let early = if dst.stages_blobs() && jobs > 1 { None } else { Some(config().await?) };
    // The config goes beside the layers where the destination takes blobs
    // at once (a push's round trips for it then hold no layer back), else
    // first.
    let put_config = async {
        let config_bytes = match early {
            Some(bytes) => bytes,
            None => config().await?,
        };
        match dst.claim_blob(&m.config).await? {
            Some(_claim) if !dst.has_blob(&m.config).await? => {
                dst.put_blob(&m.config, BlobKind::Config, bytes_stream(config_bytes)).await
            }
            _ => Ok(m.config.clone()),
        }
    };
    // Each distinct layer once (an image may repeat one).
    let mut first_index: HashMap<&Digest, usize> = HashMap::new();
    let mut distinct: Vec<(usize, &Descriptor)> =
        m.layers.iter().enumerate().filter(|(i, l)| *first_index.entry(&l.digest).or_insert(*i) == *i).collect();
    // Up to `jobs` at a time, the largest first (the longest transfer
    // bounds the copy: it should not wait behind small ones). The first
    // failure stops the others (their streams fail at once), and every
    // transfer has ended, its staging gone, before the copy returns it.
    distinct.sort_by_key(|(_, layer)| std::cmp::Reverse(layer.size));
    let run = Run { limit: tokio::sync::Semaphore::new(jobs), stop: Arc::default(), first: Mutex::new(None) };
    let layers = || {
        distinct
            .iter()
            .map(|&(i, layer)| {
                let new_type = recompress.and_then(|r| Some((r, r.target_type(layer, &source_type)?)));
                run.limited(layer, move_layer(src, dst, i, layer, new_type, progress, Arc::clone(&run.stop)))
            })
            .collect::<FuturesOrdered<_>>()
            .collect::<Vec<Result<(Digest, Moved)>>>()
    };
    let (stored_config, results) = if dst.concurrent_blobs() {
        futures_util::future::join(run.guarded(&m.config, put_config), layers()).await
    } else {
        let stored_config = put_config.await?;
        (Ok(stored_config), layers().await)
    };
    if let Some(e) = run.first.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(e);
    }
    let stored_config = stored_config?;
    let moved: Vec<(Digest, Moved)> = results.into_iter().collect::<Result<_>>()?;
    let mut stored: HashMap<Digest, Descriptor> = HashMap::new();
    for ((digest, how), &(_, layer)) in moved.into_iter().zip(&distinct) {
        match how {
            Moved::Present => {
                report.blobs_skipped += 1;
                stored.insert(digest, layer.clone());
            }
            Moved::Mounted => {
                report.blobs_mounted += 1;
                stored.insert(digest, layer.clone());
            }
            Moved::Sent(d) | Moved::Recompressed(d, true) => {
                report.blobs_copied += 1;
                report.bytes_copied += layer.size;
                stored.insert(digest, *d);
            }
            Moved::Recompressed(d, false) => {
                report.blobs_skipped += 1;
                stored.insert(digest, *d);
            }
        }
    }
    let stored_layers = m.layers.iter().map(|l| stored[&l.digest].clone()).collect();
    let stored = stored_manifest(raw, m, stored_config, stored_layers);
    Ok(if recompress.is_some() { Recompress::manifest(&source_type, stored) } else { stored })
}

/// The layer transfers of one image.
struct Run {
    limit: tokio::sync::Semaphore,
    /// Set by the first failure.
    stop: Arc<AtomicBool>,
    /// That failure.
    first: Mutex<Option<Error>>,
}

impl Run {
    /// Runs `work` beside the transfers (no turn needed): its failure stops
    /// them as theirs would.
    async fn guarded<T>(&self, blob: &Descriptor, work: impl Future<Output = Result<T>>) -> Result<T> {
        match work.await {
            Err(e) if !self.stop.swap(true, Ordering::SeqCst) => {
                *self.first.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                Err(stopped(blob))
            }
            other => other,
        }
    }

    /// Runs `work` once the limit lets it, unless the copy has stopped.
    async fn limited(&self, layer: &Descriptor, work: impl Future<Output = Result<Moved>>) -> Result<(Digest, Moved)> {
        let _turn = self.limit.acquire().await.expect("the semaphore is never closed");
        if self.stop.load(Ordering::SeqCst) {
            return Err(stopped(layer));
        }
        match work.await {
            Ok(m) => Ok((layer.digest.clone(), m)),
            Err(e) if !self.stop.swap(true, Ordering::SeqCst) => {
                *self.first.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                Err(stopped(layer))
            }
            Err(e) => Err(e),
        }
    }
}

/// What a transfer stopped by another's failure (or the failure itself,
/// once recorded) ends with; never shown: the first failure is what the
/// copy returns.
fn stopped(layer: &Descriptor) -> Error {
    Error::ReadBlob {
        digest: layer.digest.clone(),
        location: "the copy".into(),
        source: io::Error::other("stopped: another blob of the copy failed"),
    }
}

/// Checks for, mounts or sends one layer (`recompress`: written anew in
/// that compression, as that media type).
async fn move_layer(
    src: &dyn AsyncImageSource,
    dst: &dyn AsyncImageDest,
    index: usize,
    layer: &Descriptor,
    recompress: Option<(&Recompress, &'static str)>,
    progress: &dyn Progress,
    stop: Arc<AtomicBool>,
) -> Result<Moved> {
    if let Some((r, media_type)) = recompress {
        return recompress_layer(src, dst, index, layer, r, media_type, progress, stop).await;
    }
    // Another copy may be sending it: wait for its turn first, then find
    // it there (one check for presence per blob).
    let Some(_claim) = dst.claim_blob(layer).await? else {
        progress.blob_skipped(layer);
        return Ok(Moved::Present);
    };
    if dst.has_blob(layer).await? {
        progress.blob_skipped(layer);
        return Ok(Moved::Present);
    }
    if let Some(from) = src.registry_repository()
        && dst.mount_blob(layer, &from).await?
    {
        progress.blob_skipped(layer);
        return Ok(Moved::Mounted);
    }
    progress.blob_started(layer);
    let watch = Arc::new(Watch::default());
    let hash = !dst.verifies_blobs();
    let opener = if dst.takes_blob_chunks() { src.blob_opener(layer).await? } else { None };
    let result = match opener {
        // Read and written on one thread (its connection driven there).
        Some(open) => {
            let (desc, seen) = (layer.clone(), Arc::clone(&watch));
            let checked: BlobOpener = Box::new(move || {
                let chunks: BlobChunks = Box::new(Checked::new(open()?, &desc, hash, seen).stopped_by(stop));
                Ok(chunks)
            });
            reporting(dst.put_blob_chunks(layer, BlobKind::Layer(index), checked), &watch, layer, progress).await
        }
        None => {
            let body = src.blob(layer).await?;
            let stream = Box::pin(Checked::new(body, layer, hash, Arc::clone(&watch)).stopped_by(stop));
            reporting(dst.put_blob(layer, BlobKind::Layer(index), stream), &watch, layer, progress).await
        }
    };
    // A failure that began at the source is reported against the source;
    // so is a blob the destination found not to verify.
    if let Some(e) = watch.failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
        return Err(Error::blob_read(&layer.digest, &src.blob_location(layer), e));
    }
    let stored = match result {
        // The destination checked what it was sent and refused it (a
        // registry's DIGEST_INVALID): the source is read again to say whose
        // fault it is.
        Err(Error::Verify { digest, location, source }) if digest == layer.digest => {
            if let VerifyError::Refused { .. } = *source {
                read_through(src, layer, |_| ()).await?;
                return Err(Error::Verify { digest, location, source });
            }
            return Err(Error::Verify { digest, location: src.blob_location(layer), source });
        }
        other => other?,
    };
    progress.blob_done(layer);
    Ok(Moved::Sent(Box::new(stored)))
}

/// Reads a layer, writes it in another compression to a temp file (on the
/// blocking pool, verified there), and sends that, unless the destination
/// has it already.
#[allow(clippy::too_many_arguments)]
async fn recompress_layer(
    src: &dyn AsyncImageSource,
    dst: &dyn AsyncImageDest,
    index: usize,
    layer: &Descriptor,
    r: &Recompress,
    media_type: &'static str,
    progress: &dyn Progress,
    stop: Arc<AtomicBool>,
) -> Result<Moved> {
    progress.blob_started(layer);
    let body = src.blob(layer).await?;
    let watch = Arc::new(Watch::default());
    // Verified where it is decompressed; counted and bounded here.
    let stream: BlobStream = Box::pin(Checked::new(body, layer, false, Arc::clone(&watch)).stopped_by(stop));
    let location = src.blob_location(layer);
    let (r2, layer2, at) = (r.clone(), layer.clone(), location.clone());
    let handle = tokio::runtime::Handle::current();
    let made = blocking(move || {
        let mut data = StreamReader::new(stream, handle);
        r2.layer(&layer2, media_type, &mut data, &at)
    });
    let result = reporting(made, &watch, layer, progress).await;
    if let Some(e) = watch.failure.lock().unwrap_or_else(PoisonError::into_inner).take() {
        return Err(Error::blob_read(&layer.digest, &location, e));
    }
    let (file, new) = result?;
    // Another copy may be sending it, or it is there already.
    let claim = dst.claim_blob(&new).await?;
    if claim.is_none() || dst.has_blob(&new).await? {
        progress.blob_done(layer);
        return Ok(Moved::Recompressed(Box::new(new), false));
    }
    let body = stream_blocking(move |pump| {
        let mut file = file;
        pump(&mut file);
        Ok(())
    })
    .await?;
    let stored = dst.put_blob(&new, BlobKind::Layer(index), body).await?;
    progress.blob_done(layer);
    Ok(Moved::Recompressed(Box::new(stored), true))
}

/// Runs `work` (a transfer through a [`Checked`] stream), reporting
/// progress as the stream passes each step (no timer: the caller's
/// runtime need not have one), and once more at the end.
async fn reporting<T>(work: impl Future<Output = T>, watch: &Watch, layer: &Descriptor, progress: &dyn Progress) -> T {
    let mut work = std::pin::pin!(work);
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            () = watch.moved.notified() => progress.blob_progress(layer, watch.done.load(Ordering::Relaxed)),
        }
    };
    progress.blob_progress(layer, watch.done.load(Ordering::Relaxed));
    result
}

/// Reads a blob through, verified, handing each piece to `take`: its
/// verification failure (or read error) is reported against the source.
async fn read_through(src: &dyn AsyncImageSource, desc: &Descriptor, mut take: impl FnMut(&[u8])) -> Result<()> {
    let mut stream = Checked::new(src.blob(desc).await?, desc, true, Arc::default());
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => take(&b),
            Err(e) => return Err(Error::blob_read(&desc.digest, &src.blob_location(desc), e)),
        }
    }
    Ok(())
}

/// Reads a small blob whole, verified.
async fn read_verified(src: &dyn AsyncImageSource, desc: &Descriptor) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(desc.size as usize);
    read_through(src, desc, |b| out.extend_from_slice(b)).await?;
    Ok(out)
}

/// What a [`Checked`] stream saw: bytes so far, and its first failure.
#[derive(Default)]
struct Watch {
    done: AtomicU64,
    failure: Mutex<Option<io::Error>>,
    /// Signalled every [`PROGRESS_STEP`] bytes.
    moved: tokio::sync::Notify,
}

/// How often a transfer reports progress.
const PROGRESS_STEP: u64 = 1 << 20;

/// A blob stream (or, as an iterator, [`BlobChunks`]) that counts what
/// passes, refuses more than the promised size, and (when asked) checks the
/// digest at the end; its first error is also kept in the [`Watch`], so the
/// copy can blame the source.
struct Checked<S> {
    inner: S,
    hasher: Option<Hasher>,
    expected: Digest,
    size: u64,
    seen: u64,
    ended: bool,
    watch: Arc<Watch>,
    /// The copy has stopped: fail now.
    stop: Option<Arc<AtomicBool>>,
}

impl<S> Checked<S> {
    fn new(inner: S, desc: &Descriptor, hash: bool, watch: Arc<Watch>) -> Self {
        Checked {
            inner,
            hasher: hash.then(|| Hasher::new(desc.digest.algorithm())),
            expected: desc.digest.clone(),
            size: desc.size,
            seen: 0,
            ended: false,
            watch,
            stop: None,
        }
    }

    fn stopped_by(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Whether no more is to be taken (the end, or the copy has stopped,
    /// which is an error).
    fn done(&mut self) -> Option<Option<io::Result<Bytes>>> {
        if self.ended {
            return Some(None);
        }
        if self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            self.ended = true;
            return Some(Some(Err(io::Error::other("stopped: another blob of the copy failed"))));
        }
        None
    }

    fn fail(&mut self, e: io::Error) -> Option<io::Result<Bytes>> {
        self.ended = true;
        let copy = match VerifyError::from_io(&e) {
            Some(v) => io::Error::new(io::ErrorKind::InvalidData, v.clone()),
            None => io::Error::new(e.kind(), e.to_string()),
        };
        self.watch.failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(copy);
        Some(Err(e))
    }

    fn mismatch(&mut self, e: VerifyError) -> Option<io::Result<Bytes>> {
        self.fail(io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Checks the next item the inner source gave.
    fn check(&mut self, item: Option<io::Result<Bytes>>) -> Option<io::Result<Bytes>> {
        match item {
            Some(Err(e)) => self.fail(e),
            Some(Ok(b)) => {
                self.seen += b.len() as u64;
                if self.seen > self.size {
                    let (digest, expected, actual) = (self.expected.clone(), self.size, self.seen);
                    return self.mismatch(VerifyError::SizeMismatch {
                        digest,
                        expected,
                        actual,
                        truncated_read: false,
                    });
                }
                if let Some(h) = &mut self.hasher {
                    h.update(&b);
                }
                // Checked with the last promised byte: a reader that stops
                // at the size (an HTTP body of known length) never asks for
                // the end of the stream.
                if self.seen == self.size
                    && let Some(h) = self.hasher.take()
                {
                    let actual = h.finish();
                    if actual != self.expected {
                        let expected = self.expected.clone();
                        return self.mismatch(VerifyError::DigestMismatch { expected, actual });
                    }
                }
                let before = self.watch.done.fetch_add(b.len() as u64, Ordering::Relaxed);
                if before / PROGRESS_STEP != (before + b.len() as u64) / PROGRESS_STEP {
                    self.watch.moved.notify_one();
                }
                Some(Ok(b))
            }
            None => {
                if self.seen != self.size {
                    let (digest, expected, actual) = (self.expected.clone(), self.size, self.seen);
                    return self.mismatch(VerifyError::SizeMismatch { digest, expected, actual, truncated_read: true });
                }
                if let Some(h) = self.hasher.take() {
                    let actual = h.finish();
                    if actual != self.expected {
                        let expected = self.expected.clone();
                        return self.mismatch(VerifyError::DigestMismatch { expected, actual });
                    }
                }
                self.ended = true;
                None
            }
        }
    }
}

impl Stream for Checked<BlobStream> {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(end) = self.done() {
            return Poll::Ready(end);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(item) => Poll::Ready(self.check(item)),
        }
    }
}

impl Iterator for Checked<BlobChunks> {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(end) = self.done() {
            return end;
        }
        let item = self.inner.next();
        self.check(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of `chunks`, checked against the digest of `promised`.
    fn checked(chunks: &[&'static [u8]], promised: &[u8]) -> Checked<BlobStream> {
        let desc = Descriptor::new("application/octet-stream", Digest::sha256_of(promised), promised.len() as u64);
        let items: Vec<io::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Checked::new(Box::pin(futures_util::stream::iter(items)), &desc, true, Arc::default())
    }

    /// A reader that stops at the size (an HTTP body of known length)
    /// still gets the mismatch: with the last promised byte, not at the
    /// end of the stream it never asks for.
    #[tokio::test]
    async fn the_digest_is_checked_with_the_last_promised_byte() {
        let mut wrong = checked(&[b"hello ", b"earth"], b"hello world");
        assert_eq!(&wrong.next().await.unwrap().unwrap()[..], b"hello ");
        let err = wrong.next().await.unwrap().unwrap_err();
        assert!(matches!(VerifyError::from_io(&err), Some(VerifyError::DigestMismatch { .. })), "{err}");

        let mut right = checked(&[b"hello ", b"world"], b"hello world");
        assert_eq!(&right.next().await.unwrap().unwrap()[..], b"hello ");
        assert_eq!(&right.next().await.unwrap().unwrap()[..], b"world");
        assert!(right.next().await.is_none());

        let mut empty = checked(&[], b"");
        assert!(empty.next().await.is_none(), "an empty blob is checked at the end");
        let mut not_empty = checked(&[], b"x");
        let err = not_empty.next().await.unwrap().unwrap_err();
        assert!(matches!(VerifyError::from_io(&err), Some(VerifyError::SizeMismatch { .. })), "{err}");
    }

    /// Chunks taken by blocking calls are checked as a stream is, their
    /// first failure kept for the copy to blame the source, and a stopped
    /// copy ends them.
    #[test]
    fn chunks_are_checked_as_streams_are() {
        let chunks = |items: &[&'static [u8]], promised: &[u8], watch: Arc<Watch>| {
            let desc = Descriptor::new("application/octet-stream", Digest::sha256_of(promised), promised.len() as u64);
            let items: Vec<io::Result<Bytes>> = items.iter().map(|c| Ok(Bytes::from_static(c))).collect();
            let inner: BlobChunks = Box::new(items.into_iter());
            Checked::new(inner, &desc, true, watch)
        };
        let right: Vec<Bytes> =
            chunks(&[b"hello ", b"world"], b"hello world", Arc::default()).collect::<io::Result<_>>().unwrap();
        assert_eq!(right.concat(), b"hello world");

        let watch = Arc::new(Watch::default());
        let mut wrong = chunks(&[b"hello ", b"earth", b"!"], b"hello world", Arc::clone(&watch));
        assert_eq!(&wrong.next().unwrap().unwrap()[..], b"hello ");
        let err = wrong.next().unwrap().unwrap_err();
        assert!(matches!(VerifyError::from_io(&err), Some(VerifyError::DigestMismatch { .. })), "{err}");
        assert!(wrong.next().is_none(), "nothing after a failure");
        assert!(watch.failure.lock().unwrap().is_some(), "kept for the copy");
        assert_eq!(watch.done.load(Ordering::Relaxed), 6);

        let stop = Arc::new(AtomicBool::new(false));
        let mut stopped = chunks(&[b"hello ", b"world"], b"hello world", Arc::default()).stopped_by(Arc::clone(&stop));
        assert!(stopped.next().unwrap().is_ok());
        stop.store(true, Ordering::SeqCst);
        assert!(stopped.next().unwrap().unwrap_err().to_string().contains("stopped"));
        assert!(stopped.next().is_none());
    }
}
