//! Converting images into the publish tree: layers unpacked once each (in
//! parallel, staged, moved into place under the tree's lock), the flat root
//! filesystem made of hardlinks into them, metadata and the public symlink last.

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use cargohold_image_core::{
    Descriptor, Digest, ImageConfig, ImageManifest, ImageSource, ImageUrl, MAX_CONFIG_SIZE, Manifest, Platform,
    RawManifest, VerifyingReader,
};
use cargohold_registry::Registry;
use serde::Serialize;

use crate::backend::{LocalDir, PublishBackend};
use crate::error::{Error, Result, io_err};
use crate::notify::{Event, Notifier};
use crate::thin::{ThinOptions, push_thin};
use crate::tree::{Tree, relative};
use crate::wishlist::{WishInput, Wishlist, expand_output};

mod manage;
mod podman_store;
mod scrub;
mod stage;

pub use manage::{PruneOutcome, expand};
pub use podman_store::create_podman_store;
pub use scrub::ScrubReport;
use scrub::{fingerprint, flat_check_file};

/// The input as a URL (`scheme://registry/repo:tag@digest`), the thin image's origin.
fn url_text(url: &ImageUrl) -> String {
    let mut s = format!("{}://{}/{}", url.scheme, url.registry, url.repository);
    if let Some(t) = &url.tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = &url.digest {
        s.push('@');
        s.push_str(d.as_str());
    }
    s
}

/// How to convert.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Layers downloaded and unpacked at once (default 4).
    pub jobs: usize,
    /// Do not build `.flat` trees (layers and metadata only).
    pub skip_flat: bool,
    /// Do not add images to the tree's podman store (`podmanStore/`).
    pub skip_podman: bool,
    /// Convert images whose config has not changed too.
    pub convert_again: bool,
    /// Unpack layers again even when their `layerfs` exists.
    pub overwrite_layers: bool,
    /// Give up waiting for the tree's lock after this long (default: wait).
    pub lock_timeout: Option<Duration>,
    /// Platform to pick from multi-platform images (default: the host's).
    pub platform: Option<Platform>,
    /// Also publish every platform of multi-platform images under `.multiarch`.
    pub multi_arch: bool,
}

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Converted and published.
    Converted,
    /// Already published with the same config: nothing downloaded.
    Skipped,
    /// Failed; the tree is as it was for this image.
    Failed,
}

/// The outcome of one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// `registry/repository:tag` (or `@digest`).
    pub image: String,
    /// Converted, skipped or failed.
    pub status: Status,
    /// Why it failed.
    pub error: Option<String>,
    /// A failure the wish list's `ignoreErrors` covers (it does not fail the run).
    pub ignored: bool,
    /// The tree's copy had been changed since it was published (its flat no
    /// longer matched what was written): it was converted again.
    pub damaged: bool,
    /// The (platform) manifest published.
    pub manifest: Option<Digest>,
    /// Its config.
    pub config: Option<Digest>,
    /// Layers unpacked by this run.
    pub layers_new: usize,
    /// Layers already in the tree.
    pub layers_reused: usize,
    /// Compressed bytes downloaded.
    pub bytes_downloaded: u64,
    /// File bytes written (new layers, the flat's own files).
    pub bytes_written: u64,
    /// File bytes of the flat shared with the layers by hardlinks (not written).
    pub bytes_deduplicated: u64,
    /// The thin image pushed (or found already pushed) for it.
    pub thin_image: Option<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl ImageReport {
    fn new(image: String) -> Self {
        ImageReport {
            image,
            status: Status::Failed,
            error: None,
            ignored: false,
            damaged: false,
            manifest: None,
            config: None,
            layers_new: 0,
            layers_reused: 0,
            bytes_downloaded: 0,
            bytes_written: 0,
            bytes_deduplicated: 0,
            thin_image: None,
            seconds: 0.0,
        }
    }
}

