//! Content digests (`sha256:<hex>`), streaming hashers and verifying adapters.
//!
//! Validation follows `opencontainers/go-digest` exactly, because references and
//! manifests written by Docker tooling are checked with it: the algorithm must be
//! known, the encoded part must be lowercase hex of exactly the algorithm's length.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::Digest as _;

/// A hash algorithm usable in a [`Digest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, the algorithm of nearly every image in existence.
    Sha256,
    /// SHA-384 (registered by go-digest, accepted for interoperability).
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in the digest string (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a valid digest. Each variant mirrors a go-digest error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Not of the form `algorithm:encoded`, or the encoding is not lowercase hex.
    #[error("invalid checksum digest format: {input:?}")]
    InvalidFormat {
        /// The rejected input.
        input: String,
    },
    /// The encoded part has the wrong length for its algorithm.
    #[error("invalid checksum digest length: {input:?} (expected {expected} hex characters)")]
    InvalidLength {
        /// The rejected input.
        input: String,
        /// Hex characters the algorithm needs.
        expected: usize,
    },
    /// Well formed, but the algorithm is not one we can compute.
    #[error("unsupported digest algorithm: {input:?}")]
    Unsupported {
        /// The rejected input.
        input: String,
    },
}

/// A validated content digest such as `sha256:e3b0c442...`.
///
/// Stored as its canonical string, so display and comparison are free.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    text: String,
}

