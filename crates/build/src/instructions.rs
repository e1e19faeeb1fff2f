//! Each instruction's effect on the stage's image, and its cache key.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use berth_dockerfile::{Args, Ignore, Instruction, Keyword, Stage, Stages, expand, split_words};
use berth_oci::{ContainerConfig, Descriptor, History, ImageConfig, Layer, media_type};
use berth_reference::Digest;
use berth_store::StoreError;

use crate::cache::{Cache, Entry, KeyBuilder};
use crate::copy::{self, CopyRequest, LowerView, SourceRoot, WriteOptions};
use crate::lower::StackView;
use crate::mounts::{self, MountSpec};
use crate::run::{RunOutcome, RunStep};
use crate::{Build, BuildError};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A stage's image so far.
#[derive(Clone)]
pub(crate) struct State {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// Names everything this state came from: the base image and each
    /// step's inputs and result.
    pub key: Digest,
    /// The stage's declared ARGs and their values.
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    created: Option<String>,
}

impl State {
    fn scratch() -> State {
        let config = ImageConfig {
            architecture: host_arch(),
            os: "linux".to_owned(),
            config: Some(ContainerConfig {
                env: Some(vec![DEFAULT_PATH.to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        State {
            config,
            layers: Vec::new(),
            key: KeyBuilder::new(&Digest::sha256_of(b""), "FROM").part("scratch").finish(),
            args: Vec::new(),
            cmd_set: false,
            created: None,
        }
    }

    /// The finished image: its config (created = the last step's time)
    /// and layers.
    pub fn finish(mut self) -> berth_oci::Image {
        if let Some(created) = self.created.take() {
            self.config.created = Some(created);
        }
        let bytes = serde_json::to_vec(&self.config).expect("a config serialises");
        berth_oci::Image { manifest: None, config: bytes, layers: self.layers, tags: Vec::new() }
    }

    fn container(&mut self) -> &mut ContainerConfig {
        self.config.config.get_or_insert_with(Default::default)
    }

    fn env_value(&self, key: &str) -> Option<String> {
        let env = self.config.config.as_ref()?.env.as_ref()?;
        env.iter().rev().find_map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            (k == key).then(|| v.to_owned())
        })
    }

    fn arg_value(&self, key: &str) -> Option<String> {
        self.args.iter().rev().find(|(k, _)| k == key).and_then(|(_, v)| v.clone())
    }

    /// What `$key` means in the instructions that expand: ENV wins over ARG.
    fn lookup(&self, key: &str) -> Option<String> {
        self.env_value(key).or_else(|| self.arg_value(key))
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let env = self.container().env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key) {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()])
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .unwrap_or_else(|| "/".into())
    }
}

pub(crate) struct Executor<'b, 'a> {
    pub build: &'b Build<'a>,
    pub stages: &'b Stages,
    pub escape: char,
    pub cache: &'b Cache,
    pub scratch: &'b Path,
    /// The stages built so far (stages of one level build at once).
    pub done: std::sync::Mutex<HashMap<usize, State>>,
}

/// Where an instruction stands in its stage, for progress and errors.
struct At<'s> {
    stage: &'s Stage,
    line: usize,
    n: usize,
    total: usize,
    label: String,
}

impl Executor<'_, '_> {
    fn err(&self, line: usize, message: impl Into<String>) -> BuildError {
        BuildError::Step { file: self.build.file_name.to_owned(), line, message: message.into() }
    }

    fn now(&self) -> String {
        let secs = self.build.options.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        berth_oci::time::rfc3339_nano(secs * 1_000_000_000)
    }

    fn use_cache(&self, stage: &Stage) -> bool {
        !self.build.options.no_cache
            && !stage.name.as_ref().is_some_and(|n| {
                self.build.options.no_cache_filter.iter().any(|f| f.eq_ignore_ascii_case(n))
            })
    }

    fn built(&self, index: usize) -> Option<State> {
        self.done.lock().unwrap_or_else(|p| p.into_inner()).get(&index).cloned()
    }

    pub fn stage(&self, index: usize) -> Result<State, BuildError> {
        let stage = &self.stages.stages[index];
        let multi = self.stages.stages.len() > 1;
        let label = match (&stage.name, multi) {
            (Some(n), _) => format!("{n} "),
            (None, true) => format!("stage-{index} "),
            (None, false) => String::new(),
        };
        let total = stage.instructions.len() + 1;
        if let Some(p) = &stage.platform {
            let host = format!("linux/{}", host_arch());
            if p != &host {
                return Err(self.err(
                    stage.line,
                    format!("berth builds for the host's platform only ({host}): --platform={p} is not supported"),
                ));
            }
        }
        let step = self.build.progress.step(&format!("[{label}1/{total}] FROM {}", stage.base));
        let mut state = match stage.base_stage {
            Some(s) => self.built(s).expect("stages are built in order"),
            None if stage.base.eq_ignore_ascii_case("scratch") => State::scratch(),
            None => self.base_image(&stage.base, stage.line)?,
        };
        step.done();
        state.args.clear();
        state.cmd_set = false;
        // The base's ONBUILD triggers run first, then are gone.
        let triggers =
            state.config.config.as_mut().and_then(|c| c.on_build.take()).unwrap_or_default();
        let mut at = At { stage, line: stage.line, n: 1, total, label };
        for trigger in triggers {
            let parsed = berth_dockerfile::parse(&trigger, self.build.file_name).map_err(|e| {
                self.err(stage.line, format!("ONBUILD trigger {trigger:?}: {}", e.message))
            })?;
            for ins in &parsed.instructions {
                self.instruction(&mut state, ins, &at)?;
            }
        }
        for (i, ins) in stage.instructions.iter().enumerate() {
            at.n = i + 2;
            at.line = ins.line;
            self.instruction(&mut state, ins, &at)?;
        }
        Ok(state)
    }

