//! `docker save` archives. Reading understands both the classic layout
//! (`manifest.json`, `repositories`, `<id>/layer.tar`, symlinked duplicates) and
//! Docker 25+'s, which embeds an OCI layout and points `manifest.json` into
//! `blobs/sha256/`. Writing produces the latter, which both old and new
//! `docker load` and skopeo read.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::writer::{TarWriter, WatchedWriter};
use crate::digest::{Algorithm, Digest, HashingReader, HashingWriter, VerifyingReader};
use crate::error::{Error, Result, blob_err, io_err};
use crate::manifest::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, ImageConfig, ImageIndex, ImageManifest, MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE, Manifest, RawManifest,
};
use crate::media_type::{self as mt, Compression};
use crate::reference::Reference;
use crate::transport::{BlobKind, Files, ImageDest, ImageSource, TarIndex};

/// One entry of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerArchiveImage {
    /// Path of the config inside the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// Tags (familiar form), possibly none.
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    /// Paths of the layer tars, base first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// An opened `docker save` archive.
#[derive(Clone)]
pub struct DockerArchive {
    tar: Arc<TarIndex>,
    images: Arc<Vec<DockerArchiveImage>>,
}

impl DockerArchive {
    /// Opens and indexes an archive (gzip or zstd compressed ones too).
    pub fn open(path: &Path) -> Result<Self> {
        let tar = TarIndex::open(path)?;
        Self::from_index(tar)
    }

    pub(crate) fn from_index(tar: TarIndex) -> Result<Self> {
        let path = tar.path().to_path_buf();
        let bad = |reason: String| Error::Archive { path: path.clone(), reason };
        let mut bytes = Vec::new();
        {
            let mut r = tar
                .open("manifest.json")?
                .ok_or_else(|| bad("no manifest.json (archives from Docker before 1.10 are not supported)".into()))?;
            r.by_ref()
                .take(MAX_MANIFEST_SIZE + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(format!("manifest.json: {e}")))?;
        }
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(bad("manifest.json is larger than 4 MiB".into()));
        }
        let images: Vec<DockerArchiveImage> =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest.json does not parse: {e}")))?;
        if images.is_empty() {
            return Err(bad("manifest.json lists no images".into()));
        }
        for img in &images {
            for p in std::iter::once(&img.config).chain(&img.layers) {
                if !tar.contains(p) {
                    return Err(bad(format!("manifest.json refers to {p:?}, which the archive does not contain")));
                }
            }
        }
        Ok(DockerArchive { tar: Arc::new(tar), images: Arc::new(images) })
    }

    /// The images `manifest.json` lists.
    pub fn images(&self) -> &[DockerArchiveImage] {
        &self.images
    }

    /// Picks an image: `@N` (position), a name matching one of its tags, or the
    /// only image when `name` is `None`.
    pub fn select(&self, name: Option<&str>) -> Result<usize> {
        let location = format!("docker-archive:{}", self.tar.path().display());
        match name {
            None if self.images.len() == 1 => Ok(0),
            None => Err(Error::Ambiguous {
                location,
                candidates: self.images.iter().map(|i| i.repo_tags.join(" ")).collect::<Vec<_>>().join(", "),
            }),
            Some(n) => {
                if let Some(i) = n.strip_prefix('@').and_then(|i| i.parse::<usize>().ok()) {
                    return if i < self.images.len() {
                        Ok(i)
                    } else {
                        Err(Error::ImageNotFound { name: n.into(), location })
                    };
                }
                let want = Reference::parse(n)?.pull_reference();
                self.images
                    .iter()
                    .position(|img| img.repo_tags.iter().any(|t| Reference::parse(t).is_ok_and(|r| r == want)))
                    .ok_or_else(|| Error::ImageNotFound { name: n.into(), location })
            }
        }
    }

    /// A source for image `index`, with its manifest synthesized: the layers
    /// are described as they are stored (uncompressed, digest = diff ID, unless
    /// the archive holds them compressed).
    pub fn source(&self, index: usize) -> Result<DockerArchiveSource> {
        let img = &self.images[index];
        let path = self.tar.path();
        let bad = |reason: String| Error::Archive { path: path.into(), reason };
        let size = self.tar.size(&img.config).unwrap_or(0);
        if size > MAX_CONFIG_SIZE {
            return Err(Error::TooLarge { what: self.tar.describe(&img.config), size, limit: MAX_CONFIG_SIZE });
        }
        let mut config_bytes = Vec::with_capacity(size as usize);
        self.tar
            .open(&img.config)?
            .ok_or_else(|| bad(format!("missing {}", img.config)))?
            .read_to_end(&mut config_bytes)
            .map_err(io_err("read", path))?;
        let what = self.tar.describe(&img.config);
        let config = ImageConfig::from_slice(&config_bytes, &what)?;
        if config.rootfs.diff_ids.len() != img.layers.len() {
            return Err(bad(format!(
                "{} lists {} diff_ids but manifest.json lists {} layers",
                img.config,
                config.rootfs.diff_ids.len(),
                img.layers.len()
            )));
        }
        let config_desc = Descriptor::new(mt::OCI_CONFIG, Digest::sha256_of(&config_bytes), config_bytes.len() as u64);
        let mut layers = Vec::with_capacity(img.layers.len());
        for (path_in_tar, diff_id) in img.layers.iter().zip(&config.rootfs.diff_ids) {
            let size = self.tar.size(path_in_tar).expect("checked when opened");
            let mut r = BufReader::new(self.tar.open(path_in_tar)?.expect("checked when opened"));
            let head = r.fill_buf().map_err(io_err("read", path))?;
            let desc = match Compression::sniff(head) {
                Compression::None => Descriptor::new(mt::OCI_LAYER_TAR, diff_id.clone(), size),
                c => {
                    // A compressed layer (not what `docker save` writes, but
                    // some tools do): its digest is not recorded anywhere, so hash it.
                    let mut h = HashingReader::new(r, Algorithm::Sha256);
                    io::copy(&mut h, &mut io::sink()).map_err(io_err("read", path))?;
                    let media = if c == Compression::Gzip { mt::OCI_LAYER_GZIP } else { mt::OCI_LAYER_ZSTD };
                    Descriptor::new(media, h.finish().0, size)
                }
            };
            layers.push((desc, path_in_tar.clone()));
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.into()),
            artifact_type: None,
            config: config_desc,
            layers: layers.iter().map(|(d, _)| d.clone()).collect(),
            subject: None,
            annotations: None,
        };
        Ok(DockerArchiveSource {
            archive: self.clone(),
            image: index,
            manifest: RawManifest::from_value(&manifest, mt::OCI_MANIFEST),
            config_bytes,
            layers,
        })
    }
}

