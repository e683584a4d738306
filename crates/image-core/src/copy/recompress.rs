//! Layers written in another compression (skopeo's `--dest-compress-format`,
//! podman's `--compression-format`): a layer read from the source, verified,
//! decompressed and compressed again into a temp file, whose digest and size
//! the new descriptor takes (a registry must be told a blob's digest).

use std::io::{self, BufReader, Read, Seek};
use std::path::PathBuf;

use crate::digest::{HashingWriter, VerifyingReader};
use crate::error::{Error, Result, blob_err};
use crate::manifest::{Descriptor, RawManifest};
use crate::media_type as mt;

/// A layer compression a copy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompressionFormat {
    /// gzip (`tar+gzip`), readable by every tool.
    Gzip,
    /// zstd (`tar+zstd`): smaller and faster to read; OCI manifests only.
    Zstd,
}

impl CompressionFormat {
    /// The levels this format takes, and the one used when none is asked.
    pub fn levels(self) -> (std::ops::RangeInclusive<i32>, i32) {
        match self {
            CompressionFormat::Gzip => (1..=9, 6),
            CompressionFormat::Zstd => (1..=22, 3),
        }
    }
}

impl std::str::FromStr for CompressionFormat {
    type Err = String;

    /// `gzip` or `zstd`, as skopeo and podman name them.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "gzip" => Ok(CompressionFormat::Gzip),
            "zstd" => Ok(CompressionFormat::Zstd),
            "zstd:chunked" => Err("zstd:chunked is not supported (gzip or zstd)".into()),
            other => Err(format!("unknown compression format {other:?} (gzip or zstd)")),
        }
    }
}

impl std::fmt::Display for CompressionFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CompressionFormat::Gzip => "gzip",
            CompressionFormat::Zstd => "zstd",
        })
    }
}

/// How a copy writes layers: each image layer in another compression (or
/// none) is recompressed into `format`, its digest and size change and so
/// do the manifests naming it; layers already in `format`, and those that
/// are no image layers or point elsewhere (`urls`), stay as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recompress {
    /// The compression written.
    pub format: CompressionFormat,
    /// Its level (`None`: the format's default, gzip 6, zstd 3).
    pub level: Option<i32>,
    /// Where a recompressed layer is written while its digest is computed
    /// (an unnamed file, gone when the copy is).
    pub temp_dir: PathBuf,
}

impl Recompress {
    /// The level written, checked against the format's range.
    fn level(&self) -> Result<i32> {
        let (range, default) = self.format.levels();
        match self.level {
            None => Ok(default),
            Some(l) if range.contains(&l) => Ok(l),
            Some(l) => Err(Error::BadOption {
                option: format!("{} compression level {l}", self.format),
                reason: format!("{} takes levels {} to {}", self.format, range.start(), range.end()),
            }),
        }
    }