    fn base_image(&self, name: &str, line: usize) -> Result<State, BuildError> {
        let store = self.build.store;
        let id = match store.resolve(name) {
            Ok(id) if !self.build.options.pull => id,
            Ok(_) | Err(StoreError::NoSuchImage(_)) => {
                self.build.hooks.pull(name).map_err(|e| {
                    self.err(line, format!("failed to resolve source image {name}: {e}"))
                })?
            }
            Err(e) => return Err(e.into()),
        };
        let record = store.image(&id)?;
        let mut config = ImageConfig::parse(&record.config_bytes).map_err(|e| {
            self.err(line, format!("the image {name} has an unreadable config: {e}"))
        })?;
        // A build's image says what made it, not what made its base.
        for legacy in ["container", "container_config", "docker_version", "comment"] {
            config.extra.remove(legacy);
        }
        config.author = None;
        Ok(State {
            config,
            layers: record.to_image(Vec::new()).layers,
            key: KeyBuilder::new(&Digest::sha256_of(b""), "FROM").part(id.as_str()).finish(),
            args: Vec::new(),
            cmd_set: false,
            created: None,
        })
    }

    fn expand(&self, state: &State, word: &str, line: usize) -> Result<String, BuildError> {
        expand(word, &|k| state.lookup(k), self.escape).map_err(|e| self.err(line, e.to_string()))
    }

    /// The instruction's words, each expanded (exec form: the array).
    fn words(&self, state: &State, ins: &Instruction) -> Result<Vec<String>, BuildError> {
        match &ins.args {
            Args::Exec(v) => v.iter().map(|w| self.expand(state, w, ins.line)).collect(),
            Args::Shell(text) => split_words(text, self.escape)
                .iter()
                .map(|w| self.expand(state, w, ins.line))
                .collect(),
        }
    }