/// The tree's podman additional image store (DUCC's `podmanStore`).
pub const PODMAN_STORE: &str = "podmanStore";

/// Converts images into one publish tree.
pub struct Publisher<'a> {
    tree: Tree,
    reg: &'a Registry,
    opts: PublishOptions,
    notifier: Notifier,
    waiting: Box<dyn Fn(&Path) + Sync + 'a>,
    thin: Option<(&'a Registry, ThinOptions)>,
    stop: Option<&'a std::sync::atomic::AtomicBool>,
    backend: Box<dyn PublishBackend + 'a>,
    /// Flat fingerprints taken during one wish list's run (tags of one
    /// image share a flat: it is walked once).
    fingerprints: std::sync::Mutex<Option<std::collections::HashMap<std::path::PathBuf, Option<String>>>>,
}

/// `registry/repository:tag`, or `@digest` without a tag: the public name.
pub fn public_name(url: &ImageUrl) -> String {
    match (&url.tag, &url.digest) {
        (Some(t), _) => format!("{}/{}:{t}", url.registry, url.repository),
        (None, Some(d)) => format!("{}/{}@{d}", url.registry, url.repository),
        (None, None) => format!("{}/{}:latest", url.registry, url.repository),
    }
}

/// The error and its causes, one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        next = c.source();
    }
    s
}

impl<'a> Publisher<'a> {
    /// A publisher for the tree at `root`, reading through `reg`, writing
    /// notifications to `notifications` when given.
    pub fn new(root: &Path, reg: &'a Registry, opts: PublishOptions, notifications: Option<&Path>) -> Result<Self> {
        Self::with_backend(Box::new(LocalDir::new(root)?), reg, opts, notifications)
    }

    /// A publisher for any backend (a plain directory, a CernVM-FS repository).
    pub fn with_backend(
        backend: Box<dyn PublishBackend + 'a>,
        reg: &'a Registry,
        opts: PublishOptions,
        notifications: Option<&Path>,
    ) -> Result<Self> {
        let tree = Tree::of(backend.as_ref());
        clean_stale_staging(&tree);
        Ok(Publisher {
            tree,
            reg,
            opts,
            notifier: Notifier::new(notifications),
            waiting: Box::new(|_| {}),
            thin: None,
            stop: None,
            backend,
            fingerprints: std::sync::Mutex::new(None),
        })
    }

    /// Called once when the tree's lock is busy and we start waiting.
    pub fn on_lock_wait(mut self, f: impl Fn(&Path) + Sync + 'a) -> Self {
        self.waiting = Box::new(f);
        self
    }

    /// Push a thin image of every converted image, through `reg` (which
    /// carries the output registry's credentials).
    pub fn with_thin_images(mut self, reg: &'a Registry, opts: ThinOptions) -> Self {
        self.thin = Some((reg, opts));
        self
    }

