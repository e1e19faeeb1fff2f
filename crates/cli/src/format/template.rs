//! The subset of Go's `text/template` that docker `--format` strings use:
//! `{{.Field.Sub}}`, `{{.}}`, pipelines (`{{.X | json}}`), `{{if}}`/`{{else}}`/
//! `{{range}}`/`{{end}}`, `{{-`/`-}}` trimming, string and number literals,
//! and docker's functions: `json`, `join`, `split`, `upper`, `lower`,
//! `title`, `truncate`, `pad`, `println`, `print`, `index`, `len`, `eq`,
//! `ne`, `not`. Values are JSON-shaped ([`V`]).

use super::value::{V, go_json};

#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Vec<Cmd>),
    If(Vec<Cmd>, Vec<Node>, Vec<Node>),
    Range(Vec<Cmd>, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Cmd(Vec<Arg>);

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Str(String),
    Num(i64),
    Func(String),
    Sub(Vec<Cmd>),
}

/// What the parser saw at an action: content, or a control keyword.
enum Item {
    Text(String),
    Action(Vec<Cmd>),
    If(Vec<Cmd>),
    Range(Vec<Cmd>),
    Else,
    End,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let items = lex_items(src)?;
        let mut iter = items.into_iter();
        let (nodes, stop) = parse_nodes(&mut iter)?;
        match stop {
            None => Ok(Template { nodes }),
            Some(_) => Err("template: unexpected {{else}} or {{end}}".into()),
        }
    }

    /// Runs the template on `data`.
    pub fn render(&self, data: &V) -> Result<String, String> {
        let mut out = String::new();
        exec(&self.nodes, data, &mut out, false)?;
        Ok(out)
    }

    /// Runs the template on a header row: every function passes its
    /// argument through (docker's `HeaderFunctions`).
    pub fn render_header(&self, headers: &V) -> Result<String, String> {
        let mut out = String::new();
        exec(&self.nodes, headers, &mut out, true)?;
        Ok(out)
    }
}

fn lex_items(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next_text = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let text = if trim_next_text { rest.trim_start() } else { rest };
            items.push(Item::Text(text.to_owned()));
            break;
        };
        let mut text = &rest[..open];
        if trim_next_text {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left = after.starts_with("- ") || after.starts_with("-\t") || after == "-";
        if trim_left {
            text = text.trim_end();
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_owned()));
        }
        let close = after.find("}}").ok_or("template: unclosed action")?;
        let mut inner = &after[..close];
        if trim_left {
            inner = &inner[1..];
        }
        trim_next_text = inner.ends_with(" -") || inner.ends_with("\t-");
        if trim_next_text {
            inner = &inner[..inner.len() - 1];
        }
        rest = &after[close + 2..];
        let inner = inner.trim();
        if inner.starts_with("/*") {
            continue;
        }
        let item = if inner == "else" {
            Item::Else
        } else if inner == "end" {
            Item::End
        } else if let Some(p) = inner.strip_prefix("if ") {
            Item::If(parse_pipeline(p)?)
        } else if let Some(p) = inner.strip_prefix("range ") {
            Item::Range(parse_pipeline(p)?)
        } else {
            Item::Action(parse_pipeline(inner)?)
        };
        items.push(item);
    }
    Ok(items)
}

/// Parses nodes until `{{else}}`/`{{end}}` (returned) or the end.
fn parse_nodes(
    iter: &mut std::vec::IntoIter<Item>,
) -> Result<(Vec<Node>, Option<&'static str>), String> {
    let mut nodes = Vec::new();
    while let Some(item) = iter.next() {
        match item {
            Item::Text(t) => nodes.push(Node::Text(t)),
            Item::Action(p) => nodes.push(Node::Action(p)),
            Item::If(p) => {
                let (then, else_) = parse_branches(iter)?;
                nodes.push(Node::If(p, then, else_));
            }
            Item::Range(p) => {
                let (body, else_) = parse_branches(iter)?;
                nodes.push(Node::Range(p, body, else_));
            }
            Item::Else => return Ok((nodes, Some("else"))),
            Item::End => return Ok((nodes, Some("end"))),
        }
    }
    Ok((nodes, None))
}

