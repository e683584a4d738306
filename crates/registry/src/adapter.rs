//! A registry as an `ImageSource` / `ImageDest`, so `copy` (verification,
//! all-or-nothing stores, format conversion) works with registries too.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use cargohold_image_core::{
    AsyncImageDest, AsyncImageSource, BlobChunks, BlobClaim, BlobKind, BlobOpener, BlobStream, Descriptor, Digest,
    ImageDest, ImageSource, RawManifest, Reference, StreamReader,
};
use futures_util::StreamExt;
use tokio::runtime::Runtime;

use crate::client::{ClientOptions, Lane, RegistryClient};
use crate::error::{Error, Result};

/// A client and the runtime that drives it, shared by sources and destinations.
#[derive(Debug, Clone)]
pub struct Registry {
    rt: Arc<OwnedRuntime>,
    client: Arc<RegistryClient>,
    /// Reference asked for -> where it was found (a mirror, or the
    /// registry's `location`), so every source of one pull reads one place.
    found: Arc<std::sync::Mutex<std::collections::HashMap<Reference, Reference>>>,
    /// One lock per blob being pushed (`registry/repository@digest`), so
    /// concurrent pushes sharing layers (a sync of many tags) send each once.
    blob_locks: BlobLocks,
    /// What this client has seen of blobs: present in a repository (sent,
    /// mounted or found there), and small configs as read (verified), by
    /// `registry/repository@digest`. A sync of many tags asks each once.
    seen: Arc<std::sync::Mutex<Seen>>,
}

/// See [`Registry::seen`](Registry).
#[derive(Debug, Default)]
struct Seen {
    present: std::collections::HashSet<String>,
    configs: std::collections::HashMap<String, Bytes>,
    config_bytes: usize,
}

/// At most this much config is kept.
const CONFIG_CACHE: usize = 16 << 20;

fn blob_key(r: &Reference, digest: &Digest) -> String {
    format!("{}/{}@{digest}", r.registry(), r.repository())
}

type BlobLocks = Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// The registry's own runtime; dropped inside another runtime (where a
/// blocking shutdown would panic) it shuts down in the background.
#[derive(Debug)]
struct OwnedRuntime(Option<Runtime>);

impl std::ops::Deref for OwnedRuntime {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            rt.shutdown_background();
        }
    }
}

