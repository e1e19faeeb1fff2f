//! What a build's context work costs, without the build: opens a context,
//! walks it, and hashes every regular file through the stat cache twice
//! (the second time as a rebuild with nothing changed would).
//!
//! `echo FROM scratch | cargo run -p berth-context --example scan -- CONTEXT [CACHE_DIR]`
//! (the Dockerfile comes from stdin; the cache directory defaults to a fresh temporary one, so the first
//! pass is cold).

use std::path::PathBuf;
use std::time::Instant;

use berth_context::{StatCache, open};

fn main() {
    let mut args = std::env::args().skip(1);
    let spec = args.next().expect("usage: scan CONTEXT [CACHE_DIR]");
    let temp = tempfile::tempdir().unwrap();
    let cache_dir = args.next().map(PathBuf::from).unwrap_or_else(|| temp.path().to_path_buf());

    let t = Instant::now();
    let ctx = open(&spec, Some("-"), &mut std::io::stdin()).unwrap_or_else(|e| panic!("{e}"));
    println!("open: {:.3}s ({:?})", t.elapsed().as_secs_f64(), ctx.kind);
    let t = Instant::now();
    let entries = ctx.walk("".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let files: Vec<_> = entries.iter().filter(|e| e.metadata.is_file()).collect();
    let bytes: u64 = files.iter().map(|e| e.metadata.len()).sum();
    println!(
        "walk: {:.3}s, {} entries, {} files, {:.1} MB",
        t.elapsed().as_secs_f64(),
        entries.len(),
        files.len(),
        bytes as f64 / 1e6
    );
    for pass in ["first", "second"] {
        let t = Instant::now();
        let cache = StatCache::open(&cache_dir).unwrap();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|s| {
            for chunk in files.chunks(files.len().div_ceil(threads).max(1)) {
                let (cache, root) = (&cache, &ctx.root);
                s.spawn(move || {
                    for e in chunk {
                        cache.hash(root, &e.path, &e.metadata).unwrap();
                    }
                });
            }
        });
        cache.save().unwrap();
        println!(
            "hash ({pass} pass, stat cache load+save included): {:.3}s",
            t.elapsed().as_secs_f64()
        );
    }
}
