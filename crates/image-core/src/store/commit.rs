//! Making new images in the store from a base and new layers.

use super::Store;
use crate::digest::Digest;
use crate::error::Result;
use crate::inspect::ResolvedImage;
use crate::manifest::{Descriptor, History, ImageConfig, ImageManifest, RawManifest, RootFs};
use crate::media_type as mt;
use crate::reference::Reference;
use crate::transport::{BlobKind, ImageDest};

/// A layer blob already written to the store, with its uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLayer {
    /// The (compressed) blob's descriptor.
    pub descriptor: Descriptor,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

impl Store {
    /// Stores an image made of `base`'s layers (if any) plus `layers`, with
    /// `config` (its `rootfs` is filled in here and `history` appended), and
    /// names it `name`. Config and manifest are staged and published together
    /// with the name; the layer blobs must already be in the store.
    pub fn commit_image(
        &self,
        base: Option<&ResolvedImage>,
        layers: &[NewLayer],
        mut config: ImageConfig,
        history: History,
        name: Option<&Reference>,
    ) -> Result<Descriptor> {
        let mut manifest_layers = base.map(|b| b.image.layers.clone()).unwrap_or_default();
        let mut diff_ids = base.map(|b| b.config.rootfs.diff_ids.clone()).unwrap_or_default();
        for l in layers {
            manifest_layers.push(l.descriptor.clone());
            diff_ids.push(l.diff_id.clone());
        }
        config.rootfs = RootFs { kind: "layers".into(), diff_ids };
        config.history.push(history);
        let config_bytes = config.to_vec();
        let config_desc = Descriptor::new(mt::OCI_CONFIG, Digest::sha256_of(&config_bytes), config_bytes.len() as u64);
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.into()),
            artifact_type: None,
            config: config_desc.clone(),
            layers: manifest_layers,
            subject: None,
            annotations: None,
        };
        let raw = RawManifest::from_value(&manifest, mt::OCI_MANIFEST);
        let mut dest = self.dest(name)?;
        dest.put_blob(&config_desc, BlobKind::Config, &mut &config_bytes[..])?;
        dest.commit(&raw)?;
        Ok(raw.descriptor())
    }
}
