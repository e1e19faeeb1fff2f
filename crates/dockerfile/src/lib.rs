//! The Dockerfile language as BuildKit's frontend reads it: parser
//! directives, comments, line continuations, heredocs, instructions with
//! their flags and their shell or exec (JSON) form ([`parse`]); and variable
//! substitution ([`expand`]); and `.dockerignore` ([`Ignore`]). Pure
//! functions over text: no I/O.
//!
//! Errors name the file and line as docker does:
//! `Dockerfile:3: unknown instruction: RUNN`.

mod expand;
mod glob;
pub mod ignore;
mod parse;
mod stages;

pub use expand::{ExpandError, expand, split_words};
pub use glob::PathPattern;
pub use ignore::{Ignore, IgnoreError};
pub use parse::{Args, Directives, Dockerfile, Flag, Heredoc, Instruction, Keyword, parse};
pub use stages::{Stage, Stages};

/// What is wrong with a Dockerfile, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The file's name as the user gave it (`Dockerfile`, `Dockerfile.dev`).
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub message: String,
}
