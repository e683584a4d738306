//! Pull-through cache: what a pull misses is fetched from the upstream
//! registry, verified against its digest, stored, and served; tags are asked
//! upstream each time (the cached copy serves when upstream is unreachable).

use std::sync::Arc;

use cargohold_image_core::{Descriptor, Digest};
use tokio::io::AsyncWriteExt as _;

use super::storage::{Storage, StoredManifest, hash_file};
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
        storage: &Arc<dyn Storage>,
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
        let storage = Arc::clone(storage);
        let (repo, tag, d) = (repo.to_owned(), tag.to_owned(), desc.digest.clone());
        match tokio::task::spawn_blocking(move || storage.set_tag(&repo, &tag, &d)).await {
            Ok(Ok(())) => Some(Ok(desc.digest)),
            Ok(Err(e)) => Some(Err(ProxyMiss::Failed(format!("storing the tag: {e}")))),
            Err(e) => Some(Err(ProxyMiss::Failed(e.to_string()))),
        }
    }

    /// Fetches a manifest by digest from upstream (verified) and stores it.
    pub(crate) async fn cache_manifest(
        &self,
        storage: &Arc<dyn Storage>,
        repo: &str,
        digest: &Digest,
    ) -> Result<(), ProxyMiss> {
        if storage.get_manifest(repo, digest).map_err(|e| ProxyMiss::Failed(e.to_string()))?.is_some() {
            return Ok(());
        }
        let raw = match self.client.get_manifest_ref(&self.registry, repo, digest.as_str(), Some(digest)).await {
            Ok(r) => r,
            Err(crate::Error::Status { status: 404, .. }) => return Err(ProxyMiss::Unknown),
            Err(e) => return Err(ProxyMiss::Failed(e.to_string())),
        };
        let m = StoredManifest { digest: digest.clone(), media_type: raw.media_type, bytes: raw.bytes };
        storage.put_manifest(repo, &m).map_err(|e| ProxyMiss::Failed(format!("storing the manifest: {e}")))
    }

    /// Streams a blob from upstream into an upload of `repo`, verifies it
    /// and stores it.
    pub(crate) async fn cache_blob(
        &self,
        storage: &Arc<dyn Storage>,
        repo: &str,
        digest: &Digest,
    ) -> Result<(), ProxyMiss> {
        let fail = |e: String| ProxyMiss::Failed(e);
        let desc = Descriptor::new("application/octet-stream", digest.clone(), 0);
        let mut stream = match self.client.get_blob(&self.registry, repo, &desc).await {
            Ok(s) => s,
            Err(crate::Error::Status { status: 404, .. }) => return Err(ProxyMiss::Unknown),
            Err(e) => return Err(fail(e.to_string())),
        };
        let id = storage.start_upload(repo).map_err(|e| fail(e.to_string()))?;
        let file = storage
            .upload_file(repo, &id)
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("the upload vanished".into()))?;
        let mut f = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
        let result: Result<(), ProxyMiss> = async {
            while let Some(chunk) = stream.chunk(&self.client).await.map_err(|e| fail(e.to_string()))? {
                f.write_all(&chunk).await.map_err(|e| fail(e.to_string()))?;
            }
            f.flush().await.map_err(|e| fail(e.to_string()))?;
            let mut std_file = f.into_inner().into_std().await;
            let algorithm = digest.algorithm();
            let actual =
                tokio::task::block_in_place(|| hash_file(&mut std_file, algorithm)).map_err(|e| fail(e.to_string()))?;
            if &actual != digest {
                return Err(fail(format!("upstream sent content with digest {actual} for {digest}")));
            }
            storage.commit_upload(repo, &id, digest).map_err(|e| fail(e.to_string()))
        }
        .await;
        if result.is_err() {
            let _ = storage.cancel_upload(repo, &id);
        }
        result
    }
}
