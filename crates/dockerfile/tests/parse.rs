//! The Dockerfile language: parsing and substitution.

use std::collections::HashMap;

use berth_dockerfile::{Args, ExpandError, Flag, Keyword, expand, parse};
use proptest::prelude::*;

const RICH: &str = "# syntax=docker/dockerfile:1
# check=skip=all

ARG BASE=busybox
FROM ${BASE}:musl AS build
# a comment between instructions
RUN echo one \\
    # a comment inside a continuation
    && echo two
RUN --mount=type=cache,target=/root/.cache --network=none <<EOF
set -e
echo hi
EOF
copy --from=build --chmod=0755 <<-'SCRIPT' /usr/bin/start
\t#!/bin/sh
\techo $HOME
\tSCRIPT
CMD [\"sh\", \"-c\", \"echo hi\"]
ENTRYPOINT echo shell form
HEALTHCHECK NONE
RUN <<ONE cat > /one && <<\"TWO\" cat > /two
1
ONE
2
TWO
";

#[test]
fn every_part_of_a_dockerfile_is_read() {
    let df = parse(RICH, "Dockerfile").unwrap();
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(df.directives.escape, '\\');
    let kinds: Vec<(Keyword, usize)> =
        df.instructions.iter().map(|i| (i.keyword, i.line)).collect();
    assert_eq!(
        kinds,
        [
            (Keyword::Arg, 4),
            (Keyword::From, 5),
            (Keyword::Run, 7),
            (Keyword::Run, 10),
            (Keyword::Copy, 14),
            (Keyword::Cmd, 18),
            (Keyword::Entrypoint, 19),
            (Keyword::Healthcheck, 20),
            (Keyword::Run, 21),
        ]
    );
    let i = &df.instructions;
    assert_eq!(i[1].args, Args::Shell("${BASE}:musl AS build".into()));
    assert_eq!(i[2].args, Args::Shell("echo one     && echo two".into()));
    assert_eq!(
        i[3].flags,
        [
            Flag { name: "mount".into(), value: Some("type=cache,target=/root/.cache".into()) },
            Flag { name: "network".into(), value: Some("none".into()) },
        ]
    );
    assert_eq!(i[3].heredocs[0].content, "set -e\necho hi\n");
    assert!(i[3].heredocs[0].expand);
    // `<<-` strips the tabs; a quoted delimiter expands nothing.
    assert_eq!(i[4].heredocs[0].name, "SCRIPT");
    assert_eq!(i[4].heredocs[0].content, "#!/bin/sh\necho $HOME\n");
    assert!(!i[4].heredocs[0].expand);
    assert_eq!(i[4].flags[0], Flag { name: "from".into(), value: Some("build".into()) });
    assert_eq!(i[5].args, Args::Exec(vec!["sh".into(), "-c".into(), "echo hi".into()]));
    assert_eq!(i[6].args, Args::Shell("echo shell form".into()));
    // Two heredocs on one line, read in order.
    let names: Vec<&str> = i[8].heredocs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["ONE", "TWO"]);
    assert_eq!(i[8].heredocs[1].content, "2\n");
}

#[test]
fn the_escape_directive_changes_the_continuation_character() {
    let text = "# escape=`\nFROM mcr.microsoft.com/windows/nanoserver\nCOPY testfile.txt c:\\\nRUN dir `\n    c:\\\n";
    let df = parse(text, "Dockerfile").unwrap();
    assert_eq!(df.directives.escape, '`');
    assert_eq!(df.instructions[1].args, Args::Shell("testfile.txt c:\\".into()));
    assert_eq!(df.instructions[2].args, Args::Shell("dir     c:\\".into()));
    // A directive after the first comment or instruction is only a comment.
    let late = parse("# a comment\n# escape=`\nRUN a `\n", "Dockerfile").unwrap();
    assert_eq!(late.directives.escape, '\\');
}

#[test]
fn errors_name_the_file_and_line() {
    let cases = [
        ("FROM busybox\n\nRUNN make\n", "Dockerfile:3: unknown instruction: RUNN"),
        ("FROM\n", "Dockerfile:1: FROM requires at least one argument"),
        ("FROM a\nRUN <<EOF\nnever ends\n", "Dockerfile:2: unterminated heredoc EOF"),
        ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token \"x\": it must be \\ or `"),
        (
            "# syntax=a\n# syntax=b\nFROM a\n",
            "Dockerfile:2: only one syntax parser directive can be used",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse(text, "Dockerfile").unwrap_err().to_string(), expected, "{text:?}");
    }
    let err = parse("FRM x\n", "Dockerfile.dev").unwrap_err();
    assert_eq!(err.to_string(), "Dockerfile.dev:1: unknown instruction: FRM");
}

#[test]
fn variables_expand_with_every_modifier() {
    let env: HashMap<&str, &str> =
        [("v", "hello.tar.gz"), ("empty", ""), ("user", "alice")].into_iter().collect();
    let lookup = |k: &str| env.get(k).map(|v| v.to_string());
    let x = |w: &str| expand(w, &lookup, '\\').unwrap();
    assert_eq!(x("$user/app"), "alice/app");
    assert_eq!(x("${user}_x"), "alice_x");
    assert_eq!(x("${nope:-fallback}"), "fallback");
    assert_eq!(x("${empty:-fallback}"), "fallback");
    assert_eq!(x("${empty-fallback}"), "");
    assert_eq!(x("${nope-fallback}"), "fallback");
    assert_eq!(x("${user:+set}"), "set");
    assert_eq!(x("${empty:+set}"), "");
    assert_eq!(x("${empty+set}"), "set");
    assert_eq!(x("${nope+set}"), "");
    assert_eq!(x("${v#*.}"), "tar.gz");
    assert_eq!(x("${v##*.}"), "gz");
    assert_eq!(x("${v%.*}"), "hello.tar");
    assert_eq!(x("${v%%.*}"), "hello");
    assert_eq!(x("${v/l/L}"), "heLlo.tar.gz");
    assert_eq!(x("${v//l/L}"), "heLLo.tar.gz");
    assert_eq!(x("${v//?ar/BAR}"), "hello.BAR.gz");
    assert_eq!(x("${nope:-${user}}"), "alice");
    assert_eq!(x("'$user' \"$user\""), "$user alice");
    assert_eq!(x("\\$user"), "$user");
    assert_eq!(x("cost: 5$"), "cost: 5$");
    assert_eq!(
        expand("${nope:?is required}", &lookup, '\\').unwrap_err(),
        ExpandError::Required { name: "nope".into(), message: "is required".into() }
    );
    assert!(expand("${user", &lookup, '\\').is_err());
    assert!(expand("\"open", &lookup, '\\').is_err());
    // With the backtick escape, a backslash is an ordinary character.
    assert_eq!(expand("c:\\$user", &lookup, '`').unwrap(), "c:\\alice");
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse(&s, "Dockerfile");
        let _ = expand(&s, &|_| Some("x".into()), '\\');
    }

    #[test]
    fn shaped_text_never_panics(
        lines in proptest::collection::vec(
            "(RUN|FROM|COPY|#|ENV|) ?(<<-?'?EOF'?|\\$\\{a[:#%/+?-]{0,2}b?\\}|--x=y|\\[\"a\"\\]|\\\\|[a-z ]{0,8}){0,4}",
            0..12,
        )
    ) {
        let text = lines.join("\n");
        let _ = parse(&text, "Dockerfile");
        for l in &lines {
            let _ = expand(l, &|_| None, '\\');
        }
    }
}
