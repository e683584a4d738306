//! Garbage collection: flats and layers that no published image uses.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cargohold_image_core::{Digest, Manifest, RawManifest};
use serde::Serialize;

use crate::backend::PublishBackend;
use crate::error::{Result, io_err};
use crate::notify::{Event, Notifier};
use crate::tree::Tree;

/// One thing collected (or that would be).
#[derive(Debug, Clone, Serialize)]
pub struct Collected {
    /// `flat` or `layer`.
    pub kind: &'static str,
    /// Its directory.
    pub path: PathBuf,
    /// Bytes deleting it frees: a flat's own files, a layer's files.
    pub bytes: u64,
}

/// What a collection did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Removed (or, with `dry_run`, removable) flats and layers.
    pub collected: Vec<Collected>,
    /// Total bytes freed.
    pub bytes: u64,
    /// Nothing was removed.
    pub dry_run: bool,
}

/// Removes the flats no public path points to and the layers no published
/// manifest lists, if they were published more than `grace` ago. Takes the
/// tree's lock, so it never races a conversion.
pub fn collect(
    tree: &Tree,
    dry_run: bool,
    grace: Duration,
    lock_timeout: Option<Duration>,
    notifier: &Notifier,
) -> Result<GcReport> {
    let _lock = tree.lock(lock_timeout, &|_| {})?;
    collect_locked(tree, dry_run, grace, notifier)
}

/// [`collect`] on any backend: for a transactional one (CernVM-FS) the
/// removals are one transaction, published, or aborted on failure.
pub fn collect_in(
    backend: &dyn PublishBackend,
    dry_run: bool,
    grace: Duration,
    lock_timeout: Option<Duration>,
    notifier: &Notifier,
) -> Result<GcReport> {
    let tree = Tree::of(backend);
    let _lock = tree.lock(lock_timeout, &|_| {})?;
    if dry_run || !backend.transactional() {
        return collect_locked(&tree, dry_run, grace, notifier);
    }
    // Nothing to remove: no transaction at all.
    if collect_locked(&tree, true, grace, notifier)?.collected.is_empty() {
        return Ok(GcReport::default());
    }
    backend.begin()?;
    match collect_locked(&tree, false, grace, notifier) {
        Ok(r) => {
            backend.commit()?;
            Ok(r)
        }
        Err(e) => {
            backend.abort();
            Err(e)
        }
    }
}

fn collect_locked(tree: &Tree, dry_run: bool, grace: Duration, notifier: &Notifier) -> Result<GcReport> {
    let root = tree.root();
    let (mut flats, mut layers) = (HashSet::new(), HashSet::new());
    // Public links -> flats; published manifests -> layers (and their flat).
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err("read", &d))? {
            let e = e.map_err(io_err("read", &d))?;
            let p = e.path();
            // Public paths live outside the dot directories, and per platform in .multiarch.
            if d == root && e.file_name().to_string_lossy().starts_with('.') && e.file_name() != ".multiarch" {
                continue;
            }
            let t = e.file_type().map_err(io_err("stat", &p))?;
            if t.is_symlink() {
                if let Ok(target) = std::fs::read_link(&p) {
                    flats.insert(normalize(&d.join(target)));
                }
            } else if t.is_dir() {
                stack.push(p);
            }
        }
    }
    let meta = root.join(".metadata");
    let mut stack = vec![meta.clone()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "manifest.json")
                && let Ok(bytes) = std::fs::read(&p)
                && let Ok(raw) = RawManifest::new(bytes, None)
                && let Ok(Manifest::Image(m)) = raw.parse()
            {
                for l in &m.layers {
                    layers.insert(tree.layer_dir(&l.digest));
                }
            }
        }
    }
    let now = SystemTime::now();
    let old_enough = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            let changed = SystemTime::UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64);
            now.duration_since(changed).unwrap_or_default() >= grace
        })
    };
    let mut report = GcReport { dry_run, ..GcReport::default() };
    for (kind, dir, keep) in [("flat", root.join(".flat"), &flats), ("layer", root.join(".layers"), &layers)] {
        for shard in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            for e in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                let p = e.path();
                let valid = e.file_name().to_str().is_some_and(|h| Digest::parse(&format!("sha256:{h}")).is_ok());
                if !valid || keep.contains(&p) || !old_enough(&p) {
                    continue;
                }
                // A flat's files are links into layers: only its own count.
                // An unused layer's files go with its flats: all count.
                let bytes = file_bytes(&p, kind == "flat");
                report.bytes += bytes;
                report.collected.push(Collected { kind, path: p, bytes });
            }
        }
    }
    if dry_run {
        return Ok(report);
    }
    for c in &report.collected {
        // Out of sight first (one rename), then deleted.
        let trash = tree.staging("gc")?;
        tree.dir().rename(&c.path, &trash.join("old"))?;
        let _ = tree.dir().remove(&trash);
        notifier.emit(&Event {
            action: "gc",
            layer: (c.kind == "layer").then(|| c.path.display().to_string()),
            image: (c.kind == "flat").then_some("(unreferenced flat)"),
            status: Some("ok"),
            size_bytes: Some(c.bytes),
            ..Event::default()
        })?;
    }
    Ok(report)
}

/// `a/b/../c` -> `a/c` without touching the filesystem.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Bytes of regular files under `dir` (with `unique`, only those with no other link).
pub(crate) fn file_bytes(dir: &Path, unique: bool) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && (!unique || m.nlink() == 1) {
                total += m.len();
            }
        }
    }
    total
}
