//! Fuzzes what reads key material from files: fingerprints, certificates, public keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = flytube::hostkey::Fingerprint::parse(&text);
    let _ = flytube::cert::Certificate::parse(&text);
    let _ = flytube::cert::public_key_type(&text);
    let _ = flytube::keyfile::check_private_key(std::path::Path::new("fuzz"), &text, Some("x"));
});
