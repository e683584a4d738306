//! The publisher end to end against the real `docker-registry` on loopback:
//! the tree's layout, whiteouts, hardlinks, agreement with `umoci unpack`,
//! incremental runs (counted at a proxy), tag changes, bad input.

mod cvmfs;
mod images;
mod mountless;
mod multiarch;
mod reference;
mod tree;
