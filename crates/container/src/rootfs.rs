//! Paths inside a container's root filesystem, seen from the host.

use std::path::{Path, PathBuf};

/// `path` (absolute in the container) resolved inside `rootfs`, following
/// symlinks as the container would see them (an absolute target starts
/// again at `rootfs`, `..` never climbs out of it); `None` if it does not
/// exist.
pub fn resolve_in_root(rootfs: &Path, path: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path.split('/').rev().map(str::to_owned).collect();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        parts.push(part);
        let here = rootfs.join(parts.join("/"));
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&here).ok()?.to_string_lossy().into_owned();
            parts.pop();
            if target.starts_with('/') {
                parts.clear();
            }
            todo.extend(target.split('/').rev().map(str::to_owned));
        }
    }
    Some(rootfs.join(parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/sh"), "").unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/../../usr/bin/sh", root.join("escape")).unwrap();
        assert_eq!(resolve_in_root(root, "/bin/sh"), Some(root.join("usr/bin/sh")));
        assert_eq!(resolve_in_root(root, "/escape"), Some(root.join("usr/bin/sh")));
        assert_eq!(resolve_in_root(root, "/../../bin/sh"), Some(root.join("usr/bin/sh")));
        assert_eq!(resolve_in_root(root, "/missing"), None);
    }
}