/// One image of a [`DockerArchive`], as an [`ImageSource`].
pub struct DockerArchiveSource {
    archive: DockerArchive,
    image: usize,
    manifest: RawManifest,
    config_bytes: Vec<u8>,
    layers: Vec<(Descriptor, String)>,
}

impl DockerArchiveSource {
    fn entry_of(&self, desc: &Descriptor) -> Option<&str> {
        self.layers.iter().find(|(d, _)| d.digest == desc.digest).map(|(_, p)| p.as_str())
    }

    /// The image's tags as listed in `manifest.json`.
    pub fn repo_tags(&self) -> &[String] {
        &self.archive.images[self.image].repo_tags
    }
}

impl ImageSource for DockerArchiveSource {
    fn location(&self) -> String {
        format!("docker-archive:{}", self.archive.tar.path().display())
    }

    fn top_manifest(&mut self) -> Result<RawManifest> {
        Ok(self.manifest.clone())
    }

    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        Err(Error::BlobNotFound { digest: desc.digest.clone(), location: self.location() })
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        if desc.digest == Digest::sha256_of(&self.config_bytes) {
            return Ok(Box::new(io::Cursor::new(self.config_bytes.clone())));
        }
        let entry = self
            .entry_of(desc)
            .ok_or_else(|| Error::BlobNotFound { digest: desc.digest.clone(), location: self.location() })?;
        self.archive
            .tar
            .open(entry)?
            .ok_or_else(|| Error::BlobNotFound { digest: desc.digest.clone(), location: self.location() })
    }

    fn blob_location(&self, desc: &Descriptor) -> String {
        match self.entry_of(desc) {
            Some(e) => self.archive.tar.describe(e),
            None => self.location(),
        }
    }

    fn name_hint(&self) -> Option<Reference> {
        self.repo_tags().first().and_then(|t| Reference::parse(t).ok())
    }
}

