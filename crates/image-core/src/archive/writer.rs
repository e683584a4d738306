//! A tar being written under a temp name next to its destination; renamed into
//! place only when complete, so a failed or killed write leaves nothing behind.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result, blob_err, io_err};

pub(crate) struct TarWriter {
    dest: PathBuf,
    tmp: Option<crate::Output>,
    builder: Option<tar::Builder<BufWriter<File>>>,
    written: HashSet<String>,
}

impl TarWriter {
    pub(crate) fn create(dest: &Path) -> Result<Self> {
        let tmp = crate::Output::create(dest).map_err(io_err("create", dest))?;
        let file = tmp.file().try_clone().map_err(io_err("open", dest))?;
        let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(TarWriter { dest: dest.into(), tmp: Some(tmp), builder: Some(builder), written: HashSet::new() })
    }

    /// Where scratch files go (see [`crate::Output::scratch_dir`]).
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        self.tmp.as_ref().map_or_else(std::env::temp_dir, crate::Output::scratch_dir)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.written.contains(name)
    }

    fn header(size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h
    }

    pub(crate) fn add_dir(&mut self, name: &str) -> Result<()> {
        let mut h = Self::header(0, 0o755);
        h.set_entry_type(tar::EntryType::Directory);
        let dest = self.dest.clone();
        self.builder_mut().append_data(&mut h, name, io::empty()).map_err(io_err("write", &dest))
    }

    pub(crate) fn add_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        if !self.written.insert(name.into()) {
            return Ok(());
        }
        let mut h = Self::header(bytes.len() as u64, 0o644);
        let dest = self.dest.clone();
        self.builder_mut().append_data(&mut h, name, bytes).map_err(io_err("write", &dest))
    }

    /// Streams exactly `size` bytes of blob `digest` from `data` (which verifies
    /// itself); a short or failing stream aborts the whole archive.
    pub(crate) fn add_stream(
        &mut self,
        name: &str,
        size: u64,
        digest: &Digest,
        location: &str,
        data: &mut dyn Read,
    ) -> Result<()> {
        if !self.written.insert(name.into()) {
            return Ok(());
        }
        let mut h = Self::header(size, 0o644);
        let mut counted = Counted { inner: data, n: 0, failed: false };
        let dest = self.dest.clone();
        // A failure of the blob's own stream names the blob; any other is
        // the archive's (a full disk, a reader that closed the pipe).
        self.builder_mut().append_data(&mut h, name, &mut counted).map_err(|e| {
            if counted.failed {
                blob_err(digest, location, e)
            } else {
                Error::Io { action: "write", path: dest, source: e }
            }
        })?;
        if counted.n != size {
            return Err(Error::Archive {
                path: self.dest.clone(),
                reason: format!("blob {digest} gave {} bytes, expected {size}", counted.n),
            });
        }
        Ok(())
    }

    fn builder_mut(&mut self) -> &mut tar::Builder<BufWriter<File>> {
        self.builder.as_mut().expect("builder lives until finish")
    }

    /// Finishes the tar, fsyncs it and renames it into place.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let dest = self.dest.clone();
        let builder = self.builder.take().expect("finish is called once");
        let mut w = builder.into_inner().map_err(io_err("write", &dest))?;
        w.flush().map_err(io_err("write", &dest))?;
        let tmp = self.tmp.take().expect("finish is called once");
        tmp.finish().map_err(io_err("fsync and rename into", &dest))
    }
}

struct Counted<'a> {
    inner: &'a mut dyn Read,
    n: u64,
    /// Whether `inner` failed (rather than the writing).
    failed: bool,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// A writer that remembers whether a write of its own failed, so that a
/// copy into it can tell its failures from the reader's.
pub(crate) struct WatchedWriter<W> {
    inner: W,
    pub(crate) failed: bool,
}

impl<W> WatchedWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        WatchedWriter { inner, failed: false }
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for WatchedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}
