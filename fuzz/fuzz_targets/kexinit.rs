//! Fuzzes the reading of an untrusted server's banner and key exchange offer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flytube::diagnose::classify(data, true);
    let _ = flytube::diagnose::classify(data, false);
    let _ = flytube::diagnose::parse_kexinit(data);
});
