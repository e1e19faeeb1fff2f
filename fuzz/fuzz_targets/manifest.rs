//! Manifest parsing must never panic, whatever the bytes and declared type.
#![no_main]

use berth_oci::{Manifest, media_type};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for declared in [None, Some(media_type::OCI_MANIFEST), Some(media_type::DOCKER_MANIFEST_LIST)] {
        if let Ok(m) = Manifest::parse(data, declared) {
            let _ = m.references();
        }
    }
});
