//! What every command needs: where the store is, and the store itself.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use berth_store::{ProofProgress, Store};

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
        let store = Store::open(&self.root)
            .with_context(|| format!("opening the image store at {}", self.root.display()))?;
        if std::io::stderr().is_terminal() {
            store.on_proof_progress(Box::new(show_proof));
        }
        Ok(store)
    }
}

/// The proof of freshly pulled layers, on one line of the terminal while
/// it runs (cleared when done): the first read after a pull waits for it.
fn show_proof(p: ProofProgress) {
    let mut err = std::io::stderr().lock();
    if p.waiting {
        let _ = write!(err, "\r\x1b[2KWaiting for berth to finish verifying pulled layers");
    } else if p.layers_done == p.layers {
        let _ = write!(err, "\r\x1b[2K");
    } else {
        let _ = write!(
            err,
            "\r\x1b[2KVerifying pulled layers: {}/{} ({} of {})",
            p.layers_done,
            p.layers,
            crate::format::human_size(p.bytes_done),
            crate::format::human_size(p.bytes)
        );
    }
    let _ = err.flush();
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
