//! Compression formats, told apart by their magic bytes (never by a file
//! name or a media type alone).

use std::io::{self, BufReader, Cursor, Read};
use std::sync::mpsc;
use std::thread;

/// Buffer size for every streaming copy: large enough that syscalls and
/// per-call overhead vanish next to hashing and (de)compression.
pub const BUFFER_SIZE: usize = 1 << 20;

/// How a byte stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// The number of leading bytes [`Compression::detect`] looks at.
    pub const MAGIC_LEN: usize = 6;

    /// Judges a stream by its first bytes (fewer than [`Self::MAGIC_LEN`] only
    /// at the end of the stream).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// A stream whose first bytes were read ahead and are given back first.
pub type Peeked<R> = io::Chain<Cursor<Vec<u8>>, R>;

/// Reads up to `n` bytes (fewer only at end of stream) without losing them:
/// returns the bytes and a reader that yields them again, then the rest.
pub fn peek<R: Read>(mut reader: R, n: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut head = Vec::with_capacity(n);
    (&mut reader).take(n as u64).read_to_end(&mut head)?;
    Ok((head.clone(), Cursor::new(head).chain(reader)))
}

/// Wraps `reader` in a decoder for whatever compression its first bytes show
/// (or none). Returns the detected compression too. Compressed input is
/// decoded on a second thread, so decompression overlaps with the caller's
/// hashing and writing.
pub fn decompress<R: Read + Send + 'static>(
    reader: R,
) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let (head, reader) = peek(reader, Compression::MAGIC_LEN)?;
    let compression = Compression::detect(&head);
    let buffered = BufReader::with_capacity(BUFFER_SIZE, reader);
    let decoded: Box<dyn Read + Send> = match compression {
        Compression::None => return Ok((compression, Box::new(buffered))),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    };
    Ok((compression, Box::new(ReadAhead::spawn(decoded))))
}

/// A reader filled by a background thread, a few large chunks ahead of the
/// consumer. Dropping it stops the thread at its next chunk.
pub struct ReadAhead {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Cursor<Vec<u8>>,
    done: bool,
}

impl ReadAhead {
    /// Starts reading `inner` on a new thread. Its errors reach the reader
    /// in order, after the data read before them.
    pub fn spawn(mut inner: Box<dyn Read + Send>) -> ReadAhead {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
        thread::spawn(move || {
            loop {
                let mut chunk = vec![0u8; BUFFER_SIZE];
                let mut filled = 0;
                let result = loop {
                    match inner.read(&mut chunk[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == chunk.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(filled);
                let last = filled == 0 || result.is_err();
                if filled > 0 && tx.send(Ok(chunk)).is_err() {
                    return;
                }
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                    return;
                }
                if last {
                    return; // dropping tx tells the reader this is the end
                }
            }
        });
        ReadAhead { chunks: rx, current: Cursor::new(Vec::new()), done: false }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() || self.done {
                return Ok(n);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => self.current = Cursor::new(chunk),
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(mpsc::RecvError) => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn compressed(kind: Compression, data: &[u8]) -> Vec<u8> {
        match kind {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
        }
    }

    #[test]
    fn every_format_is_detected_and_decoded() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for kind in [
            Compression::None,
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let bytes = compressed(kind, &data);
            let (found, mut reader) = decompress(Cursor::new(bytes)).unwrap();
            assert_eq!(found, kind);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert!(out == data, "{} round trip", kind.name());
        }
    }

    #[test]
    fn a_corrupt_stream_fails_instead_of_ending_early() {
        let mut bytes = compressed(Compression::Gzip, &[7u8; 100_000]);
        let len = bytes.len();
        bytes.truncate(len / 2);
        let (_, mut reader) = decompress(Cursor::new(bytes)).unwrap();
        assert!(reader.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn short_inputs_are_not_mistaken_for_compression() {
        assert_eq!(Compression::detect(b""), Compression::None);
        assert_eq!(Compression::detect(b"{\"a\":1}"), Compression::None);
        let (found, mut r) = decompress(Cursor::new(b"ab".to_vec())).unwrap();
        assert_eq!(found, Compression::None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
