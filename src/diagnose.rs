//! Saying what went wrong when the SSH handshake fails. libssh2 reports one code for "no
//! algorithm in common" and for "the peer sent garbage", and one timeout for "silent port"
//! and "some other protocol". Only on failure, flytube opens a second, short connection,
//! sends its banner, reads what the server says (its banner and key exchange offer) and
//! compares that with what flytube offers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::text::escape_untrusted;

/// How long the diagnostic connection may take in all.
const PROBE_TIME: Duration = Duration::from_secs(5);
/// The most the probe reads: a banner and one key exchange packet fit easily.
const PROBE_BYTES: usize = 64 * 1024;
/// The version string the probe sends (RFC 4253 section 4.2).
const PROBE_BANNER: &[u8] = b"SSH-2.0-flytube_diagnose\r\n";
/// SSH_MSG_KEXINIT.
const MSG_KEXINIT: u8 = 20;

/// What a server offers in its SSH_MSG_KEXINIT (RFC 4253 section 7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KexOffer {
    /// Key exchange methods.
    pub kex: Vec<String>,
    /// Host key algorithms.
    pub host_key: Vec<String>,
    /// Ciphers, client to server.
    pub ciphers: Vec<String>,
    /// MACs, client to server.
    pub macs: Vec<String>,
}

/// What the diagnostic connection saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nothing within the time.
    Silence,
    /// The server closed without a word.
    Closed,
    /// Text that is not an SSH version line (escaped, first line only).
    NotSsh(String),
    /// An SSH banner, then something that is not a key exchange offer.
    Garbage {
        /// The server's version line.
        banner: String,
    },
    /// An SSH banner and its key exchange offer.
    Offer {
        /// The server's version line.
        banner: String,
        /// The offer.
        offer: KexOffer,
    },
}

/// Parses the first packet after the banner as an unencrypted SSH_MSG_KEXINIT. Bounded and
/// panic-free on any input: it comes from a server we do not trust yet.
pub fn parse_kexinit(packet: &[u8]) -> Result<KexOffer, String> {
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).filter(|e| *e <= packet.len());
        let end = end.ok_or_else(|| "truncated key exchange packet".to_string())?;
        let slice = &packet[*at..end];
        *at = end;
        Ok(slice)
    };
    let mut at = 0;
    let length = u32::from_be_bytes(take(&mut at, 4)?.try_into().unwrap_or_default()) as usize;
    if !(16..=35_000).contains(&length) {
        return Err(format!("packet length {length} is not an SSH packet"));
    }
    let _padding = take(&mut at, 1)?;
    if take(&mut at, 1)?[0] != MSG_KEXINIT {
        return Err("the first packet is not a key exchange offer".into());
    }
    take(&mut at, 16)?; // cookie
    let mut lists = Vec::new();
    for _ in 0..5 {
        let n = u32::from_be_bytes(take(&mut at, 4)?.try_into().unwrap_or_default()) as usize;
        let raw = take(&mut at, n)?;
        let text = std::str::from_utf8(raw).map_err(|_| "a name list is not text".to_string())?;
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a name list holds unprintable bytes".into());
        }
        lists.push(
            text.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        );
    }
    let mut lists = lists.into_iter();
    let mut next = || lists.next().unwrap_or_default();
    let kex = next();
    let host_key = next();
    let ciphers = next();
    let _ciphers_server_to_client = next();
    let macs = next();
    // The server-to-client lists follow; the client-to-server ones suffice for a diagnosis.
    Ok(KexOffer {
        kex,
        host_key,
        ciphers,
        macs,
    })
}

/// Splits what a server sent into its version line and the rest; `None` until a full line
/// starting with `SSH-` arrived (lines before it are allowed by RFC 4253 section 4.2).
fn split_banner(bytes: &[u8]) -> Option<(String, &[u8])> {
    let mut start = 0;
    while let Some(end) = bytes[start..].iter().position(|b| *b == b'\n') {
        let line = &bytes[start..start + end];
        let rest = &bytes[start + end + 1..];
        if line.starts_with(b"SSH-") {
            let text = String::from_utf8_lossy(line).trim_end().to_string();
            return Some((text, rest));
        }
        start += end + 1;
    }
    None
}