impl Registry {
    /// A client with its own multi-threaded runtime: a worker thread for
    /// every two CPUs (one at least). Its workers drive the shared
    /// connections; the bulk of a transfer's work, hashing and writing
    /// blobs, runs on threads of its own (a large layer pulled into a store
    /// with its connection, see [`ClientOptions::own_connection_size`]),
    /// which the other CPUs are left to (measured on 2
    /// CPUs: a second worker made a pull spend 4% more CPU, its wall time
    /// 2% longer, in more thread switches).
    pub fn new(opts: ClientOptions) -> Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(workers)
            .build()
            .map_err(Error::Runtime)?;
        Ok(Registry {
            rt: Arc::new(OwnedRuntime(Some(rt))),
            client: Arc::new(RegistryClient::new(opts)?),
            found: Arc::default(),
            blob_locks: Arc::default(),
            seen: Arc::default(),
        })
    }

    /// The lock of a blob being pushed to a repository: held while the blob
    /// is checked for and sent, so another push of it waits and finds it there.
    pub(crate) fn blob_lock(
        &self,
        target: &Reference,
        digest: &cargohold_image_core::Digest,
    ) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{}/{}@{digest}", target.registry(), target.repository());
        Arc::clone(self.blob_locks.lock().expect("not poisoned").entry(key).or_default())
    }

    /// The async client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Runs a future to completion on this registry's runtime. Called from
    /// inside another tokio runtime (a program embedding the blocking
    /// facade in its own async code), the future runs on a helper thread
    /// instead of panicking; async code is better served by
    /// [`Registry::client`] directly, or by calling the blocking facade
    /// from `spawn_blocking`.
    pub fn block_on<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.block_on(f);
        }
        std::thread::scope(|s| match s.spawn(|| self.rt.block_on(f)).join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    /// A source for `reference` (`:latest` when bare). With a
    /// `registries.conf`, it reads from the first of the reference's mirrors
    /// that has it, else from its registry's `location`.
    pub fn source(&self, reference: &Reference) -> RegistrySource {
        let reference = reference.pull_reference();
        let endpoint = self.found.lock().expect("not poisoned").get(&reference).cloned();
        RegistrySource {
            reg: self.clone(),
            reference,
            endpoint: std::sync::Mutex::new(endpoint),
            top: std::sync::Mutex::default(),
            manifests: std::sync::Mutex::default(),
        }
    }

    /// A destination that pushes to `reference` (a tag; `:latest` when bare),
    /// at its registry's `location` when `registries.conf` rewrites it.
    pub fn dest(&self, reference: &Reference) -> RegistryDest {
        let asked = reference.pull_reference();
        let (reference, refused) = match self.client.options().registries.push_target(&asked) {
            Ok(target) => (target, None),
            Err(e) => (asked, Some(e.to_string())),
        };
        RegistryDest { reg: self.clone(), reference, refused, pending: std::sync::Mutex::default() }
    }

    /// Where `reference` is read from for anything but a pull's mirrors: its
    /// registry's `location` (blocked registries are an error).
    pub fn resolve(&self, reference: &Reference) -> Result<Reference> {
        let sources = self.client.options().registries.pull_sources(reference)?;
        Ok(sources.into_iter().find(|s| !s.mirror).map_or_else(|| reference.clone(), |s| s.reference))
    }

    /// Streams the body of an `http(s)://` URL (an archive to load or
    /// import) as a blocking reader.
    pub fn open_url(&self, url: &str) -> Result<Box<dyn Read + Send>> {
        let resp = self.block_on(self.client.get_url(url))?;
        let url = url.to_owned();
        let body: BlobStream = Box::pin(
            resp.bytes_stream().map(move |r| r.map_err(|e| io::Error::other(format!("reading {url} failed: {e}")))),
        );
        let reg = self.clone();
        Ok(Box::new(StreamReader::with_driver(body, move |s| reg.block_on(s.next()))))
    }

    /// Every tag of the repository of `reference`.
    pub fn tags(&self, reference: &Reference) -> Result<Vec<String>> {
        let r = self.resolve(reference)?;
        self.block_on(self.client.tags(r.registry(), r.repository()))
    }
}

fn remote(action: impl Into<String>, r: &Reference, e: Error) -> cargohold_image_core::Error {
    match e {
        Error::Image(inner) => *inner,
        other => cargohold_image_core::Error::Remote {
            action: action.into(),
            location: format!("docker://{r}"),
            source: Box::new(other),
        },
    }
}

/// A registry's refusal of an upload as not matching its digest or size,
/// as that blob failing verification there.
fn refused(e: &Error, desc: &Descriptor, r: &Reference) -> Option<cargohold_image_core::Error> {
    let Error::Status { status: 400, body, .. } = e else { return None };
    let code = ["DIGEST_INVALID", "SIZE_INVALID"].into_iter().find(|c| body.contains(c))?;
    Some(cargohold_image_core::Error::Verify {
        digest: desc.digest.clone(),
        location: format!("docker://{r}"),
        source: Box::new(cargohold_image_core::VerifyError::Refused {
            digest: desc.digest.clone(),
            by: format!("registry {} ({code})", r.registry()),
        }),
    })
}

/// Reads an image from a registry. What it read of the manifests and the
/// config is kept for the source's life, so resolving an image and copying
/// it asks the registry once (the tag is also resolved once: a copy sees
/// one image even if the tag moves meanwhile). The source is async
/// ([`AsyncImageSource`]); its blocking [`ImageSource`] runs the same calls
/// on the registry's runtime.
#[derive(Debug)]
pub struct RegistrySource {
    reg: Registry,
    reference: Reference,
    /// Where the image is read from, once known.
    endpoint: std::sync::Mutex<Option<Reference>>,
    top: std::sync::Mutex<Option<RawManifest>>,
    manifests: std::sync::Mutex<Vec<RawManifest>>,
}

fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait::async_trait]
impl AsyncImageSource for RegistrySource {
    fn location(&self) -> String {
        format!("docker://{}", self.reference)
    }

    async fn top_manifest(&self) -> cargohold_image_core::Result<RawManifest> {
        if let Some(m) = locked(&self.top).clone() {
            return Ok(m);
        }
        let known = locked(&self.endpoint).clone();
        if let Some(r) = known {
            let m = self.reg.client.get_manifest(&r).await.map_err(|e| remote("fetch the manifest of", &r, e))?;
            *locked(&self.top) = Some(m.clone());
            return Ok(m);
        }
        let sources = self
            .reg
            .client
            .options()
            .registries
            .pull_sources(&self.reference)
            .map_err(|e| remote("pull", &self.reference, e))?;
        let mut mirror_failures = Vec::new();
        for s in sources {
            match self.reg.client.get_manifest(&s.reference).await {
                Ok(m) => {
                    self.reg.found.lock().expect("not poisoned").insert(self.reference.clone(), s.reference.clone());
                    *locked(&self.endpoint) = Some(s.reference);
                    *locked(&self.top) = Some(m.clone());
                    return Ok(m);
                }
                // A mirror that lacks it or fails: the next one, then the registry.
                Err(e) if s.mirror => mirror_failures.push(format!("mirror {}: {e}", s.reference)),
                Err(e) => {
                    let e = remote("fetch the manifest of", &s.reference, e);
                    return Err(if mirror_failures.is_empty() {
                        e
                    } else {
                        cargohold_image_core::Error::Remote {
                            action: format!("fetch the manifest (after {})", mirror_failures.join("; ")),
                            location: format!("docker://{}", self.reference),
                            source: Box::new(e),
                        }
                    });
                }
            }
        }
        unreachable!("pull_sources always ends with the registry itself")
    }

    async fn manifest(&self, desc: &Descriptor) -> cargohold_image_core::Result<RawManifest> {
        if let Some(m) = locked(&self.manifests).iter().find(|m| m.digest == desc.digest) {
            return Ok(m.clone());
        }
        let r = &self.endpoint().await?;
        let m = self
            .reg
            .client
            .get_manifest_ref(r.registry(), r.repository(), desc.digest.as_str(), Some(&desc.digest))
            .await
            .map_err(|e| remote(format!("fetch manifest {} of", desc.digest), r, e))?;
        locked(&self.manifests).push(m.clone());
        Ok(m)
    }

    async fn blob(&self, desc: &Descriptor) -> cargohold_image_core::Result<BlobStream> {
        use cargohold_image_core::media_type as mt;
        let is_config = desc.media_type == mt::OCI_CONFIG || desc.media_type == mt::DOCKER_CONFIG;
        let r = &self.endpoint().await?;
        let key = blob_key(r, &desc.digest);
        if let Some(bytes) = locked(&self.reg.seen).configs.get(&key) {
            return Ok(cargohold_image_core::bytes_stream(bytes.clone()));
        }
        let client = Arc::clone(&self.reg.client);
        let mut stream = client
            .get_blob(r.registry(), r.repository(), desc)
            .await
            .map_err(|e| remote(format!("download blob {} of", desc.digest), r, e))?;
        if is_config && desc.size <= cargohold_image_core::MAX_CONFIG_SIZE {
            // Read whole (it is small), kept as the registry sent it: every
            // reader verifies it against its digest.
            let mut bytes = Vec::new();
            let failed = |e: Error| cargohold_image_core::Error::Remote {
                action: format!("download blob {}", desc.digest),
                location: format!("docker://{r}"),
                source: Box::new(e),
            };
            while let Some(b) = stream.chunk(&client).await.map_err(failed)? {
                bytes.extend_from_slice(&b);
                if bytes.len() as u64 > desc.size {
                    break; // the reader's check says how much too long
                }
            }
            let bytes = Bytes::from(bytes);
            // Kept only when it verifies (each reader checks it anyway).
            if desc.digest.same_algorithm_of(&bytes) == desc.digest {
                let mut seen = locked(&self.reg.seen);
                if seen.config_bytes + bytes.len() <= CONFIG_CACHE {
                    seen.config_bytes += bytes.len();
                    seen.configs.insert(key, bytes.clone());
                }
            }
            return Ok(cargohold_image_core::bytes_stream(bytes));
        }
        // Fused: a reader may ask again after the end.
        Ok(Box::pin(
            futures_util::stream::unfold((stream, client), |(mut stream, client)| async move {
                match stream.chunk(&client).await {
                    Ok(Some(b)) => Some((Ok(b), (stream, client))),
                    Ok(None) => None,
                    Err(e) => Some((Err(io::Error::other(e)), (stream, client))),
                }
            })
            .fuse(),
        ))
    }

