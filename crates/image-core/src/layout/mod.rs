//! An OCI image-layout directory: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
//!
//! Crash safety: a blob is written to a temp file under `.cargohold/ingest`,
//! verified, fsynced and renamed to its digest path, so no partial blob is ever
//! visible under a digest. `index.json` is rewritten the same way under an
//! exclusive `flock`, so concurrent taggers never lose each other's updates.
//! Writers hold a shared lock on `.cargohold/gc.lock` for the whole of an
//! import; garbage collection takes it exclusively, so it cannot delete the blobs
//! of an image that is being written but not yet tagged.

mod gc;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, HashingReader, VerifyError, VerifyingReader};
use crate::error::{Error, Result, blob_err, io_err};
use crate::manifest::{Descriptor, ImageIndex, MAX_MANIFEST_SIZE};

pub(crate) use self::set_ref_in as set_ref_in_index;
pub use gc::GcReport;

const OCI_LAYOUT_BODY: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";
const PRIVATE_DIR: &str = ".cargohold";

/// Storage of content-addressed blobs: the seam every image destination uses.
pub trait BlobStore {
    /// The blob's size, or `None` when absent.
    fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// A reader that verifies the blob's digest as it is read.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;
    /// Stores `data`, which must hash to `digest` (and have `size` bytes when
    /// given). Nothing is stored when it does not.
    fn put_blob(&self, digest: &Digest, size: Option<u64>, data: &mut dyn Read) -> Result<u64>;
    /// Deletes a blob; returns whether it existed.
    fn delete_blob(&self, digest: &Digest) -> Result<bool>;
}

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

/// Holds the shared import lock; see the module docs.
#[derive(Debug)]
pub struct WriteGuard {
    _file: File,
}

