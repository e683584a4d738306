//! Runtime integration tests (as root: containers need it here): the
//! executors on busybox roots, and hostile probes that each assert the
//! safe outcome under every executor and beside podman.

mod exec;
mod hardening;
