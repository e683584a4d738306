//! What DUCC adds to a flat root so Singularity/Apptainer can run it
//! directly: `.singularity.d` (runscript, environment from the image config,
//! `libs`), empty `dev`, `proc`, `sys`, and empty `etc/hosts` and
//! `etc/resolv.conf` (bind-mount targets). Files that are hardlinks into the
//! layers are replaced, never written through; nothing follows a symlink.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;

use cargohold_image_core::ImageConfig;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

fn io(path: &Path, action: &'static str, e: Errno) -> Error {
    Error::Io { action, path: path.to_path_buf(), source: e.into() }
}

fn open_dir(dir: &OwnedFd, name: &str) -> std::result::Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Makes `name` a directory in `dir` unless something is there already.
fn ensure_dir(dir: &OwnedFd, name: &str, at: &Path) -> Result<()> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(io(&at.join(name), "create", e)),
    }
}

/// Replaces `name` in `dir` with a new file holding `data` (mode `mode`).
fn put_file(dir: &OwnedFd, name: &str, data: &[u8], mode: u32, at: &Path) -> Result<u64> {
    let shown = at.join(name);
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => return Ok(0),
        Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| io(&shown, "replace", e))?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(io(&shown, "stat", e)),
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| io(&shown, "create", e))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io(&shown, "chmod", e))?;
    std::fs::File::from(fd).write_all(data).map_err(|e| Error::Io { action: "write", path: shown, source: e })?;
    Ok(data.len() as u64)
}

/// Single-quotes a word for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Adds the Singularity files to the flat root `root`; returns the bytes written.
pub(crate) fn add(root: &Path, config: &ImageConfig) -> Result<u64> {
    let top = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io(root, "open", e))?;
    let mut written = 0;
    for d in ["dev", "proc", "sys", "etc"] {
        ensure_dir(&top, d, root)?;
    }
    // A hostile image may make etc a symlink: then it gets no files from us.
    if let Ok(etc) = open_dir(&top, "etc") {
        for f in ["hosts", "resolv.conf"] {
            written += put_file(&etc, f, b"", 0o644, &root.join("etc"))?;
        }
    }
    // .singularity.d is ours: start it afresh.
    cargohold_layerfs::remove_all(top.as_fd(), OsStr::new(".singularity.d"))
        .map_err(|e| io(&root.join(".singularity.d"), "replace", e))?;
    ensure_dir(&top, ".singularity.d", root)?;
    let sd_path = root.join(".singularity.d");
    let sd = open_dir(&top, ".singularity.d").map_err(|e| io(&sd_path, "open", e))?;
    for d in ["env", "libs", "actions"] {
        ensure_dir(&sd, d, &sd_path)?;
    }
    let c = config.config.as_ref();
    let mut env = String::from("#!/bin/sh\n# Environment of the image config, as docker2singularity writes it.\n");
    for kv in c.and_then(|c| c.env.as_ref()).into_iter().flatten() {
        if let Some((k, v)) = kv.split_once('=')
            && !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            env.push_str(&format!("export {k}={}\n", quote(v)));
        }
    }
    let env_dir = open_dir(&sd, "env").map_err(|e| io(&sd_path.join("env"), "open", e))?;
    written += put_file(&env_dir, "10-docker2singularity.sh", env.as_bytes(), 0o755, &sd_path.join("env"))?;
    let words = |v: Option<&Vec<String>>| v.map(|v| v.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" "));
    let entrypoint = words(c.and_then(|c| c.entrypoint.as_ref())).unwrap_or_default();
    let cmd = words(c.and_then(|c| c.cmd.as_ref())).unwrap_or_default();
    let runscript = if entrypoint.is_empty() && cmd.is_empty() {
        "#!/bin/sh\nif [ $# -gt 0 ]; then exec \"$@\"; fi\nexec /bin/sh\n".to_owned()
    } else {
        format!(
            "#!/bin/sh\n# ENTRYPOINT and CMD of the image; arguments replace CMD.\nif [ $# -gt 0 ]; then\n  exec {entrypoint} \"$@\"\nfi\nexec {entrypoint} {cmd}\n"
        )
    };
    written += put_file(&sd, "runscript", runscript.as_bytes(), 0o755, &sd_path)?;
    Ok(written)
}
