//! A registry as an `ImageSource` / `ImageDest`, so `copy` (verification,
//! all-or-nothing stores, format conversion) works with registries too.

use std::io::{self, Read};
use std::sync::Arc;

use cargohold_image_core::{BlobKind, Descriptor, ImageDest, ImageSource, RawManifest, Reference};
use tokio::runtime::Runtime;

use crate::client::{ClientOptions, RegistryClient};
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
}

type BlobLocks = Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<std::sync::Mutex<()>>>>>;

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
    /// A client with its own multi-threaded runtime.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(2)
            .build()
            .map_err(Error::Runtime)?;
        Ok(Registry {
            rt: Arc::new(OwnedRuntime(Some(rt))),
            client: Arc::new(RegistryClient::new(opts)?),
            found: Arc::default(),
            blob_locks: Arc::default(),
        })
    }

    /// The lock of a blob being pushed to a repository: held while the blob
    /// is checked for and sent, so another push of it waits and finds it there.
    pub(crate) fn blob_lock(
        &self,
        target: &Reference,
        digest: &cargohold_image_core::Digest,
    ) -> Arc<std::sync::Mutex<()>> {
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
        RegistrySource { reg: self.clone(), reference, endpoint, top: None, manifests: Vec::new(), configs: Vec::new() }
    }

    /// A destination that pushes to `reference` (a tag; `:latest` when bare),
    /// at its registry's `location` when `registries.conf` rewrites it.
    pub fn dest(&self, reference: &Reference) -> RegistryDest {
        let asked = reference.pull_reference();
        let (reference, refused) = match self.client.options().registries.push_target(&asked) {
            Ok(target) => (target, None),
            Err(e) => (asked, Some(e.to_string())),
        };
        RegistryDest { reg: self.clone(), reference, refused, pending: None }
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
        Ok(Box::new(UrlReader { reg: self.clone(), url: url.to_owned(), resp, buf: bytes::Bytes::new() }))
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

/// Reads an image from a registry. What it read of the manifests and the
/// config is kept for the source's life, so resolving an image and copying
/// it asks the registry once (the tag is also resolved once: a copy sees
/// one image even if the tag moves meanwhile).
#[derive(Debug)]
pub struct RegistrySource {
    reg: Registry,
    reference: Reference,
    /// Where the image is read from, once known.
    endpoint: Option<Reference>,
    top: Option<RawManifest>,
    manifests: Vec<RawManifest>,
    /// Configs (small, and read twice by a pull): digest and bytes.
    configs: Vec<(cargohold_image_core::Digest, Vec<u8>)>,
}

impl ImageSource for RegistrySource {
    fn location(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn top_manifest(&mut self) -> cargohold_image_core::Result<RawManifest> {
        if let Some(m) = &self.top {
            return Ok(m.clone());
        }
        if let Some(r) = &self.endpoint {
            let m = self
                .reg
                .block_on(self.reg.client.get_manifest(r))
                .map_err(|e| remote("fetch the manifest of", r, e))?;
            self.top = Some(m.clone());
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
            match self.reg.block_on(self.reg.client.get_manifest(&s.reference)) {
                Ok(m) => {
                    self.reg.found.lock().expect("not poisoned").insert(self.reference.clone(), s.reference.clone());
                    self.endpoint = Some(s.reference);
                    self.top = Some(m.clone());
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

    fn manifest(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<RawManifest> {
        if let Some(m) = self.manifests.iter().find(|m| m.digest == desc.digest) {
            return Ok(m.clone());
        }
        let r = &self.endpoint()?;
        let m = self
            .reg
            .block_on(self.reg.client.get_manifest_ref(
                r.registry(),
                r.repository(),
                desc.digest.as_str(),
                Some(&desc.digest),
            ))
            .map_err(|e| remote(format!("fetch manifest {} of", desc.digest), r, e))?;
        self.manifests.push(m.clone());
        Ok(m)
    }

    fn blob(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<Box<dyn Read + Send + '_>> {
        use cargohold_image_core::media_type as mt;
        if let Some((_, bytes)) = self.configs.iter().find(|(d, _)| *d == desc.digest) {
            return Ok(Box::new(io::Cursor::new(bytes.clone())));
        }
        let is_config = desc.media_type == mt::OCI_CONFIG || desc.media_type == mt::DOCKER_CONFIG;
        let r = &self.endpoint()?;
        if is_config && desc.size <= cargohold_image_core::MAX_CONFIG_SIZE {
            // Read whole (it is small), kept as the registry sent it: every
            // reader verifies it against its digest.
            let stream = self
                .reg
                .block_on(self.reg.client.get_blob(r.registry(), r.repository(), desc))
                .map_err(|e| remote(format!("download blob {} of", desc.digest), r, e))?;
            let mut body = BodyReader { reg: self.reg.clone(), stream, buf: bytes::Bytes::new() };
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut io::Read::take(&mut body, desc.size + 1), &mut bytes).map_err(|e| {
                cargohold_image_core::Error::Remote {
                    action: format!("download blob {}", desc.digest),
                    location: format!("docker://{r}"),
                    source: Box::new(e),
                }
            })?;
            self.configs.push((desc.digest.clone(), bytes.clone()));
            return Ok(Box::new(io::Cursor::new(bytes)));
        }
        let stream = self
            .reg
            .block_on(self.reg.client.get_blob(r.registry(), r.repository(), desc))
            .map_err(|e| remote(format!("download blob {} of", desc.digest), r, e))?;
        Ok(Box::new(BodyReader { reg: self.reg.clone(), stream, buf: bytes::Bytes::new() }))
    }

    fn name_hint(&self) -> Option<Reference> {
        Some(self.reference.clone())
    }

    fn registry_repository(&self) -> Option<Reference> {
        Some(self.endpoint.clone().unwrap_or_else(|| self.reference.clone()))
    }
}

impl RegistrySource {
    /// Where the image is read from: found by [`ImageSource::top_manifest`]
    /// when mirrors are configured, else the registry's location.
    fn endpoint(&mut self) -> cargohold_image_core::Result<Reference> {
        if let Some(r) = &self.endpoint {
            return Ok(r.clone());
        }
        let sources = self
            .reg
            .client
            .options()
            .registries
            .pull_sources(&self.reference)
            .map_err(|e| remote("pull", &self.reference, e))?;
        if let [only] = sources.as_slice() {
            self.endpoint = Some(only.reference.clone());
            return Ok(only.reference.clone());
        }
        self.top_manifest()?;
        Ok(self.endpoint.clone().expect("set with the top manifest"))
    }
}

/// A blob download as a blocking `Read` (the caller verifies what it reads).
struct BodyReader {
    reg: Registry,
    stream: crate::client::BlobStream,
    buf: bytes::Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            match self.reg.block_on(self.stream.chunk(&self.reg.client)).map_err(io::Error::other)? {
                Some(bytes) => self.buf = bytes,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

/// A URL's body as a blocking `Read`.
struct UrlReader {
    reg: Registry,
    url: String,
    resp: reqwest::Response,
    buf: bytes::Bytes,
}

impl Read for UrlReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.reg.block_on(self.resp.chunk()) {
                Ok(Some(bytes)) => self.buf = bytes,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(format!("reading {} failed: {e}", self.url))),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

/// Pushes an image to a registry: blobs first (skipping those it has),
/// child manifests by digest, the top manifest by tag last.
#[derive(Debug)]
pub struct RegistryDest {
    reg: Registry,
    reference: Reference,
    /// Why nothing may be pushed here (a blocked registry).
    refused: Option<String>,
    /// An upload the registry opened when a mount was refused (202).
    pending: Option<crate::client::Upload>,
}

impl ImageDest for RegistryDest {
    fn location(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn has_blob(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<bool> {
        self.check()?;
        let r = &self.reference;
        self.reg
            .block_on(self.reg.client.has_blob(r.registry(), r.repository(), &desc.digest))
            .map_err(|e| remote("check for a blob at", r, e))
    }

    fn put_blob(
        &mut self,
        desc: &Descriptor,
        kind: BlobKind,
        data: &mut dyn Read,
    ) -> cargohold_image_core::Result<Descriptor> {
        self.check()?;
        if matches!(kind, BlobKind::Config) {
            // Concurrent pushes of one image (a sync of many tags) share the
            // config: one sends it, the others find it there. (Layers are
            // locked the same way by `push`.)
            let lock = self.reg.blob_lock(&self.reference, &desc.digest);
            let _sending = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if self.has_blob(desc)? {
                return Ok(desc.clone());
            }
            return self.put_blob_unlocked(desc, data);
        }
        self.put_blob_unlocked(desc, data)
    }

    fn mount_blob(&mut self, desc: &Descriptor, from: &Reference) -> cargohold_image_core::Result<bool> {
        self.check()?;
        let r = &self.reference;
        if from.registry() != r.registry() || from.repository() == r.repository() {
            return Ok(false);
        }
        let mounted = self
            .reg
            .block_on(self.reg.client.mount_blob(r.registry(), r.repository(), &desc.digest, from.repository()))
            .map_err(|e| remote(format!("mount blob {} from {} into", desc.digest, from.repository()), r, e))?;
        match mounted {
            None => Ok(true),
            Some(up) => {
                self.pending = Some(up);
                Ok(false)
            }
        }
    }

    fn put_manifest(&mut self, m: &RawManifest) -> cargohold_image_core::Result<()> {
        self.check()?;
        let r = self.reference.clone();
        self.push_manifest(m.digest.as_str(), m).map_err(|e| remote(format!("push manifest {} to", m.digest), &r, e))
    }

    fn commit(&mut self, top: &RawManifest) -> cargohold_image_core::Result<()> {
        self.check()?;
        let r = self.reference.clone();
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
        self.push_manifest(&target, top).map_err(|e| remote("push the manifest to", &r, e))
    }
}

/// Blobs up to this size go in one `PUT`.
const SMALL_BLOB: u64 = 4 << 20;

/// Why a streamed upload failed: reading the source, or the registry.
enum StreamFailure {
    Read(cargohold_image_core::Error),
    Registry(Error),
}

impl RegistryDest {
    /// Uploads a blob (see [`ImageDest::put_blob`]).
    fn put_blob_unlocked(
        &mut self,
        desc: &Descriptor,
        data: &mut dyn Read,
    ) -> cargohold_image_core::Result<Descriptor> {
        let r = self.reference.clone();
        let fail = |e| remote(format!("upload blob {} to", desc.digest), &r, e);
        let configured = self.reg.client.chunk_size();
        if configured == 0 && desc.size > SMALL_BLOB {
            return self.put_blob_streamed(desc, data).map_err(|e| match e {
                StreamFailure::Read(e) => e,
                StreamFailure::Registry(e) => fail(e),
            });
        }
        let chunk = if configured == 0 { SMALL_BLOB as usize } else { configured };
        // Chunks are read here, between runtime calls: the source may itself
        // be a registry whose reader drives the runtime.
        let mut next = || -> cargohold_image_core::Result<Vec<u8>> {
            let mut buf = vec![0u8; chunk];
            let mut n = 0;
            while n < chunk {
                match data.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(cargohold_image_core::Error::ReadBlob {
                            digest: desc.digest.clone(),
                            location: "the source".into(),
                            source: e,
                        });
                    }
                }
            }
            buf.truncate(n);
            Ok(buf)
        };
        let client = &self.reg.client;
        let mut up = match self.pending.take() {
            Some(up) => up,
            None => self.reg.block_on(client.start_upload(r.registry(), r.repository())).map_err(fail)?,
        };
        let mut current = next()?;
        let mut following = if current.len() < chunk { Vec::new() } else { next()? };
        // One chunk or less: a monolithic PUT; more: PATCHes, then the PUT.
        // Each PATCH is in flight while the next chunk is read (and verified).
        loop {
            if following.is_empty() {
                self.reg.block_on(client.finish_upload(up, &desc.digest, current)).map_err(fail)?;
                return Ok(desc.clone());
            }
            let task_client = Arc::clone(client);
            let task = self.reg.rt.spawn(async move {
                let result = task_client.upload_chunk(&mut up, current).await;
                (up, result)
            });
            let after = if following.len() < chunk { Ok(Vec::new()) } else { next() };
            let (returned, result) = self
                .reg
                .block_on(task)
                .map_err(|e| fail(Error::Runtime(io::Error::other(format!("the upload task failed: {e}")))))?;
            up = returned;
            result.map_err(fail)?;
            current = following;
            following = after?;
        }
    }

    /// Uploads `desc` in one streamed `PATCH` of `desc.size` bytes, read
    /// from `data` here (1 MiB at a time) while the request runs, then closes
    /// the upload with its digest. A read error (a digest that does not
    /// verify) aborts the request, so the registry never stores it.
    fn put_blob_streamed(
        &mut self,
        desc: &Descriptor,
        data: &mut dyn Read,
    ) -> std::result::Result<Descriptor, StreamFailure> {
        let client = Arc::clone(&self.reg.client);
        let r = &self.reference;
        let up = match self.pending.take() {
            Some(up) => up,
            None => {
                self.reg.block_on(client.start_upload(r.registry(), r.repository())).map_err(StreamFailure::Registry)?
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(8);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        let body = reqwest::Body::wrap_stream(stream);
        let task_client = Arc::clone(&client);
        let size = desc.size;
        let task = self.reg.rt.spawn(async move { task_client.upload_streamed(up, body, size).await });
        let mut buf = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        let mut read_error = None;
        loop {
            match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n as u64;
                    let piece = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if self.reg.block_on(tx.send(Ok(piece))).is_err() {
                        break; // the request ended: its error says why
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = self.reg.block_on(tx.send(Err(io::Error::other(format!("reading the source: {e}")))));
                    read_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let up = self.reg.block_on(task);
        if let Some(e) = read_error {
            return Err(StreamFailure::Read(cargohold_image_core::Error::ReadBlob {
                digest: desc.digest.clone(),
                location: "the source".into(),
                source: e,
            }));
        }
        if sent != size {
            return Err(StreamFailure::Read(cargohold_image_core::Error::ReadBlob {
                digest: desc.digest.clone(),
                location: "the source".into(),
                source: io::Error::other(format!("the source gave {sent} bytes of {size}")),
            }));
        }
        let up = up
            .map_err(|e| {
                StreamFailure::Registry(Error::Runtime(io::Error::other(format!("the upload task failed: {e}"))))
            })?
            .map_err(StreamFailure::Registry)?;
        self.reg.block_on(client.finish_upload(up, &desc.digest, Vec::new())).map_err(StreamFailure::Registry)?;
        Ok(desc.clone())
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
    fn push_manifest(&self, reference: &str, m: &RawManifest) -> Result<()> {
        let r = &self.reference;
        let client = &self.reg.client;
        let processed = self.reg.block_on(client.put_manifest(r.registry(), r.repository(), reference, m))?;
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
        self.reg.block_on(client.add_referrer_to_fallback(r.registry(), r.repository(), &subject.digest, desc))
    }
}
