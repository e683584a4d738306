//! A CernVM-FS-style publisher of unpacked container images, compatible with
//! DUCC's wish lists and tree layout:
//!
//! ```text
//! .layers/<xx>/<layer-hex>/layerfs/               one unpacked layer (whiteouts as files)
//! .layers/<xx>/<layer-hex>/.metadata/layers.json  digest, diffID, size
//! .layers/<xx>/<layer-hex>/.metadata/origin.json  the configs and images using it
//! .flat/<xx>/<config-hex>/                        the flattened rootfs (hardlinks into .layers)
//! .metadata/<registry>/<repo>:<tag>/manifest.json the manifest bytes as served
//! <registry>/<repo>:<tag> -> ../../.flat/<xx>/<config-hex>
//! ```
//!
//! Every layer and flat is built in a staging directory on the tree's
//! filesystem and renamed into place under the tree's lock, metadata and the
//! public symlink last: readers never see half an image, and a publisher
//! killed at any point leaves a valid tree the next run completes.
//!
//! ```no_run
//! use cargohold_publish::{PublishOptions, Publisher, parse_wishlist};
//! use cargohold_registry::{ClientOptions, Registry};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let text = std::fs::read_to_string("wishlist.yaml")?;
//! let wishes = parse_wishlist(&text, "wishlist.yaml")?;
//! let reg = Registry::new(ClientOptions::default())?;
//! let publisher = Publisher::new(wishes.cvmfs_repo.as_ref(), &reg, PublishOptions::default(), None)?;
//! for report in publisher.convert_wishlist(&wishes) {
//!     println!("{} {:?}", report.image, report.status);
//! }
//! # Ok(()) }
//! ```

mod backend;
mod convert;
mod error;
mod gc;
mod listen;
mod notify;
mod podman;
mod singularity;
mod thin;
mod tree;
mod wishlist;

pub use backend::{CvmfsServer, LocalDir, PublishBackend};
pub use convert::{
    ImageReport, PODMAN_STORE, PruneOutcome, PublishOptions, Publisher, ScrubReport, Status, create_podman_store,
    error_chain, expand, public_name,
};
pub use error::{Error, Result};
pub use gc::{Collected, GcReport, collect, collect_in};
pub use listen::{HookOptions, Job, JobAction, Queue, accept_hooks, jobs_of_webhook, listen, work_queue};
pub use notify::{Event, Notifier};
pub use podman::{PodmanImage, add_image as podman_add_image, podman_name, remove_name as podman_remove_name};
pub use thin::{ThinOptions, push_thin, thin_json};
pub use tree::{Beneath, Shadow, Tree, TreeLock, write_atomic};
pub use wishlist::{
    DEFAULT_OUTPUT_FORMAT, WishInput, WishProblem, Wishlist, expand_output, expanded_yaml, go_match,
    parse as parse_wishlist, parse_ignore_errors, parse_prune_config,
};
