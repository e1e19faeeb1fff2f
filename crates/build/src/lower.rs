//! What the image built so far holds at a path, answered from its layer
//! tars' headers (an uncompressed layer is indexed by seeking past the
//! file contents), so that a COPY into a big image never unpacks it.
//!
//! The answers depend only on the layers, so they are kept beside the step
//! cache (`build-cache/view-<digest of the diff IDs>.json`): a rebuild
//! whose steps are all cached asks again and reads no layer.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use berth_oci::Layer;
use berth_reference::Digest;
use berth_store::Store;

use crate::copy::LowerView;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Other,
    Whiteout,
}

#[derive(Default)]
struct Index {
    entries: HashMap<String, Kind>,
    /// Directories re-created in this layer (`.wh..wh..opq`): nothing
    /// below them in lower layers shows through.
    opaque: HashSet<String>,
}

/// The image's layers, topmost first, indexed on first use.
pub struct StackView<'a> {
    store: &'a Store,
    layers: Vec<&'a Layer>,
    indexes: RefCell<HashMap<usize, Index>>,
    /// The first layer that could not be read (reported by [`StackView::error`]).
    failure: RefCell<Option<io::Error>>,
    /// Answers given for these layers, by this view or an earlier one.
    memo: RefCell<Memo>,
}

#[derive(Default)]
struct Memo {
    /// Where the answers are kept; `None` for an image without layers.
    file: Option<PathBuf>,
    answers: BTreeMap<String, Option<bool>>,
    /// Answers were added since the file was read.
    dirty: bool,
    /// A layer could not be read: nothing is kept.
    spoiled: bool,
}

impl<'a> StackView<'a> {
    pub fn new(store: &'a Store, layers: &'a [Layer]) -> StackView<'a> {
        let mut memo = Memo::default();
        if !layers.is_empty() {
            let ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
            let name = Digest::sha256_of(ids.join("\n").as_bytes());
            let file = store.root().join("build-cache").join(format!("view-{}.json", name.hex()));
            // A missing or unreadable file is only a cold start.
            if let Ok(bytes) = std::fs::read(&file) {
                memo.answers = serde_json::from_slice(&bytes).unwrap_or_default();
            }
            memo.file = Some(file);
        }
        StackView {
            store,
            layers: layers.iter().rev().collect(),
            indexes: RefCell::new(HashMap::new()),
            failure: RefCell::new(None),
            memo: RefCell::new(memo),
        }
    }

    /// A layer that could not be read while answering.
    pub fn error(&self) -> Option<io::Error> {
        self.failure.borrow_mut().take()
    }

    fn answer(&self, path: &str) -> Option<bool> {
        for i in 0..self.layers.len() {
            if let Some(answer) = self.with_index(i, |index| index.kind(path)) {
                return answer;
            }
        }
        None
    }

    fn with_index<T>(&self, i: usize, f: impl FnOnce(&Index) -> T) -> T {
        let mut indexes = self.indexes.borrow_mut();
        let index = indexes.entry(i).or_insert_with(|| {
            index_layer(self.store, self.layers[i]).unwrap_or_else(|e| {
                self.failure.borrow_mut().get_or_insert(e);
                self.memo.borrow_mut().spoiled = true;
                Index::default()
            })
        });
        f(index)
    }
}

impl Index {
    /// What this layer says of `path`: `None` when it says nothing (look
    /// lower), `Some(None)` when it hides it, else its kind.
    fn kind(&self, path: &str) -> Option<Option<bool>> {
        let mut ancestor = String::new();
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            if !ancestor.is_empty() {
                ancestor.push('/');
            }
            ancestor.push_str(part);
            let last = parts.peek().is_none();
            match self.entries.get(&ancestor) {
                Some(Kind::Whiteout) => return Some(None),
                Some(Kind::Other) if !last => return Some(None),
                _ => {}
            }
            if !last && self.opaque.contains(&ancestor) {
                // Below a re-created directory: only this layer counts.
                return Some(match self.entries.get(path) {
                    Some(Kind::Dir) => Some(true),
                    Some(Kind::Other) => Some(false),
                    _ => None,
                });
            }
        }
        match self.entries.get(path) {
            Some(Kind::Dir) => Some(Some(true)),
            Some(Kind::Other) => Some(Some(false)),
            _ => None,
        }
    }
}