/// Writes one image as a `docker save` archive (Docker 25+ layout: an OCI
/// layout plus `manifest.json` and `repositories`). Layers are stored
/// uncompressed, as `docker load` requires; compressed input layers are inflated
/// through a temp file (never memory) and checked against the config's diff IDs.
pub struct DockerArchiveDest {
    w: TarWriter,
    path: PathBuf,
    tags: Vec<Reference>,
    config: Option<(Descriptor, ImageConfig)>,
    /// The images committed so far (several with [`DockerArchiveDest::deferred`]).
    entries: Vec<DockerArchiveImage>,
    repositories: BTreeMap<String, BTreeMap<String, String>>,
    index: ImageIndex,
    /// Finished by [`DockerArchiveDest::finish`], not by each commit.
    defer: bool,
    /// gzip layers stored as sent ([`DockerArchiveDest::gzip_layers`]).
    keep_gzip: bool,
}

impl DockerArchiveDest {
    /// Starts an archive at `path` (written under a temp name until commit),
    /// recording `tags` as its `RepoTags`.
    pub fn create(path: &Path, tags: Vec<Reference>) -> Result<Self> {
        let mut w = TarWriter::create(path)?;
        w.add_dir("blobs/")?;
        w.add_dir("blobs/sha256/")?;
        Ok(DockerArchiveDest {
            w,
            path: path.into(),
            tags,
            config: None,
            entries: Vec::new(),
            repositories: BTreeMap::new(),
            index: ImageIndex::new_oci(),
            defer: false,
            keep_gzip: false,
        })
    }

    /// gzip layers go into the archive as they are sent, not inflated: for
    /// an archive that goes straight to a Docker engine's `images/load`,
    /// which inflates them itself (and checks them against the config's
    /// diff IDs), rather than to a file any tool may read. Other
    /// compressions (zstd, which engines before Docker 20.10 cannot read) are
    /// still inflated.
    pub fn gzip_layers(mut self) -> Self {
        self.keep_gzip = true;
        self
    }

    /// Several images in one archive (`save A B`): each `commit` adds one,
    /// [`DockerArchiveDest::finish`] writes `manifest.json` and the rest.
    pub fn deferred(mut self) -> Self {
        self.defer = true;
        self
    }

    /// The `RepoTags` of the next image committed.
    pub fn set_tags(&mut self, tags: Vec<Reference>) {
        self.tags = tags;
    }

    /// Writes the archive's metadata for every image committed and puts the
    /// archive in place.
    pub fn finish(&mut self) -> Result<()> {
        let manifest_json = serde_json::to_vec(&self.entries).expect("serializes");
        self.w.add_bytes("index.json", &serde_json::to_vec(&self.index).expect("serializes"))?;
        self.w.add_bytes("manifest.json", &manifest_json)?;
        self.w.add_bytes("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}")?;
        self.w.add_bytes("repositories", &serde_json::to_vec(&self.repositories).expect("serializes"))?;
        self.w.finish()
    }

    fn blob_name(d: &Digest) -> String {
        format!("blobs/{}/{}", d.algorithm(), d.hex())
    }
}

impl ImageDest for DockerArchiveDest {
    fn location(&self) -> String {
        format!("docker-archive:{}", self.path.display())
    }

    fn supports_index(&self) -> bool {
        false
    }

    fn fixed_format(&self) -> Option<crate::manifest::ManifestFormat> {
        Some(crate::manifest::ManifestFormat::DockerV2S2)
    }

    fn has_blob(&mut self, _desc: &Descriptor) -> Result<bool> {
        // Layers may be stored in another form (inflated); always receive them.
        Ok(false)
    }

