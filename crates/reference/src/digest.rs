//! Content digests: `algorithm ":" hex`, as the OCI image spec defines them.
//!
//! Only the two registered algorithms are accepted: `sha256` (64 lowercase hex
//! characters) and `sha512` (128). Anything else that still matches the
//! generic digest grammar is reported as unsupported rather than malformed, so
//! a registry can answer `DIGEST_INVALID` vs. `UNSUPPORTED` correctly.

use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A digest algorithm berth can compute and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding of this algorithm's output.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        Hasher::new(self)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a usable digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid checksum digest format")]
    InvalidFormat,
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    #[error("invalid checksum digest length")]
    InvalidLength,
}

/// A validated content digest such as `sha256:e3b0c4...`.
///
/// The string form is kept as given (it is always canonical once validated),
/// so `Display`, hashing and ordering are cheap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    text: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::InvalidFormat)?;
        if !is_algorithm_grammar(alg) || hex.is_empty() {
            return Err(DigestError::InvalidFormat);
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::UnsupportedAlgorithm),
        };
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::InvalidFormat);
        }
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::InvalidLength);
        }
        Ok(Digest { algorithm, text: s.to_owned() })
    }

    /// Builds a digest from raw hash output.
    pub fn from_bytes(algorithm: Algorithm, hash: &[u8]) -> Digest {
        Digest { algorithm, text: format!("{}:{}", algorithm, hex::encode(hash)) }
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, data)
    }

    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without `algorithm:`.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The 12-character form docker prints in IMAGE ID columns.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    /// Whether `data` hashes to this digest.
    pub fn verifies(&self, data: &[u8]) -> bool {
        Digest::of(self.algorithm, data) == *self
    }
}

/// `algorithm-component (separator algorithm-component)*`, where a component
/// is `[a-z0-9]+` and a separator one of `+._-`.
fn is_algorithm_grammar(alg: &str) -> bool {
    !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
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

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental hash for either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_bytes(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_bytes(Algorithm::Sha512, &h.finalize()),
        }
    }
}

/// A reader that hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: io::Read> HashingReader<R> {
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader { inner, hasher: Hasher::new(algorithm), count: 0 }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest and size of everything read.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.count)
    }

    pub fn into_parts(self) -> (R, Digest, u64) {
        (self.inner, self.hasher.finish(), self.count)
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: io::Write> HashingWriter<W> {
    pub fn new(inner: W, algorithm: Algorithm) -> Self {
        HashingWriter { inner, hasher: Hasher::new(algorithm), count: 0 }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn into_parts(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.count)
    }
}

impl<W: io::Write> io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_input_has_the_well_known_digest() {
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY);
        assert_eq!(Digest::sha256_of(b"").short(), "e3b0c44298fc");
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<(), DigestError>)] = &[
            (EMPTY, Ok(())),
            (&format!("sha512:{}", "a".repeat(128)), Ok(())),
            ("sha256:abc", Err(DigestError::InvalidLength)),
            (&format!("sha256:{}", "A".repeat(64)), Err(DigestError::InvalidFormat)),
            (&format!("sha384:{}", "a".repeat(96)), Err(DigestError::UnsupportedAlgorithm)),
            (
                &format!("multihash+base58:{}", "a".repeat(10)),
                Err(DigestError::UnsupportedAlgorithm),
            ),
            ("sha256", Err(DigestError::InvalidFormat)),
            ("sha256:", Err(DigestError::InvalidFormat)),
            (":abc", Err(DigestError::InvalidFormat)),
            (&format!("SHA256:{}", "a".repeat(64)), Err(DigestError::InvalidFormat)),
            (&format!("sha256:{}g", "a".repeat(63)), Err(DigestError::InvalidFormat)),
        ];
        for (input, want) in cases {
            assert_eq!(Digest::parse(input).map(|_| ()), *want, "{input}");
        }
    }

    #[test]
    fn sha512_is_computed_and_verified() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.hex().len(), 128);
        assert!(d.hex().starts_with("ddaf35a193617aba"));
        assert!(d.verifies(b"abc"));
        assert!(!d.verifies(b"abd"));
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
    }

    #[test]
    fn hashing_reader_matches_one_shot_digest() {
        use std::io::Read;
        let data = vec![7u8; 100_000];
        let mut r = HashingReader::new(&data[..], Algorithm::Sha256);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).unwrap();
        let (d, n) = r.finish();
        assert_eq!(n, 100_000);
        assert_eq!(d, Digest::sha256_of(&data));
    }
}
