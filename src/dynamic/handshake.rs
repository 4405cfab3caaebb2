//! The server side of a proxy handshake as a pure state machine: feed it whatever bytes
//! arrived, it says what to send and when the request is complete. SOCKS5 (RFC 1928,
//! no-auth CONNECT), SOCKS4/4a and HTTP CONNECT (RFC 9110 §9.3.6), told apart by the
//! first byte. Nothing here does I/O, so every input can be tested and fuzzed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use super::http::MAX_HTTP_HEAD;
use super::http::{self, HeadScan, Method};
use super::reply::{Outcome, SOCKS5_NO_AUTH, SOCKS5_NO_METHOD, reply};
use super::target::{Host, MAX_NAME_LEN, Target};

/// Longest SOCKS4 USERID. flytube ignores it; the bound only stops a client that never
/// sends the terminating NUL from growing the buffer.
pub const MAX_SOCKS4_USER: usize = 255;

/// The proxy protocol a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SOCKS5 (RFC 1928), no authentication.
    Socks5,
    /// SOCKS4 with an IPv4 destination.
    Socks4,
    /// SOCKS4a: SOCKS4 with a host name for the proxy to resolve.
    Socks4a,
    /// HTTP `CONNECT host:port`.
    HttpConnect,
}

impl Protocol {
    /// Lower-case name for the log.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Socks5 => "socks5",
            Protocol::Socks4 => "socks4",
            Protocol::Socks4a => "socks4a",
            Protocol::HttpConnect => "http-connect",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A complete CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where the client wants to go.
    pub target: Target,
    /// How it asked (the reply must use the same protocol).
    pub protocol: Protocol,
    /// Bytes that arrived after the request: the client's first data, sent without waiting
    /// for the reply. They belong to the target, before anything read later.
    pub leftover: Vec<u8>,
}

/// What to do after feeding bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Wait for more bytes.
    NeedMore,
    /// Send these bytes, then call `feed` again, with an empty slice if nothing new
    /// arrived: the SOCKS5 method selection, which the request may already follow.
    Reply(Vec<u8>),
    /// The request is complete. The caller decides, dials and sends `reply(..)`.
    Request(Request),
    /// The handshake failed: send `reply` (empty: send nothing) and close.
    Reject {
        /// The error reply; empty when the protocol has none (garbage first byte).
        reply: Vec<u8>,
        /// What `reply` tells the client (`Malformed` when nothing is sent).
        outcome: Outcome,
        /// Why, for the log.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing received yet.
    Start,
    /// `05 NMETHODS METHODS...`
    Socks5Greeting,
    /// `05 CMD 00 ATYP ADDR PORT`, after the method selection was sent.
    Socks5Request,
    /// `04 CMD PORT IP USERID 00 [HOST 00]`
    Socks4,
    /// `CONNECT host:port HTTP/1.1`, headers, blank line.
    Http(HeadScan),
    /// A request or a rejection was returned.
    Done,
}

/// One connection's handshake in progress.
#[derive(Debug)]
pub struct Handshake {
    state: State,
    buf: Vec<u8>,
    protocol: Option<Protocol>,
}

impl Default for Handshake {
    fn default() -> Handshake {
        Handshake::new()
    }
}

impl Handshake {
    /// A handshake that has seen nothing yet.
    pub fn new() -> Handshake {
        Handshake {
            state: State::Start,
            buf: Vec::new(),
            protocol: None,
        }
    }

    /// The protocol, once the first byte told it (`Socks4` until a 4a request shows itself).
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// Adds `bytes` (possibly empty) and says what to do next. After `Request` or `Reject`
    /// the handshake is over and further calls return an empty `Reject`.
    pub fn feed(&mut self, bytes: &[u8]) -> Progress {
        if self.state == State::Done {
            return Progress::Reject {
                reply: Vec::new(),
                outcome: Outcome::Malformed,
                reason: "the handshake is already over".into(),
            };
        }
        self.buf.extend_from_slice(bytes);
        let progress = self.step();
        if matches!(progress, Progress::Request(_) | Progress::Reject { .. }) {
            self.state = State::Done;
            self.buf = Vec::new();
        }
        progress
    }

