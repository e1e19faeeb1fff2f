//! Owner-written overviews: Markdown rendered, then sanitised.
//!
//! Rendering turns raw HTML in the source into text (it is shown, never
//! interpreted) and neutralises link and image targets whose scheme is not
//! http, https or mailto. Sanitising then walks the rendered HTML and keeps
//! only an allowlist of tags and attributes, checking every URL again, so
//! nothing the renderer might let through (a `<script>`, an `onerror=`, a
//! `javascript:` link) reaches the page.

use pulldown_cmark::{Event, Options, Parser, Tag};

/// The longest overview rendered (Docker Hub's limit on full descriptions).
const SOURCE_MAX: usize = 25_000;

pub fn render(source: &str) -> String {
    let source: String = source.chars().take(SOURCE_MAX).collect();
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(&source, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_url(&dest_url).into(), title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Image { link_type, dest_url: safe_url(&dest_url).into(), title, id })
        }
        other => other,
    });
    let mut html = String::with_capacity(source.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    sanitise(&html)
}

/// `url` if its scheme is allowed (or it has none: a relative link), else `#`.
pub fn safe_url(url: &str) -> String {
    // Browsers ignore control characters and spaces inside a scheme
    // (`java\tscript:`), so judge the URL as they would read it.
    let squeezed: String = url.chars().filter(|c| !c.is_control() && *c != ' ').collect();
    let lower = squeezed.to_ascii_lowercase();
    let scheme_end = lower.find(':');
    let path_start = lower.find(['/', '?', '#']);
    let has_scheme = match (scheme_end, path_start) {
        (Some(c), Some(p)) => c < p,
        (Some(_), None) => true,
        _ => false,
    };
    if !has_scheme
        || lower.starts_with("http:")
        || lower.starts_with("https:")
        || lower.starts_with("mailto:")
    {
        if lower.starts_with("&") || lower.contains("&#") {
            return "#".to_owned();
        }
        url.to_owned()
    } else {
        "#".to_owned()
    }
}

const TAGS: &[&str] = &[
    "a",
    "blockquote",
    "br",
    "code",
    "del",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "img",
    "input",
    "li",
    "ol",
    "p",
    "pre",
    "strong",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
    "sup",
    "section",
];

/// The attributes kept, per tag.
fn allowed_attribute(tag: &str, name: &str) -> bool {
    matches!(
        (tag, name),
        ("a", "href" | "title")
            | ("img", "src" | "alt" | "title")
            | ("code", "class")
            | ("ol", "start")
            | ("input", "type" | "checked" | "disabled")
    )
}

/// Keeps only allowlisted tags and attributes of rendered HTML. Text is
/// already escaped by the renderer, so every `<` starts a tag.
pub fn sanitise(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = find_tag_end(after) else {
            // An unterminated tag: show it as text.
            out.push_str(&escape(after));
            return out;
        };
        let tag = &after[1..end];
        out.push_str(&clean_tag(tag));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The index of the `>` closing the tag at the start of `s` (quotes respected).
fn find_tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One tag's text (between `<` and `>`), rebuilt from what is allowed.
fn clean_tag(tag: &str) -> String {
    let closing = tag.starts_with('/');
    let body = tag.trim_start_matches('/').trim_end_matches('/');
    let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
    let name = body[..name_end].to_ascii_lowercase();
    if !TAGS.contains(&name.as_str()) {
        return String::new();
    }
    if closing {
        return format!("</{name}>");
    }
    let mut out = format!("<{name}");
    for (attr, value) in attributes(&body[name_end..]) {
        let attr = attr.to_ascii_lowercase();
        if !allowed_attribute(&name, &attr) {
            continue;
        }
        let value = match attr.as_str() {
            "href" | "src" => {
                let decoded = value.replace("&amp;", "&");
                escape(&safe_url(&decoded))
            }
            "class" if !value.starts_with("language-") => continue,
            "type" if value != "checkbox" => continue,
            _ => escape(&value.replace("&amp;", "&").replace("&quot;", "\"")),
        };
        out.push_str(&format!(" {attr}=\"{value}\""));
    }
    if name == "a" {
        out.push_str(" rel=\"nofollow noopener noreferrer\"");
    }
    out.push('>');
    out
}

/// `name="value"` pairs (also bare names and single quotes).
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    let b = s;
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut j = i;
        while let Some(&(k, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            j = k + c.len_utf8();
            chars.next();
        }
        let name = b[i..j].to_owned();
        if chars.peek().map(|&(_, c)| c) != Some('=') {
            out.push((name, String::new()));
            continue;
        }
        chars.next();
        let value = match chars.peek().map(|&(_, c)| c) {
            Some(q @ ('"' | '\'')) => {
                chars.next();
                let mut v = String::new();
                for (_, c) in chars.by_ref() {
                    if c == q {
                        break;
                    }
                    v.push(c);
                }
                v
            }
            _ => {
                let mut v = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    v.push(c);
                    chars.next();
                }
                v
            }
        };
        if name.is_empty() {
            break;
        }
        out.push((name, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_shown_not_run() {
        let html = render("<img src=x onerror=alert(1)> and <script>alert(2)</script>");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    }

    #[test]
    fn dangerous_links_are_neutralised() {
        for src in [
            "[x](javascript:alert(1))",
            "[x](JavaScript:alert(1))",
            "[x](java\tscript:alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
            "[x](vbscript:msgbox)",
            "![i](javascript:alert(1))",
            "<javascript:alert(1)>",
        ] {
            let html = render(src).to_lowercase();
            // Only the text may still read so; no link or image goes there.
            for attr in ["href=\"", "src=\""] {
                for bad in ["javascript", "java\tscript", "data:", "vbscript"] {
                    assert!(!html.contains(&format!("{attr}{bad}")), "{src}: {html}");
                }
            }
            if html.contains("<a ") || html.contains("<img ") {
                assert!(html.contains("=\"#\""), "{src}: {html}");
            }
        }
        let html = render("[ok](https://example.org/a?b=1&c=2) [rel](../x) [m](mailto:a@b)");
        assert!(html.contains(r#"href="https://example.org/a?b=1&amp;c=2""#), "{html}");
        assert!(html.contains(r#"href="../x""#), "{html}");
        assert!(html.contains(r#"href="mailto:a@b""#), "{html}");
        assert!(html.contains(r#"rel="nofollow noopener noreferrer""#), "{html}");
    }

    #[test]
    fn markdown_renders() {
        let html = render("# Title\n\n*em* **strong** `code`\n\n- a\n- b\n\n```sh\nls\n```\n");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<em>em</em>") && html.contains("<strong>strong</strong>"));
        assert!(html.contains("<li>a</li>"));
        assert!(html.contains(r#"<code class="language-sh">ls"#), "{html}");
    }

    #[test]
    fn the_sanitiser_drops_what_is_not_allowed() {
        let dirty = r#"<p onclick="x()">hi<script>alert(1)</script><a href="javascript:x" onmouseover='y'>l</a><img src=x onerror=alert(1)><iframe src="https://e"></iframe><code class="evil">c</code></p>"#;
        let clean = sanitise(dirty);
        assert_eq!(
            clean,
            r##"<p>hialert(1)<a href="#" rel="nofollow noopener noreferrer">l</a><img src="x">
<code>c</code></p>"##
                .replace('\n', "")
        );
    }
}
