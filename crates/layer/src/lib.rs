//! Layer tarballs, wherever berth reads them (a pull's stream, the store's
//! blobs, an archive's members): decompressing one by its media type, and
//! following the tar structure of a stream as it passes ([`TarWalk`]), to
//! measure docker's content size of a layer or to check that a rootfs
//! tarball is one, without unpacking anything.

mod walk;

use std::io::{self, BufRead, Read};

use berth_oci::media_type::{self, LayerCompression};

pub use walk::{TarCheck, TarWalk};

/// `reader` decompressed as `media_type` says: gzip (every member: parallel
/// compressors write several), zstd, or as is.
pub fn decompress<'a>(
    reader: impl BufRead + Send + 'a,
    media_type: &str,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let compression = media_type::layer_compression(media_type).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unsupported layer media type {media_type}"),
        )
    })?;
    decompress_as(reader, compression)
}

/// `reader` decompressed as `compression` says (see [`decompress`]).
pub fn decompress_as<'a>(
    reader: impl BufRead + Send + 'a,
    compression: LayerCompression,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        LayerCompression::None => Box::new(reader),
        LayerCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn every_layer_media_type_decompresses_and_others_are_refused() {
        let data = b"layer bytes".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data[..500]).unwrap();
        let mut two_members = gz.finish().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data[500..]).unwrap();
        two_members.extend(gz.finish().unwrap());
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        for (mt, bytes) in [
            (media_type::OCI_LAYER, data.clone()),
            (media_type::DOCKER_LAYER, data.clone()),
            (media_type::OCI_LAYER_GZIP, two_members.clone()),
            (media_type::DOCKER_LAYER_GZIP, two_members),
            (media_type::OCI_LAYER_ZSTD, zst),
        ] {
            let mut out = Vec::new();
            decompress(&bytes[..], mt).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "{mt}");
        }
        let err = decompress(&b""[..], "application/vnd.example+gzip").err().unwrap();
        assert!(err.to_string().contains("unsupported layer media type"), "{err}");
    }
}
