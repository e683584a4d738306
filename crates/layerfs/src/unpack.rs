//! Flattening an image into a root filesystem: every layer streamed once,
//! read -> verify -> inflate -> hash -> extract, with reading and inflating on
//! one thread and extraction on another, so layer N+1 is being inflated while
//! layer N is written. A bounded channel keeps memory flat (~4 MiB in flight)
//! whatever the layer size.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use cargohold_image_core::media_type::Compression;
use cargohold_image_core::{
    Algorithm, Descriptor, Digest, HashingReader, ImageSource, Platform, VerifyError, VerifyingReader, resolve_image,
};

use crate::apply::{ApplyOptions, apply_layer};
use crate::error::{Error, Result};
use crate::root::Root;

/// Bytes per chunk handed from the inflating thread to the extracting one.
const CHUNK: usize = 256 << 10;
/// Chunks in flight.
const DEPTH: usize = 16;

/// How to unpack.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// How each layer is applied.
    pub apply: ApplyOptions,
    /// Platform to pick from a multi-platform image (default: the host's).
    pub platform: Option<Platform>,
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Layers applied.
    pub layers: usize,
    /// Tar entries processed.
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Things skipped on purpose.
    pub warnings: Vec<String>,
}

enum Msg {
    Data(Vec<u8>),
    End,
    Failed(Error),
}

/// Unpacks the image `src` designates into `dest`, which must not exist or be
/// an empty directory. Each layer's compressed digest and diff ID are verified;
/// on any error a `dest` created here is removed again.
pub fn unpack(src: &mut (dyn ImageSource + Send), dest: &Path, opts: &UnpackOptions) -> Result<UnpackReport> {
    let img = resolve_image(src, opts.platform.as_ref())?;
    if img.config.rootfs.diff_ids.len() != img.image.layers.len() {
        return Err(Error::DiffId {
            layer: img.manifest.digest.to_string(),
            expected: format!("{} diff IDs", img.image.layers.len()),
            actual: format!("{} in the config", img.config.rootfs.diff_ids.len()),
        });
    }
    let created = prepare_dest(dest)?;
    let result = (|| {
        let root = Root::open(dest).map_err(|e| Error::Io { action: "open", path: dest.into(), source: e.into() })?;
        let plan: Vec<_> = img
            .image
            .layers
            .iter()
            .zip(&img.config.rootfs.diff_ids)
            .map(|(l, d)| (l.clone(), d.clone(), &root))
            .collect();
        stream_layers(src, &plan, &opts.apply)
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

/// Streams each planned layer (descriptor, expected diff ID, root to apply it
/// to) through the two-thread pipeline.
pub fn stream_layers(
    src: &mut (dyn ImageSource + Send),
    plan: &[(Descriptor, Digest, &Root)],
    apply: &ApplyOptions,
) -> Result<UnpackReport> {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Msg>(DEPTH);
        let layers: Vec<Descriptor> = plan.iter().map(|(l, _, _)| l.clone()).collect();
        scope.spawn(move || produce(src, &layers, &tx));
        consume(&rx, plan, apply)
    })
}

/// Reads, verifies and inflates every layer in order, sending chunks.
fn produce(src: &mut (dyn ImageSource + Send), layers: &[Descriptor], tx: &SyncSender<Msg>) {
    for layer in layers {
        match inflate_layer(src, layer, tx) {
            Ok(true) => {}
            Ok(false) => return, // the extractor stopped (it failed): stop too
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        }
    }
}

/// Returns false when the receiver is gone.
fn inflate_layer(src: &mut (dyn ImageSource + Send), layer: &Descriptor, tx: &SyncSender<Msg>) -> Result<bool> {
    let name = layer.digest.to_string();
    let raw = src.blob(layer)?;
    let mut compressed =
        BufReader::with_capacity(1 << 20, VerifyingReader::new(raw, layer.digest.clone(), Some(layer.size)));
    let compression = match Compression::of_layer(&layer.media_type) {
        Some(c) => c,
        None => Compression::sniff(compressed.fill_buf().map_err(|e| verify_err(&name, e))?),
    };
    {
        let mut inflated: Box<dyn Read> = match compression {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut compressed)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(&mut compressed).map_err(|e| verify_err(&name, e))?)
            }
            _ => Box::new(&mut compressed),
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = read_full(&mut inflated, &mut buf).map_err(|e| verify_err(&name, e))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if tx.send(Msg::Data(buf)).is_err() {
                return Ok(false);
            }
        }
    }
    // Whatever the decoder left unread still counts for the digest.
    io::copy(&mut compressed, &mut io::sink()).map_err(|e| verify_err(&name, e))?;
    Ok(tx.send(Msg::End).is_ok())
}

fn consume(rx: &Receiver<Msg>, plan: &[(Descriptor, Digest, &Root)], apply: &ApplyOptions) -> Result<UnpackReport> {
    let mut report = UnpackReport::default();
    for (layer, expected, root) in plan {
        let name = layer.digest.to_string();
        let mut chunks = ChunkReader { rx, buf: Vec::new(), pos: 0, done: false, failure: None };
        let mut hashing = HashingReader::new(&mut chunks, Algorithm::Sha256);
        let applied = apply_layer(root, &mut hashing, &name, apply).and_then(|r| {
            io::copy(&mut hashing, &mut io::sink())
                .map(|_| r)
                .map_err(|source| Error::Tar { layer: name.clone(), source })
        });
        let (actual, _) = hashing.finish();
        // A failure upstream (digest mismatch, unreadable blob) explains any
        // error downstream, so it is the one reported.
        if let Some(e) = chunks.failure.take() {
            return Err(e);
        }
        let r = applied?;
        if actual != *expected {
            return Err(Error::DiffId { layer: name, expected: expected.to_string(), actual: actual.to_string() });
        }
        report.layers += 1;
        report.entries += r.entries;
        report.bytes += r.bytes;
        report.warnings.extend(r.warnings);
    }
    Ok(report)
}

/// One layer's inflated bytes, as they arrive from the inflating thread.
struct ChunkReader<'a> {
    rx: &'a Receiver<Msg>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
    failure: Option<Error>,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(Msg::End) => self.done = true,
                Ok(Msg::Failed(e)) => {
                    self.failure = Some(e);
                    self.done = true;
                    return Err(io::Error::other("the layer stream failed upstream"));
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the layer reader stopped"));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn verify_err(layer: &str, e: io::Error) -> Error {
    match VerifyError::from_io(&e) {
        Some(v) => Error::Verify { layer: layer.into(), reason: v.to_string() },
        None => Error::Tar { layer: layer.into(), source: e },
    }
}

/// Creates `dest` if missing (returns true), or checks it is an empty directory.
fn prepare_dest(dest: &Path) -> Result<bool> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Io {
                    action: "unpack into",
                    path: dest.into(),
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "the directory is not empty"),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|source| Error::Io {
                action: "create",
                path: dest.into(),
                source,
            })?;
            Ok(true)
        }
        Err(source) => Err(Error::Io { action: "read", path: dest.into(), source }),
    }
}
