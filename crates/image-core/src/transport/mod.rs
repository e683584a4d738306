//! Image locations ("transports") and the [`ImageSource`] / [`ImageDest`] seam
//! that [`copy`](crate::copy()) moves images through.
//!
//! Location syntax is skopeo's: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:REF]`, `dir:DIR`, `docker://REF`; a bare name means the local store.

mod asynch;
mod dir;
mod files;
mod layout;

use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::manifest::{Descriptor, RawManifest};
use crate::reference::Reference;

pub(crate) use asynch::blocking;
pub use asynch::{
    AsyncImageDest, AsyncImageSource, BlobChunks, BlobClaim, BlobOpener, BlobStream, Blocking, StreamReader,
    bytes_stream, stream_blocking,
};
pub use dir::DirDest;
pub(crate) use dir::open_dir_source;
pub(crate) use files::{DirFiles, Files, TarIndex};
pub(crate) use layout::read_index;
pub use layout::{LayoutDest, LayoutSource};

/// What a blob is to the image, so a destination can treat layers specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobKind {
    /// The image config.
    Config,
    /// The layer at this position (0 = base).
    Layer(usize),
}

/// Where images are read from.
pub trait ImageSource {
    /// A human-readable location (`oci:/tmp/x:latest`), for messages.
    fn location(&self) -> String;
    /// The manifest (or index) this source designates.
    fn top_manifest(&mut self) -> Result<RawManifest>;
    /// A manifest by descriptor (a child of an index).
    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest>;
    /// The raw bytes of a blob. The caller verifies them.
    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;
    /// Where a blob comes from, for error messages (defaults to the source location).
    fn blob_location(&self, desc: &Descriptor) -> String {
        let _ = desc;
        self.location()
    }
    /// The image's own name, when the source records one (archive tags).
    fn name_hint(&self) -> Option<Reference> {
        None
    }
    /// The registry repository the blobs are read from, when the source is a
    /// registry: a destination on the same registry can mount them instead.
    fn registry_repository(&self) -> Option<Reference> {
        None
    }
}

/// Where images are written to. Nothing becomes visible before [`ImageDest::commit`].
pub trait ImageDest {
    /// A human-readable location, for messages.
    fn location(&self) -> String;
    /// Whether the destination can store an index (multi-platform image).
    fn supports_index(&self) -> bool {
        true
    }
    /// The one manifest format the destination writes whatever it is sent
    /// (a docker archive's), if it has one.
    fn fixed_format(&self) -> Option<crate::manifest::ManifestFormat> {
        None
    }
    /// Whether the blob is already present (and need not be sent).
    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool>;
    /// Stores a blob. `data` is already verifying itself against `desc`; the
    /// destination may store a transformed blob (a decompressed layer) and
    /// returns the descriptor of what it stored.
    fn put_blob(&mut self, desc: &Descriptor, kind: BlobKind, data: &mut dyn Read) -> Result<Descriptor>;
    /// Makes a blob present by reference to another repository of the same
    /// registry (a cross-repository mount), without sending its bytes.
    /// `Ok(false)` when it cannot, and the blob must be sent with `put_blob`.
    fn mount_blob(&mut self, desc: &Descriptor, from: &Reference) -> Result<bool> {
        let _ = (desc, from);
        Ok(false)
    }
    /// Stores a child manifest of an index.
    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()>;
    /// Stores the top manifest and makes the image visible (tags it).
    fn commit(&mut self, top: &RawManifest) -> Result<()>;
}

impl<T: ImageSource + ?Sized> ImageSource for Box<T> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn top_manifest(&mut self) -> Result<RawManifest> {
        (**self).top_manifest()
    }
    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        (**self).manifest(desc)
    }
    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        (**self).blob(desc)
    }
    fn blob_location(&self, desc: &Descriptor) -> String {
        (**self).blob_location(desc)
    }
    fn name_hint(&self) -> Option<Reference> {
        (**self).name_hint()
    }
    fn registry_repository(&self) -> Option<Reference> {
        (**self).registry_repository()
    }
}

impl<T: ImageDest + ?Sized> ImageDest for Box<T> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn supports_index(&self) -> bool {
        (**self).supports_index()
    }
    fn fixed_format(&self) -> Option<crate::manifest::ManifestFormat> {
        (**self).fixed_format()
    }
    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool> {
        (**self).has_blob(desc)
    }
    fn put_blob(&mut self, desc: &Descriptor, kind: BlobKind, data: &mut dyn Read) -> Result<Descriptor> {
        (**self).put_blob(desc, kind, data)
    }
    fn mount_blob(&mut self, desc: &Descriptor, from: &Reference) -> Result<bool> {
        (**self).mount_blob(desc, from)
    }
    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        (**self).put_manifest(manifest)
    }
    fn commit(&mut self, top: &RawManifest) -> Result<()> {
        (**self).commit(top)
    }
}

