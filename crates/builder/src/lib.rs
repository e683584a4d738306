//! Dockerfile builds without a Docker engine. This first part is the
//! Dockerfile parser: parser directives (`# escape=`, `# syntax=`), comments,
//! line continuations, `--flags`, shell and exec (JSON) forms, heredocs, and
//! Docker's word rules with variable substitution. Errors name the file,
//! line and column. And [`dockerignore`]: which context paths a build skips.
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
pub mod exec;
pub mod plan;
pub mod run;
pub mod stage;
