//! Reaching the relay through an HTTP CONNECT or SOCKS5 proxy: the proxy URL
//! (`proxy/url.rs`), which proxy applies and why (`proxy/select.rs`), and the client side of
//! each handshake (`proxy/http.rs`, `proxy/socks.rs`), run over the TCP stream to the proxy
//! under one deadline. Once the handshake is done, every byte on the stream belongs to the
//! relay: the SSH session runs over it unchanged.
//!
//! Nothing here prints a password: URLs show `MASKED`, and whatever the proxy answers is
//! scrubbed of the credentials before it becomes part of a message.

mod http;
mod select;
mod socks;
mod url;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub use http::{HttpReply, MAX_REPLY_HEAD, parse_reply};
pub use select::{
    NO_PROXY_VARIABLES, NONE, PROXY_VARIABLES, ProxyChoice, ProxySource, choose, no_proxy_match,
};
pub use socks::reply_text as socks_reply_text;
pub use url::{DEFAULT_PROXY_PORT, ProxyUrl, Scheme, mask_url_text};

use crate::forward::join_host_port;
use crate::net::DialError;
use base64ct::{Base64, Encoding};

/// Where the proxy is asked to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A name (or address literal) the proxy resolves: HTTP CONNECT and socks5h://.
    Name(String, u16),
    /// An address resolved here: socks5://, or any address literal.
    Addr(SocketAddr),
}