impl Digest {
    /// Parses and strictly validates a digest string.
    pub fn parse(input: &str) -> Result<Self, DigestError> {
        let Some((alg, encoded)) = input.split_once(':') else {
            return Err(DigestError::InvalidFormat { input: input.into() });
        };
        if alg.is_empty() || encoded.is_empty() {
            return Err(DigestError::InvalidFormat { input: input.into() });
        }
        let Some(algorithm) = Algorithm::from_name(alg) else {
            // go-digest: a well-formed digest with an unknown algorithm is
            // "unsupported", anything else "invalid format".
            return Err(if well_formed_any_algorithm(alg, encoded) {
                DigestError::Unsupported { input: input.into() }
            } else {
                DigestError::InvalidFormat { input: input.into() }
            });
        };
        if encoded.len() != algorithm.hex_len() {
            return Err(DigestError::InvalidLength { input: input.into(), expected: algorithm.hex_len() });
        }
        if !encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::InvalidFormat { input: input.into() });
        }
        Ok(Digest { algorithm, text: input.to_owned() })
    }

    /// Builds a digest from an algorithm and raw hash bytes.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8]) -> Self {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(algorithm.as_str().len() + 1 + bytes.len() * 2);
        text.push_str(algorithm.as_str());
        text.push(':');
        for b in bytes {
            write!(text, "{b:02x}").expect("writing to a String cannot fail");
        }
        Digest { algorithm, text }
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish()
    }

    /// The digest of `data` with this digest's algorithm.
    pub fn same_algorithm_of(&self, data: &[u8]) -> Self {
        let mut h = Hasher::new(self.algorithm);
        h.update(data);
        h.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without `algorithm:`.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The full `algorithm:hex` string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first 12 hex characters, as Docker shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

/// go-digest's `DigestRegexp`: `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`.
fn well_formed_any_algorithm(alg: &str, encoded: &str) -> bool {
    let alg_ok = alg
        .split(['.', '+', '_', '-'])
        .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let enc_ok = encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    alg_ok && enc_ok
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A streaming hasher for any supported [`Algorithm`].
///
/// sha2 uses the SHA-NI / ARMv8 crypto instructions when the CPU has them
/// (runtime detection), which is as fast as OpenSSL on the machines we target.
#[derive(Clone)]
pub struct Hasher(HasherInner);

#[derive(Clone)]
enum HasherInner {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        Hasher(match algorithm {
            Algorithm::Sha256 => HasherInner::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => HasherInner::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => HasherInner::Sha512(sha2::Sha512::new()),
        })
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            HasherInner::Sha256(h) => h.update(data),
            HasherInner::Sha384(h) => h.update(data),
            HasherInner::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self.0 {
            HasherInner::Sha256(h) => Digest::from_bytes(Algorithm::Sha256, &h.finalize()),
            HasherInner::Sha384(h) => Digest::from_bytes(Algorithm::Sha384, &h.finalize()),
            HasherInner::Sha512(h) => Digest::from_bytes(Algorithm::Sha512, &h.finalize()),
        }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A failed content check, carried inside an [`io::Error`] of kind `InvalidData`
/// by [`VerifyingReader`]; recover it with [`VerifyError::from_io`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The content hashed to another digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest that was promised.
        expected: Digest,
        /// The digest of what was actually read.
        actual: Digest,
    },
    /// More or fewer bytes than promised.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}{more}", more = if *.truncated_read { "" } else { " or more" })]
    SizeMismatch {
        /// The digest of the content.
        digest: Digest,
        /// Promised size.
        expected: u64,
        /// Bytes seen (at least).
        actual: u64,
        /// Whether the stream ended (true) or went on past the size (false).
        truncated_read: bool,
    },
    /// A destination that checks what it is sent (a registry, answering
    /// `DIGEST_INVALID`) refused the content as not matching its digest,
    /// though the content, read again, matches it.
    #[error("{by} refused it as not matching {digest}, though it does")]
    Refused {
        /// The digest of the content.
        digest: Digest,
        /// Who refused it, and how (a registry and its error code).
        by: String,
    },
}

impl VerifyError {
    /// Extracts a verification failure from an I/O error produced by a verifying adapter.
    pub fn from_io(err: &io::Error) -> Option<&VerifyError> {
        err.get_ref().and_then(|e| e.downcast_ref::<VerifyError>())
    }
}

/// A reader that hashes everything it passes on and, at end of stream, fails with
/// an `InvalidData` error if the digest or size is not what was promised. It also
/// fails as soon as more bytes than promised arrive, so a lying source cannot make
/// us read (or store) unbounded data.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    expected_size: Option<u64>,
    seen: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, promising content `expected` of `expected_size` bytes (if known).
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingReader { inner, hasher: Some(Hasher::new(expected.algorithm())), expected, expected_size, seen: 0 }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.seen
    }

    fn fail(&self, e: VerifyError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for at most one byte more than the promised remainder: enough to
        // detect an over-long stream without reading it.
        let want = match self.expected_size {
            Some(size) => {
                let remaining = size.saturating_sub(self.seen).saturating_add(1);
                buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX))
            }
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            let Some(hasher) = self.hasher.take() else {
                return Ok(0);
            };
            if let Some(size) = self.expected_size
                && self.seen != size
            {
                return Err(self.fail(VerifyError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    actual: self.seen,
                    truncated_read: true,
                }));
            }
            let actual = hasher.finish();
            if actual != self.expected {
                return Err(self.fail(VerifyError::DigestMismatch { expected: self.expected.clone(), actual }));
            }
            return Ok(0);
        }
        self.seen += n as u64;
        if let Some(size) = self.expected_size
            && self.seen > size
        {
            self.hasher = None;
            return Err(self.fail(VerifyError::SizeMismatch {
                digest: self.expected.clone(),
                expected: size,
                actual: self.seen,
                truncated_read: false,
            }));
        }
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// A writer that passes bytes through while hashing them, refuses to write past
/// the promised size, and checks digest and size in [`VerifyingWriter::finish`].
pub struct VerifyingWriter<W> {
    inner: W,
    hasher: Hasher,
    expected: Digest,
    expected_size: Option<u64>,
    written: u64,
}

impl<W: Write> VerifyingWriter<W> {
    /// Wraps `inner`, promising content `expected` of `expected_size` bytes (if known).
    pub fn new(inner: W, expected: Digest, expected_size: Option<u64>) -> Self {
        let hasher = Hasher::new(expected.algorithm());
        VerifyingWriter { inner, hasher, expected, expected_size, written: 0 }
    }

