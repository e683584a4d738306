//! Diffing two trees into a layer, and archiving a whole tree.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::write::{TarOut, WriteOptions, children, read_xattrs};

/// What a diff wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffReport {
    /// Added or changed entries.
    pub changed: u64,
    /// `.wh.` whiteouts (deletions).
    pub deleted: u64,
    /// Opaque markers (directories whose lower content was all replaced).
    pub opaque: u64,
}

/// Writes a layer tar to `out` that turns the tree `lower` into the tree
/// `upper`: added and changed entries, deletions as `.wh.` whiteouts, a
/// directory whose every lower child is gone (and that had some) as an opaque
/// `.wh..wh..opq` marker, hardlinks as hardlinks. Deterministic for equal
/// inputs (sorted, normalized headers, `clamp_mtime`).
pub fn diff_trees<W: Write>(lower: &Path, upper: &Path, out: W, opts: &WriteOptions) -> Result<(W, DiffReport)> {
    let mut tar = TarOut::new(out, opts.clone());
    let mut report = DiffReport::default();
    let touched = touched_links(lower, upper)?;
    walk(lower, upper, Path::new(""), &mut tar, &mut report, true, &mut Vec::new(), &touched)?;
    Ok((tar.finish()?, report))
}

/// The files of `upper` with several names of which one at least is new or
/// changed: all their names go into the layer (as overlay copies a lower
/// file up when a new name is linked to it), so unpacking gives back one
/// inode with every name, not an independent copy.
fn touched_links(lower: &Path, upper: &Path) -> Result<std::collections::HashSet<(u64, u64)>> {
    let mut groups: std::collections::HashMap<(u64, u64), Vec<PathBuf>> = std::collections::HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for c in children(&upper.join(&rel))? {
            let child = rel.join(&c);
            let Some(m) = lstat(&upper.join(&child))? else { continue };
            if m.is_dir() {
                stack.push(child);
            } else if m.is_file() && m.nlink() > 1 {
                groups.entry((m.dev(), m.ino())).or_default().push(child);
            }
        }
    }
    let mut touched = std::collections::HashSet::new();
    for (key, names) in groups.into_iter().filter(|(_, n)| n.len() > 1) {
        for name in &names {
            let (lo, up) = (lower.join(name), upper.join(name));
            let changed = match (lstat(&lo)?, lstat(&up)?) {
                (Some(ml), Some(mu)) => !same(&lo, &ml, &up, &mu)?,
                _ => true,
            };
            if changed {
                touched.insert(key);
                break;
            }
        }
    }
    Ok(touched)
}

/// Writes the whole tree at `root` as a tar (for `export` and `import`).
pub fn archive_tree<W: Write>(root: &Path, out: W, opts: &WriteOptions) -> Result<(W, u64)> {
    let mut tar = TarOut::new(out, opts.clone());
    let mut report = DiffReport::default();
    walk(
        Path::new("/nonexistent-lower-of-an-archive"),
        root,
        Path::new(""),
        &mut tar,
        &mut report,
        false,
        &mut Vec::new(),
        &Default::default(),
    )?;
    let entries = tar.entries;
    Ok((tar.finish()?, entries))
}

/// Writes the layer tar of an overlayfs upper directory (what a container
/// changed): its entries as they are, a 0/0 character device (an overlay
/// whiteout) as a `.wh.` file, a directory with `trusted.overlay.opaque=y` as
/// the directory plus an opaque marker. Deterministic like [`diff_trees`].
/// No lower tree is read: the upper directory alone says what changed.
pub fn upper_to_layer<W: Write>(upper: &Path, out: W, opts: &WriteOptions) -> Result<(W, DiffReport)> {
    let mut tar = TarOut::new(out, opts.clone());
    let mut report = DiffReport::default();
    for c in children(upper)? {
        walk_upper(upper, &PathBuf::from(c), &mut tar, &mut report)?;
    }
    Ok((tar.finish()?, report))
}

fn walk_upper<W: Write>(upper: &Path, rel: &Path, tar: &mut TarOut<W>, report: &mut DiffReport) -> Result<()> {
    let full = upper.join(rel);
    let Some(m) = lstat(&full)? else { return Ok(()) };
    if m.file_type().is_char_device() && m.rdev() == 0 {
        tar.whiteout(&whiteout_of(rel))?;
        report.deleted += 1;
        return Ok(());
    }
    tar.add(&full, rel)?;
    report.changed += 1;
    if !m.is_dir() {
        return Ok(());
    }
    let mut opaque = [0u8; 4];
    if matches!(rustix::fs::lgetxattr(&full, crate::rootless::opaque_xattr(), &mut opaque), Ok(1) if opaque[0] == b'y')
    {
        tar.whiteout(&rel.join(".wh..wh..opq"))?;
        report.opaque += 1;
    }
    for c in children(&full)? {
        walk_upper(upper, &rel.join(c), tar, report)?;
    }
    Ok(())
}

