//! Byte pipes between async network code and blocking file/compression
//! threads: bounded channels of chunks, so memory stays small and a slow
//! side applies back-pressure to the other.

use std::io::{self, Read, Write};

use bytes::Bytes;
use tokio::sync::mpsc::{Receiver, Sender};

/// Reads chunks from a channel (blocking; for blocking threads only). A
/// closed channel is end of input; an `Err` item fails the read.
pub(crate) struct ChunkReader {
    rx: Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChunkReader {
    pub fn new(rx: Receiver<io::Result<Bytes>>) -> ChunkReader {
        ChunkReader { rx, current: Bytes::new() }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Writes into a channel as chunks (blocking; for blocking threads only).
pub(crate) struct ChunkWriter {
    tx: Sender<io::Result<Bytes>>,
}

impl ChunkWriter {
    pub fn new(tx: Sender<io::Result<Bytes>>) -> ChunkWriter {
        ChunkWriter { tx }
    }

    /// Tells the reading side the input failed (instead of ending cleanly).
    pub fn fail(self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