    /// The error reply that fits where the handshake stands, for a failure found outside
    /// it (timeout, client EOF): nothing before the first byte, `05 FF` during a SOCKS5
    /// greeting (no reply code exists yet), else `reply(protocol, outcome)`.
    pub fn abort(&self, outcome: &Outcome) -> Vec<u8> {
        match self.state {
            State::Start | State::Done => Vec::new(),
            State::Socks5Greeting => SOCKS5_NO_METHOD.to_vec(),
            State::Socks5Request => reply(Protocol::Socks5, outcome),
            State::Socks4 => reply(Protocol::Socks4, outcome),
            State::Http(_) => reply(Protocol::HttpConnect, outcome),
        }
    }

    fn step(&mut self) -> Progress {
        if self.state == State::Start {
            let (state, protocol) = match self.buf.first() {
                None => return Progress::NeedMore,
                Some(0x05) => (State::Socks5Greeting, Protocol::Socks5),
                Some(0x04) => (State::Socks4, Protocol::Socks4),
                // Methods are case-sensitive tokens, and every registered one is upper-case
                // (RFC 9110 §9.1), so a lower-case first byte is not HTTP we could serve.
                Some(b'A'..=b'Z') => (State::Http(HeadScan::default()), Protocol::HttpConnect),
                Some(&byte) => {
                    return Progress::Reject {
                        reply: Vec::new(),
                        outcome: Outcome::Malformed,
                        reason: format!("not a proxy handshake (first byte 0x{byte:02x})"),
                    };
                }
            };
            self.state = state;
            self.protocol = Some(protocol);
        }
        match self.state {
            State::Socks5Greeting => self.socks5_greeting(),
            State::Socks5Request => self.socks5_request(),
            State::Socks4 => self.socks4(),
            State::Http(_) => self.http(),
            State::Start | State::Done => Progress::NeedMore,
        }
    }

    fn fail(&self, outcome: Outcome, reason: impl Into<String>) -> Progress {
        Progress::Reject {
            reply: self.abort(&outcome),
            outcome,
            reason: reason.into(),
        }
    }

    /// Ends the handshake with a request of `consumed` bytes; the rest is leftover.
    fn finish(&mut self, protocol: Protocol, host: Host, port: u16, consumed: usize) -> Progress {
        if port == 0 {
            return self.fail(Outcome::Malformed, format!("{protocol} request for port 0"));
        }
        let leftover = self.buf.split_off(consumed.min(self.buf.len()));
        Progress::Request(Request {
            target: Target { host, port },
            protocol,
            leftover,
        })
    }

    fn socks5_greeting(&mut self) -> Progress {
        let Some(&count) = self.buf.get(1) else {
            return Progress::NeedMore;
        };
        let end = 2 + usize::from(count);
        let Some(methods) = self.buf.get(2..end) else {
            return Progress::NeedMore;
        };
        if !methods.contains(&0x00) {
            return Progress::Reject {
                reply: SOCKS5_NO_METHOD.to_vec(),
                outcome: Outcome::Failure,
                reason: format!(
                    "socks5 client offers no method without authentication (offers {methods:02x?})"
                ),
            };
        }
        self.buf.drain(..end);
        self.state = State::Socks5Request;
        Progress::Reply(SOCKS5_NO_AUTH.to_vec())
    }

