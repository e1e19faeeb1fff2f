//! Where an image is copied from or to, named with skopeo's transports:
//!
//! - `docker://NAME[:TAG|@DIGEST]`: a registry;
//! - `berth:NAME|ID`, or a plain reference: the local store;
//! - `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`: an OCI image layout,
//!   unpacked or as a tar (REF is the `org.opencontainers.image.ref.name`
//!   to pick or to write, as skopeo uses it);
//! - `docker-archive:FILE[:NAME:TAG]`: `docker save`'s format.

use std::path::PathBuf;

use berth_reference::Reference;

use crate::TransferError;

/// skopeo's transports berth does not speak: named in the error rather
/// than mistaken for an image name.
const FOREIGN_TRANSPORTS: &[&str] =
    &["containers-storage", "dir", "docker-daemon", "ostree", "sif", "tarball"];

const TRANSPORTS: &str = "docker://, berth:, oci:, oci-archive: and docker-archive:";

/// A place an image is copied from or to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Registry(Reference),
    /// The local store; the name is optional only as a destination (`berth:`
    /// keeps the image untagged).
    Store(Option<String>),
    OciDir(PathBuf, Option<String>),
    OciArchive(PathBuf, Option<String>),
    DockerArchive(PathBuf, Option<String>),
}

impl Place {
    pub fn parse(arg: &str) -> Result<Place, TransferError> {
        let invalid = |m: String| TransferError::InvalidPlace(m);
        if let Some(rest) = arg.strip_prefix("docker://") {
            let r = Reference::parse(rest)
                .map_err(|e| invalid(format!("invalid image {arg:?}: {e}")))?;
            let r = if r.digest().is_some() { r } else { r.with_default_tag() };
            return Ok(Place::Registry(r));
        }
        let Some((transport, rest)) = arg.split_once(':') else {
            return Ok(Place::Store(Some(arg.to_owned())));
        };
        // `oci:DIR:REF`: the path ends at the first colon, as with skopeo.
        let path_ref = || -> Result<(PathBuf, Option<String>), TransferError> {
            let (path, r) = match rest.split_once(':') {
                Some((p, r)) => (p, Some(r.to_owned()).filter(|r| !r.is_empty())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(invalid(format!(
                    "invalid {transport}: reference {arg:?}: a path is required"
                )));
            }
            Ok((PathBuf::from(path), r))
        };
        Ok(match transport {
            "berth" => Place::Store(Some(rest.to_owned()).filter(|r| !r.is_empty())),
            "oci" => path_ref().map(|(p, r)| Place::OciDir(p, r))?,
            "oci-archive" => path_ref().map(|(p, r)| Place::OciArchive(p, r))?,
            "docker-archive" => path_ref().map(|(p, r)| Place::DockerArchive(p, r))?,
            t if FOREIGN_TRANSPORTS.contains(&t) || rest.starts_with("//") => {
                return Err(invalid(format!(
                    "unsupported transport {t:?} in {arg:?}: berth copies between {TRANSPORTS}"
                )));
            }
            // `busybox:1.36`, `localhost:5000/app`: a name in the local store.
            _ => match Reference::parse(arg) {
                Ok(_) => Place::Store(Some(arg.to_owned())),
                Err(_) => {
                    return Err(invalid(format!(
                        "unknown transport {transport:?} in {arg:?}: berth copies between {TRANSPORTS}"
                    )));
                }
            },
        })
    }

    /// The tag this place gives an image written to it, if it names one.
    pub fn destination_tag(&self) -> Result<Option<Reference>, TransferError> {
        let invalid = |m: String| TransferError::InvalidPlace(m);
        let parse = |name: &str| -> Result<Reference, TransferError> {
            let r = Reference::parse(name)
                .map_err(|e| invalid(format!("invalid destination name {name:?}: {e}")))?;
            if r.digest().is_some() {
                return Err(invalid(format!(
                    "invalid destination name {name:?}: a digest cannot name a copy"
                )));
            }
            Ok(r.with_default_tag())
        };
        Ok(match self {
            Place::Registry(r) if r.digest().is_some() => {
                return Err(invalid(format!(
                    "cannot copy to a digest reference: {}: name a tag",
                    r.familiar()
                )));
            }
            Place::Registry(r) => Some(r.clone()),
            Place::Store(Some(n)) | Place::DockerArchive(_, Some(n)) => Some(parse(n)?),
            // skopeo writes the REF of `oci:DIR:REF` as is; a bare tag ("v1")
            // names no repository, so the image keeps its own names and
            // only the index entry carries the REF.
            Place::OciDir(_, Some(n)) if n.contains(['/', ':']) => Some(parse(n)?),
            Place::OciArchive(_, Some(n)) if n.contains(['/', ':']) => Some(parse(n)?),
            Place::OciArchive(_, Some(n)) => {
                return Err(invalid(format!(
                    "oci-archive: name the image in full ({n:?} has no repository), e.g. NAME:{n}"
                )));
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse_like_skopeo() {
        let p = |s: &str| Place::parse(s).unwrap();
        assert_eq!(
            p("docker://localhost:5000/app"),
            Place::Registry(Reference::parse("localhost:5000/app:latest").unwrap())
        );
        assert_eq!(p("berth:app:1"), Place::Store(Some("app:1".into())));
        assert_eq!(p("busybox:1.36"), Place::Store(Some("busybox:1.36".into())));
        assert_eq!(p("localhost:5000/app"), Place::Store(Some("localhost:5000/app".into())));
        assert_eq!(p("oci:/tmp/x:v1"), Place::OciDir("/tmp/x".into(), Some("v1".into())));
        assert_eq!(p("oci:/tmp/x"), Place::OciDir("/tmp/x".into(), None));
        assert_eq!(
            p("oci-archive:a.tar:example.com/app:2"),
            Place::OciArchive("a.tar".into(), Some("example.com/app:2".into()))
        );
        assert_eq!(p("docker-archive:a.tar"), Place::DockerArchive("a.tar".into(), None));
        for (bad, text) in [
            ("dir:/tmp/x", "unsupported transport \"dir\""),
            ("containers-storage:app", "unsupported transport \"containers-storage\""),
            ("ftp://host/x", "unsupported transport \"ftp\""),
            ("bogus:/tmp/x", "unknown transport \"bogus\""),
            ("oci:", "a path is required"),
        ] {
            let e = Place::parse(bad).unwrap_err().to_string();
            assert!(e.contains(text), "{bad}: {e}");
        }
    }

    #[test]
    fn destinations_name_what_they_write() {
        let tag = |s: &str| Place::parse(s).unwrap().destination_tag();
        assert_eq!(
            tag("docker://r.example/a:1").unwrap(),
            Some(Reference::parse("r.example/a:1").unwrap())
        );
        assert_eq!(tag("oci:/tmp/x:v1").unwrap(), None);
        assert_eq!(tag("berth:").unwrap(), None);
        let digest = format!("docker://r.example/a@sha256:{}", "0".repeat(64));
        assert!(tag(&digest).unwrap_err().to_string().contains("name a tag"));
        assert!(tag("oci-archive:a.tar:v1").unwrap_err().to_string().contains("in full"));
    }
}