/// A parsed image location.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageLocation {
    /// A name in the local store.
    Store(String),
    /// `oci:DIR[:TAG]`.
    Oci {
        /// The layout directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to read or write.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`.
    OciArchive {
        /// The tar file.
        path: PathBuf,
        /// The ref name inside.
        tag: Option<String>,
    },
    /// `docker-archive:FILE[:REF]` (REF may also be `@N`, the N-th image).
    DockerArchive {
        /// The tar file.
        path: PathBuf,
        /// The image name to select or record.
        reference: Option<String>,
    },
    /// `docker://REF`, handled by the registry client.
    Docker(String),
    /// `dir:DIR`: one image in a directory, as skopeo's `dir:` transport.
    Dir(PathBuf),
    /// `docker-daemon:REF`: an image of a Docker engine (`NAME:TAG`,
    /// `NAME@DIGEST` or an image ID), handled by the registry client.
    DockerDaemon(String),
}

impl ImageLocation {
    /// Parses skopeo-style location syntax; anything without a known transport
    /// prefix is a local store name.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Location { input: input.into(), reason: reason.into() };
        let split = |rest: &str| -> (PathBuf, Option<String>) {
            match rest.split_once(':') {
                Some((p, t)) if !t.is_empty() => (PathBuf::from(p), Some(t.to_owned())),
                Some((p, _)) => (PathBuf::from(p), None),
                None => (PathBuf::from(rest), None),
            }
        };
        if let Some(rest) = input.strip_prefix("docker://") {
            if rest.is_empty() {
                return Err(bad("no reference after docker://"));
            }
            return Ok(ImageLocation::Docker(rest.into()));
        }
        if let Some(rest) = input.strip_prefix("docker-daemon:") {
            if rest.is_empty() {
                return Err(bad("no reference after docker-daemon:"));
            }
            return Ok(ImageLocation::DockerDaemon(rest.into()));
        }
        if let Some(rest) = input.strip_prefix("dir:") {
            if rest.is_empty() {
                return Err(bad("no path after dir:"));
            }
            return Ok(ImageLocation::Dir(PathBuf::from(rest)));
        }
        let (transport, rest) = match input.split_once(':') {
            Some((t @ ("oci" | "oci-archive" | "docker-archive"), rest)) => (t, rest),
            _ => {
                if input.is_empty() {
                    return Err(bad("empty"));
                }
                return Ok(ImageLocation::Store(input.into()));
            }
        };
        let (path, tag) = split(rest);
        if path.as_os_str().is_empty() {
            return Err(bad("no path"));
        }
        Ok(match transport {
            "oci" => ImageLocation::Oci { path, tag },
            "oci-archive" => ImageLocation::OciArchive { path, tag },
            _ => ImageLocation::DockerArchive { path, reference: tag },
        })
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, t: &str, p: &PathBuf, x: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            match x {
                Some(x) => write!(f, ":{x}"),
                None => Ok(()),
            }
        };
        match self {
            ImageLocation::Store(n) => f.write_str(n),
            ImageLocation::Oci { path, tag } => with(f, "oci", path, tag),
            ImageLocation::OciArchive { path, tag } => with(f, "oci-archive", path, tag),
            ImageLocation::DockerArchive { path, reference } => with(f, "docker-archive", path, reference),
            ImageLocation::Docker(r) => write!(f, "docker://{r}"),
            ImageLocation::Dir(p) => write!(f, "dir:{}", p.display()),
            ImageLocation::DockerDaemon(r) => write!(f, "docker-daemon:{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skopeo_syntax() {
        assert_eq!(
            ImageLocation::parse("oci:/tmp/x:latest").unwrap(),
            ImageLocation::Oci { path: "/tmp/x".into(), tag: Some("latest".into()) }
        );
        assert_eq!(
            ImageLocation::parse("oci-archive:a.tar").unwrap(),
            ImageLocation::OciArchive { path: "a.tar".into(), tag: None }
        );
        assert_eq!(
            ImageLocation::parse("docker-archive:a.tar:busybox:1").unwrap(),
            ImageLocation::DockerArchive { path: "a.tar".into(), reference: Some("busybox:1".into()) }
        );
        assert_eq!(
            ImageLocation::parse("docker://localhost:5000/a").unwrap(),
            ImageLocation::Docker("localhost:5000/a".into())
        );
        assert_eq!(ImageLocation::parse("busybox:1").unwrap(), ImageLocation::Store("busybox:1".into()));
        assert_eq!(ImageLocation::parse("localhost:5000/x").unwrap(), ImageLocation::Store("localhost:5000/x".into()));
        assert_eq!(ImageLocation::parse("dir:/tmp/a:1").unwrap(), ImageLocation::Dir("/tmp/a:1".into()));
        assert!(ImageLocation::parse("dir:").is_err());
        assert!(ImageLocation::parse("oci:").is_err());
        assert!(ImageLocation::parse("docker://").is_err());
        assert_eq!(
            ImageLocation::parse("docker-daemon:busybox:1").unwrap(),
            ImageLocation::DockerDaemon("busybox:1".into())
        );
        assert!(ImageLocation::parse("docker-daemon:").is_err());
        for s in ["oci:/tmp/x:latest", "docker-archive:a.tar:b:1", "docker://x/y", "dir:/tmp/d", "docker-daemon:a:1"] {
            assert_eq!(ImageLocation::parse(s).unwrap().to_string(), s);
        }
    }
}
