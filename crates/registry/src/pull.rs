//! Pulling into the store and pushing to a registry with layers moved in
//! parallel, each one streamed and verified.

use std::sync::Mutex;

use cargohold_image_core::{
    BlobKind, BlobStore, CopyOptions, CopyReport, Descriptor, ImageDest, ImageSource, Progress, ProgressReader,
    Reference, Store, VerifyingReader, WatchedReader, copy, resolve_image,
};

use crate::adapter::Registry;

/// Opens a fresh source of the image being pushed, once per worker thread.
pub type OpenSource<'a> = dyn Fn() -> cargohold_image_core::Result<Box<dyn ImageSource + Send>> + Sync + 'a;

/// Pulls `reference` into `store`: the missing layers of the chosen platform
/// are downloaded `jobs` at a time, each streamed and verified into the
/// store's staging area; then the usual `copy` records config, manifest and
/// name, and everything is published together or not at all.
pub fn pull(
    reg: &Registry,
    reference: &Reference,
    store: &Store,
    opts: &CopyOptions,
    jobs: usize,
    progress: &dyn Progress,
) -> cargohold_image_core::Result<CopyReport> {
    let mut dest = store.dest(Some(reference))?;
    let mut src = reg.source(reference);
    let mut fetched: Vec<Descriptor> = Vec::new();
    if !opts.all_platforms {
        let img = resolve_image(&mut src, opts.platform.as_ref())?;
        let mut seen = std::collections::HashSet::new();
        let missing: Vec<Descriptor> = img
            .image
            .layers
            .iter()
            .filter(|l| seen.insert(l.digest.clone()))
            .filter(|l| store.layout().blob_size(&l.digest).ok().flatten() != Some(l.size))
            .cloned()
            .collect();
        let staged = parallel(&missing, jobs, |layer| {
            progress.blob_started(layer);
            let mut src = reg.source(reference);
            let location = src.blob_location(layer);
            let body = src.blob(layer)?;
            let mut watched = WatchedReader::new(ProgressReader::new(body, layer, progress));
            let staged = store.layout().stage_blob(&layer.digest, Some(layer.size), &mut watched);
            if let Some(e) = watched.failure() {
                return Err(cargohold_image_core::Error::blob_read(&layer.digest, &location, e));
            }
            progress.blob_done(layer);
            staged
        })?;
        dest.adopt(staged);
        fetched = missing;
    }
    let mut report = copy(&mut src, &mut dest, opts, progress)?;
    account(&mut report, fetched.len(), 0, fetched.iter().map(|l| l.size).sum());
    Ok(report)
}

/// What happened to one layer of a push.
enum Sent {
    Present,
    Mounted,
    Uploaded(u64),
}

/// Pushes the image `open_src` reads to `target`: the layers `jobs` at a
/// time (each skipped when the registry has it, mounted when it lives in
/// another repository of the same registry, else uploaded as it is read and
/// verified), then config and manifest through `copy`, the tag last.
pub fn push(
    reg: &Registry,
    open_src: &OpenSource<'_>,
    target: &Reference,
    opts: &CopyOptions,
    jobs: usize,
    progress: &dyn Progress,
) -> cargohold_image_core::Result<CopyReport> {
    let mut src = open_src()?;
    let mut outcomes = Vec::new();
    if !opts.all_platforms {
        let img = resolve_image(src.as_mut(), opts.platform.as_ref())?;
        let mut seen = std::collections::HashSet::new();
        let layers: Vec<(usize, Descriptor)> =
            img.image.layers.iter().cloned().enumerate().filter(|(_, l)| seen.insert(l.digest.clone())).collect();
        outcomes = parallel(&layers, jobs, |(i, layer)| {
            let lock = reg.blob_lock(target, &layer.digest);
            let _sending = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut dst = reg.dest(target);
            if dst.has_blob(layer)? {
                progress.blob_skipped(layer);
                return Ok(Sent::Present);
            }
            let mut src = open_src()?;
            if let Some(from) = src.registry_repository()
                && dst.mount_blob(layer, &from)?
            {
                progress.blob_skipped(layer);
                return Ok(Sent::Mounted);
            }
            progress.blob_started(layer);
            let location = src.blob_location(layer);
            let body = src.blob(layer)?;
            let verifying = VerifyingReader::new(
                ProgressReader::new(body, layer, progress),
                layer.digest.clone(),
                Some(layer.size),
            );
            let mut watched = WatchedReader::new(verifying);
            let result = dst.put_blob(layer, BlobKind::Layer(*i), &mut watched);
            if let Some(e) = watched.failure() {
                return Err(cargohold_image_core::Error::blob_read(&layer.digest, &location, e));
            }
            result?;
            progress.blob_done(layer);
            Ok(Sent::Uploaded(layer.size))
        })?;
    }
    let mut report = copy(src.as_mut(), &mut reg.dest(target), opts, progress)?;
    let (mut sent, mut mounted, mut bytes) = (0, 0, 0);
    for o in &outcomes {
        match o {
            Sent::Present => {}
            Sent::Mounted => mounted += 1,
            Sent::Uploaded(n) => {
                sent += 1;
                bytes += n;
            }
        }
    }
    account(&mut report, sent, mounted, bytes);
    Ok(report)
}

/// `copy` saw the blobs moved beforehand as present; count them as moved.
fn account(report: &mut CopyReport, copied: usize, mounted: usize, bytes: u64) {
    report.blobs_skipped = report.blobs_skipped.saturating_sub(copied + mounted);
    report.blobs_copied += copied;
    report.blobs_mounted += mounted;
    report.bytes_copied += bytes;
}

/// Runs `work` on every item with up to `jobs` threads, in order of the
/// items; the first error wins (the others still finish their item).
fn parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> cargohold_image_core::Result<R> + Sync,
) -> cargohold_image_core::Result<Vec<R>> {
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<cargohold_image_core::Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().expect("not poisoned");
                        if *n >= items.len() || failed.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let r = work(&items[i]);
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    results.lock().expect("not poisoned")[i] = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    let mut first_err = None;
    for r in results.into_inner().expect("not poisoned").into_iter().flatten() {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
