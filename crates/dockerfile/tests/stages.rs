//! Stages, what they use, and what a target needs.

use std::collections::HashMap;

use berth_dockerfile::{Stages, parse};

fn stages(text: &str, args: &[(&str, &str)]) -> Result<Stages, String> {
    let df = parse(text, "Dockerfile").map_err(|e| e.to_string())?;
    let args: HashMap<String, String> =
        args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Stages::new(&df, &args, "Dockerfile").map_err(|e| e.to_string())
}

const MULTI: &str = "ARG BASE=busybox
ARG TAG
FROM ${BASE}:${TAG:-musl} AS deps
RUN echo deps
FROM deps AS build
COPY --from=deps /a /a
RUN --mount=type=cache,target=/c --mount=type=bind,from=tools,target=/t make
FROM alpine AS tools
RUN echo tools
FROM --platform=$BUILDPLATFORM scratch AS unused
FROM scratch
COPY --from=build /out /out
COPY --from=docker.io/library/busybox:musl /bin/busybox /bin/
";

#[test]
fn meta_args_expand_in_from_and_build_args_override_them() {
    let s = stages(MULTI, &[]).unwrap();
    assert_eq!(s.stages[0].base, "busybox:musl");
    assert_eq!(s.meta_args, [("BASE".into(), Some("busybox".into())), ("TAG".into(), None)]);
    let s = stages(MULTI, &[("BASE", "alpine"), ("TAG", "3.20")]).unwrap();
    assert_eq!(s.stages[0].base, "alpine:3.20");
    assert_eq!(s.stages[3].platform.as_deref(), Some(""), "BUILDPLATFORM is not a meta-ARG here");
}

#[test]
fn a_target_needs_only_what_it_uses_each_after_its_uses() {
    let s = stages(MULTI, &[]).unwrap();
    let names = |order: Vec<usize>| -> Vec<String> {
        order
            .into_iter()
            .map(|i| s.stages[i].name.clone().unwrap_or_else(|| i.to_string()))
            .collect()
    };
    // The last stage: build (which uses deps and tools), never `unused`;
    // an image in --from is not a stage.
    assert_eq!(names(s.needed(None, "Dockerfile").unwrap()), ["deps", "tools", "build", "4"]);
    assert_eq!(s.stages[1].base_stage, Some(0));
    assert_eq!(names(s.needed(Some("TOOLS"), "Dockerfile").unwrap()), ["tools"]);
    assert_eq!(
        s.needed(Some("nope"), "Dockerfile").unwrap_err().to_string(),
        "Dockerfile:1: target stage \"nope\" could not be found"
    );
}

#[test]
fn stage_errors_name_the_line() {
    let cases = [
        ("RUN true\nFROM a\n", "Dockerfile:1: no build stage in current context"),
        ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2: duplicate stage name \"x\""),
        (
            "FROM a AS 1st\n",
            "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols",
        ),
        ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
        (
            "FROM a\nCOPY --from=3 /x /x\n",
            "Dockerfile:2: invalid from flag value 3: stage 3 does not exist",
        ),
        (
            "FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nCOPY --from=one /y /y\n",
            "Dockerfile:1: circular dependency detected on stage: one",
        ),
        (
            "FROM x AS self\nCOPY --from=self /a /a\n",
            "Dockerfile:1: circular dependency detected on stage: self",
        ),
        ("ARG B\nFROM $B\n", "Dockerfile:2: base name ($B) should not be blank"),
    ];
    for (text, expected) in cases {
        assert_eq!(stages(text, &[]).unwrap_err(), expected, "{text:?}");
    }
}
