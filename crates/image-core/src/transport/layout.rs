//! Reading any OCI-layout-shaped set of files, and writing to a layout directory.

use std::io::Read;

use super::{BlobKind, Files, ImageDest, ImageSource};
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result, blob_err};
use crate::layout::{BlobStore, OciLayout, WriteGuard};
use crate::manifest::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, ImageIndex, MAX_MANIFEST_SIZE, RawManifest};
use crate::reference::Reference;

/// An image in an OCI layout (directory, archive or the store).
pub struct LayoutSource {
    files: Box<dyn Files + Send>,
    location: String,
    selected: Descriptor,
}

impl LayoutSource {
    /// Selects the manifest named `tag` in the layout's `index.json` (matching the
    /// `org.opencontainers.image.ref.name` annotation), or the only manifest when
    /// no tag is given.
    pub(crate) fn by_tag(files: impl Files + Send + 'static, location: String, tag: Option<&str>) -> Result<Self> {
        let files: Box<dyn Files + Send> = Box::new(files);
        let index = read_index(files.as_ref())?;
        let selected = select(&index, tag, &location)?;
        Ok(LayoutSource { files, location, selected })
    }

    /// A source for a known top-level descriptor.
    pub(crate) fn with_descriptor(files: impl Files + Send + 'static, location: String, selected: Descriptor) -> Self {
        LayoutSource { files: Box::new(files), location, selected }
    }

    /// The selected top-level descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.selected
    }

    fn blob_path(d: &Digest) -> String {
        format!("blobs/{}/{}", d.algorithm(), d.hex())
    }

    fn read_manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        if desc.size > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge { what: format!("manifest {}", desc.digest), size: desc.size, limit: MAX_MANIFEST_SIZE });
        }
        let path = Self::blob_path(&desc.digest);
        let r = self.files.open(&path)?.ok_or_else(|| Error::BlobNotFound {
            digest: desc.digest.clone(),
            location: self.location.clone(),
        })?;
        let mut bytes = Vec::with_capacity(desc.size as usize);
        VerifyingReader::new(r, desc.digest.clone(), Some(desc.size))
            .read_to_end(&mut bytes)
            .map_err(|e| blob_err(&desc.digest, &self.files.describe(&path), e))?;
        Ok(RawManifest::from_descriptor(bytes, desc)?)
    }
}

/// Reads `index.json` from a layout.
pub(crate) fn read_index(files: &dyn Files) -> Result<ImageIndex> {
    let mut r = files.open("index.json")?.ok_or_else(|| Error::Archive {
        path: files.describe("index.json").into(),
        reason: "no index.json: not an OCI layout".into(),
    })?;
    let mut bytes = Vec::new();
    r.by_ref()
        .take(MAX_MANIFEST_SIZE * 16 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Archive { path: files.describe("index.json").into(), reason: e.to_string() })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Archive {
        path: files.describe("index.json").into(),
        reason: format!("index.json does not parse: {e}"),
    })
}

fn select(index: &ImageIndex, tag: Option<&str>, location: &str) -> Result<Descriptor> {
    match tag {
        Some(t) => index
            .manifests
            .iter()
            .find(|d| d.annotation(ANNOTATION_REF_NAME) == Some(t))
            .or_else(|| {
                // A full name: match containerd's image-name annotation too.
                index.manifests.iter().find(|d| d.annotation(ANNOTATION_IMAGE_NAME) == Some(t))
            })
            .cloned()
            .ok_or_else(|| Error::ImageNotFound { name: t.into(), location: location.into() }),
        None => match index.manifests.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::ImageNotFound { name: "(any)".into(), location: location.into() }),
            many => Err(Error::Ambiguous {
                location: location.into(),
                candidates: many
                    .iter()
                    .map(|d| d.annotation(ANNOTATION_REF_NAME).map_or_else(|| d.digest.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        },
    }
}

impl ImageSource for LayoutSource {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn top_manifest(&mut self) -> Result<RawManifest> {
        let d = self.selected.clone();
        self.read_manifest(&d)
    }

    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        self.read_manifest(desc)
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        self.files.open(&Self::blob_path(&desc.digest))?.ok_or_else(|| Error::BlobNotFound {
            digest: desc.digest.clone(),
            location: self.location.clone(),
        })
    }

    fn blob_location(&self, desc: &Descriptor) -> String {
        self.files.describe(&Self::blob_path(&desc.digest))
    }

    fn name_hint(&self) -> Option<Reference> {
        let name = self
            .selected
            .annotation(ANNOTATION_IMAGE_NAME)
            .or_else(|| self.selected.annotation(ANNOTATION_REF_NAME).filter(|n| n.contains(['/', ':', '@'])))?;
        Reference::parse(name).ok()
    }
}

/// Writes into an OCI layout directory (an `oci:` destination, or the store).
pub struct LayoutDest {
    layout: OciLayout,
    ref_name: Option<String>,
    location: String,
    _guard: WriteGuard,
}

impl LayoutDest {
    /// Writes to `layout`; the top manifest is recorded under `ref_name`.
    pub fn new(layout: OciLayout, ref_name: Option<String>, location: String) -> Result<Self> {
        let guard = layout.write_guard()?;
        Ok(LayoutDest { layout, ref_name, location, _guard: guard })
    }
}

impl ImageDest for LayoutDest {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool> {
        Ok(self.layout.blob_size(&desc.digest)? == Some(desc.size))
    }

    fn put_blob(&mut self, desc: &Descriptor, _kind: BlobKind, data: &mut dyn Read) -> Result<Descriptor> {
        self.layout.put_blob(&desc.digest, Some(desc.size), data)?;
        Ok(desc.clone())
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        self.layout.put_blob(&manifest.digest, Some(manifest.bytes.len() as u64), &mut &manifest.bytes[..])?;
        Ok(())
    }

    fn commit(&mut self, top: &RawManifest) -> Result<()> {
        self.put_manifest(top)?;
        self.layout.set_ref(self.ref_name.as_deref(), top.descriptor())
    }
}
