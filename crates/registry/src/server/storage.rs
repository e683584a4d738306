//! Where the registry server keeps what it serves: blobs by digest,
//! repositories' links to them, manifests' revisions and tags, referrers,
//! and uploads in progress.
//!
//! [`Storage`] is the seam; [`FsStorage`] keeps it all on a local
//! filesystem. Every write goes to a temp name, is fsynced and renamed, so a
//! killed server never leaves a partial blob, manifest or tag behind; two
//! pushes of one blob race harmlessly (the same bytes are renamed over each
//! other).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cargohold_image_core::{Algorithm, Digest};

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

/// The registry's storage. Repository names and tags reach it validated.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The size of a blob the repository links to, if it does.
    fn blob_size(&self, repo: &str, digest: &Digest) -> io::Result<Option<u64>>;
    /// Opens a blob the repository links to, for reading.
    fn open_blob(&self, repo: &str, digest: &Digest) -> io::Result<Option<std::fs::File>>;
    /// Links an existing blob (of any repository) into `repo`; `false` when
    /// no such blob is stored.
    fn link_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool>;
    /// Whether `from` links to the blob (a mount source must).
    fn repo_has_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool>;
    /// Removes a repository's link to a blob; `false` when there was none.
    fn unlink_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool>;

    /// Starts an upload for `repo`: its id.
    fn start_upload(&self, repo: &str) -> io::Result<String>;
    /// The bytes an upload holds so far; `None` for an unknown upload (or
    /// one of another repository).
    fn upload_size(&self, repo: &str, id: &str) -> io::Result<Option<u64>>;
    /// The upload's data file, opened for appending.
    fn upload_file(&self, repo: &str, id: &str) -> io::Result<Option<std::fs::File>>;
    /// Moves a finished upload (whose content hashes to `digest`) into the
    /// blob store, linked into `repo`.
    fn commit_upload(&self, repo: &str, id: &str, digest: &Digest) -> io::Result<()>;
    /// Cancels an upload; `false` when unknown.
    fn cancel_upload(&self, repo: &str, id: &str) -> io::Result<bool>;

    /// Stores a manifest (its bytes become a blob), as a revision of `repo`.
    fn put_manifest(&self, repo: &str, m: &StoredManifest) -> io::Result<()>;
    /// A revision of `repo`, if it has it.
    fn get_manifest(&self, repo: &str, digest: &Digest) -> io::Result<Option<StoredManifest>>;
    /// Removes a revision and every tag pointing at it; `false` when unknown.
    fn delete_manifest(&self, repo: &str, digest: &Digest) -> io::Result<bool>;
    /// Points `tag` at a revision.
    fn set_tag(&self, repo: &str, tag: &str, digest: &Digest) -> io::Result<()>;
    /// What `tag` points at.
    fn get_tag(&self, repo: &str, tag: &str) -> io::Result<Option<Digest>>;
    /// Removes a tag; `false` when unknown.
    fn delete_tag(&self, repo: &str, tag: &str) -> io::Result<bool>;
    /// The tags of a repository, sorted; `None` when the repository is unknown.
    fn tags(&self, repo: &str) -> io::Result<Option<Vec<String>>>;
    /// Every repository, sorted.
    fn repositories(&self) -> io::Result<Vec<String>>;

    /// Records `referrer` as referring to `subject`.
    fn add_referrer(&self, repo: &str, subject: &Digest, referrer: &ReferrerDescriptor) -> io::Result<()>;
    /// The referrers of `subject`.
    fn referrers(&self, repo: &str, subject: &Digest) -> io::Result<Vec<ReferrerDescriptor>>;

    /// Removes uploads untouched for `older_than` (abandoned ones): how many.
    fn purge_uploads(&self, older_than: std::time::Duration) -> io::Result<usize>;
}

/// Storage on a local filesystem:
///
/// ```text
/// blobs/<alg>/<hex>                                  content
/// repositories/<name>/_layers/<alg>/<hex>            a repository's blob links
/// repositories/<name>/_manifests/revisions/<alg>/<hex>  media type of a revision
/// repositories/<name>/_manifests/tags/<tag>          the digest a tag points at
/// repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>.json  referrer descriptors
/// uploads/<id>                                       upload data (repository in uploads/<id>.repo)
/// ```
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
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

/// A digest as a path below `base`: `base/<alg>/<hex>`.
fn digest_path(base: &Path, d: &Digest) -> PathBuf {
    base.join(d.algorithm().as_str()).join(d.hex())
}

