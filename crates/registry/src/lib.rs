//! An OCI Distribution client and the glue that lets `cargohold-image-core`'s
//! `copy` pull from and push to registries.
//!
//! The main types:
//! - [`RegistryClient`]: async requests with auth (anonymous, Basic, Bearer
//!   tokens per scope), manifests verified against their digest, blobs,
//!   monolithic and chunked uploads, paginated tags.
//! - [`Registry`]: a client plus runtime, handing out [`RegistrySource`] and
//!   [`RegistryDest`], which are `cargohold_image_core`'s async transports
//!   (`AsyncImageSource`, `AsyncImageDest`) as well as its blocking ones.
//!   [`pull`], [`push`], [`copy_image`] and [`sync`] move images through the
//!   one parallel copy, `copy_async` (layers in parallel, the image resolved
//!   once). From async code the same transfers run on the caller's runtime:
//!   `Registry::pull_into`, `push_from`, `copy_between`, `sync_images` (and
//!   the owned-argument `pull_async`, `push_async`, `copy_async`,
//!   `sync_async`); the blocking calls also work inside a runtime, on a
//!   helper thread, without panicking.
//! - TLS per registry (system roots, `certs.d` CAs and client certificates,
//!   unverified for insecure registries, HTTPS first then plain HTTP where
//!   allowed), [`RegistriesConf`] (containers-registries.conf v2), and a
//!   [`CredentialSource`] seam ([`AuthFiles`], [`NoCredentials`]).
//! - [`parse_www_authenticate`]; [`stored_credentials_for`], [`save_credentials`]
//!   and [`remove_credentials`] for Docker's and podman's auth files and
//!   `docker-credential-*` helpers.
//!
//! ```no_run
//! use cargohold_image_core::{CopyOptions, NoProgress, Reference, Store, copy};
//! use cargohold_registry::{ClientOptions, Registry};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reg = Registry::new(ClientOptions::default())?;
//! let store = Store::open("/tmp/store")?;
//! let r = Reference::parse("localhost:5000/team/app:1")?;
//! let mut dst = store.dest(Some(&r))?;
//! copy(&mut reg.source(&r), &mut dst, &CopyOptions::default(), &NoProgress)?;
//! # Ok(()) }
//! ```

mod adapter;
mod asynch;
mod auth;
mod client;
mod credentials;
mod daemon;
mod duration;
mod ensure;
mod error;
mod open;
mod pull;
mod registries_conf;
#[cfg(feature = "server")]
pub mod server;
mod sync;
mod tls;

pub use adapter::{Registry, RegistryDest, RegistrySource};
pub use auth::{Challenge, parse_www_authenticate};
pub use client::{
    BlobStream, ClientOptions, Lane, MAX_ATTEMPTS, RegistryClient, Upload, is_loopback, parse_link_next, referrers_tag,
};
pub use credentials::{
    AuthFiles, CredentialSource, Credentials, Env, NoCredentials, PerRegistrySources, auth_files, auth_files_with,
    docker_config, login_file, remove_credentials, save_credentials, stored_credentials_for,
};
pub use daemon::{DEFAULT_DOCKER_HOST, DaemonDest, DaemonSource, DockerHost};
pub use duration::parse_go_duration;
pub use ensure::{EnsuredImage, PullPolicy, ensure_image};
pub use error::{Error, Result};
pub use open::{open_dest, open_dest_async, open_dest_async_tagged, open_dest_tagged, open_source, open_source_async};
pub use pull::{copy_image, pull, push};
pub use registries_conf::{Mirror, PullFromMirror, PullSource, RegistriesConf, RegistryEntry};
pub use sync::{SyncImage, SyncOutcome, SyncRegistry, SyncResult, TagSelection, glob_match, parse_sync_yaml, sync};
