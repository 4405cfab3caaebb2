//! Fuzzes known_hosts reading and OpenSSH-style host matching: no line may panic, for any
//! host and port.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let port = u16::from_be_bytes([data[0], data[1]]);
    let text = String::from_utf8_lossy(&data[2..]);
    let _ = flytube::hostkey::known_entries_for(&text, "relay.example", port);
    let _ = flytube::hostkey::known_entries_for(&text, "10.0.0.1", 22);
});