    /// Stop converting a wish list (after the image at hand) once `flag` is set.
    pub fn with_stop_flag(mut self, flag: &'a std::sync::atomic::AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    fn stopped(&self) -> bool {
        self.stop.is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The concrete images an input names: itself, or for a `*` pattern every
    /// matching tag of the repository (the full, paginated list).
    pub fn expand(&self, input: &WishInput) -> Result<Vec<ImageUrl>> {
        expand(self.reg, &input.url)
    }

    /// Converts every input of the wish list; one report per concrete image
    /// (a pattern that cannot be expanded gives one failed report).
    pub fn convert_wishlist(&self, w: &Wishlist) -> Vec<ImageReport> {
        *self.fingerprints.lock().expect("not poisoned") = Some(Default::default());
        let out = self.convert_wishlist_inner(w);
        *self.fingerprints.lock().expect("not poisoned") = None;
        out
    }

    /// The fingerprint of a published flat, walked once per wish list run.
    fn flat_fingerprint(&self, flat: &Path) -> Option<String> {
        if let Some(known) = self.fingerprints.lock().expect("not poisoned").as_ref().and_then(|m| m.get(flat)) {
            return known.clone();
        }
        let f = fingerprint(flat);
        if let Some(m) = self.fingerprints.lock().expect("not poisoned").as_mut() {
            m.insert(flat.to_path_buf(), f.clone());
        }
        f
    }

    /// Forgets a flat's fingerprint (it was just written).
    fn forget_fingerprint(&self, flat: &Path) {
        if let Some(m) = self.fingerprints.lock().expect("not poisoned").as_mut() {
            m.remove(flat);
        }
    }

    fn convert_wishlist_inner(&self, w: &Wishlist) -> Vec<ImageReport> {
        let mut out = Vec::new();
        for input in &w.inputs {
            if self.stopped() {
                break;
            }
            let first = out.len();
            match self.expand(input) {
                Ok(urls) => {
                    for u in &urls {
                        if self.stopped() {
                            break;
                        }
                        out.extend(self.convert_image_all(u));
                    }
                }
                Err(e) => {
                    let mut r = ImageReport::new(input.text.clone());
                    r.error = Some(format!("line {}: {}", input.line, error_chain(&e)));
                    self.end_image(None, &r);
                    out.push(r);
                }
            }
            for r in &mut out[first..] {
                r.ignored = r.status == Status::Failed && w.ignores(&input.text, &r.image);
            }
        }
        out
    }

    /// Converts one image (a tag or digest, no pattern). Never panics on bad
    /// input: failures are reported, and leave the tree as it was.
    pub fn convert_image(&self, url: &ImageUrl) -> ImageReport {
        self.convert_one(url, None)
    }

    /// Like [`Publisher::convert_image`]; with `multi_arch`, a multi-platform
    /// image also gets one flat per platform, linked from
    /// `.multiarch/<arch>[:<variant>]/<registry>/<repo>:<tag>` (the public
    /// path stays the host's platform): one report per platform, then the host's.
    pub fn convert_image_all(&self, url: &ImageUrl) -> Vec<ImageReport> {
        let mut out = Vec::new();
        if self.opts.multi_arch {
            let platforms = url
                .to_reference()
                .map_err(cargohold_image_core::Error::from)
                .and_then(|r| self.reg.source(&r).top_manifest())
                .and_then(|top| Ok(top.parse()?));
            match platforms {
                Ok(Manifest::Index(idx)) => {
                    for p in idx.manifests.iter().filter_map(|d| d.platform.as_ref()) {
                        if p.architecture == "unknown" || p.architecture.is_empty() {
                            continue; // attestations and the like
                        }
                        // The registry names the platform: it becomes a
                        // directory only when it is a plain name.
                        if let Err(why) = arch_dir(p) {
                            let mut r = ImageReport::new(public_name(url));
                            r.error = Some(why);
                            out.push(r);
                            continue;
                        }
                        out.push(self.convert_one(url, Some(p)));
                    }
                }
                Ok(Manifest::Image(_)) => {}
                Err(e) => {
                    let mut r = ImageReport::new(public_name(url));
                    r.error = Some(error_chain(&e));
                    return vec![r];
                }
            }
        }
        out.push(self.convert_image(url));
        out
    }

    fn convert_one(&self, url: &ImageUrl, platform: Option<&Platform>) -> ImageReport {
        let start = Instant::now();
        let name = match platform {
            Some(p) => match arch_dir(p) {
                Ok(dir) => format!(".multiarch/{dir}/{}", public_name(url)),
                Err(why) => {
                    let mut r = ImageReport::new(public_name(url));
                    r.error = Some(why);
                    return r;
                }
            },
            None => public_name(url),
        };
        let mut report = ImageReport::new(name.clone());
        let id = self.notifier.id();
        let begun = self.notifier.emit(&Event {
            action: "start_image_conversion",
            id: Some(id.clone()),
            image: Some(&name),
            ..Event::default()
        });
        if let Err(e) = begun.and_then(|()| self.convert_inner(url, platform, &mut report)) {
            report.status = Status::Failed;
            report.error = Some(error_chain(&e));
        }
        report.seconds = start.elapsed().as_secs_f64();
        self.end_image(Some(id), &report);
        report
    }

    /// The closing line of an image, whatever became of it (a failure to
    /// write it is the image's failure too, but cannot be reported there).
    fn end_image(&self, id: Option<String>, report: &ImageReport) {
        let result = match report.status {
            Status::Converted => "converted",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        };
        let _ = self.notifier.emit(&Event {
            action: "end_image_conversion",
            id,
            image: Some(&report.image),
            status: Some(if report.status == Status::Failed { "error" } else { "ok" }),
            error: report.error.clone(),
            time_elapsed_s: Some(report.seconds),
            extra: vec![("result", result.to_owned())],
            ..Event::default()
        });
    }

    /// Runs `work` between a `start_run` and an `end_run` line (with the
    /// counts of images, converted, skipped, failed and ignored).
    pub fn run(&self, work: impl FnOnce(&Self) -> Vec<ImageReport>) -> Vec<ImageReport> {
        let id = self.notifier.id();
        let start = Instant::now();
        let _ = self.notifier.emit(&Event { action: "start_run", id: Some(id.clone()), ..Event::default() });
        let reports = work(self);
        let count = |st: Status| reports.iter().filter(|r| r.status == st).count().to_string();
        let failed = reports.iter().filter(|r| r.status == Status::Failed && !r.ignored).count();
        let _ = self.notifier.emit(&Event {
            action: "end_run",
            id: Some(id),
            status: Some(if failed == 0 { "ok" } else { "error" }),
            time_elapsed_s: Some(start.elapsed().as_secs_f64()),
            extra: vec![
                ("images", reports.len().to_string()),
                ("converted", count(Status::Converted)),
                ("skipped", count(Status::Skipped)),
                ("failed", failed.to_string()),
                ("ignored", reports.iter().filter(|r| r.ignored).count().to_string()),
            ],
            ..Event::default()
        });
        reports
    }

    fn convert_inner(&self, url: &ImageUrl, platform: Option<&Platform>, report: &mut ImageReport) -> Result<()> {
        let name = report.image.clone();
        let reference = url.to_reference().map_err(cargohold_image_core::Error::from)?;
        let mut src = self.reg.source(&reference);
        let (raw, m) = self.platform_manifest(&mut src, platform)?;
        report.manifest = Some(raw.digest.clone());
        report.config = Some(m.config.digest.clone());
        let meta_file = self.tree.metadata_dir(&name).join("manifest.json");
        let flat = self.tree.flat_dir(&m.config.digest);
        let link = self.tree.public_path(&name);
        let link_target = relative(link.parent().expect("under the root"), &flat);
        let check_file = flat_check_file(&self.tree, &m.config.digest);
        let mut damaged = false;
        if !self.opts.convert_again && stored_config(&meta_file).as_ref() == Some(&m.config.digest) {
            let published = self.opts.skip_flat
                || (flat.is_dir() && std::fs::read_link(&link).ok().as_deref() == Some(link_target.as_path()));
            // What the flat was when published (names, sizes, times, inodes):
            // a file changed in place since is noticed, not reported skipped.
            if published && !self.opts.skip_flat {
                damaged = std::fs::read_to_string(&check_file)
                    .ok()
                    .is_some_and(|was| self.flat_fingerprint(&flat).is_some_and(|now| now != was.trim()));
                report.damaged = damaged;
            }
            if published && !damaged {
                report.status = Status::Skipped;
                report.layers_reused = m.layers.len();
                self.notifier.emit(&Event { action: "skip_image", image: Some(&name), ..Event::default() })?;
                // A thin image lost since (or never pushed): push it now.
                if let Some((treg, t)) = &self.thin {
                    let target = self.thin_target(url, t)?;
                    let have = treg.block_on(treg.client().head_manifest(
                        target.registry(),
                        target.repository(),
                        target.tag().unwrap_or("latest"),
                    ))?;
                    if have.is_none() {
                        let config = read_config(&mut src, &m)?;
                        push_thin(treg, &target, &t.cvmfs_repo, &url_text(url), &m, &config)?;
                    }
                    report.thin_image = Some(target.to_string());
                }
                return Ok(());
            }
        }
        let (config, config_bytes) = read_config_bytes(&mut src, &m)?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != m.layers.len() {
            return Err(cargohold_image_core::Error::Manifest(cargohold_image_core::ManifestError::Invalid {
                what: format!("image {name}"),
                reason: format!("{} layers but the config lists {} diff IDs", m.layers.len(), diff_ids.len()),
            })
            .into());
        }
        // A backend that ingests layers (CernVM-FS, as DUCC) gets each new
        // one first, outside the image's transaction.
        let mut ingested: Vec<(Descriptor, Digest)> = Vec::new();
        let mut kept = KeptLayers(Vec::new());
        if self.backend.ingest_staging().is_some() {
            let mut seen = std::collections::HashSet::new();
            let mut todo: Vec<(Descriptor, Digest)> = Vec::new();
            for (l, d) in m.layers.iter().zip(diff_ids) {
                let present = self.tree.layer_dir(&l.digest).join("layerfs").is_dir();
                if seen.insert(l.digest.clone()) && (self.opts.overwrite_layers || damaged || !present) {
                    todo.push((l.clone(), d.clone()));
                }
            }
            let staged = self.stage_layers(&reference, &name, &todo)?;
            let _lock = self.tree.lock(self.opts.lock_timeout, &*self.waiting)?;
            let mut result = Ok(());
            for (layer, dir, written) in &staged {
                if result.is_ok() {
                    let target = self.tree.layer_dir(&layer.digest).join("layerfs");
                    result = self.backend.ingest(&dir.join("layerfs"), &target);
                    if result.is_ok() {
                        self.layer_published(report, &name, layer, *written)?;
                        let diff = todo.iter().find(|(l, _)| l.digest == layer.digest).map(|(_, d)| d.clone());
                        ingested.push((layer.clone(), diff.expect("staged from todo")));
                    }
                }
                // Without a mount the flat is built from the staged copy.
                if result.is_ok() && self.tree.shadowed() {
                    kept.0.push((layer.digest.clone(), dir.join("layerfs")));
                } else {
                    remove_quietly(dir);
                }
            }
            result?;
        }
        self.transaction(|in_txn| -> Result<()> {
            // Layers: stage the missing ones in parallel, then move them in.
            let mut seen = std::collections::HashSet::new();
            let mut todo: Vec<(Descriptor, Digest)> = Vec::new();
            for (l, d) in m.layers.iter().zip(diff_ids) {
                if !seen.insert(l.digest.clone()) {
                    continue;
                }
                if let Some((l, d)) = ingested.iter().find(|(i, _)| i.digest == l.digest) {
                    let file = self.tree.layer_dir(&l.digest).join(".metadata/layers.json");
                    self.tree.dir().write_file(&file, &stage::layer_metadata(l, d))?;
                    continue;
                }
                if !self.opts.overwrite_layers && !damaged && self.tree.layer_dir(&l.digest).join("layerfs").is_dir() {
                    report.layers_reused += 1;
                } else {
                    todo.push((l.clone(), d.clone()));
                }
            }
            let staged = self.stage_layers(&reference, &name, &todo)?;
            {
                let _lock = self.section_lock(in_txn)?;
                for (layer, dir, written) in &staged {
                    let target = self.tree.layer_dir(&layer.digest);
                    if target.join("layerfs").is_dir() && !self.opts.overwrite_layers && !damaged {
                        // Another publisher finished it first: keep theirs.
                        remove_quietly(dir);
                        report.layers_reused += 1;
                        continue;
                    }
                    self.backend.new_subtree(dir)?;
                    move_into_place(&self.tree, dir, &target)?;
                    self.layer_published(report, &name, layer, *written)?;
                }
            }
            // The flat image, from the layers in place.
            if !self.opts.skip_flat && (self.opts.convert_again || damaged || !flat.is_dir()) {
                let (dir, written, linked) = self.stage_flat(&name, &m, &config, &kept.0)?;
                let _lock = self.section_lock(in_txn)?;
                self.backend.new_subtree(&dir)?;
                move_into_place(&self.tree, &dir, &flat)?;
                self.forget_fingerprint(&flat);
                // (A shadowed flat is not where it will be read: no check.)
                if !self.tree.shadowed()
                    && let Some(f) = fingerprint(&flat)
                {
                    self.tree.dir().write_file(&check_file, f.as_bytes())?;
                }
                report.bytes_written += written;
                report.bytes_deduplicated += linked;
            } else if !self.opts.skip_flat {
                report.bytes_deduplicated += crate::gc::file_bytes(&flat, false);
            }
            // Metadata and the public path, last.
            let _lock = self.section_lock(in_txn)?;
            for l in &m.layers {
                add_origin(&self.tree, &self.tree.layer_dir(&l.digest), &m.config.digest, &name)?;
            }
            self.tree.dir().write_file(&meta_file, &raw.bytes)?;
            if !self.opts.skip_flat {
                // A flat published before flats had checks gets one now.
                if !check_file.exists()
                    && !self.tree.shadowed()
                    && let Some(f) = fingerprint(&flat)
                {
                    self.tree.dir().write_file(&check_file, f.as_bytes())?;
                }
                self.tree.dir().set_symlink(&link, &link_target)?;
                self.notifier.emit(&Event {
                    action: "publish_flat_image",
                    image: Some(&name),
                    status: Some("ok"),
                    ..Event::default()
                })?;
                if !self.opts.skip_podman && platform.is_none() {
                    // The tree's podman store: the flat as one layer.
                    let image = crate::podman::PodmanImage {
                        name: crate::podman::podman_name(&name),
                        manifest: (&raw.bytes, &raw.digest),
                        config: (&config_bytes, &m.config.digest),
                    };
                    let store = self.tree.root().join(PODMAN_STORE);
                    let target = relative(&store.join("overlay/layer"), &flat);
                    let size = report.bytes_written + report.bytes_deduplicated;
                    self.tree.dir().create_dir_all(&store)?;
                    crate::podman::add_image(&self.tree.dir(), &store, &image, &target, size)?;
                }
            }
            Ok(())
        })?;
        if let Some((treg, t)) = &self.thin {
            let target = self.thin_target(url, t)?;
            push_thin(treg, &target, &t.cvmfs_repo, &url_text(url), &m, &config)?;
            report.thin_image = Some(target.to_string());
        }
        report.status = Status::Converted;
        Ok(())
    }

    /// Runs `work` as one transaction of a transactional backend: the tree's
    /// lock held from `begin` to `commit`, `abort` on an error; `work` is
    /// told whether it runs in one (a plain directory locks only around its
    /// moves, [`Publisher::section_lock`]).
    /// A new layer is in the tree: its notification and counts.
    fn layer_published(&self, report: &mut ImageReport, name: &str, layer: &Descriptor, written: u64) -> Result<()> {
        self.notifier.emit(&Event {
            action: "publish_layer",
            image: Some(name),
            extra: vec![("layer_digest", layer.digest.hex().to_owned())],
            ..Event::default()
        })?;
        report.layers_new += 1;
        report.bytes_downloaded += layer.size;
        report.bytes_written += written;
        Ok(())
    }

    fn transaction<T>(&self, work: impl FnOnce(bool) -> Result<T>) -> Result<T> {
        if !self.backend.transactional() {
            return work(false);
        }
        let _lock = self.tree.lock(self.opts.lock_timeout, &*self.waiting)?;
        self.backend.begin()?;
        let done = work(true);
        match &done {
            Ok(_) => self.backend.commit()?,
            Err(_) => self.backend.abort(),
        }
        done
    }

    /// The lock for one section of writes, unless a transaction holds it already.
    fn section_lock(&self, in_txn: bool) -> Result<Option<crate::tree::TreeLock>> {
        if in_txn {
            return Ok(None);
        }
        self.tree.lock(self.opts.lock_timeout, &*self.waiting).map(Some)
    }

    fn thin_target(&self, url: &ImageUrl, t: &ThinOptions) -> Result<cargohold_image_core::Reference> {
        let text = expand_output(&t.output_format, url, url.tag.as_deref(), url.digest.as_ref());
        let out = ImageUrl::parse(&text).map_err(|e| Error::Wishlist {
            path: "output_format".into(),
            reason: format!("{text:?} is not an image reference: {e}"),
        })?;
        let mut r = out.to_reference().map_err(cargohold_image_core::Error::from)?;
        if r.tag().is_none() {
            r = r.with_tag("latest").map_err(cargohold_image_core::Error::from)?;
        }
        Ok(r)
    }

    /// The top manifest, or the chosen platform's manifest of an index.
    fn platform_manifest(
        &self,
        src: &mut dyn ImageSource,
        platform: Option<&Platform>,
    ) -> Result<(RawManifest, ImageManifest)> {
        let want = platform.or(self.opts.platform.as_ref()).cloned().unwrap_or_else(Platform::host);
        platform_manifest_of(src, &want)
    }
}

/// `<arch>` or `<arch>:<variant>`, the `.multiarch` directory of a platform;
/// an error when the registry's strings are not plain names (letters,
/// digits, `.`, `_`, `-`; not `.` or `..`), which could leave the tree.
fn arch_dir(p: &Platform) -> Result<String, String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s != "."
            && s != ".."
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if !plain(&p.architecture) {
        return Err(format!("the registry's platform architecture {:?} is not a plain name: refused", p.architecture));
    }
    match &p.variant {
        Some(v) if !v.is_empty() && !plain(v) => {
            Err(format!("the registry's platform variant {v:?} is not a plain name: refused"))
        }
        Some(v) if !v.is_empty() => Ok(format!("{}:{v}", p.architecture)),
        _ => Ok(p.architecture.clone()),
    }
}

