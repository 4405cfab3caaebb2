//! The answers a proxy client understands: one `Outcome`, encoded for SOCKS5, SOCKS4/4a or
//! HTTP CONNECT, so every failure reaches curl and friends as a code they can print.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::handshake::Protocol;

/// SOCKS5 "no acceptable methods" (RFC 1928 §3): the only answer to a greeting without
/// method 00; the client must then close.
pub const SOCKS5_NO_METHOD: [u8; 2] = [0x05, 0xFF];
/// SOCKS5 "no authentication required" (RFC 1928 §3).
pub const SOCKS5_NO_AUTH: [u8; 2] = [0x05, 0x00];

/// How a request ended, as far as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Connected; `bound` is flytube's end of the target connection.
    Granted {
        /// Local address of the socket to the target.
        bound: SocketAddr,
    },
    /// The allow-list refused the destination.
    NotAllowed,
    /// The name did not resolve.
    NameNotFound,
    /// The host could not be reached (EHOSTUNREACH).
    HostUnreachable,
    /// The network could not be reached (ENETUNREACH).
    NetworkUnreachable,
    /// The target refused the connection.
    Refused,
    /// Connecting to the target timed out.
    TimedOut,
    /// The client did not finish its request within the handshake timeout.
    ClientTimeout,
    /// The request could not be parsed, or ended early.
    Malformed,
    /// The request was larger than the limits allow.
    TooLarge,
    /// A SOCKS command other than CONNECT, or an HTTP method other than CONNECT.
    CommandNotSupported,
    /// A SOCKS5 address type other than IPv4, domain name or IPv6.
    AddressTypeNotSupported,
    /// Anything else.
    Failure,
}

impl Outcome {
    /// The answer for a failed dial, from `DialError::kind()` (`NotFound` is how `net`
    /// reports a name that did not resolve).
    pub fn from_dial_kind(kind: io::ErrorKind) -> Outcome {
        match kind {
            io::ErrorKind::ConnectionRefused => Outcome::Refused,
            io::ErrorKind::TimedOut => Outcome::TimedOut,
            io::ErrorKind::NotFound => Outcome::NameNotFound,
            io::ErrorKind::HostUnreachable => Outcome::HostUnreachable,
            io::ErrorKind::NetworkUnreachable => Outcome::NetworkUnreachable,
            _ => Outcome::Failure,
        }
    }

    /// Short lower-case words for the log: "granted", "not allowed", ...
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Granted { .. } => "granted",
            Outcome::NotAllowed => "not allowed",
            Outcome::NameNotFound => "name not found",
            Outcome::HostUnreachable => "host unreachable",
            Outcome::NetworkUnreachable => "network unreachable",
            Outcome::Refused => "connection refused",
            Outcome::TimedOut => "connect timed out",
            Outcome::ClientTimeout => "handshake timed out",
            Outcome::Malformed => "malformed request",
            Outcome::TooLarge => "request too large",
            Outcome::CommandNotSupported => "command not supported",
            Outcome::AddressTypeNotSupported => "address type not supported",
            Outcome::Failure => "general failure",
        }
    }

    /// The SOCKS5 REP field (RFC 1928 §6). 06 "TTL expired" is what clients print for a
    /// timeout; a client that was too slow itself gets 01, the generic code.
    fn socks5_code(&self) -> u8 {
        match self {
            Outcome::Granted { .. } => 0x00,
            Outcome::NotAllowed => 0x02,
            Outcome::NetworkUnreachable => 0x03,
            Outcome::NameNotFound | Outcome::HostUnreachable => 0x04,
            Outcome::Refused => 0x05,
            Outcome::TimedOut => 0x06,
            Outcome::CommandNotSupported => 0x07,
            Outcome::AddressTypeNotSupported => 0x08,
            Outcome::ClientTimeout | Outcome::Malformed | Outcome::TooLarge | Outcome::Failure => {
                0x01
            }
        }
    }

    /// HTTP status, reason phrase and a one-line body. 502 for every failure on the far
    /// side (RFC 9110 §15.6.3), 504 for its timeout, 4xx for the client's own mistakes.
    fn http_status(&self) -> (u16, &'static str, &'static str) {
        match self {
            Outcome::Granted { .. } => (200, "Connection established", ""),
            Outcome::NotAllowed => (403, "Forbidden", "destination not allowed"),
            Outcome::NameNotFound => (502, "Bad Gateway", "name not found"),
            Outcome::HostUnreachable => (502, "Bad Gateway", "host unreachable"),
            Outcome::NetworkUnreachable => (502, "Bad Gateway", "network unreachable"),
            Outcome::Refused => (502, "Bad Gateway", "connection refused"),
            Outcome::TimedOut => (504, "Gateway Timeout", "connect timed out"),
            Outcome::ClientTimeout => (408, "Request Timeout", "request not received in time"),
            Outcome::Malformed => (400, "Bad Request", "expected CONNECT host:port HTTP/1.1"),
            Outcome::TooLarge => (
                431,
                "Request Header Fields Too Large",
                "request header too large",
            ),
            Outcome::CommandNotSupported => (
                405,
                "Method Not Allowed",
                "this proxy only serves CONNECT host:port",
            ),
            Outcome::AddressTypeNotSupported => (400, "Bad Request", "address not supported"),
            Outcome::Failure => (502, "Bad Gateway", "cannot reach the destination"),
        }
    }
}

