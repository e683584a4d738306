//! The registry client against the real Debian `docker-registry`
//! (distribution v2) started on loopback by the tests, with skopeo as a peer.

mod api;
mod faults;
mod flows;
mod listen;
mod server;
mod token;