    /// Checks what was written and returns the inner writer.
    pub fn finish(self) -> Result<W, VerifyError> {
        if let Some(size) = self.expected_size
            && size != self.written
        {
            return Err(VerifyError::SizeMismatch {
                digest: self.expected,
                expected: size,
                actual: self.written,
                truncated_read: true,
            });
        }
        let actual = self.hasher.finish();
        if actual != self.expected {
            return Err(VerifyError::DigestMismatch { expected: self.expected, actual });
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for VerifyingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.expected_size
            && self.written + buf.len() as u64 > size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                VerifyError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    actual: self.written + buf.len() as u64,
                    truncated_read: false,
                },
            ));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`, hashing with `algorithm`.
    pub fn new(inner: W, algorithm: Algorithm) -> Self {
        HashingWriter { inner, hasher: Hasher::new(algorithm), written: 0 }
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.written)
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through it, without a promise.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`, hashing with `algorithm`.
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader { inner, hasher: Hasher::new(algorithm), read: 0 }
    }

    /// The digest and byte count of what was read.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.read)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn digest_round_trip(alg in 0..3usize, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let alg = [Algorithm::Sha256, Algorithm::Sha384, Algorithm::Sha512][alg];
            let mut h = Hasher::new(alg);
            h.update(&bytes);
            let d = h.finish();
            prop_assert_eq!(Digest::parse(d.as_str()).unwrap(), d.clone());
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d.clone());
            prop_assert_eq!(serde_json::from_str::<Digest>(&serde_json::to_string(&d).unwrap()).unwrap(), d);
        }

        #[test]
        fn digest_parse_never_panics(s in "\\PC{0,140}") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.as_str(), s.as_str());
            }
        }

        #[test]
        fn verifying_writer_accepts_exactly_the_content(data in proptest::collection::vec(any::<u8>(), 0..2048), flip in any::<usize>()) {
            let d = Digest::sha256_of(&data);
            let mut w = VerifyingWriter::new(Vec::new(), d.clone(), Some(data.len() as u64));
            w.write_all(&data).unwrap();
            prop_assert_eq!(w.finish().unwrap(), data.clone());
            if !data.is_empty() {
                let mut bad = data.clone();
                let i = flip % bad.len();
                bad[i] ^= 1;
                let mut w = VerifyingWriter::new(Vec::new(), d.clone(), Some(data.len() as u64));
                w.write_all(&bad).unwrap();
                let is_mismatch = matches!(w.finish(), Err(VerifyError::DigestMismatch { .. }));
                prop_assert!(is_mismatch);
                let mut w = VerifyingWriter::new(Vec::new(), d, Some(data.len() as u64 - 1));
                prop_assert!(w.write_all(&data).is_err());
            }
        }
    }

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_rules() {
        assert_eq!(Digest::parse(EMPTY).unwrap().hex().len(), 64);
        let cases: &[(&str, &str)] = &[
            ("", "format"),
            ("sha256", "format"),
            ("sha256:", "format"),
            (":abc", "format"),
            ("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "format"),
            ("sha256:e3b0", "length"),
            ("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g", "format"),
            ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported"),
            ("foo+bar:abc", "unsupported"),
            ("Foo:abc", "format"),
        ];
        for (input, kind) in cases {
            let err = Digest::parse(input).unwrap_err();
            let got = match err {
                DigestError::InvalidFormat { .. } => "format",
                DigestError::InvalidLength { .. } => "length",
                DigestError::Unsupported { .. } => "unsupported",
            };
            assert_eq!(got, *kind, "{input:?}");
        }
    }

    #[test]
    fn hasher_matches_known_values() {
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish().hex().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn verifying_reader_detects_mismatch_truncation_and_overrun() {
        let data = b"hello world";
        let d = Digest::sha256_of(data);
        let mut ok = VerifyingReader::new(&data[..], d.clone(), Some(11));
        io::copy(&mut ok, &mut io::sink()).unwrap();

        let mut bad = VerifyingReader::new(&b"hello worle"[..], d.clone(), Some(11));
        let e = io::copy(&mut bad, &mut io::sink()).unwrap_err();
        assert!(matches!(VerifyError::from_io(&e), Some(VerifyError::DigestMismatch { .. })));

        let mut short = VerifyingReader::new(&data[..5], d.clone(), Some(11));
        let e = io::copy(&mut short, &mut io::sink()).unwrap_err();
        assert!(matches!(VerifyError::from_io(&e), Some(VerifyError::SizeMismatch { truncated_read: true, .. })));

        let long = [0u8; 100];
        let mut over = VerifyingReader::new(&long[..], d, Some(11));
        let e = io::copy(&mut over, &mut io::sink()).unwrap_err();
        assert!(matches!(
            VerifyError::from_io(&e),
            Some(VerifyError::SizeMismatch { truncated_read: false, actual: 12, .. })
        ));
    }
}
