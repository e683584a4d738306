//! Errors of `cargohold-layerfs`. Each names the layer and, where there is one,
//! the tar entry at fault.

use std::io;
use std::path::PathBuf;

/// Errors of layer application and unpacking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tar entry that is refused (escapes the root, bad whiteout, ...).
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Entry {
        /// The layer (digest or name).
        layer: String,
        /// The entry's path as written in the tar.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A filesystem operation on an entry failed.
    #[error("layer {layer}: entry {entry:?}: could not {action}")]
    EntryIo {
        /// The layer.
        layer: String,
        /// The entry.
        entry: String,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The layer stream is not a valid tar (or its compression is broken).
    #[error("layer {layer}: invalid tar stream")]
    Tar {
        /// The layer.
        layer: String,
        /// The parse error.
        #[source]
        source: io::Error,
    },
    /// A configured limit was exceeded (decompression bomb, deep or wide tree).
    #[error("layer {layer}: entry {entry:?} exceeds the limit of {limit} {what}")]
    Limit {
        /// The layer.
        layer: String,
        /// The entry where the limit was hit.
        entry: String,
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: u64,
    },
    /// The uncompressed layer does not hash to the config's diff ID.
    #[error("layer {layer} uncompresses to {actual}, but the image config says {expected}")]
    DiffId {
        /// The layer.
        layer: String,
        /// The config's diff ID.
        expected: String,
        /// What it hashed to.
        actual: String,
    },
    /// The compressed layer failed its digest or size check.
    #[error("layer {layer} failed verification: {reason}")]
    Verify {
        /// The layer.
        layer: String,
        /// What did not match.
        reason: String,
    },
    /// A problem with the image (reading manifests, configs, blobs).
    #[error(transparent)]
    Image(Box<cargohold_image_core::Error>),
    /// A filesystem operation outside any entry.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl From<cargohold_image_core::Error> for Error {
    fn from(e: cargohold_image_core::Error) -> Self {
        Error::Image(Box::new(e))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
