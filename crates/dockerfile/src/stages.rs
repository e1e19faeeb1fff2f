//! Build stages: what each `FROM` starts, what each stage needs from the
//! others (`FROM <stage>`, `COPY --from`, `RUN --mount=from=`), and which
//! stages a target needs, in an order that builds each after what it uses.

use std::collections::HashMap;

use crate::{Args, Dockerfile, Instruction, Keyword, ParseError, expand};

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, 0-based (what `--from=0` names).
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// What it starts from, meta-ARGs expanded: an image reference,
    /// `scratch`, or another stage ([`Stage::base_stage`]).
    pub base: String,
    pub base_stage: Option<usize>,
    /// `--platform`, expanded.
    pub platform: Option<String>,
    /// The line of its `FROM`.
    pub line: usize,
    pub instructions: Vec<Instruction>,
    /// Stages it uses, by index (its base stage included).
    pub uses: Vec<usize>,
}

/// The stages of a Dockerfile and the ARGs declared before the first
/// `FROM` (usable in `FROM` lines), with their values after `--build-arg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    pub meta_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
}

impl Stages {
    /// Splits `df` into stages; `build_args` override ARG defaults.
    pub fn new(
        df: &Dockerfile,
        build_args: &HashMap<String, String>,
        file: &str,
    ) -> Result<Stages, ParseError> {
        let err =
            |line: usize, message: String| ParseError { file: file.to_owned(), line, message };
        let escape = df.directives.escape;
        let mut meta_args: Vec<(String, Option<String>)> = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for ins in &df.instructions {
            match ins.keyword {
                Keyword::From => {
                    let Args::Shell(text) = &ins.args else {
                        return Err(err(ins.line, "FROM takes an image, not a JSON array".into()));
                    };
                    let lookup = |k: &str| {
                        meta_args.iter().rev().find(|(n, _)| n == k).and_then(|(_, v)| v.clone())
                    };
                    let words: Vec<&str> = text.split_whitespace().collect();
                    let (image, name) = match words.as_slice() {
                        [image] => (*image, None),
                        [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                            (*image, Some(*name))
                        }
                        _ => {
                            return Err(err(
                                ins.line,
                                "FROM requires either one or three arguments".into(),
                            ));
                        }
                    };
                    let base =
                        expand(image, &lookup, escape).map_err(|e| err(ins.line, e.to_string()))?;
                    if base.is_empty() {
                        return Err(err(
                            ins.line,
                            format!("base name ({image}) should not be blank"),
                        ));
                    }
                    let platform = ins
                        .flags
                        .iter()
                        .find(|f| f.name == "platform")
                        .and_then(|f| f.value.as_deref())
                        .map(|p| expand(p, &lookup, escape))
                        .transpose()
                        .map_err(|e| err(ins.line, e.to_string()))?;
                    let name = match name {
                        Some(n) => {
                            let n = n.to_ascii_lowercase();
                            let valid = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                                && n.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                            if !valid {
                                return Err(err(
                                    ins.line,
                                    format!(
                                        "invalid name for build stage: {n:?}, name can't start with a number or contain symbols"
                                    ),
                                ));
                            }
                            if stages.iter().any(|s| s.name.as_deref() == Some(&n)) {
                                return Err(err(ins.line, format!("duplicate stage name {n:?}")));
                            }
                            Some(n)
                        }
                        None => None,
                    };
                    stages.push(Stage {
                        index: stages.len(),
                        name,
                        base,
                        base_stage: None,
                        platform,
                        line: ins.line,
                        instructions: Vec::new(),
                        uses: Vec::new(),
                    });
                }
                Keyword::Arg if stages.is_empty() => {
                    let Args::Shell(text) = &ins.args else { continue };
                    for decl in text.split_whitespace() {
                        let (name, default) = match decl.split_once('=') {
                            Some((n, v)) => (
                                n,
                                Some(
                                    expand(v, &|_| None, escape)
                                        .map_err(|e| err(ins.line, e.to_string()))?,
                                ),
                            ),
                            None => (decl, None),
                        };
                        let value = build_args.get(name).cloned().or(default);
                        meta_args.push((name.to_owned(), value));
                    }
                }
                _ => match stages.last_mut() {
                    Some(stage) => stage.instructions.push(ins.clone()),
                    None => {
                        return Err(err(ins.line, "no build stage in current context".into()));
                    }
                },
            }
        }
        if stages.is_empty() {
            return Err(err(
                df.instructions.last().map_or(1, |i| i.line),
                "the Dockerfile has no FROM".into(),
            ));
        }
        // What each stage uses: names resolve to stages, else they are images.
        let by_name: HashMap<String, usize> =
            stages.iter().filter_map(|s| s.name.clone().map(|n| (n, s.index))).collect();
        let resolve = |r: &str| -> Option<usize> {
            by_name.get(&r.to_ascii_lowercase()).copied().or_else(|| r.parse::<usize>().ok())
        };
        for i in 0..stages.len() {
            let mut uses = Vec::new();
            let base = stages[i].base.to_ascii_lowercase();
            if let Some(&s) = by_name.get(&base) {
                stages[i].base_stage = Some(s);
                uses.push(s);
            }
            for ins in &stages[i].instructions {
                for from in stage_refs(ins) {
                    match resolve(&from) {
                        Some(s) if s < stages.len() => uses.push(s),
                        Some(_) if from.chars().all(|c| c.is_ascii_digit()) => {
                            return Err(err(
                                ins.line,
                                format!(
                                    "invalid from flag value {from}: stage {from} does not exist"
                                ),
                            ));
                        }
                        _ => {} // an image reference
                    }
                }
            }
            uses.sort_unstable();
            uses.dedup();
            stages[i].uses = uses;
        }
        let all = Stages { meta_args, stages };
        for s in &all.stages {
            all.order_from(s.index, file)?;
        }
        Ok(all)
    }

