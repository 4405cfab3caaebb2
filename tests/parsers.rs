//! Every parser of outside input, fed bounded amounts of random and mutated input: none may
//! panic (a panic fails the test) or take long. The stable-toolchain counterpart of the
//! cargo-fuzz targets in fuzz/ (which need nightly): it runs in every `cargo test`.

use std::time::{Duration, Instant};

/// xorshift64*: reproducible noise without a crate.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A mutation of `seed`: bytes flipped, inserted, deleted, or a slice repeated.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut out = seed.to_vec();
        for _ in 0..=(self.next() % 6) {
            let at = if out.is_empty() {
                0
            } else {
                (self.next() as usize) % out.len()
            };
            match self.next() % 5 {
                0 if !out.is_empty() => out[at] = self.next() as u8,
                1 => out.insert(
                    at,
                    b" :[]*!@,|/%\x00\x1b\xff-\n"[(self.next() % 16) as usize],
                ),
                2 if !out.is_empty() => {
                    out.remove(at);
                }
                3 => {
                    let end = (at + (self.next() % 16) as usize).min(out.len());
                    let piece = out[at..end].to_vec();
                    for _ in 0..(self.next() % 64) {
                        out.splice(at..at, piece.iter().copied());
                    }
                }
                _ => out.truncate(at),
            }
        }
        out
    }
}

/// Runs `parse` on `rounds` mutations of each seed and on pure noise; fails if the whole
/// run takes more than `limit` (a parser that goes quadratic shows up here).
fn hammer(name: &str, seeds: &[&[u8]], rounds: usize, parse: impl Fn(&[u8])) {
    let started = Instant::now();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for seed in seeds {
        parse(seed);
        for _ in 0..rounds {
            parse(&noise.mutate(seed));
        }
    }
    for _ in 0..rounds {
        let len = (noise.next() % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
        parse(&bytes);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{name}: {took:?}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZodWNdEGeIAzkbrxNlaWwD3xA4xIeXHk+9MNcYanEo";

#[test]
fn forward_specs() {
    let seeds: &[&[u8]] = &[
        b"8443:gitlab:443",
        b"[::1]:9000:[2001:db8::7]:6443",
        b"*:1080",
        b"0.0.0.0:80:10.0.0.5:8080",
    ];
    hammer("forward", seeds, 3000, |b| {
        let _ = flytube::forward::ForwardSpec::parse(&text(b));
    });
}

#[test]
fn settings_files() {
    let example =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/flytube.yaml.example")).unwrap();
    let seeds: &[&[u8]] = &[
        &example,
        b"relay:\n  host: a\n  port: 22\n",
        b"forwards: [{source_port: 1, target_host: h, target_port: 2}]\n",
    ];
    hammer("settings", seeds, 1500, |b| {
        let _ = flytube::config::parse_yaml(&text(b), "fuzz.yaml");
    });
}

#[test]
fn known_hosts_lines() {
    let plain = format!("relay.example,[relay.example]:2222 {ED25519}\n");
    let revoked = format!("@revoked * {ED25519} comment\n");
    let hashed =
        format!("|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= {ED25519}\n");
    let seeds: &[&[u8]] = &[
        plain.as_bytes(),
        revoked.as_bytes(),
        hashed.as_bytes(),
        b"*,!x?y [h]:* ssh-rsa AAAA\n",
    ];
    hammer("known_hosts", seeds, 3000, |b| {
        let t = text(b);
        let _ = flytube::hostkey::known_entries_for(&t, "relay.example", 2222);
        let _ = flytube::hostkey::known_entries_for(&t, "relay.example", 22);
    });
}

#[test]
fn fingerprints_and_certificates() {
    let seeds: &[&[u8]] = &[
        b"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        ED25519.as_bytes(),
    ];
    hammer("fingerprint", seeds, 3000, |b| {
        let _ = flytube::hostkey::Fingerprint::parse(&text(b));
        let _ = flytube::cert::Certificate::parse(&text(b));
        let _ = flytube::cert::public_key_type(&text(b));
    });
}

#[test]
fn proxy_handshakes_and_urls() {
    let seeds: &[&[u8]] = &[
        b"\x05\x01\x00",
        b"\x05\x01\x00\x05\x01\x00\x03\x0bexample.com\x01\xbb",
        b"\x04\x01\x00\x50\x00\x00\x00\x01user\x00host.example\x00",
        b"CONNECT db.corp:5432 HTTP/1.1\r\nHost: db.corp\r\n\r\n",
    ];
    hammer("dynamic handshake", seeds, 3000, |b| {
        let mut handshake = flytube::dynamic::Handshake::new();
        let _ = handshake.feed(b);
        let _ = flytube::dynamic::Rule::parse(&text(b));
    });
    let seeds: &[&[u8]] = &[
        b"http://user:p%40ss@proxy:3128",
        b"socks5h://[::1]:1080",
        b"HTTP/1.1 407 Auth\r\nProxy-Authenticate: Basic\r\n\r\n",
    ];
    hammer("proxy url and reply", seeds, 3000, |b| {
        let _ = flytube::proxy::ProxyUrl::parse(&text(b));
        let _ = flytube::proxy::parse_reply(b);
    });
}

#[test]
fn relay_banners_and_key_exchange_offers() {
    let seeds: &[&[u8]] = &[
        b"SSH-2.0-OpenSSH_9.6\r\n\x00\x00\x00\x2c\x04\x14",
        b"220 mail ESMTP\r\n",
    ];
    hammer("kexinit", seeds, 3000, |b| {
        let _ = flytube::diagnose::classify(b, true);
        let _ = flytube::diagnose::classify(b, false);
        let _ = flytube::diagnose::parse_kexinit(b);
    });
}