impl OciLayout {
    /// Opens an existing layout (it must have an `oci-layout` file).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let marker = root.join("oci-layout");
        let body = fs::read(&marker).map_err(io_err("read", &marker))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::Archive { path: marker.clone(), reason: format!("oci-layout is not JSON: {e}") })?;
        if v.get("imageLayoutVersion").and_then(|v| v.as_str()).is_none() {
            return Err(Error::Archive { path: marker, reason: "no imageLayoutVersion".into() });
        }
        Ok(OciLayout { root })
    }

    /// Opens the layout at `root`, creating an empty one if the directory is
    /// missing or empty.
    pub fn open_or_create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if root.join("oci-layout").exists() {
            let layout = Self::open(root)?;
            // A store made before the private directory was private, or
            // one this process may only read: best effort.
            let _ = layout.private_root();
            return Ok(layout);
        }
        fs::create_dir_all(root.join("blobs").join("sha256")).map_err(io_err("create", &root))?;
        let layout = OciLayout { root };
        let index_path = layout.root.join("index.json");
        if !index_path.exists() {
            let body = serde_json::to_vec(&ImageIndex::new_oci()).expect("index serializes");
            layout.write_atomic(&index_path, &body)?;
        }
        layout.write_atomic(&layout.root.join("oci-layout"), OCI_LAYOUT_BODY.as_bytes())?;
        layout.private_root()?;
        Ok(layout)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm().as_str()).join(digest.hex())
    }

    /// Makes the private directory (`.cargohold`: temp files, locks, the
    /// layer and build caches, containers' scratch) readable by its owner
    /// only: unpacked layers and containers' files are nobody else's
    /// business.
    fn private_root(&self) -> Result<PathBuf> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = self.root.join(PRIVATE_DIR);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = fs::metadata(&dir).map_err(io_err("read", &dir))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", &dir))?;
                }
            }
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
        Ok(dir)
    }

    pub(crate) fn private_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.private_root()?.join(name);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(dir)
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let dir = self.private_root()?;
        let path = dir.join(name);
        OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err("open lock file", &path))
    }

    /// Takes the shared import lock (see the module docs). Hold it from the first
    /// blob written until the image is tagged.
    pub fn write_guard(&self) -> Result<WriteGuard> {
        let file = self.lock_file("gc.lock")?;
        file.lock_shared().map_err(io_err("lock", &self.root.join(PRIVATE_DIR).join("gc.lock")))?;
        Ok(WriteGuard { _file: file })
    }

    /// A temp file next to the blobs, removed on drop unless persisted.
    fn ingest_file(&self) -> Result<tempfile::NamedTempFile> {
        let dir = self.private_dir("ingest")?;
        tempfile::Builder::new().prefix("blob-").tempfile_in(&dir).map_err(io_err("create a temp file in", &dir))
    }

    /// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().expect("layout files have a parent");
        let mut tmp =
            tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io_err("create a temp file in", dir))?;
        tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
        tmp.persist(path).map_err(|e| Error::Io { action: "rename into", path: path.into(), source: e.error })?;
        sync_dir(dir)
    }

    /// Stores a blob whose digest is not known in advance (e.g. a layer being
    /// decompressed), computing it while writing. Returns digest and size.
    pub fn put_blob_computed(&self, algorithm: Algorithm, data: &mut dyn Read) -> Result<(Digest, u64)> {
        let mut tmp = self.ingest_file()?;
        let mut hashing = HashingReader::new(data, algorithm);
        io::copy(&mut hashing, tmp.as_file_mut()).map_err(io_err("write", tmp.path()))?;
        let (digest, size) = hashing.finish();
        self.persist_blob(tmp, &digest)?;
        Ok((digest, size))
    }

    /// Stores a blob produced by `write` (which is handed a writer), computing
    /// its digest while it is written. Returns digest and size.
    pub fn put_blob_from_writer(
        &self,
        algorithm: Algorithm,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(Digest, u64)> {
        let mut tmp = self.ingest_file()?;
        let path = tmp.path().to_path_buf();
        let mut hashing =
            crate::digest::HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()), algorithm);
        write(&mut hashing).map_err(io_err("write", &path))?;
        let (mut w, digest, size) = hashing.finish();
        w.flush().map_err(io_err("write", &path))?;
        drop(w);
        self.persist_blob(tmp, &digest)?;
        Ok((digest, size))
    }

    /// Stores `bytes`, returning their sha256 digest.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        if self.blob_size(&digest)?.is_none() {
            self.put_blob(&digest, Some(bytes.len() as u64), &mut &bytes[..])?;
        }
        Ok(digest)
    }

    /// Writes and verifies a blob under a temp name without making it visible;
    /// [`StagedBlob::persist`] moves it into place. Dropping it deletes it.
    pub fn stage_blob(&self, digest: &Digest, size: Option<u64>, data: &mut dyn Read) -> Result<StagedBlob> {
        let mut tmp = self.ingest_file()?;
        let mut verifying = VerifyingReader::new(data, digest.clone(), size);
        let location = tmp.path().display().to_string();
        copy_large(&mut verifying, tmp.as_file_mut()).map_err(|e| blob_err(digest, &location, e))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
        Ok(StagedBlob { layout: self.clone(), digest: digest.clone(), tmp })
    }

    /// [`OciLayout::stage_blob`] of a blob arriving in chunks (`next` gives
    /// each, `None` at the end), hashed on a thread of its own while this one
    /// writes: a large blob's two costs on two cores. Verified as there.
    pub fn stage_blob_chunks(
        &self,
        digest: &Digest,
        size: Option<u64>,
        next: &mut dyn FnMut() -> Option<io::Result<bytes::Bytes>>,
    ) -> Result<StagedBlob> {
        self.stage_chunks(digest, size, next, true)
    }

    /// [`OciLayout::stage_blob_chunks`] with each chunk hashed on this
    /// thread, then written: for blobs that arrive several at once (each on
    /// a thread of its own), where a hasher thread each would only add
    /// hand-overs.
    pub fn stage_blob_inline(
        &self,
        digest: &Digest,
        size: Option<u64>,
        next: &mut dyn FnMut() -> Option<io::Result<bytes::Bytes>>,
    ) -> Result<StagedBlob> {
        self.stage_chunks(digest, size, next, false)
    }

    fn stage_chunks(
        &self,
        digest: &Digest,
        size: Option<u64>,
        next: &mut dyn FnMut() -> Option<io::Result<bytes::Bytes>>,
        hash_beside: bool,
    ) -> Result<StagedBlob> {
        let mut tmp = self.ingest_file()?;
        let location = tmp.path().display().to_string();
        let algorithm = digest.algorithm();
        // Beside: chunks go in 256 KiB batches (one writev, one hand-over to
        // the hasher), at most one waiting: hashing is the slower of the
        // two, so a deeper queue would only hold more of the blob in memory
        // (measured: 8 MiB queues made a 3-layer pull touch 30 MB, this 22 MB).
        let (batch_size, mut hash) = if hash_beside {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<bytes::Bytes>>(1);
            let hashing = std::thread::spawn(move || {
                let mut h = crate::digest::Hasher::new(algorithm);
                for batch in rx {
                    for chunk in &batch {
                        h.update(chunk);
                    }
                }
                h.finish()
            });
            (1 << 18, HashSink::Thread(tx, hashing))
        } else {
            (0, HashSink::Inline(crate::digest::Hasher::new(algorithm)))
        };
        let mut seen = 0u64;
        let fail = |e: VerifyError| io::Error::new(io::ErrorKind::InvalidData, e);
        let written = (|| -> io::Result<()> {
            let (mut batch, mut batched) = (Vec::new(), 0usize);
            while let Some(chunk) = next() {
                let chunk = chunk?;
                seen += chunk.len() as u64;
                if let Some(expected) = size
                    && seen > expected
                {
                    let e = VerifyError::SizeMismatch {
                        digest: digest.clone(),
                        expected,
                        actual: seen,
                        truncated_read: false,
                    };
                    return Err(fail(e));
                }
                batched += chunk.len();
                batch.push(chunk);
                if batched >= batch_size {
                    hash.write(tmp.as_file_mut(), std::mem::take(&mut batch))?;
                    batched = 0;
                }
            }
            hash.write(tmp.as_file_mut(), batch)
        })();
        let actual = hash.finish().map_err(|()| blob_err(digest, &location, io::Error::other("the hasher failed")))?;
        let verified = written.and_then(|()| match size {
            Some(expected) if seen != expected => Err(fail(VerifyError::SizeMismatch {
                digest: digest.clone(),
                expected,
                actual: seen,
                truncated_read: true,
            })),
            _ if actual != *digest => Err(fail(VerifyError::DigestMismatch { expected: digest.clone(), actual })),
            _ => Ok(()),
        });
        verified.map_err(|e| blob_err(digest, &location, e))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
        Ok(StagedBlob { layout: self.clone(), digest: digest.clone(), tmp })
    }

    fn persist_blob(&self, tmp: tempfile::NamedTempFile, digest: &Digest) -> Result<()> {
        tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
        let dest = self.blob_path(digest);
        let dir = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        tmp.persist(&dest).map_err(|e| Error::Io { action: "rename into", path: dest.clone(), source: e.error })?;
        Ok(())
    }

    /// Reads a whole (small) blob, verified, refusing more than `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let size = self.blob_size(digest)?.ok_or_else(|| self.not_found(digest))?;
        if size > limit {
            return Err(Error::TooLarge { what: format!("blob {digest}"), size, limit });
        }
        let mut out = Vec::with_capacity(size as usize);
        self.open_blob(digest)?.read_to_end(&mut out).map_err(|e| blob_err(digest, &path.display().to_string(), e))?;
        Ok(out)
    }

    fn not_found(&self, digest: &Digest) -> Error {
        Error::BlobNotFound { digest: digest.clone(), location: self.root.display().to_string() }
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        let bytes = read_limited(&path, MAX_MANIFEST_SIZE * 16)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Archive { path: path.clone(), reason: format!("index.json does not parse: {e}") })
    }

    /// Runs `f` on `index.json` under the exclusive index lock and writes the
    /// result back atomically. Blobs are made durable first, so the new index
    /// never points at content a crash could lose.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut ImageIndex) -> Result<T>) -> Result<T> {
        let lock = self.lock_file("index.lock")?;
        lock.lock().map_err(io_err("lock", &self.root.join(PRIVATE_DIR).join("index.lock")))?;
        let mut index = self.index()?;
        let out = f(&mut index)?;
        for alg in ["sha256", "sha384", "sha512"] {
            let dir = self.root.join("blobs").join(alg);
            if dir.is_dir() {
                sync_dir(&dir)?;
            }
        }
        let body = serde_json::to_vec(&index).expect("index serializes");
        self.write_atomic(&self.root.join("index.json"), &body)?;
        Ok(out)
    }

    /// Adds `desc` to `index.json` under the name `ref_name` (the
    /// `org.opencontainers.image.ref.name` annotation), replacing whatever had
    /// that name. With no name, the descriptor is added unless already present.
    pub fn set_ref(&self, ref_name: Option<&str>, desc: Descriptor) -> Result<()> {
        self.update_index(|index| {
            set_ref_in(index, ref_name, desc);
            Ok(())
        })
    }
}