/// An upload id: what [`FsStorage::start_upload`] makes (hex), nothing else.
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl FsStorage {
    /// Storage under `root` (created when missing).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        for d in ["blobs", "repositories", "uploads"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(FsStorage { root })
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        // `repo` is a validated repository name: lowercase components of
        // [a-z0-9] and single separators, never `.` or `..`.
        self.root.join("repositories").join(repo)
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        digest_path(&self.root.join("blobs"), d)
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }
}

/// Hashes a file (an upload whose running hash was lost).
pub fn hash_file(f: &mut std::fs::File, algorithm: Algorithm) -> io::Result<Digest> {
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(0))?;
    let mut r = cargohold_image_core::HashingReader::new(io::BufReader::with_capacity(1 << 20, &*f), algorithm);
    io::copy(&mut r, &mut io::sink())?;
    Ok(r.finish().0)
}

impl Storage for FsStorage {
    fn blob_size(&self, repo: &str, digest: &Digest) -> io::Result<Option<u64>> {
        if !self.repo_has_blob(repo, digest)? {
            return Ok(None);
        }
        Ok(not_found_is_none(std::fs::metadata(self.blob_path(digest)))?.map(|m| m.len()))
    }

    fn open_blob(&self, repo: &str, digest: &Digest) -> io::Result<Option<std::fs::File>> {
        if !self.repo_has_blob(repo, digest)? {
            return Ok(None);
        }
        not_found_is_none(std::fs::File::open(self.blob_path(digest)))
    }

    fn link_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool> {
        if !self.blob_path(digest).exists() {
            return Ok(false);
        }
        let link = digest_path(&self.repo_dir(repo).join("_layers"), digest);
        if !link.exists() {
            write_atomic(&link, digest.as_str().as_bytes())?;
        }
        Ok(true)
    }

    fn repo_has_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool> {
        let layer = digest_path(&self.repo_dir(repo).join("_layers"), digest);
        let revision = digest_path(&self.repo_dir(repo).join("_manifests/revisions"), digest);
        Ok(layer.exists() || revision.exists())
    }

    fn unlink_blob(&self, repo: &str, digest: &Digest) -> io::Result<bool> {
        let link = digest_path(&self.repo_dir(repo).join("_layers"), digest);
        Ok(not_found_is_none(std::fs::remove_file(link))?.is_some())
    }

    fn start_upload(&self, repo: &str) -> io::Result<String> {
        let mut raw = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        write_atomic(&self.upload_path(&format!("{id}.repo")), repo.as_bytes())?;
        std::fs::File::create(self.upload_path(&id))?;
        Ok(id)
    }

    fn upload_size(&self, repo: &str, id: &str) -> io::Result<Option<u64>> {
        if !valid_upload_id(id) {
            return Ok(None);
        }
        match not_found_is_none(std::fs::read_to_string(self.upload_path(&format!("{id}.repo"))))? {
            Some(owner) if owner == repo => {}
            _ => return Ok(None),
        }
        Ok(not_found_is_none(std::fs::metadata(self.upload_path(id)))?.map(|m| m.len()))
    }

    fn upload_file(&self, repo: &str, id: &str) -> io::Result<Option<std::fs::File>> {
        if self.upload_size(repo, id)?.is_none() {
            return Ok(None);
        }
        not_found_is_none(std::fs::OpenOptions::new().read(true).append(true).open(self.upload_path(id)))
    }

    fn commit_upload(&self, repo: &str, id: &str, digest: &Digest) -> io::Result<()> {
        let data = self.upload_path(id);
        std::fs::File::open(&data)?.sync_all()?;
        let blob = self.blob_path(digest);
        let dir = blob.parent().expect("blob paths have parents");
        std::fs::create_dir_all(dir)?;
        // Same content under the same name: a concurrent push of the blob
        // renames identical bytes over it.
        std::fs::rename(&data, &blob)?;
        std::fs::File::open(dir)?.sync_all()?;
        let _ = std::fs::remove_file(self.upload_path(&format!("{id}.repo")));
        self.link_blob(repo, digest).map(|_| ())
    }

    fn cancel_upload(&self, repo: &str, id: &str) -> io::Result<bool> {
        if self.upload_size(repo, id)?.is_none() {
            return Ok(false);
        }
        let _ = std::fs::remove_file(self.upload_path(id));
        let _ = std::fs::remove_file(self.upload_path(&format!("{id}.repo")));
        Ok(true)
    }

