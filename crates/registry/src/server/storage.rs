//! Where the registry server keeps what it serves: blobs by digest,
//! repositories' links to them, manifests' revisions and tags, referrers,
//! and uploads in progress.
//!
//! Two layers, as in distribution: a [`Driver`] stores objects under keys
//! (a local filesystem, [`FsDriver`], or S3-compatible object storage,
//! [`S3Driver`](super::S3Driver)); [`Storage`] lays the registry out on any
//! driver. Every write is atomic (a temp name, fsync and rename on a
//! filesystem; a single PUT or a completed multipart upload on S3), so a
//! killed server never leaves a partial blob, manifest or tag behind, and
//! two pushes of one blob race harmlessly (the same bytes land under the
//! same key).
//!
//! ```text
//! blobs/<alg>/<hex>                                     content
//! repositories/<name>/_layers/<alg>/<hex>               a repository's blob links
//! repositories/<name>/_manifests/revisions/<alg>/<hex>  media type of a revision
//! repositories/<name>/_manifests/tags/<tag>             the digest a tag points at
//! repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>.json  referrer descriptors
//! uploads/<id>/repo                                     the repository an upload is for
//! uploads/<id>/data                                     its data (appended to)
//! ```

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cargohold_image_core::Digest;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tokio::io::AsyncSeekExt as _;

/// Bytes streamed out of (or into) a driver.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// What a driver knows of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, where the driver knows.
    pub modified: Option<SystemTime>,
}

/// The entries right below a key prefix.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// Names (one path segment) that have entries below them.
    pub dirs: Vec<String>,
    /// Objects, by name.
    pub objects: Vec<(String, ObjectMeta)>,
}

/// Objects under `/`-separated keys: the seam between the registry's
/// layout and where its bytes live. Keys reach a driver built by
/// [`Storage`] from validated names and digests: no empty, `.` or `..`
/// segments.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// A small object, whole; `None` when there is none.
    async fn get(&self, key: &str) -> io::Result<Option<Bytes>>;
    /// Writes an object atomically: readers see the old one or the new one.
    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()>;
    /// An object's size and age; `None` when there is none.
    async fn stat(&self, key: &str) -> io::Result<Option<ObjectMeta>>;
    /// `len` bytes of an object from `start` (a `NotFound` error when it is gone).
    async fn read(&self, key: &str, start: u64, len: u64) -> io::Result<ByteStream>;
    /// The object as an open local file, for drivers that keep objects in
    /// files (the server then sends it with `sendfile`); `None` when there
    /// is no such object or the driver keeps none in files (the default).
    async fn open_file(&self, key: &str) -> io::Result<Option<std::fs::File>> {
        let _ = key;
        Ok(None)
    }
    /// Removes an object; `false` when there was none.
    async fn delete(&self, key: &str) -> io::Result<bool>;
    /// What is right below `prefix` (a key without its last segment).
    async fn list(&self, prefix: &str) -> io::Result<Listing>;

    /// Appends `data` to an appendable object (an upload) that holds `at`
    /// bytes: the size after. Data a failed append wrote may stay (the
    /// size tells), so an upload resumes where it got to.
    async fn append(&self, key: &str, at: u64, data: ByteStream) -> io::Result<u64>;
    /// The bytes an appendable object holds (0 when none were appended),
    /// and when it was last appended to.
    async fn appended(&self, key: &str) -> io::Result<ObjectMeta>;
    /// An appendable object's bytes, from the start.
    async fn read_appended(&self, key: &str) -> io::Result<ByteStream>;
    /// Makes an appendable object's bytes the (ordinary) object `dest`,
    /// atomically and durably, and drops the appendable one.
    async fn commit_appended(&self, key: &str, dest: &str) -> io::Result<()>;
    /// Drops an appendable object.
    async fn delete_appended(&self, key: &str) -> io::Result<()>;
}

/// A manifest as stored: its bytes and the media type it was pushed with.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The media type (`Content-Type` of the push, or the document's own).
    pub media_type: String,
    /// The bytes, exactly as pushed.
    pub bytes: Vec<u8>,
}

/// A referrer recorded for a subject: the descriptor the referrers API lists.
pub type ReferrerDescriptor = serde_json::Value;

