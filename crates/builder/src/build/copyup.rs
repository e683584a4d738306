//! The fallback where overlayfs cannot be mounted (a store on overlayfs or
//! NFS, as in many CI containers): the layers are flattened into a plain
//! directory, the step works on a full copy of it, and the difference
//! between the two (a tree diff) is written into the upper directory in
//! overlay form, so the rest of the build cannot tell the two ways apart.
//! Slower (a copy per step), never wrong. The options' `copy_up` (the
//! CLI's `CARGOHOLD_OVERLAY=0`) forces it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cargohold_layerfs::{ApplyOptions, Root, WriteOptions, apply_layer, diff_trees, upper_to_layer};

use crate::stage::inject::{InjectReport, inject_tree};
use cargohold_runtime::{in_private_mounts, mount_overlay};

/// Whether to mount a writable overlay with its upper directory under
/// `tmp`: not when `copy_up` is asked for, else if the kernel can (probed
/// once per process).
pub(crate) fn use_overlay(tmp: &Path, copy_up: bool) -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    if copy_up {
        return false;
    }
    *PROBE.get_or_init(|| {
        let Ok(dir) = tempfile::Builder::new().prefix("probe-").tempdir_in(tmp) else { return false };
        let p = |n: &str| dir.path().join(n);
        if ["lower", "upper", "work", "merged"].iter().any(|n| std::fs::create_dir(p(n)).is_err()) {
            return false;
        }
        in_private_mounts(|| mount_overlay(&[p("lower")], Some((&p("upper"), &p("work"))), &p("merged")).is_ok())
            .unwrap_or(false)
    })
}

/// Streams the tar that `produce` writes into `consume` through a pipe
/// (never on disk, never whole in memory). The producer's error wins: the
/// consumer then only saw a cut tar.
fn through_pipe(
    produce: impl FnOnce(&mut dyn Write) -> Result<(), String> + Send,
    consume: impl FnOnce(&mut dyn Read) -> Result<(), String>,
) -> Result<(), String> {
    let (reader, writer) = std::io::pipe().map_err(|e| format!("could not create a pipe: {e}"))?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, writer);
            produce(&mut w)?;
            w.flush().map_err(|e| format!("could not write a layer tar: {e}"))
        });
        let mut r = std::io::BufReader::with_capacity(1 << 20, reader);
        let consumed = consume(&mut r);
        // Whatever follows the tar's end: read it, so the producer finishes.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
        drop(r);
        let produced = producer.join().unwrap_or_else(|_| Err("the tar writer panicked".into()));
        produced.and(consumed)
    })
}

/// Applies the overlay-form layer directories `lower` (base first) to the
/// plain directory `dest`: each is read back as a layer tar (whiteouts and
/// opaque directories become `.wh.` entries) and applied.
pub(crate) fn flatten(lower: &[PathBuf], dest: &Path) -> Result<(), String> {
    let root = Root::open(dest).map_err(|e| format!("could not open {}: {e}", dest.display()))?;
    let opts = ApplyOptions::for_current_user();
    for layer in lower {
        through_pipe(
            |w| {
                upper_to_layer(layer, w, &WriteOptions::default())
                    .map(|_| ())
                    .map_err(|e| format!("could not read the layer {}: {e}", layer.display()))
            },
            |r| {
                apply_layer(&root, r, &layer.display().to_string(), &opts)
                    .map(|_| ())
                    .map_err(|e| format!("could not flatten {}: {e}", layer.display()))
            },
        )?;
    }
    Ok(())
}

/// A step's root as a copy of its flattened layers.
#[derive(Debug)]
pub(crate) struct CopyUp {
    flat: PathBuf,
    /// The directory the step changes.
    pub root: PathBuf,
}

impl CopyUp {
    /// Flattens `lower` under `dir` and copies it as the step's root.
    pub(crate) fn prepare(lower: &[PathBuf], dir: &Path) -> Result<CopyUp, String> {
        let (flat, root) = (dir.join("flat"), dir.join("root"));
        for d in [&flat, &root] {
            std::fs::create_dir(d).map_err(|e| format!("could not create {}: {e}", d.display()))?;
        }
        flatten(lower, &flat)?;
        let r = Root::open(&root).map_err(|e| format!("could not open {}: {e}", root.display()))?;
        let mut report = InjectReport::default();
        inject_tree(&r, &flat, &[], &mut report)
            .map_err(|f| format!("could not {} {}: {}", f.action, f.path.display(), f.source))?;
        Ok(CopyUp { flat, root })
    }

    /// Writes what the step changed into the overlay upper directory `upper`.
    pub(crate) fn finish(&self, upper: &Path) -> Result<(), String> {
        let up = Root::open(upper).map_err(|e| format!("could not open {}: {e}", upper.display()))?;
        let opts = ApplyOptions { overlay: true, ..ApplyOptions::for_current_user() };
        through_pipe(
            |w| {
                diff_trees(&self.flat, &self.root, w, &WriteOptions::default())
                    .map(|_| ())
                    .map_err(|e| format!("could not compare {} with its layers: {e}", self.root.display()))
            },
            |r| {
                apply_layer(&up, r, "the step's changes", &opts)
                    .map(|_| ())
                    .map_err(|e| format!("could not record the step's changes in {}: {e}", upper.display()))
            },
        )
    }
}

/// The root for a run on `lower` with `(upper, work)`: an overlay when the
/// kernel can mount one here (`tmp` is on the upper's filesystem), else a
/// [`CopyUp`] made in `scratch`, whose `finish` must follow the run.
pub(crate) fn step_root(
    tmp: &Path,
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    scratch: &Path,
    copy_up: bool,
) -> Result<(crate::exec::RootFs, Option<CopyUp>), String> {
    use crate::exec::RootFs;
    if lower.is_empty() || use_overlay(tmp, copy_up) {
        let root = RootFs::Overlay { lower: lower.to_vec(), upper: upper.to_path_buf(), work: work.to_path_buf() };
        return Ok((root, None));
    }
    let c = CopyUp::prepare(lower, scratch)?;
    Ok((RootFs::Dir(c.root.clone()), Some(c)))
}
