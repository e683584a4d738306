//! The local image store: an OCI layout whose `index.json` names images by
//! their full canonical reference (`docker.io/library/busybox:latest`).

mod archive;
mod commit;

pub use archive::{ArchiveFormat, LoadedImage};
pub use commit::NewLayer;

use std::path::Path;

use crate::error::{Error, Result};
use crate::inspect::{ResolvedImage, resolve_image};
use crate::layout::{GcReport, OciLayout};
use crate::manifest::{ANNOTATION_REF_NAME, Descriptor, Platform};
use crate::reference::Reference;
use crate::transport::{DirFiles, LayoutDest, LayoutSource};

/// The local image store.
#[derive(Debug, Clone)]
pub struct Store {
    layout: OciLayout,
}

/// An entry of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreImage {
    /// Its name, `None` for an untagged (dangling) image.
    pub name: Option<Reference>,
    /// The manifest or index.
    pub descriptor: Descriptor,
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Store { layout: OciLayout::open_or_create(path.as_ref())? })
    }

    /// The underlying layout.
    pub fn layout(&self) -> &OciLayout {
        &self.layout
    }

    /// Every entry of `index.json`.
    pub fn list(&self) -> Result<Vec<StoreImage>> {
        Ok(self
            .layout
            .index()?
            .manifests
            .into_iter()
            .map(|d| StoreImage {
                name: d.annotation(ANNOTATION_REF_NAME).and_then(|n| Reference::parse(n).ok()),
                descriptor: d,
            })
            .collect())
    }

    fn location(&self) -> String {
        format!("the store at {}", self.layout.root().display())
    }

    /// Finds an image by reference (`busybox`, `localhost:5000/a:1`,
    /// `name@sha256:...`), or by a prefix (at least 4 hex characters) of its
    /// manifest digest or image ID (config digest).
    pub fn resolve(&self, name: &str) -> Result<StoreImage> {
        let images = self.list()?;
        if let Ok(r) = Reference::parse(name) {
            let pull = r.pull_reference();
            if let Some(found) = images.iter().find(|i| i.name.as_ref() == Some(&pull)) {
                return Ok(found.clone());
            }
            if let Some(d) = pull.digest()
                && let Some(found) = images.iter().find(|i| &i.descriptor.digest == d)
            {
                return Ok(StoreImage { name: Some(pull.clone()), descriptor: found.descriptor.clone() });
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            let mut hits: Vec<StoreImage> = Vec::new();
            for img in &images {
                let id_match = img.descriptor.digest.hex().starts_with(hex)
                    || self.details(&img.descriptor, None).is_ok_and(|d| d.image.config.digest.hex().starts_with(hex));
                if id_match && !hits.iter().any(|h| h.descriptor.digest == img.descriptor.digest) {
                    hits.push(StoreImage { name: None, descriptor: img.descriptor.clone() });
                }
            }
            match hits.len() {
                1 => return Ok(hits.remove(0)),
                0 => {}
                _ => {
                    return Err(Error::Ambiguous {
                        location: self.location(),
                        candidates: hits.iter().map(|h| h.descriptor.digest.to_string()).collect::<Vec<_>>().join(", "),
                    });
                }
            }
        }
        Err(Error::ImageNotFound { name: name.into(), location: self.location() })
    }

    /// Reads the manifest (choosing `platform`, default the host's, from an
    /// index) and config of a stored image.
    pub fn details(&self, desc: &Descriptor, platform: Option<&Platform>) -> Result<ResolvedImage> {
        let mut src = LayoutSource::with_descriptor(
            DirFiles(self.layout.root().to_path_buf()),
            format!("image {} in {}", desc.digest, self.location()),
            desc.clone(),
        );
        resolve_image(&mut src, platform)
    }

    /// Names `desc` as `name` (its pull form: `:latest` added when bare).
    pub fn tag(&self, name: &Reference, desc: Descriptor) -> Result<()> {
        let name = name.pull_reference();
        self.layout.set_ref(Some(&name.canonical()), desc)
    }

    /// Removes a name; an image given by ID loses its only name, or all its
    /// entries if it has none. Returns the names removed.
    pub fn untag(&self, name: &str) -> Result<Vec<String>> {
        self.untag_inner(name, false)
    }

    /// Like [`Store::untag`], but an image losing its last name stays in
    /// the store unnamed (dangling), in the same update of `index.json`:
    /// for an image something else still uses (a container).
    pub fn untag_keeping_image(&self, name: &str) -> Result<Vec<String>> {
        self.untag_inner(name, true)
    }

    fn untag_inner(&self, name: &str, keep: bool) -> Result<Vec<String>> {
        let img = self.resolve(name)?;
        let location = self.location();
        self.layout.update_index(|index| {
            let targets: Vec<Option<String>> = match &img.name {
                Some(n)
                    if index.manifests.iter().any(|d| d.annotation(ANNOTATION_REF_NAME) == Some(&n.canonical())) =>
                {
                    vec![Some(n.canonical())]
                }
                _ => {
                    let names: Vec<Option<String>> = index
                        .manifests
                        .iter()
                        .filter(|d| d.digest == img.descriptor.digest)
                        .map(|d| d.annotation(ANNOTATION_REF_NAME).map(str::to_owned))
                        .collect();
                    if names.iter().flatten().count() > 1 {
                        return Err(Error::Ambiguous {
                            location,
                            candidates: format!(
                                "image {} is named {}; remove a name",
                                img.descriptor.digest,
                                names.iter().flatten().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        });
                    }
                    names
                }
            };
            index.manifests.retain(|d| {
                !(d.digest == img.descriptor.digest
                    && targets.contains(&d.annotation(ANNOTATION_REF_NAME).map(str::to_owned)))
            });
            if keep {
                crate::layout::set_ref_in(index, None, img.descriptor.clone());
            }
            Ok(targets.into_iter().map(|t| t.unwrap_or_else(|| img.descriptor.digest.to_string())).collect())
        })
    }

    /// Deletes blobs no image reaches (see [`OciLayout::gc`]).
    pub fn prune(&self, dry_run: bool) -> Result<GcReport> {
        self.layout.gc(dry_run)
    }

    /// An [`ImageSource`](crate::ImageSource) for a stored image.
    pub fn source(&self, name: &str) -> Result<LayoutSource> {
        let img = self.resolve(name)?;
        Ok(LayoutSource::with_descriptor(
            DirFiles(self.layout.root().to_path_buf()),
            format!("store:{name}"),
            img.descriptor,
        ))
    }

    /// An [`ImageDest`](crate::ImageDest) that stores an image as `name`
    /// (`None`: untagged).
    pub fn dest(&self, name: Option<&Reference>) -> Result<LayoutDest> {
        let ref_name = name.map(|n| n.pull_reference().canonical());
        let location = format!("store:{}", ref_name.as_deref().unwrap_or("(untagged)"));
        LayoutDest::new(self.layout.clone(), ref_name, location)
    }
}

/// `linux/amd64, linux/arm64/v8` for messages.
pub(crate) fn platforms_of(entries: &[Descriptor]) -> String {
    let v: Vec<String> = entries.iter().filter_map(|d| d.platform.as_ref().map(ToString::to_string)).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}
