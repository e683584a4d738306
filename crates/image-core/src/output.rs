//! Where a file cargohold writes (an archive, a layer tar, an export) goes:
//! a regular file is written under a temp name beside it and renamed into
//! place when complete (a failed or killed write leaves the old one); a
//! symlink's target is what gets replaced, never the link; a FIFO, a device
//! or a terminal (`/dev/stdout`, a pipe) is written straight through and
//! never renamed over. New files get `0666 & ~umask`, as `open(2)` gives.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// An output being written; [`Output::finish`] makes it visible.
#[derive(Debug)]
pub struct Output {
    dest: PathBuf,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Replace(tempfile::NamedTempFile),
    Through(File),
}

/// This process' umask, read without changing it (Linux 4.7+), else 022.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_owned())))
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}

impl Output {
    /// Opens `dest` for writing as the module describes.
    pub fn create(dest: &Path) -> io::Result<Output> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(dest) {
            // Anything but a regular file (following links): written through.
            Ok(meta) if !meta.is_file() => {
                if meta.is_dir() {
                    return Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory"));
                }
                let file = std::fs::OpenOptions::new().write(true).open(dest)?;
                return Ok(Output { dest: dest.into(), kind: Kind::Through(file) });
            }
            _ => {}
        }
        // A symlink to a file: the file is replaced, the link stays.
        let real = match std::fs::symlink_metadata(dest) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(dest)?,
            _ => dest.to_path_buf(),
        };
        let dir = match real.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = tempfile::Builder::new().prefix(&format!(".{name}.tmp-")).tempfile_in(&dir)?;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o666 & !umask()))?;
        Ok(Output { dest: real, kind: Kind::Replace(tmp) })
    }

    /// The file to write to.
    pub fn file(&self) -> &File {
        match &self.kind {
            Kind::Replace(t) => t.as_file(),
            Kind::Through(f) => f,
        }
    }

    /// Where it goes (a symlink's target).
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// A directory for scratch files on the output's filesystem: beside a
    /// file, else (a pipe, a device) the system's temporary directory.
    pub fn scratch_dir(&self) -> PathBuf {
        match &self.kind {
            Kind::Replace(_) => match self.dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            Kind::Through(_) => std::env::temp_dir(),
        }
    }

    /// Makes a complete output visible: fsynced and renamed into place, or
    /// (written through) nothing more.
    pub fn finish(self) -> io::Result<()> {
        match self.kind {
            Kind::Replace(tmp) => {
                tmp.as_file().sync_all()?;
                tmp.persist(&self.dest).map_err(|e| e.error)?;
                Ok(())
            }
            Kind::Through(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn files_links_and_fifos() {
        let t = tempfile::tempdir().unwrap();
        // A new file: complete only after finish, 0666 & ~umask.
        let p = t.path().join("a.tar");
        let o = Output::create(&p).unwrap();
        o.file().write_all(b"x").unwrap();
        assert!(!p.exists());
        o.finish().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o666 & !umask());
        // A symlink: its target is replaced, the link stays a link.
        let link = t.path().join("link");
        std::os::unix::fs::symlink("a.tar", &link).unwrap();
        let o = Output::create(&link).unwrap();
        o.file().write_all(b"y").unwrap();
        o.finish().unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"y");
        // A character device is written through, never renamed over.
        let o = Output::create(Path::new("/dev/null")).unwrap();
        o.file().write_all(b"gone").unwrap();
        o.finish().unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    }
}
