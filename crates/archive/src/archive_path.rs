//! Paths inside an archive. Members are named by normalised relative paths
//! (`dir/file`, no `.`, no trailing `/`); anything that could reach outside
//! the archive is refused, even though berth never extracts to disk, so an
//! archive berth accepts is safe for every other tool too.

use crate::error::ArchiveError;

/// Normalises a member's name. Refuses absolute names and any `..` component.
pub fn member_path(raw: &[u8]) -> Result<String, ArchiveError> {
    let name = String::from_utf8_lossy(raw);
    let unsafe_path = |reason| ArchiveError::UnsafePath { path: name.clone().into_owned(), reason };
    if name.starts_with('/') {
        return Err(unsafe_path("has an absolute path"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_path("has a \"..\" component")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink member's target, relative to the link's directory
/// (`../x/layer.tar` from `y/layer.tar` is `x/layer.tar`). Refuses absolute
/// targets and targets that climb above the archive's root.
pub fn symlink_target(link: &str, target: &[u8]) -> Result<String, ArchiveError> {
    let target = String::from_utf8_lossy(target);
    let unsafe_path = |reason| ArchiveError::UnsafePath { path: link.to_owned(), reason };
    if target.starts_with('/') {
        return Err(unsafe_path("is a symlink to an absolute path"));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop(); // the link's own name
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(unsafe_path("is a symlink pointing outside the archive"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A hard link's target, which tar records as a member name.
pub fn hardlink_target(link: &str, target: &[u8]) -> Result<String, ArchiveError> {
    member_path(target).map_err(|_| ArchiveError::UnsafePath {
        path: link.to_owned(),
        reason: "is a hard link pointing outside the archive",
    })
}

/// `blobs/<algorithm>/<hex>` names the digest the member must have.
pub fn blob_digest(path: &str) -> Option<berth_reference::Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    berth_reference::Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// The member path of a blob in an OCI image layout.
pub fn blob_path(digest: &berth_reference::Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalised() {
        assert_eq!(member_path(b"./manifest.json").unwrap(), "manifest.json");
        assert_eq!(member_path(b"abc//layer.tar").unwrap(), "abc/layer.tar");
        assert_eq!(member_path(b"blobs/sha256/").unwrap(), "blobs/sha256");
    }

    #[test]
    fn escaping_names_are_refused() {
        for bad in [&b"../x"[..], b"/etc/passwd", b"a/../../b", b"a/../b"] {
            let err = member_path(bad).unwrap_err();
            assert!(matches!(err, ArchiveError::UnsafePath { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn symlinks_resolve_inside_and_are_refused_outside() {
        assert_eq!(symlink_target("b/layer.tar", b"../a/layer.tar").unwrap(), "a/layer.tar");
        assert_eq!(symlink_target("b/layer.tar", b"./x.tar").unwrap(), "b/x.tar");
        assert_eq!(symlink_target("layer", b"x.tar").unwrap(), "x.tar");
        assert!(symlink_target("b/layer.tar", b"../../etc/passwd").is_err());
        assert!(symlink_target("layer.tar", b"../x").is_err());
        assert!(symlink_target("b/layer.tar", b"/etc/passwd").is_err());
        assert!(hardlink_target("x", b"../y").is_err());
        assert_eq!(hardlink_target("x", b"./a/b").unwrap(), "a/b");
    }

    #[test]
    fn blob_paths_carry_digests() {
        let d = berth_reference::Digest::sha256_of(b"x");
        assert_eq!(blob_digest(&blob_path(&d)), Some(d));
        assert_eq!(blob_digest("blobs/sha256/nothex"), None);
        assert_eq!(blob_digest("abc/layer.tar"), None);
    }
}