/// A verified blob written under a temp name (see [`OciLayout::stage_blob`]).
#[derive(Debug)]
pub struct StagedBlob {
    layout: OciLayout,
    digest: Digest,
    tmp: tempfile::NamedTempFile,
}

impl StagedBlob {
    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Moves the blob to its digest path (already fsynced when staged).
    pub fn persist(self) -> Result<()> {
        let dest = self.layout.blob_path(&self.digest);
        let dir = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        self.tmp.persist(&dest).map_err(|e| Error::Io {
            action: "rename into",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

impl BlobStore for OciLayout {
    fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &path)(e)),
        }
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found(digest)),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let size = file.metadata().map_err(io_err("stat", &path))?.len();
        Ok(Box::new(VerifyingReader::new(io::BufReader::with_capacity(1 << 20, file), digest.clone(), Some(size))))
    }

    fn put_blob(&self, digest: &Digest, size: Option<u64>, data: &mut dyn Read) -> Result<u64> {
        let staged = self.stage_blob(digest, size, data)?;
        let n = staged.tmp.as_file().metadata().map_err(io_err("stat", staged.tmp.path()))?.len();
        staged.persist()?;
        Ok(n)
    }

    fn delete_blob(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("delete", &path)(e)),
        }
    }
}

/// Names `desc` in `index` (see [`OciLayout::set_ref`]).
pub(crate) fn set_ref_in(index: &mut ImageIndex, ref_name: Option<&str>, mut desc: Descriptor) {
    use crate::manifest::ANNOTATION_REF_NAME;
    match ref_name {
        Some(name) => {
            index.manifests.retain(|d| d.annotation(ANNOTATION_REF_NAME) != Some(name));
            desc.set_annotation(ANNOTATION_REF_NAME, Some(name.to_owned()));
            // An unnamed entry for the same manifest is now redundant.
            index.manifests.retain(|d| !(d.digest == desc.digest && d.annotation(ANNOTATION_REF_NAME).is_none()));
            index.manifests.push(desc);
        }
        None => {
            if !index.manifests.iter().any(|d| d.digest == desc.digest) {
                desc.set_annotation(ANNOTATION_REF_NAME, None);
                index.manifests.push(desc);
            }
        }
    }
}

