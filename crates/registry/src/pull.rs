//! Pulling into the store with layers downloaded in parallel.

use cargohold_image_core::{
    BlobStore, CopyOptions, CopyReport, Descriptor, ImageSource, NoProgress, Reference, StagedBlob, Store, copy,
    resolve_image,
};

use crate::adapter::Registry;

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
) -> cargohold_image_core::Result<CopyReport> {
    let mut dest = store.dest(Some(reference))?;
    let mut src = reg.source(reference);
    if !opts.all_platforms {
        let img = resolve_image(&mut src, opts.platform.as_ref())?;
        let missing: Vec<Descriptor> = img
            .image
            .layers
            .iter()
            .filter(|l| store.layout().blob_size(&l.digest).ok().flatten() != Some(l.size))
            .cloned()
            .collect();
        let staged = download(reg, reference, store, &missing, jobs.max(1))?;
        dest.adopt(staged);
    }
    copy(&mut src, &mut dest, opts, &NoProgress)
}

fn download(
    reg: &Registry,
    r: &Reference,
    store: &Store,
    layers: &[Descriptor],
    jobs: usize,
) -> cargohold_image_core::Result<Vec<StagedBlob>> {
    let mut staged = Vec::with_capacity(layers.len());
    for batch in layers.chunks(jobs) {
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|layer| {
                    s.spawn(move || {
                        let mut src = reg.source(r);
                        let mut body = src.blob(layer)?;
                        store.layout().stage_blob(&layer.digest, Some(layer.size), &mut body)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a download thread does not panic")).collect()
        });
        for r in results {
            staged.push(r?);
        }
    }
    Ok(staged)
}
