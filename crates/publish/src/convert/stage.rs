//! Staging: layers unpacked (in parallel) and flats built in staging
//! directories of the tree, before they are moved into place.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cargohold_image_core::{Descriptor, Digest, ImageConfig, ImageManifest};
use cargohold_layerfs::{ApplyOptions, Root, flatten_linked, stream_layers};

use super::{Publisher, error_chain, remove_quietly, sync_dir};
use crate::error::{Result, io_err};
use crate::notify::Event;

impl Publisher<'_> {
    /// Downloads and unpacks `todo` into staging directories, `jobs` at a time.
    pub(super) fn stage_layers(
        &self,
        reference: &cargohold_image_core::Reference,
        name: &str,
        todo: &[(Descriptor, Digest)],
    ) -> Result<Vec<(Descriptor, PathBuf, u64)>> {
        let next = std::sync::Mutex::new(0usize);
        let results = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.opts.jobs.max(1).min(todo.len().max(1)) {
                s.spawn(|| {
                    loop {
                        let i = {
                            let mut n = next.lock().expect("not poisoned");
                            *n += 1;
                            *n - 1
                        };
                        let Some((layer, diff_id)) = todo.get(i) else { return };
                        let r = self.stage_layer(reference, name, layer, diff_id, true);
                        let failed = r.is_err();
                        results.lock().expect("not poisoned").push(r.map(|(dir, w)| (layer.clone(), dir, w)));
                        if failed {
                            *next.lock().expect("not poisoned") = todo.len();
                        }
                    }
                });
            }
        });
        let mut ok = Vec::new();
        let mut first_err = None;
        for r in results.into_inner().expect("not poisoned") {
            match r {
                Ok(v) => ok.push(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            for (_, dir, _) in &ok {
                remove_quietly(dir);
            }
            return Err(e);
        }
        Ok(ok)
    }

    /// Unpacks one layer into a staging directory: the tree's, or, with
    /// `to_ingest` and a backend that ingests layers, the backend's (its
    /// `layerfs` is then ingested; the metadata is written in the tree later).
    pub(super) fn stage_layer(
        &self,
        reference: &cargohold_image_core::Reference,
        name: &str,
        layer: &Descriptor,
        diff_id: &Digest,
        to_ingest: bool,
    ) -> Result<(PathBuf, u64)> {
        let id = self.notifier.id();
        let start = Instant::now();
        self.notifier.emit(&Event {
            action: "start_layer_conversion",
            id: Some(id.clone()),
            image: Some(name),
            layer: Some(layer.digest.to_string()),
            ..Event::default()
        })?;
        let ingest_at = if to_ingest { self.backend.ingest_staging() } else { None };
        let dir = match &ingest_at {
            Some(at) => {
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = at.join(format!("layer.{}.{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).map_err(io_err("create the staging directory", &dir))?;
                dir
            }
            None => self.tree.staging("layer")?,
        };
        let result = (|| {
            let layerfs = dir.join("layerfs");
            std::fs::create_dir(&layerfs).map_err(io_err("create", &layerfs))?;
            let root = Root::open(&layerfs).map_err(|e| io_err("open", &layerfs)(e.into()))?;
            let mut src = self.reg.source(reference);
            let apply = ApplyOptions { keep_whiteouts: true, ..ApplyOptions::for_current_user() };
            let r = stream_layers(&mut src, &[(layer.clone(), diff_id.clone(), &root)], &apply)?;
            if ingest_at.is_none() {
                let file = dir.join(".metadata/layers.json");
                self.tree.dir().write_file(&file, &layer_metadata(layer, diff_id))?;
                sync_dir(&dir)?;
            }
            Ok(r.bytes)
        })();
        let elapsed = start.elapsed().as_secs_f64();
        let (status, error) = match &result {
            Ok(_) => ("ok", None),
            Err(e) => ("error", Some(error_chain(e))),
        };
        self.notifier.emit(&Event {
            action: "end_layer_conversion",
            id: Some(id),
            image: Some(name),
            layer: Some(layer.digest.to_string()),
            status: Some(status),
            error,
            time_elapsed_s: Some(elapsed),
            size_bytes: Some(layer.size),
            ..Event::default()
        })?;
        match result {
            Ok(written) => Ok((dir, written)),
            Err(e) => {
                remove_quietly(&dir);
                Err(e)
            }
        }
    }

    /// Builds the flat root filesystem in a staging directory: the layers
    /// stacked by hardlinks, then the Singularity/Apptainer additions.
    /// `staged` names layer trees to take instead of the tree's (layers
    /// staged by this run, when the tree cannot be read: mountless).
    pub(super) fn stage_flat(
        &self,
        name: &str,
        m: &ImageManifest,
        config: &ImageConfig,
        staged: &[(Digest, PathBuf)],
    ) -> Result<(PathBuf, u64, u64)> {
        let id = self.notifier.id();
        let start = Instant::now();
        self.notifier.emit(&Event {
            action: "start_flat_conversion",
            id: Some(id.clone()),
            image: Some(name),
            ..Event::default()
        })?;
        let dir = self.tree.staging("flat")?;
        let result = (|| {
            let layer_dirs: Vec<PathBuf> = m
                .layers
                .iter()
                .map(|l| match staged.iter().find(|(d, _)| *d == l.digest) {
                    Some((_, dir)) => dir.clone(),
                    None => self.tree.layer_dir(&l.digest).join("layerfs"),
                })
                .collect();
            let refs: Vec<&Path> = layer_dirs.iter().map(PathBuf::as_path).collect();
            let flat = flatten_linked(&refs, &dir)?;
            let written = crate::singularity::add(&dir, config)?;
            sync_dir(&dir)?;
            Ok((written + flat.copied_bytes, flat.linked_bytes))
        })();
        let (status, error) = match &result {
            Ok(_) => ("ok", None),
            Err(e) => ("error", Some(error_chain(e))),
        };
        self.notifier.emit(&Event {
            action: "end_flat_conversion",
            id: Some(id),
            image: Some(name),
            status: Some(status),
            error,
            time_elapsed_s: Some(start.elapsed().as_secs_f64()),
            size_bytes: result.as_ref().ok().map(|(w, l)| w + l),
            ..Event::default()
        })?;
        match result {
            Ok((w, l)) => Ok((dir, w, l)),
            Err(e) => {
                remove_quietly(&dir);
                Err(e)
            }
        }
    }
}

/// A layer's `.metadata/layers.json`.
pub(super) fn layer_metadata(layer: &Descriptor, diff_id: &Digest) -> Vec<u8> {
    let meta = serde_json::json!({
        "digest": layer.digest, "diffID": diff_id, "size": layer.size, "mediaType": layer.media_type,
    });
    serde_json::to_vec_pretty(&meta).expect("JSON")
}