/// The config digest recorded in a published `manifest.json`.
fn stored_config(meta_file: &Path) -> Option<Digest> {
    let bytes = std::fs::read(meta_file).ok()?;
    let raw = RawManifest::new(bytes, None).ok()?;
    match raw.parse().ok()? {
        Manifest::Image(m) => Some(m.config.digest),
        Manifest::Index(_) => None,
    }
}

fn read_config(src: &mut dyn ImageSource, m: &ImageManifest) -> Result<ImageConfig> {
    read_config_bytes(src, m).map(|(c, _)| c)
}

/// The config, and its bytes as the registry sent them (verified).
fn read_config_bytes(src: &mut dyn ImageSource, m: &ImageManifest) -> Result<(ImageConfig, Vec<u8>)> {
    if m.config.size > MAX_CONFIG_SIZE {
        return Err(cargohold_image_core::Error::TooLarge {
            what: format!("config {}", m.config.digest),
            size: m.config.size,
            limit: MAX_CONFIG_SIZE,
        }
        .into());
    }
    let location = src.blob_location(&m.config);
    let mut bytes = Vec::new();
    VerifyingReader::new(src.blob(&m.config)?, m.config.digest.clone(), Some(m.config.size))
        .read_to_end(&mut bytes)
        .map_err(|e| cargohold_image_core::Error::blob_read(&m.config.digest, &location, e))?;
    let config = ImageConfig::from_slice(&bytes, &format!("config {}", m.config.digest))?;
    Ok((config, bytes))
}

