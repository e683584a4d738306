//! COPY and ADD into a root: Docker's destination rules, ownership and
//! modes, symlinks kept as symlinks, archives extracted by ADD. Every path in
//! the destination resolves inside the root (`layerfs::Root`), so an image's
//! symlinks (`/usr/local -> /`) cannot send files to the host.

use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use cargohold_image_core::decompressed;
use cargohold_layerfs::{ApplyOptions, Root, apply_layer, remove_all};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::context::ContextEntry;
use crate::dockerfile::Heredoc;

/// One COPY/ADD into a root.
#[derive(Debug)]
pub(crate) struct CopyJob<'a> {
    /// Where the entries are read (the context, or another root).
    pub src_root: &'a Path,
    /// The resolved sources.
    pub entries: Vec<ContextEntry>,
    /// Heredoc files (`COPY <<EOF /dest`).
    pub heredocs: &'a [Heredoc],
    /// Files downloaded for `ADD URL`.
    pub downloads: &'a [super::fetch::Download],
    /// Absolute destination in the container.
    pub dest: String,
    /// `--chown`, resolved.
    pub owner: (u32, u32),
    /// `--chmod`.
    pub chmod: Option<u32>,
    /// ADD: extract local archives.
    pub extract: bool,
    /// `--parents`: each entry at its own path below the destination.
    pub parents: bool,
}

/// What went wrong with one destination path.
#[derive(Debug)]
pub(crate) struct CopyFailure {
    pub path: PathBuf,
    pub action: &'static str,
    pub source: std::io::Error,
}

type Result<T> = std::result::Result<T, CopyFailure>;

fn fail<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(Errno) -> CopyFailure + 'p {
    move |e| CopyFailure { path: path.to_path_buf(), action, source: e.into() }
}

fn io_fail<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> CopyFailure + 'p {
    move |e| CopyFailure { path: path.to_path_buf(), action, source: e }
}

/// `a/b` for the container path `/a/b/`.
fn rel(p: &str) -> PathBuf {
    PathBuf::from(p.trim_start_matches('/').trim_end_matches('/'))
}

