//! Loading archives into the store and saving stored images as archives.

use std::path::Path;

use super::Store;
use crate::archive::{DockerArchive, DockerArchiveDest, OciArchiveDest};
use crate::copy::{CopyOptions, CopyReport, Progress, copy};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor};
use crate::open::{ArchiveKind, detect_archive};
use crate::reference::{Reference, is_valid_tag};
use crate::transport::{LayoutSource, TarIndex, read_index};

/// The archive format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ArchiveFormat {
    /// A `docker save` tar (`docker load` reads it).
    #[default]
    Docker,
    /// An OCI archive (a tarred OCI layout).
    Oci,
}

/// An image that [`Store::load_archive`] stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadedImage {
    /// The names it now has (empty: untagged).
    pub names: Vec<String>,
    /// The stored manifest.
    pub manifest: Descriptor,
    /// The image ID (config digest).
    pub id: Digest,
}

impl Store {
    /// [`Store::load_archive`] from a stream (`load` from standard input):
    /// spooled to a private temp file of the store (an archive is read out
    /// of order), loaded, and the spool removed whatever happens.
    pub fn load_archive_stream(
        &self,
        input: &mut dyn std::io::Read,
        name: Option<&Reference>,
        progress: &dyn Progress,
    ) -> Result<Vec<LoadedImage>> {
        let dir = self.layout().private_dir("tmp")?;
        let mut spool = tempfile::Builder::new()
            .prefix("load-")
            .tempfile_in(&dir)
            .map_err(crate::error::io_err("create a spool file in", &dir))?;
        std::io::copy(input, spool.as_file_mut())
            .map_err(crate::error::io_err("spool standard input to", spool.path()))?;
        self.load_archive(spool.path(), name, progress).map_err(|e| e.naming(spool.path(), "standard input"))
    }

    /// Loads every image of a docker or OCI archive (detected from its contents,
    /// gzip/zstd compression allowed). Images are named from the archive
    /// (`RepoTags`, or the `io.containerd.image.name` / ref-name annotations),
    /// or `name` when given. All or nothing: if any image fails, the store is
    /// left exactly as it was.
    pub fn load_archive(
        &self,
        path: &Path,
        name: Option<&Reference>,
        progress: &dyn Progress,
    ) -> Result<Vec<LoadedImage>> {
        let mut dest = self.dest(None)?.deferred();
        let mut loaded = Vec::new();
        let opts = CopyOptions::default();
        match detect_archive(path)? {
            ArchiveKind::Docker => {
                let archive = DockerArchive::open(path)?;
                for (i, img) in archive.images().iter().enumerate() {
                    let names = match name {
                        Some(n) => vec![n.pull_reference()],
                        None => img
                            .repo_tags
                            .iter()
                            .map(|t| {
                                Reference::parse(t).map(|r| r.pull_reference()).map_err(|e| Error::Archive {
                                    path: path.into(),
                                    reason: format!("manifest.json has an invalid RepoTag {t:?}: {e}"),
                                })
                            })
                            .collect::<Result<Vec<_>>>()?,
                    };
                    dest.set_ref_names(names.iter().map(Reference::canonical).collect());
                    let report = copy(&mut archive.source(i)?, &mut dest, &opts, progress)?;
                    loaded.push((names, report));
                }
            }
            ArchiveKind::Oci => {
                let tar = TarIndex::open(path)?;
                let index = read_index(&tar)?;
                if index.manifests.is_empty() {
                    return Err(Error::Archive { path: path.into(), reason: "index.json lists no images".into() });
                }
                for desc in &index.manifests {
                    let names = oci_names(desc, name, path)?;
                    dest.set_ref_names(names.iter().map(Reference::canonical).collect());
                    let location = format!("oci-archive:{}", path.display());
                    let mut src = LayoutSource::with_descriptor(tar.clone(), location, desc.clone());
                    let report = copy(&mut src, &mut dest, &opts, progress)?;
                    loaded.push((names, report));
                }
            }
        }
        dest.publish()?;
        loaded
            .into_iter()
            .map(|(names, report)| {
                let id = self.details(&report.manifest, None)?.image.config.digest;
                Ok(LoadedImage {
                    names: names.iter().map(Reference::canonical).collect(),
                    manifest: report.manifest,
                    id,
                })
            })
            .collect()
    }

    /// Saves several stored images into one docker archive (`save A B -o
    /// x.tar`, as `docker save` does), blobs they share written once; all
    /// or nothing. An OCI archive holds one image here.
    pub fn save_many(
        &self,
        images: &[String],
        path: &Path,
        format: ArchiveFormat,
        progress: &dyn Progress,
    ) -> Result<Vec<CopyReport>> {
        match (images, format) {
            ([one], _) => return Ok(vec![self.save(one, path, format, progress)?]),
            ([], _) => return Err(Error::Archive { path: path.into(), reason: "no image to save".into() }),
            (_, ArchiveFormat::Oci) => {
                return Err(Error::Unsupported {
                    location: path.display().to_string(),
                    what: "several images in an OCI archive (use the docker format)".into(),
                });
            }
            _ => {}
        }
        let mut dst = DockerArchiveDest::create(path, Vec::new())?.deferred();
        let mut reports = Vec::new();
        for image in images {
            let resolved = self.resolve(image)?;
            dst.set_tags(resolved.name.clone().filter(|n| n.tag().is_some()).into_iter().collect());
            let mut src = self.source(image)?;
            reports.push(copy(&mut src, &mut dst, &CopyOptions::default(), progress)?);
        }
        dst.finish()?;
        Ok(reports)
    }

    /// Writes a stored image to an archive at `path` (under a temp name until
    /// complete).
    pub fn save(&self, image: &str, path: &Path, format: ArchiveFormat, progress: &dyn Progress) -> Result<CopyReport> {
        let resolved = self.resolve(image)?;
        let name = resolved.name.clone().filter(|n| n.tag().is_some());
        let mut src = self.source(image)?;
        match format {
            ArchiveFormat::Docker => {
                let mut dst = DockerArchiveDest::create(path, name.into_iter().collect())?;
                copy(&mut src, &mut dst, &CopyOptions::default(), progress)
            }
            ArchiveFormat::Oci => {
                let tag = name.as_ref().and_then(|n| n.tag()).map(str::to_owned);
                let mut dst = OciArchiveDest::create(path, tag, name)?;
                copy(&mut src, &mut dst, &CopyOptions { all_platforms: true, ..CopyOptions::default() }, progress)
            }
        }
    }
}

/// The names an OCI archive entry gets: the override (keeping the entry's tag
/// when the override has none), else containerd's full-name annotation, else a
/// ref name that is a full reference. A bare tag without an override names
/// nothing: there is no repository to put it in.
fn oci_names(desc: &Descriptor, name: Option<&Reference>, path: &Path) -> Result<Vec<Reference>> {
    let ref_name = desc.annotation(ANNOTATION_REF_NAME);
    if let Some(n) = name {
        let named = match ref_name {
            Some(t) if n.is_name_only() && is_valid_tag(t) => n.with_tag(t)?,
            _ => n.pull_reference(),
        };
        return Ok(vec![named]);
    }
    let full = desc.annotation(ANNOTATION_IMAGE_NAME).or(ref_name.filter(|r| r.contains(['/', ':', '@'])));
    match full {
        Some(f) => Ok(vec![
            Reference::parse(f)
                .map_err(|e| Error::Archive {
                    path: path.into(),
                    reason: format!("image name {f:?} in index.json is invalid: {e}"),
                })?
                .pull_reference(),
        ]),
        None => Ok(Vec::new()),
    }
}
