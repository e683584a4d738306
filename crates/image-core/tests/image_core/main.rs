//! Integration tests of cargohold-image-core, with skopeo as the peer.

mod async_copy;
mod bad_input;
mod interop;
mod store_ops;
mod support;