impl LowerView for StackView<'_> {
    fn kind(&self, path: &str) -> Option<bool> {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return Some(true);
        }
        if let Some(known) = self.memo.borrow().answers.get(path) {
            return *known;
        }
        let answer = self.answer(path);
        let mut memo = self.memo.borrow_mut();
        memo.answers.insert(path.to_owned(), answer);
        memo.dirty = true;
        answer
    }
}

impl Drop for StackView<'_> {
    fn drop(&mut self) {
        let memo = self.memo.get_mut();
        let Some(file) = &memo.file else { return };
        if !memo.dirty || memo.spoiled {
            return;
        }
        // Best effort, written whole or not at all: it is only a cache.
        let Ok(bytes) = serde_json::to_vec(&memo.answers) else { return };
        let temp = file.with_extension(format!("tmp.{}", std::process::id()));
        if std::fs::write(&temp, bytes).is_ok() && std::fs::rename(&temp, file).is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }
}

/// The blob to read a layer from: the uncompressed tar if held, else the first.
fn layer_blob(layer: &Layer) -> io::Result<&berth_oci::Descriptor> {
    layer
        .blobs
        .iter()
        .find(|b| b.digest == layer.diff_id)
        .or_else(|| layer.blobs.first())
        .ok_or_else(|| io::Error::other("no blob carries the layer"))
}

fn index_layer(store: &Store, layer: &Layer) -> io::Result<Index> {
    let blob = layer_blob(layer)?;
    let mut index = Index::default();
    if blob.digest == layer.diff_id {
        // The tar itself: its headers are found by seeking past each file.
        let mut archive = tar::Archive::new(store.open_blob(&blob.digest)?);
        for entry in archive.entries_with_seek()? {
            add_entry(&mut index, &entry?);
        }
        return Ok(index);
    }
    let file = BufReader::with_capacity(256 * 1024, store.open_blob(&blob.digest)?);
    let reader: Box<dyn Read + Send> = berth_layer::decompress(file, &blob.media_type)?;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        add_entry(&mut index, &entry?);
    }
    Ok(index)
}

fn add_entry<R: Read>(index: &mut Index, entry: &tar::Entry<'_, R>) {
    {
        let raw = entry.path_bytes();
        let path = String::from_utf8_lossy(&raw);
        let path = path.trim_start_matches("./").trim_matches('/').to_owned();
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
        if name == ".wh..wh..opq" {
            index.opaque.insert(parent.to_owned());
            return;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let hidden =
                if parent.is_empty() { hidden.to_owned() } else { format!("{parent}/{hidden}") };
            index.entries.insert(hidden, Kind::Whiteout);
            return;
        }
        let kind = if entry.header().entry_type().is_dir() { Kind::Dir } else { Kind::Other };
        // Parents a tar leaves implicit are directories.
        let mut ancestor = String::new();
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            if !ancestor.is_empty() {
                ancestor.push('/');
            }
            ancestor.push_str(part);
            index.entries.entry(ancestor.clone()).or_insert(Kind::Dir);
        }
        index.entries.insert(path, kind);
    }
}

/// Reads a whole file of the image (`/etc/passwd` for `--chown=name`),
/// topmost layer first; `None` if absent or deleted.
pub fn read_file(store: &Store, layers: &[Layer], path: &str) -> io::Result<Option<Vec<u8>>> {
    let path = path.trim_matches('/');
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let whiteout =
        if parent.is_empty() { format!(".wh.{name}") } else { format!("{parent}/.wh.{name}") };
    for layer in layers.iter().rev() {
        let blob = layer_blob(layer)?;
        let file = BufReader::new(File::open(store.blob_path(&blob.digest))?);
        let reader = berth_layer::decompress(file, &blob.media_type)?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path_bytes();
            let p =
                String::from_utf8_lossy(&raw).trim_start_matches("./").trim_matches('/').to_owned();
            if p == whiteout {
                return Ok(None);
            }
            if p == path && entry.header().entry_type().is_file() {
                let mut content = Vec::new();
                entry.read_to_end(&mut content)?;
                return Ok(Some(content));
            }
        }
    }
    Ok(None)
}
