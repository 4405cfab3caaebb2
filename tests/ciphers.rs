//! Every cipher flytube offers, through the patched libssh2 (multi-block cipher calls),
//! against a real sshd allowed only that cipher: tens of MiB written in odd-sized pieces
//! come back intact both ways, with an encrypt-then-MAC MAC, with each UMAC (patch 0009:
//! sshd drops the session at the first wrong tag, "Corrupted MAC on input"), with
//! chacha20-poly1305 packets on both sides of patch 0019's Poly1305 bound, and across
//! rekeys.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::*;

/// Sends `data` through the echo tunnel in odd-sized writes (1 byte to ~64 KiB, never a
/// multiple of a cipher block) and returns what came back.
fn odd_round_trip(port: u16, data: &[u8]) -> Vec<u8> {
    let stream = connect(port);
    let mut writer = stream.try_clone().unwrap();
    let payload = data.to_vec();
    let sender = thread::spawn(move || {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut at = 0;
        while at < payload.len() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let size = ((x % 65_521) as usize | 1).min(payload.len() - at);
            writer.write_all(&payload[at..at + size]).unwrap();
            at += size;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::with_capacity(data.len());
    let mut reader = stream;
    reader.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

/// An echo tunnel (`common::echo_tunnel`) through a relay allowed only `sshd_lines`'
/// algorithms, with flytube offering `cipher` and logging it as the one negotiated.
struct Tunnel {
    _relay: Relay,
    _echo: Target,
    flytube: Flytube,
    port: u16,
}

fn tunnel_with(sshd_lines: &str, cipher: &str) -> Tunnel {
    let relay = Relay::start_with(sshd_lines);
    let (echo, port, flytube) = echo_tunnel(&relay, &["--ciphers", cipher]);
    flytube.assert_logged(&format!("cipher {cipher}"));
    Tunnel {
        _relay: relay,
        _echo: echo,
        flytube,
        port,
    }
}

/// `mib` MiB echoed through `tunnel_with`'s tunnel; asserts the data.
fn round_trip_with(sshd_lines: &str, cipher: &str, mib: usize) -> Flytube {
    let tunnel = tunnel_with(sshd_lines, cipher);
    let data = random_bytes(mib << 20, mib as u64);
    let back = odd_round_trip(tunnel.port, &data);
    assert_eq!(
        back.len(),
        data.len(),
        "{cipher}: length; flytube's log:\n{}",
        tunnel.flytube.output()
    );
    assert!(back == data, "{cipher}: the echoed bytes differ");
    tunnel.flytube
}

#[test]
fn aes256_gcm_round_trips_intact() {
    round_trip_with(
        "Ciphers aes256-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        24,
    );
}

/// aes256-ctr against a relay allowed only `mac`: the data comes back intact (every packet
/// both ways carried a tag sshd checked) and the connect line names the MAC.
fn aes256_ctr_with_mac(mac: &str, extra: &str, mib: usize) {
    let flytube = round_trip_with(
        &format!("Ciphers aes256-ctr\nMACs {mac}{extra}"),
        "aes256-ctr",
        mib,
    );
    flytube.assert_logged(&format!("cipher aes256-ctr with {mac}"));
}

#[test]
fn aes256_ctr_round_trips_intact() {
    aes256_ctr_with_mac("hmac-sha2-256", "", 24);
}

#[test]
fn aes256_ctr_with_an_encrypt_then_mac_mac_round_trips_intact() {
    aes256_ctr_with_mac("hmac-sha2-256-etm@openssh.com", "", 16);
}

#[test]
fn aes256_ctr_with_hmac_sha2_512_round_trips_intact() {
    aes256_ctr_with_mac("hmac-sha2-512", "", 8);
}

#[test]
fn chacha20_poly1305_round_trips_intact() {
    round_trip_with(
        "Ciphers chacha20-poly1305@openssh.com",
        "chacha20-poly1305@openssh.com",
        24,
    );
}

#[test]
fn chacha20_poly1305_packets_of_every_size_around_the_evp_poly1305_bound_round_trip() {
    // Patch 0019 tags packets of 256 bytes or more with libcrypto's Poly1305 and shorter
    // ones with poly1305.c. One message at a time, each awaited, so each is a packet of
    // its own: every size from 1 to 600 bytes puts the packets on both sides of the bound,
    // and sshd drops the session at the first wrong tag.
    let tunnel = tunnel_with(
        "Ciphers chacha20-poly1305@openssh.com",
        "chacha20-poly1305@openssh.com",
    );
    let mut stream = connect(tunnel.port);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let data = random_bytes(600, 19);
    for size in 1..=data.len() {
        stream.write_all(&data[..size]).unwrap();
        let mut back = vec![0; size];
        stream.read_exact(&mut back).unwrap_or_else(|e| {
            panic!(
                "{size}-byte message: {e}; flytube's log:\n{}",
                tunnel.flytube.output()
            )
        });
        assert!(
            back == data[..size],
            "{size}-byte message came back changed"
        );
    }
}

#[test]
fn rekeying_with_chacha20_poly1305_keeps_the_data_intact() {
    // Each key change makes new ChaCha20 and Poly1305 contexts for each direction.
    round_trip_with(
        "Ciphers chacha20-poly1305@openssh.com\nRekeyLimit 4M",
        "chacha20-poly1305@openssh.com",
        24,
    );
}

#[test]
fn rekeying_in_the_middle_of_a_transfer_keeps_the_data_intact() {
    // sshd rekeys every 4 MiB: a 32 MiB echo crosses several key changes each way.
    round_trip_with(
        "Ciphers aes256-gcm@openssh.com\nRekeyLimit 4M",
        "aes256-gcm@openssh.com",
        32,
    );
}

#[test]
fn rekeying_with_a_separate_mac_keeps_the_data_intact() {
    // Each key change replaces the kept, keyed HMAC context of each direction (patch 0008).
    aes256_ctr_with_mac("hmac-sha2-256-etm@openssh.com", "\nRekeyLimit 4M", 24);
}

#[test]
fn aes256_ctr_with_umac_64_etm_round_trips_intact() {
    aes256_ctr_with_mac("umac-64-etm@openssh.com", "", 16);
}

#[test]
fn aes256_ctr_with_umac_128_etm_round_trips_intact() {
    aes256_ctr_with_mac("umac-128-etm@openssh.com", "", 8);
}

#[test]
fn aes256_ctr_with_umac_64_round_trips_intact() {
    aes256_ctr_with_mac("umac-64@openssh.com", "", 8);
}

#[test]
fn aes256_ctr_with_umac_128_round_trips_intact() {
    aes256_ctr_with_mac("umac-128@openssh.com", "", 8);
}

#[test]
fn rekeying_with_umac_keeps_the_data_intact() {
    // Each key change derives new UMAC subkeys and a new pad key for each direction.
    aes256_ctr_with_mac("umac-64-etm@openssh.com", "\nRekeyLimit 4M", 24);
}

#[test]
fn aes256_ctr_gets_the_mac_ssh_gets_from_an_unrestricted_relay() {
    // sshd's default MAC list, as `ssh -R` meets it: OpenSSH's client order picks
    // umac-64-etm@openssh.com, and so does flytube (libssh2's own order would pick
    // hmac-sha2-256).
    let flytube = round_trip_with("", "aes256-ctr", 2);
    flytube.assert_logged("cipher aes256-ctr with umac-64-etm@openssh.com");
}
