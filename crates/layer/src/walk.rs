//! One streaming walk of a tar's headers, shared by everything that needs
//! the structure of a layer without its files.

use std::io::{self, Read, Seek, Write};

const BLOCK: usize = 512;
/// The largest PAX or GNU long-link record kept to read the next header by.
const RECORD_LIMIT: u64 = 1 << 20;

/// Follows a tar stream fed to it in pieces of any size: every header's
/// checksum is verified, every member's data is passed over by its size
/// (PAX `size` records and GNU long names and links understood), and
/// docker's content size is added up: what the layer occupies unpacked,
/// the sizes of regular files plus the target lengths of symlinks
/// (directories, devices, fifos and hard links count 0). Bytes after the
/// end-of-archive block are padding and not looked at.
///
/// As an `io::Write` sink it can be teed a layer's bytes; it costs far less
/// than hashing them.
#[derive(Default)]
pub struct TarWalk {
    header: Vec<u8>,
    /// Data bytes (with padding) still to come for the current member.
    remaining: u64,
    /// Unpadded data length of the current member, for capturing.
    data_len: u64,
    /// Data of a member that describes the next one (PAX 'x', GNU 'K').
    capture: Option<(u8, Vec<u8>)>,
    next_size: Option<u64>,
    next_link_len: Option<u64>,
    content_size: u64,
    members: u64,
    ended: bool,
    offset: u64,
}

impl TarWalk {
    pub fn new() -> TarWalk {
        TarWalk::default()
    }

    /// Docker's content size of everything seen so far.
    pub fn content_size(&self) -> u64 {
        self.content_size
    }

    /// Members seen (PAX and GNU long-name records included).
    pub fn members(&self) -> u64 {
        self.members
    }

    /// Whether the end-of-archive block was seen.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Follows the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() && !self.ended {
            if self.remaining > 0 {
                let n = data.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if let Some((_, record)) = &mut self.capture {
                    let want = (self.data_len as usize).saturating_sub(record.len()).min(n);
                    record.extend_from_slice(&data[..want]);
                }
                self.advance(n as u64)?;
                data = &data[n..];
            } else {
                let n = (BLOCK - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.header.len() == BLOCK {
                    self.on_header()?;
                }
            }
        }
        Ok(())
    }

    /// Call at the end of the stream: fails if it stopped inside a member,
    /// or held no tar at all.
    pub fn finish(&self) -> io::Result<()> {
        if !self.header.is_empty() || self.remaining > 0 {
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

    /// Docker's content size of an uncompressed tar file, reading only its
    /// headers (member contents are seeked over).
    pub fn content_size_of_file<F: Read + Seek>(mut file: F) -> io::Result<u64> {
        let mut walk = TarWalk::new();
        let mut block = [0u8; BLOCK];
        while !walk.ended {
            let skip = if walk.capture.is_none() { walk.remaining } else { 0 };
            if skip > 0 {
                file.seek(io::SeekFrom::Current(skip as i64))?;
                walk.advance(skip)?;
                continue;
            }
            let want =
                if walk.remaining > 0 { (walk.remaining as usize).min(BLOCK) } else { BLOCK };
            let n = file.read(&mut block[..want])?;
            if n == 0 {
                break;
            }
            walk.feed(&block[..n])?;
        }
        Ok(walk.content_size)
    }

    /// `n` data bytes of the current member went by.
    fn advance(&mut self, n: u64) -> io::Result<()> {
        self.remaining -= n;
        self.offset += n;
        if self.remaining == 0 {
            self.on_data_end()?;
        }
        Ok(())
    }

    fn bad(&self, what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what} at offset {}", self.offset))
    }

    fn on_header(&mut self) -> io::Result<()> {
        let h = std::mem::take(&mut self.header);
        if h.iter().all(|&b| b == 0) {
            // One zero block ends the archive for every reader berth knows.
            self.ended = true;
            return Ok(());
        }
        let stored =
            parse_number(&h[148..156]).map_err(|_| self.bad("an unreadable header checksum"))?;
        let computed: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| if (148..156).contains(&i) { u64::from(b' ') } else { u64::from(b) })
            .sum();
        if stored != computed {
            return Err(self.bad("a header with a wrong checksum"));
        }
        self.offset += BLOCK as u64;
        self.members += 1;
        let kind = h[156];
        let size = match self.next_size.take() {
            Some(n) => n,
            None => {
                parse_number(&h[124..136]).map_err(|_| self.bad("an unreadable member size"))?
            }
        };
        match kind {
            b'0' | 0 | b'7' | b'S' => self.content_size += size,
            b'2' => {
                let link_len = match self.next_link_len.take() {
                    Some(n) => n,
                    None => h[157..257].iter().position(|&b| b == 0).unwrap_or(100) as u64,
                };
                self.content_size += link_len;
            }
            _ => {}
        }
        if !matches!(kind, b'x' | b'K' | b'L' | b'g') {
            self.next_link_len = None;
        }
        // Links, devices, directories and fifos have no data, whatever
        // their size field says.
        let data = if matches!(kind, b'1'..=b'6') { 0 } else { size };
        self.data_len = data;
        self.remaining = data.div_ceil(BLOCK as u64) * BLOCK as u64;
        if matches!(kind, b'x' | b'K') && data > 0 {
            if data > RECORD_LIMIT {
                return Err(self.bad("a tar extended header too large"));
            }
            self.capture = Some((kind, Vec::with_capacity(data as usize)));
        }
        if self.remaining == 0 {
            self.on_data_end()?;
        }
        Ok(())
    }

    fn on_data_end(&mut self) -> io::Result<()> {
        let Some((kind, data)) = self.capture.take() else { return Ok(()) };
        if kind == b'K' {
            let len = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            self.next_link_len = Some(len as u64);
            return Ok(());
        }
        // PAX records: "<len> <key>=<value>\n".
        let mut rest = &data[..];
        while !rest.is_empty() {
            let Some(space) = rest.iter().position(|&b| b == b' ') else { break };
            let Some(len) =
                std::str::from_utf8(&rest[..space]).ok().and_then(|s| s.parse::<usize>().ok())
            else {
                break;
            };
            if len <= space || len > rest.len() {
                break;
            }
            let record = &rest[space + 1..len];
            let record = record.strip_suffix(b"\n").unwrap_or(record);
            if let Some(eq) = record.iter().position(|&b| b == b'=') {
                let (key, value) = (&record[..eq], &record[eq + 1..]);
                match key {
                    b"size" => {
                        self.next_size =
                            std::str::from_utf8(value).ok().and_then(|v| v.parse().ok())
                    }
                    b"linkpath" => self.next_link_len = Some(value.len() as u64),
                    _ => {}
                }
            }
            rest = &rest[len..];
        }
        Ok(())
    }
}

