//! `.dockerignore`, with docker's rules: one pattern per line, anchored at
//! the context's root (a leading `/` changes nothing), `#` comments, `*`
//! `?` and `[...]` within a path component, `**` across any number of
//! them, `!` for an exception; the last pattern that matches decides, and a
//! pattern that matches a directory covers everything in it.
//!
//! Patterns are compiled once; [`Ignore::may_reinclude_under`] tells a walk
//! whether an ignored directory must still be entered (an exception could
//! reach into it) or can be skipped whole.

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    exception: bool,
    parts: Vec<Part>,
}

use crate::glob::{self, Token};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `**`: any number of components, none included.
    AnyDepth,
    /// One component's glob.
    Glob(Vec<Token>),
}

/// A line of `.dockerignore` that is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore:{line}: {message}")]
pub struct IgnoreError {
    pub line: usize,
    pub message: String,
}

impl Ignore {
    /// Compiles the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let err = |message: String| IgnoreError { line: n + 1, message };
            let parts = compile(body).map_err(err)?;
            if parts.is_empty() {
                continue; // "/" or "." alone: the root itself is never ignored
            }
            patterns.push(Pattern { exception, parts });
        }
        Ok(Ignore { patterns })
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out.
    pub fn is_ignored(&self, path: &str) -> bool {
        let parts: Vec<&str> = components(path);
        if parts.is_empty() {
            return false;
        }
        let mut ignored = false;
        for p in &self.patterns {
            // The path itself, or a directory it is in.
            let hit = (1..=parts.len()).any(|n| match_parts(&p.parts, &parts[..n]));
            if hit {
                ignored = !p.exception;
            }
        }
        ignored
    }

    /// Whether some exception could match a path inside directory `dir`,
    /// so that an ignored `dir` must still be walked.
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        let parts = components(dir);
        self.patterns.iter().filter(|p| p.exception).any(|p| could_extend(&p.parts, &parts))
    }
}

fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").collect()
}

/// A pattern cleaned as docker cleans it (`.`, `..`, doubled and leading
/// slashes), split into components.
fn compile(body: &str) -> Result<Vec<Part>, String> {
    let mut cleaned: Vec<&str> = Vec::new();
    for c in body.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                cleaned.pop();
            }
            c => cleaned.push(c),
        }
    }
    cleaned
        .into_iter()
        .map(|c| if c == "**" { Ok(Part::AnyDepth) } else { glob::compile(c).map(Part::Glob) })
        .collect()
}

/// Whether the pattern matches exactly these path components.
fn match_parts(pattern: &[Part], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Part::AnyDepth, rest)) => (0..=path.len()).any(|k| match_parts(rest, &path[k..])),
        Some((Part::Glob(g), rest)) => {
            !path.is_empty()
                && glob::matches(g, &path[0].chars().collect::<Vec<_>>())
                && match_parts(rest, &path[1..])
        }
    }
}

/// Whether a path inside `dir` could match `pattern`: the pattern's
/// leading components fit `dir`'s and go on (or reach a `**`), or the whole
/// pattern matches `dir` or a directory it is in (which covers all below).
fn could_extend(pattern: &[Part], dir: &[&str]) -> bool {
    match (pattern.split_first(), dir.split_first()) {
        (Some((Part::AnyDepth, _)), _) => true,
        (Some(_), None) => true,
        (None, _) => true,
        (Some((Part::Glob(g), rest)), Some((d, more))) => {
            glob::matches(g, &d.chars().collect::<Vec<_>>()) && could_extend(rest, more)
        }
    }
}
