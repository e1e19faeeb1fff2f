//! Word splitting for ENV/LABEL/ARG, and COPY's source patterns.

use berth_dockerfile::{PathPattern, expand, split_words};

#[test]
fn words_split_at_unquoted_space_and_keep_their_quotes_for_expansion() {
    let words = split_words(r#"a="x y" b=$a c='$a z' d=one\ two"#, '\\');
    assert_eq!(words, [r#"a="x y""#, "b=$a", "c='$a z'", r"d=one\ two"]);
    let lookup = |k: &str| (k == "a").then(|| "old".to_owned());
    let expanded: Vec<String> = words.iter().map(|w| expand(w, &lookup, '\\').unwrap()).collect();
    assert_eq!(expanded, ["a=x y", "b=old", "c=$a z", "d=one two"]);
    assert_eq!(split_words("  spaced\tout  ", '\\'), ["spaced", "out"]);
    assert!(split_words("", '\\').is_empty());
    // The backtick escape (`# escape=``).
    assert_eq!(split_words("a=x` y b", '`'), ["a=x` y", "b"]);
}

#[test]
fn source_patterns_match_component_by_component() {
    let p = PathPattern::new("src/*.rs").unwrap();
    assert!(p.matches("src/main.rs"));
    assert!(!p.matches("src/sub/main.rs"), "* never crosses a /");
    assert!(!p.matches("main.rs"));
    assert_eq!(p.depth(), 2);
    assert!(PathPattern::new("./a?[0-9]").unwrap().matches("ab7"));
    assert!(PathPattern::is_pattern("*.txt"));
    assert!(!PathPattern::is_pattern("plain/path"));
    assert!(PathPattern::new("bad[").is_err());
}