/// The reply to send for `outcome` in `protocol`. On anything but `Granted` the caller
/// closes the connection after sending it.
pub fn reply(protocol: Protocol, outcome: &Outcome) -> Vec<u8> {
    match protocol {
        Protocol::Socks5 => socks5_reply(outcome),
        Protocol::Socks4 | Protocol::Socks4a => socks4_reply(outcome),
        Protocol::HttpConnect => http_reply(outcome),
    }
}

/// `05 REP 00 ATYP BND.ADDR BND.PORT`; failures carry 0.0.0.0:0, which RFC 1928 allows.
fn socks5_reply(outcome: &Outcome) -> Vec<u8> {
    let bound = match outcome {
        Outcome::Granted { bound } => *bound,
        _ => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
    };
    let mut out = vec![0x05, outcome.socks5_code(), 0x00];
    match bound.ip() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(0x04);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

/// `00 CD DSTPORT DSTIP`: 5A granted, 5B for every failure (SOCKS4 has no finer codes; 5C
/// and 5D are about identd). Clients ignore DSTPORT/DSTIP; we fill in an IPv4 bound
/// address when there is one.
fn socks4_reply(outcome: &Outcome) -> Vec<u8> {
    let (code, port, ip) = match outcome {
        Outcome::Granted { bound } => match bound.ip() {
            IpAddr::V4(ip) => (0x5A, bound.port(), ip.octets()),
            IpAddr::V6(_) => (0x5A, 0, [0; 4]),
        },
        _ => (0x5B, 0, [0; 4]),
    };
    let mut out = vec![0x00, code];
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&ip);
    out
}