/// Where a staged blob's chunks are hashed: on the writing thread, or on a
/// thread of its own (fed batches after they are written).
enum HashSink {
    Inline(crate::digest::Hasher),
    Thread(std::sync::mpsc::SyncSender<Vec<bytes::Bytes>>, std::thread::JoinHandle<Digest>),
}

impl HashSink {
    /// Writes a batch to `file` and hashes it.
    fn write(&mut self, file: &mut File, batch: Vec<bytes::Bytes>) -> io::Result<()> {
        match self {
            HashSink::Inline(h) => {
                for chunk in &batch {
                    h.update(chunk);
                    file.write_all(chunk)?;
                }
            }
            HashSink::Thread(tx, _) => {
                write_all_vectored(file, &batch)?;
                // The hasher only stops by panicking: its join says so.
                let _ = tx.send(batch);
            }
        }
        Ok(())
    }

    /// The digest of everything written; `Err` when the hasher thread failed.
    fn finish(self) -> std::result::Result<Digest, ()> {
        match self {
            HashSink::Inline(h) => Ok(h.finish()),
            HashSink::Thread(tx, hashing) => {
                drop(tx);
                hashing.join().map_err(|_| ())
            }
        }
    }
}

/// Writes every buffer, in order (`writev`, resumed after short writes).
fn write_all_vectored(f: &mut File, bufs: &[bytes::Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the file took no bytes")),
            Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `io::copy` with a 1 MiB buffer: fewer syscalls for layer-sized streams.
pub(crate) fn copy_large(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Reads a whole file, refusing more than `limit` bytes.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out).map_err(io_err("read", path))?;
    if out.len() as u64 > limit {
        return Err(Error::TooLarge { what: path.display().to_string(), size: out.len() as u64, limit });
    }
    Ok(out)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync", dir))
}