    fn put_blob(&mut self, desc: &Descriptor, kind: BlobKind, data: &mut dyn Read) -> Result<Descriptor> {
        let location = self.location();
        match kind {
            BlobKind::Config => {
                let mut bytes = Vec::with_capacity(desc.size as usize);
                data.take(MAX_CONFIG_SIZE + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| blob_err(&desc.digest, &location, e))?;
                let config = ImageConfig::from_slice(&bytes, &format!("config {}", desc.digest))?;
                self.w.add_bytes(&Self::blob_name(&desc.digest), &bytes)?;
                self.config = Some((desc.clone(), config));
                Ok(desc.clone())
            }
            BlobKind::Layer(i) => {
                let (_, config) = self.config.as_ref().ok_or_else(|| Error::Unsupported {
                    location: location.clone(),
                    what: "a layer before its config".into(),
                })?;
                let expected = config.rootfs.diff_ids.get(i).cloned().ok_or_else(|| Error::Unsupported {
                    location: location.clone(),
                    what: format!("layer {i}: the config lists only {} diff IDs", config.rootfs.diff_ids.len()),
                })?;
                let mut r = BufReader::with_capacity(1 << 20, data);
                let compression = match Compression::of_layer(&desc.media_type) {
                    Some(c) => c,
                    None => Compression::sniff(r.fill_buf().map_err(|e| blob_err(&desc.digest, &location, e))?),
                };
                if self.keep_gzip && compression == Compression::Gzip {
                    self.w.add_stream(&Self::blob_name(&desc.digest), desc.size, &desc.digest, &location, &mut r)?;
                    return Ok(desc.clone());
                }
                let name = Self::blob_name(&expected);
                if compression == Compression::None {
                    if desc.digest != expected {
                        return Err(Error::DiffIdMismatch {
                            layer: desc.digest.clone(),
                            location,
                            expected,
                            actual: desc.digest.clone(),
                        });
                    }
                    self.w.add_stream(&name, desc.size, &desc.digest, &location, &mut r)?;
                    return Ok(Descriptor::new(mt::OCI_LAYER_TAR, expected, desc.size));
                }
                let dir = &self.w.scratch_dir();
                let spool = tempfile::tempfile_in(dir).map_err(io_err("create a temp file in", dir))?;
                let spool = WatchedWriter::new(io::BufWriter::with_capacity(1 << 20, spool));
                let mut hw = HashingWriter::new(spool, Algorithm::Sha256);
                // The spool's own failures (a full disk) are the archive's;
                // any other is the blob's (a failed read, a corrupt stream).
                decompress_into(compression, &mut r, &mut hw).map_err(|e| match hw.get_ref().failed {
                    true => io_err("write a layer spool in", dir)(e),
                    false => blob_err(&desc.digest, &location, e),
                })?;
                // Drain what the decoder left (trailing bytes) so the compressed
                // digest is verified over the whole blob.
                io::copy(&mut r, &mut io::sink()).map_err(|e| blob_err(&desc.digest, &location, e))?;
                let (w, actual, size) = hw.finish();
                let mut spool =
                    w.into_inner().into_inner().map_err(|e| io_err("write a layer spool in", dir)(e.into_error()))?;
                if actual != expected {
                    return Err(Error::DiffIdMismatch { layer: desc.digest.clone(), location, expected, actual });
                }
                spool.rewind().map_err(io_err("seek", dir))?;
                let mut verified =
                    VerifyingReader::new(BufReader::with_capacity(1 << 20, spool), expected.clone(), Some(size));
                self.w.add_stream(&name, size, &expected, &location, &mut verified)?;
                Ok(Descriptor::new(mt::OCI_LAYER_TAR, expected, size))
            }
        }
    }

    fn put_manifest(&mut self, _manifest: &RawManifest) -> Result<()> {
        Err(Error::Unsupported { location: self.location(), what: "a multi-platform index".into() })
    }

    fn commit(&mut self, top: &RawManifest) -> Result<()> {
        let Manifest::Image(m) = top.parse()? else {
            return Err(Error::Unsupported { location: self.location(), what: "a multi-platform index".into() });
        };
        self.w.add_bytes(&Self::blob_name(&top.digest), &top.bytes)?;
        let layer_paths: Vec<String> = m.layers.iter().map(|l| Self::blob_name(&l.digest)).collect();
        let entry = DockerArchiveImage {
            config: Self::blob_name(&m.config.digest),
            repo_tags: self.tags.iter().map(Reference::familiar).collect(),
            layers: layer_paths,
        };
        self.entries.push(entry);
        let top_layer = m.layers.last().map(|l| l.digest.hex().to_owned()).unwrap_or_default();
        let before = self.index.manifests.len();
        for t in &self.tags {
            if let Some(tag) = t.tag() {
                self.repositories.entry(t.familiar_name()).or_default().insert(tag.into(), top_layer.clone());
            }
            let mut d = top.descriptor();
            d.set_annotation(ANNOTATION_IMAGE_NAME, Some(t.canonical()));
            d.set_annotation(ANNOTATION_REF_NAME, t.tag().map(str::to_owned));
            self.index.manifests.push(d);
        }
        if self.index.manifests.len() == before {
            self.index.manifests.push(top.descriptor());
        }
        self.config = None;
        if self.defer { Ok(()) } else { self.finish() }
    }
}

/// Inflates a gzip or zstd stream into `w`, stopping at the end of the
/// compressed data (any trailing bytes are left in `r`).
pub(crate) fn decompress_into(c: Compression, r: &mut dyn BufRead, w: &mut dyn Write) -> io::Result<u64> {
    match c {
        Compression::None => io::copy(r, w),
        Compression::Gzip => io::copy(&mut flate2::bufread::MultiGzDecoder::new(r), w),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
            io::copy(&mut d, w)
        }
    }
}
