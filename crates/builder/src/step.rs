//! The one step engine of build, stage and run: the image's layers (from
//! the layer cache) under a fresh upper directory, a container run on them
//! by the [`Executor`], and afterwards the upper directory holding exactly
//! the container's changes: an overlay's upper, or where overlayfs cannot
//! be mounted the copy-up fallback's tree diff written in overlay form.
//! What becomes of the changes (a layer, a commit, nothing) is the caller's.

use std::path::{Path, PathBuf};

use crate::build::copyup::step_root;
use crate::exec::{ExecError, Executor, ProcessIo, RootFs, RunSpec};

/// Where a step runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepRoot<'a> {
    /// The store's temporary directory (on the upper's filesystem).
    pub tmp: &'a Path,
    /// The image's layer directories, base first.
    pub layers: &'a [PathBuf],
    /// Receives the changes.
    pub upper: &'a Path,
    /// overlayfs' work directory.
    pub work: &'a Path,
    /// A scratch directory of the step (the copy-up fallback's copy).
    pub scratch: &'a Path,
    /// Never mount a writable overlay.
    pub copy_up: bool,
    /// Whether the changes are wanted after a successful run (the copy-up
    /// fallback then writes its diff into `upper`).
    pub keep: bool,
}

/// Why a step's container could not run (its exit code is not an error).
#[derive(Debug)]
pub(crate) enum StepFailure {
    /// Preparing the root or recording the changes failed.
    Root(String),
    /// The executor failed.
    Exec(ExecError),
}

/// Runs the container `spec` makes for the step's root and returns its exit
/// code; after a 0 with `keep`, `upper` holds the changes.
pub(crate) fn run_step(
    executor: &dyn Executor,
    at: StepRoot<'_>,
    spec: impl FnOnce(RootFs) -> RunSpec,
    io: ProcessIo,
) -> Result<i32, StepFailure> {
    run_step_with(at, spec, |spec| executor.run(spec, io))
}

/// [`run_step`] with the container run by `run` (a booted system, say).
pub(crate) fn run_step_with(
    at: StepRoot<'_>,
    spec: impl FnOnce(RootFs) -> RunSpec,
    run: impl FnOnce(&RunSpec) -> Result<i32, ExecError>,
) -> Result<i32, StepFailure> {
    let (root, copyup) =
        step_root(at.tmp, at.layers, at.upper, at.work, at.scratch, at.copy_up).map_err(StepFailure::Root)?;
    let code = run(&spec(root)).map_err(StepFailure::Exec)?;
    if code == 0
        && at.keep
        && let Some(c) = copyup
    {
        c.finish(at.upper).map_err(StepFailure::Root)?;
    }
    Ok(code)
}
