//! SHA-256 whose state can be saved between requests: an upload's running
//! hash lives in the ledger beside its parts, so whichever replica commits
//! it knows the digest without reading the blob back.
//!
//! The state covers whole 64-byte blocks only (an upload's parts are
//! multiples of 64 bytes); the bytes after the last block are the upload's
//! tail, which the store keeps anyway and hands to [`Sha256State::finish`].
//! Blocks go through `sha2`'s own compression function (SHA-NI where the
//! CPU has it), so the digests are those of `sha2` itself.

use berth_reference::Digest;
use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;

/// The initial hash value of SHA-256 (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A SHA-256 computation after a whole number of blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sha256State {
    h: [u32; 8],
    /// Bytes hashed so far (a multiple of 64).
    len: u64,
}

impl Default for Sha256State {
    fn default() -> Sha256State {
        Sha256State { h: H0, len: 0 }
    }
}

impl Sha256State {
    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hashes `data`, whose length must be a multiple of 64.
    pub fn update_blocks(&mut self, data: &[u8]) {
        assert_eq!(data.len() % 64, 0, "whole blocks only");
        let blocks: Vec<GenericArray<u8, _>> =
            data.chunks_exact(64).map(|b| *GenericArray::from_slice(b)).collect();
        sha2::compress256(&mut self.h, &blocks);
        self.len += data.len() as u64;
    }

    /// The digest of everything hashed followed by `rest`.
    pub fn finish(mut self, rest: &[u8]) -> Digest {
        let whole = rest.len() / 64 * 64;
        self.update_blocks(&rest[..whole]);
        let rest = &rest[whole..];
        let bits = (self.len + rest.len() as u64) * 8;
        // Padding: 0x80, zeros, the length in bits as 64-bit big-endian.
        let mut last = Vec::with_capacity(128);
        last.extend_from_slice(rest);
        last.push(0x80);
        while last.len() % 64 != 56 {
            last.push(0);
        }
        last.extend_from_slice(&bits.to_be_bytes());
        let blocks: Vec<GenericArray<u8, _>> =
            last.chunks_exact(64).map(|b| *GenericArray::from_slice(b)).collect();
        sha2::compress256(&mut self.h, &blocks);
        let hex: String = self.h.iter().map(|w| format!("{w:08x}")).collect();
        Digest::parse(&format!("sha256:{hex}")).expect("a sha256 digest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_sha256_at_every_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 999, 1000] {
            let data = &data[..n];
            for split in (0..=n).step_by(64) {
                let mut s = Sha256State::default();
                s.update_blocks(&data[..split]);
                // Saved and restored between the two halves, as the ledger does.
                let s: Sha256State =
                    serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
                assert_eq!(
                    s.finish(&data[split..]),
                    Digest::sha256_of(data),
                    "n={n} split={split}"
                );
            }
        }
    }
}
