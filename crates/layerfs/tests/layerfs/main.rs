//! Integration tests of cargohold-layerfs: hostile tars, whiteout semantics,
//! and equality with umoci's unpack.

mod diff;
mod safety;
mod semantics;
mod support;
mod umoci;
