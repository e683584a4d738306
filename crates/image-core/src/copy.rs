//! Copying an image between any [`ImageSource`] and [`ImageDest`], skopeo-style.

use std::io::{self, Read};

use crate::digest::{VerifyError, VerifyingReader};
use crate::error::{Error, Result, blob_err};
use crate::manifest::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, MAX_CONFIG_SIZE, Manifest, Platform, RawManifest,
};
use crate::media_type as mt;
use crate::reference::Reference;
use crate::transport::{BlobKind, ImageDest, ImageSource};

mod parallel;
mod recompress;
pub use parallel::{copied_digest, copy_async};
pub use recompress::{CompressionFormat, Recompress};

/// Receives progress events; the CLI draws them, libraries only emit.
/// Events may come from several threads at once (parallel transfers).
pub trait Progress: Sync {
    /// A blob transfer begins (`desc.size` bytes expected).
    fn blob_started(&self, desc: &Descriptor) {
        let _ = desc;
    }
    /// A blob was already present at the destination.
    fn blob_skipped(&self, desc: &Descriptor) {
        let _ = desc;
    }
    /// `done` bytes of a blob have been transferred so far.
    fn blob_progress(&self, desc: &Descriptor, done: u64) {
        let _ = (desc, done);
    }
    /// A blob transfer finished.
    fn blob_done(&self, desc: &Descriptor) {
        let _ = desc;
    }
}

/// A reader that reports how far it got to a [`Progress`].
pub struct ProgressReader<'a, R> {
    inner: R,
    desc: &'a Descriptor,
    progress: &'a dyn Progress,
    done: u64,
    reported: u64,
}

