//! HTTP CONNECT (RFC 9110 9.3.6) with Basic authentication. The reply head is read with
//! MSG_PEEK and only up to its empty line, so the relay's first bytes (its SSH banner, often
//! in the same segment) stay on the socket for libssh2. It is bounded in size
//! (`MAX_REPLY_HEAD`) and in time (the handshake's deadline).

use super::{Clock, Conduit, Destination, ProxyError, ProxyUrl, Scrubber, printable, sample};
use base64ct::{Base64, Encoding};

/// The largest reply head (status line and headers) accepted from a proxy.
pub const MAX_REPLY_HEAD: usize = 16 * 1024;

const DURING_SEND: &str = "sending CONNECT";
const DURING_REPLY: &str = "waiting for the answer to CONNECT";

/// A parsed reply head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// `HTTP/1.1`, `HTTP/1.0`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase (may be empty), escaped.
    pub reason: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl HttpReply {
    /// Values of every header named `name` (case-insensitive).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The authentication schemes offered (`Proxy-Authenticate`, or `WWW-Authenticate`,
    /// which some proxies send with a 401), in order, without parameters.
    pub fn auth_schemes(&self) -> Vec<String> {
        let mut schemes: Vec<String> = Vec::new();
        for value in self
            .values("proxy-authenticate")
            .chain(self.values("www-authenticate"))
        {
            for part in split_outside_quotes(value) {
                let first = part.split_whitespace().next().unwrap_or("");
                if !first.is_empty()
                    && !first.contains('=')
                    && !schemes.iter().any(|s| s.eq_ignore_ascii_case(first))
                {
                    schemes.push(printable(first.as_bytes()));
                }
            }
        }
        schemes
    }
}