    fn flag<'i>(&self, ins: &'i Instruction, name: &str) -> Option<&'i str> {
        ins.flags.iter().rev().find(|f| f.name == name).map(|f| f.value.as_deref().unwrap_or(""))
    }

    fn check_flags(&self, ins: &Instruction, allowed: &[&str]) -> Result<(), BuildError> {
        for f in &ins.flags {
            if !allowed.contains(&f.name.as_str()) {
                return Err(self.err(ins.line, format!("unknown flag: --{}", f.name)));
            }
        }
        Ok(())
    }

    fn instruction(
        &self,
        state: &mut State,
        ins: &Instruction,
        at: &At<'_>,
    ) -> Result<(), BuildError> {
        let line = ins.line;
        match ins.keyword {
            Keyword::Run => return self.run(state, ins, at),
            Keyword::Copy | Keyword::Add => return self.copy(state, ins, at),
            Keyword::Workdir => return self.workdir(state, ins, at),
            Keyword::From => unreachable!("stages split at FROM"),
            _ => {}
        }
        let shell_text = match &ins.args {
            Args::Shell(t) => t.trim().to_owned(),
            Args::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
        };
        let created_by = match ins.keyword {
            Keyword::Env => {
                let pairs = self.pairs(state, ins, true)?;
                for (k, v) in &pairs {
                    state.set_env(k, v);
                }
                format!("ENV {}", join_pairs(&pairs))
            }
            Keyword::Label => {
                let pairs = self.pairs(state, ins, false)?;
                let labels = state.container().labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in &pairs {
                    labels.insert(k.clone(), v.clone());
                }
                format!("LABEL {}", join_pairs(&pairs))
            }
            Keyword::Arg => {
                let mut shown = Vec::new();
                for word in split_words(&shell_text, self.escape) {
                    let (name, default) = match word.split_once('=') {
                        Some((n, v)) => (n.to_owned(), Some(self.expand(state, v, line)?)),
                        None => (word.clone(), None),
                    };
                    let meta = self.stages.meta_args.iter().rev().find(|(n, _)| *n == name);
                    let value = self
                        .build
                        .options
                        .build_args
                        .get(&name)
                        .cloned()
                        .or(default)
                        .or_else(|| meta.and_then(|(_, v)| v.clone()));
                    shown.push(match &value {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    });
                    state.args.push((name, value));
                }
                format!("ARG {}", shown.join(" "))
            }
            Keyword::Cmd => {
                let cmd = self.command(state, ins);
                state.container().cmd = Some(cmd.clone());
                state.cmd_set = true;
                format!("CMD {}", go_quoted(&cmd))
            }
            Keyword::Entrypoint => {
                let ep = self.command(state, ins);
                let cmd_set = state.cmd_set;
                let c = state.container();
                c.entrypoint = Some(ep.clone());
                if !cmd_set {
                    c.cmd = None;
                }
                format!("ENTRYPOINT {}", go_quoted(&ep))
            }
            Keyword::Expose => {
                let mut ports = Vec::new();
                for word in self.words(state, ins)? {
                    let port = berth_oci::config::exposed_port_key(&word)
                        .ok_or_else(|| self.err(line, format!("invalid containerPort: {word}")))?;
                    ports.push(port);
                }
                let exposed = state.container().exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in &ports {
                    exposed.insert(p.clone(), serde_json::json!({}));
                }
                let shown: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
                format!("EXPOSE map[{}]", shown.join(" "))
            }
            Keyword::Volume => {
                let volumes = self.words(state, ins)?;
                if volumes.iter().any(String::is_empty) || volumes.is_empty() {
                    return Err(self.err(line, "VOLUME specified can not be an empty string"));
                }
                let v = state.container().volumes.get_or_insert_with(BTreeMap::new);
                for vol in &volumes {
                    v.insert(vol.clone(), serde_json::json!({}));
                }
                format!("VOLUME [{}]", volumes.join(" "))
            }
            Keyword::User => {
                let user = self.expand(state, &shell_text, line)?;
                state.container().user = Some(user.clone());
                format!("USER {user}")
            }
            Keyword::Stopsignal => {
                let signal = self.expand(state, &shell_text, line)?;
                state.container().stop_signal = Some(signal.clone());
                format!("STOPSIGNAL {signal}")
            }
            Keyword::Shell => {
                let Args::Exec(shell) = &ins.args else {
                    return Err(self.err(line, "SHELL requires the arguments to be in JSON form"));
                };
                state.container().shell = Some(shell.clone());
                format!("SHELL {}", go_quoted(shell))
            }
            Keyword::Maintainer => {
                state.config.author = Some(shell_text.clone());
                format!("MAINTAINER {shell_text}")
            }
            Keyword::Onbuild => {
                let first = shell_text.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                match first.as_str() {
                    "ONBUILD" => {
                        return Err(
                            self.err(line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
                        );
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(
                            self.err(line, format!("{first} isn't allowed as an ONBUILD trigger"))
                        );
                    }
                    _ => {}
                }
                state.container().on_build.get_or_insert_with(Vec::new).push(shell_text.clone());
                format!("ONBUILD {shell_text}")
            }
            Keyword::Healthcheck => {
                let check = self.healthcheck(ins)?;
                let shown = check.to_string();
                state.container().healthcheck = Some(check);
                format!("HEALTHCHECK {shown}")
            }
            _ => unreachable!(),
        };
        // A config step has a key too, so a rebuild keeps its `created`.
        let key = KeyBuilder::new(&state.key, "config").part(&created_by).finish();
        self.commit_step(state, key, created_by, at.stage)
    }

    /// Records a step's result: its history entry, its layer, the next key.
    fn commit_step(
        &self,
        state: &mut State,
        key: Digest,
        created_by: String,
        stage: &Stage,
    ) -> Result<(), BuildError> {
        let entry = match self.cache.get(&key, |_| true) {
            Some(e) if self.use_cache(stage) && e.layer.is_none() => e,
            _ => {
                let e = Entry { created: self.now(), layer: None };
                self.cache.put(&key, &e)?;
                e
            }
        };
        self.apply(state, key, created_by, &entry);
        Ok(())
    }

    fn apply(&self, state: &mut State, key: Digest, created_by: String, entry: &Entry) {
        let empty_layer = entry.layer.is_none();
        if let Some((diff_id, size)) = &entry.layer {
            state.config.rootfs.diff_ids.push(diff_id.clone());
            state.layers.push(Layer {
                diff_id: diff_id.clone(),
                blobs: vec![Descriptor::new(media_type::OCI_LAYER, diff_id.clone(), *size)],
                uncompressed_size: Some(*size),
            });
        }
        let shown = if empty_layer { created_by } else { format!("{created_by} # buildkit") };
        state.config.history.push(History {
            created: Some(entry.created.clone()),
            created_by: Some(shown),
            author: None,
            comment: Some("buildkit.dockerfile.v0".to_owned()),
            empty_layer,
        });
        state.created = Some(entry.created.clone());
        let result = entry.layer.as_ref().map_or("none".to_owned(), |(d, _)| d.to_string());
        state.key = KeyBuilder::new(&key, "result").part(&result).finish();
    }

    /// A step that makes a layer: reuse the cache's entry for `key`, or
    /// run `make` and record what it made.
    fn layer_step(
        &self,
        state: &mut State,
        key: Digest,
        created_by: String,
        at: &At<'_>,
        title: &str,
        make: impl FnOnce(&crate::progress::Step<'_>) -> Result<Option<(Digest, u64)>, BuildError>,
    ) -> Result<(), BuildError> {
        let step =
            self.build.progress.step(&format!("[{}{}/{}] {title}", at.label, at.n, at.total));
        let hit = self
            .use_cache(at.stage)
            .then(|| self.cache.get(&key, |d| self.build.store.has_blob(d)));
        if let Some(Some(entry)) = hit {
            {
                step.cached();
                self.apply(state, key, created_by, &entry);
                return Ok(());
            }
        }
        match make(&step) {
            Ok(layer) => {
                step.done();
                let entry = Entry { created: self.now(), layer };
                self.cache.put(&key, &entry)?;
                self.apply(state, key, created_by, &entry);
                Ok(())
            }
            Err(e) => {
                step.failed(&e.to_string());
                Err(e)
            }
        }
    }

    fn pairs(
        &self,
        state: &State,
        ins: &Instruction,
        legacy: bool,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let name = if legacy { "ENV" } else { "LABEL" };
        let Args::Shell(text) = &ins.args else {
            return Err(self.err(ins.line, format!("{name} takes key=value pairs")));
        };
        let words = split_words(text, self.escape);
        if words.is_empty() {
            return Err(self.err(ins.line, format!("{name} requires at least one argument")));
        }
        if legacy && !words[0].contains('=') {
            // `ENV key value with spaces`
            let (key, value) =
                text.trim().split_once(char::is_whitespace).unwrap_or((text.trim(), ""));
            if value.trim().is_empty() {
                return Err(self.err(ins.line, "ENV must have two arguments"));
            }
            return Ok(vec![(key.to_owned(), self.expand(state, value.trim(), ins.line)?)]);
        }
        let mut out = Vec::new();
        for word in words {
            let Some((k, v)) = word.split_once('=') else {
                return Err(self.err(
                    ins.line,
                    format!("{name} must have two arguments: {word:?} has no \"=\""),
                ));
            };
            let k = self.expand(state, k, ins.line)?;
            if k.is_empty() {
                return Err(self.err(ins.line, format!("{name} names can not be blank")));
            }
            out.push((k, self.expand(state, v, ins.line)?));
        }
        Ok(out)
    }

    /// CMD/ENTRYPOINT: the exec form as written, the shell form wrapped in
    /// the current SHELL (neither is expanded: the shell does that).
    fn command(&self, state: &State, ins: &Instruction) -> Vec<String> {
        match &ins.args {
            Args::Exec(v) => v.clone(),
            Args::Shell(t) => {
                let mut c = state.shell();
                c.push(t.trim().to_owned());
                c
            }
        }
    }

    fn healthcheck(&self, ins: &Instruction) -> Result<serde_json::Value, BuildError> {
        self.check_flags(
            ins,
            &["interval", "timeout", "start-period", "start-interval", "retries"],
        )?;
        let text = match &ins.args {
            Args::Shell(t) => t.trim().to_owned(),
            Args::Exec(_) => String::new(),
        };
        if text.eq_ignore_ascii_case("NONE") {
            if !ins.flags.is_empty() {
                return Err(self.err(ins.line, "HEALTHCHECK NONE takes no flags"));
            }
            return Ok(serde_json::json!({"Test": ["NONE"]}));
        }
        let test: Vec<String> = match &ins.args {
            Args::Exec(v) => match v.first().map(|s| s.to_ascii_uppercase()).as_deref() {
                Some("CMD") => {
                    let mut t = vec!["CMD".to_owned()];
                    t.extend(v[1..].iter().cloned());
                    t
                }
                _ => return Err(self.err(ins.line, "HEALTHCHECK requires CMD or NONE")),
            },
            Args::Shell(t) => {
                let t = t.trim();
                let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
                if !word.eq_ignore_ascii_case("CMD") {
                    return Err(self
                        .err(ins.line, format!("Unknown type {word:?} in HEALTHCHECK (try CMD)")));
                }
                let rest = rest.trim();
                if rest.starts_with('[') {
                    let v: Vec<String> = serde_json::from_str(rest)
                        .map_err(|_| self.err(ins.line, "HEALTHCHECK CMD: invalid JSON array"))?;
                    std::iter::once("CMD".to_owned()).chain(v).collect()
                } else {
                    vec!["CMD-SHELL".to_owned(), rest.to_owned()]
                }
            }
        };
        let mut check = serde_json::json!({"Test": test});
        for (flag, field) in [
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ] {
            if let Some(v) = self.flag(ins, flag) {
                let ns = parse_duration(v).ok_or_else(|| {
                    self.err(ins.line, format!("time: invalid duration {v:?} for --{flag}"))
                })?;
                check[field] = serde_json::json!(ns);
            }
        }
        if let Some(r) = self.flag(ins, "retries") {
            let n: u32 = r
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| self.err(ins.line, "--retries must be at least 1"))?;
            check["Retries"] = serde_json::json!(n);
        }
        Ok(check)
    }

    fn run(&self, state: &mut State, ins: &Instruction, at: &At<'_>) -> Result<(), BuildError> {
        self.check_flags(ins, &["network", "mount", "security"])?;
        let mut specs = Vec::new();
        for f in ins.flags.iter().filter(|f| f.name == "mount") {
            let value = self.expand(state, f.value.as_deref().unwrap_or(""), ins.line)?;
            specs.push(
                MountSpec::parse(&value)
                    .map_err(|e| self.err(ins.line, format!("--mount={value}: {e}")))?,
            );
        }
        if self.flag(ins, "security").is_some_and(|s| s != "sandbox") {
            return Err(self.err(ins.line, "RUN --security=insecure is not supported"));
        }
        let network = match self.flag(ins, "network") {
            None | Some("default") => {
                self.build.options.network.unwrap_or(berth_container::Network::Host)
            }
            Some("none") => berth_container::Network::Private,
            Some("host") => berth_container::Network::Host,
            Some(other) => {
                return Err(self.err(ins.line, format!("unsupported network mode: {other}")));
            }
        };
        let mut stdin = None;
        let args = match &ins.args {
            Args::Exec(v) => v.clone(),
            Args::Shell(text) => {
                let mut c = state.shell();
                let t = text.trim();
                match ins.heredocs.first() {
                    // `RUN <<EOF` alone: the heredoc is the script.
                    Some(h) if t.starts_with("<<") && t.split_whitespace().count() == 1 => {
                        c.push(h.content.clone());
                    }
                    Some(h) => {
                        stdin = Some(h.content.clone());
                        c.push(t.to_owned());
                    }
                    None => c.push(t.to_owned()),
                }
                c
            }
        };
        if args.is_empty() {
            return Err(self.err(ins.line, "RUN requires at least one argument"));
        }
        // The build args the command sees (not kept in the image).
        let arg_env: Vec<String> = state
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .filter(|kv| state.env_value(kv.split_once('=').map_or("", |(k, _)| k)).is_none())
            .collect();
        let shown_args = if arg_env.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", arg_env.len(), arg_env.join(" "))
        };
        let created_by = format!("RUN {shown_args}{}", args.join(" "));
        let config = state.config.config.clone().unwrap_or_default();
        let key = KeyBuilder::new(&state.key, "RUN")
            .part(&serde_json::to_string(&args).unwrap_or_default())
            .part(&arg_env.join("\n"))
            .part(&serde_json::to_string(&config.env).unwrap_or_default())
            .part(config.user.as_deref().unwrap_or(""))
            .part(config.working_dir.as_deref().unwrap_or(""))
            .part(&format!("{network:?}"))
            .part(stdin.as_deref().unwrap_or(""))
            .part(&self.mounts_key(&specs, ins.line)?)
            .finish();
        let title = format!(
            "RUN {}",
            match &ins.args {
                Args::Shell(t) => t.trim().to_owned(),
                Args::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
            }
        );
        let layers = state.layers.clone();
        let command_text = args.join(" ");
        self.layer_step(state, key, created_by, at, &title, |step| {
            let runtime = berth_container::find_runtime(
                self.build.options.runtime.as_deref().unwrap_or("runc"),
            )
            .map_err(|e| self.err(ins.line, e.to_string()))?;
            let dir = crate::step_dir(self.scratch)?;
            let mut guards = Vec::new();
            let prepared = self.prepare_mounts(&specs, &layers, &dir, &mut guards, ins.line);
            let (mounts, prune) = match prepared {
                Ok(m) => m,
                Err(e) => {
                    release(&guards);
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
            let run = RunStep {
                args: args.clone(),
                extra_env: arg_env.clone(),
                config: &config,
                layers: &layers,
                network,
                runtime: &runtime,
                stdin: stdin.clone(),
                mounts,
                prune,
            };
            let outcome = crate::run::run(self.build.store, &dir, &run, step);
            release(&guards);
            match outcome {
                Ok(RunOutcome::Changed(layer)) => Ok(layer),
                Ok(RunOutcome::Failed { code }) => Err(BuildError::RunFailed {
                    file: self.build.file_name.to_owned(),
                    line: ins.line,
                    command: command_text.clone(),
                    code,
                }),
                Err(e) => Err(self.err(ins.line, e.to_string())),
            }
        })
    }

    /// What the RUN's mounts add to its key: what a bind shows (the
    /// context files' content, another stage's layers), and for cache,
    /// tmpfs and secret mounts only their spec (their content is not the
    /// step's input, as BuildKit has it).
    fn mounts_key(&self, specs: &[MountSpec], line: usize) -> Result<String, BuildError> {
        let mut key = String::new();
        for spec in specs {
            key.push_str(&format!("{spec:?}\n"));
            if let MountSpec::Bind { source, from, .. } = spec {
                match from {
                    Some(f) => {
                        for l in self.layers_of_source(f, line)? {
                            key.push_str(&format!("{}\n", l.diff_id));
                        }
                    }
                    None => key.push_str(&self.context_digest(source, line)?.to_string()),
                }
            }
        }
        Ok(key)
    }

    /// A digest of what `source` in the context holds (paths, modes and
    /// contents; unchanged files' hashes from the stat cache).
    fn context_digest(&self, source: &str, line: usize) -> Result<Digest, BuildError> {
        let ctx = &self.build.context;
        let rel = Path::new(source.trim_start_matches('/'));
        let resolved = berth_context::resolve_in_scope(ctx.root, rel)
            .map_err(|e| self.err(line, format!("--mount source: {e}")))?;
        let path = ctx.root.join(&resolved);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| self.err(line, format!("--mount source {source}: {e}")))?;
        let hash = |rel: &Path, meta: &std::fs::Metadata| -> Result<String, BuildError> {
            let digest = match ctx.stat_cache {
                Some(c) => c.hash(ctx.root, rel, meta)?,
                None => {
                    let mut f = std::fs::File::open(ctx.root.join(rel))?;
                    let mut h = berth_reference::Hasher::new(berth_reference::Algorithm::Sha256);
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = std::io::Read::read(&mut f, &mut buf)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                    h.finish()
                }
            };
            Ok(digest.to_string())
        };
        use std::os::unix::fs::MetadataExt;
        let mut lines = Vec::new();
        if meta.is_file() {
            lines.push(hash(&resolved, &meta)?);
        } else {
            let entries = berth_context::walk(ctx.root, &resolved, ctx.ignore)
                .map_err(|e| self.err(line, e.to_string()))?;
            for e in entries {
                let content =
                    if e.metadata.is_file() { hash(&e.path, &e.metadata)? } else { String::new() };
                lines.push(format!(
                    "{} {:o} {:?} {content}",
                    e.path.display(),
                    e.metadata.mode(),
                    e.link_target
                ));
            }
        }
        Ok(Digest::sha256_of(lines.join("\n").as_bytes()))
    }

    /// The runtime mounts for `specs`, and the mount points the RUN's layer
    /// must not keep (those the image lacks, deepest first). Read-only
    /// mounts of other stages are left in `guards` for the caller to undo.
    fn prepare_mounts(
        &self,
        specs: &[MountSpec],
        layers: &[Layer],
        dir: &Path,
        guards: &mut Vec<std::path::PathBuf>,
        line: usize,
    ) -> Result<(Vec<serde_json::Value>, Vec<String>), BuildError> {
        let mut mounts = Vec::new();
        let mut prune = Vec::new();
        let view = StackView::new(self.build.store, layers);
        for (n, spec) in specs.iter().enumerate() {
            let target = normalise(spec.target());
            match spec {
                MountSpec::Bind { source, from, rw, .. } => {
                    let root = match from {
                        Some(f) => {
                            let src_layers = self.layers_of_source(f, line)?;
                            let mount_dir = dir.join(format!("from-{n}"));
                            std::fs::create_dir_all(&mount_dir)?;
                            let root = self.mount_readonly(&mount_dir, &src_layers, line)?;
                            guards.push(mount_dir);
                            berth_container::resolve_in_root(&root, source).ok_or_else(|| {
                                self.err(
                                    line,
                                    format!("--mount source {source:?} not found in {f}"),
                                )
                            })?
                        }
                        None => {
                            let rel = Path::new(source.trim_start_matches('/'));
                            let resolved =
                                berth_context::resolve_in_scope(self.build.context.root, rel)
                                    .map_err(|e| self.err(line, format!("--mount source: {e}")))?;
                            self.build.context.root.join(resolved)
                        }
                    };
                    mounts.push(mounts::bind(&root, &target, *rw));
                }
                MountSpec::Cache { id, mode, uid, gid, .. } => {
                    let cache = mounts::cache_dir(self.build.store.root(), id, *mode, *uid, *gid)?;
                    mounts.push(mounts::bind(&cache, &target, true));
                }
                MountSpec::Tmpfs { size, .. } => mounts.push(mounts::tmpfs(&target, *size)),
                MountSpec::Secret { id, required, mode, uid, gid, .. } => {
                    let Some(source) = self.build.options.secrets.get(id) else {
                        if *required {
                            return Err(self.err(
                                line,
                                format!(
                                    "secret {id} not found: give it with --secret id={id},src=FILE"
                                ),
                            ));
                        }
                        continue;
                    };
                    // A private copy carries the mode and owner asked for.
                    let copy = dir.join(format!("secret-{n}"));
                    std::fs::copy(source, &copy).map_err(|e| {
                        self.err(line, format!("secret {id}: {}: {e}", source.display()))
                    })?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(*mode))?;
                    std::os::unix::fs::chown(&copy, Some(*uid), Some(*gid))?;
                    mounts.push(mounts::bind(&copy, &target, false));
                }
            }
            // The mount point and the parents the runtime makes for it.
            let mut path = target.trim_start_matches('/').to_owned();
            while !path.is_empty() && view.kind(&path).is_none() {
                if !prune.contains(&path) {
                    prune.push(path.clone());
                }
                path = path.rsplit_once('/').map_or(String::new(), |(p, _)| p.to_owned());
            }
        }
        if let Some(e) = view.error() {
            return Err(e.into());
        }
        prune.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Ok((mounts, prune))
    }

    fn workdir(&self, state: &mut State, ins: &Instruction, at: &At<'_>) -> Result<(), BuildError> {
        let Args::Shell(text) = &ins.args else {
            return Err(self.err(ins.line, "WORKDIR takes a path"));
        };
        let dir = self.expand(state, text.trim(), ins.line)?;
        if dir.is_empty() {
            return Err(self.err(ins.line, "WORKDIR requires exactly one argument"));
        }
        let path = if dir.starts_with('/') {
            dir
        } else {
            format!("{}/{dir}", state.workdir().trim_end_matches('/'))
        };
        let path = normalise(&path);
        state.container().working_dir = Some(path.clone());
        let created_by = format!("WORKDIR {path}");
        let exists = {
            let view = StackView::new(self.build.store, &state.layers);
            let kind = view.kind(&path);
            if let Some(e) = view.error() {
                return Err(e.into());
            }
            kind == Some(true)
        };
        if exists {
            let key = KeyBuilder::new(&state.key, "config").part(&created_by).finish();
            return self.commit_step(state, key, created_by, at.stage);
        }
        // A directory the image lacks is made, as `mkdir -p` would.
        let key = KeyBuilder::new(&state.key, "WORKDIR").part(&path).finish();
        let epoch = self.build.options.source_date_epoch;
        let store = self.build.store;
        let layers = state.layers.clone();
        self.layer_step(state, key, created_by, at, &format!("WORKDIR {path}"), |_| {
            let view = StackView::new(store, &layers);
            let mut items = Vec::new();
            let mut so_far = String::new();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                so_far =
                    if so_far.is_empty() { part.to_owned() } else { format!("{so_far}/{part}") };
                if view.kind(&so_far).is_none() {
                    items.push(copy::Item {
                        dest: so_far.clone(),
                        source: copy::ItemSource::NewDir,
                    });
                }
            }
            let opts =
                WriteOptions { owner: None, chmod: None, new_dir_mtime: new_dir_time(epoch) };
            let mut blob = store.create_blob()?;
            copy::write_layer(&items, &[], &opts, &mut blob)
                .map_err(|e| self.err(ins.line, e.to_string()))?;
            Ok(Some(blob.commit()?))
        })
    }

    fn copy(&self, state: &mut State, ins: &Instruction, at: &At<'_>) -> Result<(), BuildError> {
        let add = ins.keyword == Keyword::Add;
        let allowed: &[&str] = if add {
            &["chown", "chmod", "link", "exclude", "checksum", "keep-git-dir"]
        } else {
            &["from", "chown", "chmod", "link", "exclude", "parents"]
        };
        self.check_flags(ins, allowed)?;
        let parents = self.flag(ins, "parents").is_some_and(|v| v != "false");
        let name = if add { "ADD" } else { "COPY" };
        let mut words = self.words(state, ins)?;
        if words.len() < 2 {
            return Err(self.err(ins.line, format!("{name} requires at least two arguments, but only one was provided. Destination could not be determined")));
        }
        let dest_word = words.pop().expect("two words");
        let dest = if dest_word.starts_with('/') {
            dest_word.clone()
        } else {
            let wd = state.workdir();
            format!("{}/{dest_word}", wd.trim_end_matches('/'))
        };
        let is_url = |w: &String| w.starts_with("http://") || w.starts_with("https://");
        let urls = add && words.iter().any(is_url);
        let git = add && words.len() == 1 && berth_context::is_git_url(&words[0]);
        if add && !git && words.iter().any(|w| berth_context::is_git_url(w)) {
            return Err(self.err(ins.line, "ADD takes one git repository at a time"));
        }
        if self.flag(ins, "keep-git-dir").is_some_and(|v| v != "false") {
            return Err(self.err(
                ins.line,
                "ADD --keep-git-dir is not supported by berth: the checkout is copied without .git",
            ));
        }
        let urls = urls && !git;
        if urls && !words.iter().all(is_url) {
            return Err(self
                .err(ins.line, "ADD takes either URLs or files of the context, not both at once"));
        }
        let checksum = self.flag(ins, "checksum").map(str::to_owned);
        if checksum.is_some() && !(urls && words.len() == 1) {
            return Err(self.err(ins.line, "ADD --checksum takes exactly one URL source"));
        }
        let owner = match self.flag(ins, "chown") {
            Some(spec) => {
                let spec = self.expand(state, spec, ins.line)?;
                Some(self.owner(state, &spec, ins.line)?)
            }
            None => None,
        };
        let chmod_flag = match self.flag(ins, "chmod") {
            Some(m) => Some(copy::Chmod::parse(m).map_err(|e| self.err(ins.line, e))?),
            None => None,
        };
        // A downloaded file is 0600 unless --chmod says otherwise (docker's rule).
        let chmod = if urls { chmod_flag.or(Some(copy::Chmod::Octal(0o600))) } else { chmod_flag };
        let exclude = ins
            .flags
            .iter()
            .filter(|f| f.name == "exclude")
            .filter_map(|f| f.value.clone())
            .collect::<Vec<_>>();
        let exclude = if exclude.is_empty() {
            None
        } else {
            Some(
                Ignore::parse(&exclude.join("\n"))
                    .map_err(|e| self.err(ins.line, e.to_string()))?,
            )
        };
        let from = self.flag(ins, "from").map(str::to_owned);
        let mut shown = vec![name.to_owned()];
        if let Some(f) = &from {
            shown.push(format!("--from={f}"));
        }
        shown.extend(words.iter().cloned());
        shown.push(dest_word.clone());
        let created_by = shown.join(" ");
        // Heredoc sources (`COPY <<EOF /dest`) become files of their own.
        let heredoc_dir;
        let empty_ignore = Ignore::parse("").expect("empty");
        let mut mounted: Option<std::path::PathBuf> = None;
        let mut cleanup: Option<std::path::PathBuf> = None;
        let source_root = if !ins.heredocs.is_empty() && words.iter().all(|w| w.starts_with("<<")) {
            heredoc_dir = crate::step_dir(self.scratch)?;
            let mut names = Vec::new();
            for h in &ins.heredocs {
                let content = if h.expand {
                    self.expand(state, &h.content, ins.line)?
                } else {
                    h.content.clone()
                };
                std::fs::write(heredoc_dir.join(&h.name), content)?;
                names.push(h.name.clone());
            }
            words = names;
            SourceRoot::Context { root: &heredoc_dir, ignore: &empty_ignore }
        } else if git {
            let dir = crate::step_dir(self.scratch)?;
            let root = berth_context::git_checkout(&words[0], &dir).map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                self.err(ins.line, e.to_string())
            })?;
            cleanup = Some(dir);
            heredoc_dir = root;
            words = vec![".".to_owned()];
            SourceRoot::Context { root: &heredoc_dir, ignore: &empty_ignore }
        } else if urls {
            heredoc_dir = crate::step_dir(self.scratch)?;
            let mut names = Vec::new();
            for url in &words {
                names.push(
                    self.download(url, &heredoc_dir, checksum.as_deref(), ins.line).inspect_err(
                        |_| {
                            let _ = std::fs::remove_dir_all(&heredoc_dir);
                        },
                    )?,
                );
            }
            words = names;
            SourceRoot::Context { root: &heredoc_dir, ignore: &empty_ignore }
        } else if let Some(f) = &from {
            let layers = self.layers_of_source(f, ins.line)?;
            let dir = crate::step_dir(self.scratch)?;
            mounted = Some(dir.clone());
            let root = self.mount_readonly(&dir, &layers, ins.line)?;
            heredoc_dir = root;
            SourceRoot::Rootfs(&heredoc_dir)
        } else {
            heredoc_dir = std::path::PathBuf::new();
            SourceRoot::Context { root: self.build.context.root, ignore: self.build.context.ignore }
        };
        let result = self.copy_from(
            state,
            ins,
            at,
            &source_root,
            &words,
            &dest,
            owner,
            chmod,
            exclude.as_ref(),
            (add, parents),
            created_by,
            name,
        );
        if let Some(dir) = cleanup {
            let _ = std::fs::remove_dir_all(&dir);
        } else if let Some(dir) = mounted {
            berth_container::unmount(&dir.join("rootfs"));
            let _ = std::fs::remove_dir_all(&dir);
        } else if !heredoc_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&heredoc_dir);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_from(
        &self,
        state: &mut State,
        ins: &Instruction,
        at: &At<'_>,
        source_root: &SourceRoot<'_>,
        words: &[String],
        dest: &str,
        owner: Option<(u32, u32)>,
        chmod: Option<copy::Chmod>,
        exclude: Option<&Ignore>,
        (add, parents): (bool, bool),
        created_by: String,
        name: &str,
    ) -> Result<(), BuildError> {
        let req =
            CopyRequest { sources: words, dest, owner, extract_archives: add, exclude, parents };
        let items = {
            let view = StackView::new(self.build.store, &state.layers);
            let items = copy::select(&req, source_root, &view)
                .map_err(|e| self.err(ins.line, format!("{name} failed: {e}")))?;
            if let Some(e) = view.error() {
                return Err(e.into());
            }
            items
        };
        let opts = WriteOptions {
            owner,
            chmod,
            new_dir_mtime: new_dir_time(self.build.options.source_date_epoch),
        };
        let step =
            self.build.progress.step(&format!("[{}{}/{}] {created_by}", at.label, at.n, at.total));
        let key_of = |digests: &[Option<Digest>]| {
            let mut key = KeyBuilder::new(&state.key, name);
            key.part(dest).part(&format!("{owner:?} {:?}", opts.chmod));
            for (item, digest) in items.iter().zip(digests) {
                key.part(&copy::describe(item, &opts, digest.as_ref()));
            }
            key.finish()
        };
        let use_cache = self.use_cache(at.stage);
        let cached = |key: &Digest| {
            if use_cache { self.cache.get(key, |d| self.build.store.has_blob(d)) } else { None }
        };
        // Files of the context whose stat shows them unchanged since they
        // were last hashed need not be read to find the key.
        let stat = match source_root {
            SourceRoot::Context { root, .. } if *root == self.build.context.root => {
                self.build.context.stat_cache.map(|c| (c, *root))
            }
            _ => None,
        };
        let mut known_digests: Vec<Option<Digest>> = Vec::new();
        if let Some((stat, root)) = stat {
            let known: Vec<Option<Option<Digest>>> = items
                .iter()
                .map(|item| match &item.source {
                    copy::ItemSource::Path(p, meta) | copy::ItemSource::Archive(p, meta)
                        if copy::has_content(item) =>
                    {
                        let rel = p.strip_prefix(root).ok()?;
                        stat.lookup(root, rel, meta).map(Some)
                    }
                    _ => Some(None),
                })
                .collect();
            if known.iter().all(Option::is_some) {
                let digests: Vec<Option<Digest>> =
                    known.iter().cloned().map(Option::flatten).collect();
                let key = key_of(&digests);
                if let Some(entry) = cached(&key) {
                    step.cached();
                    self.apply(state, key, created_by, &entry);
                    return Ok(());
                }
            }
            // What is known need not be hashed again while it is written.
            known_digests = known.into_iter().map(Option::flatten).collect();
        }
        // The layer is written while its files are hashed (one read of
        // each); the key follows from those hashes.
        let started = std::time::SystemTime::now();
        let mut blob = self.build.store.create_blob()?;
        let digests = copy::write_layer(&items, &known_digests, &opts, &mut blob)
            .map_err(|e| self.err(ins.line, format!("{name} failed: {e}")))?;
        if let Some((stat, root)) = stat {
            for (item, digest) in items.iter().zip(&digests) {
                if let (copy::ItemSource::Path(p, meta), Some(d)) = (&item.source, digest)
                    && let Ok(rel) = p.strip_prefix(root)
                {
                    stat.record(root, rel, meta, d, started);
                }
            }
        }
        let key = key_of(&digests);
        if let Some(entry) = cached(&key) {
            drop(blob);
            step.cached();
            self.apply(state, key, created_by, &entry);
            return Ok(());
        }
        let layer = blob.commit()?;
        step.done();
        let entry = Entry { created: self.now(), layer: Some(layer) };
        self.cache.put(&key, &entry)?;
        self.apply(state, key, created_by, &entry);
        Ok(())
    }

    /// `ADD URL`: the file fetched into `dir`, named as the URL's last path
    /// component, its mtime the server's `Last-Modified`, checked against
    /// `--checksum`. Returns the file's name.
    fn download(
        &self,
        url: &str,
        dir: &Path,
        checksum: Option<&str>,
        line: usize,
    ) -> Result<String, BuildError> {
        let fetched = berth_context::fetch_url(url).map_err(|e| self.err(line, e.to_string()))?;
        let path_part = url.split(['?', '#']).next().unwrap_or(url);
        let name = path_part
            .split_once("://")
            .map_or(path_part, |(_, rest)| rest)
            .split_once('/')
            .map_or("", |(_, p)| p)
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .unwrap_or("__unnamed__")
            .to_owned();
        let target = dir.join(&name);
        let mut out = std::fs::File::create(&target)?;
        let mut body = fetched.file;
        let mut hashing =
            berth_reference::HashingReader::new(&mut body, berth_reference::Algorithm::Sha256);
        std::io::copy(&mut hashing, &mut out)?;
        let (digest, _) = hashing.finish();
        if let Some(want) = checksum {
            let want = Digest::parse(want)
                .map_err(|e| self.err(line, format!("invalid checksum {want:?}: {e}")))?;
            if want != digest {
                return Err(self.err(line, format!("digest mismatch {digest}: expected {want}")));
            }
        }
        if let Some(secs) = fetched.last_modified {
            let times = [
                libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: 0 },
                libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: 0 },
            ];
            let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
                .map_err(std::io::Error::other)?;
            // SAFETY: a valid path and two timespecs for the call's duration.
            unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
        }
        Ok(name)
    }

    /// The layers `--from` names: a stage built before, or an image.
    fn layers_of_source(&self, from: &str, line: usize) -> Result<Vec<Layer>, BuildError> {
        let by_name = self
            .stages
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(&from.to_ascii_lowercase()));
        let index = by_name.map(|s| s.index).or_else(|| from.parse::<usize>().ok());
        if let Some(i) = index {
            if let Some(state) = self.built(i) {
                return Ok(state.layers);
            }
            return Err(self.err(line, format!("stage {from} is not built before this one")));
        }
        Ok(self.base_image(from, line)?.layers)
    }

    /// The image of `layers`, read-only, under `dir/rootfs`.
    fn mount_readonly(
        &self,
        dir: &Path,
        layers: &[Layer],
        line: usize,
    ) -> Result<std::path::PathBuf, BuildError> {
        let store = self.build.store;
        let snapshots =
            berth_container::snapshots_of(store).map_err(|e| self.err(line, e.to_string()))?;
        let lowers = berth_container::layer_dirs(store, &snapshots, layers, &Default::default())
            .map_err(|e| self.err(line, e.to_string()))?;
        match lowers.len() {
            0 => {
                let empty = dir.join("empty");
                std::fs::create_dir_all(&empty)?;
                Ok(empty)
            }
            1 => Ok(lowers[0].clone()),
            _ => {
                let rootfs = dir.join("rootfs");
                std::fs::create_dir_all(&rootfs)?;
                berth_container::mount_lowers(&rootfs, &lowers).map_err(|e| {
                    self.err(line, format!("mounting the --from image (overlay): {e} (needs root)"))
                })?;
                Ok(rootfs)
            }
        }
    }

    /// `--chown=user[:group]`, names looked up in the image's own
    /// `/etc/passwd` and `/etc/group`.
    fn owner(&self, state: &State, spec: &str, line: usize) -> Result<(u32, u32), BuildError> {
        let (user, group) = spec.split_once(':').map_or((spec, None), |(u, g)| (u, Some(g)));
        let read = |path: &str| -> Result<String, BuildError> {
            Ok(crate::lower::read_file(self.build.store, &state.layers, path)?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default())
        };
        let lookup = |table: &str, name: &str, what: &str| -> Result<u32, BuildError> {
            if let Ok(n) = name.parse::<u32>() {
                return Ok(n);
            }
            let text = read(table)?;
            text.lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 2 && f[0] == name).then(|| f[2].parse().ok()).flatten()
                })
                .ok_or_else(|| {
                    self.err(
                        line,
                        format!("unable to find {what} {name}: no matching entries in {what} file"),
                    )
                })
        };
        let uid = lookup("/etc/passwd", user, "user")?;
        let gid = match group {
            Some(g) => lookup("/etc/group", g, "group")?,
            None if user.parse::<u32>().is_ok() => uid,
            None => {
                let text = read("/etc/passwd")?;
                text.lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() > 3 && f[0] == user).then(|| f[3].parse().ok()).flatten()
                    })
                    .unwrap_or(uid)
            }
        };
        Ok((uid, gid))
    }
}

/// Undoes the read-only mounts a step made.
fn release(guards: &[std::path::PathBuf]) {
    for g in guards {
        berth_container::unmount(&g.join("rootfs"));
    }
}

fn new_dir_time(epoch: Option<i64>) -> u64 {
    epoch.map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        },
        |e| e.max(0) as u64,
    )
}

fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn join_pairs(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// A string list as Go's `%q` prints one: `["/bin/sh" "-c" "x"]`.
fn go_quoted(items: &[String]) -> String {
    let q: Vec<String> =
        items.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    format!("[{}]", q.join(" "))
}

/// Go's durations as HEALTHCHECK takes them (`30s`, `1m30s`, `500ms`), in ns.
fn parse_duration(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    Some(total as i64)
}

/// The host's architecture in OCI's names (`amd64`, `arm64`).
pub(crate) fn host_arch() -> String {
    berth_oci::Platform::host().architecture
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_docker_reads_them() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(go_quoted(&["sh".into(), "-c".into()]), r#"["sh" "-c"]"#);
        assert_eq!(normalise("/a/./b/../c/"), "/a/c");
    }
}