/// The registry laid out on a [`Driver`]. Repository names and tags reach
/// it validated. Cheap to clone (the driver is shared).
#[derive(Debug, Clone)]
pub struct Storage {
    driver: Arc<dyn Driver>,
}

fn invalid_data(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn digest_key(base: &str, d: &Digest) -> String {
    format!("{base}/{}/{}", d.algorithm().as_str(), d.hex())
}

/// An upload id: what [`Storage::start_upload`] makes (hex), nothing else.
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn young(meta: &ObjectMeta, min_age: Duration) -> bool {
    meta.modified.is_some_and(|t| t.elapsed().unwrap_or_default() < min_age)
}

impl Storage {
    /// The registry on `driver`.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Storage { driver }
    }

    /// The registry in a directory (created when missing).
    pub fn filesystem(root: impl Into<PathBuf>) -> io::Result<Self> {
        Ok(Storage::new(Arc::new(FsDriver::open(root)?)))
    }

    /// The driver below.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    fn repo_key(repo: &str, rest: &str) -> String {
        // `repo` is a validated repository name: lowercase components of
        // [a-z0-9] and single separators, never `.` or `..`.
        format!("repositories/{repo}/{rest}")
    }

    fn blob_key(d: &Digest) -> String {
        digest_key("blobs", d)
    }

    fn layer_key(repo: &str, d: &Digest) -> String {
        digest_key(&Self::repo_key(repo, "_layers"), d)
    }

    fn revision_key(repo: &str, d: &Digest) -> String {
        digest_key(&Self::repo_key(repo, "_manifests/revisions"), d)
    }

    fn tag_key(repo: &str, tag: &str) -> String {
        Self::repo_key(repo, &format!("_manifests/tags/{tag}"))
    }

    fn upload_key(id: &str, what: &str) -> String {
        format!("uploads/{id}/{what}")
    }

    /// The size of a blob the repository links to, if it does.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> io::Result<Option<u64>> {
        if !self.repo_has_blob(repo, digest).await? {
            return Ok(None);
        }
        Ok(self.driver.stat(&Self::blob_key(digest)).await?.map(|m| m.size))
    }

    /// `len` bytes of a blob from `start` (see [`Storage::blob_size`] first).
    pub async fn read_blob(&self, digest: &Digest, start: u64, len: u64) -> io::Result<ByteStream> {
        self.driver.read(&Self::blob_key(digest), start, len).await
    }

    /// A blob as an open local file, where the driver keeps blobs in files
    /// (see [`Driver::open_file`]).
    pub async fn blob_file(&self, digest: &Digest) -> io::Result<Option<std::fs::File>> {
        self.driver.open_file(&Self::blob_key(digest)).await
    }

    /// Links an existing blob (of any repository) into `repo`; `false` when
    /// no such blob is stored.
    pub async fn link_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool> {
        if self.driver.stat(&Self::blob_key(digest)).await?.is_none() {
            return Ok(false);
        }
        let link = Self::layer_key(repo, digest);
        if self.driver.stat(&link).await?.is_none() {
            self.driver.put(&link, Bytes::from(digest.to_string())).await?;
        }
        Ok(true)
    }

    /// Whether `repo` links to the blob (a layer it uploaded or mounted, or
    /// one of its manifests).
    pub async fn repo_has_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool> {
        Ok(self.driver.stat(&Self::layer_key(repo, digest)).await?.is_some()
            || self.driver.stat(&Self::revision_key(repo, digest)).await?.is_some())
    }

    /// Removes a repository's link to a blob; `false` when there was none.
    pub async fn unlink_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool> {
        self.driver.delete(&Self::layer_key(repo, digest)).await
    }

    /// Starts an upload for `repo`: its id.
    pub async fn start_upload(&self, repo: &str) -> io::Result<String> {
        let mut raw = [0u8; 16];
        getrandom(&mut raw)?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        self.driver.put(&Self::upload_key(&id, "repo"), Bytes::from(repo.to_owned())).await?;
        Ok(id)
    }

    /// The bytes an upload holds so far; `None` for an unknown upload (or
    /// one of another repository).
    pub async fn upload_size(&self, repo: &str, id: &str) -> io::Result<Option<u64>> {
        if !valid_upload_id(id) {
            return Ok(None);
        }
        match self.driver.get(&Self::upload_key(id, "repo")).await? {
            Some(owner) if owner == repo.as_bytes() => {}
            _ => return Ok(None),
        }
        Ok(Some(self.driver.appended(&Self::upload_key(id, "data")).await?.size))
    }

    /// Appends `data` to an upload holding `at` bytes: the size after.
    pub async fn append_upload(&self, id: &str, at: u64, data: ByteStream) -> io::Result<u64> {
        self.driver.append(&Self::upload_key(id, "data"), at, data).await
    }

    /// An upload's bytes so far.
    pub async fn read_upload(&self, id: &str) -> io::Result<ByteStream> {
        self.driver.read_appended(&Self::upload_key(id, "data")).await
    }

    /// Moves a finished upload (whose content hashes to `digest`) into the
    /// blob store, linked into `repo`.
    pub async fn commit_upload(&self, repo: &str, id: &str, digest: &Digest) -> io::Result<()> {
        self.driver.commit_appended(&Self::upload_key(id, "data"), &Self::blob_key(digest)).await?;
        self.driver.delete(&Self::upload_key(id, "repo")).await?;
        self.link_blob(repo, digest).await.map(|_| ())
    }

    /// Cancels an upload; `false` when unknown.
    pub async fn cancel_upload(&self, repo: &str, id: &str) -> io::Result<bool> {
        if self.upload_size(repo, id).await?.is_none() {
            return Ok(false);
        }
        self.driver.delete_appended(&Self::upload_key(id, "data")).await?;
        self.driver.delete(&Self::upload_key(id, "repo")).await?;
        Ok(true)
    }

    /// Stores a manifest (its bytes become a blob), as a revision of `repo`.
    pub async fn put_manifest(&self, repo: &str, m: &StoredManifest) -> io::Result<()> {
        let blob = Self::blob_key(&m.digest);
        if self.driver.stat(&blob).await?.is_none() {
            self.driver.put(&blob, Bytes::from(m.bytes.clone())).await?;
        }
        self.driver.put(&Self::revision_key(repo, &m.digest), Bytes::from(m.media_type.clone())).await
    }

    /// A revision of `repo`, if it has it.
    pub async fn get_manifest(&self, repo: &str, digest: &Digest) -> io::Result<Option<StoredManifest>> {
        let Some(media_type) = self.driver.get(&Self::revision_key(repo, digest)).await? else { return Ok(None) };
        let Some(bytes) = self.driver.get(&Self::blob_key(digest)).await? else { return Ok(None) };
        let media_type = String::from_utf8(media_type.to_vec()).map_err(invalid_data)?;
        Ok(Some(StoredManifest { digest: digest.clone(), media_type, bytes: bytes.to_vec() }))
    }

    /// Removes a revision and every tag pointing at it; `false` when unknown.
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> io::Result<bool> {
        if !self.driver.delete(&Self::revision_key(repo, digest)).await? {
            return Ok(false);
        }
        for tag in self.tags(repo).await?.unwrap_or_default() {
            if self.get_tag(repo, &tag).await?.as_ref() == Some(digest) {
                self.delete_tag(repo, &tag).await?;
            }
        }
        Ok(true)
    }

    /// Points `tag` at a revision.
    pub async fn set_tag(&self, repo: &str, tag: &str, digest: &Digest) -> io::Result<()> {
        self.driver.put(&Self::tag_key(repo, tag), Bytes::from(digest.to_string())).await
    }

    /// What `tag` points at.
    pub async fn get_tag(&self, repo: &str, tag: &str) -> io::Result<Option<Digest>> {
        let Some(text) = self.driver.get(&Self::tag_key(repo, tag)).await? else { return Ok(None) };
        let text = std::str::from_utf8(&text).map_err(invalid_data)?;
        Digest::parse(text.trim()).map(Some).map_err(invalid_data)
    }

    /// Removes a tag; `false` when unknown.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> io::Result<bool> {
        self.driver.delete(&Self::tag_key(repo, tag)).await
    }

    /// The tags of a repository, sorted; `None` when the repository is unknown.
    pub async fn tags(&self, repo: &str) -> io::Result<Option<Vec<String>>> {
        let top = self.driver.list(&Self::repo_key(repo, "")).await?;
        if !top.dirs.iter().any(|d| d == "_manifests" || d == "_layers") {
            return Ok(None);
        }
        let listing = self.driver.list(&Self::repo_key(repo, "_manifests/tags/")).await?;
        let mut tags: Vec<String> =
            listing.objects.into_iter().map(|(name, _)| name).filter(|n| !n.starts_with('.')).collect();
        tags.sort();
        Ok(Some(tags))
    }

    /// Every repository, sorted.
    pub async fn repositories(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(name) = stack.pop() {
            let prefix = if name.is_empty() { "repositories/".to_owned() } else { format!("repositories/{name}/") };
            let listing = self.driver.list(&prefix).await?;
            for d in listing.dirs {
                if d == "_manifests" || d == "_layers" {
                    if !name.is_empty() {
                        out.push(name.clone());
                    }
                } else if !d.starts_with('_') && !d.starts_with('.') {
                    stack.push(if name.is_empty() { d } else { format!("{name}/{d}") });
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Records `referrer` as referring to `subject`.
    pub async fn add_referrer(&self, repo: &str, subject: &Digest, referrer: &ReferrerDescriptor) -> io::Result<()> {
        let own = referrer.get("digest").and_then(|d| d.as_str()).unwrap_or_default().replace(':', "-");
        let key = format!("{}/{own}.json", digest_key(&Self::repo_key(repo, "_referrers"), subject));
        self.driver.put(&key, Bytes::from(serde_json::to_vec(referrer).expect("JSON serializes"))).await
    }

    /// The referrers of `subject` (those whose manifests are still there).
    pub async fn referrers(&self, repo: &str, subject: &Digest) -> io::Result<Vec<ReferrerDescriptor>> {
        let dir = digest_key(&Self::repo_key(repo, "_referrers"), subject);
        let listing = self.driver.list(&format!("{dir}/")).await?;
        let mut out = Vec::new();
        for (name, _) in listing.objects {
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let Some(raw) = self.driver.get(&format!("{dir}/{name}")).await? else { continue };
            let v: ReferrerDescriptor = serde_json::from_slice(&raw).map_err(invalid_data)?;
            let own = v.get("digest").and_then(|d| d.as_str()).and_then(|d| Digest::parse(d).ok());
            let still = match own {
                Some(d) => self.driver.stat(&Self::revision_key(repo, &d)).await?.is_some(),
                None => false,
            };
            if still {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.get("digest").and_then(|d| d.as_str()).cmp(&b.get("digest").and_then(|d| d.as_str())));
        Ok(out)
    }

    /// Removes uploads untouched for `older_than` (abandoned ones): how many.
    pub async fn purge_uploads(&self, older_than: Duration) -> io::Result<usize> {
        let mut n = 0;
        for id in self.driver.list("uploads/").await?.dirs {
            if !valid_upload_id(&id) {
                continue;
            }
            let started = self.driver.stat(&Self::upload_key(&id, "repo")).await?;
            let data = self.driver.appended(&Self::upload_key(&id, "data")).await?;
            let last = [started.and_then(|m| m.modified), data.modified].into_iter().flatten().max();
            if last.is_some_and(|t| t.elapsed().unwrap_or_default() > older_than) {
                self.driver.delete_appended(&Self::upload_key(&id, "data")).await?;
                self.driver.delete(&Self::upload_key(&id, "repo")).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The digests below `base/<alg>/`, with their objects' metadata.
    async fn digests_in(&self, base: &str) -> io::Result<Vec<(Digest, ObjectMeta)>> {
        let mut out = Vec::new();
        for alg in self.driver.list(&format!("{base}/")).await?.dirs {
            for (name, meta) in self.driver.list(&format!("{base}/{alg}/")).await?.objects {
                if let Ok(d) = Digest::parse(&format!("{alg}:{name}")) {
                    out.push((d, meta));
                }
            }
        }
        Ok(out)
    }

    /// Mark and sweep: every blob a kept manifest reaches (config, layers,
    /// children, referrers, the manifests themselves) stays, and so does
    /// everything younger than `min_age`; the rest goes, with the
    /// repositories' links to it. Safe while the server runs: a push
    /// uploads and links young blobs, which are never swept.
    pub async fn gc(&self, opts: &GcOptions) -> io::Result<GcReport> {
        let mut report = GcReport::default();
        let mut marked: HashSet<Digest> = HashSet::new();
        let repos = self.repositories().await?;
        for repo in &repos {
            let revisions = self.digests_in(&Self::repo_key(repo, "_manifests/revisions")).await?;
            let mut keep: Vec<Digest> = Vec::new();
            for tag in self.tags(repo).await?.unwrap_or_default() {
                if let Some(d) = self.get_tag(repo, &tag).await? {
                    keep.push(d);
                }
            }
            for (d, meta) in &revisions {
                // Young revisions (a push in progress) are kept too.
                if !opts.delete_untagged || young(meta, opts.min_age) {
                    keep.push(d.clone());
                }
            }
            // Children of kept indexes, and referrers of kept manifests.
            let mut kept_here: HashSet<Digest> = HashSet::new();
            while let Some(d) = keep.pop() {
                if !kept_here.insert(d.clone()) {
                    continue;
                }
                let Some(m) = self.get_manifest(repo, &d).await? else { continue };
                marked.insert(d.clone());
                let raw = cargohold_image_core::RawManifest::new(m.bytes, Some(&m.media_type));
                match raw.ok().and_then(|r| r.parse().ok()) {
                    Some(cargohold_image_core::Manifest::Image(im)) => {
                        marked.insert(im.config.digest.clone());
                        marked.extend(im.layers.iter().map(|l| l.digest.clone()));
                    }
                    Some(cargohold_image_core::Manifest::Index(ix)) => {
                        keep.extend(ix.manifests.iter().map(|c| c.digest.clone()));
                    }
                    None => {}
                }
                for r in self.referrers(repo, &d).await? {
                    if let Some(rd) = r.get("digest").and_then(|v| v.as_str()).and_then(|v| Digest::parse(v).ok()) {
                        keep.push(rd);
                    }
                }
            }
            report.manifests_kept += kept_here.len();
            for (d, _) in revisions.iter().filter(|(d, _)| !kept_here.contains(d)) {
                report.manifests_deleted.push(format!("{repo}@{d}"));
                if !opts.dry_run {
                    self.delete_manifest(repo, d).await?;
                }
            }
            // Young links (an upload or mount just made) keep their blobs.
            for (d, meta) in self.digests_in(&Self::repo_key(repo, "_layers")).await? {
                if young(&meta, opts.min_age) {
                    marked.insert(d);
                }
            }
        }
        for (d, meta) in self.digests_in("blobs").await? {
            if marked.contains(&d) || young(&meta, opts.min_age) {
                continue;
            }
            report.blobs_deleted.push(d.to_string());
            report.bytes_freed += meta.size;
            if !opts.dry_run {
                // Links first: no repository claims a blob that is gone.
                for repo in &repos {
                    self.driver.delete(&Self::layer_key(repo, &d)).await?;
                }
                self.driver.delete(&Self::blob_key(&d)).await?;
            }
        }
        Ok(report)
    }
}

fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// What a garbage collection does.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Also delete manifests no tag reaches (directly, through an index, or
    /// as a referrer of a kept manifest).
    pub delete_untagged: bool,
    /// Only report.
    pub dry_run: bool,
    /// Blobs and links younger than this are kept whatever refers to them
    /// (a push in progress uploads blobs before its manifest).
    pub min_age: Duration,
}

/// What a garbage collection found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    /// Manifests kept.
    pub manifests_kept: usize,
    /// Untagged manifests deleted (`repository@digest`).
    pub manifests_deleted: Vec<String>,
    /// Blobs deleted.
    pub blobs_deleted: Vec<String>,
    /// Bytes freed.
    pub bytes_freed: u64,
}

/// A [`Driver`] on a local filesystem: a key is a path below the root.
/// Writes go to a temp name in the same directory, fsynced, then renamed
/// (and the directory fsynced); uploads are files appended to.
#[derive(Debug)]
pub struct FsDriver {
    root: PathBuf,
    /// Small metadata operations (a stat, a link file read) run on the
    /// calling thread while they are quick, as a page-cache write does
    /// (see [`FsDriver::small`]).
    inline: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` through a temp name in the same directory,
/// fsynced, then renamed (and the directory fsynced).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("storage paths have parents");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// How much of an upload's body is gathered for one write: what hyper
/// hands on at a time is a few hundred KiB, so this is a writev of a few
/// buffers; larger batches only hold more buffers alive, each new memory
/// faulted in (a push of the reference image into a fresh server: 860 page
/// faults with 1 MiB batches, 600 with these, 2% less CPU).
const WRITE_BATCH: usize = 256 << 10;

/// A write of a batch that takes longer than this sends the rest of its
/// upload's writes to the blocking pool.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(2);

/// Writes every buffer, in order (`writev`, resumed after short writes).
fn write_all_vectored(f: &mut std::fs::File, bufs: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = f.write_vectored(rest)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "the file took no bytes"));
        }
        io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

fn meta_of(m: &std::fs::Metadata) -> ObjectMeta {
    ObjectMeta { size: m.len(), modified: m.modified().ok() }
}

/// A file's bytes from `start`, `len` of them, as a stream.
async fn file_stream(path: PathBuf, start: u64, len: u64) -> io::Result<ByteStream> {
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(io::SeekFrom::Start(start)).await?;
    let reader = tokio::io::AsyncReadExt::take(f, len);
    Ok(tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10).boxed())
}

impl FsDriver {
    /// A driver storing below `root` (created when missing).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsDriver { root, inline: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)) })
    }

    /// Runs a small metadata operation (no fsync, no data): here, where
    /// the filesystem answers from its caches in microseconds (a hand-over
    /// to the blocking pool costs more: a push made ~100 of them); once one
    /// takes longer than [`SLOW_WRITE`] (a network filesystem, a disk the
    /// kernel must read), this driver sends them all to the blocking pool.
    async fn small<T: Send + 'static>(&self, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
        use std::sync::atomic::Ordering;
        if !self.inline.load(Ordering::Relaxed) {
            return blocking(f).await;
        }
        let started = std::time::Instant::now();
        let r = f();
        if started.elapsed() >= SLOW_WRITE {
            self.inline.store(false, Ordering::Relaxed);
        }
        r
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key.trim_end_matches('/'))
    }
}

#[async_trait::async_trait]
impl Driver for FsDriver {
    async fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        let path = self.path(key);
        Ok(self.small(move || not_found_is_none(std::fs::read(path))).await?.map(Bytes::from))
    }

    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        let path = self.path(key);
        blocking(move || write_atomic(&path, &bytes)).await
    }

    async fn stat(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        let path = self.path(key);
        let meta = self.small(move || not_found_is_none(std::fs::metadata(path))).await?;
        Ok(meta.filter(|m| m.is_file()).map(|m| meta_of(&m)))
    }

    async fn read(&self, key: &str, start: u64, len: u64) -> io::Result<ByteStream> {
        file_stream(self.path(key), start, len).await
    }

    async fn open_file(&self, key: &str) -> io::Result<Option<std::fs::File>> {
        let path = self.path(key);
        blocking(move || not_found_is_none(std::fs::File::open(path))).await
    }

    async fn delete(&self, key: &str) -> io::Result<bool> {
        let path = self.path(key);
        let upload = key.starts_with("uploads/");
        self.small(move || {
            let gone = not_found_is_none(std::fs::remove_file(&path))?.is_some();
            // An upload's directory goes with its last file (no other
            // writer ever creates files in it again).
            if upload && let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
            Ok(gone)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> io::Result<Listing> {
        let dir = self.path(prefix);
        blocking(move || {
            let mut out = Listing::default();
            let Some(entries) = not_found_is_none(std::fs::read_dir(&dir))? else { return Ok(out) };
            for e in entries {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp") {
                    continue;
                }
                let ft = e.file_type()?;
                if ft.is_dir() {
                    out.dirs.push(name);
                } else if ft.is_file() {
                    // Gone since read_dir: skip it.
                    if let Some(m) = not_found_is_none(e.metadata())? {
                        out.objects.push((name, meta_of(&m)));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn append(&self, key: &str, at: u64, mut data: ByteStream) -> io::Result<u64> {
        let path = self.path(key);
        let (file, size) = self
            .small(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                let size = file.metadata()?.len();
                Ok((file, size))
            })
            .await?;
        if size != at {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the upload holds {size} bytes, not {at}"),
            ));
        }
        // The body's buffers gathered into batches of [`WRITE_BATCH`], each
        // written with one writev: no copy on the way. A batch goes into the page cache
        // on this thread, as hashing it did, for it is the same kind of
        // work (a copy, well under a millisecond); handing each to the
        // blocking pool costs more than the write. Once a write takes
        // longer (a disk the kernel holds writers back for), the rest of
        // the body's batches go to the blocking pool instead, so the other
        // connections on this thread are not held up.
        let mut file = Some(file);
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0usize;
        let mut written = size;
        let mut inline = true;
        async fn flush(file: &mut Option<std::fs::File>, batch: Vec<Bytes>, inline: &mut bool) -> io::Result<()> {
            let mut f = file.take().expect("the file is back after every write");
            if *inline {
                let started = std::time::Instant::now();
                let r = write_all_vectored(&mut f, &batch);
                *inline = started.elapsed() < SLOW_WRITE;
                *file = Some(f);
                return r;
            }
            let (f, r) = tokio::task::spawn_blocking(move || {
                let r = write_all_vectored(&mut f, &batch);
                (f, r)
            })
            .await
            .map_err(io::Error::other)?;
            *file = Some(f);
            r
        }
        let result = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                written += chunk.len() as u64;
                batched += chunk.len();
                batch.push(chunk);
                if batched >= WRITE_BATCH {
                    batched = 0;
                    flush(&mut file, std::mem::take(&mut batch), &mut inline).await?;
                }
            }
            Ok::<(), io::Error>(())
        }
        .await;
        // What arrived stays (a resumed upload goes on from it).
        flush(&mut file, batch, &mut inline).await?;
        result.map(|()| written)
    }

    async fn appended(&self, key: &str) -> io::Result<ObjectMeta> {
        let path = self.path(key);
        Ok(self
            .small(move || not_found_is_none(std::fs::metadata(path)))
            .await?
            .map(|m| meta_of(&m))
            .unwrap_or(ObjectMeta { size: 0, modified: None }))
    }

    async fn read_appended(&self, key: &str) -> io::Result<ByteStream> {
        let path = self.path(key);
        if tokio::fs::metadata(&path).await.is_err() {
            return Ok(futures_util::stream::empty().boxed());
        }
        file_stream(path, 0, u64::MAX).await
    }

    async fn commit_appended(&self, key: &str, dest: &str) -> io::Result<()> {
        let (data, blob) = (self.path(key), self.path(dest));
        blocking(move || {
            if !data.exists() {
                std::fs::File::create(&data)?;
            }
            std::fs::File::open(&data)?.sync_all()?;
            let dir = blob.parent().expect("blob paths have parents");
            std::fs::create_dir_all(dir)?;
            // Same content under the same name: a concurrent push of the
            // blob renames identical bytes over it.
            std::fs::rename(&data, &blob)?;
            std::fs::File::open(dir)?.sync_all()
        })
        .await
    }

    async fn delete_appended(&self, key: &str) -> io::Result<()> {
        self.delete(key).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// Small operations run in place while they are quick; one that is
    /// not sends the rest to the blocking pool (off this thread).
    #[tokio::test(flavor = "current_thread")]
    async fn small_operations_leave_the_thread_once_one_is_slow() {
        let t = tempfile::tempdir().unwrap();
        let d = FsDriver::open(t.path()).unwrap();
        let here = std::thread::current().id();
        let ran_on = d.small(|| Ok(std::thread::current().id())).await.unwrap();
        assert_eq!(ran_on, here);
        d.small(|| {
            std::thread::sleep(SLOW_WRITE + std::time::Duration::from_millis(1));
            Ok(())
        })
        .await
        .unwrap();
        assert!(!d.inline.load(Ordering::Relaxed));
        let ran_on = d.small(|| Ok(std::thread::current().id())).await.unwrap();
        assert_ne!(ran_on, here);
        // And the operations work either way.
        d.put("a/b", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(d.get("a/b").await.unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(d.stat("a/b").await.unwrap().map(|m| m.size), Some(1));
        assert!(d.delete("a/b").await.unwrap());
        assert!(d.stat("a/b").await.unwrap().is_none());
    }
}