impl Destination {
    /// What the proxy may be asked for: the relay's name and port for `http://` and
    /// `socks5h://` (an address literal as an address), and for `socks5://` each of the
    /// relay's addresses resolved here (`resolved`). Never empty.
    pub fn for_relay(
        proxy: &ProxyUrl,
        host: &str,
        port: u16,
        resolved: &[SocketAddr],
    ) -> Vec<Destination> {
        if let Ok(ip) = host.parse() {
            return vec![Destination::Addr(SocketAddr::new(ip, port))];
        }
        if proxy.resolves_locally() && !resolved.is_empty() {
            return resolved.iter().copied().map(Destination::Addr).collect();
        }
        vec![Destination::Name(host.to_string(), port)]
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Name(host, port) => f.write_str(&join_host_port(host, *port)),
            Destination::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// Why the way through the proxy could not be opened. Messages never hold the password.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy's name did not resolve, or no TCP connection to it could be made.
    Dial(DialError),
    /// Sending to or reading from the proxy failed.
    Io {
        /// What was going on ("sending CONNECT", ...).
        during: &'static str,
        /// The socket's error.
        source: io::Error,
    },
    /// No complete answer before the deadline.
    TimedOut {
        /// The time allowed.
        after: Duration,
        /// What was going on.
        during: &'static str,
        /// Bytes of the answer received by then.
        received: usize,
    },
    /// The proxy closed the connection before the tunnel was open.
    Closed {
        /// What was going on.
        during: &'static str,
        /// Bytes of the answer received before the close.
        received: usize,
    },
    /// The proxy answered in another protocol than the one its URL names.
    NotProxy {
        /// The protocol expected ("HTTP", "SOCKS5").
        expected: &'static str,
        /// The start of what came back, escaped and scrubbed.
        seen: String,
    },
    /// The proxy's reply head is larger than `MAX_REPLY_HEAD`.
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The proxy answered CONNECT with a status other than 2xx.
    Http {
        /// The HTTP status.
        status: u16,
        /// Its reason phrase, escaped.
        reason: String,
        /// What was asked for (`host:port`).
        target: String,
        /// Authentication schemes offered (`Proxy-Authenticate`), on 401 and 407.
        schemes: Vec<String>,
        /// The user name sent, if any.
        user: Option<String>,
    },
    /// The SOCKS5 proxy accepted none of the offered authentication methods.
    SocksNoMethod {
        /// Whether user/password was offered.
        offered_password: bool,
    },
    /// The SOCKS5 proxy chose a method that was not offered.
    SocksBadMethod {
        /// The method byte it chose.
        method: u8,
    },
    /// The SOCKS5 proxy refused the user name and password (RFC 1929).
    SocksAuth {
        /// The user name sent.
        user: String,
        /// The status byte (non-zero).
        status: u8,
    },
    /// The SOCKS5 proxy refused the CONNECT request.
    SocksReply {
        /// The REP byte.
        code: u8,
        /// What was asked for.
        target: String,
    },
    /// Something in the proxy's answer breaks its protocol.
    Malformed(String),
}

impl ProxyError {
    /// True when the proxy asked for, or refused, credentials.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ProxyError::Http {
                status: 401 | 407,
                ..
            } | ProxyError::SocksAuth { .. }
                | ProxyError::SocksNoMethod {
                    offered_password: false
                }
        )
    }

    /// True when the proxy does not allow a tunnel to the relay (HTTP 403, SOCKS5 02).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            ProxyError::Http { status: 403, .. } | ProxyError::SocksReply { code: 2, .. }
        )
    }

    /// True when the proxy was willing but could not reach the relay (HTTP 5xx, SOCKS5
    /// unreachable, refused, TTL expired).
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            ProxyError::Http {
                status: 500..=599,
                ..
            } | ProxyError::SocksReply {
                code: 1 | 3..=6,
                ..
            }
        )
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Dial(e) if e.is_resolve() => write!(f, "{e}"),
            ProxyError::Dial(e) => write!(f, "cannot reach the proxy: {e}"),
            ProxyError::Io { during, source } => write!(f, "{during}: {source}"),
            ProxyError::TimedOut {
                after,
                during,
                received,
            } => write!(
                f,
                "no complete answer from the proxy within {}s while {during} (got {received} \
                 bytes)",
                after.as_secs_f64()
            ),
            ProxyError::Closed { during, received } => write!(
                f,
                "the proxy closed the connection while {during} (after {received} bytes of \
                 answer)"
            ),
            ProxyError::NotProxy { expected, seen } => {
                write!(
                    f,
                    "the proxy does not speak {expected}: it answered \"{seen}\""
                )?;
                if seen.starts_with("SSH-") {
                    f.write_str(" (an SSH server: does the proxy setting name the relay?)")?;
                } else if seen.starts_with("HTTP/") {
                    f.write_str(" (an HTTP proxy: use http://)")?;
                } else if seen.starts_with("\\x05") {
                    f.write_str(" (a SOCKS5 proxy: use socks5:// or socks5h://)")?;
                }
                Ok(())
            }
            ProxyError::TooLarge { limit } => write!(
                f,
                "the proxy's reply headers exceed {} KiB; giving up",
                limit / 1024
            ),
            ProxyError::Http {
                status,
                reason,
                target,
                schemes,
                user,
            } => write_http_refusal(f, *status, reason, target, schemes, user.as_deref()),
            ProxyError::SocksNoMethod {
                offered_password: true,
            } => {
                f.write_str("the SOCKS5 proxy accepts neither no authentication nor user/password")
            }
            ProxyError::SocksNoMethod {
                offered_password: false,
            } => f.write_str(
                "proxy authentication required: the SOCKS5 proxy does not accept clients \
                 without a user name and password",
            ),
            ProxyError::SocksBadMethod { method } => write!(
                f,
                "the SOCKS5 proxy chose authentication method 0x{method:02x}, which was not \
                 offered"
            ),
            ProxyError::SocksAuth { user, status } => write!(
                f,
                "proxy authentication failed: the SOCKS5 proxy rejected the password of user \
                 {user:?} (status 0x{status:02x})"
            ),
            ProxyError::SocksReply { code, target } => write!(
                f,
                "the SOCKS5 proxy refused to connect to {target}: {} (reply 0x{code:02x})",
                socks::reply_text(*code)
            ),
            ProxyError::Malformed(detail) => write!(f, "broken proxy answer: {detail}"),
        }
    }
}

