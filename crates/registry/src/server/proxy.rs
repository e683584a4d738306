//! Pull-through cache: what a pull misses is fetched from the upstream
//! registry, verified against its digest, stored, and served; tags are asked
//! upstream each time (the cached copy serves when upstream is unreachable).

use std::sync::Arc;

use cargohold_image_core::{Descriptor, Digest};
use futures_util::StreamExt as _;

use super::storage::{Storage, StoredManifest};
use crate::client::RegistryClient;

/// The upstream a cache pulls through to.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Its `host[:port]`.
    pub registry: String,
    /// The client that talks to it (its credentials, TLS, timeouts).
    pub client: Arc<RegistryClient>,
}

/// Why a pull through failed.
pub(crate) enum ProxyMiss {
    /// Upstream does not have it either.
    Unknown,
    /// Upstream failed (or sent something that does not verify).
    Failed(String),
}

impl Proxy {
    /// Resolves `tag` upstream and caches the manifest it names; `None`
    /// when upstream could not be asked (the local tag then serves).
    pub(crate) async fn refresh_tag(
        &self,
        storage: &Storage,
        repo: &str,
        tag: &str,
    ) -> Option<Result<Digest, ProxyMiss>> {
        let desc = match self.client.head_manifest(&self.registry, repo, tag).await {
            Ok(Some(d)) => d,
            Ok(None) => return Some(Err(ProxyMiss::Unknown)),
            Err(_) => return None,
        };
        if let Err(e) = self.cache_manifest(storage, repo, &desc.digest).await {
            return Some(Err(e));
        }
        match storage.set_tag(repo, tag, &desc.digest).await {
            Ok(()) => Some(Ok(desc.digest)),
            Err(e) => Some(Err(ProxyMiss::Failed(format!("storing the tag: {e}")))),
        }
    }

    /// Fetches a manifest by digest from upstream (verified) and stores it.
    pub(crate) async fn cache_manifest(&self, storage: &Storage, repo: &str, digest: &Digest) -> Result<(), ProxyMiss> {
        if storage.get_manifest(repo, digest).await.map_err(|e| ProxyMiss::Failed(e.to_string()))?.is_some() {
            return Ok(());
        }
        let raw = match self.client.get_manifest_ref(&self.registry, repo, digest.as_str(), Some(digest)).await {
            Ok(r) => r,
            Err(crate::Error::Status { status: 404, .. }) => return Err(ProxyMiss::Unknown),
            Err(e) => return Err(ProxyMiss::Failed(e.to_string())),
        };
        let m = StoredManifest { digest: digest.clone(), media_type: raw.media_type, bytes: raw.bytes };
        storage.put_manifest(repo, &m).await.map_err(|e| ProxyMiss::Failed(format!("storing the manifest: {e}")))
    }

    /// Streams a blob from upstream into an upload of `repo`, verifies it
    /// and stores it.
    pub(crate) async fn cache_blob(&self, storage: &Storage, repo: &str, digest: &Digest) -> Result<(), ProxyMiss> {
        let fail = |e: String| ProxyMiss::Failed(e);
        let desc = Descriptor::new("application/octet-stream", digest.clone(), 0);
        let stream = match self.client.get_blob(&self.registry, repo, &desc).await {
            Ok(s) => s,
            Err(crate::Error::Status { status: 404, .. }) => return Err(ProxyMiss::Unknown),
            Err(e) => return Err(fail(e.to_string())),
        };
        let id = storage.start_upload(repo).await.map_err(|e| fail(e.to_string()))?;
        let client = Arc::clone(&self.client);
        // Upstream's bytes, hashed as they go into the upload.
        let hasher = Arc::new(std::sync::Mutex::new(cargohold_image_core::Hasher::new(digest.algorithm())));
        let hashing = Arc::clone(&hasher);
        let data = futures_util::stream::unfold(Some((stream, client)), |state| async move {
            let (mut stream, client) = state?;
            match stream.chunk(&client).await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some((stream, client)))),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        })
        .map(move |chunk: std::io::Result<bytes::Bytes>| {
            if let Ok(c) = &chunk {
                hashing.lock().expect("not poisoned").update(c);
            }
            chunk
        })
        .boxed();
        let result: Result<(), ProxyMiss> = async {
            storage.append_upload(&id, 0, data).await.map_err(|e| fail(e.to_string()))?;
            let h = std::mem::replace(
                &mut *hasher.lock().expect("not poisoned"),
                cargohold_image_core::Hasher::new(digest.algorithm()),
            );
            let actual = h.finish();
            if &actual != digest {
                return Err(fail(format!("upstream sent content with digest {actual} for {digest}")));
            }
            storage.commit_upload(repo, &id, digest).await.map_err(|e| fail(e.to_string()))
        }
        .await;
        if result.is_err() {
            let _ = storage.cancel_upload(repo, &id).await;
        }
        result
    }
}
