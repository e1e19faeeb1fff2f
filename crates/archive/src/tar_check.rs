//! Checks that a byte stream is a well-formed tar while it streams past, so
//! `import` can store a rootfs tarball in one pass and still refuse what is
//! not a tar (or is cut short) before anything is committed.

use std::io::{self, Read};

const BLOCK: usize = 512;

/// A pass-through reader that follows the tar structure: every header's
/// checksum is verified and every member's data is skipped by its size. The
/// stream must end at a member boundary. Bytes after the end-of-archive
/// marker are passed through unchecked (tar allows trailing padding).
pub(crate) struct TarCheck<R> {
    inner: R,
    header: Vec<u8>,
    /// Bytes of the current member's data and padding still to pass.
    skip: u64,
    offset: u64,
    members: u64,
    ended: bool,
}

impl<R: Read> TarCheck<R> {
    pub fn new(inner: R) -> Self {
        TarCheck {
            inner,
            header: Vec::with_capacity(BLOCK),
            skip: 0,
            offset: 0,
            members: 0,
            ended: false,
        }
    }

    /// Number of members seen (PAX and GNU long-name records included).
    #[cfg(test)]
    pub fn members(&self) -> u64 {
        self.members
    }

    fn follow(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() && !self.ended {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                self.skip -= n as u64;
                self.offset += n as u64;
                data = &data[n..];
                continue;
            }
            let n = (BLOCK - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == BLOCK {
                self.header_complete()?;
                self.header.clear();
                self.offset += BLOCK as u64;
            }
        }
        Ok(())
    }

    fn header_complete(&mut self) -> io::Result<()> {
        if self.header.iter().all(|&b| b == 0) {
            // One zero block ends the archive for every reader berth knows.
            self.ended = true;
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(&self.header);
        let stored = header.cksum().map_err(|_| self.bad("an unreadable header checksum"))?;
        let computed: u32 = self
            .header
            .iter()
            .enumerate()
            .map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) })
            .sum();
        if stored != computed {
            return Err(self.bad("a header with a wrong checksum"));
        }
        let size = header.entry_size().map_err(|_| self.bad("an unreadable member size"))?;
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        self.members += 1;
        Ok(())
    }

    fn bad(&self, what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what} at offset {}", self.offset))
    }

    /// Call at the end of the stream: fails if it stopped inside a member.
    pub fn finish(&self) -> io::Result<()> {
        if !self.header.is_empty() || self.skip > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it ends inside a member (truncated)",
            ));
        }
        if self.members == 0 && !self.ended {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "it is empty"));
        }
        Ok(())
    }
}

impl<R: Read> Read for TarCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(files: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &vec![b'x'; *size][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn check(bytes: &[u8]) -> io::Result<u64> {
        let mut c = TarCheck::new(bytes);
        // Small reads cross every boundary.
        let mut buf = [0u8; 77];
        while c.read(&mut buf)? > 0 {}
        c.finish()?;
        Ok(c.members())
    }

    #[test]
    fn valid_tars_pass_through() {
        let long_name = "d/".repeat(80) + "file";
        let bytes = tar_with(&[("a", 0), ("b", 511), ("c", 513), (&long_name, 1000)]);
        assert!(check(&bytes).unwrap() >= 4);
        assert_eq!(check(&[0u8; 1024]).unwrap(), 0, "an empty tar is a tar");
    }

    #[test]
    fn garbage_truncation_and_emptiness_are_refused() {
        let bytes = tar_with(&[("a", 2000)]);
        assert!(check(&bytes[..1000]).unwrap_err().to_string().contains("truncated"));
        assert!(check(&bytes[..300]).unwrap_err().to_string().contains("truncated"));
        let mut corrupt = bytes.clone();
        corrupt[10] ^= 0x55;
        assert!(check(&corrupt).unwrap_err().to_string().contains("checksum"));
        assert!(check(&[b'x'; 4096]).is_err());
        assert!(check(b"").unwrap_err().to_string().contains("empty"));
    }
}