impl Write for TarWalk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.feed(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A tar numeric field: octal text, or base-256 when the high bit is set.
fn parse_number(field: &[u8]) -> Result<u64, ()> {
    if field[0] & 0x80 != 0 {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            n = n.checked_mul(256).and_then(|n| n.checked_add(u64::from(b))).ok_or(())?;
        }
        return Ok(n);
    }
    let text = std::str::from_utf8(field).map_err(|_| ())?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| ())
}

/// A pass-through reader that walks the tar structure of what it reads (see
/// [`TarWalk`]), so a stream can be stored in one pass and still be refused,
/// before anything is committed, if it is not a tar or is cut short: call
/// [`TarCheck::finish`] at its end.
pub struct TarCheck<R> {
    inner: R,
    walk: TarWalk,
}

impl<R: Read> TarCheck<R> {
    pub fn new(inner: R) -> Self {
        TarCheck { inner, walk: TarWalk::new() }
    }

    /// The walk so far (members, content size).
    pub fn walk(&self) -> &TarWalk {
        &self.walk
    }

    /// Fails if the stream stopped inside a member, or held no tar.
    pub fn finish(&self) -> io::Result<()> {
        self.walk.finish()
    }
}

impl<R: Read> Read for TarCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.walk.feed(&buf[..n])?;
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
        Ok(c.walk().members())
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

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o755);
        h
    }

    #[test]
    fn counts_files_and_symlink_targets_like_docker() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut header(tar::EntryType::Directory, 0), "bin/", &[][..]).unwrap();
        b.append_data(&mut header(tar::EntryType::Regular, 1000), "bin/busybox", &[7u8; 1000][..])
            .unwrap();
        for name in ["bin/sh", "bin/ls"] {
            b.append_link(&mut header(tar::EntryType::Symlink, 0), name, "/bin/busybox").unwrap();
        }
        // A target longer than 100 bytes needs a GNU long-link entry.
        let long = format!("/{}", "x".repeat(150));
        b.append_link(&mut header(tar::EntryType::Symlink, 0), "bin/long", &long).unwrap();
        b.append_link(&mut header(tar::EntryType::Link, 0), "bin/hard", "bin/busybox").unwrap();
        // PAX records override the next entry's size.
        b.append_pax_extensions([("size", &b"3"[..])]).unwrap();
        b.append_data(&mut header(tar::EntryType::Regular, 3), "pax", &b"abc"[..]).unwrap();
        b.append_data(&mut header(tar::EntryType::Regular, 0), ".wh.gone", &[][..]).unwrap();
        let tar = b.into_inner().unwrap();

        let mut walk = TarWalk::new();
        // Feed it in awkward pieces: parsing must not depend on write sizes.
        for chunk in tar.chunks(77) {
            walk.write_all(chunk).unwrap();
        }
        walk.finish().unwrap();
        assert_eq!(walk.content_size(), 1000 + 2 * 12 + 151 + 3);

        // Walking a file with seeks gives the same answer.
        let walked = TarWalk::content_size_of_file(std::io::Cursor::new(&tar)).unwrap();
        assert_eq!(walked, walk.content_size());
    }

    #[test]
    fn base256_sizes_parse() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 0x02;
        field[10] = 0x01;
        assert_eq!(parse_number(&field).unwrap(), 258);
        assert_eq!(parse_number(b"00000000017\0").unwrap(), 15);
    }
}
