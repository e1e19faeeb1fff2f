//! Parallel gzip: the input is cut into independent chunks, each compressed
//! on its own core as a complete gzip member, and the members are written in
//! order. Concatenated members are one valid gzip stream (RFC 1952 §2.2);
//! every gzip reader (Go's, zlib's, flate2's `MultiGzDecoder`) reads it whole.

use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;

/// Bytes per independently compressed chunk: large enough that the ratio is
/// that of one stream, small enough to keep memory at a few chunks per core.
pub const CHUNK_SIZE: usize = 4 << 20;

/// Compresses all of `input` to `output` with `threads` cores (gzip level 1:
/// pushing is bound by compression, and level 1 keeps most of the ratio).
/// Returns the number of uncompressed bytes read.
pub fn gzip_parallel(
    input: &mut dyn Read,
    output: &mut dyn Write,
    threads: usize,
) -> io::Result<u64> {
    let threads = threads.max(1);
    let mut total = 0u64;
    loop {
        let mut chunks = Vec::with_capacity(threads);
        let mut eof = false;
        while chunks.len() < threads && !eof {
            let mut chunk = Vec::with_capacity(CHUNK_SIZE);
            input.take(CHUNK_SIZE as u64).read_to_end(&mut chunk)?;
            eof = chunk.len() < CHUNK_SIZE;
            if !chunk.is_empty() || (total == 0 && chunks.is_empty()) {
                total += chunk.len() as u64;
                chunks.push(chunk);
            }
        }
        let compressed: Vec<io::Result<Vec<u8>>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let mut enc = GzEncoder::new(
                            Vec::with_capacity(c.len() / 2 + 64),
                            Compression::fast(),
                        );
                        enc.write_all(c)?;
                        enc.finish()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("compressor thread")).collect()
        });
        for member in compressed {
            output.write_all(&member?)?;
        }
        if eof {
            return Ok(total);
        }
    }
}

/// The number of cores to compress with.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_decompress_to_the_input() {
        // Three and a half chunks of compressible, non-uniform data.
        let data: Vec<u8> = (0..CHUNK_SIZE * 7 / 2).map(|i| ((i * 7919) >> 5) as u8).collect();
        let mut out = Vec::new();
        assert_eq!(gzip_parallel(&mut &data[..], &mut out, 3).unwrap(), data.len() as u64);
        assert!(out.len() < data.len() / 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
        assert!(back == data);
    }

    #[test]
    fn empty_input_is_one_empty_member() {
        let mut out = Vec::new();
        assert_eq!(gzip_parallel(&mut io::empty(), &mut out, 2).unwrap(), 0);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
        assert!(back.is_empty() && !out.is_empty());
    }
}
