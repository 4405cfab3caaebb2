//! SOCKS5 CONNECT (RFC 1928) with optional user/password authentication (RFC 1929). Every
//! reply has a known length, so nothing past it is read: the relay's bytes stay on the
//! socket for libssh2.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Clock, Conduit, Destination, ProxyError, ProxyUrl, Scrubber, printable, sample};

const DURING_GREETING: &str = "waiting for the answer to the SOCKS5 greeting";
const DURING_AUTH: &str = "waiting for the answer to the SOCKS5 user/password";
const DURING_REPLY: &str = "waiting for the answer to SOCKS5 CONNECT";

/// The meaning of a SOCKS5 reply code (RFC 1928 section 6).
pub fn reply_text(code: u8) -> &'static str {
    match code {
        0 => "succeeded",
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned reply code",
    }
}

/// Greets, authenticates if the URL has a user, and asks for `destination`; `Ok` with the
/// answer in words when the tunnel is open.
pub(super) fn connect<S: Conduit>(
    stream: &mut S,
    proxy: &ProxyUrl,
    destination: &Destination,
    clock: &mut Clock,
    scrub: &Scrubber,
) -> Result<String, ProxyError> {
    let credentials = proxy.credentials();
    // Offer user/password only when there is one; no authentication is always offered.
    let greeting: &[u8] = match credentials {
        Some(_) => &[5, 2, 0, 2],
        None => &[5, 1, 0],
    };
    clock.send(stream, greeting, "sending the SOCKS5 greeting")?;
    let mut choice = [0u8; 2];
    clock.receive(stream, &mut choice, DURING_GREETING, 0)?;
    if choice[0] != 5 {
        return Err(ProxyError::NotProxy {
            expected: "SOCKS5",
            seen: scrub.scrub(printable(&sample(stream, &choice, clock))),
        });
    }
    match (choice[1], credentials) {
        (0, _) => {}
        (2, Some((user, password))) => authenticate(stream, user, password, clock)?,
        (0xff, _) => {
            return Err(ProxyError::SocksNoMethod {
                offered_password: credentials.is_some(),
            });
        }
        (method, _) => return Err(ProxyError::SocksBadMethod { method }),
    }
    let request = request(destination)?;
    clock.send(stream, &request, "sending SOCKS5 CONNECT")?;
    let mut head = [0u8; 4];
    clock.receive(stream, &mut head[..2], DURING_REPLY, 0)?;
    if head[0] != 5 {
        return Err(ProxyError::Malformed(format!(
            "SOCKS5 reply version 0x{:02x}",
            head[0]
        )));
    }
    if head[1] != 0 {
        return Err(ProxyError::SocksReply {
            code: head[1],
            target: destination.to_string(),
        });
    }
    clock.receive(stream, &mut head[2..], DURING_REPLY, 2)?;
    let bound = match head[3] {
        1 => {
            let mut b = [0u8; 6];
            clock.receive(stream, &mut b, DURING_REPLY, 4)?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([b[4], b[5]])).to_string()
        }
        4 => {
            let mut b = [0u8; 18];
            clock.receive(stream, &mut b, DURING_REPLY, 4)?;
            let octets: [u8; 16] = b[..16].try_into().unwrap_or_default();
            let ip = Ipv6Addr::from(octets);
            SocketAddr::new(IpAddr::V6(ip), u16::from_be_bytes([b[16], b[17]])).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            clock.receive(stream, &mut len, DURING_REPLY, 4)?;
            let mut b = vec![0u8; usize::from(len[0]) + 2];
            clock.receive(stream, &mut b, DURING_REPLY, 5)?;
            let port = u16::from_be_bytes([b[b.len() - 2], b[b.len() - 1]]);
            format!("{}:{port}", printable(&b[..b.len() - 2]))
        }
        other => {
            return Err(ProxyError::Malformed(format!(
                "SOCKS5 reply address type 0x{other:02x}"
            )));
        }
    };
    Ok(format!("SOCKS5 succeeded (proxy bound {bound})"))
}

/// RFC 1929: `01 ULEN UNAME PLEN PASSWD` -> `01 00`.
fn authenticate<S: Conduit>(
    stream: &mut S,
    user: &str,
    password: &str,
    clock: &mut Clock,
) -> Result<(), ProxyError> {
    // Lengths were checked when the URL was parsed.
    let mut message = Vec::with_capacity(3 + user.len() + password.len());
    message.push(1);
    message.push(user.len().min(255) as u8);
    message.extend_from_slice(user.as_bytes());
    message.push(password.len().min(255) as u8);
    message.extend_from_slice(password.as_bytes());
    let sent = clock.send(stream, &message, "sending the SOCKS5 user/password");
    message.fill(0);
    sent?;
    let mut status = [0u8; 2];
    clock.receive(stream, &mut status, DURING_AUTH, 0)?;
    // Version 1 per RFC 1929; some servers answer with 5.
    if status[0] != 1 && status[0] != 5 {
        return Err(ProxyError::Malformed(format!(
            "SOCKS5 user/password answer 0x{:02x} 0x{:02x}",
            status[0], status[1]
        )));
    }
    if status[1] != 0 {
        return Err(ProxyError::SocksAuth {
            user: user.to_string(),
            status: status[1],
        });
    }
    Ok(())
}