fn parse_branches(iter: &mut std::vec::IntoIter<Item>) -> Result<(Vec<Node>, Vec<Node>), String> {
    let (then, stop) = parse_nodes(iter)?;
    match stop {
        Some("end") => Ok((then, Vec::new())),
        Some("else") => match parse_nodes(iter)? {
            (else_, Some("end")) => Ok((then, else_)),
            _ => Err("template: missing {{end}}".into()),
        },
        _ => Err("template: missing {{end}}".into()),
    }
}

fn parse_pipeline(src: &str) -> Result<Vec<Cmd>, String> {
    let tokens = tokenize(src)?;
    let mut pos = 0;
    let cmds = parse_cmds(&tokens, &mut pos)?;
    if pos != tokens.len() {
        return Err(format!("template: unexpected {:?} in {src:?}", tokens[pos]));
    }
    Ok(cmds)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Str(String),
    Num(i64),
    Ident(String),
    Pipe,
    Open,
    Close,
}

fn parse_cmds(tokens: &[Tok], pos: &mut usize) -> Result<Vec<Cmd>, String> {
    let mut cmds = vec![Cmd(Vec::new())];
    while *pos < tokens.len() {
        let tok = &tokens[*pos];
        *pos += 1;
        let arg = match tok {
            Tok::Pipe => {
                cmds.push(Cmd(Vec::new()));
                continue;
            }
            Tok::Close => {
                *pos -= 1;
                break;
            }
            Tok::Open => {
                let sub = parse_cmds(tokens, pos)?;
                if tokens.get(*pos) != Some(&Tok::Close) {
                    return Err("template: unclosed '('".into());
                }
                *pos += 1;
                Arg::Sub(sub)
            }
            Tok::Field(f) => Arg::Field(f.clone()),
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Num(n) => Arg::Num(*n),
            Tok::Ident(i) => Arg::Func(i.clone()),
        };
        cmds.last_mut().expect("non-empty").0.push(arg);
    }
    if cmds.iter().any(|c| c.0.is_empty()) {
        return Err("template: missing value for command".into());
    }
    Ok(cmds)
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("template: unterminated quoted string".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(i).copied().ok_or("template: bad escape")?;
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        c => s.push(c),
                    }
                }
                out.push(Tok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or("template: unterminated raw string")?;
                out.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            '.' => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let fields = text.split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                out.push(Tok::Field(fields));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Tok::Num(
                    text.parse().map_err(|_| format!("template: bad number {text}"))?,
                ));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("template: unexpected {other:?} in {src:?}")),
        }
    }
    Ok(out)
}

fn exec(nodes: &[Node], dot: &V, out: &mut String, header: bool) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipeline(p, dot, header)?;
                print(&v, out);
            }
            Node::If(p, then, else_) => {
                let v = eval_pipeline(p, dot, header)?;
                exec(if truthy(&v) { then } else { else_ }, dot, out, header)?;
            }
            Node::Range(p, body, else_) => {
                let v = eval_pipeline(p, dot, header)?;
                let items: Vec<V> = match v {
                    V::Arr(items) => items,
                    V::Obj(fields) => {
                        let mut fields = fields;
                        fields.sort_by(|a, b| a.0.cmp(&b.0));
                        fields.into_iter().map(|(_, v)| v).collect()
                    }
                    V::Null => Vec::new(),
                    // A header row has strings where rows have lists.
                    other if header => vec![other],
                    other => {
                        return Err(format!("template: range can't iterate over {}", show(&other)));
                    }
                };
                if items.is_empty() {
                    exec(else_, dot, out, header)?;
                }
                for item in &items {
                    exec(body, item, out, header)?;
                }
            }
        }
    }
    Ok(())
}

fn print(v: &V, out: &mut String) {
    v.go_print(out)
}

