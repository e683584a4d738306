//! The registry server (`cargohold serve`): the OCI distribution API over a
//! [`Storage`], on axum.
//!
//! What it speaks today: `/v2/` and every pull, push and discovery route of
//! the distribution spec v1.1 (HEAD/GET of manifests and blobs with `Range`,
//! monolithic, chunked and resumable uploads with the spec's `Location` and
//! `Range` headers, upload status and cancel, cross-repository mounts, tags
//! and catalog with `n`/`last` and `Link`, deletes, the referrers API with
//! `artifactType` filtering and `OCI-Subject`), with manifests validated
//! (their blobs and children must exist), digests verified as bodies
//! stream in, sizes capped, and errors in the spec's codes. Docker schema2
//! manifests and lists are stored and served as OCI ones are.
//!
//! Storage is a local directory ([`FsDriver`]) or an S3 bucket
//! ([`S3Driver`]); several servers over one bucket serve one registry. A
//! blob in a local file goes out over plain HTTP/1 with `sendfile(2)`
//! ([`serve`]); over TLS or HTTP/2 it is read and sent. Large upload bodies
//! on plain HTTP/1 connections are read a megabyte at a time (a receive
//! low-water mark), not as each segment arrives. [`serve_with`] spreads
//! connections over threads of its own ([`Listening`]). Requests can be
//! counted into [`Metrics`], which [`debug_router`] serves for Prometheus
//! beside `/debug/health`, as distribution's `http.debug` does.

mod auth;
mod config;
mod http;
mod listen;
mod metrics;
mod notify;
mod pacing;
mod proxy;
mod s3;
mod sendfile;
mod storage;
mod tls;
mod token;

pub use auth::{Access, Htpasswd};
pub use config::RegistryConfig;
pub use http::{LayerUrls, RequestLog, RequestLogger, ServerOptions, router};
pub use listen::{Listening, serve, serve_tls, serve_with};
pub use metrics::{Metrics, debug_router};
pub use notify::{EVENTS_MEDIA_TYPE, Endpoint, Notifier, Target};
pub use proxy::Proxy;
pub use s3::{MIN_PART_SIZE, S3Driver, S3Options};
pub use storage::{
    ByteStream, Driver, FsDriver, GcOptions, GcReport, Listing, ObjectMeta, ReferrerDescriptor, Storage, StoredManifest,
};
pub use tls::{TlsFiles, server_config};
pub use token::{Acl, Claims, Grant, Refusal, Rule, TokenAuth, TokenIssuer, key_id};
