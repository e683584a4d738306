//! The transfers (pull, push, copy, sync) for async programs. They run on
//! the caller's runtime: [`copy_async`] over the async transports (the
//! registry's, layouts', the store's), blocking work on its blocking pool.
//! Requests (tags, catalog, manifests, delete, referrers) are async already
//! on [`RegistryClient`](crate::RegistryClient).

use cargohold_image_core::{
    CopyOptions, CopyReport, ImageLocation, NoProgress, Progress, Reference, Store, copy_async,
};

use crate::adapter::Registry;
use crate::open::{open_dest_async_tagged, open_source_async};
use crate::sync::{SyncImage, SyncOutcome};

impl Registry {
    /// [`pull`](crate::pull) for async code.
    pub async fn pull_async(
        &self,
        reference: Reference,
        store: Store,
        opts: CopyOptions,
        jobs: usize,
    ) -> cargohold_image_core::Result<CopyReport> {
        self.pull_into(&reference, &store, &opts, jobs, &NoProgress).await
    }

    /// [`push`](crate::push) of the image at `source` (the store, a
    /// layout, an archive, another registry) to `target`, for async code.
    pub async fn push_async(
        &self,
        source: ImageLocation,
        store: Store,
        target: Reference,
        opts: CopyOptions,
        jobs: usize,
    ) -> cargohold_image_core::Result<CopyReport> {
        let src = open_source_async(&source, &store, self).await?;
        self.push_from(src.as_ref(), &target, &opts, jobs, &NoProgress).await
    }

    /// Copies between any two locations, registries included, `jobs` layers
    /// at a time, for async code.
    pub async fn copy_async(
        &self,
        source: ImageLocation,
        destination: ImageLocation,
        store: Store,
        opts: CopyOptions,
        jobs: usize,
    ) -> cargohold_image_core::Result<CopyReport> {
        self.copy_between(&source, &destination, &store, &opts, jobs, &NoProgress).await
    }

    /// Copies between any two locations (the destination named after the
    /// source where it does not say), reporting to `progress`.
    pub async fn copy_between(
        &self,
        source: &ImageLocation,
        destination: &ImageLocation,
        store: &Store,
        opts: &CopyOptions,
        jobs: usize,
        progress: &dyn Progress,
    ) -> cargohold_image_core::Result<CopyReport> {
        let tags = &opts.additional_tags;
        // Before the source is opened (a registry asked, an engine's export spooled).
        cargohold_image_core::check_additional_tags(destination, tags)?;
        let src = open_source_async(source, store, self).await?;
        let dst = open_dest_async_tagged(destination, store, self, src.name_hint().as_ref(), tags).await?;
        let opts = CopyOptions { additional_tags: Vec::new(), ..opts.clone() };
        copy_async(src.as_ref(), dst.as_ref(), &opts, jobs, progress).await
    }

    /// [`sync`](crate::sync) for async code.
    pub async fn sync_async(
        &self,
        store: Store,
        images: Vec<SyncImage>,
        opts: CopyOptions,
        jobs: usize,
    ) -> Vec<SyncOutcome> {
        self.sync_images(&store, &images, &opts, jobs, &|_| {}).await
    }
}
