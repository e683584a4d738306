//! Opening an [`ImageLocation`] as a source or destination.

use std::path::Path;

use crate::archive::{DockerArchive, DockerArchiveDest, DockerArchiveSource, OciArchiveDest, open_oci_archive};
use crate::error::{Error, Result};
use crate::layout::OciLayout;
use crate::reference::Reference;
use crate::store::Store;
use crate::transport::{
    AsyncImageDest, AsyncImageSource, Blocking, DirDest, DirFiles, ImageDest, ImageLocation, ImageSource, LayoutDest,
    LayoutSource, TarIndex, blocking, open_dir_source,
};

fn registry_transport(loc: &ImageLocation) -> Error {
    Error::Unsupported {
        location: loc.to_string(),
        what: "images here: the docker:// and docker-daemon: transports belong to cargohold-registry".into(),
    }
}

/// A source as opened, before it is boxed for blocking or async use.
enum Opened {
    Layout(LayoutSource),
    Docker(DockerArchiveSource),
}

fn open_any_source(loc: &ImageLocation, store: &Store) -> Result<Opened> {
    Ok(match loc {
        ImageLocation::Store(name) => Opened::Layout(store.source(name)?),
        ImageLocation::Oci { path, tag } => {
            OciLayout::open(path)?;
            Opened::Layout(LayoutSource::by_tag(DirFiles(path.clone()), loc.to_string(), tag.as_deref())?)
        }
        ImageLocation::OciArchive { path, tag } => Opened::Layout(open_oci_archive(path, tag.as_deref())?),
        ImageLocation::Dir(path) => Opened::Layout(open_dir_source(path, loc.to_string())?),
        ImageLocation::DockerArchive { path, reference } => {
            let archive = DockerArchive::open(path)?;
            let i = archive.select(reference.as_deref())?;
            Opened::Docker(archive.source(i)?)
        }
        ImageLocation::Docker(_) | ImageLocation::DockerDaemon(_) => return Err(registry_transport(loc)),
    })
}

/// A destination as opened.
enum OpenedDest {
    Layout(LayoutDest),
    OciArchive(OciArchiveDest),
    DockerArchive(Box<DockerArchiveDest>),
    Dir(DirDest),
}

fn open_any_dest(
    loc: &ImageLocation,
    store: &Store,
    name_hint: Option<&Reference>,
    additional_tags: &[Reference],
) -> Result<OpenedDest> {
    check_additional_tags(loc, additional_tags)?;
    Ok(match loc {
        ImageLocation::Store(name) => {
            let r = Reference::parse(name)?;
            OpenedDest::Layout(store.dest(Some(&r))?)
        }
        ImageLocation::Oci { path, tag } => {
            let layout = OciLayout::open_or_create(path)?;
            OpenedDest::Layout(LayoutDest::new(layout, tag.clone(), loc.to_string())?)
        }
        ImageLocation::OciArchive { path, tag } => {
            OpenedDest::OciArchive(OciArchiveDest::create(path, tag.clone(), name_hint.cloned())?)
        }
        ImageLocation::DockerArchive { path, reference } => {
            let mut tags: Vec<Reference> = match reference {
                Some(r) => vec![Reference::parse(r)?.pull_reference()],
                None => name_hint.filter(|r| r.tag().is_some()).cloned().into_iter().collect(),
            };
            for t in additional_tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            OpenedDest::DockerArchive(Box::new(DockerArchiveDest::create(path, tags)?))
        }
        ImageLocation::Dir(path) => OpenedDest::Dir(DirDest::create(path)?),
        ImageLocation::Docker(_) | ImageLocation::DockerDaemon(_) => return Err(registry_transport(loc)),
    })
}

/// Refuses `additional_tags`, when there are any, for a destination that
/// cannot record them: any but `docker-archive:` and `docker-daemon:`.
pub fn check_additional_tags(loc: &ImageLocation, additional_tags: &[Reference]) -> Result<()> {
    match (additional_tags.first(), loc) {
        (None, _) | (_, ImageLocation::DockerArchive { .. } | ImageLocation::DockerDaemon(_)) => Ok(()),
        (Some(t), _) => Err(crate::copy::additional_tags_refused(
            t,
            format!("{loc} records one name (docker-archive: and docker-daemon: destinations record more)"),
        )),
    }
}

/// Opens `loc` for reading. Store names are resolved in `store`.
pub fn open_source(loc: &ImageLocation, store: &Store) -> Result<Box<dyn ImageSource + Send>> {
    Ok(match open_any_source(loc, store)? {
        Opened::Layout(s) => Box::new(s),
        Opened::Docker(s) => Box::new(s),
    })
}

/// Opens `loc` for writing. `name_hint` names the image where the location
/// does not (a docker-archive without `:REF`).
pub fn open_dest(loc: &ImageLocation, store: &Store, name_hint: Option<&Reference>) -> Result<Box<dyn ImageDest>> {
    open_dest_tagged(loc, store, name_hint, &[])
}

/// [`open_dest`], the image also named `additional_tags` (each `NAME:TAG`,
/// skopeo's `--additional-tag`): a `docker-archive:` records them all; any
/// other location is refused before it is opened.
pub fn open_dest_tagged(
    loc: &ImageLocation,
    store: &Store,
    name_hint: Option<&Reference>,
    additional_tags: &[Reference],
) -> Result<Box<dyn ImageDest>> {
    Ok(match open_any_dest(loc, store, name_hint, additional_tags)? {
        OpenedDest::Layout(d) => Box::new(d),
        OpenedDest::OciArchive(d) => Box::new(d),
        OpenedDest::DockerArchive(d) => d,
        OpenedDest::Dir(d) => Box::new(d),
    })
}

/// [`open_source`] for async code (opening reads the file on the blocking
/// pool). Layouts, the store and OCI archives are read concurrently;
/// a docker archive through [`Blocking`].
pub async fn open_source_async(loc: &ImageLocation, store: &Store) -> Result<Box<dyn AsyncImageSource>> {
    let (loc, store) = (loc.clone(), store.clone());
    let opened = blocking(move || open_any_source(&loc, &store)).await?;
    Ok(match opened {
        Opened::Layout(s) => Box::new(s),
        Opened::Docker(s) => Box::new(Blocking::source(s)),
    })
}

/// [`open_dest`] for async code. Layouts and the store take blobs
/// concurrently; archives one after the other, through [`Blocking`].
pub async fn open_dest_async(
    loc: &ImageLocation,
    store: &Store,
    name_hint: Option<&Reference>,
) -> Result<Box<dyn AsyncImageDest>> {
    open_dest_async_tagged(loc, store, name_hint, &[]).await
}

/// [`open_dest_tagged`] for async code.
pub async fn open_dest_async_tagged(
    loc: &ImageLocation,
    store: &Store,
    name_hint: Option<&Reference>,
    additional_tags: &[Reference],
) -> Result<Box<dyn AsyncImageDest>> {
    let (loc, store, hint, tags) = (loc.clone(), store.clone(), name_hint.cloned(), additional_tags.to_vec());
    let opened = blocking(move || open_any_dest(&loc, &store, hint.as_ref(), &tags)).await?;
    Ok(match opened {
        OpenedDest::Layout(d) => Box::new(d),
        OpenedDest::OciArchive(d) => Box::new(Blocking::dest(d)),
        OpenedDest::DockerArchive(d) => Box::new(Blocking::dest(*d)),
        OpenedDest::Dir(d) => Box::new(Blocking::dest(d)),
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