/// Sends CONNECT for `destination` and reads the answer; `Ok` with the status line when
/// the tunnel is open.
pub(super) fn connect<S: Conduit>(
    stream: &mut S,
    proxy: &ProxyUrl,
    destination: &Destination,
    clock: &mut Clock,
    scrub: &Scrubber,
) -> Result<String, ProxyError> {
    let target = destination.to_string();
    let mut request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: flytube/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some((user, password)) = proxy.credentials() {
        request.push_str("Proxy-Authorization: Basic ");
        request.push_str(&Base64::encode_string(
            format!("{user}:{password}").as_bytes(),
        ));
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    clock.send(stream, request.as_bytes(), DURING_SEND)?;
    drop(request);
    let head = read_head(stream, clock, scrub)?;
    let reply = parse_reply(&head).map_err(|e| ProxyError::Malformed(scrub.scrub(e)))?;
    if (200..300).contains(&reply.status) {
        return Ok(
            format!("{} {} {}", reply.version, reply.status, reply.reason)
                .trim_end()
                .to_string(),
        );
    }
    Err(ProxyError::Http {
        status: reply.status,
        reason: scrub.scrub(reply.reason.clone()),
        target,
        schemes: reply.auth_schemes(),
        user: proxy.user.clone(),
    })
}

/// Reads the reply head, up to and with its empty line and nothing after it.
fn read_head<S: Conduit>(
    stream: &mut S,
    clock: &mut Clock,
    scrub: &Scrubber,
) -> Result<Vec<u8>, ProxyError> {
    let mut head: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        clock.arm(stream, DURING_REPLY, head.len())?;
        // One byte past the limit tells an oversized head from one that just fits.
        let want = buf.len().min(MAX_REPLY_HEAD + 1 - head.len());
        let n = match stream.peek(&mut buf[..want]) {
            Ok(0) => {
                return Err(ProxyError::Closed {
                    during: DURING_REPLY,
                    received: head.len(),
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(clock.io_error(e, DURING_REPLY, head.len())),
        };
        let before = head.len();
        head.extend_from_slice(&buf[..n]);
        let prefix = head.len().min(5);
        if head[..prefix] != b"HTTP/"[..prefix] {
            // The peeked bytes are still on the socket: read them and a little more.
            let seen = sample(stream, &head[..before], clock);
            return Err(ProxyError::NotProxy {
                expected: "HTTP",
                seen: scrub.scrub(printable(&seen)),
            });
        }
        let end = head_end(&head, before.saturating_sub(3));
        let take = end.map_or(n, |end| end - before);
        head.truncate(before + take);
        // Consume what was peeked (and only that): it is all still in the socket buffer.
        clock.receive(stream, &mut buf[..take], DURING_REPLY, before)?;
        if end.is_some() {
            return Ok(head);
        }
        if head.len() > MAX_REPLY_HEAD {
            return Err(ProxyError::TooLarge {
                limit: MAX_REPLY_HEAD,
            });
        }
    }
}

/// The end of the head (just past its empty line) found at or after `from`: CRLF CRLF, or
/// a bare LF LF as lenient clients accept.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find_map(|i| {
        if bytes[i] != b'\n' {
            return None;
        }
        match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

/// Parses a reply head: `HTTP/1.x CODE [REASON]` and header lines (folded lines joined).
pub fn parse_reply(head: &[u8]) -> Result<HttpReply, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or("");
    let bad = || {
        format!(
            "status line {:?} is not HTTP",
            printable(status_line.as_bytes())
        )
    };
    let (version, rest) = status_line.split_once(' ').ok_or_else(bad)?;
    if !version.starts_with("HTTP/") {
        return Err(bad());
    }
    let rest = rest.trim_start();
    let code = rest.get(..3).ok_or_else(bad)?;
    if !code.bytes().all(|b| b.is_ascii_digit())
        || rest.as_bytes().get(3).is_some_and(|&b| b != b' ')
    {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    let reason = printable(rest[3..].trim().as_bytes());
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    Ok(HttpReply {
        version: version.to_string(),
        status,
        reason,
        headers,
    })
}

/// Splits a header value at commas that are not inside a quoted string.
fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::super::fake::Fake;
    use super::super::{Destination, ProxyError, ProxyUrl, open};
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread;
    use std::time::{Duration, Instant};

    fn relay() -> Destination {
        Destination::Name("relay.example".into(), 22)
    }

    fn run(url: &str, answer: &[u8]) -> (Result<super::super::Opened, ProxyError>, Fake) {
        let proxy = ProxyUrl::parse(url).unwrap();
        let mut fake = Fake::new(answer);
        let result = open(&mut fake, &proxy, &relay(), Duration::from_secs(5));
        (result, fake)
    }

    #[test]
    fn request_carries_basic_credentials() {
        let (result, fake) = run(
            "http://bob:p%40ss@proxy:3128",
            b"HTTP/1.1 200 Connection established\r\n\r\n",
        );
        assert_eq!(
            result.unwrap().answer,
            "HTTP/1.1 200 Connection established"
        );
        let sent = String::from_utf8(fake.sent).unwrap();
        assert!(
            sent.starts_with("CONNECT relay.example:22 HTTP/1.1\r\nHost: relay.example:22\r\n"),
            "{sent}"
        );
        let basic = Base64::encode_string(b"bob:p@ss");
        assert!(
            sent.contains(&format!("\r\nProxy-Authorization: Basic {basic}\r\n")),
            "{sent}"
        );
        assert!(sent.ends_with("\r\n\r\n"), "{sent}");
        // The socket's limit is cleared once the tunnel is open.
        assert_eq!(fake.timeouts.last(), Some(&None));
    }

    #[test]
    fn bytes_after_the_head_stay_for_the_tunnel() {
        let answer = b"HTTP/1.0 200 OK\r\nVia: x\r\n\r\nSSH-2.0-relay\r\n";
        let (result, fake) = run("http://proxy:1", answer);
        result.unwrap();
        assert_eq!(&fake.answer[fake.at..], b"SSH-2.0-relay\r\n");
        let sent = String::from_utf8(fake.sent).unwrap();
        assert!(!sent.contains("Proxy-Authorization"), "{sent}");
        // Bare LF line ends are accepted too.
        let (result, fake) = run("http://proxy:1", b"HTTP/1.1 200 OK\n\nSSH-");
        result.unwrap();
        assert_eq!(&fake.answer[fake.at..], b"SSH-");
    }

    #[test]
    fn auth_required_and_rejected_name_the_schemes() {
        let answer = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                       Proxy-Authenticate: Basic realm=\"corp, inc\"\r\n\
                       Proxy-Authenticate: Negotiate, NTLM\r\n\r\n<html>";
        let (result, _) = run("http://proxy:1", answer);
        let err = result.unwrap_err();
        assert!(err.is_auth());
        let text = err.to_string();
        assert!(text.contains("proxy authentication required"), "{text}");
        assert!(
            text.contains("407 Proxy Authentication Required; it offers Basic, Negotiate, NTLM"),
            "{text}"
        );
        let (result, _) = run("http://bob:hunter2@proxy:1", answer);
        let text = result.unwrap_err().to_string();
        assert!(
            text.contains("the proxy rejected the password of user \"bob\""),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        // Only schemes flytube cannot speak.
        let answer = b"HTTP/1.1 407 No\r\nProxy-Authenticate: NTLM\r\n\r\n";
        let text = run("http://proxy:1", answer).0.unwrap_err().to_string();
        assert!(text.contains("flytube speaks only Basic"), "{text}");
        // tinyproxy 1.11 answers a wrong password with 401 and WWW-Authenticate.
        let answer = b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"T\"\r\n\r\n";
        let err = run("http://bob:x@proxy:1", answer).0.unwrap_err();
        assert!(err.is_auth());
        assert!(err.to_string().contains("it offers Basic"), "{err}");
    }

    #[test]
    fn forbidden_upstream_and_other_statuses() {
        let err = run("http://proxy:1", b"HTTP/1.1 403 Forbidden\r\n\r\n")
            .0
            .unwrap_err();
        assert!(err.is_forbidden());
        assert_eq!(
            err.to_string(),
            "the proxy forbids CONNECT to relay.example:22 (403 Forbidden)"
        );
        for (answer, words) in [
            (&b"HTTP/1.1 502 Bad Gateway\r\n\r\n"[..], "502 Bad Gateway"),
            (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", "503"),
            (b"HTTP/1.1 500 Unable to connect\r\n\r\n", "500 Unable"),
        ] {
            let err = run("http://proxy:1", answer).0.unwrap_err();
            assert!(err.is_upstream(), "{err}");
            assert!(
                err.to_string()
                    .contains("could not open a tunnel to relay.example:22"),
                "{err}"
            );
            assert!(err.to_string().contains(words), "{err}");
        }
        let err = run("http://proxy:1", b"HTTP/1.1 400 \r\n\r\n")
            .0
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the proxy answered CONNECT relay.example:22 with 400 "
        );
        assert!(!err.is_auth() && !err.is_forbidden() && !err.is_upstream());
    }

    #[test]
    fn foreign_answers_are_named() {
        let err = run("http://proxy:1", b"SSH-2.0-OpenSSH_9.2\r\n")
            .0
            .unwrap_err();
        assert!(matches!(err, ProxyError::NotProxy { .. }));
        let text = err.to_string();
        assert!(text.contains("\"SSH-2.0-OpenSSH_9.2\""), "{text}");
        assert!(text.contains("an SSH server"), "{text}");
        let err = run("http://proxy:1", b"\x05\xff").0.unwrap_err();
        assert!(err.to_string().contains("use socks5://"), "{err}");
        let err = run("http://proxy:1", b"HTTP/1.1 abc\r\n\r\n")
            .0
            .unwrap_err();
        assert!(matches!(err, ProxyError::Malformed(_)), "{err}");
    }

    #[test]
    fn close_mid_answer_is_reported() {
        for answer in [&b""[..], b"HTTP/1.1 200 OK\r\nX: y\r\n"] {
            let err = run("http://proxy:1", answer).0.unwrap_err();
            assert!(
                matches!(err, ProxyError::Closed { received, .. } if received == answer.len()),
                "{err}"
            );
            assert!(err.to_string().contains("closed the connection"), "{err}");
        }
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
        while answer.len() <= MAX_REPLY_HEAD + 100 {
            answer.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let err = run("http://proxy:1", &answer).0.unwrap_err();
        assert!(matches!(err, ProxyError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("16 KiB"), "{err}");
        // Just under the limit is fine.
        let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
        let filler = MAX_REPLY_HEAD - answer.len() - 4 - "X: ".len();
        answer.extend_from_slice(format!("X: {}\r\n\r\n", "a".repeat(filler)).as_bytes());
        assert_eq!(answer.len(), MAX_REPLY_HEAD);
        run("http://proxy:1", &answer).0.unwrap();
    }

    #[test]
    fn parse_reply_fields() {
        let reply = parse_reply(
            b"HTTP/1.1 407 Auth\r\nProxy-Authenticate: Digest realm=\"a,b\", qop=\"auth\"\r\n \
              , Basic\r\nX: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!((reply.status, reply.reason.as_str()), (407, "Auth"));
        assert_eq!(reply.auth_schemes(), ["Digest", "Basic"]);
        assert_eq!(reply.values("x").collect::<Vec<_>>(), ["1"]);
        assert!(parse_reply(b"HTTP/1.1 2000 x\r\n\r\n").is_err());
        assert!(parse_reply(b"HTTX/1.1 200 x\r\n\r\n").is_err());
        assert_eq!(parse_reply(b"HTTP/1.0 200\r\n\r\n").unwrap().reason, "");
    }

    /// A loopback proxy that reads the request, then runs `answer` on the socket.
    fn loopback(answer: impl FnOnce(TcpStream) + Send + 'static) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            answer(s);
        });
        TcpStream::connect(addr).unwrap()
    }

    #[test]
    fn endless_slow_answer_is_cut_at_the_deadline() {
        let mut stream = loopback(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            for _ in 0..100 {
                if s.write_all(b"X: y\r\n").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let proxy = ProxyUrl::parse("http://proxy:1").unwrap();
        let started = Instant::now();
        let err = open(&mut stream, &proxy, &relay(), Duration::from_millis(600)).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, ProxyError::TimedOut { .. }), "{err}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(err.to_string().contains("within 0.6s"), "{err}");
    }

    #[test]
    fn endless_fast_answer_is_cut_at_the_size_limit() {
        let mut stream = loopback(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            while s.write_all(&[b'a'; 4096]).is_ok() {}
        });
        let proxy = ProxyUrl::parse("http://proxy:1").unwrap();
        let err = open(&mut stream, &proxy, &relay(), Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, ProxyError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn silent_proxy_times_out_and_banner_is_left_on_the_socket() {
        let mut stream = loopback(|s| {
            thread::sleep(Duration::from_secs(2));
            drop(s);
        });
        let proxy = ProxyUrl::parse("http://proxy:1").unwrap();
        let err = open(&mut stream, &proxy, &relay(), Duration::from_millis(300)).unwrap_err();
        assert!(
            matches!(err, ProxyError::TimedOut { received: 0, .. }),
            "{err}"
        );
        // A real socket: the head and the banner in one segment.
        let mut stream = loopback(|mut s| {
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\nSSH-2.0-x\r\n")
                .unwrap();
            thread::sleep(Duration::from_millis(200));
        });
        open(&mut stream, &proxy, &relay(), Duration::from_secs(5)).unwrap();
        let mut rest = [0u8; 11];
        stream.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"SSH-2.0-x\r\n");
        assert_eq!(stream.read_timeout().unwrap(), None);
    }
}
