//! Errors of the publisher; each names the wish list, image, layer or path at fault.

use std::path::PathBuf;

/// Errors of `cargohold-publish`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The wish list cannot be used at all.
    #[error("wish list {path}: {reason}")]
    Wishlist {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A filesystem operation on the publish tree failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The publish lock was not free within the timeout.
    #[error("another publisher holds the lock {} (waited {waited_s} s)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Seconds waited.
        waited_s: u64,
    },
    /// An image could not be read or is malformed.
    #[error(transparent)]
    Image(#[from] Box<cargohold_image_core::Error>),
    /// A layer could not be unpacked or flattened.
    #[error(transparent)]
    Layer(#[from] Box<cargohold_layerfs::Error>),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] Box<cargohold_registry::Error>),
}

impl From<cargohold_image_core::Error> for Error {
    fn from(e: cargohold_image_core::Error) -> Self {
        Error::Image(Box::new(e))
    }
}

impl From<cargohold_layerfs::Error> for Error {
    fn from(e: cargohold_layerfs::Error) -> Self {
        Error::Layer(Box::new(e))
    }
}

impl From<cargohold_registry::Error> for Error {
    fn from(e: cargohold_registry::Error) -> Self {
        Error::Registry(Box::new(e))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { action, path, source }
}
