//! Pulling into the store and pushing to a registry: [`copy_async`] with a
//! registry at one end, layers moving `jobs` at a time, each streamed and
//! verified; the blocking functions run it on the registry's runtime.

use cargohold_image_core::{
    AsyncImageSource, CopyOptions, CopyReport, ImageLocation, Progress, Reference, Store, copy_async,
};

use crate::adapter::Registry;

/// Pulls `reference` into `store`: the layers the store lacks are
/// downloaded `jobs` at a time, each streamed and verified into the store's
/// staging area, then config, manifest and name; everything is published
/// together or not at all. The tag is resolved once.
pub fn pull(
    reg: &Registry,
    reference: &Reference,
    store: &Store,
    opts: &CopyOptions,
    jobs: usize,
    progress: &dyn Progress,
) -> cargohold_image_core::Result<CopyReport> {
    reg.block_on(reg.pull_into(reference, store, opts, jobs, progress))
}

/// Pushes the image `src` reads to `target`: layers `jobs` at a time (each
/// skipped when the registry has it, mounted when it lives in another
/// repository of the same registry, else uploaded as it is read; the
/// registry checks each against its digest, and a blob it refuses is read
/// again to name the culprit), then config and manifest, the tag last.
pub fn push(
    reg: &Registry,
    src: &dyn AsyncImageSource,
    target: &Reference,
    opts: &CopyOptions,
    jobs: usize,
    progress: &dyn Progress,
) -> cargohold_image_core::Result<CopyReport> {
    reg.block_on(reg.push_from(src, target, opts, jobs, progress))
}

/// Copies the image at `source` to `destination` (any locations,
/// registries included; the destination named after the source where it
/// does not say), `jobs` layers at a time.
pub fn copy_image(
    reg: &Registry,
    source: &ImageLocation,
    destination: &ImageLocation,
    store: &Store,
    opts: &CopyOptions,
    jobs: usize,
    progress: &dyn Progress,
) -> cargohold_image_core::Result<CopyReport> {
    reg.block_on(reg.copy_between(source, destination, store, opts, jobs, progress))
}

impl Registry {
    /// [`pull`] for async code, inside the caller's runtime.
    pub async fn pull_into(
        &self,
        reference: &Reference,
        store: &Store,
        opts: &CopyOptions,
        jobs: usize,
        progress: &dyn Progress,
    ) -> cargohold_image_core::Result<CopyReport> {
        // Taking the store's write lock may wait (a gc): not on a worker.
        let (s, r) = (store.clone(), reference.clone());
        let dest = tokio::task::spawn_blocking(move || s.dest(Some(&r)))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        copy_async(&self.source(reference), &dest, opts, jobs, progress).await
    }

    /// [`push`] for async code, inside the caller's runtime.
    pub async fn push_from(
        &self,
        src: &dyn AsyncImageSource,
        target: &Reference,
        opts: &CopyOptions,
        jobs: usize,
        progress: &dyn Progress,
    ) -> cargohold_image_core::Result<CopyReport> {
        copy_async(src, &self.dest(target), opts, jobs, progress).await
    }
}
