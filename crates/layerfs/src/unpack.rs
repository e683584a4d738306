//! Flattening an image into a root filesystem: every layer streamed once,
//! download/read -> verify -> inflate -> hash -> extract in one pass.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use cargohold_image_core::media_type::Compression;
use cargohold_image_core::{
    Algorithm, HashingReader, ImageSource, Platform, VerifyError, VerifyingReader, resolve_image,
};

use crate::apply::{ApplyOptions, apply_layer};
use crate::error::{Error, Result};
use crate::root::Root;

/// How to unpack.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// How each layer is applied.
    pub apply: ApplyOptions,
    /// Platform to pick from a multi-platform image (default: the host's).
    pub platform: Option<Platform>,
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Layers applied.
    pub layers: usize,
    /// Tar entries processed.
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Things skipped on purpose.
    pub warnings: Vec<String>,
}

/// Unpacks the image `src` designates into `dest`, which must not exist or be
/// an empty directory. Each layer's compressed digest and diff ID are verified;
/// on any error a `dest` created here is removed again.
pub fn unpack(src: &mut dyn ImageSource, dest: &Path, opts: &UnpackOptions) -> Result<UnpackReport> {
    let img = resolve_image(src, opts.platform.as_ref())?;
    let created = prepare_dest(dest)?;
    let result = (|| {
        let root = Root::open(dest).map_err(|e| Error::Io { action: "open", path: dest.into(), source: e.into() })?;
        let mut report = UnpackReport::default();
        for (i, layer) in img.image.layers.iter().enumerate() {
            let name = layer.digest.to_string();
            let expected = img.config.rootfs.diff_ids.get(i).ok_or_else(|| Error::DiffId {
                layer: name.clone(),
                expected: "(missing from the config)".into(),
                actual: "?".into(),
            })?;
            let raw = src.blob(layer)?;
            let mut compressed =
                BufReader::with_capacity(1 << 20, VerifyingReader::new(raw, layer.digest.clone(), Some(layer.size)));
            let compression = match Compression::of_layer(&layer.media_type) {
                Some(c) => c,
                None => Compression::sniff(compressed.fill_buf().map_err(|e| verify_err(&name, e))?),
            };
            let r = {
                let inflated: Box<dyn Read + '_> = match compression {
                    Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut compressed)),
                    Compression::Zstd => Box::new(
                        zstd::stream::read::Decoder::with_buffer(&mut compressed).map_err(|e| verify_err(&name, e))?,
                    ),
                    _ => Box::new(&mut compressed),
                };
                let mut hashing = HashingReader::new(inflated, Algorithm::Sha256);
                let r = apply_layer(&root, &mut hashing, &name, &opts.apply)?;
                let (actual, _) = hashing.finish();
                if &actual != expected {
                    return Err(Error::DiffId {
                        layer: name,
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                r
            };
            // Whatever the decoder left unread still counts for the digest.
            io::copy(&mut compressed, &mut io::sink()).map_err(|e| verify_err(&name, e))?;
            report.layers += 1;
            report.entries += r.entries;
            report.bytes += r.bytes;
            report.warnings.extend(r.warnings);
        }
        Ok(report)
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

fn verify_err(layer: &str, e: io::Error) -> Error {
    match VerifyError::from_io(&e) {
        Some(v) => Error::Verify { layer: layer.into(), reason: v.to_string() },
        None => Error::Tar { layer: layer.into(), source: e },
    }
}

/// Creates `dest` if missing (returns true), or checks it is an empty directory.
fn prepare_dest(dest: &Path) -> Result<bool> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Io {
                    action: "unpack into",
                    path: dest.into(),
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "the directory is not empty"),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(|source| Error::Io {
                action: "create",
                path: dest.into(),
                source,
            })?;
            Ok(true)
        }
        Err(source) => Err(Error::Io { action: "read", path: dest.into(), source }),
    }
}
