//! The transfers (pull, push, copy, sync) for async programs. Requests
//! (tags, catalog, manifests, delete, referrers) are async already on
//! [`RegistryClient`](crate::RegistryClient); these run the streaming
//! transfer engine on a thread of its own and await its result, so the
//! caller's runtime is never blocked.

use cargohold_image_core::{CopyOptions, CopyReport, ImageLocation, ImageSource, NoProgress, Reference, Store, copy};

use crate::adapter::Registry;
use crate::open::{open_dest, open_source};
use crate::sync::{SyncImage, SyncOutcome};

/// Runs `f` on a new thread outside any runtime and awaits what it returns
/// (a panic in it is resumed here).
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.await {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => unreachable!("the worker thread always sends before it ends"),
    }
}

impl Registry {
    /// [`pull`](crate::pull) for async code.
    pub async fn pull_async(
        &self,
        reference: Reference,
        store: Store,
        opts: CopyOptions,
        jobs: usize,
    ) -> cargohold_image_core::Result<CopyReport> {
        let reg = self.clone();
        off_runtime(move || crate::pull(&reg, &reference, &store, &opts, jobs, &NoProgress)).await
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
        let reg = self.clone();
        off_runtime(move || {
            let open =
                || -> cargohold_image_core::Result<Box<dyn ImageSource + Send>> { open_source(&source, &store, &reg) };
            crate::push(&reg, &open, &target, &opts, jobs, &NoProgress)
        })
        .await
    }

    /// `copy` between any two locations, registries included, for async code.
    pub async fn copy_async(
        &self,
        source: ImageLocation,
        destination: ImageLocation,
        store: Store,
        opts: CopyOptions,
    ) -> cargohold_image_core::Result<CopyReport> {
        let reg = self.clone();
        off_runtime(move || {
            let mut src = open_source(&source, &store, &reg)?;
            let mut dst = open_dest(&destination, &store, &reg, src.name_hint().as_ref())?;
            copy(src.as_mut(), dst.as_mut(), &opts, &NoProgress)
        })
        .await
    }

    /// [`sync`](crate::sync) for async code.
    pub async fn sync_async(
        &self,
        store: Store,
        images: Vec<SyncImage>,
        opts: CopyOptions,
        jobs: usize,
    ) -> Vec<SyncOutcome> {
        let reg = self.clone();
        off_runtime(move || crate::sync(&reg, &store, &images, &opts, jobs, &|_| {})).await
    }
}
