//! Fuzzes the settings file parser (the one serde_yaml call): no input may panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = flytube::config::parse_yaml(&text, "fuzz.yaml");
});
