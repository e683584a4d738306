//! Dockerfile builds, staged OS image pipelines and isolated runs, without a
//! Docker engine: [`dockerfile`] parses (parser directives, comments, line
//! continuations, `--flags`, shell and exec forms, heredocs, Docker's word
//! rules; errors name the file, line and column), [`plan`] resolves stages
//! and arguments, [`build`] runs a plan into a store with a step cache,
//! [`exec`] runs containers (our own namespaces, or crun/runc), [`stage`]
//! is the staged pipeline and [`run`] a command in an image.
//!
//! ```
//! use cargohold_builder::dockerfile::{Keyword, parse, words};
//!
//! let d = parse("ARG V=1\nFROM busybox:${V}\nRUN echo hi\n", "Dockerfile").unwrap();
//! assert_eq!(d.instructions[1].keyword, Keyword::From);
//! let vars = |n: &str| (n == "V").then(|| "1.36".to_owned());
//! assert_eq!(words::word(&d.instructions[1].args, d.escape, &vars).unwrap(), "busybox:1.36");
//! ```

pub mod build;
pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod hygiene;
pub mod plan;
pub mod run;
pub mod stage;
mod step;

/// Running containers: the runtime crate, re-exported.
pub use cargohold_runtime as exec;
