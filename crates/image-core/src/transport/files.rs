//! Read access to the files of a layout, in a directory or inside a tar.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result, io_err};

/// Named files, read-only.
pub(crate) trait Files {
    /// Opens a file by its relative path (`index.json`, `blobs/sha256/...`).
    fn open(&self, path: &str) -> Result<Option<Box<dyn Read + Send + '_>>>;
    /// Describes where a relative path lives, for messages.
    fn describe(&self, path: &str) -> String;
}

/// Files in a directory.
pub(crate) struct DirFiles(pub PathBuf);

impl Files for DirFiles {
    fn open(&self, path: &str) -> Result<Option<Box<dyn Read + Send + '_>>> {
        let full = self.0.join(path);
        match File::open(&full) {
            Ok(f) => Ok(Some(Box::new(io::BufReader::with_capacity(1 << 20, f)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("open", &full)(e)),
        }
    }
    fn describe(&self, path: &str) -> String {
        self.0.join(path).display().to_string()
    }
}

#[derive(Debug, Clone)]
enum Entry {
    File { offset: u64, size: u64 },
    Link(String),
}

/// An index of a tar file's regular files, read in place by offset.
/// Compressed tars are first inflated into an anonymous temp file.
#[derive(Clone)]
pub(crate) struct TarIndex {
    path: PathBuf,
    file: Arc<File>,
    entries: Arc<HashMap<String, Entry>>,
}

/// What a file that does not start with a tar header is told.
const NOT_A_TAR: &str = "not a tar archive (plain, or compressed with gzip, zstd, xz or bzip2)";

/// More entries than any image archive has; bounds the index's memory.
const MAX_ENTRIES: usize = 1_000_000;

impl TarIndex {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(io_err("open", path))?;
        let mut head = [0u8; 6];
        let n = read_up_to(&mut file, &mut head).map_err(io_err("read", path))?;
        file.rewind().map_err(io_err("seek", path))?;
        let file = match crate::StreamCompression::sniff(&head[..n]) {
            crate::StreamCompression::None => file,
            _ => {
                let mut tmp = tempfile::tempfile().map_err(io_err("create a temp file for", path))?;
                let (_, mut r) = crate::decompressed(io::BufReader::new(file)).map_err(io_err("decompress", path))?;
                io::copy(&mut r, &mut tmp)
                    .map_err(|e| Error::Archive { path: path.into(), reason: format!("could not decompress: {e}") })?;
                tmp.rewind().map_err(io_err("seek", path))?;
                tmp
            }
        };
        let len = file.metadata().map_err(io_err("stat", path))?.len();
        let bad = |reason: String| Error::Archive { path: path.into(), reason };
        let mut entries = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let mut saw_any = false;
        for entry in archive.entries_with_seek().map_err(|e| bad(format!("not a tar file: {e}")))? {
            let entry = entry.map_err(|e| match saw_any {
                true => bad(format!("truncated or corrupt tar: {e}")),
                false => bad(NOT_A_TAR.into()),
            })?;
            saw_any = true;
            if entries.len() >= MAX_ENTRIES {
                return Err(bad(format!("more than {MAX_ENTRIES} entries")));
            }
            let raw = entry.path_bytes();
            let Ok(name) = std::str::from_utf8(&raw) else {
                // Layout and docker-archive metadata names are ASCII; a non-UTF-8
                // name cannot be one we need, so it is ignored, never guessed at.
                continue;
            };
            let name = normalize(name);
            let kind = entry.header().entry_type();
            if kind.is_file() || kind == tar::EntryType::Continuous {
                let offset = entry.raw_file_position();
                let size = entry.size();
                if offset.checked_add(size).is_none_or(|end| end > len) {
                    return Err(bad(format!("entry {name} is truncated ({size} bytes declared)")));
                }
                entries.insert(name, Entry::File { offset, size });
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name_bytes() else { continue };
                let Ok(target) = std::str::from_utf8(&target) else { continue };
                let target = if kind.is_symlink() && !target.starts_with('/') {
                    let parent = name.rsplit_once('/').map_or("", |(p, _)| p);
                    normalize(&format!("{parent}/{target}"))
                } else {
                    normalize(target)
                };
                entries.insert(name, Entry::Link(target));
            }
        }
        if !saw_any {
            return Err(bad(format!("empty, or {NOT_A_TAR}")));
        }
        Ok(TarIndex { path: path.into(), file: Arc::new(file), entries: Arc::new(entries) })
    }

    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize(name);
        for _ in 0..16 {
            match self.entries.get(&name)? {
                Entry::File { offset, size } => return Some((*offset, *size)),
                Entry::Link(t) => name = t.clone(),
            }
        }
        None
    }

    /// Size of a file entry.
    pub(crate) fn size(&self, name: &str) -> Option<u64> {
        self.resolve(name).map(|(_, s)| s)
    }

    /// Whether a file entry exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    /// The archive path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Files for TarIndex {
    fn open(&self, name: &str) -> Result<Option<Box<dyn Read + Send + '_>>> {
        Ok(self.resolve(name).map(|(offset, size)| {
            Box::new(io::BufReader::with_capacity(
                1 << 20,
                AtReader { file: self.file.clone(), pos: offset, end: offset + size },
            )) as Box<dyn Read + Send>
        }))
    }
    fn describe(&self, name: &str) -> String {
        format!("{} (entry {name})", self.path.display())
    }
}

/// Reads a byte range of a shared file with `pread`, so many readers can share
/// one descriptor without seeking.
struct AtReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for AtReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive ends inside an entry"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// `./a//b/` -> `a/b`; `..` pops (archive-internal paths only, never the filesystem).
pub(crate) fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
