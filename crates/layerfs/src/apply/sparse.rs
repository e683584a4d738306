//! PAX sparse files, format 1.0 (what GNU tar writes with `--format=posix
//! --sparse`): the real name and size are in `GNU.sparse.*` PAX records, and
//! the data starts with a text map (count, then offset/size pairs, one number
//! per line, padded to 512 bytes) followed by the data chunks in order. tar-rs
//! reads the older GNU `S` entries itself; this covers the PAX form. Holes are
//! kept as holes.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::Layer;
use crate::error::{Error, Result};

/// A PAX sparse entry's real name and size.
pub(crate) struct Sparse {
    pub(crate) name: Vec<u8>,
    pub(crate) real_size: u64,
}

/// Most map entries accepted (bounds the map's memory).
const MAX_SEGMENTS: u64 = 1 << 20;

/// Reads the sparse records of an entry's PAX header, if any.
pub(crate) fn info<R: Read>(entry: &mut tar::Entry<'_, R>, layer: &str, shown: &Path) -> Result<Option<Sparse>> {
    let Some(exts) = entry.pax_extensions().map_err(|source| Error::Tar { layer: layer.into(), source })? else {
        return Ok(None);
    };
    let (mut major, mut name, mut size, mut old) = (None, None, None, false);
    for ext in exts {
        let ext = ext.map_err(|source| Error::Tar { layer: layer.into(), source })?;
        match ext.key_bytes() {
            b"GNU.sparse.major" => major = Some(ext.value_bytes().to_vec()),
            b"GNU.sparse.name" => name = Some(ext.value_bytes().to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                size = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse::<u64>().ok())
            }
            b"GNU.sparse.map" | b"GNU.sparse.offset" | b"GNU.sparse.numblocks" => old = true,
            _ => {}
        }
    }
    let bad =
        |reason: &str| Error::Entry { layer: layer.into(), entry: shown.display().to_string(), reason: reason.into() };
    match (major.as_deref(), old) {
        (None, false) => Ok(None),
        (Some(b"1"), _) => Ok(Some(Sparse {
            name: name.ok_or_else(|| bad("is a PAX sparse file without GNU.sparse.name"))?,
            real_size: size.ok_or_else(|| bad("is a PAX sparse file without a valid GNU.sparse.realsize"))?,
        })),
        _ => Err(bad("uses a PAX sparse format before 1.0, which is not supported")),
    }
}

/// Writes a sparse entry's data into `file` (already created, empty).
pub(crate) fn write<R: Read>(
    layer: &mut Layer<'_>,
    entry: &mut tar::Entry<'_, R>,
    file: &File,
    real_size: u64,
    shown: &Path,
) -> Result<()> {
    let limit = layer.opts.limits.max_bytes;
    let bad = |reason: String| Error::Entry { layer: layer.name.into(), entry: shown.display().to_string(), reason };
    if real_size > limit {
        return Err(Error::Limit {
            layer: layer.name.into(),
            entry: shown.display().to_string(),
            what: "bytes of file data",
            limit,
        });
    }
    let mut consumed = 0u64;
    let mut next_number = |entry: &mut tar::Entry<'_, R>| -> Result<u64> {
        let mut digits = Vec::new();
        loop {
            let mut b = [0u8; 1];
            entry.read_exact(&mut b).map_err(|e| bad(format!("has a truncated sparse map: {e}")))?;
            consumed += 1;
            match b[0] {
                b'\n' => break,
                d @ b'0'..=b'9' if digits.len() < 20 => digits.push(d),
                _ => return Err(bad("has a malformed sparse map".into())),
            }
        }
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("has a malformed sparse map".into()))
    };
    let count = next_number(entry)?;
    if count > MAX_SEGMENTS {
        return Err(bad(format!("has {count} sparse segments, more than {MAX_SEGMENTS}")));
    }
    let mut segments = Vec::with_capacity(count as usize);
    let mut end = 0u64;
    for _ in 0..count {
        let (offset, size) = (next_number(entry)?, next_number(entry)?);
        let seg_end = offset.checked_add(size).filter(|&e| e <= real_size && offset >= end);
        end = seg_end
            .ok_or_else(|| bad("has sparse segments that overlap, go backwards or pass the file's size".into()))?;
        segments.push((offset, size));
    }
    // The map is padded to a 512-byte block.
    let pad = (512 - consumed % 512) % 512;
    std::io::copy(&mut entry.by_ref().take(pad), &mut std::io::sink())
        .map_err(|e| bad(format!("is truncated: {e}")))?;
    let mut buf = vec![0u8; 256 << 10];
    for (offset, size) in segments {
        let mut done = 0u64;
        while done < size {
            let want = buf.len().min(usize::try_from(size - done).unwrap_or(usize::MAX));
            entry.read_exact(&mut buf[..want]).map_err(|e| bad(format!("is truncated inside its data: {e}")))?;
            file.write_all_at(&buf[..want], offset + done).map_err(|e| layer.io_err(shown, "write the file", e))?;
            done += want as u64;
            layer.report.bytes += want as u64;
        }
    }
    file.set_len(real_size).map_err(|e| layer.io_err(shown, "set the file's size", e))
}