/// Renames the staged directory `dir` to `target`, swapping out (and then
/// deleting) what was there. Readers see the old tree or the new one. Both
/// are reached through the tree's own directories, never a symlink.
fn move_into_place(tree: &Tree, dir: &Path, target: &Path) -> Result<()> {
    let d = tree.dir();
    if d.exists(target)? {
        let trash = tree.staging("trash")?;
        d.rename(target, &trash.join("old"))?;
        d.rename(dir, target)?;
        let _ = d.remove(&trash);
        return Ok(());
    }
    d.rename(dir, target)
}

/// Records in `.metadata/origin.json` of a layer that `config` (image `name`) uses it.
fn add_origin(tree: &Tree, layer_dir: &Path, config: &Digest, name: &str) -> Result<()> {
    let file = layer_dir.join(".metadata/origin.json");
    let mut v: serde_json::Value = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({"configs": [], "images": []}));
    let mut changed = false;
    for (key, value) in [("configs", config.to_string()), ("images", name.to_owned())] {
        let list = v.get_mut(key).and_then(|l| l.as_array_mut());
        match list {
            Some(l) if l.iter().any(|x| x.as_str() == Some(value.as_str())) => {}
            Some(l) => {
                l.push(serde_json::Value::String(value));
                changed = true;
            }
            None => {
                v[key] = serde_json::json!([value]);
                changed = true;
            }
        }
    }
    if changed {
        tree.dir().write_file(&file, &serde_json::to_vec_pretty(&v).expect("JSON"))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    let f = std::fs::File::open(dir).map_err(io_err("open", dir))?;
    rustix::fs::syncfs(&f).map_err(|e| io_err("sync", dir)(e.into()))
}