/// `dir/.wh.name`, the whiteout that deletes `dir/name`.
fn whiteout_of(rel: &Path) -> PathBuf {
    let mut name = b".wh.".to_vec();
    name.extend_from_slice(rel.file_name().unwrap_or_default().as_bytes());
    rel.with_file_name(std::ffi::OsStr::from_bytes(&name))
}

fn lstat(p: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { action: "stat", path: p.into(), source: e }),
    }
}

/// Whether `a` (lower) and `b` (upper) are the same entry.
fn same(a: &Path, ma: &fs::Metadata, b: &Path, mb: &fs::Metadata) -> Result<bool> {
    let ta = ma.file_type();
    let tb = mb.file_type();
    if ta.is_dir() != tb.is_dir() || ta.is_symlink() != tb.is_symlink() || ta.is_file() != tb.is_file() {
        return Ok(false);
    }
    if ma.mode() != mb.mode() || ma.uid() != mb.uid() || ma.gid() != mb.gid() || ma.rdev() != mb.rdev() {
        return Ok(false);
    }
    if read_xattrs(a) != read_xattrs(b) {
        return Ok(false);
    }
    if ta.is_symlink() {
        return Ok(fs::read_link(a).ok() == fs::read_link(b).ok());
    }
    if ta.is_dir() {
        return Ok(ma.mtime() == mb.mtime());
    }
    if !ta.is_file() {
        return Ok(true);
    }
    if ma.len() != mb.len() {
        return Ok(false);
    }
    if ma.mtime() == mb.mtime() && ma.mtime_nsec() == mb.mtime_nsec() {
        return Ok(true);
    }
    // Same size, different times: compare contents rather than guess.
    same_content(a, b)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let open = |p: &Path| fs::File::open(p).map_err(|e| Error::Io { action: "open", path: p.into(), source: e });
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| Error::Io { action: "read", path: a.into(), source: e })?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| Error::Io { action: "read", path: b.into(), source: e })?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Writes the unchanged directories above an entry about to be written
/// (as an overlay upper directory holds them: a layer carries the
/// ancestors of what it changes, with their metadata).
fn flush_parents<W: Write>(upper: &Path, pending: &mut [(PathBuf, bool)], tar: &mut TarOut<W>) -> Result<()> {
    for (dir, written) in pending.iter_mut() {
        if !*written {
            tar.add(&upper.join(&*dir), dir)?;
            *written = true;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn walk<W: Write>(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    tar: &mut TarOut<W>,
    report: &mut DiffReport,
    diffing: bool,
    pending: &mut Vec<(PathBuf, bool)>,
    touched: &std::collections::HashSet<(u64, u64)>,
) -> Result<()> {
    let lo = lower.join(rel);
    let up = upper.join(rel);
    let (ml, mu) = (if diffing { lstat(&lo)? } else { None }, lstat(&up)?);
    let Some(mu) = mu else { return Ok(()) };
    let unchanged = match &ml {
        Some(ml) => same(&lo, ml, &up, &mu)? && !(mu.is_file() && touched.contains(&(mu.dev(), mu.ino()))),
        None => false,
    };
    if !unchanged {
        flush_parents(upper, pending, tar)?;
        tar.add(&up, rel)?;
        report.changed += 1;
    }
    if !mu.is_dir() {
        return Ok(());
    }
    // The root itself is never an entry.
    let deferred = unchanged && !rel.as_os_str().is_empty();
    if deferred {
        pending.push((rel.to_path_buf(), false));
    }
    let result = walk_children(lower, upper, rel, tar, report, diffing, pending, ml.as_ref(), &up, &lo, touched);
    if deferred {
        pending.pop();
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn walk_children<W: Write>(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    tar: &mut TarOut<W>,
    report: &mut DiffReport,
    diffing: bool,
    pending: &mut Vec<(PathBuf, bool)>,
    ml: Option<&fs::Metadata>,
    up: &Path,
    lo: &Path,
    touched: &std::collections::HashSet<(u64, u64)>,
) -> Result<()> {
    let lower_was_dir = ml.is_some_and(|m| m.is_dir());
    let upper_children: Vec<OsString> = children(up)?;
    if lower_was_dir {
        let lower_children = children(lo)?;
        let gone: Vec<&OsString> = lower_children.iter().filter(|c| !upper_children.contains(c)).collect();
        if !gone.is_empty() && gone.len() == lower_children.len() {
            flush_parents(upper, pending, tar)?;
            tar.whiteout(&rel.join(".wh..wh..opq"))?;
            report.opaque += 1;
            // Everything under an opaque directory is written in full.
            let nowhere = Path::new("/nonexistent-lower-of-an-opaque-dir");
            for c in &upper_children {
                walk(nowhere, upper, &rel.join(c), tar, report, false, pending, touched)?;
            }
            return Ok(());
        }
        for c in gone {
            flush_parents(upper, pending, tar)?;
            tar.whiteout(&whiteout_of(&rel.join(c)))?;
            report.deleted += 1;
        }
    }
    for c in &upper_children {
        let child: PathBuf = rel.join(c);
        walk(lower, upper, &child, tar, report, diffing && lower_was_dir, pending, touched)?;
    }
    Ok(())
}
