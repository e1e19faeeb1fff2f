//! An ordered JSON value: what `--format` templates walk and what `inspect`
//! prints. Objects keep their field order (docker prints struct fields in
//! declaration order), which `serde_json::Value` without `preserve_order`
//! would sort away.

use std::fmt::Write as _;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<V>),
    Obj(Vec<(String, V)>),
}

impl V {
    pub fn str(s: impl Into<String>) -> V {
        V::Str(s.into())
    }

    pub fn int(n: i64) -> V {
        V::Num(n.into())
    }

    /// A field of an object (exact name first, then case-insensitively, as
    /// Go's JSON decoding matches names).
    pub fn get(&self, key: &str) -> Option<&V> {
        let V::Obj(fields) = self else { return None };
        fields
            .iter()
            .find(|(k, _)| k == key)
            .or_else(|| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
            .map(|(_, v)| v)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, V::Null)
    }

    /// How Go's `fmt` prints the value decoded from JSON (`{{.X}}`).
    pub fn go_print(&self, out: &mut String) {
        match self {
            V::Null => out.push_str("<nil>"),
            V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            V::Num(n) => out.push_str(&n.to_string()),
            V::Str(s) => out.push_str(s),
            V::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    item.go_print(out);
                }
                out.push(']');
            }
            V::Obj(fields) => {
                let mut sorted: Vec<&(String, V)> = fields.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push_str("map[");
                for (i, (k, v)) in sorted.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.go_print(out);
                }
                out.push(']');
            }
        }
    }
}

impl<'de> Deserialize<'de> for V {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<V, D::Error> {
        struct VVisitor;
        impl<'de> Visitor<'de> for VVisitor {
            type Value = V;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<V, E> {
                Ok(V::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<V, E> {
                Ok(V::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V, D2::Error> {
                V::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<V, E> {
                Ok(V::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<V, E> {
                Ok(V::Num(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<V, E> {
                Ok(V::Num(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<V, E> {
                Ok(serde_json::Number::from_f64(n).map_or(V::Null, V::Num))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<V, E> {
                Ok(V::Str(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<V, E> {
                Ok(V::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(V::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<V, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    fields.push((k, v));
                }
                Ok(V::Obj(fields))
            }
        }
        d.deserialize_any(VVisitor)
    }
}

/// Go's `json.Marshal`: compact, `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub fn go_json(v: &V) -> String {
    let mut out = String::new();
    write_json(v, &mut out, None, 0);
    out
}

/// docker's `inspect` output: `json.Indent` with four spaces.
pub fn go_json_pretty(v: &V) -> String {
    let mut out = String::new();
    write_json(v, &mut out, Some("    "), 0);
    out
}

fn write_json(v: &V, out: &mut String, indent: Option<&str>, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(unit) = indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(unit);
            }
        }
    };
    match v {
        V::Null => out.push_str("null"),
        V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        V::Num(n) => out.push_str(&n.to_string()),
        V::Str(s) => write_json_string(s, out),
        V::Arr(items) if items.is_empty() => out.push_str("[]"),
        V::Obj(fields) if fields.is_empty() => out.push_str("{}"),
        V::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_json(item, out, indent, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        V::Obj(fields) => {
            out.push('{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_json_string(k, out);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_json(item, out, indent, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_escapes_like_go() {
        let v: V = serde_json::from_str(r#"{"b":1,"a":["x<y","&"],"c":{}}"#).unwrap();
        assert_eq!(go_json(&v), r#"{"b":1,"a":["x\u003cy","\u0026"],"c":{}}"#);
        assert_eq!(
            go_json_pretty(&v),
            "{\n    \"b\": 1,\n    \"a\": [\n        \"x\\u003cy\",\n        \"\\u0026\"\n    ],\n    \"c\": {}\n}"
        );
        let mut s = String::new();
        v.go_print(&mut s);
        assert_eq!(s, "map[a:[x<y &] b:1 c:map[]]");
    }
}