    fn put_manifest(&self, repo: &str, m: &StoredManifest) -> io::Result<()> {
        let blob = self.blob_path(&m.digest);
        if !blob.exists() {
            write_atomic(&blob, &m.bytes)?;
        }
        write_atomic(
            &digest_path(&self.repo_dir(repo).join("_manifests/revisions"), &m.digest),
            m.media_type.as_bytes(),
        )
    }

    fn get_manifest(&self, repo: &str, digest: &Digest) -> io::Result<Option<StoredManifest>> {
        let link = digest_path(&self.repo_dir(repo).join("_manifests/revisions"), digest);
        let Some(media_type) = not_found_is_none(std::fs::read_to_string(link))? else { return Ok(None) };
        let Some(bytes) = not_found_is_none(std::fs::read(self.blob_path(digest)))? else { return Ok(None) };
        Ok(Some(StoredManifest { digest: digest.clone(), media_type, bytes }))
    }

    fn delete_manifest(&self, repo: &str, digest: &Digest) -> io::Result<bool> {
        let link = digest_path(&self.repo_dir(repo).join("_manifests/revisions"), digest);
        if not_found_is_none(std::fs::remove_file(link))?.is_none() {
            return Ok(false);
        }
        for tag in self.tags(repo)?.unwrap_or_default() {
            if self.get_tag(repo, &tag)?.as_ref() == Some(digest) {
                self.delete_tag(repo, &tag)?;
            }
        }
        Ok(true)
    }

    fn set_tag(&self, repo: &str, tag: &str, digest: &Digest) -> io::Result<()> {
        write_atomic(&self.repo_dir(repo).join("_manifests/tags").join(tag), digest.as_str().as_bytes())
    }

