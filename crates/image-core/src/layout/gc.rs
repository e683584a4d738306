//! Garbage collection of blobs no manifest in `index.json` reaches.

use std::collections::HashSet;
use std::fs;
use std::time::{Duration, SystemTime};

use super::{BlobStore, OciLayout, PRIVATE_DIR};
use crate::digest::Digest;
use crate::error::{Result, io_err};
use crate::manifest::{MAX_MANIFEST_SIZE, Manifest, RawManifest};
use crate::media_type as mt;

/// What a collection removed (or, dry-run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs_removed: Vec<Digest>,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Stale temp files removed (left by killed processes).
    pub temp_files_removed: usize,
}

/// Temp files younger than this may belong to a live writer.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

impl OciLayout {
    /// The set of blobs reachable from `index.json`. Missing manifests are
    /// skipped (they cannot protect anything).
    pub fn reachable(&self) -> Result<HashSet<Digest>> {
        let mut seen = HashSet::new();
        let mut stack: Vec<_> = self.index()?.manifests;
        while let Some(desc) = stack.pop() {
            if !seen.insert(desc.digest.clone()) {
                continue;
            }
            if !(mt::is_index(&desc.media_type) || mt::is_image_manifest(&desc.media_type)) {
                continue;
            }
            let Ok(bytes) = self.read_blob(&desc.digest, MAX_MANIFEST_SIZE) else { continue };
            match RawManifest::from_descriptor(bytes, &desc).and_then(|r| r.parse()) {
                Ok(Manifest::Image(m)) => {
                    seen.insert(m.config.digest);
                    seen.extend(m.layers.into_iter().map(|l| l.digest));
                }
                Ok(Manifest::Index(i)) => stack.extend(i.manifests),
                Err(_) => {}
            }
        }
        Ok(seen)
    }

    /// Deletes unreachable blobs and stale temp files. Takes the exclusive GC lock,
    /// so it waits for imports in progress.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport> {
        let lock = self.lock_file("gc.lock")?;
        lock.lock().map_err(io_err("lock", &self.root.join(PRIVATE_DIR).join("gc.lock")))?;
        let reachable = self.reachable()?;
        let mut report = GcReport::default();
        let blobs = self.root.join("blobs");
        for alg_entry in fs::read_dir(&blobs).map_err(io_err("list", &blobs))? {
            let alg_entry = alg_entry.map_err(io_err("list", &blobs))?;
            let alg_dir = alg_entry.path();
            if !alg_dir.is_dir() {
                continue;
            }
            let alg = alg_entry.file_name().to_string_lossy().into_owned();
            for entry in fs::read_dir(&alg_dir).map_err(io_err("list", &alg_dir))? {
                let entry = entry.map_err(io_err("list", &alg_dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(digest) = Digest::parse(&format!("{alg}:{name}")) else { continue };
                if reachable.contains(&digest) {
                    continue;
                }
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if !dry_run {
                    self.delete_blob(&digest)?;
                }
                report.bytes_freed += size;
                report.blobs_removed.push(digest);
            }
        }
        let ingest = self.root.join(PRIVATE_DIR).join("ingest");
        if let Ok(entries) = fs::read_dir(&ingest) {
            let now = SystemTime::now();
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP_AGE);
                if old {
                    report.bytes_freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                    report.temp_files_removed += 1;
                    if !dry_run {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
        report.blobs_removed.sort();
        Ok(report)
    }
}
