//! Integration tests of cargohold-image-core, with skopeo as the peer.

mod bad_input;
mod interop;
mod store_ops;
mod support;