    fn get_tag(&self, repo: &str, tag: &str) -> io::Result<Option<Digest>> {
        let Some(text) =
            not_found_is_none(std::fs::read_to_string(self.repo_dir(repo).join("_manifests/tags").join(tag)))?
        else {
            return Ok(None);
        };
        Digest::parse(text.trim()).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    fn delete_tag(&self, repo: &str, tag: &str) -> io::Result<bool> {
        Ok(not_found_is_none(std::fs::remove_file(self.repo_dir(repo).join("_manifests/tags").join(tag)))?.is_some())
    }

    fn tags(&self, repo: &str) -> io::Result<Option<Vec<String>>> {
        if !self.repo_dir(repo).join("_manifests").is_dir() && !self.repo_dir(repo).join("_layers").is_dir() {
            return Ok(None);
        }
        let mut tags = Vec::new();
        if let Some(entries) = not_found_is_none(std::fs::read_dir(self.repo_dir(repo).join("_manifests/tags")))? {
            for e in entries {
                let name = e?.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with(".tmp") {
                    tags.push(name.into_owned());
                }
            }
        }
        tags.sort();
        Ok(Some(tags))
    }

    fn repositories(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let base = self.root.join("repositories");
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let name = e.file_name();
                if !e.file_type()?.is_dir() {
                    continue;
                }
                if name == "_manifests" || name == "_layers" {
                    if let Ok(rel) = dir.strip_prefix(&base) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                } else if !name.to_string_lossy().starts_with('_') {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn add_referrer(&self, repo: &str, subject: &Digest, referrer: &ReferrerDescriptor) -> io::Result<()> {
        let own = referrer.get("digest").and_then(|d| d.as_str()).unwrap_or_default().replace(':', "-");
        let path = digest_path(&self.repo_dir(repo).join("_referrers"), subject).join(format!("{own}.json"));
        write_atomic(&path, &serde_json::to_vec(referrer).expect("JSON serializes"))
    }

    fn purge_uploads(&self, older_than: std::time::Duration) -> io::Result<usize> {
        let mut n = 0;
        for e in std::fs::read_dir(self.root.join("uploads"))? {
            let e = e?;
            let age = e.metadata()?.modified()?.elapsed().unwrap_or_default();
            if age > older_than {
                let name = e.file_name().to_string_lossy().into_owned();
                let _ = std::fs::remove_file(e.path());
                if valid_upload_id(&name) {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    fn referrers(&self, repo: &str, subject: &Digest) -> io::Result<Vec<ReferrerDescriptor>> {
        let dir = digest_path(&self.repo_dir(repo).join("_referrers"), subject);
        let Some(entries) = not_found_is_none(std::fs::read_dir(&dir))? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for e in entries {
            let path = e?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let v: ReferrerDescriptor = serde_json::from_slice(&std::fs::read(&path)?)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            // A referrer whose manifest was deleted is no longer listed.
            let still = v
                .get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| Digest::parse(d).ok())
                .is_some_and(|d| digest_path(&self.repo_dir(repo).join("_manifests/revisions"), &d).exists());
            if still {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.get("digest").and_then(|d| d.as_str()).cmp(&b.get("digest").and_then(|d| d.as_str())));
        Ok(out)
    }
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
    pub min_age: std::time::Duration,
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

impl FsStorage {
    fn young(path: &Path, min_age: std::time::Duration) -> bool {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default() < min_age)
            .unwrap_or(false)
    }

    fn digests_in(dir: &Path) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        let Some(algs) = not_found_is_none(std::fs::read_dir(dir))? else { return Ok(out) };
        for alg in algs {
            let alg = alg?;
            let a = alg.file_name().to_string_lossy().into_owned();
            for e in std::fs::read_dir(alg.path())? {
                let name = e?.file_name().to_string_lossy().into_owned();
                if let Ok(d) = Digest::parse(&format!("{a}:{name}")) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Mark and sweep: every blob a kept manifest reaches (config, layers,
    /// children, the manifests themselves) stays, and so does everything
    /// younger than `min_age`; the rest goes, with the repositories' links
    /// to it. Safe while the server runs: a push links and uploads young
    /// blobs, which are never swept.
    pub fn gc(&self, opts: &GcOptions) -> io::Result<GcReport> {
        use std::collections::HashSet;
        let mut report = GcReport::default();
        let mut marked: HashSet<Digest> = HashSet::new();
        for repo in self.repositories()? {
            let revisions = Self::digests_in(&self.repo_dir(&repo).join("_manifests/revisions"))?;
            let mut keep: Vec<Digest> = Vec::new();
            for tag in self.tags(&repo)?.unwrap_or_default() {
                if let Some(d) = self.get_tag(&repo, &tag)? {
                    keep.push(d);
                }
            }
            if !opts.delete_untagged {
                keep.extend(revisions.iter().cloned());
            }
            // Young revisions (a push in progress) are kept too.
            for d in &revisions {
                if Self::young(&digest_path(&self.repo_dir(&repo).join("_manifests/revisions"), d), opts.min_age) {
                    keep.push(d.clone());
                }
            }
            // Children of kept indexes, and referrers of kept manifests.
            let mut kept_here: HashSet<Digest> = HashSet::new();
            while let Some(d) = keep.pop() {
                if !kept_here.insert(d.clone()) {
                    continue;
                }
                let Some(m) = self.get_manifest(&repo, &d)? else { continue };
                marked.insert(d.clone());
                let raw = cargohold_image_core::RawManifest::new(m.bytes.clone(), Some(&m.media_type));
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
                for r in self.referrers(&repo, &d)? {
                    if let Some(rd) = r.get("digest").and_then(|v| v.as_str()).and_then(|v| Digest::parse(v).ok()) {
                        keep.push(rd);
                    }
                }
            }
            report.manifests_kept += kept_here.len();
            for d in revisions.iter().filter(|d| !kept_here.contains(*d)) {
                report.manifests_deleted.push(format!("{repo}@{d}"));
                if !opts.dry_run {
                    self.delete_manifest(&repo, d)?;
                }
            }
            // Young links (an upload or mount just made) keep their blobs.
            for d in Self::digests_in(&self.repo_dir(&repo).join("_layers"))? {
                if Self::young(&digest_path(&self.repo_dir(&repo).join("_layers"), &d), opts.min_age) {
                    marked.insert(d);
                }
            }
        }
        for d in Self::digests_in(&self.root.join("blobs"))? {
            let path = self.blob_path(&d);
            if marked.contains(&d) || Self::young(&path, opts.min_age) {
                continue;
            }
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            report.blobs_deleted.push(d.to_string());
            report.bytes_freed += size;
            if !opts.dry_run {
                // Links first: no repository claims a blob that is gone.
                for repo in self.repositories()? {
                    let _ = std::fs::remove_file(digest_path(&self.repo_dir(&repo).join("_layers"), &d));
                }
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(report)
    }
}
