//! Build errors: each names the Dockerfile line it is about.

use std::path::PathBuf;

use crate::context::ContextError;
use crate::dockerfile::ParseError;
use crate::exec::ExecError;

/// A failed build. Errors name the Dockerfile line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile could not be read.
    #[error("could not read the Dockerfile {}", path.display())]
    Dockerfile {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Parsing or planning failed.
    #[error(transparent)]
    Plan(#[from] ParseError),
    /// A base image is not usable.
    #[error("{file}:{line}: base image {name}")]
    Base {
        /// Dockerfile name.
        file: String,
        /// Its line.
        line: usize,
        /// The image.
        name: String,
        /// Why.
        #[source]
        source: Box<cargohold_image_core::Error>,
    },
    /// COPY/ADD sources are not usable.
    #[error("{file}:{line}: {instruction}")]
    Context {
        /// Dockerfile name.
        file: String,
        /// Its line.
        line: usize,
        /// The instruction.
        instruction: String,
        /// Why.
        #[source]
        source: ContextError,
    },
    /// A step could not be carried out.
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        /// Dockerfile name.
        file: String,
        /// Its line.
        line: usize,
        /// The instruction.
        instruction: String,
        /// What failed.
        message: String,
    },
    /// A RUN could not start.
    #[error("{file}:{line}: {instruction}")]
    Exec {
        /// Dockerfile name.
        file: String,
        /// Its line.
        line: usize,
        /// The instruction.
        instruction: String,
        /// Why.
        #[source]
        source: ExecError,
    },
    /// `run_image` could not run its container.
    #[error("could not run a container of {image}")]
    Run {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: ExecError,
    },
    /// A RUN exited non-zero.
    #[error("{file}:{line}: {instruction}: exit code {code}")]
    Failed {
        /// Dockerfile name.
        file: String,
        /// Its line.
        line: usize,
        /// The instruction.
        instruction: String,
        /// Its exit code.
        code: i32,
    },
    /// A shared build cache image is not usable.
    #[error("build cache {name}: {reason}")]
    Cache {
        /// The cache image.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error("the image store")]
    Store(#[source] Box<cargohold_image_core::Error>),
    /// Writing or unpacking a layer failed.
    #[error("a layer")]
    Layer(#[from] cargohold_layerfs::Error),
    /// A config change (`commit -c`) is not one.
    #[error(transparent)]
    Change(#[from] cargohold_image_core::ChangeError),
    /// A container record could not be made or read.
    #[error(transparent)]
    Container(#[from] crate::exec::ContainerError),
    /// An image of another architecture, which this machine cannot run.
    #[error("{image} is a {platform} image")]
    Emulation {
        /// The image.
        image: String,
        /// Its platform.
        platform: String,
        /// Why it cannot run.
        #[source]
        source: Box<cargohold_runtime::EmulationError>,
    },
    /// The platforms asked for cannot be built (none, or one twice).
    #[error("--platform: {0}")]
    Platforms(String),
    /// Something still uses what was to be removed (`message` names both).
    #[error("{message}")]
    Conflict {
        /// What was to be removed.
        what: String,
        /// What uses it, and what to do.
        message: String,
    },
    /// A file operation of the builder failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<cargohold_image_core::Error> for BuildError {
    fn from(e: cargohold_image_core::Error) -> Self {
        BuildError::Store(Box::new(e))
    }
}
