//! Writing layer blobs: a tar stream hashed (diff ID) and compressed in one
//! pass, into the store or into a file.

use std::io::{self, Read, Write};
use std::path::Path;

use cargohold_image_core::media_type::{self as mt, Compression};
use cargohold_image_core::{Algorithm, Descriptor, HashingReader, NewLayer, OciLayout};

use crate::error::{Error, Result};
use cargohold_image_core::ParallelGzWriter;

/// The compression of a layer being written, from a file name's extension
/// (`.gz`/`.tgz` gzip, `.zst` zstd, anything else plain tar).
pub fn compression_for(path: &Path) -> Compression {
    let name = path.to_string_lossy();
    if name.ends_with(".gz") || name.ends_with(".tgz") {
        Compression::Gzip
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn media_type(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => mt::OCI_LAYER_GZIP,
        Compression::Zstd => mt::OCI_LAYER_ZSTD,
        _ => mt::OCI_LAYER_TAR,
    }
}

/// A reader yielding `tar` compressed with `c`.
fn compressed<'a>(tar: impl Read + 'a, c: Compression) -> Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::Gzip => Box::new(flate2::read::GzEncoder::new(tar, flate2::Compression::default())),
        Compression::Zstd => Box::new(zstd::stream::read::Encoder::new(tar, 3).map_err(|e| Error::Io {
            action: "start zstd compression for",
            path: "layer".into(),
            source: e,
        })?),
        _ => Box::new(tar),
    })
}

/// Stores the layer tar read from `tar` in `layout`, compressed with `c`,
/// returning its descriptor and diff ID. One pass: hash, compress, hash, write.
pub fn store_layer(layout: &OciLayout, tar: &mut dyn Read, c: Compression) -> Result<NewLayer> {
    let mut hashing = HashingReader::new(tar, Algorithm::Sha256);
    let (digest, size) = if c == Compression::Gzip {
        // gzip is the slow one: compress on every core.
        layout.put_blob_from_writer(Algorithm::Sha256, |w| {
            let mut gz = ParallelGzWriter::new(w, flate2::Compression::default());
            io::copy(&mut hashing, &mut gz)?;
            gz.finish().map(|_| ())
        })?
    } else {
        let mut r = compressed(&mut hashing, c)?;
        layout.put_blob_computed(Algorithm::Sha256, &mut r)?
    };
    let (diff_id, _) = hashing.finish();
    Ok(NewLayer { descriptor: Descriptor::new(media_type(c), digest, size), diff_id })
}

/// Writes the layer tar produced by `write_tar` (which gets a writer) into the
/// store, via a pipe so the tar is never materialized on disk or in memory.
pub fn store_layer_from<F>(layout: &OciLayout, c: Compression, write_tar: F) -> Result<NewLayer>
where
    F: FnOnce(&mut dyn Write) -> Result<()> + Send,
{
    let (mut reader, writer) =
        io::pipe().map_err(|e| Error::Io { action: "create a pipe for", path: "layer".into(), source: e })?;
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut w = io::BufWriter::with_capacity(1 << 20, writer);
            write_tar(&mut w)?;
            w.flush().map_err(|e| Error::Io { action: "write", path: "layer".into(), source: e })
        });
        let stored = store_layer(layout, &mut reader, c);
        drop(reader);
        let produced = producer.join().expect("the tar writer does not panic");
        produced?;
        stored
    })
}

/// Runs `write_tar` into `w`, returning the sha256 of the tar (the diff ID).
fn hash_tar<F>(w: &mut dyn Write, write_tar: F, path: &Path) -> Result<cargohold_image_core::Digest>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let mut th = cargohold_image_core::HashingWriter::new(w, Algorithm::Sha256);
    write_tar(&mut th)?;
    th.flush().map_err(|e| Error::Io { action: "write", path: path.into(), source: e })?;
    Ok(th.finish().1)
}

/// Writes the layer tar produced by `write_tar` to `path` (temp name, then
/// rename), compressed by `path`'s extension. Returns the diff ID and the
/// digest of the file.
pub fn write_layer_file<F>(
    path: &Path,
    write_tar: F,
) -> Result<(cargohold_image_core::Digest, cargohold_image_core::Digest)>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let io_err = |action: &'static str| move |e: io::Error| Error::Io { action, path: path.into(), source: e };
    let tmp = cargohold_image_core::Output::create(path).map_err(io_err("create"))?;
    let file = io::BufWriter::with_capacity(1 << 20, tmp.file().try_clone().map_err(io_err("open"))?);
    let mut hashed = cargohold_image_core::HashingWriter::new(file, Algorithm::Sha256);
    let compress_err = io_err("compress");
    let diff_id = match compression_for(path) {
        Compression::Gzip => {
            let mut enc = ParallelGzWriter::new(&mut hashed, flate2::Compression::default());
            let d = hash_tar(&mut enc, write_tar, path)?;
            enc.finish().map_err(compress_err)?;
            d
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(&mut hashed, 3).map_err(io_err("compress"))?;
            let d = hash_tar(&mut enc, write_tar, path)?;
            enc.finish().map_err(compress_err)?;
            d
        }
        _ => hash_tar(&mut hashed, write_tar, path)?,
    };
    let (mut w, digest, _) = hashed.finish();
    w.flush().map_err(io_err("write"))?;
    tmp.finish().map_err(io_err("fsync and rename into place"))?;
    Ok((diff_id, digest))
}
