//! Opening an [`ImageLocation`] as a source or destination.

use std::path::Path;

use crate::archive::{DockerArchive, DockerArchiveDest, OciArchiveDest, open_oci_archive};
use crate::error::{Error, Result};
use crate::layout::OciLayout;
use crate::reference::Reference;
use crate::store::Store;
use crate::transport::{DirFiles, ImageDest, ImageLocation, ImageSource, LayoutDest, LayoutSource, TarIndex};

fn registry_transport(r: &str) -> Error {
    Error::Unsupported {
        location: format!("docker://{r}"),
        what: "registry images here: the docker:// transport belongs to cargohold-registry".into(),
    }
}

/// Opens `loc` for reading. Store names are resolved in `store`.
pub fn open_source(loc: &ImageLocation, store: &Store) -> Result<Box<dyn ImageSource + Send>> {
    Ok(match loc {
        ImageLocation::Store(name) => Box::new(store.source(name)?),
        ImageLocation::Oci { path, tag } => {
            OciLayout::open(path)?;
            Box::new(LayoutSource::by_tag(DirFiles(path.clone()), loc.to_string(), tag.as_deref())?)
        }
        ImageLocation::OciArchive { path, tag } => Box::new(open_oci_archive(path, tag.as_deref())?),
        ImageLocation::DockerArchive { path, reference } => {
            let archive = DockerArchive::open(path)?;
            let i = archive.select(reference.as_deref())?;
            Box::new(archive.source(i)?)
        }
        ImageLocation::Docker(r) => return Err(registry_transport(r)),
    })
}

/// Opens `loc` for writing. `name_hint` names the image where the location
/// does not (a docker-archive without `:REF`).
pub fn open_dest(loc: &ImageLocation, store: &Store, name_hint: Option<&Reference>) -> Result<Box<dyn ImageDest>> {
    Ok(match loc {
        ImageLocation::Store(name) => {
            let r = Reference::parse(name)?;
            Box::new(store.dest(Some(&r))?)
        }
        ImageLocation::Oci { path, tag } => {
            let layout = OciLayout::open_or_create(path)?;
            Box::new(LayoutDest::new(layout, tag.clone(), loc.to_string())?)
        }
        ImageLocation::OciArchive { path, tag } => {
            Box::new(OciArchiveDest::create(path, tag.clone(), name_hint.cloned())?)
        }
        ImageLocation::DockerArchive { path, reference } => {
            let tags = match reference {
                Some(r) => vec![Reference::parse(r)?.pull_reference()],
                None => name_hint.filter(|r| r.tag().is_some()).cloned().into_iter().collect(),
            };
            Box::new(DockerArchiveDest::create(path, tags)?)
        }
        ImageLocation::Docker(r) => return Err(registry_transport(r)),
    })
}

/// The kind of archive a file is, judged by its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveKind {
    /// Has `manifest.json` (a `docker save` tar).
    Docker,
    /// Has `oci-layout` and `index.json` but no `manifest.json`.
    Oci,
}

/// Detects whether `path` is a docker or OCI archive. Docker 25+ archives have
/// both shapes; they are read as docker archives (their `manifest.json` is the
/// part every version of Docker writes).
pub fn detect_archive(path: &Path) -> Result<ArchiveKind> {
    let tar = TarIndex::open(path)?;
    if tar.contains("manifest.json") {
        Ok(ArchiveKind::Docker)
    } else if tar.contains("oci-layout") && tar.contains("index.json") {
        Ok(ArchiveKind::Oci)
    } else {
        Err(Error::Archive {
            path: path.into(),
            reason: "neither a docker archive (no manifest.json) nor an OCI archive (no oci-layout/index.json)".into(),
        })
    }
}
