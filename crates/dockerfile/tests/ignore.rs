//! `.dockerignore` with docker's rules.

use berth_dockerfile::Ignore;

#[test]
fn patterns_are_anchored_and_the_last_match_wins() {
    let ignore = Ignore::parse(
        "# build output\n\
         /target\n\
         *.md\n\
         !README.md\n\
         **/*.log\n\
         docs/**/draft?\n\
         vendor\n\
         !vendor/keep/**\n\
         tmp[0-9]\n\
         ./secret/../private\n",
    )
    .unwrap();
    let cases = [
        ("target", true),
        ("target/debug/berth", true), // what a matched directory holds
        ("src/target", false),        // anchored at the root
        ("CHANGES.md", true),
        ("README.md", false),      // the exception comes later
        ("docs/intro.md", false),  // `*` stays in one component
        ("a/b/c/trace.log", true), // `**` spans directories
        ("trace.log", true),       // ... including none
        ("docs/x/y/draft1", true),
        ("docs/draft12", false),
        ("vendor/lib.rs", true),
        ("vendor/keep/a/b", false),
        ("tmp3", true),
        ("tmpx", false),
        ("private/key", true),
        ("secret", false),
        ("", false),
    ];
    for (path, ignored) in cases {
        assert_eq!(ignore.is_ignored(path), ignored, "{path}");
    }
    // An ignored directory is entered only where an exception could reach.
    assert!(ignore.may_reinclude_under("vendor"));
    assert!(ignore.may_reinclude_under("vendor/keep/deep"));
    assert!(!ignore.may_reinclude_under("target"));
    assert!(!ignore.may_reinclude_under("vendor/other"));
}

#[test]
fn exceptions_reach_into_directories_and_bad_lines_are_named() {
    let ignore = Ignore::parse("*\n!src\n").unwrap();
    assert!(ignore.is_ignored("Cargo.lock"));
    assert!(!ignore.is_ignored("src/main.rs"), "an exception on a directory covers it");
    assert!(ignore.may_reinclude_under("src"));
    let everything = Ignore::parse("**\n!**/*.rs\n").unwrap();
    assert!(everything.may_reinclude_under("any/where"));
    assert!(!everything.is_ignored("x/y.rs"));
    let err = Ignore::parse("ok\n[abc\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.to_string().starts_with(".dockerignore:2:"), "{err}");
    assert!(!Ignore::parse("/\n.\n").unwrap().is_ignored("anything"));
}