    /// A large blob is read on a connection of its own, driven by a
    /// runtime of its own on the thread that takes the chunks (which
    /// hashes and writes them there): no hand-over between threads per
    /// chunk. Small blobs share the client's pooled connections.
    async fn blob_opener(&self, desc: &Descriptor) -> cargohold_image_core::Result<Option<BlobOpener>> {
        if desc.size < self.reg.client.options().own_connection_size {
            return Ok(None);
        }
        let r = self.endpoint().await?;
        let (client, desc) = (Arc::clone(&self.reg.client), desc.clone());
        Ok(Some(Box::new(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                cargohold_image_core::Error::Remote {
                    action: format!("download blob {}", desc.digest),
                    location: format!("docker://{r}"),
                    source: Box::new(Error::Runtime(e)),
                }
            })?;
            let lane = Some(Arc::new(Lane::new()));
            let stream = rt
                .block_on(client.get_blob_in(lane, r.registry(), r.repository(), &desc))
                .map_err(|e| remote(format!("download blob {} of", desc.digest), &r, e))?;
            let chunks: BlobChunks = Box::new(OwnConnection { rt, client, stream, ended: false });
            Ok(chunks)
        })))
    }

    fn name_hint(&self) -> Option<Reference> {
        Some(self.reference.clone())
    }

    fn registry_repository(&self) -> Option<Reference> {
        Some(locked(&self.endpoint).clone().unwrap_or_else(|| self.reference.clone()))
    }
}

/// A blob's chunks, read by the runtime of its own connection on the
/// thread that calls `next` (a blocking thread, never a runtime's worker).
struct OwnConnection {
    rt: tokio::runtime::Runtime,
    client: Arc<RegistryClient>,
    stream: crate::client::BlobStream,
    ended: bool,
}

impl Iterator for OwnConnection {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<io::Result<Bytes>> {
        if self.ended {
            return None;
        }
        match self.rt.block_on(self.stream.chunk(&self.client)) {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(e) => {
                self.ended = true;
                Some(Err(io::Error::other(e)))
            }
        }
    }
}

impl ImageSource for RegistrySource {
    fn location(&self) -> String {
        AsyncImageSource::location(self)
    }

    fn top_manifest(&mut self) -> cargohold_image_core::Result<RawManifest> {
        self.reg.block_on(AsyncImageSource::top_manifest(self))
    }