/// Classifies what a server sent (pure, for tests and fuzzing).
pub fn classify(bytes: &[u8], closed: bool) -> Option<Seen> {
    if let Some((banner, rest)) = split_banner(bytes) {
        if rest.len() < 6 && !closed {
            return None;
        }
        let length = rest
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap_or_default()) as usize);
        if let Some(length) = length
            && rest.len() < length + 4
            && length <= 35_000
            && !closed
        {
            return None;
        }
        return Some(match parse_kexinit(rest) {
            Ok(offer) => Seen::Offer { banner, offer },
            Err(_) => Seen::Garbage { banner },
        });
    }
    let first_line_done = bytes.contains(&b'\n') || bytes.len() >= 256;
    if !bytes.is_empty() && (first_line_done || closed) {
        let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(&line[..line.len().min(120)]);
        return Some(Seen::NotSsh(escape_untrusted(line.trim_end()).into_owned()));
    }
    closed.then_some(Seen::Closed)
}

/// Opens the diagnostic connection to `addr` and reports what the server said.
pub fn probe(addr: SocketAddr) -> Seen {
    let deadline = Instant::now() + PROBE_TIME;
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, PROBE_TIME) else {
        return Seen::Closed;
    };
    let _ = stream.write_all(PROBE_BANNER);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || bytes.len() >= PROBE_BYTES {
            return classify(&bytes, true).unwrap_or(Seen::Silence);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => return classify(&bytes, true).unwrap_or(Seen::Closed),
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                if let Some(seen) = classify(&bytes, false) {
                    return seen;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return classify(&bytes, true).unwrap_or(Seen::Closed);
            }
            Err(_) if bytes.is_empty() => return Seen::Silence,
            Err(_) => return classify(&bytes, true).unwrap_or(Seen::Silence),
        }
    }
}

/// What flytube offers, to compare with the server's offer.
pub struct OurOffer<'a> {
    /// Ciphers, in order.
    pub ciphers: &'a [String],
    /// Host key algorithms, comma-separated as libssh2 takes them.
    pub host_keys: &'a str,
    /// MACs, comma-separated as libssh2 takes them.
    pub macs: &'a str,
}

/// One sentence on why the handshake with `relay` failed, given what the probe saw.
pub fn explain(relay: &str, seen: &Seen, ours: &OurOffer) -> String {
    match seen {
        Seen::Silence => format!(
            "{relay} accepted the TCP connection but sent nothing: it is not an SSH server \
             (an HTTP or TLS port waits for the client to speak first), or a proxy there has no \
             working upstream"
        ),
        Seen::Closed => format!(
            "{relay} closed the connection before sending an SSH banner (sshd's MaxStartups \
             refusing, a load balancer with no healthy backend, or a firewall that accepts \
             and then drops)"
        ),
        Seen::NotSsh(line) => format!(
            "{relay} is not an SSH server: it answered {line:?} where an SSH banner \
             (SSH-2.0-...) was expected; check the relay port"
        ),
        Seen::Garbage { banner } => format!(
            "{relay} sent an SSH banner ({}) and then bytes that are not an SSH key exchange: \
             not a working SSH server, or something in the path rewrites the stream",
            escape_untrusted(banner)
        ),
        Seen::Offer { banner, offer } => explain_offer(relay, banner, offer, ours),
    }
}

