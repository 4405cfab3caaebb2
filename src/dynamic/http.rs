//! The HTTP side of the handshake: an HTTP/1.1 `CONNECT host:port` request head (RFC 9110
//! §9.3.6, RFC 9112 §3), found in the bytes so far and checked line by line.

use std::net::{IpAddr, Ipv6Addr};

use super::reply::Outcome;
use super::target::{Host, Target};

/// Largest HTTP request head (request line, headers and the blank line). A CONNECT needs a
/// few hundred bytes; 8 KiB is what common servers accept by default (nginx's
/// large_client_header_buffers line size), so real clients never hit it.
pub const MAX_HTTP_HEAD: usize = 8 * 1024;
/// Longest HTTP method waited for before a non-CONNECT request is answered.
pub(super) const MAX_METHOD: usize = 32;
/// Client text quoted in a reason is cut to this many characters, to keep log lines short.
const MAX_QUOTE: usize = 64;

/// What the first bytes say about the method.
pub(super) enum Method {
    /// CONNECT so far.
    MaybeConnect,
    /// A method that is not finished yet.
    NeedMore,
    /// 405 naming CONNECT for another method, 400 for bytes that are not HTTP at all.
    Reject(Outcome, String),
}

/// Judges the method as soon as it is known, so a client speaking plain HTTP to the proxy
/// is told at once instead of after its whole request.
pub(super) fn check_method(buf: &[u8]) -> Method {
    const CONNECT: &[u8] = b"CONNECT ";
    let n = buf.len().min(CONNECT.len());
    if buf[..n] == CONNECT[..n] {
        return Method::MaybeConnect;
    }
    match buf.iter().take(MAX_METHOD + 1).position(|&b| !is_tchar(b)) {
        Some(i) if i > 0 && buf[i] == b' ' => Method::Reject(
            Outcome::CommandNotSupported,
            format!(
                "http method {} is not supported, only CONNECT",
                quote(&buf[..i])
            ),
        ),
        Some(_) => Method::Reject(Outcome::Malformed, "not an HTTP request".into()),
        None if buf.len() > MAX_METHOD => Method::Reject(
            Outcome::Malformed,
            format!("http method longer than {MAX_METHOD} characters"),
        ),
        None => Method::NeedMore,
    }
}

/// Where the search for the blank line ending the head stands: `line_start` is where the
/// current line begins and `scanned` how far the search got, so a client that dribbles a
/// byte at a time costs linear time, not quadratic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct HeadScan {
    line_start: usize,
    scanned: usize,
}

impl HeadScan {
    /// The length of the head (through its blank line) once `buf` holds it within
    /// `MAX_HTTP_HEAD` bytes. Bytes past the limit are never looked at: they are either
    /// the client's data or proof that the head is too large.
    pub(super) fn advance(&mut self, buf: &[u8]) -> Option<usize> {
        let limit = buf.len().min(MAX_HTTP_HEAD);
        while let Some(i) = buf[self.scanned..limit].iter().position(|&b| b == b'\n') {
            let newline = self.scanned + i;
            self.scanned = newline + 1;
            let line = &buf[self.line_start..newline];
            // CRLF is the rule; a bare LF is tolerated (RFC 9112 §2.2).
            if line.is_empty() || line == b"\r" {
                return Some(newline + 1);
            }
            self.line_start = newline + 1;
        }
        self.scanned = limit;
        None
    }
}

/// The target of a complete head (`CONNECT host:port HTTP/1.x`, headers, blank line).
/// Headers are checked for shape only: flytube needs none of them.
pub(super) fn parse_head(head: &[u8]) -> Result<Target, String> {
    for (i, &b) in head.iter().enumerate() {
        // A lone CR or a control byte is how request smuggling starts (RFC 9112 §2.2).
        let bare_cr = b == b'\r' && head.get(i + 1) != Some(&b'\n');
        let control = (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f;
        if bare_cr || control {
            return Err(format!("http request contains byte 0x{b:02x}"));
        }
    }
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let target = parse_request_line(lines.next().unwrap_or_default())?;
    for line in lines.take_while(|line| !line.is_empty()) {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return Err("http header folded over two lines (obsolete, RFC 9112 §5.2)".into());
        }
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if name.is_empty() || name.len() == line.len() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(format!("http header line {} has no name", quote(line)));
        }
    }
    Ok(target)
}

/// `CONNECT host:port HTTP/1.x`, single spaces, as RFC 9112 §3 writes it.
fn parse_request_line(line: &[u8]) -> Result<Target, String> {
    let text = std::str::from_utf8(line).map_err(|_| "http request line is not text")?;
    let mut parts = text.split(' ');
    let (Some("CONNECT"), Some(authority), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "http request line {} is not CONNECT host:port HTTP/1.1",
            quote(line)
        ));
    };
    let minor = version.strip_prefix("HTTP/1.");
    if !minor.is_some_and(|m| m.len() == 1 && m.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!(
            "http version {} is not supported, only HTTP/1.x",
            quote(version.as_bytes())
        ));
    }
    parse_authority(authority)
        .map_err(|e| format!("http CONNECT {}: {e}", quote(authority.as_bytes())))
}

/// `host:port`, `1.2.3.4:port` or `[v6]:port` (RFC 9110 §9.3.6: the port is required).
fn parse_authority(text: &str) -> Result<Target, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or("unclosed '['")?;
        let port = after.strip_prefix(':').ok_or("expected :port after ']'")?;
        let addr: Ipv6Addr = inside
            .parse()
            .map_err(|_| "brackets hold something other than an IPv6 address")?;
        (Host::Addr(IpAddr::V6(addr)), port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or("expected host:port")?;
        if host.contains(':') {
            return Err("IPv6 addresses go in brackets: [2001:db8::1]:443".into());
        }
        (Host::parse(host)?, port)
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a number in 1-65535".into());
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(Target { host, port }),
        _ => Err("the port is not a number in 1-65535".into()),
    }
}

/// A token character (RFC 9110 §5.6.2), what methods and header names are made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Client bytes for a log line: escaped, and cut after `MAX_QUOTE` characters.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut: String = text.chars().take(MAX_QUOTE).collect();
    if cut.len() < text.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}
