//! Builder integration tests: builds and pipelines, on busybox
//! and debootstrap roots (as root: containers need it here).

mod builds;
mod platforms;
mod stage;