fn show(v: &V) -> String {
    let mut s = String::new();
    v.go_print(&mut s);
    s
}

fn truthy(v: &V) -> bool {
    match v {
        V::Null => false,
        V::Bool(b) => *b,
        V::Num(n) => n.as_f64().is_some_and(|f| f != 0.0),
        V::Str(s) => !s.is_empty(),
        V::Arr(a) => !a.is_empty(),
        V::Obj(o) => !o.is_empty(),
    }
}

fn eval_pipeline(cmds: &[Cmd], dot: &V, header: bool) -> Result<V, String> {
    let mut prev: Option<V> = None;
    for cmd in cmds {
        prev = Some(eval_cmd(cmd, dot, prev, header)?);
    }
    Ok(prev.unwrap_or(V::Null))
}

fn eval_arg(arg: &Arg, dot: &V, header: bool) -> Result<V, String> {
    Ok(match arg {
        Arg::Field(path) => {
            let mut v = dot.clone();
            for name in path {
                v = match v.get(name) {
                    Some(x) => x.clone(),
                    None if matches!(v, V::Obj(_)) || v.is_null() => V::str("<no value>"),
                    None => {
                        return Err(format!(
                            "template: can't evaluate field {name} in {}",
                            show(&v)
                        ));
                    }
                };
            }
            v
        }
        Arg::Str(s) => V::str(s.clone()),
        Arg::Num(n) => V::int(*n),
        Arg::Sub(cmds) => eval_pipeline(cmds, dot, header)?,
        Arg::Func(name) => call(name, Vec::new(), header)?,
    })
}

fn eval_cmd(cmd: &Cmd, dot: &V, prev: Option<V>, header: bool) -> Result<V, String> {
    let (first, rest) = cmd.0.split_first().expect("commands are non-empty");
    let Arg::Func(name) = first else {
        if !rest.is_empty() || prev.is_some() {
            return Err("template: can't give argument to non-function".into());
        }
        return eval_arg(first, dot, header);
    };
    let mut args = rest.iter().map(|a| eval_arg(a, dot, header)).collect::<Result<Vec<_>, _>>()?;
    if let Some(p) = prev {
        args.push(p);
    }
    call(name, args, header)
}

fn as_text(v: &V) -> String {
    show(v)
}

