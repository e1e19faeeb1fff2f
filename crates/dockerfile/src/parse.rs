//! From text to instructions.

use crate::ParseError;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    pub instructions: Vec<Instruction>,
}

/// The parser directives at the top (`# syntax=...`, `# escape=...`,
/// `# check=...`). berth fetches no frontend image for `syntax`: it is
/// recorded and reported, not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub syntax: Option<String>,
    /// `\` (the default) or `` ` ``.
    pub escape: char,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives { syntax: None, escape: '\\', check: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
}

impl Keyword {
    /// Case-insensitive, as instructions are.
    pub fn parse(word: &str) -> Option<Keyword> {
        Some(match word.to_ascii_uppercase().as_str() {
            "ADD" => Keyword::Add,
            "ARG" => Keyword::Arg,
            "CMD" => Keyword::Cmd,
            "COPY" => Keyword::Copy,
            "ENTRYPOINT" => Keyword::Entrypoint,
            "ENV" => Keyword::Env,
            "EXPOSE" => Keyword::Expose,
            "FROM" => Keyword::From,
            "HEALTHCHECK" => Keyword::Healthcheck,
            "LABEL" => Keyword::Label,
            "MAINTAINER" => Keyword::Maintainer,
            "ONBUILD" => Keyword::Onbuild,
            "RUN" => Keyword::Run,
            "SHELL" => Keyword::Shell,
            "STOPSIGNAL" => Keyword::Stopsignal,
            "USER" => Keyword::User,
            "VOLUME" => Keyword::Volume,
            "WORKDIR" => Keyword::Workdir,
            _ => return None,
        })
    }

    /// The instructions that take `--flag`s before their arguments.
    fn takes_flags(self) -> bool {
        matches!(
            self,
            Keyword::Add | Keyword::Copy | Keyword::From | Keyword::Healthcheck | Keyword::Run
        )
    }

    /// The instructions whose arguments may open heredocs.
    fn takes_heredocs(self) -> bool {
        matches!(self, Keyword::Add | Keyword::Copy | Keyword::Run)
    }

    /// The instructions whose arguments may be a JSON array.
    fn has_exec_form(self) -> bool {
        matches!(
            self,
            Keyword::Add
                | Keyword::Cmd
                | Keyword::Copy
                | Keyword::Entrypoint
                | Keyword::Healthcheck
                | Keyword::Run
                | Keyword::Shell
                | Keyword::Volume
        )
    }
}

/// `--name` or `--name=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// An instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// A JSON array of strings (`CMD ["sh", "-c", "x"]`).
    Exec(Vec<String>),
    /// The rest of the line (continuations joined), as written.
    Shell(String),
}

/// A here-document: `<<EOF` ... `EOF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// Each line followed by a newline (`<<-` strips leading tabs).
    pub content: String,
    /// An unquoted delimiter: variables in the content are expanded.
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub keyword: Keyword,
    /// Where it starts, 1-based.
    pub line: usize,
    pub flags: Vec<Flag>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
}

