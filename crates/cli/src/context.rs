//! What every command needs: where the store is, and the store itself.

use std::path::PathBuf;

use anyhow::Context as _;
use berth_store::Store;

pub struct Context {
    root: PathBuf,
}

impl Context {
    pub fn new(root: Option<PathBuf>) -> Context {
        Context { root: root.unwrap_or_else(default_root) }
    }

    /// The local store's directory.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Opens the local store (one SQLite open; the schema is only touched
    /// when it is missing or old).
    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.root)
            .with_context(|| format!("opening the image store at {}", self.root.display()))
    }
}

/// `/var/lib/berth` for root, `$XDG_DATA_HOME/berth` or
/// `~/.local/share/berth` for everyone else.
fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc_geteuid() } == 0 {
        return PathBuf::from("/var/lib/berth");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("berth");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/berth")
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
