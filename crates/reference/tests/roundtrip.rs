//! Property tests: the same round trip the fuzz target checks, run on every
//! `cargo test`, over both arbitrary strings and strings shaped by the grammar.

use berth_reference::Reference;
use proptest::prelude::*;

fn assert_round_trip(s: &str) {
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(Reference::parse(&r.full()), Ok(r.clone()), "full form of {s:?}");
        assert_eq!(Reference::parse(&r.familiar()), Ok(r), "familiar form of {s:?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic_and_round_trip(s in "\\PC{0,80}") {
        assert_round_trip(&s);
    }

    #[test]
    fn grammar_shaped_references_parse_and_round_trip(
        domain in proptest::option::of("(localhost|[a-z0-9]{1,8}\\.[a-z]{2,4}|127\\.0\\.0\\.1)(:[0-9]{1,5})?"),
        components in proptest::collection::vec("[a-z0-9]{1,6}([._-][a-z0-9]{1,6})?", 1..4),
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
    ) {
        let mut s = components.join("/");
        if let Some(d) = &domain {
            s = format!("{d}/{s}");
        }
        if let Some(t) = &tag {
            s = format!("{s}:{t}");
        }
        let parsed = Reference::parse(&s);
        prop_assert!(parsed.is_ok(), "{s:?}: {parsed:?}");
        assert_round_trip(&s);
    }
}
