//! Variable substitution in the instructions that take it (FROM, ADD, COPY,
//! ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ...): `$v`,
//! `${v}` and the modifiers `:-` `-` `:+` `+` `:?` `?` `#` `##` `%` `%%` `/`
//! `//`. Quotes work as in a shell word: nothing is expanded inside single
//! quotes, and quotes are removed; the escape character keeps the next
//! character literal.

use crate::glob::{self, Token};

/// What stops a substitution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${v:?message}` (or `${v?message}`) with `v` unset (or empty).
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("failed to process {word:?}: {reason}")]
    Syntax { word: String, reason: &'static str },
}

/// Splits an instruction's text into shell words at unquoted whitespace,
/// keeping quotes and escapes for [`expand`] to apply to each word (so
/// `ENV a="x y" b=$a` is two words).
pub fn split_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (_, e) if e == escape && quote != Some('\'') => {
                word.push(e);
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                word.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c);
            }
            (_, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `word` with its variables replaced by what `lookup` gives (`None`:
/// unset), its quotes removed and its escapes applied.
pub fn expand(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    let syntax = |reason| ExpandError::Syntax { word: word.to_owned(), reason };
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), _) => out.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (_, e) if e == escape => {
                i += 1;
                match chars.get(i) {
                    // Inside double quotes only quotes, `$` and the escape
                    // itself are escaped; anything else keeps it.
                    Some(&n) if quote.is_none() || matches!(n, '"' | '$') || n == escape => {
                        out.push(n)
                    }
                    Some(&n) => {
                        out.push(escape);
                        out.push(n);
                    }
                    None => out.push(escape),
                }
            }
            (_, '$') => {
                let (value, next) =
                    variable(&chars, i + 1, lookup, escape).map_err(|e| match e {
                        Bad::Syntax(reason) => syntax(reason),
                        Bad::Required(e) => e,
                    })?;
                out.push_str(&value);
                i = next;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    if quote.is_some() {
        return Err(syntax("unexpected end of statement while looking for matching quote"));
    }
    Ok(out)
}

enum Bad {
    Syntax(&'static str),
    Required(ExpandError),
}

/// The value of the variable reference starting at `chars[at]` (just after
/// `$`) and the index after it.
fn variable(
    chars: &[char],
    at: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<(String, usize), Bad> {
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(at) {
        Some('{') => {}
        Some(&c) if is_start(c) => {
            let end = (at..chars.len()).find(|&j| !is_name(chars[j])).unwrap_or(chars.len());
            let name: String = chars[at..end].iter().collect();
            return Ok((lookup(&name).unwrap_or_default(), end));
        }
        // A lone `$` is itself.
        _ => return Ok(("$".to_owned(), at)),
    }
    let start = at + 1;
    let name_end = (start..chars.len()).find(|&j| !is_name(chars[j])).unwrap_or(chars.len());
    let name: String = chars[start..name_end].iter().collect();
    if name.is_empty() || !is_start(chars[start]) {
        return Err(Bad::Syntax("missing or invalid variable name in ${}"));
    }
    // The closing brace, skipping nested `${...}` in the modifier's word.
    let mut depth = 0usize;
    let mut close = None;
    let mut j = name_end;
    while j < chars.len() {
        match chars[j] {
            c if c == escape => j += 1,
            '$' if chars.get(j + 1) == Some(&'{') => {
                depth += 1;
                j += 1;
            }
            '}' if depth == 0 => {
                close = Some(j);
                break;
            }
            '}' => depth -= 1,
            _ => {}
        }
        j += 1;
    }
    let close = close.ok_or(Bad::Syntax("missing '}'"))?;
    let modifier: String = chars[name_end..close].iter().collect();
    let value = lookup(&name);
    let word = |w: &str| {
        expand(w, lookup, escape).map_err(|e| match e {
            ExpandError::Syntax { reason, .. } => Bad::Syntax(reason),
            other => Bad::Required(other),
        })
    };
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let v = value.clone().unwrap_or_default();
    let result = if modifier.is_empty() {
        v
    } else if let Some(w) = modifier.strip_prefix(":-") {
        if non_empty { v } else { word(w)? }
    } else if let Some(w) = modifier.strip_prefix(":+") {
        if non_empty { word(w)? } else { String::new() }
    } else if let Some(w) = modifier.strip_prefix(":?") {
        if non_empty {
            v
        } else {
            let message = word(w)?;
            return Err(Bad::Required(ExpandError::Required { name, message }));
        }
    } else if let Some(w) = modifier.strip_prefix('-') {
        if set { v } else { word(w)? }
    } else if let Some(w) = modifier.strip_prefix('+') {
        if set { word(w)? } else { String::new() }
    } else if let Some(w) = modifier.strip_prefix('?') {
        if set {
            v
        } else {
            let message = word(w)?;
            return Err(Bad::Required(ExpandError::Required { name, message }));
        }
    } else if let Some(p) = modifier.strip_prefix("##") {
        remove_prefix(&v, &word(p)?, true)
    } else if let Some(p) = modifier.strip_prefix('#') {
        remove_prefix(&v, &word(p)?, false)
    } else if let Some(p) = modifier.strip_prefix("%%") {
        remove_suffix(&v, &word(p)?, true)
    } else if let Some(p) = modifier.strip_prefix('%') {
        remove_suffix(&v, &word(p)?, false)
    } else if let Some(rest) = modifier.strip_prefix("//") {
        let (p, r) = rest.split_once('/').unwrap_or((rest, ""));
        replace(&v, &word(p)?, &word(r)?, true)
    } else if let Some(rest) = modifier.strip_prefix('/') {
        let (p, r) = rest.split_once('/').unwrap_or((rest, ""));
        replace(&v, &word(p)?, &word(r)?, false)
    } else {
        return Err(Bad::Syntax("unsupported modifier in ${}"));
    };
    Ok((result, close + 1))
}

/// A substitution's pattern: a shell glob, or (if it does not compile, as
/// an unterminated `[`) its characters literally, as a shell takes it.
fn pattern_of(p: &str) -> Vec<Token> {
    glob::compile(p).unwrap_or_else(|_| p.chars().map(Token::Char).collect())
}

fn remove_prefix(value: &str, pattern: &str, longest: bool) -> String {
    let (v, p): (Vec<char>, Vec<Token>) = (value.chars().collect(), pattern_of(pattern));
    let mut lengths: Vec<usize> = (0..=v.len()).collect();
    if longest {
        lengths.reverse();
    }
    for n in lengths {
        if glob::matches(&p, &v[..n]) {
            return v[n..].iter().collect();
        }
    }
    value.to_owned()
}

fn remove_suffix(value: &str, pattern: &str, longest: bool) -> String {
    let (v, p): (Vec<char>, Vec<Token>) = (value.chars().collect(), pattern_of(pattern));
    let mut starts: Vec<usize> = (0..=v.len()).collect();
    if !longest {
        starts.reverse();
    }
    for s in starts {
        if glob::matches(&p, &v[s..]) {
            return v[..s].iter().collect();
        }
    }
    value.to_owned()
}

/// `${v/p/r}` (first match) and `${v//p/r}` (every match): the longest
/// match at each position, as a shell does.
fn replace(value: &str, pattern: &str, with: &str, all: bool) -> String {
    let (v, p): (Vec<char>, Vec<Token>) = (value.chars().collect(), pattern_of(pattern));
    if p.is_empty() {
        return value.to_owned();
    }
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < v.len() {
        let found = if replaced && !all {
            None
        } else {
            (i + 1..=v.len()).rev().find(|&end| glob::matches(&p, &v[i..end]))
        };
        match found {
            Some(end) => {
                out.push_str(with);
                i = end;
                replaced = true;
            }
            None => {
                out.push(v[i]);
                i += 1;
            }
        }
    }
    out
}
