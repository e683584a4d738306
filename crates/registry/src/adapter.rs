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
    rt: Arc<Runtime>,
    client: Arc<RegistryClient>,
}

impl Registry {
    /// A client with its own multi-threaded runtime.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(2)
            .build()
            .map_err(Error::Runtime)?;
        Ok(Registry { rt: Arc::new(rt), client: Arc::new(RegistryClient::new(opts)?) })
    }

    /// The async client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Runs a future to completion.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A source for `reference` (`:latest` when bare).
    pub fn source(&self, reference: &Reference) -> RegistrySource {
        RegistrySource { reg: self.clone(), reference: reference.pull_reference() }
    }

    /// A destination that pushes to `reference` (a tag; `:latest` when bare).
    pub fn dest(&self, reference: &Reference) -> RegistryDest {
        RegistryDest { reg: self.clone(), reference: reference.pull_reference() }
    }

    /// Every tag of the repository of `reference`.
    pub fn tags(&self, reference: &Reference) -> Result<Vec<String>> {
        self.block_on(self.client.tags(reference.registry(), reference.repository()))
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

/// Reads an image from a registry.
#[derive(Debug)]
pub struct RegistrySource {
    reg: Registry,
    reference: Reference,
}

impl ImageSource for RegistrySource {
    fn location(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn top_manifest(&mut self) -> cargohold_image_core::Result<RawManifest> {
        self.reg
            .block_on(self.reg.client.get_manifest(&self.reference))
            .map_err(|e| remote("fetch the manifest of", &self.reference, e))
    }

    fn manifest(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<RawManifest> {
        let r = &self.reference;
        self.reg
            .block_on(self.reg.client.get_manifest_ref(
                r.registry(),
                r.repository(),
                desc.digest.as_str(),
                Some(&desc.digest),
            ))
            .map_err(|e| remote(format!("fetch manifest {} of", desc.digest), r, e))
    }

    fn blob(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<Box<dyn Read + Send + '_>> {
        let r = &self.reference;
        let resp = self
            .reg
            .block_on(self.reg.client.get_blob(r.registry(), r.repository(), desc))
            .map_err(|e| remote(format!("download blob {} of", desc.digest), r, e))?;
        Ok(Box::new(BodyReader { reg: self.reg.clone(), resp, buf: Vec::new(), pos: 0 }))
    }

    fn name_hint(&self) -> Option<Reference> {
        Some(self.reference.clone())
    }
}

/// A response body as a blocking `Read` (the caller verifies what it reads).
struct BodyReader {
    reg: Registry,
    resp: reqwest::Response,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            match self.reg.block_on(self.resp.chunk()).map_err(io::Error::other)? {
                Some(bytes) => {
                    self.buf = bytes.to_vec();
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Pushes an image to a registry: blobs first (skipping those it has),
/// child manifests by digest, the top manifest by tag last.
#[derive(Debug)]
pub struct RegistryDest {
    reg: Registry,
    reference: Reference,
}

impl ImageDest for RegistryDest {
    fn location(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn has_blob(&mut self, desc: &Descriptor) -> cargohold_image_core::Result<bool> {
        let r = &self.reference;
        self.reg
            .block_on(self.reg.client.has_blob(r.registry(), r.repository(), &desc.digest))
            .map_err(|e| remote("check for a blob at", r, e))
    }

    fn put_blob(
        &mut self,
        desc: &Descriptor,
        _kind: BlobKind,
        data: &mut dyn Read,
    ) -> cargohold_image_core::Result<Descriptor> {
        let r = self.reference.clone();
        let fail = |e| remote(format!("upload blob {} to", desc.digest), &r, e);
        let chunk = self.reg.client.chunk_size();
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
        let mut up = self.reg.block_on(client.start_upload(r.registry(), r.repository())).map_err(fail)?;
        let mut current = next()?;
        // One chunk or less: a monolithic PUT; more: PATCHes, then the PUT.
        loop {
            let following = if current.len() < chunk { Vec::new() } else { next()? };
            if following.is_empty() {
                self.reg.block_on(client.finish_upload(up, &desc.digest, current)).map_err(fail)?;
                return Ok(desc.clone());
            }
            self.reg.block_on(client.upload_chunk(&mut up, current)).map_err(fail)?;
            current = following;
        }
    }

    fn put_manifest(&mut self, m: &RawManifest) -> cargohold_image_core::Result<()> {
        let r = &self.reference;
        self.reg
            .block_on(self.reg.client.put_manifest(r.registry(), r.repository(), m.digest.as_str(), m))
            .map_err(|e| remote(format!("push manifest {} to", m.digest), r, e))
    }

    fn commit(&mut self, top: &RawManifest) -> cargohold_image_core::Result<()> {
        let r = &self.reference;
        let tag = r.tag().unwrap_or("latest").to_owned();
        self.reg
            .block_on(self.reg.client.put_manifest(r.registry(), r.repository(), &tag, top))
            .map_err(|e| remote("push the manifest to", r, e))
    }
}
