//! Shell patterns, as `.dockerignore` components and `${v#pattern}` use
//! them: `*` any run, `?` any one character, `[...]` a class (ranges,
//! negated with `^` or `!`), a backslash to escape.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Char(char),
    AnyRun,
    AnyOne,
    /// `[...]`: ranges, negated with `^` or `!`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Compiles one pattern; an unterminated `[` or a trailing backslash is an error.
pub(crate) fn compile(component: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = component.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                // `**` inside a component is still one run.
                while chars.get(i + 1) == Some(&'*') {
                    i += 1;
                }
                out.push(Token::AnyRun);
            }
            '?' => out.push(Token::AnyOne),
            '\\' => {
                i += 1;
                let c = *chars.get(i).ok_or("a pattern cannot end with \\")?;
                out.push(Token::Char(c));
            }
            '[' => {
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('^' | '!'));
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(j) else {
                        return Err(format!("{component:?}: unterminated [ in a pattern"));
                    };
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        j += 1;
                        *chars.get(j).ok_or("a pattern cannot end with \\")?
                    } else {
                        c
                    };
                    if chars.get(j + 1) == Some(&'-') && chars.get(j + 2).is_some_and(|&h| h != ']')
                    {
                        ranges.push((lo, chars[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((lo, lo));
                        j += 1;
                    }
                }
                out.push(Token::Class { negated, ranges });
                i = j;
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    Ok(out)
}

/// Whether `text` matches, without backtracking blow-up (linear in
/// pattern times text).
pub(crate) fn matches(tokens: &[Token], text: &[char]) -> bool {
    let mut reach = vec![false; text.len() + 1];
    reach[0] = true;
    for t in tokens {
        let mut next = vec![false; text.len() + 1];
        match t {
            Token::AnyRun => {
                let mut any = false;
                for j in 0..=text.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            _ => {
                for j in 0..text.len() {
                    let c = text[j];
                    let ok = match t {
                        Token::Char(x) => *x == c,
                        Token::AnyOne => true,
                        Token::Class { negated, ranges } => {
                            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
                        }
                        Token::AnyRun => unreachable!(),
                    };
                    next[j + 1] = reach[j] && ok;
                }
            }
        }
        reach = next;
    }
    reach[text.len()]
}

/// A slash-separated pattern matched component by component, as COPY and
/// ADD match their sources (`*` never crosses a `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    components: Vec<Vec<Token>>,
}

impl PathPattern {
    pub fn new(pattern: &str) -> Result<PathPattern, String> {
        let components = pattern
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(compile)
            .collect::<Result<_, _>>()?;
        Ok(PathPattern { components })
    }

    /// Whether `word` holds a pattern character at all.
    pub fn is_pattern(word: &str) -> bool {
        word.contains(['*', '?', '['])
    }

    /// How many components a matching path has.
    pub fn depth(&self) -> usize {
        self.components.len()
    }

    /// `path` (relative, slash-separated) matches, component for component.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        parts.len() == self.components.len()
            && parts.iter().zip(&self.components).all(|(p, t)| {
                let chars: Vec<char> = p.chars().collect();
                matches(t, &chars)
            })
    }
}