impl<'a, R> ProgressReader<'a, R> {
    /// Wraps `inner`, the bytes of `desc`.
    pub fn new(inner: R, desc: &'a Descriptor, progress: &'a dyn Progress) -> Self {
        ProgressReader { inner, desc, progress, done: 0, reported: 0 }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        // Every 256 KiB and at the end: often enough for a bar, cheap enough.
        if self.done - self.reported >= 256 << 10 || (n == 0 && self.done != self.reported) {
            self.reported = self.done;
            self.progress.blob_progress(self.desc, self.done);
        }
        Ok(n)
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// How to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Platform to pick from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Copy every platform of an index, and the index itself.
    pub all_platforms: bool,
    /// Write the manifests in this format (`None`: as the source has them,
    /// unless the destination changed a blob).
    pub format: Option<crate::manifest::ManifestFormat>,
    /// Fail, before anything is committed, when the manifest stored would
    /// not have the digest it has at the source (a format change, a
    /// destination that rewrites layers), as skopeo's `--preserve-digests`.
    pub preserve_digests: bool,
    /// Write image layers in this compression (skopeo's
    /// `--dest-compress-format`); `None`: as the source has them.
    pub compression: Option<Recompress>,
    /// More names for the image (skopeo's `--additional-tag`), each
    /// `NAME:TAG`: recorded by a `docker-archive:` or `docker-daemon:`
    /// destination opened from its location
    /// (`cargohold_registry::Registry::copy_between` opens it so). A copy
    /// to a destination already open, or of another kind, refuses them.
    pub additional_tags: Vec<Reference>,
}

/// The error for additional tags where they cannot go.
pub(crate) fn additional_tags_refused(tag: &Reference, reason: String) -> Error {
    Error::BadOption { option: format!("additional tag {}", tag.familiar()), reason }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// The top manifest as stored at the destination.
    pub manifest: Descriptor,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Blobs made present by a cross-repository mount (no bytes sent).
    pub blobs_mounted: usize,
    /// Bytes transferred (as read from the source).
    pub bytes_copied: u64,
}

/// Copies the image `src` designates into `dst`, one blob after the other.
/// Every blob is verified against its digest and size while it streams;
/// nothing is committed at the destination unless everything verified.
/// [`copy_async`] is the same copy for async programs, with blobs in
/// parallel.
pub fn copy(
    src: &mut dyn ImageSource,
    dst: &mut dyn ImageDest,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    check_format(opts, dst.fixed_format(), &dst.location())?;
    let top = src.top_manifest()?;
    let mut report = CopyReport::of(&top);
    // What the copy reads: the top manifest, or the platform's.
    let mut read = top.digest.clone();
    let stored_top = match top.parse()? {
        Manifest::Image(m) => in_format(copy_image(src, dst, top, m, opts, &mut report, progress)?, opts)?,
        Manifest::Index(idx) if opts.all_platforms && dst.supports_index() => {
            let mut new_index = idx.clone();
            for entry in new_index.manifests.iter_mut() {
                let child = src.manifest(entry)?;
                let m = child_image(&child, &dst.location())?;
                let stored = in_format(copy_image(src, dst, child, m, opts, &mut report, progress)?, opts)?;
                dst.put_manifest(&stored)?;
                entry.digest = stored.digest.clone();
                entry.size = stored.bytes.len() as u64;
                entry.media_type = stored.media_type.clone();
            }
            let top_type = top.media_type.clone();
            let index = rebuilt_index(top, &idx, new_index);
            let index = if opts.compression.is_some() { Recompress::manifest(&top_type, index) } else { index };
            in_format(index, opts)?
        }
        Manifest::Index(idx) => {
            let entry = pick_platform(&idx, opts, &src.location())?;
            read = entry.digest.clone();
            let child = src.manifest(&entry)?;
            let m = child_image(&child, &src.location())?;
            in_format(copy_image(src, dst, child, m, opts, &mut report, progress)?, opts)?
        }
    };
    check_preserved(&read, &stored_top.digest, opts, &dst.location())?;
    dst.commit(&stored_top)?;
    report.manifest = stored_top.descriptor();
    Ok(report)
}

impl CopyReport {
    fn of(top: &RawManifest) -> Self {
        CopyReport { manifest: top.descriptor(), blobs_copied: 0, blobs_skipped: 0, blobs_mounted: 0, bytes_copied: 0 }
    }
}

/// Refuses a format the destination cannot write (before anything moves).
fn check_format(opts: &CopyOptions, fixed: Option<crate::manifest::ManifestFormat>, location: &str) -> Result<()> {
    if let Some(t) = opts.additional_tags.first() {
        return Err(additional_tags_refused(
            t,
            format!(
                "{location} is open already (a docker-archive: or docker-daemon: destination takes more names when \
                 it is opened: open_dest_tagged)"
            ),
        ));
    }
    if let (Some(crate::manifest::ManifestFormat::DockerV2S2), Some(r)) = (opts.format, &opts.compression)
        && r.format == CompressionFormat::Zstd
    {
        return Err(Error::BadOption {
            option: "zstd layers".into(),
            reason: "Docker schema 2 manifests cannot name them (write OCI manifests)".into(),
        });
    }
    if let (Some(r), Some(_)) = (&opts.compression, fixed) {
        // A destination of one format (a docker archive) writes its layers
        // in a form of its own (uncompressed tars).
        return Err(Error::BadOption {
            option: format!("{} layers", r.format),
            reason: format!("{location} stores layers in a form of its own"),
        });
    }
    match (opts.format, fixed) {
        (Some(asked), Some(only)) if asked != only => Err(Error::Unsupported {
            location: location.to_owned(),
            what: format!("manifests written as {asked} (it writes {only} only)"),
        }),
        _ => Ok(()),
    }
}

/// With `preserve_digests`, refuses a copy whose stored manifest's digest
/// is not the one it was read with.
fn check_preserved(
    read: &crate::digest::Digest,
    stored: &crate::digest::Digest,
    opts: &CopyOptions,
    location: &str,
) -> Result<()> {
    if opts.preserve_digests && stored != read {
        return Err(Error::Unsupported {
            location: location.to_owned(),
            what: format!(
                "{read} under its own digest (it would be stored as {}{}); nothing was committed",
                stored,
                opts.format.map_or(String::new(), |f| format!(", written as {f}"))
            ),
        });
    }
    Ok(())
}

/// A stored manifest in the format the copy writes.
fn in_format(stored: RawManifest, opts: &CopyOptions) -> Result<RawManifest> {
    match opts.format {
        Some(f) => Ok(crate::manifest::convert(stored, f)?),
        None => Ok(stored),
    }
}

/// The image manifest a child of an index must be.
fn child_image(child: &RawManifest, location: &str) -> Result<ImageManifest> {
    match child.parse()? {
        Manifest::Image(m) => Ok(m),
        Manifest::Index(_) => Err(Error::Unsupported { location: location.to_owned(), what: "nested indexes".into() }),
    }
}

/// The index entry for the platform `opts` asks for (default: the host's).
fn pick_platform(idx: &ImageIndex, opts: &CopyOptions, location: &str) -> Result<Descriptor> {
    crate::inspect::platform_entry(idx, opts.platform.as_ref(), location)
}

/// The index as stored: the original bytes when no child changed.
fn rebuilt_index(top: RawManifest, old: &ImageIndex, mut new_index: ImageIndex) -> RawManifest {
    if &new_index == old {
        return top;
    }
    new_index.media_type = Some(mt::OCI_INDEX.into());
    RawManifest::from_value(&new_index, mt::OCI_INDEX)
}

/// Refuses a config too large to read whole.
fn check_config_size(m: &ImageManifest) -> Result<()> {
    if m.config.size > MAX_CONFIG_SIZE {
        return Err(Error::TooLarge {
            what: format!("config {}", m.config.digest),
            size: m.config.size,
            limit: MAX_CONFIG_SIZE,
        });
    }
    Ok(())
}

/// Checks a config against its manifest before any layer moves.
fn check_config(config_bytes: &[u8], m: &ImageManifest, raw: &RawManifest, location: &str) -> Result<()> {
    if m.config.media_type == mt::OCI_CONFIG || m.config.media_type == mt::DOCKER_CONFIG {
        let config = ImageConfig::from_slice(config_bytes, &format!("config {}", m.config.digest))?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(Error::Manifest(crate::manifest::ManifestError::Invalid {
                what: format!("image {} from {location}", raw.digest),
                reason: format!(
                    "{} layers but the config lists {} diff IDs",
                    m.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            }));
        }
    }
    Ok(())
}

/// The manifest of what the destination stored: `raw` itself, unless it
/// transformed something (inflated layers), then a new OCI manifest.
fn stored_manifest(raw: RawManifest, m: ImageManifest, config: Descriptor, layers: Vec<Descriptor>) -> RawManifest {
    if config == m.config && layers == m.layers {
        return raw;
    }
    let mut config = config;
    if config.media_type == mt::DOCKER_CONFIG {
        config.media_type = mt::OCI_CONFIG.into();
    }
    let rewritten = ImageManifest {
        schema_version: 2,
        media_type: Some(mt::OCI_MANIFEST.into()),
        artifact_type: m.artifact_type,
        config,
        layers,
        subject: m.subject,
        annotations: m.annotations,
    };
    RawManifest::from_value(&rewritten, mt::OCI_MANIFEST)
}

fn copy_image(
    src: &mut dyn ImageSource,
    dst: &mut dyn ImageDest,
    raw: RawManifest,
    m: ImageManifest,
    opts: &CopyOptions,
    report: &mut CopyReport,
    progress: &dyn Progress,
) -> Result<RawManifest> {
    // The config is small: read it whole (verified, capped) to check it against
    // the manifest before any layer moves.
    check_config_size(&m)?;
    let recompress = Recompress::checked(opts, &raw, &m, &src.location())?;
    let mut config_bytes = Vec::with_capacity(m.config.size as usize);
    let config_location = src.blob_location(&m.config);
    {
        let r = src.blob(&m.config)?;
        VerifyingReader::new(r, m.config.digest.clone(), Some(m.config.size))
            .read_to_end(&mut config_bytes)
            .map_err(|e| blob_err(&m.config.digest, &config_location, e))?;
    }
    check_config(&config_bytes, &m, &raw, &src.location())?;
    let stored_config = dst.put_blob(&m.config, BlobKind::Config, &mut &config_bytes[..])?;
    let mut stored_layers = Vec::with_capacity(m.layers.len());
    let source_type = raw.media_type.clone();
    for (i, layer) in m.layers.iter().enumerate() {
        if let Some(r) = recompress
            && let Some(media_type) = r.target_type(layer, &source_type)
        {
            progress.blob_started(layer);
            let location = src.blob_location(layer);
            let (mut file, new) = {
                let mut data = ProgressReader::new(src.blob(layer)?, layer, progress);
                r.layer(layer, media_type, &mut data, &location)?
            };
            let stored = if dst.has_blob(&new)? {
                report.blobs_skipped += 1;
                new
            } else {
                report.blobs_copied += 1;
                report.bytes_copied += layer.size;
                dst.put_blob(&new, BlobKind::Layer(i), &mut file)?
            };
            progress.blob_done(layer);
            stored_layers.push(stored);
            continue;
        }
        if dst.has_blob(layer)? {
            progress.blob_skipped(layer);
            report.blobs_skipped += 1;
            stored_layers.push(layer.clone());
            continue;
        }
        if let Some(from) = src.registry_repository()
            && dst.mount_blob(layer, &from)?
        {
            progress.blob_skipped(layer);
            report.blobs_mounted += 1;
            stored_layers.push(layer.clone());
            continue;
        }
        progress.blob_started(layer);
        let location = src.blob_location(layer);
        let stored = {
            let r = src.blob(layer)?;
            let mut watched = WatchedReader::new(VerifyingReader::new(
                ProgressReader::new(r, layer, progress),
                layer.digest.clone(),
                Some(layer.size),
            ));
            let result = dst.put_blob(layer, BlobKind::Layer(i), &mut watched);
            // An error that began as a source read is reported against the source.
            if let Some(source_err) = watched.failure() {
                return Err(blob_err(&layer.digest, &location, source_err));
            }
            result?
        };
        progress.blob_done(layer);
        report.blobs_copied += 1;
        report.bytes_copied += layer.size;
        stored_layers.push(stored);
    }
    let stored = stored_manifest(raw, m, stored_config, stored_layers);
    Ok(if recompress.is_some() { Recompress::manifest(&source_type, stored) } else { stored })
}

/// A reader that remembers the first error its source produced, so that a
/// failure downstream (a destination that stopped reading) can be blamed on
/// the source when the source is what failed.
pub struct WatchedReader<R> {
    inner: R,
    failure: Option<io::Error>,
}

impl<R> WatchedReader<R> {
    /// Watches `inner`.
    pub fn new(inner: R) -> Self {
        WatchedReader { inner, failure: None }
    }

    /// The first read error, if any (taken).
    pub fn failure(&mut self) -> Option<io::Error> {
        self.failure.take()
    }
}

impl<R: Read> Read for WatchedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if self.failure.is_none() {
                // A copy: the original goes on to the caller.
                let copy = match VerifyError::from_io(e) {
                    Some(v) => io::Error::new(io::ErrorKind::InvalidData, v.clone()),
                    None => io::Error::new(e.kind(), e.to_string()),
                };
                self.failure = Some(copy);
            }
        })
    }
}
