//! Tar streams as people hand them over: plain, or compressed with gzip,
//! zstd, xz or bzip2, recognised by their first bytes (never by name).

use std::io::{self, BufRead, Read};

/// The compression of a stream, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamCompression {
    /// No compression (or none recognised).
    None,
    /// gzip (`1f 8b`), members concatenated as `pigz` writes them.
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// xz (`fd 37 7a 58 5a 00`), multi-stream.
    Xz,
    /// bzip2 (`BZh1`..`BZh9`), multi-stream.
    Bzip2,
}

impl StreamCompression {
    /// The compression the first bytes of a stream show (6 bytes suffice).
    pub fn sniff(head: &[u8]) -> StreamCompression {
        match head {
            [0x1f, 0x8b, ..] => StreamCompression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => StreamCompression::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => StreamCompression::Xz,
            [b'B', b'Z', b'h', b'1'..=b'9', ..] => StreamCompression::Bzip2,
            _ => StreamCompression::None,
        }
    }

    /// Its usual name (`gzip`, `zstd`, ...; `none`).
    pub fn name(self) -> &'static str {
        match self {
            StreamCompression::None => "none",
            StreamCompression::Gzip => "gzip",
            StreamCompression::Zstd => "zstd",
            StreamCompression::Xz => "xz",
            StreamCompression::Bzip2 => "bzip2",
        }
    }
}

/// `input` decompressed as its first bytes say (read through as is when
/// they show no compression).
pub fn decompressed<'a>(
    mut input: impl BufRead + Send + 'a,
) -> io::Result<(StreamCompression, Box<dyn Read + Send + 'a>)> {
    let kind = StreamCompression::sniff(input.fill_buf()?);
    let reader: Box<dyn Read + Send + 'a> = match kind {
        StreamCompression::None => Box::new(input),
        StreamCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        StreamCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        StreamCompression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
        StreamCompression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
    };
    Ok((kind, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_format_round_trips() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let bz = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        for (bytes, kind) in [
            (&data, StreamCompression::None),
            (&gz, StreamCompression::Gzip),
            (&zst, StreamCompression::Zstd),
            (&xz, StreamCompression::Xz),
            (&bz, StreamCompression::Bzip2),
        ] {
            let (k, mut r) = decompressed(io::BufReader::new(&bytes[..])).unwrap();
            assert_eq!(k, kind);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "{}", kind.name());
        }
    }
}