    /// The recompression `opts` asks of the image `m` (`raw`): refused
    /// with `preserve_digests` when a layer would change, before any moves.
    pub(crate) fn checked<'a>(
        opts: &'a crate::CopyOptions,
        raw: &RawManifest,
        m: &crate::manifest::ImageManifest,
        location: &str,
    ) -> Result<Option<&'a Recompress>> {
        let Some(r) = &opts.compression else { return Ok(None) };
        r.level()?;
        if opts.preserve_digests
            && let Some(l) = m.layers.iter().find(|l| r.target_type(l, &raw.media_type).is_some())
        {
            return Err(Error::BadOption {
                option: "preserving digests".into(),
                reason: format!(
                    "layer {} of {} ({}) would be recompressed to {}, and image {} would not keep its own digest",
                    l.digest, location, l.media_type, r.format, raw.digest
                ),
            });
        }
        Ok(Some(r))
    }

    /// Whether `layer` is written anew, and as what media type: an image
    /// layer (tar, gzip or zstd) not in the format asked for, in a manifest
    /// of `manifest_type`.
    pub(crate) fn target_type(&self, layer: &Descriptor, manifest_type: &str) -> Option<&'static str> {
        if layer.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            return None;
        }
        let now = match layer.media_type.as_str() {
            mt::OCI_LAYER_TAR | mt::DOCKER_LAYER_TAR => None,
            mt::OCI_LAYER_GZIP | mt::DOCKER_LAYER_GZIP => Some(CompressionFormat::Gzip),
            mt::OCI_LAYER_ZSTD => Some(CompressionFormat::Zstd),
            _ => return None,
        };
        if now == Some(self.format) {
            return None;
        }
        Some(match (self.format, manifest_type) {
            (CompressionFormat::Gzip, mt::DOCKER_MANIFEST) => mt::DOCKER_LAYER_GZIP,
            (CompressionFormat::Gzip, _) => mt::OCI_LAYER_GZIP,
            (CompressionFormat::Zstd, _) => mt::OCI_LAYER_ZSTD,
        })
    }

    /// Writes `layer`, read from `data` (verified against its digest and
    /// size), in this compression to a temp file: the file, at its start,
    /// and the layer's new descriptor (`media_type`, digest, size; the rest
    /// as it was). A source that fails or does not verify is reported
    /// against `location`.
    pub(crate) fn layer(
        &self,
        layer: &Descriptor,
        media_type: &str,
        data: &mut (dyn Read + Send),
        location: &str,
    ) -> Result<(std::fs::File, Descriptor)> {
        let level = self.level()?;
        let file = tempfile::tempfile_in(&self.temp_dir).map_err(|e| Error::Io {
            action: "create a temp file for a recompressed layer in",
            path: self.temp_dir.clone(),
            source: e,
        })?;
        let mut verified = VerifyingReader::new(data, layer.digest.clone(), Some(layer.size));
        // Reading fails on the source's side; writing on the temp file's.
        let mut read_failed = false;
        let written = (|| -> io::Result<(std::fs::File, crate::digest::Digest, u64)> {
            let out = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file), layer.digest.algorithm());
            let mut source = Blamed { inner: &mut verified, failed: &mut read_failed };
            let (_, mut plain) = crate::decompress::decompressed(BufReader::with_capacity(1 << 20, &mut source))?;
            let out = match self.format {
                CompressionFormat::Gzip => {
                    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
                    let level = flate2::Compression::new(level as u32);
                    let mut e = crate::ParallelGzWriter::with_threads(out, level, threads);
                    io::copy(&mut plain, &mut e)?;
                    e.finish()?
                }
                CompressionFormat::Zstd => {
                    let mut e = zstd::stream::write::Encoder::new(out, level)?;
                    // Compressed on threads of zstd's own, beside this one
                    // decompressing: the output is the same for any number
                    // of them (1 or more), so on any machine.
                    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
                    e.multithread(workers as u32)?;
                    io::copy(&mut plain, &mut e)?;
                    e.finish()?
                }
            };
            drop(plain);
            // What follows the compressed stream is read too: the whole
            // blob is verified.
            io::copy(&mut source, &mut io::sink())?;
            let (buffered, digest, size) = out.finish();
            let mut file = buffered.into_inner().map_err(io::IntoInnerError::into_error)?;
            file.rewind()?;
            Ok((file, digest, size))
        })();
        match written {
            Ok((file, digest, size)) => {
                let new = Descriptor { media_type: media_type.to_owned(), digest, size, ..layer.clone() };
                Ok((file, new))
            }
            Err(e) if read_failed || crate::digest::VerifyError::from_io(&e).is_some() => {
                Err(blob_err(&layer.digest, location, e))
            }
            // A tar that does not decompress is the source's fault too.
            Err(e) if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(blob_err(&layer.digest, location, e))
            }
            Err(e) => Err(Error::Io {
                action: "write a recompressed layer to a temp file in",
                path: self.temp_dir.clone(),
                source: e,
            }),
        }
    }

    /// The manifest (or index) of an image whose layers were recompressed,
    /// in the format the source had where it can say them: `stored` is
    /// written as OCI once a layer changed; a Docker schema 2 source whose
    /// layers Docker can name (gzip) is written as Docker schema 2 again,
    /// as skopeo keeps it (zstd layers need OCI manifests, and a list of
    /// them an OCI index).
    pub(crate) fn manifest(source_type: &str, stored: RawManifest) -> RawManifest {
        let docker = [mt::DOCKER_MANIFEST, mt::DOCKER_MANIFEST_LIST];
        if !docker.contains(&source_type) || stored.media_type == source_type {
            return stored;
        }
        crate::manifest::convert(stored.clone(), crate::manifest::ManifestFormat::DockerV2S2).unwrap_or(stored)
    }
}

/// A reader that notes when its source failed (to blame the source).
struct Blamed<'a, R> {
    inner: R,
    failed: &'a mut bool,
}

