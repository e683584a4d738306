//! A root filesystem tarball (an lxc or `docker export` style rootfs,
//! plain or compressed with gzip, zstd, xz or bzip2) as an image layer: read once,
//! stored as a gzip blob and unpacked into the layer cache in the same pass.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use cargohold_image_core::media_type::Compression;
use cargohold_image_core::{Algorithm, Digest, NewLayer, OciLayout, StreamCompression, decompressed};
use cargohold_layerfs::{ApplyOptions, LayerCache, Root, apply_layer, store_layer};

use super::StageError;

/// Refuses what is not a tar before anything is stored: a compressed
/// stream is judged by its magic (its content is checked as it unpacks), a
/// plain one by the tar header's `ustar` magic or an empty archive's zero block.
fn check_tar(head: &[u8]) -> Result<StreamCompression, &'static str> {
    match StreamCompression::sniff(head) {
        StreamCompression::None => match head {
            h if h.len() >= 262 && &h[257..262] == b"ustar" => Ok(StreamCompression::None),
            h if h.len() >= 512 && h[..512].iter().all(|b| *b == 0) => Ok(StreamCompression::None),
            _ => Err("not a tar archive (plain, or compressed with gzip, zstd, xz or bzip2)"),
        },
        other => Ok(other),
    }
}

/// The sha256 of the file at `path` (the tarball's cache key).
pub(crate) fn file_digest(path: &Path) -> Result<Digest, StageError> {
    let f = std::fs::File::open(path).map_err(StageError::io("open", path))?;
    let mut hasher = cargohold_image_core::HashingReader::new(BufReader::with_capacity(1 << 20, f), Algorithm::Sha256);
    std::io::copy(&mut hasher, &mut std::io::sink()).map_err(StageError::io("read", path))?;
    Ok(hasher.finish().0)
}

/// Copies what it reads into a second writer.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Stores the tarball at `path` as a layer of `layout` and unpacks it into
/// `cache` (under a temp name, then renamed). Returns the layer.
pub(crate) fn import(layout: &OciLayout, cache: &LayerCache, path: &Path) -> Result<NewLayer, StageError> {
    let bad = |reason: String| StageError::Tarball { path: path.to_path_buf(), reason };
    let f = std::fs::File::open(path).map_err(StageError::io("open", path))?;
    let mut input = BufReader::with_capacity(1 << 20, f);
    let head = input.fill_buf().map_err(StageError::io("read", path))?;
    check_tar(head).map_err(|r| bad(r.into()))?;
    let (_, tar) = decompressed(input).map_err(StageError::io("read", path))?;
    let staging = cache.staging()?;
    let root = Root::open(staging.path()).map_err(|e| StageError::io("open", staging.path())(e.into()))?;
    let (reader, writer) = std::io::pipe().map_err(StageError::io("create a pipe for", path))?;
    let name = path.display().to_string();
    let (stored, applied) = std::thread::scope(|s| {
        let applier = s.spawn(|| {
            let mut r = BufReader::with_capacity(1 << 20, reader);
            let opts = ApplyOptions { overlay: true, ..ApplyOptions::for_current_user() };
            let res = apply_layer(&root, &mut r, &name, &opts);
            // Whatever follows the end-of-archive blocks: read it, so the
            // storing side never sees a closed pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            res
        });
        let mut tee = Tee { inner: tar, copy: writer };
        let stored = store_layer(layout, &mut tee, Compression::Gzip);
        drop(tee);
        (stored, applier.join().expect("applying a layer does not panic"))
    });
    // The unpacking error is the one that says what is wrong with the tar.
    applied.map_err(|e| bad(e.to_string()))?;
    let layer = stored.map_err(|e| bad(e.to_string()))?;
    cache.adopt(staging, &layer.diff_id)?;
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_no_tar() {
        assert_eq!(check_tar(&[0x1f, 0x8b, 8]), Ok(StreamCompression::Gzip));
        assert_eq!(check_tar(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Ok(StreamCompression::Zstd));
        assert_eq!(check_tar(b"\xfd7zXZ\0\0"), Ok(StreamCompression::Xz));
        assert_eq!(check_tar(b"BZh91AY"), Ok(StreamCompression::Bzip2));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(check_tar(&tar), Ok(StreamCompression::None));
        assert!(check_tar(b"hello").is_err());
    }
}
