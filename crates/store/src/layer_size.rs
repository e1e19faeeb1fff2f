//! Docker's layer size: what the layer occupies once unpacked, not the
//! length of its tar. Docker measures the unpacked directory: the sizes of
//! regular files plus the target lengths of symlinks; directories, devices,
//! fifos and hard links (already counted through their target) are 0. This
//! module computes the same number from the tar stream, headers only.

use std::io::{self, Write};

const BLOCK: usize = 512;

/// An `io::Write` sink that parses a tar stream and adds up docker's
/// content size. Tee a layer's uncompressed bytes into it (it costs far less
/// than hashing them); [`TarContentSize::size`] is the result. Understands
/// ustar, GNU long names/links and PAX `size`/`linkpath` records.
#[derive(Default)]
pub struct TarContentSize {
    header: Vec<u8>,
    /// Data bytes (with padding) still to come for the current entry.
    remaining: u64,
    /// Unpadded data length of the current entry, for capturing.
    data_len: u64,
    /// Data captured for entries that describe the next one (PAX, GNU 'K').
    capture: Option<(u8, Vec<u8>)>,
    next_size: Option<u64>,
    next_link_len: Option<u64>,
    total: u64,
    finished: bool,
}

impl TarContentSize {
    pub fn new() -> TarContentSize {
        TarContentSize::default()
    }

    /// The content size of everything seen so far.
    pub fn size(&self) -> u64 {
        self.total
    }

    /// Data bytes the parser does not need to see next (an entry's content
    /// it only counts), so a caller reading a file can seek past them.
    fn skippable(&self) -> u64 {
        if self.capture.is_none() && !self.finished { self.remaining } else { 0 }
    }

    /// Records that `n <= skippable()` bytes were skipped.
    fn skip(&mut self, n: u64) -> io::Result<()> {
        self.remaining -= n;
        if self.remaining == 0 {
            self.on_data_end()?;
        }
        Ok(())
    }

    fn on_header(&mut self) -> io::Result<()> {
        let h = std::mem::take(&mut self.header);
        if h.iter().all(|&b| b == 0) {
            // End-of-archive marker; anything after it is padding.
            self.finished = true;
            return Ok(());
        }
        let kind = h[156];
        let size = self.next_size.take().map_or_else(|| parse_number(&h[124..136]), Ok)?;
        let header_only = matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        match kind {
            b'0' | 0 | b'7' | b'S' => self.total += size,
            b'2' => {
                let link_len = match self.next_link_len.take() {
                    Some(n) => n,
                    None => h[157..257].iter().position(|&b| b == 0).unwrap_or(100) as u64,
                };
                self.total += link_len;
            }
            _ => {}
        }
        if !matches!(kind, b'x' | b'K' | b'L' | b'g') {
            self.next_link_len = None;
        }
        let data = if header_only { 0 } else { size };
        self.data_len = data;
        self.remaining = data.div_ceil(BLOCK as u64) * BLOCK as u64;
        if matches!(kind, b'x' | b'K') && data > 0 {
            if data > 1 << 20 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "tar extended header too large",
                ));
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

/// A tar numeric field: octal text, or base-256 when the high bit is set.
fn parse_number(field: &[u8]) -> io::Result<u64> {
    if field[0] & 0x80 != 0 {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(b)))
                .ok_or_else(bad_number)?;
        }
        return Ok(n);
    }
    let text = std::str::from_utf8(field).map_err(|_| bad_number())?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| bad_number())
}

fn bad_number() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "invalid tar header number")
}

impl Write for TarContentSize {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() && !self.finished {
            if self.remaining > 0 {
                let n = rest.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if let Some((_, data)) = &mut self.capture {
                    let want = (self.data_len as usize).saturating_sub(data.len()).min(n);
                    data.extend_from_slice(&rest[..want]);
                }
                self.remaining -= n as u64;
                rest = &rest[n..];
                if self.remaining == 0 {
                    self.on_data_end()?;
                }
            } else {
                let n = (BLOCK - self.header.len()).min(rest.len());
                self.header.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if self.header.len() == BLOCK {
                    self.on_header()?;
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The content size of a stored layer blob, decompressing by media type.
/// An uncompressed tar is walked header to header, seeking over contents.
pub(crate) fn content_size_of_blob(path: &std::path::Path, media_type: &str) -> io::Result<u64> {
    let mut sizer = TarContentSize::new();
    if media_type.ends_with("gzip") || media_type.ends_with("zstd") {
        let file = io::BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
        if media_type.ends_with("gzip") {
            io::copy(&mut flate2::read::MultiGzDecoder::new(file), &mut sizer)?;
        } else {
            io::copy(&mut zstd::stream::read::Decoder::with_buffer(file)?, &mut sizer)?;
        }
        return Ok(sizer.size());
    }
    walk_file(std::fs::File::open(path)?, &mut sizer)?;
    Ok(sizer.size())
}

fn walk_file<F: io::Read + io::Seek>(mut file: F, sizer: &mut TarContentSize) -> io::Result<()> {
    let mut block = [0u8; BLOCK];
    while !sizer.finished {
        let skip = sizer.skippable();
        if skip > 0 {
            file.seek(io::SeekFrom::Current(skip as i64))?;
            sizer.skip(skip)?;
            continue;
        }
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        sizer.write_all(&block[..n])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let mut sizer = TarContentSize::new();
        // Feed it in awkward pieces: parsing must not depend on write sizes.
        for chunk in tar.chunks(77) {
            sizer.write_all(chunk).unwrap();
        }
        assert_eq!(sizer.size(), 1000 + 2 * 12 + 151 + 3);

        // Walking a file with seeks gives the same answer.
        let mut walked = TarContentSize::new();
        walk_file(std::io::Cursor::new(&tar), &mut walked).unwrap();
        assert_eq!(walked.size(), sizer.size());
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
