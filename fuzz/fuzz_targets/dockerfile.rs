#![no_main]
//! Any text: the parser and the substitution never panic or hang.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth_dockerfile::parse(text, "Dockerfile");
        let _ = berth_dockerfile::expand(text, &|_| Some("x".to_owned()), '\\');
    }
});
