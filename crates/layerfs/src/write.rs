//! Deterministic layer tars: sorted entries, normalized headers, timestamps
//! clamped to `SOURCE_DATE_EPOCH`, hardlinks kept as hardlinks, xattrs as PAX
//! `SCHILY.xattr.*` records (filtered by the xattr policy).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::xattr::{XattrDecision, xattr_policy};

/// Options for writing layer tars.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Clamp every mtime to at most this (seconds since the epoch): a
    /// caller's `SOURCE_DATE_EPOCH`, say.
    pub clamp_mtime: Option<u64>,
}

/// Writes tar entries for paths of a tree.
pub(crate) struct TarOut<W: Write> {
    b: tar::Builder<W>,
    opts: WriteOptions,
    /// (dev, ino) of files already written -> their tar path.
    seen: HashMap<(u64, u64), PathBuf>,
    pub(crate) entries: u64,
}

impl<W: Write> TarOut<W> {
    pub(crate) fn new(w: W, opts: WriteOptions) -> Self {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        TarOut { b, opts, seen: HashMap::new(), entries: 0 }
    }

    fn mtime(&self, m: &fs::Metadata) -> u64 {
        let t = u64::try_from(m.mtime()).unwrap_or(0);
        self.opts.clamp_mtime.map_or(t, |c| t.min(c))
    }

    fn err(rel: &Path, action: &'static str, e: io::Error) -> Error {
        Error::Io { action, path: rel.to_path_buf(), source: e }
    }

    /// Writes the entry for `full` (on disk) under the name `rel`.
    pub(crate) fn add(&mut self, full: &Path, rel: &Path) -> Result<()> {
        let m = fs::symlink_metadata(full).map_err(|e| Self::err(full, "stat", e))?;
        let ft = m.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mode(m.mode() & 0o7777);
        // Rootless trees record ownership that could not be set in an xattr.
        let (xattrs, recorded) = entry_xattrs(full);
        let (uid, gid) = recorded.unwrap_or((m.uid(), m.gid()));
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(self.mtime(&m));
        h.set_size(0);
        if !xattrs.is_empty() {
            let exts: Vec<(String, Vec<u8>)> =
                xattrs.into_iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)).collect();
            self.b
                .append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(|e| Self::err(rel, "write PAX headers for", e))?;
        }
        self.entries += 1;
        let name = if ft.is_dir() && !rel.as_os_str().is_empty() {
            let mut n = rel.as_os_str().as_bytes().to_vec();
            n.push(b'/');
            PathBuf::from(OsStr::from_bytes(&n))
        } else if rel.as_os_str().is_empty() {
            PathBuf::from("./")
        } else {
            rel.to_path_buf()
        };
        if ft.is_file() && m.nlink() > 1 {
            if let Some(first) = self.seen.get(&(m.dev(), m.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                return self.b.append_link(&mut h, &name, first).map_err(|e| Self::err(rel, "archive", e));
            }
            self.seen.insert((m.dev(), m.ino()), rel.to_path_buf());
        }
        if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = File::open(full).map_err(|e| Self::err(full, "open", e))?;
            self.b.append_data(&mut h, &name, f).map_err(|e| Self::err(rel, "archive", e))
        } else if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.b.append_data(&mut h, &name, io::empty()).map_err(|e| Self::err(rel, "archive", e))
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(full).map_err(|e| Self::err(full, "read the link", e))?;
            self.b.append_link(&mut h, &name, target).map_err(|e| Self::err(rel, "archive", e))
        } else {
            let ty = if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                return Ok(()); // sockets are not archived
            };
            h.set_entry_type(ty);
            if !ft.is_fifo() {
                let dev = m.rdev();
                h.set_device_major(rustix::fs::major(dev)).map_err(|e| Self::err(rel, "encode the device of", e))?;
                h.set_device_minor(rustix::fs::minor(dev)).map_err(|e| Self::err(rel, "encode the device of", e))?;
            }
            self.b.append_data(&mut h, &name, io::empty()).map_err(|e| Self::err(rel, "archive", e))
        }
    }

    /// Writes an empty whiteout file `dir/.wh.name` (or the opaque marker).
    pub(crate) fn whiteout(&mut self, rel: &Path) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(0);
        self.entries += 1;
        self.b.append_data(&mut h, rel, io::empty()).map_err(|e| Self::err(rel, "archive", e))
    }

    pub(crate) fn finish(self) -> Result<W> {
        self.b.into_inner().map_err(|e| Error::Io { action: "finish", path: PathBuf::from("layer tar"), source: e })
    }
}

/// Extended attributes as `(name, value)`, sorted by name.
pub(crate) type Xattrs = Vec<(String, Vec<u8>)>;

/// The xattrs of `p` that the policy keeps, sorted by name.
pub(crate) fn read_xattrs(p: &Path) -> Xattrs {
    entry_xattrs(p).0
}

/// The xattrs of `p` that the policy keeps, sorted by name, and the owner
/// recorded in its `user.rootlesscontainers` xattr (one listing for both).
fn entry_xattrs(p: &Path) -> (Xattrs, Option<(u32, u32)>) {
    let mut out = Vec::new();
    let mut owner = None;
    let mut list = vec![0u8; 1 << 16];
    let Ok(len) = rustix::fs::llistxattr(p, &mut list[..]) else { return (out, owner) };
    for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let rootless = name == crate::apply::entry::ROOTLESS_XATTR;
        if !rootless && xattr_policy(&name, true) != XattrDecision::Keep {
            continue;
        }
        let mut value = vec![0u8; 1 << 16];
        if let Ok(n) = rustix::fs::lgetxattr(p, name.as_str(), &mut value[..]) {
            value.truncate(n);
            if rootless {
                owner = crate::apply::entry::parse_rootless_record(&value);
            } else {
                out.push((name, value));
            }
        }
    }
    out.sort();
    (out, owner)
}

/// Sorted child names of a directory (empty when it is not one).
pub(crate) fn children(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut v = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>().map_err(|e| Error::Io {
            action: "list",
            path: dir.into(),
            source: e,
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => Vec::new(),
        Err(e) => return Err(Error::Io { action: "list", path: dir.into(), source: e }),
    };
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(v)
}