/// An HTTP proxy's refusal of CONNECT, in words: for 401/407 who was rejected and the
/// schemes the proxy offers.
fn write_http_refusal(
    f: &mut fmt::Formatter<'_>,
    status: u16,
    reason: &str,
    target: &str,
    schemes: &[String],
    user: Option<&str>,
) -> fmt::Result {
    let answer = format!("{status} {reason}");
    match status {
        401 | 407 => {
            match user {
                Some(user) => write!(
                    f,
                    "proxy authentication failed: the proxy rejected the password of user \
                     {user:?} ({answer}"
                )?,
                None => write!(
                    f,
                    "proxy authentication required: no user name and password were given \
                     ({answer}"
                )?,
            }
            if schemes.is_empty() {
                f.write_str("; it names no authentication scheme)")?;
            } else {
                write!(f, "; it offers {})", schemes.join(", "))?;
            }
            if !schemes.is_empty() && !schemes.iter().any(|s| s.eq_ignore_ascii_case("basic")) {
                f.write_str("; flytube speaks only Basic")?;
            }
            Ok(())
        }
        403 => write!(f, "the proxy forbids CONNECT to {target} ({answer})"),
        500..=599 => write!(
            f,
            "the proxy could not open a tunnel to {target} ({answer})"
        ),
        _ => write!(f, "the proxy answered CONNECT {target} with {answer}"),
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Dial(e) => Some(e),
            ProxyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A byte stream to the proxy with a time limit on each call: a `TcpStream`, or a fake in
/// the tests.
pub trait Conduit: Read + Write {
    /// Reads without consuming, like `recv(MSG_PEEK)`.
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Limits each later read and write (`None`: no limit).
    fn set_timeout(&mut self, limit: Option<Duration>) -> io::Result<()>;
}

impl Conduit for TcpStream {
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::peek(self, buf)
    }

    fn set_timeout(&mut self, limit: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(limit)?;
        self.set_write_timeout(limit)
    }
}

/// What the proxy said when the tunnel opened.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The handshake's answer in words ("HTTP/1.1 200 Connection established", "SOCKS5
    /// succeeded").
    pub answer: String,
    /// How long the handshake took.
    pub elapsed: Duration,
}

/// Asks the proxy for a tunnel to `destination` over `stream`, everything within `limit`.
/// On success every later byte on the stream belongs to the destination, and the stream's
/// time limits are cleared again.
pub fn open<S: Conduit>(
    stream: &mut S,
    proxy: &ProxyUrl,
    destination: &Destination,
    limit: Duration,
) -> Result<Opened, ProxyError> {
    let started = Instant::now();
    let mut clock = Clock {
        deadline: started + limit,
        limit,
    };
    let scrub = Scrubber::new(proxy);
    let answer = match proxy.scheme {
        Scheme::Http => http::connect(stream, proxy, destination, &mut clock, &scrub)?,
        Scheme::Socks5 | Scheme::Socks5h => {
            socks::connect(stream, proxy, destination, &mut clock, &scrub)?
        }
    };
    stream.set_timeout(None).map_err(|source| ProxyError::Io {
        during: "clearing the socket timeout",
        source,
    })?;
    Ok(Opened {
        answer,
        elapsed: started.elapsed(),
    })
}

/// The one deadline of a handshake.
struct Clock {
    deadline: Instant,
    limit: Duration,
}

impl Clock {
    /// Sets the stream's limit to the time left, or fails when none is.
    fn arm<S: Conduit>(
        &mut self,
        stream: &mut S,
        during: &'static str,
        received: usize,
    ) -> Result<(), ProxyError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.expired(during, received));
        }
        stream
            .set_timeout(Some(left))
            .map_err(|source| ProxyError::Io { during, source })
    }

    fn expired(&self, during: &'static str, received: usize) -> ProxyError {
        ProxyError::TimedOut {
            after: self.limit,
            during,
            received,
        }
    }

    /// Maps a read or write error: a timeout is the deadline's.
    fn io_error(&self, source: io::Error, during: &'static str, received: usize) -> ProxyError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.expired(during, received),
            io::ErrorKind::UnexpectedEof => ProxyError::Closed { during, received },
            _ => ProxyError::Io { during, source },
        }
    }

    /// `write_all` under the deadline.
    fn send<S: Conduit>(
        &mut self,
        stream: &mut S,
        bytes: &[u8],
        during: &'static str,
    ) -> Result<(), ProxyError> {
        self.arm(stream, during, 0)?;
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| self.io_error(e, during, 0))
    }

    /// `read_exact` under the deadline; a close before `buf` is full is `Closed`.
    fn receive<S: Conduit>(
        &mut self,
        stream: &mut S,
        buf: &mut [u8],
        during: &'static str,
        received: usize,
    ) -> Result<(), ProxyError> {
        let mut filled = 0;
        while filled < buf.len() {
            self.arm(stream, during, received + filled)?;
            match stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(ProxyError::Closed {
                        during,
                        received: received + filled,
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e, during, received + filled)),
            }
        }
        Ok(())
    }
}