/// A status line; on errors a short text body and `Connection: close`, since the
/// connection ends right after it.
fn http_reply(outcome: &Outcome) -> Vec<u8> {
    let (status, phrase, body) = outcome.http_status();
    if matches!(outcome, Outcome::Granted { .. }) {
        return format!("HTTP/1.1 {status} {phrase}\r\n\r\n").into_bytes();
    }
    let allow = if matches!(outcome, Outcome::CommandNotSupported) {
        // RFC 9110 §15.5.6: a 405 lists the methods that are supported.
        "Allow: CONNECT\r\n"
    } else {
        ""
    };
    let body = format!("flytube: {body}\n");
    format!(
        "HTTP/1.1 {status} {phrase}\r\n{allow}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_FAILURES: [Outcome; 12] = [
        Outcome::NotAllowed,
        Outcome::NameNotFound,
        Outcome::HostUnreachable,
        Outcome::NetworkUnreachable,
        Outcome::Refused,
        Outcome::TimedOut,
        Outcome::ClientTimeout,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::CommandNotSupported,
        Outcome::AddressTypeNotSupported,
        Outcome::Failure,
    ];

    fn status_line(bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.lines().next().unwrap().to_string()
    }

    #[test]
    fn socks5_codes() {
        let cases = [
            (Outcome::NotAllowed, 0x02),
            (Outcome::NameNotFound, 0x04),
            (Outcome::HostUnreachable, 0x04),
            (Outcome::NetworkUnreachable, 0x03),
            (Outcome::Refused, 0x05),
            (Outcome::TimedOut, 0x06),
            (Outcome::ClientTimeout, 0x01),
            (Outcome::Malformed, 0x01),
            (Outcome::TooLarge, 0x01),
            (Outcome::CommandNotSupported, 0x07),
            (Outcome::AddressTypeNotSupported, 0x08),
            (Outcome::Failure, 0x01),
        ];
        for (outcome, code) in cases {
            assert_eq!(
                reply(Protocol::Socks5, &outcome),
                [5, code, 0, 1, 0, 0, 0, 0, 0, 0],
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn socks5_granted_carries_the_bound_address() {
        let v4 = Outcome::Granted {
            bound: "10.1.2.3:4660".parse().unwrap(),
        };
        assert_eq!(
            reply(Protocol::Socks5, &v4),
            [5, 0, 0, 1, 10, 1, 2, 3, 0x12, 0x34]
        );
        let v6 = Outcome::Granted {
            bound: "[fd00::1]:443".parse().unwrap(),
        };
        let mut expected = vec![5, 0, 0, 4, 0xfd, 0];
        expected.extend_from_slice(&[0; 13]);
        expected.extend_from_slice(&[1, 1, 0xbb]);
        assert_eq!(reply(Protocol::Socks5, &v6), expected);
    }

    #[test]
    fn socks4_granted_or_rejected() {
        let granted = Outcome::Granted {
            bound: "10.1.2.3:80".parse().unwrap(),
        };
        assert_eq!(
            reply(Protocol::Socks4, &granted),
            [0, 0x5A, 0, 80, 10, 1, 2, 3]
        );
        let v6 = Outcome::Granted {
            bound: "[::1]:80".parse().unwrap(),
        };
        assert_eq!(reply(Protocol::Socks4a, &v6), [0, 0x5A, 0, 0, 0, 0, 0, 0]);
        for outcome in ALL_FAILURES {
            for protocol in [Protocol::Socks4, Protocol::Socks4a] {
                assert_eq!(reply(protocol, &outcome), [0, 0x5B, 0, 0, 0, 0, 0, 0]);
            }
        }
    }

    #[test]
    fn http_statuses() {
        let cases = [
            (Outcome::NotAllowed, "HTTP/1.1 403 Forbidden"),
            (Outcome::NameNotFound, "HTTP/1.1 502 Bad Gateway"),
            (Outcome::HostUnreachable, "HTTP/1.1 502 Bad Gateway"),
            (Outcome::NetworkUnreachable, "HTTP/1.1 502 Bad Gateway"),
            (Outcome::Refused, "HTTP/1.1 502 Bad Gateway"),
            (Outcome::TimedOut, "HTTP/1.1 504 Gateway Timeout"),
            (Outcome::ClientTimeout, "HTTP/1.1 408 Request Timeout"),
            (Outcome::Malformed, "HTTP/1.1 400 Bad Request"),
            (
                Outcome::TooLarge,
                "HTTP/1.1 431 Request Header Fields Too Large",
            ),
            (
                Outcome::CommandNotSupported,
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (Outcome::AddressTypeNotSupported, "HTTP/1.1 400 Bad Request"),
            (Outcome::Failure, "HTTP/1.1 502 Bad Gateway"),
        ];
        for (outcome, line) in cases {
            assert_eq!(status_line(&reply(Protocol::HttpConnect, &outcome)), line);
        }
    }

    #[test]
    fn http_errors_close_and_carry_a_sized_body() {
        for outcome in ALL_FAILURES {
            let text = String::from_utf8(reply(Protocol::HttpConnect, &outcome)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains("\r\nConnection: close"), "{text}");
            assert!(
                head.contains(&format!("\r\nContent-Length: {}", body.len())),
                "{text}"
            );
            assert!(
                body.starts_with("flytube: ") && body.ends_with('\n'),
                "{text}"
            );
        }
        let text =
            String::from_utf8(reply(Protocol::HttpConnect, &Outcome::CommandNotSupported)).unwrap();
        assert!(text.contains("\r\nAllow: CONNECT\r\n"), "{text}");
        assert!(text.contains("CONNECT host:port"), "{text}");
    }

    #[test]
    fn http_granted_is_a_bare_status_line() {
        let granted = Outcome::Granted {
            bound: "10.0.0.1:1".parse().unwrap(),
        };
        assert_eq!(
            reply(Protocol::HttpConnect, &granted),
            b"HTTP/1.1 200 Connection established\r\n\r\n"
        );
    }

    #[test]
    fn dial_kinds_map_to_outcomes() {
        use io::ErrorKind::*;
        assert_eq!(Outcome::from_dial_kind(ConnectionRefused), Outcome::Refused);
        assert_eq!(Outcome::from_dial_kind(TimedOut), Outcome::TimedOut);
        assert_eq!(Outcome::from_dial_kind(NotFound), Outcome::NameNotFound);
        assert_eq!(
            Outcome::from_dial_kind(HostUnreachable),
            Outcome::HostUnreachable
        );
        assert_eq!(
            Outcome::from_dial_kind(NetworkUnreachable),
            Outcome::NetworkUnreachable
        );
        assert_eq!(Outcome::from_dial_kind(PermissionDenied), Outcome::Failure);
    }
}
