//! Making new images in the store from a base and new layers.

use super::Store;
use crate::digest::Digest;
use crate::error::Result;
use crate::inspect::ResolvedImage;
use crate::layout::set_ref_in;
use crate::manifest::{
    ANNOTATION_REF_NAME, Descriptor, History, ImageConfig, ImageIndex, ImageManifest, Manifest, Platform, RawManifest,
    RootFs,
};
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
        config: ImageConfig,
        history: History,
        name: Option<&Reference>,
    ) -> Result<Descriptor> {
        self.commit_image_annotated(base, layers, config, history, name, &[])
    }

    /// [`Store::commit_image`] with `annotations` on the manifest.
    pub fn commit_image_annotated(
        &self,
        base: Option<&ResolvedImage>,
        layers: &[NewLayer],
        mut config: ImageConfig,
        history: History,
        name: Option<&Reference>,
        annotations: &[(String, String)],
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
            annotations: (!annotations.is_empty()).then(|| annotations.iter().cloned().collect()),
        };
        let raw = RawManifest::from_value(&manifest, mt::OCI_MANIFEST);
        let mut dest = self.dest(name)?;
        dest.put_blob(&config_desc, BlobKind::Config, &mut &config_bytes[..])?;
        dest.commit(&raw)?;
        Ok(raw.descriptor())
    }

    /// Stores an image index of stored image manifests, each with its
    /// platform, and names it `names` (none: an unnamed entry). The
    /// manifests' own unnamed entries in `index.json` go in the same
    /// update: they are reached through the index now.
    pub fn commit_index(&self, manifests: &[(Descriptor, Platform)], names: &[Reference]) -> Result<Descriptor> {
        let entries: Vec<Descriptor> = manifests
            .iter()
            .map(|(d, p)| {
                let mut e = Descriptor::new(&d.media_type, d.digest.clone(), d.size);
                e.platform = Some(p.clone());
                e
            })
            .collect();
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(mt::OCI_INDEX.into()),
            artifact_type: None,
            manifests: entries,
            subject: None,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&index).expect("an index serializes");
        let digest = self.layout.put_blob_bytes(&bytes)?;
        let desc = Descriptor::new(mt::OCI_INDEX, digest, bytes.len() as u64);
        self.layout.update_index(|idx| {
            idx.manifests.retain(|d| {
                d.annotation(ANNOTATION_REF_NAME).is_some() || !manifests.iter().any(|(m, _)| m.digest == d.digest)
            });
            if names.is_empty() {
                set_ref_in(idx, None, desc.clone());
            }
            for n in names {
                set_ref_in(idx, Some(&n.pull_reference().canonical()), desc.clone());
            }
            Ok(())
        })?;
        Ok(desc)
    }
}

impl Store {
    /// The platforms a stored image offers: an index's entries, or a
    /// manifest with the platform its config names.
    pub fn platforms(&self, desc: &Descriptor) -> Result<Vec<(Descriptor, Platform)>> {
        let bytes = self.layout.read_blob(&desc.digest, crate::manifest::MAX_MANIFEST_SIZE)?;
        match RawManifest::from_descriptor(bytes, desc)?.parse()? {
            Manifest::Index(idx) => {
                Ok(idx.manifests.into_iter().filter_map(|d| d.platform.clone().map(|p| (d, p))).collect())
            }
            Manifest::Image(_) => {
                let c = self.details(desc, None)?.config;
                Ok(vec![(desc.clone(), Platform::new(&c.os, &c.architecture, c.variant.as_deref()))])
            }
        }
    }

    /// Whether the stored image `desc` offers `platform`. An image whose
    /// config names no architecture (some old images) offers any: it is
    /// run and built on as it is, as Docker does.
    pub fn has_platform(&self, desc: &Descriptor, platform: &Platform) -> bool {
        self.platforms(desc).is_ok_and(|all| all.iter().any(|(_, p)| p.architecture.is_empty() || platform.matches(p)))
    }

    /// Names `name` an index of the platforms of the stored images
    /// `previous` and `added`, those of `added` replacing the same ones of
    /// `previous`: a pull of one more platform of an image the store has
    /// for others keeps them.
    pub fn merge_platforms(&self, name: &Reference, previous: &Descriptor, added: &Descriptor) -> Result<Descriptor> {
        let new = self.platforms(added)?;
        let mut all: Vec<(Descriptor, Platform)> =
            self.platforms(previous)?.into_iter().filter(|(_, p)| !new.iter().any(|(_, n)| n.matches(p))).collect();
        all.extend(new);
        self.commit_index(&all, std::slice::from_ref(name))
    }
}