fn call(name: &str, args: Vec<V>, header: bool) -> Result<V, String> {
    let arity = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("template: wrong number of args for {name}: want {n} got {}", args.len()))
        }
    };
    if header && !matches!(name, "eq" | "ne" | "not" | "len") {
        // Header rows: functions pass the header text through.
        return Ok(args.into_iter().next_back().unwrap_or(V::Null));
    }
    Ok(match name {
        "json" => {
            arity(1)?;
            V::str(go_json(&args[0]))
        }
        "upper" => {
            arity(1)?;
            V::str(as_text(&args[0]).to_uppercase())
        }
        "lower" => {
            arity(1)?;
            V::str(as_text(&args[0]).to_lowercase())
        }
        "title" => {
            arity(1)?;
            let text = as_text(&args[0]);
            let mut out = String::new();
            let mut start = true;
            for c in text.chars() {
                out.extend(if start { c.to_uppercase().collect::<Vec<_>>() } else { vec![c] });
                start = c.is_whitespace();
            }
            V::str(out)
        }
        "join" => {
            arity(2)?;
            let sep = as_text(&args[1]);
            match &args[0] {
                V::Arr(items) => V::str(items.iter().map(as_text).collect::<Vec<_>>().join(&sep)),
                other => V::str(as_text(other)),
            }
        }
        "split" => {
            arity(2)?;
            let sep = as_text(&args[1]);
            V::Arr(as_text(&args[0]).split(sep.as_str()).map(V::str).collect())
        }
        "truncate" => {
            arity(2)?;
            let n = match &args[1] {
                V::Num(n) => n.as_u64().unwrap_or(0) as usize,
                _ => return Err("template: truncate wants a length".into()),
            };
            V::str(as_text(&args[0]).chars().take(n).collect::<String>())
        }
        "pad" => {
            arity(3)?;
            let n = |v: &V| if let V::Num(n) = v { n.as_u64().unwrap_or(0) as usize } else { 0 };
            let (l, r) = (n(&args[1]), n(&args[2]));
            V::str(format!("{}{}{}", " ".repeat(l), as_text(&args[0]), " ".repeat(r)))
        }
        "print" => V::str(args.iter().map(as_text).collect::<Vec<_>>().join("")),
        "println" => {
            V::str(format!("{}\n", args.iter().map(as_text).collect::<Vec<_>>().join(" ")))
        }
        "len" => {
            arity(1)?;
            V::int(match &args[0] {
                V::Arr(a) => a.len() as i64,
                V::Obj(o) => o.len() as i64,
                V::Str(s) => s.len() as i64,
                V::Null => 0,
                other => return Err(format!("template: len of {}", show(other))),
            })
        }
        "index" => {
            let (target, keys) = args.split_first().ok_or("template: index needs arguments")?;
            let mut v = target.clone();
            for key in keys {
                v = match (&v, key) {
                    (V::Arr(items), V::Num(n)) => {
                        let i = n.as_u64().unwrap_or(u64::MAX) as usize;
                        items.get(i).cloned().ok_or_else(|| {
                            format!("template: error calling index: index out of range: {n}")
                        })?
                    }
                    (V::Obj(_), V::Str(k)) => v.get(k).cloned().unwrap_or(V::Null),
                    (V::Null, _) => V::Null,
                    _ => {
                        return Err(format!(
                            "template: can't index {} with {}",
                            show(&v),
                            show(key)
                        ));
                    }
                };
            }
            v
        }
        "eq" => {
            let (first, others) = args.split_first().ok_or("template: eq needs arguments")?;
            V::Bool(others.iter().any(|o| as_text(o) == as_text(first)))
        }
        "ne" => {
            arity(2)?;
            V::Bool(as_text(&args[0]) != as_text(&args[1]))
        }
        "not" => {
            arity(1)?;
            V::Bool(!truthy(&args[0]))
        }
        other => return Err(format!("template: function \"{other}\" not defined")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> V {
        serde_json::from_str(
            r#"{"Id":"sha256:abc","RepoTags":["a:1","b:2"],"Config":{"Cmd":["/bin/sh"],"Labels":{"x":"y"}},"Size":1985472}"#,
        )
        .unwrap()
    }

    fn render(t: &str) -> String {
        Template::parse(t).unwrap().render(&data()).unwrap()
    }

    #[test]
    fn fields_functions_and_pipelines() {
        assert_eq!(render("{{.Id}}"), "sha256:abc");
        assert_eq!(render("{{.Config.Cmd}}"), "[/bin/sh]");
        assert_eq!(render("{{json .Config.Cmd}}"), r#"["/bin/sh"]"#);
        assert_eq!(render("{{index .RepoTags 0}}"), "a:1");
        assert_eq!(render("{{index .Config.Labels \"x\"}}"), "y");
        assert_eq!(render("{{.Size}}"), "1985472");
        assert_eq!(render("{{.Config.Labels}}"), "map[x:y]");
        assert_eq!(render("{{.Id | upper}}"), "SHA256:ABC");
        assert_eq!(render("{{join .RepoTags \", \"}}"), "a:1, b:2");
        assert_eq!(render("{{range .RepoTags}}<{{.}}>{{end}}"), "<a:1><b:2>");
        assert_eq!(render("{{if .RepoTags}}yes{{else}}no{{end}}"), "yes");
        assert_eq!(render("{{len .RepoTags}} {{- \" x\"}}"), "2 x");
        assert_eq!(render("{{.Nope}}"), "<no value>");
    }

    #[test]
    fn errors_are_reported() {
        assert!(Template::parse("{{.Id").is_err());
        assert!(Template::parse("{{if .Id}}x").is_err());
        assert!(Template::parse("{{nosuchfunc .Id}}").unwrap().render(&data()).is_err());
    }
}
