//! The union-layer filesystem: applying OCI layers to a root directory safely
//! and unpacking whole images.
//!
//! The main types:
//! - [`Root`]: a directory every path is resolved inside of (openat2
//!   `RESOLVE_IN_ROOT`, or an `O_NOFOLLOW` walk), so hostile names cannot escape.
//! - [`apply_layer`] with [`ApplyOptions`] and [`Limits`]: one layer tar applied with
//!   whiteouts, hardlinks, devices, ownership, modes, times and an explicit
//!   [xattr policy](xattr_policy).
//! - [`unpack`]: an image (from any `ImageSource`) flattened into a directory,
//!   each layer verified (compressed digest and diff ID) while it streams.
//!
//! ```no_run
//! use cargohold_image_core::{ImageLocation, Store, open_source};
//! use cargohold_layerfs::{UnpackOptions, unpack};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/tmp/store")?;
//! let mut src = open_source(&ImageLocation::parse("busybox:latest")?, &store)?;
//! let report = unpack(src.as_mut(), "/tmp/rootfs".as_ref(), &UnpackOptions::default())?;
//! println!("{} layers, {} entries", report.layers, report.entries);
//! # Ok(()) }
//! ```

mod apply;
mod diff;
mod error;
mod flatten;
mod layer;
mod mount;
mod root;
mod unpack;
mod write;
mod xattr;

pub use apply::{ApplyOptions, ApplyReport, Limits, apply_layer};
pub use cargohold_image_core::ParallelGzWriter;
pub use diff::{DiffReport, archive_tree, diff_trees, upper_to_layer};
pub use error::{Error, Result};
pub use flatten::{FlattenReport, flatten_linked};
pub use layer::{compression_for, store_layer, store_layer_from, write_layer_file};
pub use mount::{LayerCache, mount_layers, overlay_options, unmount};
pub use root::{Root, clear_dir, remove_all};
pub use unpack::{UnpackOptions, UnpackReport, stream_layers, unpack};
pub use write::WriteOptions;
pub use xattr::{XattrDecision, xattr_policy};

/// The xattr recording ownership in rootless mode, its encoder and decoder,
/// and whether this process runs in a user namespace.
pub mod rootless {
    pub use crate::apply::entry_rootless::{ROOTLESS_XATTR, parse_rootless_record, rootless_record};

    /// `(in a user namespace, only one ID mapped)`, read from
    /// `/proc/self/uid_map` once per process: a program that enters a user
    /// namespace (as the CLI does for rootless runs) must do so before its
    /// first layer operation.
    fn mapping() -> (bool, bool) {
        static MAPPING: std::sync::OnceLock<(bool, bool)> = std::sync::OnceLock::new();
        *MAPPING.get_or_init(|| {
            let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
            let userns = !map.is_empty() && map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"];
            let ids: u64 = map.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()).sum();
            (userns, userns && ids <= 1)
        })
    }

    /// Whether this process runs in a user namespace other than the
    /// initial one (rootless: IDs are mapped, overlayfs keeps its metadata
    /// in `user.overlay.*` xattrs, device nodes cannot be made).
    pub fn in_user_namespace() -> bool {
        mapping().0
    }

    /// Whether this process runs in a user namespace that maps one ID only
    /// (its own user as root, no subordinate IDs): other owners cannot be
    /// set there and are recorded in [`ROOTLESS_XATTR`] instead.
    pub fn only_root_mapped() -> bool {
        mapping().1
    }

    /// The xattr that marks an opaque directory for overlayfs here.
    pub fn opaque_xattr() -> &'static str {
        if in_user_namespace() { "user.overlay.opaque" } else { "trusted.overlay.opaque" }
    }
}