    fn manifest(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<RawManifest> {
        self.reg.block_on(AsyncImageSource::manifest(self, desc))
    }

    fn blob(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<Box<dyn Read + Send + '_>> {
        let stream = self.reg.block_on(AsyncImageSource::blob(self, desc))?;
        let reg = self.reg.clone();
        // The caller verifies what it reads.
        Ok(Box::new(StreamReader::with_driver(stream, move |s| reg.block_on(s.next()))))
    }

    fn name_hint(&self) -> Option<Reference> {
        AsyncImageSource::name_hint(self)
    }

    fn registry_repository(&self) -> Option<Reference> {
        AsyncImageSource::registry_repository(self)
    }
}

impl RegistrySource {
    /// Where the image is read from: found by `top_manifest` when mirrors
    /// are configured, else the registry's location.
    async fn endpoint(&self) -> cargohold_image_core::Result<Reference> {
        if let Some(r) = locked(&self.endpoint).clone() {
            return Ok(r);
        }
        let sources = self
            .reg
            .client
            .options()
            .registries
            .pull_sources(&self.reference)
            .map_err(|e| remote("pull", &self.reference, e))?;
        if let [only] = sources.as_slice() {
            *locked(&self.endpoint) = Some(only.reference.clone());
            return Ok(only.reference.clone());
        }
        AsyncImageSource::top_manifest(self).await?;
        Ok(locked(&self.endpoint).clone().expect("set with the top manifest"))
    }
}

/// Pushes an image to a registry: blobs first (skipping those it has),
/// child manifests by digest, the top manifest by tag last. Async
/// ([`AsyncImageDest`], blobs concurrently); its blocking [`ImageDest`]
/// runs the same calls on the registry's runtime.
#[derive(Debug)]
pub struct RegistryDest {
    reg: Registry,
    reference: Reference,
    /// Why nothing may be pushed here (a blocked registry).
    refused: Option<String>,
    /// Uploads the registry opened when a mount was refused (202), by blob.
    pending: std::sync::Mutex<std::collections::HashMap<Digest, crate::client::Upload>>,
}

#[async_trait::async_trait]
impl AsyncImageDest for RegistryDest {
    fn location(&self) -> String {
        format!("docker://{}", self.reference)
    }

    /// A registry checks each upload against its digest and size (the
    /// distribution spec's `DIGEST_INVALID`, `SIZE_INVALID`), so the copy
    /// does not hash what it sends; a refusal comes back as the blob
    /// failing verification, and the copy reads the source again to say
    /// whose fault it is.
    fn verifies_blobs(&self) -> bool {
        true
    }

    async fn has_blob(&self, desc: &Descriptor) -> cargohold_image_core::Result<bool> {
        self.check()?;
        let r = &self.reference;
        let key = blob_key(r, &desc.digest);
        if locked(&self.reg.seen).present.contains(&key) {
            return Ok(true);
        }
        let there = self
            .reg
            .client
            .has_blob(r.registry(), r.repository(), &desc.digest)
            .await
            .map_err(|e| remote("check for a blob at", r, e))?;
        if there {
            locked(&self.reg.seen).present.insert(key);
        }
        Ok(there)
    }

    /// Concurrent copies sharing a blob (a sync of many tags) take its lock
    /// in turn: the first sends it, the others then find it there (the
    /// copy checks after its turn comes, and never opens it at its source).
    async fn claim_blob(&self, desc: &Descriptor) -> cargohold_image_core::Result<Option<BlobClaim>> {
        let lock = self.reg.blob_lock(&self.reference, &desc.digest);
        Ok(Some(BlobClaim::holding(lock.lock_owned().await)))
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        _kind: BlobKind,
        data: BlobStream,
    ) -> cargohold_image_core::Result<Descriptor> {
        self.check()?;
        let r = &self.reference;
        let fail = |e| refused(&e, desc, r).unwrap_or_else(|| remote(format!("upload blob {} to", desc.digest), r, e));
        let pending = locked(&self.pending).remove(&desc.digest);
        let client = &self.reg.client;
        let up = match pending {
            Some(up) => up,
            None => client.start_upload(r.registry(), r.repository()).await.map_err(fail)?,
        };
        let configured = client.chunk_size();
        if configured == 0 && desc.size > SMALL_BLOB {
            // One streamed PATCH, as docker and skopeo send it; a source
            // that fails (or does not verify) aborts the request.
            let up = client.upload_streamed(up, reqwest::Body::wrap_stream(data), desc.size).await.map_err(fail)?;
            client.finish_upload(up, &desc.digest, Vec::new()).await.map_err(fail)?;
            self.sent(desc);
            return Ok(desc.clone());
        }
        let chunk = if configured == 0 { SMALL_BLOB as usize } else { configured };
        upload_chunked(client, up, desc, data, chunk).await.map_err(|e| match e {
            StreamFailure::Read(e) => cargohold_image_core::Error::blob_read(&desc.digest, "the source", e),
            StreamFailure::Registry(e) => fail(e),
        })?;
        self.sent(desc);
        Ok(desc.clone())
    }

