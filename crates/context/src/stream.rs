//! A context that arrives as a stream (stdin, a download): a tar, perhaps
//! compressed, or else a bare Dockerfile. Docker tells them apart by the
//! first 1024 bytes: a known compression magic, or a valid tar header.

use std::io::{self, Cursor, Read};

use berth_archive::Compression;

use crate::error::error_chain;

use crate::{BuildContext, ContextError, ContextKind, DockerfileArg, finish, read_dockerfile};

/// As docker: two tar blocks are read ahead to decide.
const HEAD_LEN: usize = 1024;
const TAR_BLOCK: usize = 512;

/// Opens the stream `reader` (`what` names it in errors) as a context;
/// `name` is a bare Dockerfile's name for messages. `stdin` serves `-f -`.
pub(crate) fn open(
    reader: &mut dyn Read,
    what: &'static str,
    name: &str,
    file: DockerfileArg,
    stdin: &mut dyn Read,
) -> Result<BuildContext, ContextError> {
    let mut head = Vec::with_capacity(HEAD_LEN);
    reader
        .take(HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|source| ContextError::Stream { what, source })?;
    let compression = Compression::detect(&head);
    let is_archive = compression != Compression::None || is_tar_header(&head);
    let temp = tempfile::Builder::new()
        .prefix("berth-build-context-")
        .tempdir()
        .map_err(|source| ContextError::TempDir { source })?;
    let root = temp.path().canonicalize().map_err(|source| ContextError::TempDir { source })?;
    let mut whole = Cursor::new(head).chain(reader);
    if !is_archive {
        // A bare Dockerfile: docker ignores `-f` here (but not `-f -`).
        let (text, name) = match file {
            DockerfileArg::Stdin => (read_dockerfile(stdin, "-", None)?, "-"),
            _ => (read_dockerfile(&mut whole, name, None)?, name),
        };
        return Ok(BuildContext {
            root,
            dockerfile: text,
            dockerfile_name: name.to_string(),
            ignore: Default::default(),
            kind: ContextKind::Empty,
            _temp: Some(temp),
        });
    }
    let archive_err = |e: io::Error| ContextError::Archive { message: error_chain(&e) };
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(whole)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(whole)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(whole).map_err(archive_err)?)
        }
    };
    unpack(decoded, &root).map_err(archive_err)?;
    finish(root, Some(temp), ContextKind::Archive, file, stdin)
}

/// Unpacks a context tar: modes and mtimes kept. The tar crate skips `..`
/// entries, refuses any write through a symlink that leaves `dest`, and
/// writes fifos and devices as empty regular files (so no Dockerfile of a
/// tar can block a read).
fn unpack(reader: impl Read, dest: &std::path::Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    // Owners are left out: COPY gives files root's (or --chown's) anyway.
    archive.set_preserve_ownerships(false);
    archive.set_overwrite(true);
    archive.unpack(dest)
}

/// Whether `head` starts with a tar header whose checksum holds (what Go's
/// tar reader checks first).
fn is_tar_header(head: &[u8]) -> bool {
    let Some(block) = head.get(..TAR_BLOCK) else { return false };
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .skip_while(|c| *c == ' ')
        .take_while(|c| c.is_digit(8))
        .collect();
    let Ok(stored) = u64::from_str_radix(&digits, 8) else { return false };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_are_told_from_text() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(1);
        header.set_cksum();
        builder.append_data(&mut header, "a", &b"x"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        assert!(is_tar_header(&tar));
        let mut broken = tar.clone();
        broken[0] = b'b';
        assert!(!is_tar_header(&broken));
        assert!(!is_tar_header(&[0; 1024]));
        assert!(!is_tar_header(b"FROM scratch\n"));
        assert!(!is_tar_header(&b"FROM scratch\nCOPY . .\n".repeat(40)));
    }
}