fn remove_quietly(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Staged layer trees kept for the flat (`layerfs` directories, by layer
/// digest); their staging directories go when this does.
struct KeptLayers(Vec<(Digest, std::path::PathBuf)>);

impl Drop for KeptLayers {
    fn drop(&mut self) {
        for (_, layerfs) in &self.0 {
            if let Some(dir) = layerfs.parent() {
                remove_quietly(dir);
            }
        }
    }
}

/// Removes staging directories left by publishers that were killed.
fn clean_stale_staging(tree: &Tree) {
    let dir = tree.root().join(".cargohold/staging");
    let Ok(rd) = std::fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            remove_quietly(&e.path());
        }
    }
}

impl From<cargohold_image_core::ManifestError> for Error {
    fn from(e: cargohold_image_core::ManifestError) -> Self {
        Error::from(cargohold_image_core::Error::from(e))
    }
}

/// The image manifest of `want`'s platform (the image itself when it has one).
fn platform_manifest_of(src: &mut dyn ImageSource, want: &Platform) -> Result<(RawManifest, ImageManifest)> {
    let top = src.top_manifest()?;
    match top.parse().map_err(cargohold_image_core::Error::from)? {
        Manifest::Image(m) => Ok((top, m)),
        Manifest::Index(idx) => {
            let want = want.clone();
            let entry =
                idx.select_platform(&want).cloned().ok_or_else(|| cargohold_image_core::Error::NoMatchingPlatform {
                    wanted: want.to_string(),
                    location: src.location(),
                    available: idx
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                        .collect(),
                })?;
            let child = src.manifest(&entry)?;
            match child.parse().map_err(cargohold_image_core::Error::from)? {
                Manifest::Image(m) => Ok((child, m)),
                Manifest::Index(_) => Err(cargohold_image_core::Error::Unsupported {
                    location: src.location(),
                    what: "nested indexes".into(),
                }
                .into()),
            }
        }
    }
}