fn explain_offer(relay: &str, banner: &str, offer: &KexOffer, ours: &OurOffer) -> String {
    let banner = escape_untrusted(banner);
    if !ours.ciphers.iter().any(|c| offer.ciphers.contains(c)) {
        return format!(
            "no cipher in common: {relay} ({banner}) offers {}, flytube offers {}; enable one \
             of flytube's on the relay (sshd_config Ciphers) or change --ciphers",
            offer.ciphers.join(","),
            ours.ciphers.join(",")
        );
    }
    let host_keys: Vec<&str> = ours.host_keys.split(',').collect();
    if !host_keys
        .iter()
        .any(|h| offer.host_key.iter().any(|o| o == h))
    {
        return format!(
            "no host key type in common: {relay} ({banner}) offers {}, flytube accepts {}",
            offer.host_key.join(","),
            ours.host_keys
        );
    }
    // libssh2 agrees on a MAC for every cipher but AES-GCM, whose own tag replaces it.
    let cipher = ours.ciphers.iter().find(|c| offer.ciphers.contains(c));
    let needs_mac = cipher.is_some_and(|c| !c.contains("-gcm@"));
    let macs: Vec<&str> = ours.macs.split(',').filter(|m| !m.is_empty()).collect();
    if needs_mac && !macs.is_empty() && !macs.iter().any(|m| offer.macs.iter().any(|o| o == m)) {
        return format!(
            "no MAC in common: {relay} ({banner}) offers {}, flytube offers {} (OpenSSH's \
             default MACs); enable one of them on the relay (sshd_config MACs) or use an \
             AES-GCM cipher",
            offer.macs.join(","),
            ours.macs
        );
    }
    format!(
        "no key exchange method in common with {relay} ({banner}), which offers {}",
        offer.kex.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kexinit(lists: [&str; 5]) -> Vec<u8> {
        let mut body = vec![MSG_KEXINIT];
        body.extend_from_slice(&[7u8; 16]);
        for list in lists {
            body.extend_from_slice(&(list.len() as u32).to_be_bytes());
            body.extend_from_slice(list.as_bytes());
        }
        let mut packet = ((body.len() + 1 + 4) as u32).to_be_bytes().to_vec();
        packet.push(4);
        packet.extend(body);
        packet.extend_from_slice(&[0u8; 4]);
        packet
    }

    #[test]
    fn reads_an_offer_and_names_the_missing_cipher() {
        let mut bytes = b"SSH-2.0-OpenSSH_9.2\r\n".to_vec();
        bytes.extend(kexinit([
            "curve25519-sha256",
            "rsa-sha2-512",
            "aes128-ctr",
            "aes128-ctr",
            "hmac-sha2-256",
        ]));
        let seen = classify(&bytes, false).expect("complete");
        let ciphers = vec!["aes256-gcm@openssh.com".to_string()];
        let ours = OurOffer {
            ciphers: &ciphers,
            host_keys: "ssh-ed25519,rsa-sha2-512",
            macs: "umac-64-etm@openssh.com,hmac-sha2-256",
        };
        let text = explain("r:22", &seen, &ours);
        assert!(text.starts_with("no cipher in common"), "{text}");
        assert!(text.contains("offers aes128-ctr"), "{text}");
    }

    #[test]
    fn names_the_missing_mac_unless_the_cipher_needs_none() {
        let mut bytes = b"SSH-2.0-OpenSSH_9.2\r\n".to_vec();
        bytes.extend(kexinit([
            "sntrup761x25519-sha512@openssh.com",
            "ssh-ed25519",
            "aes256-ctr,aes256-gcm@openssh.com",
            "aes256-ctr,aes256-gcm@openssh.com",
            "hmac-md5,hmac-sha1-96",
        ]));
        let seen = classify(&bytes, false).expect("complete");
        let Seen::Offer { offer, .. } = &seen else {
            panic!("{seen:?}");
        };
        assert_eq!(offer.macs, ["hmac-md5", "hmac-sha1-96"]);
        let ctr = vec!["aes256-ctr".to_string()];
        let ours = OurOffer {
            ciphers: &ctr,
            host_keys: "ssh-ed25519",
            macs: "umac-64-etm@openssh.com,hmac-sha2-256",
        };
        let text = explain("r:22", &seen, &ours);
        assert!(text.starts_with("no MAC in common"), "{text}");
        assert!(text.contains("offers hmac-md5,hmac-sha1-96"), "{text}");
        assert!(text.contains("flytube offers umac-64-etm@openssh.com,hmac-sha2-256"));
        // AES-GCM carries its own tag: libssh2 agrees on no MAC for it.
        let gcm = vec!["aes256-gcm@openssh.com".to_string()];
        let ours = OurOffer {
            ciphers: &gcm,
            ..ours
        };
        let text = explain("r:22", &seen, &ours);
        assert!(text.starts_with("no key exchange method"), "{text}");
    }

    #[test]
    fn tells_other_protocols_silence_and_garbage_apart() {
        assert_eq!(classify(b"", false), None);
        assert_eq!(classify(b"", true), Some(Seen::Closed));
        assert!(matches!(
            classify(b"220 mail ESMTP\r\n", false),
            Some(Seen::NotSsh(l)) if l == "220 mail ESMTP"
        ));
        let mut garbage = b"SSH-2.0-Fake\r\n".to_vec();
        garbage.extend_from_slice(&[0xff; 64]);
        assert!(matches!(
            classify(&garbage, true),
            Some(Seen::Garbage { .. })
        ));
        assert!(matches!(
            classify(b"HTTP/1.1 400 Bad\x1b[2J\r\n", true),
            Some(Seen::NotSsh(l)) if l.contains("\\u{1b}")
        ));
    }

    #[test]
    fn never_panics_on_noise() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..2000 {
            let mut bytes = b"SSH-2.0-x\r\n".to_vec();
            for _ in 0..(round % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            let _ = classify(&bytes, round % 2 == 0);
            let _ = parse_kexinit(&bytes[11..]);
        }
    }
}