    /// The stages `target` (a name; default: the last stage) needs, itself
    /// last, each after the ones it uses. Stages it does not need are left
    /// out (they are never built).
    pub fn needed(&self, target: Option<&str>, file: &str) -> Result<Vec<usize>, ParseError> {
        let index = match target {
            None => self.stages.len() - 1,
            Some(t) => self
                .stages
                .iter()
                .find(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase()))
                .map(|s| s.index)
                .ok_or_else(|| ParseError {
                    file: file.to_owned(),
                    line: 1,
                    message: format!("target stage {t:?} could not be found"),
                })?,
        };
        self.order_from(index, file)
    }

    /// Depth-first from `root`: dependencies before dependents; a cycle is
    /// an error naming the stage it closes on.
    fn order_from(&self, root: usize, file: &str) -> Result<Vec<usize>, ParseError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            None,
            Open,
            Done,
        }
        fn visit(
            stages: &[Stage],
            i: usize,
            marks: &mut [Mark],
            out: &mut Vec<usize>,
        ) -> Result<(), usize> {
            match marks[i] {
                Mark::Done => return Ok(()),
                Mark::Open => return Err(i),
                Mark::None => {}
            }
            marks[i] = Mark::Open;
            for &u in &stages[i].uses {
                visit(stages, u, marks, out)?;
            }
            marks[i] = Mark::Done;
            out.push(i);
            Ok(())
        }
        let mut marks = vec![Mark::None; self.stages.len()];
        let mut out = Vec::new();
        visit(&self.stages, root, &mut marks, &mut out).map_err(|i| {
            let s = &self.stages[i];
            ParseError {
                file: file.to_owned(),
                line: s.line,
                message: format!(
                    "circular dependency detected on stage: {}",
                    s.name.clone().unwrap_or_else(|| s.index.to_string())
                ),
            }
        })?;
        Ok(out)
    }
}

/// The stages (or images) an instruction reads from: `--from=` of COPY and
/// ADD, `from=` of RUN's `--mount`.
fn stage_refs(ins: &Instruction) -> Vec<String> {
    let mut out = Vec::new();
    for flag in &ins.flags {
        match (ins.keyword, flag.name.as_str(), &flag.value) {
            (Keyword::Copy | Keyword::Add, "from", Some(v)) => out.push(v.clone()),
            (Keyword::Run, "mount", Some(v)) => {
                for kv in v.split(',') {
                    if let Some(from) = kv.strip_prefix("from=") {
                        out.push(from.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    out
}