/// `05 01 00 ATYP DST.ADDR DST.PORT`.
fn request(destination: &Destination) -> Result<Vec<u8>, ProxyError> {
    let mut request = vec![5, 1, 0];
    let port = match destination {
        Destination::Addr(addr) => {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    request.push(1);
                    request.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    request.push(4);
                    request.extend_from_slice(&ip.octets());
                }
            }
            addr.port()
        }
        Destination::Name(name, port) => {
            let len = u8::try_from(name.len()).map_err(|_| ProxyError::Io {
                during: "building the SOCKS5 request",
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the relay name is longer than 255 bytes",
                ),
            })?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(name.as_bytes());
            *port
        }
    };
    request.extend_from_slice(&port.to_be_bytes());
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::super::fake::Fake;
    use super::super::{Opened, ProxyError, ProxyUrl, open};
    use super::*;
    use std::time::Duration;

    fn run(
        url: &str,
        destination: &Destination,
        answer: &[u8],
    ) -> (Result<Opened, ProxyError>, Fake) {
        let proxy = ProxyUrl::parse(url).unwrap();
        let mut fake = Fake::new(answer);
        let result = open(&mut fake, &proxy, destination, Duration::from_secs(5));
        (result, fake)
    }

    fn name() -> Destination {
        Destination::Name("relay.example".into(), 22)
    }

    #[test]
    fn no_auth_with_a_name_for_socks5h() {
        let answer = [5, 0, 5, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90, b'S', b'S', b'H'];
        let (result, fake) = run("socks5h://proxy:1080", &name(), &answer);
        assert_eq!(
            result.unwrap().answer,
            "SOCKS5 succeeded (proxy bound 10.0.0.1:8080)"
        );
        let mut expected = vec![5, 1, 0, 5, 1, 0, 3, 13];
        expected.extend_from_slice(b"relay.example");
        expected.extend_from_slice(&[0, 22]);
        assert_eq!(fake.sent, expected);
        // The relay's bytes after the reply are left for the tunnel.
        assert_eq!(&fake.answer[fake.at..], b"SSH");
    }

    #[test]
    fn user_password_with_addresses() {
        let v4: SocketAddr = "192.0.2.7:2222".parse().unwrap();
        let answer = [5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let (result, fake) = run(
            "socks5://bob:s%3Acret@proxy:1",
            &Destination::Addr(v4),
            &answer,
        );
        result.unwrap();
        let mut expected = vec![5, 2, 0, 2, 1, 3];
        expected.extend_from_slice(b"bob");
        expected.push(6);
        expected.extend_from_slice(b"s:cret");
        expected.extend_from_slice(&[5, 1, 0, 1, 192, 0, 2, 7, 0x08, 0xae]);
        assert_eq!(fake.sent, expected);
        let v6: SocketAddr = "[2001:db8::1]:22".parse().unwrap();
        let mut answer = vec![5, 0, 5, 0, 0, 4];
        answer.extend_from_slice(&[0; 18]);
        let (result, fake) = run("socks5://proxy:1", &Destination::Addr(v6), &answer);
        result.unwrap();
        assert_eq!(&fake.sent[3..7], &[5, 1, 0, 4]);
        assert_eq!(fake.sent.len(), 3 + 4 + 16 + 2);
        // A bound name.
        let answer = [5, 0, 5, 0, 0, 3, 1, b'p', 0, 1];
        let (result, _) = run("socks5://proxy:1", &name(), &answer);
        assert!(result.unwrap().answer.contains("bound p:1"));
    }

    #[test]
    fn reply_codes_in_words() {
        for code in 1..=9u8 {
            let answer = [5, 0, 5, code];
            let err = run("socks5h://proxy:1", &name(), &answer).0.unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(reply_text(code)) && text.contains("relay.example:22"),
                "{text}"
            );
            assert_eq!(err.is_forbidden(), code == 2, "{code}");
            assert_eq!(err.is_upstream(), matches!(code, 1 | 3..=6), "{code}");
        }
        assert_eq!(reply_text(6), "TTL expired");
        assert_eq!(reply_text(9), "unassigned reply code");
    }

    #[test]
    fn authentication_failures() {
        let err = run("socks5://bob:hunter2@proxy:1", &name(), &[5, 2, 1, 1])
            .0
            .unwrap_err();
        assert!(err.is_auth());
        let text = err.to_string();
        assert!(
            text.contains("rejected the password of user \"bob\""),
            "{text}"
        );
        assert!(!text.contains("hunter2"));
        let err = run("socks5://proxy:1", &name(), &[5, 0xff]).0.unwrap_err();
        assert!(err.is_auth());
        assert!(err.to_string().contains("authentication required"), "{err}");
        let err = run("socks5://u:p@proxy:1", &name(), &[5, 0xff])
            .0
            .unwrap_err();
        assert!(!err.is_auth());
        let err = run("socks5://proxy:1", &name(), &[5, 2]).0.unwrap_err();
        assert!(
            matches!(err, ProxyError::SocksBadMethod { method: 2 }),
            "{err}"
        );
    }

    #[test]
    fn foreign_and_broken_answers() {
        let err = run(
            "socks5://proxy:1",
            &name(),
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
        )
        .0
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("does not speak SOCKS5"), "{text}");
        assert!(text.contains("\"HTTP/1.1 400 Bad Request\""), "{text}");
        assert!(text.contains("use http://"), "{text}");
        let err = run("socks5://proxy:1", &name(), &[]).0.unwrap_err();
        assert!(
            matches!(err, ProxyError::Closed { received: 0, .. }),
            "{err}"
        );
        let err = run("socks5://proxy:1", &name(), &[5, 0, 5, 0, 0])
            .0
            .unwrap_err();
        assert!(matches!(err, ProxyError::Closed { .. }), "{err}");
        let err = run("socks5://proxy:1", &name(), &[5, 0, 4, 0])
            .0
            .unwrap_err();
        assert!(matches!(err, ProxyError::Malformed(_)), "{err}");
        let err = run("socks5://proxy:1", &name(), &[5, 0, 5, 0, 0, 9])
            .0
            .unwrap_err();
        assert!(err.to_string().contains("address type 0x09"), "{err}");
    }
}