/// Copies `job` into `root`; returns the number of entries written.
pub(crate) fn copy_into(root: &Root, job: &CopyJob<'_>) -> Result<u64> {
    let dest = rel(&job.dest);
    let roots: Vec<&ContextEntry> = job.entries.iter().filter(|e| e.rel == e.matched).collect();
    let matched_dir = |m: &Path| m.as_os_str().is_empty() || job.entries.iter().any(|e| e.rel == m && e.kind == "dir");
    let dest_exists_as_dir = root.open_in(&dest, OFlags::PATH | OFlags::DIRECTORY).is_ok();
    let dest_is_dir = job.parents
        || job.dest.ends_with('/')
        || roots.len() + job.heredocs.len() + job.downloads.len() > 1
        || (job.heredocs.is_empty() && job.downloads.is_empty() && roots.iter().any(|e| e.kind == "dir"))
        || job.entries.iter().any(|e| e.matched.as_os_str().is_empty())
        || dest_exists_as_dir;
    let mut written = 0u64;
    if dest_is_dir {
        root.mkdir_all(&dest).map_err(fail("create the directory", &dest))?;
    }
    for h in job.heredocs {
        let target = if dest_is_dir { dest.join(&h.name) } else { dest.clone() };
        let mut body = h.body.as_bytes();
        write_file(root, &target, &mut body, job.chmod.unwrap_or(0o644), job.owner, None)?;
        written += 1;
    }
    for d in job.downloads {
        let target = if dest_is_dir { dest.join(&d.name) } else { dest.clone() };
        let mut f = std::fs::File::open(&d.path).map_err(io_fail("open", &d.path))?;
        // Docker gives downloaded files mode 0600.
        let mtime = d.mtime.map(|t| Timespec { tv_sec: t, tv_nsec: 0 });
        write_file(root, &target, &mut f, job.chmod.unwrap_or(0o600), job.owner, mtime)?;
        written += 1;
    }
    for e in &job.entries {
        let target = if job.parents {
            // The source's own path, below the destination.
            dest.join(&e.rel)
        } else if matched_dir(&e.matched) {
            let below = e.rel.strip_prefix(&e.matched).unwrap_or(&e.rel);
            if below.as_os_str().is_empty() {
                continue; // the matched directory itself: its contents go into dest
            }
            dest.join(below)
        } else if dest_is_dir {
            dest.join(e.matched.file_name().unwrap_or_default())
        } else {
            dest.clone()
        };
        let src = job.src_root.join(&e.rel);
        let meta = std::fs::symlink_metadata(&src).map_err(io_fail("read", &src))?;
        let mtime = Some(Timespec { tv_sec: rustix_mtime(&meta), tv_nsec: 0 });
        match e.kind {
            "dir" => make_dir(root, &target, job.chmod.unwrap_or(e.mode), job.owner)?,
            "symlink" => {
                let link = e.link.clone().unwrap_or_default();
                let (parent, name) = root.parent_of(&target).map_err(fail("create the parent of", &target))?;
                clear(&parent, name, false).map_err(fail("replace", &target))?;
                rustix::fs::symlinkat(&link, &parent, name).map_err(fail("create the symlink", &target))?;
                // A symlink carries no user xattr: rootless, it stays root's.
                if job.owner == (0, 0) || !cargohold_layerfs::rootless::only_root_mapped() {
                    let (u, g) = (Some(uid(job.owner.0)), Some(gid(job.owner.1)));
                    rustix::fs::chownat(&parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(fail("chown", &target))?;
                }
            }
            _ if job.extract && is_archive(&src) => {
                let target = if dest_is_dir { dest.clone() } else { target };
                extract(root, &target, &src)?;
            }
            _ => {
                let mut f = std::fs::File::open(&src).map_err(io_fail("open", &src))?;
                write_file(root, &target, &mut f, job.chmod.unwrap_or(e.mode), job.owner, mtime)?;
            }
        }
        written += 1;
    }
    Ok(written)
}

fn rustix_mtime(m: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    m.mtime()
}

fn uid(n: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(n)
}

fn gid(n: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(n)
}

/// Removes `name` in `parent` unless it is a directory that may stay.
fn clear(parent: &impl AsFd, name: &std::ffi::OsStr, keep_dir: bool) -> std::result::Result<(), Errno> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if keep_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(()),
        Ok(_) => remove_all(parent.as_fd(), name),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn make_dir(root: &Root, target: &Path, mode: u32, owner: (u32, u32)) -> Result<()> {
    let (parent, name) = root.parent_of(target).map_err(fail("create the parent of", target))?;
    clear(&parent, name, true).map_err(fail("replace", target))?;
    match rustix::fs::mkdirat(&parent, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(fail("create the directory", target)(e)),
    }
    let dir = rustix::fs::openat(
        &parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("open", target))?;
    own(&dir, owner).map_err(fail("chown", target))?;
    rustix::fs::fchmod(&dir, Mode::from_bits_truncate(mode)).map_err(fail("chmod", target))
}

/// Gives `fd` its owner: chown, or, in a user namespace where only root is
/// mapped, the rootless record that layers are written from.
pub(crate) fn own(fd: &impl AsFd, owner: (u32, u32)) -> std::result::Result<(), Errno> {
    use cargohold_layerfs::rootless::{ROOTLESS_XATTR, only_root_mapped, rootless_record};
    if owner != (0, 0) && only_root_mapped() {
        let record = rootless_record(u64::from(owner.0), u64::from(owner.1));
        return rustix::fs::fsetxattr(fd, ROOTLESS_XATTR, &record, rustix::fs::XattrFlags::empty());
    }
    rustix::fs::fchown(fd, Some(uid(owner.0)), Some(gid(owner.1)))
}

fn write_file(
    root: &Root,
    target: &Path,
    data: &mut dyn Read,
    mode: u32,
    owner: (u32, u32),
    mtime: Option<Timespec>,
) -> Result<()> {
    let (parent, name) = root.parent_of(target).map_err(fail("create the parent of", target))?;
    clear(&parent, name, false).map_err(fail("replace", target))?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd =
        rustix::fs::openat(&parent, name, flags, Mode::from_bits_truncate(0o600)).map_err(fail("create", target))?;
    let mut f = std::fs::File::from(fd);
    std::io::copy(data, &mut f).map_err(io_fail("write", target))?;
    own(&f, owner).map_err(fail("chown", target))?;
    rustix::fs::fchmod(&f, Mode::from_bits_truncate(mode)).map_err(fail("chmod", target))?;
    if let Some(t) = mtime {
        let times = Timestamps { last_access: t, last_modification: t };
        rustix::fs::futimens(&f, &times).map_err(fail("set the times of", target))?;
    }
    Ok(())
}

/// Whether `p` is a tar archive ADD extracts (plain, or compressed with
/// gzip, zstd, xz or bzip2, judged by content: its first header is read
/// after decompressing); else it is copied as a file, as Docker does.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = std::fs::File::open(p) else { return false };
    let Ok((_, mut tar)) = decompressed(BufReader::new(f)) else { return false };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match tar.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n >= 262 && &head[257..262] == b"ustar"
}

fn extract(root: &Root, target: &Path, src: &Path) -> Result<()> {
    let sub = root.subdir(target).map_err(fail("create the directory", target))?;
    let f = std::fs::File::open(src).map_err(io_fail("open", src))?;
    let (_, mut tar) = decompressed(BufReader::with_capacity(1 << 20, f)).map_err(io_fail("read", src))?;
    // A user's archive is not a layer: `.wh.` names are ordinary files.
    let opts = ApplyOptions { keep_whiteouts: true, ..ApplyOptions::for_current_user() };
    apply_layer(&sub, &mut tar, &src.to_string_lossy(), &opts).map_err(|e| CopyFailure {
        path: src.to_path_buf(),
        action: "extract",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(())
}