/// Removes the password (plain and inside the Basic credentials) from text that came from
/// the proxy, in case it echoes what it was sent.
struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    fn new(proxy: &ProxyUrl) -> Scrubber {
        let mut secrets = Vec::new();
        if let Some((user, password)) = proxy.credentials() {
            if !password.is_empty() {
                secrets.push(password.to_string());
            }
            secrets.push(Base64::encode_string(
                format!("{user}:{password}").as_bytes(),
            ));
        }
        Scrubber { secrets }
    }

    fn scrub(&self, text: String) -> String {
        self.secrets
            .iter()
            .fold(text, |t, secret| t.replace(secret.as_str(), "MASKED"))
    }
}

/// `first` and whatever else arrives within a moment, up to a line end or 80 bytes: what a
/// server that does not speak the proxy protocol said. Its callers scrub it.
fn sample<S: Conduit>(stream: &mut S, first: &[u8], clock: &Clock) -> Vec<u8> {
    let mut seen = first.to_vec();
    let until = clock
        .deadline
        .min(Instant::now() + Duration::from_millis(300));
    let mut more = [0u8; 80];
    while seen.len() < 80 && !seen.contains(&b'\n') {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut more[..80 - seen.len()]) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&more[..n]),
        }
    }
    seen
}

/// The first line of `bytes`, printable ASCII kept and the rest as `\xNN`, at most 80
/// characters: how a foreign answer is shown.
fn printable(bytes: &[u8]) -> String {
    let line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut out = String::new();
    for &b in line {
        if out.len() >= 80 {
            out.push_str("...");
            break;
        }
        if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory proxy: canned answer bytes in, the client's bytes collected.

    use super::*;

    pub struct Fake {
        pub answer: Vec<u8>,
        pub at: usize,
        pub sent: Vec<u8>,
        pub timeouts: Vec<Option<Duration>>,
    }

    impl Fake {
        pub fn new(answer: &[u8]) -> Fake {
            Fake {
                answer: answer.to_vec(),
                at: 0,
                sent: Vec::new(),
                timeouts: Vec::new(),
            }
        }
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.peek(buf)?;
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Conduit for Fake {
        fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // Small pieces, as a network would deliver them.
            let n = buf.len().min(self.answer.len() - self.at).min(7);
            buf[..n].copy_from_slice(&self.answer[self.at..self.at + n]);
            Ok(n)
        }
        fn set_timeout(&mut self, limit: Option<Duration>) -> io::Result<()> {
            self.timeouts.push(limit);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_follows_the_scheme() {
        let http = ProxyUrl::parse("http://p:1").unwrap();
        let socks = ProxyUrl::parse("socks5://p:1").unwrap();
        let socks_h = ProxyUrl::parse("socks5h://p:1").unwrap();
        let resolved: [SocketAddr; 2] = [
            "[2001:db8::1]:22".parse().unwrap(),
            "192.0.2.1:22".parse().unwrap(),
        ];
        let name = vec![Destination::Name("relay.example".into(), 22)];
        assert_eq!(
            Destination::for_relay(&http, "relay.example", 22, &resolved),
            name
        );
        assert_eq!(
            Destination::for_relay(&socks_h, "relay.example", 22, &[]),
            name
        );
        assert_eq!(
            Destination::for_relay(&socks, "relay.example", 22, &resolved),
            resolved.map(Destination::Addr)
        );
        assert_eq!(
            Destination::for_relay(&http, "::1", 2222, &[])[0].to_string(),
            "[::1]:2222"
        );
    }

    #[test]
    fn scrubber_masks_password_and_basic_credentials() {
        let proxy = ProxyUrl::parse("http://bob:hunter2@p:1").unwrap();
        let s = Scrubber::new(&proxy);
        let basic = Base64::encode_string(b"bob:hunter2");
        assert_eq!(
            s.scrub(format!("x hunter2 y {basic} z")),
            "x MASKED y MASKED z"
        );
    }

    #[test]
    fn printable_shows_one_escaped_line() {
        assert_eq!(printable(b"SSH-2.0-x\r\nmore"), "SSH-2.0-x");
        assert_eq!(printable(b"\x05\xff"), "\\x05\\xff");
        assert!(printable(&[b'a'; 500]).ends_with("..."));
    }
}