    fn socks5_request(&mut self) -> Progress {
        let [version, command, _reserved, atyp, ..] = self.buf[..] else {
            return Progress::NeedMore;
        };
        if version != 0x05 {
            return self.fail(
                Outcome::Malformed,
                format!("socks5 request with version 0x{version:02x}"),
            );
        }
        if command != 0x01 {
            return self.fail(
                Outcome::CommandNotSupported,
                format!(
                    "socks5 command 0x{command:02x} ({}) is not supported, only CONNECT",
                    socks_command_name(command)
                ),
            );
        }
        let (host, port_at) = match atyp {
            0x01 => match self.buf.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                Some(octets) => (Host::Addr(IpAddr::V4(Ipv4Addr::from(octets))), 8),
                None => return Progress::NeedMore,
            },
            0x04 => match self
                .buf
                .get(4..20)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
            {
                Some(octets) => (Host::Addr(IpAddr::V6(Ipv6Addr::from(octets))), 20),
                None => return Progress::NeedMore,
            },
            0x03 => {
                let Some(&len) = self.buf.get(4) else {
                    return Progress::NeedMore;
                };
                let end = 5 + usize::from(len);
                let Some(name) = self.buf.get(5..end) else {
                    return Progress::NeedMore;
                };
                match parse_name(name) {
                    Ok(host) => (host, end),
                    Err(e) => {
                        return self.fail(Outcome::Malformed, format!("socks5 domain name: {e}"));
                    }
                }
            }
            other => {
                return self.fail(
                    Outcome::AddressTypeNotSupported,
                    format!("socks5 address type 0x{other:02x} is not supported"),
                );
            }
        };
        let Some(port) = read_port(&self.buf, port_at) else {
            return Progress::NeedMore;
        };
        self.finish(Protocol::Socks5, host, port, port_at + 2)
    }

    fn socks4(&mut self) -> Progress {
        let [_, command, p0, p1, a, b, c, d, ..] = self.buf[..] else {
            return Progress::NeedMore;
        };
        if command != 0x01 {
            return self.fail(
                Outcome::CommandNotSupported,
                format!(
                    "socks4 command 0x{command:02x} ({}) is not supported, only CONNECT",
                    socks_command_name(command)
                ),
            );
        }
        let port = u16::from_be_bytes([p0, p1]);
        let user_end = match find_nul(&self.buf, 8, MAX_SOCKS4_USER) {
            Nul::At(i) => i,
            Nul::Missing => return Progress::NeedMore,
            Nul::TooLong => {
                return self.fail(
                    Outcome::TooLarge,
                    format!("socks4 user id longer than {MAX_SOCKS4_USER} bytes"),
                );
            }
        };
        // SOCKS4a: 0.0.0.x with x != 0 says a host name follows the user id.
        if [a, b, c] != [0, 0, 0] || d == 0 {
            let host = Host::Addr(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
            return self.finish(Protocol::Socks4, host, port, user_end + 1);
        }
        self.protocol = Some(Protocol::Socks4a);
        let name_end = match find_nul(&self.buf, user_end + 1, MAX_NAME_LEN) {
            Nul::At(i) => i,
            Nul::Missing => return Progress::NeedMore,
            Nul::TooLong => {
                return self.fail(
                    Outcome::TooLarge,
                    format!("socks4a host name longer than {MAX_NAME_LEN} bytes"),
                );
            }
        };
        match parse_name(&self.buf[user_end + 1..name_end]) {
            Ok(host) => self.finish(Protocol::Socks4a, host, port, name_end + 1),
            Err(e) => self.fail(Outcome::Malformed, format!("socks4a host name: {e}")),
        }
    }

    fn http(&mut self) -> Progress {
        let State::Http(mut scan) = self.state else {
            return Progress::NeedMore;
        };
        match http::check_method(&self.buf) {
            Method::MaybeConnect => {}
            Method::NeedMore => return Progress::NeedMore,
            Method::Reject(outcome, reason) => return self.fail(outcome, reason),
        }
        let end = scan.advance(&self.buf);
        self.state = State::Http(scan);
        match end {
            Some(end) => match http::parse_head(&self.buf[..end]) {
                Ok(target) => self.finish(Protocol::HttpConnect, target.host, target.port, end),
                Err(e) => self.fail(Outcome::Malformed, e),
            },
            None if self.buf.len() >= MAX_HTTP_HEAD => self.fail(
                Outcome::TooLarge,
                format!("http request head larger than {MAX_HTTP_HEAD} bytes"),
            ),
            None => Progress::NeedMore,
        }
    }
}

/// A name from a SOCKS request: ASCII text, possibly an address literal.
fn parse_name(bytes: &[u8]) -> Result<Host, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not ASCII text".to_string())?;
    Host::parse(text)
}

