//! Container image fundamentals: references, digests, manifests, the local
//! OCI-layout store, and `docker save` / OCI archives.
//!
//! The main types:
//! - [`Reference`]: an image name with Docker's exact grammar and normalization.
//! - [`Digest`] and [`VerifyingReader`]: content addressing, verified while streaming.
//! - [`RawManifest`] / [`Manifest`] / [`ImageConfig`]: manifests kept as exact bytes.
//! - [`Store`] and [`OciLayout`]: the local image store and crash-safe blob storage.
//! - [`copy()`] between any [`ImageSource`] and [`ImageDest`] ([`ImageLocation`]s
//!   such as `oci:DIR:TAG`, `docker-archive:FILE`, or a store name), and
//!   [`copy_async`] between any [`AsyncImageSource`] and [`AsyncImageDest`]
//!   inside the caller's tokio runtime, layers in parallel.
//!
//! ```
//! use cargohold_image_core::Reference;
//!
//! let r = Reference::parse("ubuntu:22.04").unwrap();
//! assert_eq!(r.canonical(), "docker.io/library/ubuntu:22.04");
//! assert_eq!(r.familiar(), "ubuntu:22.04");
//! assert_eq!(Reference::parse("busybox").unwrap().pull_reference().to_string(),
//!            "docker.io/library/busybox:latest");
//! ```
//!
//! Copying an image from an OCI layout into a store:
//!
//! ```no_run
//! use cargohold_image_core::{copy, open_dest, open_source, CopyOptions, ImageLocation, NoProgress, Store};
//!
//! # fn main() -> Result<(), cargohold_image_core::Error> {
//! let store = Store::open("/tmp/store")?;
//! let mut src = open_source(&ImageLocation::parse("oci:/tmp/layout:latest")?, &store)?;
//! let mut dst = open_dest(&ImageLocation::parse("myimage:1")?, &store, None)?;
//! let report = copy(src.as_mut(), dst.as_mut(), &CopyOptions::default(), &NoProgress)?;
//! println!("stored {}", report.manifest.digest);
//! # Ok(()) }
//! ```

mod archive;
mod copy;
mod decompress;
mod digest;
mod error;
mod inspect;
mod layout;
mod manifest;
pub mod media_type;
mod open;
mod output;
mod pgzip;
mod reference;
mod store;
mod transport;

pub use archive::{
    DockerArchive, DockerArchiveDest, DockerArchiveImage, DockerArchiveSource, OciArchiveDest, open_oci_archive,
};
pub use copy::{
    CompressionFormat, CopyOptions, CopyReport, NoProgress, Progress, ProgressReader, Recompress, WatchedReader,
    copied_digest, copy, copy_async,
};
pub use decompress::{StreamCompression, decompressed};
pub use digest::{
    Algorithm, Digest, DigestError, Hasher, HashingReader, HashingWriter, VerifyError, VerifyingReader, VerifyingWriter,
};
pub use error::{Error, Result};
pub use inspect::{ResolvedImage, platform_manifest, resolve_image};
pub use layout::{BlobStore, GcReport, OciLayout, StagedBlob, WriteGuard};
pub use manifest::{
    ANNOTATION_CREATED, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ChangeError, ContainerConfig, Descriptor, History,
    ImageConfig, ImageIndex, ImageManifest, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, Manifest, ManifestError,
    ManifestFormat, Platform, PlatformError, RawManifest, RootFs, creation_time, format_rfc3339,
};
pub use open::{
    ArchiveKind, check_additional_tags, detect_archive, open_dest, open_dest_async, open_dest_async_tagged,
    open_dest_tagged, open_source, open_source_async,
};
pub use output::Output;
pub use pgzip::ParallelGzWriter;
pub use reference::{
    DEFAULT_REGISTRY, DEFAULT_TAG, ImageUrl, ImageUrlError, MAX_PATH_LEN, Reference, ReferenceError, is_valid_registry,
    is_valid_tag,
};
pub use store::{ArchiveFormat, LoadedImage, NewLayer, Store, StoreImage};
pub use transport::{
    AsyncImageDest, AsyncImageSource, BlobChunks, BlobClaim, BlobKind, BlobOpener, BlobStream, Blocking, DirDest,
    ImageDest, ImageLocation, ImageSource, LayoutDest, LayoutSource, StreamReader, bytes_stream, stream_blocking,
};
