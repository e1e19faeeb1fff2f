//! `berth build`: a Dockerfile's stages executed over the local store.
//!
//! A build is a sequence of steps per stage. Each step either changes the
//! image's config only (ENV, CMD, LABEL, ...: a history entry marked
//! `empty_layer`) or makes a layer: COPY and ADD write theirs straight from
//! the files they select ([`copy`]), RUN runs in a container of the stage's
//! image so far and its overlay upper directory becomes the layer
//! ([`run`]). Layers are uncompressed tars in the store (the blob is the
//! diff ID), as `commit` makes them; push compresses.
//!
//! Every step has a key ([`cache::KeyBuilder`]): its parent's key and what
//! its result depends on. A key found in the cache reuses the step's layer
//! and its `created` time, so a rebuild with nothing changed gives the
//! same image ID. The finished image goes through the store's one commit
//! path, like a pull or a load.

pub mod cache;
pub mod copy;
mod instructions;
mod lower;
pub mod mounts;
pub mod progress;
pub mod run;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use berth_dockerfile::{Ignore, ParseError, Stages};
use berth_reference::{Digest, Reference};
use berth_store::{NewImage, Store, StoreError};

pub use progress::Progress;

/// What `berth build` was asked for, beyond the Dockerfile and context.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `-t`, each with a tag.
    pub tags: Vec<Reference>,
    /// `--build-arg NAME=VALUE` (a bare `NAME` already resolved from the
    /// caller's environment).
    pub build_args: HashMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--label`, set on the final image.
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name) built without the cache.
    pub no_cache_filter: Vec<String>,
    /// `--pull`: fetch every base image again.
    pub pull: bool,
    /// `--network` for RUN: `None` is berth's default, the host's network
    /// (berth has no bridge; a build usually fetches packages).
    pub network: Option<berth_container::Network>,
    /// The OCI runtime RUN uses (`runc` if unset).
    pub runtime: Option<String>,
    /// `--secret id=ID,src=FILE`: what `RUN --mount=type=secret,id=ID` shows.
    pub secrets: HashMap<String, PathBuf>,
    /// `SOURCE_DATE_EPOCH`: every `created` time, so that the same
    /// Dockerfile and context build the same image ID.
    pub source_date_epoch: Option<i64>,
}

/// What the build needs from its caller.
pub trait Hooks: Sync {
    /// Makes `reference` available in the store (pulling it) and returns
    /// its image ID.
    fn pull(&self, reference: &str) -> Result<Digest, String>;
}

/// Where COPY and ADD read from.
pub struct ContextFiles<'a> {
    pub root: &'a Path,
    pub ignore: &'a Ignore,
    /// Content hashes of the context's files by their stat, so that an
    /// unchanged file is not read again to find a step's key (`None` for a
    /// temporary context, which nothing should remember).
    pub stat_cache: Option<&'a berth_context::StatCache>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An instruction that cannot be carried out, with its file and line.
    #[error("{file}:{line}: {message}")]
    Step { file: String, line: usize, message: String },
    #[error(
        "{file}:{line}: process \"{command}\" did not complete successfully: exit code: {code}"
    )]
    RunFailed { file: String, line: usize, command: String, code: i32 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The image a build made.
#[derive(Debug, Clone)]
pub struct Built {
    pub id: Digest,
    pub tags: Vec<Reference>,
}

/// One build: the Dockerfile's text and name, its context, and its options.
pub struct Build<'a> {
    pub store: &'a Store,
    pub dockerfile: &'a str,
    /// For messages: `Dockerfile`, `Dockerfile.dev`.
    pub file_name: &'a str,
    pub context: ContextFiles<'a>,
    pub options: &'a BuildOptions,
    pub hooks: &'a dyn Hooks,
    pub progress: &'a Progress,
}

impl Build<'_> {
    /// Builds the target stage (the last unless `--target`) and the stages
    /// it needs, then commits and tags the image.
    pub fn run(&self) -> Result<Built, BuildError> {
        let df = berth_dockerfile::parse(self.dockerfile, self.file_name)?;
        if let Some(syntax) = &df.directives.syntax {
            self.progress.note(&format!(
                "berth reads Dockerfiles itself: the syntax directive ({syntax}) is noted, no frontend image is fetched"
            ));
        }
        let stages = Stages::new(&df, &self.options.build_args, self.file_name)?;
        let order = stages.needed(self.options.target.as_deref(), self.file_name)?;
        let scratch = self.store.root().join("build");
        std::fs::create_dir_all(&scratch)?;
        let cache = cache::Cache::open(self.store.root())?;
        let exec = instructions::Executor {
            build: self,
            stages: &stages,
            escape: df.directives.escape,
            cache: &cache,
            scratch: &scratch,
            done: std::sync::Mutex::new(HashMap::new()),
        };
        // Stages that do not use each other build at once: a stage's level
        // is one more than the highest of the stages it uses.
        let mut level: HashMap<usize, usize> = HashMap::new();
        for &i in &order {
            let l = stages.stages[i]
                .uses
                .iter()
                .filter_map(|u| level.get(u))
                .max()
                .map_or(0, |m| m + 1);
            level.insert(i, l);
        }
        let levels = level.values().max().map_or(0, |m| m + 1);
        for l in 0..levels {
            let group: Vec<usize> = order.iter().copied().filter(|i| level[i] == l).collect();
            let results: Vec<(usize, Result<instructions::State, BuildError>)> = if group.len() == 1
            {
                vec![(group[0], exec.stage(group[0]))]
            } else {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = group
                        .iter()
                        .map(|&i| {
                            (
                                i,
                                scope.spawn({
                                    let exec = &exec;
                                    move || exec.stage(i)
                                }),
                            )
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|(i, h)| {
                            (i, h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                        })
                        .collect()
                })
            };
            for (i, result) in results {
                let state = result?;
                exec.done.lock().unwrap_or_else(|p| p.into_inner()).insert(i, state);
            }
        }
        let last = *order.last().expect("a target stage");
        let mut state =
            exec.done.lock().unwrap_or_else(|p| p.into_inner()).remove(&last).expect("built");
        if !self.options.labels.is_empty() {
            let config = state.config.config.get_or_insert_with(Default::default);
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(self.options.labels.clone());
        }
        let step = self.progress.step("exporting to image");
        let image = state.finish();
        let id = image.id();
        let tags = self.options.tags.clone();
        let image = berth_oci::Image { tags: tags.clone(), ..image };
        self.store.commit_images(vec![NewImage { image, repo_digests: Vec::new() }])?;
        step.info(&format!("writing image {id} done"));
        for t in &tags {
            step.info(&format!("naming to {t} done"));
        }
        step.done();
        Ok(Built { id, tags })
    }
}

/// Where the build keeps a step's container while it runs.
pub(crate) fn step_dir(scratch: &Path) -> std::io::Result<PathBuf> {
    let mut bytes = [0u8; 8];
    getrandom(&mut bytes)?;
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = scratch.join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}