fn read_port(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

enum Nul {
    At(usize),
    Missing,
    TooLong,
}

/// Finds the NUL ending a string of at most `max` bytes that starts at `from`.
fn find_nul(buf: &[u8], from: usize, max: usize) -> Nul {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.iter().take(max + 1).position(|&b| b == 0) {
        Some(i) => Nul::At(from + i),
        None if rest.len() > max => Nul::TooLong,
        None => Nul::Missing,
    }
}

fn socks_command_name(command: u8) -> &'static str {
    match command {
        0x02 => "bind",
        0x03 => "udp associate",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` in order as a server loop would (feeding nothing after each reply)
    /// and returns the replies sent plus the final progress. Chunks after the request are
    /// the client's data, so they are appended to the leftover, as the target would see it.
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Progress) {
        let mut handshake = Handshake::new();
        let mut sent = Vec::new();
        let mut last = Progress::NeedMore;
        for (i, chunk) in chunks.iter().enumerate() {
            last = handshake.feed(chunk);
            while let Progress::Reply(bytes) = &last {
                sent.extend_from_slice(bytes);
                last = handshake.feed(&[]);
            }
            if let Progress::Request(request) = &mut last {
                request.leftover.extend(chunks[i + 1..].concat());
            }
            if !matches!(last, Progress::NeedMore) {
                break;
            }
        }
        (sent, last)
    }

    fn whole(bytes: &[u8]) -> (Vec<u8>, Progress) {
        run(&[bytes])
    }

    fn request(progress: Progress) -> Request {
        match progress {
            Progress::Request(request) => request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn rejection(progress: Progress) -> (Vec<u8>, String) {
        match progress {
            Progress::Reject { reply, reason, .. } => (reply, reason),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn http_status(reply: &[u8]) -> String {
        let text = String::from_utf8_lossy(reply);
        text.split("\r\n").next().unwrap_or_default().to_string()
    }

    const GREETING: &[u8] = &[5, 1, 0];

    fn socks5(request: &[u8]) -> Vec<u8> {
        [GREETING, request].concat()
    }

    fn socks5_domain(name: &str, port: u16) -> Vec<u8> {
        let mut out = vec![5, 1, 0, 3, name.len() as u8];
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&port.to_be_bytes());
        out
    }

    // ---- SOCKS5 ----

    #[test]
    fn socks5_domain_request() {
        let mut handshake = Handshake::new();
        assert_eq!(handshake.feed(GREETING), Progress::Reply(vec![5, 0]));
        assert_eq!(handshake.feed(&[]), Progress::NeedMore);
        let got = request(handshake.feed(&socks5_domain("Db.Corp.Example", 5432)));
        assert_eq!(got.protocol, Protocol::Socks5);
        assert_eq!(got.target, Target::name("db.corp.example", 5432));
        assert!(got.leftover.is_empty());
    }

    #[test]
    fn socks5_ipv4_and_ipv6_requests() {
        let (sent, last) = whole(&socks5(&[5, 1, 0, 1, 10, 0, 0, 7, 0, 80]));
        assert_eq!(sent, [5, 0]);
        assert_eq!(
            request(last).target,
            Target::addr("10.0.0.7".parse().unwrap(), 80)
        );
        let mut v6 = vec![5, 1, 0, 4, 0xfd, 0];
        v6.extend_from_slice(&[0; 13]);
        v6.extend_from_slice(&[1, 0x01, 0xbb]);
        let (_, last) = whole(&socks5(&v6));
        assert_eq!(
            request(last).target,
            Target::addr("fd00::1".parse().unwrap(), 443)
        );
    }

    #[test]
    fn socks5_domain_holding_a_literal_is_an_address() {
        let (_, last) = whole(&socks5(&socks5_domain("127.0.0.1", 22)));
        assert_eq!(
            request(last).target,
            Target::addr("127.0.0.1".parse().unwrap(), 22)
        );
    }

    #[test]
    fn socks5_pipelined_data_is_kept() {
        let bytes = [
            socks5(&socks5_domain("db", 5432)),
            b"\x16\x03\x01hello".to_vec(),
        ]
        .concat();
        let (sent, last) = whole(&bytes);
        assert_eq!(sent, [5, 0]);
        assert_eq!(request(last).leftover, b"\x16\x03\x01hello");
    }

    #[test]
    fn socks5_without_no_auth_gets_ff() {
        for greeting in [&[5u8, 1, 2][..], &[5, 0], &[5, 2, 1, 2]] {
            let (reply, reason) = rejection(whole(greeting).1);
            assert_eq!(reply, [5, 0xFF], "{greeting:?}");
            assert!(reason.contains("no method"), "{reason}");
        }
    }

    #[test]
    fn socks5_other_commands_get_07() {
        for command in [2u8, 3, 9] {
            let (reply, reason) = rejection(whole(&socks5(&[5, command, 0, 1])).1);
            assert_eq!(reply, [5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
            assert!(reason.contains("only CONNECT"), "{reason}");
        }
    }

    #[test]
    fn socks5_unknown_address_type_gets_08() {
        let (reply, _) = rejection(whole(&socks5(&[5, 1, 0, 2, 1, 2, 3, 4])).1);
        assert_eq!(reply, [5, 8, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn socks5_malformed_requests_get_01() {
        let bad: [&[u8]; 6] = [
            &[4, 1, 0, 1, 10, 0, 0, 1, 0, 80],         // wrong version
            &[5, 1, 0, 3, 0, 0, 80],                   // empty name
            &[5, 1, 0, 3, 3, b'a', b' ', b'b', 0, 80], // bad character
            &[5, 1, 0, 3, 2, 0xc3, 0xa9, 0, 80],       // not ASCII
            &[5, 1, 0, 1, 10, 0, 0, 1, 0, 0],          // port 0
            &[5, 1, 0, 3, 5, b'1', b'2', b'7', b'.', b'1', 0, 22], // numeric name
        ];
        for request in bad {
            let (reply, reason) = rejection(whole(&socks5(request)).1);
            assert_eq!(
                reply,
                [5, 1, 0, 1, 0, 0, 0, 0, 0, 0],
                "{request:?}: {reason}"
            );
        }
    }

    #[test]
    fn socks5_longest_name_fits() {
        let name = vec!["a".repeat(63); 4].join(".")[..253].to_string();
        let (_, last) = whole(&socks5(&socks5_domain(&format!("{name}."), 1)));
        assert_eq!(request(last).target, Target::name(&name, 1));
        let too_long = "a.".repeat(127) + "a"; // 255 bytes
        let (reply, _) = rejection(whole(&socks5(&socks5_domain(&too_long, 1))).1);
        assert_eq!(reply[..2], [5, 1]);
    }

    #[test]
    fn socks5_truncated_waits_and_aborts_by_phase() {
        let mut handshake = Handshake::new();
        assert_eq!(handshake.feed(&[5]), Progress::NeedMore);
        assert_eq!(handshake.feed(&[2, 0]), Progress::NeedMore);
        // Mid-greeting there is no reply code yet: "no acceptable method".
        assert_eq!(handshake.abort(&Outcome::ClientTimeout), [5, 0xFF]);
        assert_eq!(handshake.feed(&[2]), Progress::Reply(vec![5, 0]));
        assert_eq!(handshake.feed(&[5, 1, 0, 3, 10, b'a']), Progress::NeedMore);
        assert_eq!(
            handshake.abort(&Outcome::Malformed),
            [5, 1, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }

    // ---- SOCKS4 / 4a ----

    #[test]
    fn socks4_ipv4_request() {
        let bytes = b"\x04\x01\x00\x50\x0a\x00\x00\x07alice\x00GET /";
        let got = request(whole(bytes).1);
        assert_eq!(got.protocol, Protocol::Socks4);
        assert_eq!(got.target, Target::addr("10.0.0.7".parse().unwrap(), 80));
        assert_eq!(got.leftover, b"GET /");
    }

    #[test]
    fn socks4a_name_request() {
        let bytes = b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00Git.Corp\x00";
        let mut handshake = Handshake::new();
        assert_eq!(handshake.feed(&bytes[..12]), Progress::NeedMore);
        assert_eq!(handshake.protocol(), Some(Protocol::Socks4a));
        let got = request(handshake.feed(&bytes[12..]));
        assert_eq!(got.protocol, Protocol::Socks4a);
        assert_eq!(got.target, Target::name("git.corp", 443));
        let literal = request(whole(b"\x04\x01\x00\x16\x00\x00\x00\x09\x00::1\x00").1);
        assert_eq!(literal.target, Target::addr("::1".parse().unwrap(), 22));
    }

    #[test]
    fn socks4_unspecified_ip_is_passed_on_for_the_policy() {
        let got = request(whole(b"\x04\x01\x00\x50\x00\x00\x00\x00\x00").1);
        assert_eq!(got.protocol, Protocol::Socks4);
        assert_eq!(got.target, Target::addr("0.0.0.0".parse().unwrap(), 80));
    }

    #[test]
    fn socks4_rejections_are_5b() {
        let user_255 = [
            &b"\x04\x01\x00\x50\x0a\x00\x00\x07"[..],
            &[b'u'; 255],
            b"\x00",
        ]
        .concat();
        assert!(matches!(whole(&user_255).1, Progress::Request(_)));
        let user_256 = [&b"\x04\x01\x00\x50\x0a\x00\x00\x07"[..], &[b'u'; 256]].concat();
        let name_256 = [&b"\x04\x01\x00\x50\x00\x00\x00\x01\x00"[..], &[b'a'; 256]].concat();
        let bad: [&[u8]; 6] = [
            b"\x04\x02\x00\x50\x0a\x00\x00\x07\x00",        // BIND
            b"\x04\x01\x00\x00\x0a\x00\x00\x07\x00",        // port 0
            b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00",    // 4a, empty name
            b"\x04\x01\x00\x50\x00\x00\x00\x01\x00a b\x00", // 4a, bad name
            &user_256,
            &name_256,
        ];
        for bytes in bad {
            let (reply, reason) = rejection(whole(bytes).1);
            assert_eq!(reply, [0, 0x5B, 0, 0, 0, 0, 0, 0], "{bytes:?}: {reason}");
        }
    }

    // ---- HTTP CONNECT ----

    #[test]
    fn http_connect_with_headers_and_pipelined_data() {
        let bytes = b"CONNECT db.corp:5432 HTTP/1.1\r\nHost: db.corp:5432\r\nProxy-Connection: keep-alive\r\n\r\n\x16\x03";
        let got = request(whole(bytes).1);
        assert_eq!(got.protocol, Protocol::HttpConnect);
        assert_eq!(got.target, Target::name("db.corp", 5432));
        assert_eq!(got.leftover, b"\x16\x03");
    }

    #[test]
    fn http_connect_address_forms() {
        let cases = [
            ("CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n", "10.0.0.1:443"),
            ("CONNECT [fd00::1]:443 HTTP/1.1\r\n\r\n", "[fd00::1]:443"),
            (
                "CONNECT [::ffff:127.0.0.1]:80 HTTP/1.0\n\n",
                "[::ffff:127.0.0.1]:80",
            ),
            (
                "CONNECT Git.Example.:22 HTTP/1.1\nHost: x\n\n",
                "git.example:22",
            ),
        ];
        for (text, expected) in cases {
            let got = request(whole(text.as_bytes()).1);
            assert_eq!(got.target.to_string(), expected, "{text:?}");
        }
    }

    #[test]
    fn http_other_methods_get_405_naming_connect() {
        for text in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET ",
            "POST http://x/ HTTP/1.1\r\n",
            "CONNECTX a:1",
        ] {
            let (reply, reason) = rejection(whole(text.as_bytes()).1);
            assert_eq!(
                http_status(&reply),
                "HTTP/1.1 405 Method Not Allowed",
                "{text:?}"
            );
            assert!(String::from_utf8_lossy(&reply).contains("CONNECT"));
            assert!(reason.contains("only CONNECT"), "{reason}");
        }
    }

    #[test]
    fn http_malformed_requests_get_400() {
        let bad = [
            "CONNECT db.corp HTTP/1.1\r\n\r\n",
            "CONNECT db.corp: HTTP/1.1\r\n\r\n",
            "CONNECT db.corp:0 HTTP/1.1\r\n\r\n",
            "CONNECT db.corp:65536 HTTP/1.1\r\n\r\n",
            "CONNECT db.corp:+80 HTTP/1.1\r\n\r\n",
            "CONNECT fd00::1:443 HTTP/1.1\r\n\r\n",
            "CONNECT [fd00::1:443 HTTP/1.1\r\n\r\n",
            "CONNECT [fd00::1]443 HTTP/1.1\r\n\r\n",
            "CONNECT [10.0.0.1]:443 HTTP/1.1\r\n\r\n",
            "CONNECT :443 HTTP/1.1\r\n\r\n",
            "CONNECT a b:1 HTTP/1.1\r\n\r\n",
            "CONNECT  db:1 HTTP/1.1\r\n\r\n",
            "CONNECT db:1 HTTP/2\r\n\r\n",
            "CONNECT db:1\r\n\r\n",
            "CONNECT db:1 HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "CONNECT db:1 HTTP/1.1\r\nno colon\r\n\r\n",
            "CONNECT db:1 HTTP/1.1\r\n: empty name\r\n\r\n",
            "CONNECT db:1 HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            "CONNECT db:1 HTTP/1.1\r\nHost: a\0b\r\n\r\n",
            "CONNECT 127.1:80 HTTP/1.1\r\n\r\n",
            "G\0",
            "GET\r\n",
        ];
        for text in bad {
            let (reply, reason) = rejection(whole(text.as_bytes()).1);
            assert_eq!(
                http_status(&reply),
                "HTTP/1.1 400 Bad Request",
                "{text:?}: {reason}"
            );
        }
        let long_method = "A".repeat(super::http::MAX_METHOD + 1);
        let (reply, _) = rejection(whole(long_method.as_bytes()).1);
        assert_eq!(http_status(&reply), "HTTP/1.1 400 Bad Request");
    }

    #[test]
    fn http_head_limit() {
        let start = "CONNECT db:1 HTTP/1.1\r\n";
        let end = "\r\n";
        // One header padded so the head is exactly MAX_HTTP_HEAD bytes: accepted.
        let pad = MAX_HTTP_HEAD - start.len() - end.len() - "X: \r\n".len();
        let fits = format!("{start}X: {}\r\n{end}", "a".repeat(pad));
        assert_eq!(fits.len(), MAX_HTTP_HEAD);
        let got = request(whole(&[fits.as_bytes(), &[7; 100_000]].concat()).1);
        assert_eq!(got.leftover.len(), 100_000);
        // One byte more: 431.
        let over = format!("{start}X: {}a\r\n{end}", "a".repeat(pad));
        let (reply, _) = rejection(whole(over.as_bytes()).1);
        assert_eq!(
            http_status(&reply),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn http_endless_head_is_cut_at_the_limit_even_when_dribbled() {
        let mut handshake = Handshake::new();
        let mut fed = 0;
        let mut progress = handshake.feed(b"CONNECT db:1 HTTP/1.1\r\n");
        fed += 23;
        while progress == Progress::NeedMore {
            progress = handshake.feed(b"X");
            fed += 1;
            assert!(fed <= MAX_HTTP_HEAD, "still waiting after {fed} bytes");
        }
        let (reply, reason) = rejection(progress);
        assert!(http_status(&reply).contains("431"), "{reason}");
        assert_eq!(fed, MAX_HTTP_HEAD);
    }

    #[test]
    fn http_abort_mid_head() {
        let mut handshake = Handshake::new();
        assert_eq!(handshake.feed(b"CONNECT db:1 HT"), Progress::NeedMore);
        assert_eq!(
            http_status(&handshake.abort(&Outcome::ClientTimeout)),
            "HTTP/1.1 408 Request Timeout"
        );
    }

    // ---- any protocol ----

    #[test]
    fn garbage_first_byte_closes_without_reply() {
        for first in [0x16u8, 0x00, 0x03, b'g', b'c', b' ', 0xff] {
            let (reply, reason) = rejection(whole(&[first, 1, 2, 3]).1);
            assert!(reply.is_empty(), "0x{first:02x}");
            assert!(reason.contains("not a proxy handshake"), "{reason}");
        }
    }

    #[test]
    fn nothing_then_done() {
        let mut handshake = Handshake::new();
        assert_eq!(handshake.feed(&[]), Progress::NeedMore);
        assert!(handshake.abort(&Outcome::ClientTimeout).is_empty());
        assert_eq!(handshake.protocol(), None);
        assert!(matches!(
            handshake.feed(b"CONNECT a:1 HTTP/1.1\r\n\r\n"),
            Progress::Request(_)
        ));
        let (reply, _) = rejection(handshake.feed(b"more"));
        assert!(reply.is_empty());
        assert!(handshake.abort(&Outcome::Failure).is_empty());
    }

    /// Every split of a valid request gives the same result as the whole.
    #[test]
    fn splitting_changes_nothing() {
        let requests: Vec<Vec<u8>> = vec![
            [socks5(&socks5_domain("db.corp", 5432)), b"data".to_vec()].concat(),
            socks5(&[5, 1, 0, 1, 10, 0, 0, 7, 0, 80]),
            b"\x04\x01\x00\x50\x00\x00\x00\x01bob\x00git.corp\x00tail".to_vec(),
            b"\x04\x01\x00\x50\x0a\x00\x00\x07\x00".to_vec(),
            b"CONNECT [fd00::1]:443 HTTP/1.1\r\nHost: [fd00::1]:443\r\n\r\ntail".to_vec(),
            b"CONNECT a:1 HTTP/1.1\n\n".to_vec(),
        ];
        for bytes in &requests {
            let expected = whole(bytes);
            assert!(matches!(expected.1, Progress::Request(_)), "{bytes:?}");
            for at in 0..=bytes.len() {
                assert_eq!(
                    run(&[&bytes[..at], &bytes[at..]]),
                    expected,
                    "split at {at}"
                );
            }
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(run(&singles), expected, "byte by byte");
        }
    }

    /// xorshift64 (Marsaglia 2003): deterministic, no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random input, randomly chunked, after prefixes that reach every state: no panic,
    /// and every answer has a shape some client understands.
    #[test]
    fn random_bytes_never_panic() {
        let prefixes: [&[u8]; 7] = [
            b"",
            &[5],
            &[5, 1, 0],
            &[5, 1, 0, 5, 1, 0],
            &[5, 1, 0, 5, 1, 0, 3],
            &[4, 1, 0, 80, 0, 0, 0, 1],
            b"CONNECT ",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let prefix = prefixes[round % prefixes.len()];
            let len = rng.below(if round % 50 == 0 { 20_000 } else { 300 });
            let mut bytes = prefix.to_vec();
            // Half the rounds draw from a small alphabet, so NULs, spaces and CRLFs meet.
            let alphabet = b"\0\r\n :[]0123.aZ\x01\x03\x04\x05";
            for _ in 0..len {
                let byte = rng.next() as u8;
                bytes.push(if round % 2 == 0 {
                    byte
                } else {
                    alphabet[usize::from(byte) % alphabet.len()]
                });
            }
            let mut handshake = Handshake::new();
            let mut at = 0;
            let mut finished = false;
            while at < bytes.len() && !finished {
                let take = 1 + rng.below(64);
                let end = (at + take).min(bytes.len());
                let mut progress = handshake.feed(&bytes[at..end]);
                at = end;
                while let Progress::Reply(reply) = &progress {
                    assert_eq!(reply, &[5, 0]);
                    progress = handshake.feed(&[]);
                }
                match progress {
                    Progress::NeedMore => {
                        let abort = handshake.abort(&Outcome::ClientTimeout);
                        assert!(plausible_reply(&abort), "{abort:?}");
                    }
                    Progress::Request(request) => {
                        assert_ne!(request.target.port, 0);
                        finished = true;
                    }
                    Progress::Reject { reply, .. } => {
                        assert!(plausible_reply(&reply), "{reply:?} after {bytes:?}");
                        finished = true;
                    }
                    Progress::Reply(_) => unreachable!(),
                }
            }
            if finished {
                assert!(
                    matches!(handshake.feed(&[1]), Progress::Reject { reply, .. } if reply.is_empty())
                );
            }
        }
    }

    fn plausible_reply(reply: &[u8]) -> bool {
        reply.is_empty()
            || reply == [5, 0xFF]
            || (reply.len() == 10 && reply[0] == 5 && reply[1] != 0)
            || (reply.len() == 8 && reply[..2] == [0, 0x5B])
            || reply.starts_with(b"HTTP/1.1 4")
    }
}