impl<R: Read> Read for Blamed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if r.is_err() {
            *self.failed = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn to(format: CompressionFormat, dir: &std::path::Path) -> Recompress {
        Recompress { format, level: None, temp_dir: dir.to_owned() }
    }

    #[test]
    fn a_gzip_layer_becomes_zstd_with_the_same_tar() {
        let t = tempfile::tempdir().unwrap();
        let tar: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let blob = gz(&tar);
        let layer = Descriptor::new(mt::OCI_LAYER_GZIP, Digest::sha256_of(&blob), blob.len() as u64);
        let r = to(CompressionFormat::Zstd, t.path());
        let media_type = r.target_type(&layer, mt::OCI_MANIFEST).unwrap();
        assert_eq!(media_type, mt::OCI_LAYER_ZSTD);
        let (mut file, new) = r.layer(&layer, media_type, &mut &blob[..], "src").unwrap();
        let mut written = Vec::new();
        file.read_to_end(&mut written).unwrap();
        assert_eq!((new.digest.clone(), new.size), (Digest::sha256_of(&written), written.len() as u64));
        assert_eq!(zstd::decode_all(&written[..]).unwrap(), tar);
        assert_eq!(new.media_type, mt::OCI_LAYER_ZSTD);
        // Already zstd, a foreign layer, a config: left alone.
        assert!(r.target_type(&new, mt::OCI_MANIFEST).is_none());
        let foreign = Descriptor { urls: Some(vec!["https://x.example/l".into()]), ..layer.clone() };
        assert!(r.target_type(&foreign, mt::OCI_MANIFEST).is_none());
        assert!(r.target_type(&Descriptor { media_type: mt::OCI_CONFIG.into(), ..layer.clone() }, "").is_none());
        // gzip in a Docker manifest keeps Docker's type.
        let tar_layer = Descriptor::new(mt::DOCKER_LAYER_TAR, Digest::sha256_of(&tar), tar.len() as u64);
        let g = to(CompressionFormat::Gzip, t.path());
        assert_eq!(g.target_type(&tar_layer, mt::DOCKER_MANIFEST), Some(mt::DOCKER_LAYER_GZIP));
    }

    #[test]
    fn parallel_gzip_is_one_stream_whatever_the_threads() {
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 20) as u8).collect();
        let gz_with = |threads: usize| {
            let mut e = crate::ParallelGzWriter::with_threads(Vec::new(), flate2::Compression::new(6), threads);
            for chunk in data.chunks(70_001) {
                e.write_all(chunk).unwrap();
            }
            e.finish().unwrap()
        };
        let one = gz_with(1);
        assert_eq!(gz_with(3), one, "the same bytes on any number of threads");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        // gzip itself reads it as one stream.
        let empty = crate::ParallelGzWriter::with_threads(Vec::new(), flate2::Compression::new(6), 2).finish().unwrap();
        let mut nothing = Vec::new();
        flate2::read::MultiGzDecoder::new(&empty[..]).read_to_end(&mut nothing).unwrap();
        assert!(nothing.is_empty() && !empty.is_empty());
    }

    #[test]
    fn a_source_that_does_not_verify_or_decompress_is_named() {
        let t = tempfile::tempdir().unwrap();
        let blob = gz(b"some tar");
        let r = to(CompressionFormat::Zstd, t.path());
        let lying = Descriptor::new(mt::OCI_LAYER_GZIP, Digest::sha256_of(b"other"), blob.len() as u64);
        let e = r.layer(&lying, mt::OCI_LAYER_ZSTD, &mut &blob[..], "the source").unwrap_err().to_string();
        assert!(e.contains("the source") && e.contains(lying.digest.as_str()), "{e}");
        let mut broken = blob.clone();
        broken.truncate(blob.len() - 6);
        let cut = Descriptor::new(mt::OCI_LAYER_GZIP, Digest::sha256_of(&broken), broken.len() as u64);
        let e = r.layer(&cut, mt::OCI_LAYER_ZSTD, &mut &broken[..], "the source").unwrap_err().to_string();
        assert!(e.contains("the source"), "{e}");
        let bad_level = Recompress { level: Some(30), ..r };
        let e = bad_level.layer(&cut, mt::OCI_LAYER_ZSTD, &mut &broken[..], "x").unwrap_err().to_string();
        assert!(e.contains("level 30") && e.contains("levels 1 to 22"), "{e}");
    }
}
