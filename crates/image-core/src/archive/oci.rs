//! OCI archives: a tarred OCI image layout.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::writer::TarWriter;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, ImageIndex, RawManifest};
use crate::reference::Reference;
use crate::transport::{BlobKind, ImageDest, LayoutSource, TarIndex};

/// Opens an OCI archive and selects the image named `tag` (or the only one).
pub fn open_oci_archive(path: &Path, tag: Option<&str>) -> Result<LayoutSource> {
    let tar = TarIndex::open(path)?;
    if !tar.contains("oci-layout") {
        return Err(Error::Archive { path: path.into(), reason: "no oci-layout file: not an OCI archive".into() });
    }
    LayoutSource::by_tag(tar, format!("oci-archive:{}", path.display()), tag)
}

/// Writes an OCI archive by streaming blobs into a tar under a temp name.
pub struct OciArchiveDest {
    w: TarWriter,
    path: PathBuf,
    tag: Option<String>,
    name: Option<Reference>,
}

impl OciArchiveDest {
    /// Starts an archive at `path`; the image is recorded under `tag` (the
    /// ref-name annotation) and, when given, its full `name` (containerd's
    /// `io.containerd.image.name`, which `docker load` uses).
    pub fn create(path: &Path, tag: Option<String>, name: Option<Reference>) -> Result<Self> {
        let mut w = TarWriter::create(path)?;
        w.add_bytes("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}")?;
        w.add_dir("blobs/")?;
        w.add_dir("blobs/sha256/")?;
        Ok(OciArchiveDest { w, path: path.into(), tag, name })
    }

    fn blob_name(d: &Digest) -> String {
        format!("blobs/{}/{}", d.algorithm(), d.hex())
    }
}

impl ImageDest for OciArchiveDest {
    fn location(&self) -> String {
        format!("oci-archive:{}", self.path.display())
    }

    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool> {
        Ok(self.w.has(&Self::blob_name(&desc.digest)))
    }

    fn put_blob(&mut self, desc: &Descriptor, _kind: BlobKind, data: &mut dyn Read) -> Result<Descriptor> {
        let location = self.location();
        self.w.add_stream(&Self::blob_name(&desc.digest), desc.size, &desc.digest, &location, data)?;
        Ok(desc.clone())
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        self.w.add_bytes(&Self::blob_name(&manifest.digest), &manifest.bytes)
    }

    fn commit(&mut self, top: &RawManifest) -> Result<()> {
        self.put_manifest(top)?;
        let mut index = ImageIndex::new_oci();
        let mut d = top.descriptor();
        d.set_annotation(ANNOTATION_REF_NAME, self.tag.clone());
        d.set_annotation(ANNOTATION_IMAGE_NAME, self.name.as_ref().map(Reference::canonical));
        index.manifests.push(d);
        self.w.add_bytes("index.json", &serde_json::to_vec(&index).expect("serializes"))?;
        self.w.finish()
    }
}
