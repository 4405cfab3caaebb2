//! Fuzzes proxy URLs (settings, environment) and HTTP proxy replies (untrusted).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flytube::proxy::ProxyUrl::parse(&String::from_utf8_lossy(data));
    let _ = flytube::proxy::parse_reply(data);
});
