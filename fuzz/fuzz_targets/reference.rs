//! Whatever the parser accepts must print to a form it parses back to the
//! same reference, in both the full and the familiar spelling.
#![no_main]

use berth_reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(r) = Reference::parse(s) else { return };
    let full = r.full();
    assert_eq!(Reference::parse(&full).as_ref(), Ok(&r), "full form {full:?} of {s:?}");
    let familiar = r.familiar();
    assert_eq!(Reference::parse(&familiar).as_ref(), Ok(&r), "familiar form {familiar:?} of {s:?}");
});
