//! `docker save` tars and OCI archives: reading in place, writing by streaming.

mod docker;
mod oci;
mod writer;

pub use docker::{DockerArchive, DockerArchiveDest, DockerArchiveImage, DockerArchiveSource};
pub use oci::{OciArchiveDest, open_oci_archive};
