//! The crate's error type. Every variant names the thing at fault.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, VerifyError};
use crate::manifest::ManifestError;
use crate::reference::ReferenceError;

/// Errors of `cargohold-image-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An invalid image reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A manifest, index or config that cannot be used.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A filesystem operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What we were doing (`read`, `create`, `rename` ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Content did not match its digest or size.
    #[error("blob {digest} from {location} failed verification")]
    Verify {
        /// The promised digest.
        digest: Digest,
        /// Where the content came from.
        location: String,
        /// What did not match.
        #[source]
        source: Box<VerifyError>,
    },
    /// Reading content failed (not a verification failure).
    #[error("could not read blob {digest} from {location}")]
    ReadBlob {
        /// The blob.
        digest: Digest,
        /// Where it was read from.
        location: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A blob a manifest refers to is missing.
    #[error("blob {digest} not found in {location}")]
    BlobNotFound {
        /// The missing blob.
        digest: Digest,
        /// Where we looked.
        location: String,
    },
    /// No image by that name.
    #[error("image {name:?} not found in {location}")]
    ImageNotFound {
        /// The name asked for.
        name: String,
        /// Where we looked.
        location: String,
    },
    /// The name matches several images and no rule picks one.
    #[error("{location} holds several images ({candidates}); name one")]
    Ambiguous {
        /// Where we looked.
        location: String,
        /// The choices.
        candidates: String,
    },
    /// A malformed archive.
    #[error("invalid archive {}: {reason}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Something is bigger than we allow.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What is too big.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An index has no entry for the wanted platform.
    #[error("{location} has no image for platform {wanted} (available: {available})")]
    NoMatchingPlatform {
        /// What was asked for.
        wanted: String,
        /// The index.
        location: String,
        /// What it offers.
        available: String,
    },
    /// An image location string that does not parse.
    #[error("invalid image location {input:?}: {reason}")]
    Location {
        /// The input.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A destination that cannot hold this kind of content.
    #[error("{location} cannot hold {what}")]
    Unsupported {
        /// The destination.
        location: String,
        /// What it cannot hold.
        what: String,
    },
    /// An option of an operation that cannot be taken as given.
    #[error("{option}: {reason}")]
    BadOption {
        /// The option, as given (`zstd compression level 30`).
        option: String,
        /// Why not.
        reason: String,
    },
    /// A remote location (a registry) failed; the source says how.
    #[error("could not {action} {location}")]
    Remote {
        /// What was being done (`fetch the manifest of`, `upload blob sha256:... to`).
        action: String,
        /// The remote location (`docker://host/repo:tag`).
        location: String,
        /// The transport's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A layer whose uncompressed digest differs from the config's diff ID.
    #[error("layer {layer} of {location} uncompresses to {actual}, but the config says {expected}")]
    DiffIdMismatch {
        /// The layer's (compressed) digest.
        layer: Digest,
        /// Where it came from.
        location: String,
        /// The config's diff ID.
        expected: Digest,
        /// What the layer actually hashes to.
        actual: Digest,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds a closure mapping an `io::Error` to [`Error::Io`] for `path`.
pub(crate) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io { action, path: path.to_path_buf(), source }
}

/// Maps an I/O error from streaming blob `digest` out of `location`.
pub(crate) fn blob_err(digest: &Digest, location: &str, source: io::Error) -> Error {
    Error::blob_read(digest, location, source)
}

impl Error {
    /// The same error with the file `from` called `to` wherever it names
    /// it: a spool file is named as what it holds (`standard input`).
    pub(crate) fn naming(self, from: &Path, to: &str) -> Error {
        let text = from.display().to_string();
        let path = |p: PathBuf| if p == from { PathBuf::from(to) } else { p };
        let loc = |l: String| l.replace(&text, to);
        match self {
            Error::Io { action, path: p, source } => Error::Io { action, path: path(p), source },
            Error::Archive { path: p, reason } => Error::Archive { path: path(p), reason: loc(reason) },
            Error::Verify { digest, location, source } => Error::Verify { digest, location: loc(location), source },
            Error::ReadBlob { digest, location, source } => Error::ReadBlob { digest, location: loc(location), source },
            Error::BlobNotFound { digest, location } => Error::BlobNotFound { digest, location: loc(location) },
            Error::ImageNotFound { name, location } => Error::ImageNotFound { name, location: loc(location) },
            Error::Ambiguous { location, candidates } => Error::Ambiguous { location: loc(location), candidates },
            Error::NoMatchingPlatform { wanted, location, available } => {
                Error::NoMatchingPlatform { wanted, location: loc(location), available }
            }
            Error::Unsupported { location, what } => Error::Unsupported { location: loc(location), what },
            Error::DiffIdMismatch { layer, location, expected, actual } => {
                Error::DiffIdMismatch { layer, location: loc(location), expected, actual }
            }
            other => other,
        }
    }

    /// The error for a failed read of blob `digest` from `location`: a
    /// [`Error::Verify`] when the read failed verification, else [`Error::ReadBlob`].
    pub fn blob_read(digest: &Digest, location: &str, source: io::Error) -> Error {
        match VerifyError::from_io(&source) {
            Some(v) => Error::Verify { digest: digest.clone(), location: location.into(), source: Box::new(v.clone()) },
            None => Error::ReadBlob { digest: digest.clone(), location: location.into(), source },
        }
    }
}
