//! A streaming tar writer for archives berth generates: ustar headers for
//! short names, data copied in large chunks (or by the kernel, file to
//! file), fixed metadata (mtime 0, root owner) so that saving the same
//! images twice gives the same bytes.

use std::fs::File;
use std::io::{self, Read, Write};

use crate::compression::BUFFER_SIZE;

const BLOCK: u64 = 512;

pub(crate) struct TarWriter<W: Write> {
    out: W,
    buffer: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out, buffer: Vec::new() }
    }

    fn header(&mut self, path: &str, kind: tar::EntryType, size: u64, mode: u32) -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        // Every name berth writes is ASCII and shorter than ustar's 100 bytes.
        header.set_path(path)?;
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        self.out.write_all(header.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = size % BLOCK;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK as usize][..(BLOCK - rem) as usize])?;
        }
        Ok(())
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.header(&format!("{path}/"), tar::EntryType::Directory, 0, 0o755)
    }

    pub fn bytes(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.header(path, tar::EntryType::Regular, data.len() as u64, 0o644)?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_path(path)?;
        header.set_link_name(target)?;
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(0);
        header.set_cksum();
        self.out.write_all(header.as_bytes())
    }

    /// A member of exactly `size` bytes copied from `file` (from its current
    /// offset) without passing through user space where the kernel can
    /// (copy_file_range to a file, splice/sendfile to a pipe or socket).
    /// Fails if the file has fewer bytes.
    pub fn file(&mut self, path: &str, size: u64, file: File) -> io::Result<()> {
        self.header(path, tar::EntryType::Regular, size, 0o644)?;
        let copied = io::copy(&mut file.take(size), &mut self.out)?;
        self.check_len(path, size, copied)?;
        self.pad(size)
    }

    /// A member of exactly `size` bytes read from `reader`, which must yield
    /// exactly that many (checked: one more byte is an error too).
    pub fn reader(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> io::Result<()> {
        self.header(path, tar::EntryType::Regular, size, 0o644)?;
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; BUFFER_SIZE];
        }
        let mut copied = 0u64;
        loop {
            let n = match reader.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if copied + n as u64 > size {
                return Err(too_long(path, size));
            }
            self.out.write_all(&self.buffer[..n])?;
            copied += n as u64;
        }
        self.check_len(path, size, copied)?;
        self.pad(size)
    }

    fn check_len(&self, path: &str, size: u64, copied: u64) -> io::Result<()> {
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, the source has {copied}"),
            ));
        }
        Ok(())
    }

    /// Writes the end-of-archive marker and returns the output, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK as usize])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn too_long(path: &str, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{path}: the source has more than {size} bytes"),
    )
}