    async fn mount_blob(&self, desc: &Descriptor, from: &Reference) -> cargohold_image_core::Result<bool> {
        self.check()?;
        let r = &self.reference;
        if from.registry() != r.registry() || from.repository() == r.repository() {
            return Ok(false);
        }
        let mounted =
            self.reg
                .client
                .mount_blob(r.registry(), r.repository(), &desc.digest, from.repository())
                .await
                .map_err(|e| remote(format!("mount blob {} from {} into", desc.digest, from.repository()), r, e))?;
        match mounted {
            None => {
                self.sent(desc);
                Ok(true)
            }
            Some(up) => {
                locked(&self.pending).insert(desc.digest.clone(), up);
                Ok(false)
            }
        }
    }

    async fn put_manifest(&self, m: &RawManifest) -> cargohold_image_core::Result<()> {
        self.check()?;
        let r = &self.reference;
        self.push_manifest(m.digest.as_str(), m)
            .await
            .map_err(|e| remote(format!("push manifest {} to", m.digest), r, e))
    }

    async fn commit(&self, top: &RawManifest) -> cargohold_image_core::Result<()> {
        self.check()?;
        let r = &self.reference;
        let target = match (r.tag(), r.digest()) {
            (Some(t), _) => t.to_owned(),
            (None, Some(d)) if d == &top.digest => d.to_string(),
            (None, Some(d)) => {
                return Err(cargohold_image_core::Error::Unsupported {
                    location: format!("docker://{r}"),
                    what: format!("pushing manifest {} to a reference pinned to {d}", top.digest),
                });
            }
            (None, None) => "latest".into(),
        };
        self.push_manifest(&target, top).await.map_err(|e| remote("push the manifest to", r, e))
    }
}

impl ImageDest for RegistryDest {
    fn location(&self) -> String {
        AsyncImageDest::location(self)
    }

    fn has_blob(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<bool> {
        self.reg.block_on(AsyncImageDest::has_blob(self, desc))
    }

    /// Reads `data` here, a chunk at a time, while the upload runs on the
    /// registry's runtime.
    fn put_blob(
        &mut self,
        desc: &Descriptor,
        kind: BlobKind,
        data: &mut dyn Read,
    ) -> cargohold_image_core::Result<Descriptor> {
        // Nothing to send when it is there (a config the blocking copy
        // always offers).
        if !locked(&self.pending).contains_key(&desc.digest) && ImageDest::has_blob(self, desc)? {
            return Ok(desc.clone());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
        let stream: BlobStream = Box::pin(
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).fuse(),
        );
        let this: &RegistryDest = self;
        std::thread::scope(|s| {
            let upload = s.spawn(move || this.reg.block_on(AsyncImageDest::put_blob(this, desc, kind, stream)));
            let mut read_error = None;
            loop {
                let mut buf = vec![0u8; 1 << 20];
                match data.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if wait_for(tx.send(Ok(Bytes::from(buf)))).is_err() {
                            break; // the upload ended: its error says why
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = wait_for(tx.send(Err(io::Error::new(e.kind(), e.to_string()))));
                        read_error = Some(e);
                        break;
                    }
                }
            }
            drop(tx);
            let result = upload.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            match read_error {
                Some(e) => Err(cargohold_image_core::Error::blob_read(&desc.digest, "the source", e)),
                None => result,
            }
        })
    }

    fn mount_blob(&mut self, desc: &Descriptor, from: &Reference) -> cargohold_image_core::Result<bool> {
        self.reg.block_on(AsyncImageDest::mount_blob(self, desc, from))
    }

    fn put_manifest(&mut self, m: &RawManifest) -> cargohold_image_core::Result<()> {
        self.reg.block_on(AsyncImageDest::put_manifest(self, m))
    }

