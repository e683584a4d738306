//! skopeo's `dir:` transport: one image in a directory, as containers/image
//! writes it: a `version` file, the top manifest as `manifest.json`, each
//! blob under its digest's hex (`ALG-HEX` for other algorithms than
//! sha256), and the child manifests of an index as `HEX.manifest.json`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{BlobKind, DirFiles, Files, ImageDest, LayoutSource};
use crate::digest::{Algorithm, Digest, VerifyingReader};
use crate::error::{Error, Result, blob_err, io_err};
use crate::manifest::{Descriptor, MAX_MANIFEST_SIZE, RawManifest};

/// What containers/image writes to `version`.
const VERSION: &str = "Directory Transport Version: 1.1\n";

fn blob_name(d: &Digest) -> String {
    match d.algorithm() {
        Algorithm::Sha256 => d.hex().to_owned(),
        other => format!("{other}-{}", d.hex()),
    }
}

fn child_manifest_name(d: &Digest) -> String {
    format!("{}.manifest.json", d.hex())
}

/// The files of a `dir:` image, seen as a layout's (`blobs/ALG/HEX`).
struct DirImageFiles {
    files: DirFiles,
    top: Digest,
}

impl DirImageFiles {
    /// The file a layout path names, if any.
    fn name(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix("blobs/")?;
        let (alg, hex) = rest.split_once('/')?;
        let d = Digest::parse(&format!("{alg}:{hex}")).ok()?;
        if d == self.top {
            return Some("manifest.json".into());
        }
        let blob = blob_name(&d);
        if self.files.0.join(&blob).exists() { Some(blob) } else { Some(child_manifest_name(&d)) }
    }
}

impl Files for DirImageFiles {
    fn open(&self, path: &str) -> Result<Option<Box<dyn Read + Send + '_>>> {
        match self.name(path) {
            Some(name) => self.files.open(&name),
            None => Ok(None),
        }
    }
    fn describe(&self, path: &str) -> String {
        self.files.describe(&self.name(path).unwrap_or_else(|| path.to_owned()))
    }
}

/// Refuses a directory that is not a `dir:` image.
fn check_version(dir: &Path) -> Result<()> {
    let version = dir.join("version");
    match fs::read(&version) {
        Ok(v) if v.starts_with(b"Directory Transport Version: 1.") => Ok(()),
        Ok(_) => {
            Err(Error::Archive { path: version, reason: "not a directory-transport version this reads (1.x)".into() })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Archive {
            path: dir.into(),
            reason: "no version file: not a dir: image (as skopeo writes them)".into(),
        }),
        Err(e) => Err(io_err("read", &version)(e)),
    }
}

/// Opens the image in `dir` (a `dir:` location) for reading.
pub(crate) fn open_dir_source(dir: &Path, location: String) -> Result<LayoutSource> {
    check_version(dir)?;
    let path = dir.join("manifest.json");
    let f = fs::File::open(&path).map_err(io_err("open", &path))?;
    let mut bytes = Vec::new();
    f.take(MAX_MANIFEST_SIZE + 1).read_to_end(&mut bytes).map_err(io_err("read", &path))?;
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(Error::TooLarge {
            what: format!("manifest {}", path.display()),
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_SIZE,
        });
    }
    let m = RawManifest::new(bytes, None)?;
    let top = m.descriptor();
    let files = DirImageFiles { files: DirFiles(dir.to_path_buf()), top: top.digest.clone() };
    Ok(LayoutSource::with_descriptor(files, location, top))
}

/// Writes one image into a directory as skopeo's `dir:` transport does.
/// Blobs go in under temp names (fsynced, renamed); `manifest.json` last,
/// so a copy that fails leaves no image that looks whole; what an earlier
/// image left there and the new one does not use is removed only then.
pub struct DirDest {
    dir: PathBuf,
    written: Vec<String>,
}

impl DirDest {
    /// Writes into `dir`: created if missing; an empty directory or an
    /// earlier `dir:` image (replaced); anything else is refused.
    pub fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let empty = fs::read_dir(dir).map_err(io_err("read", dir))?.next().is_none();
        if !empty {
            check_version(dir).map_err(|_| Error::Archive {
                path: dir.into(),
                reason: "neither empty nor a dir: image: refusing to write an image into it".into(),
            })?;
        }
        Ok(DirDest { dir: dir.into(), written: Vec::new() })
    }

    /// Writes `name` from `data`, verified against `digest` and `size`.
    fn write(&mut self, name: String, digest: &Digest, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io_err("create a temp file in", &self.dir))?;
        let location = self.dir.join(&name).display().to_string();
        let mut verifying = VerifyingReader::new(data, digest.clone(), Some(size));
        std::io::copy(&mut verifying, tmp.as_file_mut()).map_err(|e| blob_err(digest, &location, e))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
        let dest = self.dir.join(&name);
        tmp.persist(&dest).map_err(|e| Error::Io { action: "rename into", path: dest, source: e.error })?;
        self.written.push(name);
        Ok(())
    }

    fn write_small(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io_err("create a temp file in", &self.dir))?;
        tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
        let dest = self.dir.join(name);
        tmp.persist(&dest).map_err(|e| Error::Io { action: "rename into", path: dest, source: e.error })?;
        Ok(())
    }
}

impl ImageDest for DirDest {
    fn location(&self) -> String {
        format!("dir:{}", self.dir.display())
    }

    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool> {
        // Every blob is written anew (a replaced image's files are not trusted).
        Ok(self.written.contains(&blob_name(&desc.digest)))
    }

    fn put_blob(&mut self, desc: &Descriptor, _kind: BlobKind, data: &mut dyn Read) -> Result<Descriptor> {
        if !self.written.contains(&blob_name(&desc.digest)) {
            self.write(blob_name(&desc.digest), &desc.digest, desc.size, data)?;
        }
        Ok(desc.clone())
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        let name = child_manifest_name(&manifest.digest);
        self.write_small(&name, &manifest.bytes)?;
        self.written.push(name);
        Ok(())
    }

    fn commit(&mut self, top: &RawManifest) -> Result<()> {
        self.write_small("version", VERSION.as_bytes())?;
        self.write_small("manifest.json", &top.bytes)?;
        crate::layout::sync_dir(&self.dir)?;
        // What an earlier image left and this one does not use.
        for entry in fs::read_dir(&self.dir).map_err(io_err("read", &self.dir))? {
            let entry = entry.map_err(io_err("read", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "version" && name != "manifest.json" && !self.written.contains(&name) {
                let path = entry.path();
                if entry.file_type().map_err(io_err("stat", &path))?.is_file() {
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                }
            }
        }
        Ok(())
    }
}