/// Parses `text`, the contents of the Dockerfile called `file` (for error
/// messages).
pub fn parse(text: &str, file: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let err = |line: usize, message: String| ParseError { file: file.to_owned(), line, message };
    let (directives, mut i) = directives(&lines).map_err(|(l, m)| err(l, m))?;
    let escape = directives.escape;
    let mut instructions = Vec::new();
    while i < lines.len() {
        let start = i;
        if is_blank_or_comment(lines[i]) {
            i += 1;
            continue;
        }
        // One logical line: continuations joined, comment lines (and blank
        // lines, as BuildKit allows) inside them dropped.
        let mut logical = String::new();
        loop {
            let line = lines[i];
            i += 1;
            let trimmed = line.trim_end();
            match trimmed.strip_suffix(escape) {
                Some(body) if i < lines.len() => {
                    logical.push_str(body);
                    while i < lines.len() && is_blank_or_comment(lines[i]) {
                        i += 1;
                    }
                    if i == lines.len() {
                        break;
                    }
                }
                // An escape at the very end of the file ends the line.
                Some(body) => {
                    logical.push_str(body);
                    break;
                }
                None => {
                    logical.push_str(line);
                    break;
                }
            }
        }
        let line_no = start + 1;
        let logical = logical.trim_start();
        let (word, rest) = match logical.find(char::is_whitespace) {
            Some(n) => (&logical[..n], logical[n..].trim_start()),
            None => (logical, ""),
        };
        let keyword = Keyword::parse(word).ok_or_else(|| {
            err(line_no, format!("unknown instruction: {}", word.to_ascii_uppercase()))
        })?;
        let (flags, rest) = if keyword.takes_flags() { flags(rest) } else { (Vec::new(), rest) };
        let mut heredocs = Vec::new();
        if keyword.takes_heredocs() {
            for (name, strip_tabs, expand) in heredoc_openers(rest) {
                let mut content = String::new();
                loop {
                    if i == lines.len() {
                        return Err(err(line_no, format!("unterminated heredoc {name}")));
                    }
                    let body = lines[i];
                    i += 1;
                    let body = if strip_tabs { body.trim_start_matches('\t') } else { body };
                    if body == name {
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                heredocs.push(Heredoc { name, content, expand });
            }
        }
        let args = match exec_form(rest) {
            Some(words) if keyword.has_exec_form() => Args::Exec(words),
            _ => Args::Shell(rest.trim_end().to_owned()),
        };
        check_arguments(keyword, &args, &heredocs).map_err(|m| err(line_no, m))?;
        instructions.push(Instruction { keyword, line: line_no, flags, args, heredocs });
    }
    Ok(Dockerfile { directives, instructions })
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Reads the directives at the top; returns them and the first line after.
fn directives(lines: &[&str]) -> Result<(Directives, usize), (usize, String)> {
    let mut d = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(body) = line.trim_start().strip_prefix('#') else { return Ok((d, i)) };
        let Some((key, value)) = body.split_once('=') else { return Ok((d, i)) };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok((d, i));
        }
        let value = value.trim().to_owned();
        match key.as_str() {
            "syntax" => d.syntax = Some(value),
            "check" => d.check = Some(value),
            "escape" => {
                d.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err((
                            i + 1,
                            format!("invalid escape token {value:?}: it must be \\ or `"),
                        ));
                    }
                }
            }
            // An unknown directive is a comment, and ends the directives.
            _ => return Ok((d, i)),
        }
        if seen.contains(&key) {
            return Err((i + 1, format!("only one {key} parser directive can be used")));
        }
        seen.push(key);
    }
    Ok((d, lines.len()))
}

/// Leading `--name[=value]` words; returns them and what follows.
fn flags(mut rest: &str) -> (Vec<Flag>, &str) {
    let mut out = Vec::new();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..end];
        if word.is_empty() {
            break;
        }
        let flag = match word.split_once('=') {
            Some((n, v)) => Flag { name: n.to_owned(), value: Some(v.to_owned()) },
            None => Flag { name: word.to_owned(), value: None },
        };
        out.push(flag);
        rest = after[end..].trim_start();
    }
    (out, rest)
}

/// The heredocs a line opens, in order: (delimiter, `<<-`, expand).
fn heredoc_openers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if bytes[i..].starts_with(b"<<") => {
                let mut j = i + 2;
                let strip = bytes.get(j) == Some(&b'-');
                if strip {
                    j += 1;
                }
                let q = bytes.get(j).copied().filter(|c| *c == b'\'' || *c == b'"');
                if q.is_some() {
                    j += 1;
                }
                let name_start = j;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                let name = &rest[name_start..j];
                let closed = match q {
                    Some(q) => bytes.get(j) == Some(&q),
                    None => true,
                };
                if !name.is_empty() && closed {
                    out.push((name.to_owned(), strip, q.is_none()));
                    i = j + usize::from(q.is_some());
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// A JSON array of strings, if that is what `rest` is.
fn exec_form(rest: &str) -> Option<Vec<String>> {
    let t = rest.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

fn check_arguments(keyword: Keyword, args: &Args, heredocs: &[Heredoc]) -> Result<(), String> {
    let empty = match args {
        Args::Exec(w) => w.is_empty() && !matches!(keyword, Keyword::Cmd | Keyword::Entrypoint),
        Args::Shell(s) => s.is_empty() && heredocs.is_empty(),
    };
    let needs_args = !matches!(keyword, Keyword::Cmd | Keyword::Entrypoint | Keyword::Healthcheck);
    if empty && needs_args {
        let name = format!("{keyword:?}").to_ascii_uppercase();
        return Err(format!("{name} requires at least one argument"));
    }
    Ok(())
}