    fn commit(&mut self, top: &RawManifest) -> cargohold_image_core::Result<()> {
        self.reg.block_on(AsyncImageDest::commit(self, top))
    }
}

/// Waits on this thread for a future that needs no runtime (a channel
/// send): unlike `blocking_send`, also from blocking code that an async
/// program called on a runtime thread.
fn wait_for<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Blobs up to this size go in one `PUT`.
const SMALL_BLOB: u64 = 4 << 20;

/// Why an upload failed: reading the source, or the registry.
enum StreamFailure {
    Read(io::Error),
    Registry(Error),
}

/// Reads up to `chunk` bytes of `data` (less only at its end).
async fn next_chunk(data: &mut BlobStream, carry: &mut Bytes, chunk: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(chunk);
    loop {
        if !carry.is_empty() {
            let n = (chunk - out.len()).min(carry.len());
            out.extend_from_slice(&carry.split_to(n));
        }
        if out.len() == chunk {
            return Ok(out);
        }
        match data.next().await {
            Some(Ok(b)) => *carry = b,
            Some(Err(e)) => return Err(e),
            None => return Ok(out),
        }
    }
}

/// Uploads `data` in `chunk`-sized pieces: one piece or less as a
/// monolithic `PUT`; more as `PATCH`es (each in flight while the next piece
/// is read), then the closing `PUT`.
async fn upload_chunked(
    client: &crate::client::RegistryClient,
    mut up: crate::client::Upload,
    desc: &Descriptor,
    mut data: BlobStream,
    chunk: usize,
) -> std::result::Result<(), StreamFailure> {
    let mut carry = Bytes::new();
    let mut current = next_chunk(&mut data, &mut carry, chunk).await.map_err(StreamFailure::Read)?;
    let mut following = if current.len() < chunk {
        Vec::new()
    } else {
        next_chunk(&mut data, &mut carry, chunk).await.map_err(StreamFailure::Read)?
    };
    loop {
        if following.is_empty() {
            return client.finish_upload(up, &desc.digest, current).await.map_err(StreamFailure::Registry);
        }
        let more = following.len() == chunk;
        let (sent, after) = futures_util::future::join(client.upload_chunk(&mut up, current), async {
            if more { next_chunk(&mut data, &mut carry, chunk).await } else { Ok(Vec::new()) }
        })
        .await;
        sent.map_err(StreamFailure::Registry)?;
        current = following;
        following = after.map_err(StreamFailure::Read)?;
    }
}

impl RegistryDest {
    /// Records a blob as present here (sent or mounted).
    fn sent(&self, desc: &Descriptor) {
        locked(&self.reg.seen).present.insert(blob_key(&self.reference, &desc.digest));
    }

    /// Refuses every operation on a blocked registry.
    fn check(&self) -> cargohold_image_core::Result<()> {
        match &self.refused {
            None => Ok(()),
            Some(why) => Err(cargohold_image_core::Error::Remote {
                action: "push".into(),
                location: format!("docker://{}", self.reference),
                source: why.clone().into(),
            }),
        }
    }

    /// Puts a manifest; if it has a `subject` the registry did not process
    /// (no referrers API), records it under the subject's fallback tag.
    async fn push_manifest(&self, reference: &str, m: &RawManifest) -> Result<()> {
        let r = &self.reference;
        let client = &self.reg.client;
        let processed = match client.put_manifest(r.registry(), r.repository(), reference, m).await {
            Ok(p) => p,
            Err(e) => {
                // Perhaps a blob taken as present was deleted meanwhile: ask
                // the registry again next time.
                let prefix = format!("{}/{}@", r.registry(), r.repository());
                locked(&self.reg.seen).present.retain(|k| !k.starts_with(&prefix));
                return Err(e);
            }
        };
        if processed {
            return Ok(());
        }
        let (subject, artifact_type, annotations) =
            match m.parse().map_err(|e| Error::from(cargohold_image_core::Error::from(e)))? {
                cargohold_image_core::Manifest::Image(i) => {
                    let t = i.artifact_type.clone().or_else(|| Some(i.config.media_type.clone()));
                    (i.subject, t, i.annotations)
                }
                cargohold_image_core::Manifest::Index(i) => (i.subject, i.artifact_type, i.annotations),
            };
        let Some(subject) = subject else { return Ok(()) };
        let mut desc = m.descriptor();
        desc.artifact_type = artifact_type;
        desc.annotations = annotations;
        client.add_referrer_to_fallback(r.registry(), r.repository(), &subject.digest, desc).await
    }
}
