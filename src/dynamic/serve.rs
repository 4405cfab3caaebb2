//! The blocking glue a worker thread runs for one dynamic-forward connection: read the
//! handshake under a deadline, decide before and after resolving once, dial only allowed
//! addresses, and answer in the client's protocol. All I/O is behind closures, so unit
//! tests drive it with in-memory fakes and loopback listeners.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::allow::Policy;
use super::handshake::{Handshake, Progress, Protocol, Request};
use super::reply::{Outcome, reply};
use super::target::{Host, Target};
use crate::net::{DialError, Dialed};

/// How long a client has to complete its handshake, from the first read. A real client
/// sends its request in one round trip; ten seconds covers a slow relay path, and cuts a
/// client that says nothing or dribbles a byte at a time.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the per-connection log line needs, filled in as far as the connection got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The protocol the client spoke, once known.
    pub protocol: Option<Protocol>,
    /// The destination asked for, once the request was complete.
    pub requested: Option<Target>,
    /// The address that answered.
    pub dialed: Option<SocketAddr>,
    /// The allow-list's verdict; `None` when no decision was reached (bad handshake, name
    /// that did not resolve).
    pub allowed: Option<bool>,
    /// The rule that decided, if one did.
    pub rule: Option<String>,
    /// What the client was told; `None` when the connection closed without a reply.
    pub outcome: Option<Outcome>,
    /// One line: the decision, addresses left out, and any failure.
    pub reason: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Some(protocol) => write!(f, "{protocol}")?,
            None => f.write_str("unknown protocol")?,
        }
        if let Some(target) = &self.requested {
            write!(f, " to {target}")?;
        }
        // An allowed decision's reason says so ("allowed by rule ..."); a refusal's names
        // the rule or the address, so the verdict is spelled out.
        if self.allowed == Some(false) {
            f.write_str(" denied")?;
        }
        if let Some(addr) = self.dialed {
            write!(f, " via {addr}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A connection ready to carry data.
#[derive(Debug)]
pub struct Negotiated {
    /// The target connection and the address that answered.
    pub dialed: Dialed,
    /// Bytes the client sent after its request: write them to the target first.
    pub leftover: Vec<u8>,
    /// For the log line.
    pub report: Report,
}

/// A connection that ends here; any reply has already been sent, so the caller only
/// closes (gracefully: the reply must reach the client before the close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// For the log line (boxed: it is most of the error's size, and refusals are rare).
    pub report: Box<Report>,
}

/// Serves one dynamic-forward connection up to the point where bytes can flow.
///
/// - `read(wait)` returns the client's next bytes, waiting at most `wait`: `Ok(Some(..))`
///   data, `Ok(None)` the client closed, `Err` of kind `TimedOut`/`WouldBlock` nothing
///   yet; any other error ends the connection without a reply.
/// - `send(bytes)` queues bytes for the client (the SOCKS5 method selection, then the
///   reply).
/// - `timeout` bounds the handshake only; `dial` applies its own connect timeout.
/// - `resolve(name, port)` is called at most once, and only for a name the allow-list
///   could still allow (`net::resolve`).
/// - `dial(addrs)` is called at most once, with only the allowed addresses, never empty
///   (`net::connect_any`).
pub fn negotiate<R, S, Q, D>(
    mut read: R,
    mut send: S,
    policy: &Policy,
    timeout: Duration,
    resolve: Q,
    dial: D,
) -> Result<Negotiated, Refusal>
where
    R: FnMut(Duration) -> io::Result<Option<Vec<u8>>>,
    S: FnMut(Vec<u8>),
    Q: FnOnce(&str, u16) -> Result<Vec<SocketAddr>, DialError>,
    D: FnOnce(&[SocketAddr]) -> Result<Dialed, DialError>,
{
    let mut report = Report::default();
    let request = match read_request(&mut read, &mut send, timeout, &mut report) {
        Ok(request) => request,
        Err(()) => {
            return Err(Refusal {
                report: Box::new(report),
            });
        }
    };
    report.protocol = Some(request.protocol);
    report.requested = Some(request.target.clone());
    let mut answer = |outcome: Outcome, report: &mut Report| {
        send(reply(request.protocol, &outcome));
        report.outcome = Some(outcome);
    };
    match connect(&request.target, policy, resolve, dial, &mut report) {
        Ok(dialed) => {
            let bound = dialed
                .stream
                .local_addr()
                .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
            answer(Outcome::Granted { bound }, &mut report);
            Ok(Negotiated {
                dialed,
                leftover: request.leftover,
                report,
            })
        }
        Err(outcome) => {
            answer(outcome, &mut report);
            Err(Refusal {
                report: Box::new(report),
            })
        }
    }
}

/// Reads until the handshake yields a request, sending the SOCKS5 method selection on the
/// way. On failure the error reply (if the protocol has one) is sent and `report` says why.
fn read_request<R, S>(
    read: &mut R,
    send: &mut S,
    timeout: Duration,
    report: &mut Report,
) -> Result<Request, ()>
where
    R: FnMut(Duration) -> io::Result<Option<Vec<u8>>>,
    S: FnMut(Vec<u8>),
{
    let deadline = Instant::now() + timeout;
    let mut handshake = Handshake::new();
    let mut progress = Progress::NeedMore;
    loop {
        match progress {
            Progress::Request(request) => return Ok(request),
            Progress::Reply(bytes) => {
                send(bytes);
                progress = handshake.feed(&[]);
                continue;
            }
            Progress::Reject {
                reply,
                outcome,
                reason,
            } => {
                report.protocol = handshake.protocol();
                report.reason = format!("handshake: {reason}");
                tell(send, reply, outcome, report);
                return Err(());
            }
            Progress::NeedMore => {}
        }
        report.protocol = handshake.protocol();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            report.reason = format!(
                "handshake: not complete after {:.1}s",
                timeout.as_secs_f64()
            );
            let outcome = Outcome::ClientTimeout;
            tell(send, handshake.abort(&outcome), outcome, report);
            return Err(());
        }
        match read(left) {
            Ok(Some(bytes)) => progress = handshake.feed(&bytes),
            Ok(None) => {
                report.reason = match handshake.protocol() {
                    None => "handshake: closed before sending anything".into(),
                    Some(_) => "handshake: closed in the middle of the request".into(),
                };
                let outcome = Outcome::Malformed;
                tell(send, handshake.abort(&outcome), outcome, report);
                return Err(());
            }
            Err(e) if is_wait(&e) => {}
            Err(e) => {
                report.reason = format!("handshake: read: {e}");
                return Err(());
            }
        }
    }
}

/// Sends an error reply, if the protocol has one at this point, and notes it.
fn tell<S: FnMut(Vec<u8>)>(send: &mut S, reply: Vec<u8>, outcome: Outcome, report: &mut Report) {
    if !reply.is_empty() {
        send(reply);
        report.outcome = Some(outcome);
    }
}

fn is_wait(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Decides (without DNS when the name alone settles it), resolves once, decides on the
/// addresses, and dials only those allowed. The error is the outcome to answer.
fn connect<Q, D>(
    target: &Target,
    policy: &Policy,
    resolve: Q,
    dial: D,
    report: &mut Report,
) -> Result<Dialed, Outcome>
where
    Q: FnOnce(&str, u16) -> Result<Vec<SocketAddr>, DialError>,
    D: FnOnce(&[SocketAddr]) -> Result<Dialed, DialError>,
{
    // No let-chain here: the crate's rust-version (1.87) predates them.
    if let Some(decision) = policy.decide_unresolved(target) {
        if !decision.allowed {
            report.allowed = Some(false);
            report.rule = decision.rule;
            report.reason = decision.reason;
            return Err(Outcome::NotAllowed);
        }
    }
    let resolved = match &target.host {
        // The decision on an address needs no lookup.
        Host::Addr(_) => Vec::new(),
        Host::Name(name) => resolve(name, target.port).map_err(|e| {
            report.reason = format!("cannot resolve: {e}");
            Outcome::from_dial_kind(e.kind())
        })?,
    };
    let (decision, addrs) = policy.dialable(target, &resolved);
    report.allowed = Some(decision.allowed);
    report.rule = decision.rule;
    report.reason = decision.reason;
    if !decision.allowed || addrs.is_empty() {
        report.allowed = Some(false);
        return Err(Outcome::NotAllowed);
    }
    match dial(&addrs) {
        Ok(dialed) => {
            report.dialed = Some(dialed.addr);
            Ok(dialed)
        }
        Err(e) => {
            report.reason = format!("{}; connect failed: {e}", report.reason);
            Err(Outcome::from_dial_kind(e.kind()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net;
    use std::collections::VecDeque;
    use std::net::{IpAddr, TcpListener, TcpStream};
    use std::thread;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// The client's side of the conversation, one read at a time; after the script the
    /// client goes silent (each read waits out its time and reports `TimedOut`).
    enum Say {
        Bytes(Vec<u8>),
        Close,
        Fail,
    }

    fn script(steps: Vec<Say>) -> impl FnMut(Duration) -> io::Result<Option<Vec<u8>>> {
        let mut steps: VecDeque<Say> = steps.into();
        move |wait| match steps.pop_front() {
            Some(Say::Bytes(bytes)) => Ok(Some(bytes)),
            Some(Say::Close) => Ok(None),
            Some(Say::Fail) => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
            None => {
                thread::sleep(wait);
                Err(io::Error::from(io::ErrorKind::TimedOut))
            }
        }
    }

    fn says(chunks: &[&[u8]]) -> impl FnMut(Duration) -> io::Result<Option<Vec<u8>>> + use<> {
        script(chunks.iter().map(|c| Say::Bytes(c.to_vec())).collect())
    }

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        Policy::parse(allow, deny).unwrap()
    }

    /// A loopback listener standing in for any target; `dial` connects to it whatever the
    /// address asked for, reports that address, and records every call.
    struct FakeNet {
        listener: TcpListener,
        dials: Vec<Vec<SocketAddr>>,
        lookups: Vec<String>,
    }

    impl FakeNet {
        fn new() -> FakeNet {
            FakeNet {
                listener: TcpListener::bind("127.0.0.1:0").unwrap(),
                dials: Vec::new(),
                lookups: Vec::new(),
            }
        }

        fn resolver<'a>(
            lookups: &'a mut Vec<String>,
            answer: &'a [&str],
        ) -> impl FnOnce(&str, u16) -> Result<Vec<SocketAddr>, DialError> + 'a {
            move |name, port| {
                lookups.push(name.to_string());
                if answer.is_empty() {
                    return Err(DialError::NoAddress { host: name.into() });
                }
                Ok(answer
                    .iter()
                    .map(|a| SocketAddr::new(a.parse().unwrap(), port))
                    .collect())
            }
        }

        fn dialer<'a>(
            dials: &'a mut Vec<Vec<SocketAddr>>,
            listener: &'a TcpListener,
        ) -> impl FnOnce(&[SocketAddr]) -> Result<Dialed, DialError> + 'a {
            move |addrs| {
                dials.push(addrs.to_vec());
                let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                Ok(Dialed {
                    stream,
                    addr: addrs[0],
                })
            }
        }

        /// Runs `negotiate` with this fake network; the resolver answers `answer`.
        fn negotiate(
            &mut self,
            read: impl FnMut(Duration) -> io::Result<Option<Vec<u8>>>,
            policy: &Policy,
            answer: &[&str],
        ) -> (Vec<Vec<u8>>, Result<Negotiated, Refusal>) {
            let mut sent = Vec::new();
            let result = negotiate(
                read,
                |bytes| sent.push(bytes),
                policy,
                TIMEOUT,
                FakeNet::resolver(&mut self.lookups, answer),
                FakeNet::dialer(&mut self.dials, &self.listener),
            );
            (sent, result)
        }
    }

    fn dial_failing(
        kind: io::ErrorKind,
    ) -> impl FnOnce(&[SocketAddr]) -> Result<Dialed, DialError> {
        move |addrs| {
            Err(DialError::Connect {
                attempts: addrs.iter().map(|&a| (a, io::Error::from(kind))).collect(),
            })
        }
    }

    fn socks5_domain(name: &str, port: u16) -> Vec<u8> {
        let mut out = vec![5, 1, 0, 3, name.len() as u8];
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&port.to_be_bytes());
        out
    }

    fn status_line(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes)
            .split("\r\n")
            .next()
            .unwrap_or_default()
            .to_string()
    }

    fn refusal(result: Result<Negotiated, Refusal>) -> Report {
        match result {
            Ok(negotiated) => panic!("expected a refusal, got {:?}", negotiated.report),
            Err(refusal) => *refusal.report,
        }
    }

    // ---- granted ----

    #[test]
    fn socks5_name_granted_with_leftover() {
        let mut fake = FakeNet::new();
        let read = says(&[
            &[5, 1, 0],
            &[&socks5_domain("db.corp", 5432)[..], b"hello"].concat(),
        ]);
        let (sent, result) = fake.negotiate(
            read,
            &policy(&["*.corp:5432"], &[]),
            &["10.0.0.7", "10.0.0.8"],
        );
        let negotiated = result.unwrap();
        assert_eq!(fake.lookups, ["db.corp"]);
        assert_eq!(
            fake.dials,
            [vec![
                "10.0.0.7:5432".parse::<SocketAddr>().unwrap(),
                "10.0.0.8:5432".parse().unwrap()
            ]]
        );
        assert_eq!(negotiated.leftover, b"hello");
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], [5, 0]);
        let bound = negotiated.dialed.stream.local_addr().unwrap();
        let mut granted = vec![5, 0, 0, 1, 127, 0, 0, 1];
        granted.extend_from_slice(&bound.port().to_be_bytes());
        assert_eq!(sent[1], granted);
        let report = negotiated.report;
        assert_eq!(report.protocol, Some(Protocol::Socks5));
        assert_eq!(report.requested, Some(Target::name("db.corp", 5432)));
        assert_eq!(report.dialed, Some("10.0.0.7:5432".parse().unwrap()));
        assert_eq!(report.allowed, Some(true));
        assert_eq!(report.rule.as_deref(), Some("*.corp:5432"));
        assert_eq!(report.outcome, Some(Outcome::Granted { bound }));
        assert_eq!(
            report.to_string(),
            "socks5 to db.corp:5432 via 10.0.0.7:5432: allowed by rule *.corp:5432"
        );
    }

    #[test]
    fn http_ipv6_granted() {
        let mut fake = FakeNet::new();
        let read = says(&[b"CONNECT [fd00::7]:443 HTTP/1.1\r\nHost: [fd00::7]:443\r\n\r\n"]);
        let (sent, result) = fake.negotiate(read, &policy(&["[fd00::/8]:443"], &[]), &[]);
        let negotiated = result.unwrap();
        assert!(fake.lookups.is_empty(), "an address needs no lookup");
        assert_eq!(fake.dials, [vec!["[fd00::7]:443".parse().unwrap()]]);
        assert_eq!(
            sent,
            [b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec()]
        );
        assert_eq!(negotiated.report.protocol, Some(Protocol::HttpConnect));
    }

    #[test]
    fn socks4a_granted() {
        let mut fake = FakeNet::new();
        let read = says(&[b"\x04\x01\x00\x16\x00\x00\x00\x01\x00git.corp\x00"]);
        let (sent, result) = fake.negotiate(read, &policy(&["git.corp:22"], &[]), &["10.0.0.9"]);
        let negotiated = result.unwrap();
        let bound = negotiated.dialed.stream.local_addr().unwrap();
        let mut granted = vec![0, 0x5A];
        granted.extend_from_slice(&bound.port().to_be_bytes());
        granted.extend_from_slice(&[127, 0, 0, 1]);
        assert_eq!(sent, [granted]);
        assert_eq!(negotiated.report.protocol, Some(Protocol::Socks4a));
    }

    #[test]
    fn real_dial_to_an_explicitly_allowed_loopback_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut request = vec![4, 1];
        request.extend_from_slice(&port.to_be_bytes());
        request.extend_from_slice(&[127, 0, 0, 1, 0]);
        let mut sent = Vec::new();
        let negotiated = negotiate(
            says(&[&request]),
            |bytes| sent.push(bytes),
            &policy(&["127.0.0.1"], &[]),
            TIMEOUT,
            net::resolve,
            |addrs| net::connect_any(addrs, TIMEOUT),
        )
        .unwrap();
        assert_eq!(negotiated.dialed.addr, listener.local_addr().unwrap());
        assert_eq!(sent[0][..2], [0, 0x5A]);
        assert_eq!(negotiated.report.rule.as_deref(), Some("127.0.0.1"));
    }

    // ---- denied: never dialed ----

    #[test]
    fn denied_name_is_neither_resolved_nor_dialed() {
        let mut fake = FakeNet::new();
        let read = says(&[&[5, 1, 0], &socks5_domain("evil.example", 443)]);
        let (sent, result) = fake.negotiate(read, &policy(&["*.corp"], &[]), &["10.0.0.1"]);
        let report = refusal(result);
        assert!(fake.lookups.is_empty() && fake.dials.is_empty());
        assert_eq!(sent, [vec![5, 0], vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]]);
        assert_eq!(report.allowed, Some(false));
        assert_eq!(report.rule, None);
        assert_eq!(report.outcome, Some(Outcome::NotAllowed));
        assert!(
            report.reason.contains("no allow rule matches evil.example"),
            "{report}"
        );
    }

    #[test]
    fn denied_port_and_deny_rule() {
        let mut fake = FakeNet::new();
        let read = says(&[b"CONNECT db.corp:22 HTTP/1.1\r\n\r\n"]);
        let (sent, result) = fake.negotiate(read, &policy(&["db.corp:5432"], &[]), &["10.0.0.1"]);
        refusal(result);
        assert_eq!(status_line(&sent[0]), "HTTP/1.1 403 Forbidden");
        let read = says(&[b"CONNECT vault.corp:443 HTTP/1.1\r\n\r\n"]);
        let (_, result) =
            fake.negotiate(read, &policy(&["*.corp"], &["vault.corp"]), &["10.0.0.1"]);
        let report = refusal(result);
        assert_eq!(report.rule.as_deref(), Some("vault.corp"));
        assert!(fake.lookups.is_empty() && fake.dials.is_empty());
    }

    #[test]
    fn metadata_address_is_never_dialed() {
        let mut fake = FakeNet::new();
        let read = says(&[b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n"]);
        let (sent, result) = fake.negotiate(read, &policy(&["*", "0.0.0.0/0"], &[]), &[]);
        let report = refusal(result);
        assert!(fake.dials.is_empty());
        assert_eq!(status_line(&sent[0]), "HTTP/1.1 403 Forbidden");
        assert!(report.reason.contains("link-local"), "{report}");
    }

    #[test]
    fn wildcard_name_resolving_to_guarded_addresses_is_never_dialed() {
        let mut fake = FakeNet::new();
        let read = says(&[&[5, 1, 0], &socks5_domain("meta.corp.example", 80)]);
        let (sent, result) = fake.negotiate(
            read,
            &policy(&["*.corp.example"], &[]),
            &["169.254.169.254", "::ffff:127.0.0.1"],
        );
        refusal(result);
        assert_eq!(fake.lookups, ["meta.corp.example"]);
        assert!(fake.dials.is_empty());
        assert_eq!(sent[1][1], 0x02);
    }

    #[test]
    fn mixed_resolution_dials_only_the_allowed_address() {
        let mut fake = FakeNet::new();
        let read = says(&[b"CONNECT app.corp:443 HTTP/1.1\r\n\r\n"]);
        let (_, result) = fake.negotiate(
            read,
            &policy(&["*.corp"], &[]),
            &["169.254.169.254", "10.0.0.3"],
        );
        let report = result.unwrap().report;
        assert_eq!(fake.dials, [vec!["10.0.0.3:443".parse().unwrap()]]);
        assert!(
            report.reason.contains("not dialing 169.254.169.254"),
            "{report}"
        );
    }

    /// The real resolver and a real listener on 127.0.0.1: `*` asked for localhost on the
    /// listener's port leaves it without a single connection.
    #[test]
    fn star_asked_for_localhost_leaves_the_listener_untouched() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sent = Vec::new();
        let mut dialed = false;
        let result = negotiate(
            says(&[&[5, 1, 0], &socks5_domain("localhost", port)]),
            |bytes| sent.push(bytes),
            &policy(&["*"], &[]),
            TIMEOUT,
            net::resolve,
            |addrs| {
                dialed = true;
                net::connect_any(addrs, TIMEOUT)
            },
        );
        let report = refusal(result);
        assert!(!dialed);
        assert_eq!(sent[1][1], 0x02, "{report}");
        assert_eq!(
            listener.accept().map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::WouldBlock)
        );
    }

    // ---- dial failures ----

    #[test]
    fn refused_connection_gets_05_and_502() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        // The request, and how the last reply starts.
        let cases: [(Vec<u8>, &[u8]); 2] = [
            (
                [
                    &[5u8, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1][..],
                    &port.to_be_bytes(),
                ]
                .concat(),
                &[5, 5],
            ),
            (
                format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").into_bytes(),
                b"HTTP/1.1 502 Bad Gateway\r\n",
            ),
        ];
        for (request, expected) in cases {
            let mut sent = Vec::new();
            let result = negotiate(
                says(&[&request]),
                |bytes| sent.push(bytes),
                &policy(&["127.0.0.1"], &[]),
                TIMEOUT,
                net::resolve,
                |addrs| net::connect_any(addrs, TIMEOUT),
            );
            let report = refusal(result);
            assert_eq!(report.outcome, Some(Outcome::Refused));
            assert_eq!(report.allowed, Some(true));
            assert!(report.reason.contains("connect failed"), "{report}");
            let last = sent.last().unwrap();
            assert!(last.starts_with(expected), "{last:?}");
        }
    }

    #[test]
    fn dial_timeout_and_unreachable_map_to_their_codes() {
        let cases = [
            (
                io::ErrorKind::TimedOut,
                0x06,
                "HTTP/1.1 504 Gateway Timeout",
            ),
            (
                io::ErrorKind::HostUnreachable,
                0x04,
                "HTTP/1.1 502 Bad Gateway",
            ),
            (
                io::ErrorKind::NetworkUnreachable,
                0x03,
                "HTTP/1.1 502 Bad Gateway",
            ),
            (
                io::ErrorKind::PermissionDenied,
                0x01,
                "HTTP/1.1 502 Bad Gateway",
            ),
        ];
        for (kind, code, status) in cases {
            let mut sent = Vec::new();
            let result = negotiate(
                says(&[&[5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80]]),
                |bytes| sent.push(bytes),
                &policy(&["10.0.0.0/8"], &[]),
                TIMEOUT,
                net::resolve,
                dial_failing(kind),
            );
            refusal(result);
            assert_eq!(sent[1][1], code, "{kind:?}");
            let mut sent = Vec::new();
            let result = negotiate(
                says(&[b"CONNECT 10.0.0.1:80 HTTP/1.1\r\n\r\n"]),
                |bytes| sent.push(bytes),
                &policy(&["10.0.0.0/8"], &[]),
                TIMEOUT,
                net::resolve,
                dial_failing(kind),
            );
            refusal(result);
            assert_eq!(status_line(&sent[0]), status, "{kind:?}");
        }
    }

    #[test]
    fn unresolvable_name_gets_04_and_502() {
        let mut sent = Vec::new();
        let result = negotiate(
            says(&[&[5, 1, 0], &socks5_domain("no-such-host.invalid", 80)]),
            |bytes| sent.push(bytes),
            &policy(&["*"], &[]),
            TIMEOUT,
            net::resolve,
            dial_failing(io::ErrorKind::Other),
        );
        let report = refusal(result);
        assert_eq!(sent[1][1], 0x04);
        assert_eq!(report.outcome, Some(Outcome::NameNotFound));
        assert_eq!(report.allowed, None);
        assert!(report.reason.starts_with("cannot resolve"), "{report}");
        let mut fake = FakeNet::new();
        let read = says(&[b"CONNECT gone.corp:80 HTTP/1.1\r\n\r\n"]);
        let (sent, result) = fake.negotiate(read, &policy(&["*.corp"], &[]), &[]);
        refusal(result);
        assert!(String::from_utf8_lossy(&sent[0]).contains("502 Bad Gateway"));
        assert!(String::from_utf8_lossy(&sent[0]).contains("name not found"));
    }

    // ---- bad clients ----

    #[test]
    fn silent_client_is_cut_at_the_deadline_without_a_reply() {
        let started = Instant::now();
        let mut sent = Vec::new();
        let result = negotiate(
            says(&[]),
            |bytes| sent.push(bytes),
            &policy(&["*"], &[]),
            Duration::from_millis(150),
            net::resolve,
            dial_failing(io::ErrorKind::Other),
        );
        let report = refusal(result);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert!(sent.is_empty());
        assert_eq!(report.outcome, None);
        assert!(
            report.reason.contains("not complete after 0.1s"),
            "{report}"
        );
    }

    #[test]
    fn dribbling_client_is_cut_at_the_deadline_with_408() {
        let request = b"CONNECT db.corp:5432 HTTP/1.1\r\nHost: db.corp:5432\r\n\r\n";
        let mut at = 0;
        let read = |wait: Duration| -> io::Result<Option<Vec<u8>>> {
            // One byte every 20 ms: each read succeeds, the whole never finishes in time.
            thread::sleep(wait.min(Duration::from_millis(20)));
            at += 1;
            Ok(request.get(at - 1..at).map(<[u8]>::to_vec))
        };
        let mut sent = Vec::new();
        let started = Instant::now();
        let result = negotiate(
            read,
            |bytes| sent.push(bytes),
            &policy(&["*"], &[]),
            Duration::from_millis(200),
            net::resolve,
            dial_failing(io::ErrorKind::Other),
        );
        let report = refusal(result);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(status_line(&sent[0]), "HTTP/1.1 408 Request Timeout");
        assert_eq!(report.outcome, Some(Outcome::ClientTimeout));
        assert_eq!(report.protocol, Some(Protocol::HttpConnect));
    }

    #[test]
    fn truncated_socks5_request_then_close_gets_01() {
        let mut sent = Vec::new();
        let result = negotiate(
            script(vec![
                Say::Bytes(vec![5, 1, 0, 5, 1, 0, 3, 9, b'd']),
                Say::Close,
            ]),
            |bytes| sent.push(bytes),
            &policy(&["*"], &[]),
            TIMEOUT,
            net::resolve,
            dial_failing(io::ErrorKind::Other),
        );
        let report = refusal(result);
        assert_eq!(sent, [vec![5, 0], vec![5, 1, 0, 1, 0, 0, 0, 0, 0, 0]]);
        assert!(report.reason.contains("middle of the request"), "{report}");
        assert_eq!(report.requested, None);
    }

    #[test]
    fn garbage_closes_without_reply() {
        let mut sent = Vec::new();
        let result = negotiate(
            says(&[b"\x16\x03\x01\x02\x00"]),
            |bytes| sent.push(bytes),
            &policy(&["*"], &[]),
            TIMEOUT,
            net::resolve,
            dial_failing(io::ErrorKind::Other),
        );
        let report = refusal(result);
        assert!(sent.is_empty());
        assert_eq!(report.outcome, None);
        assert_eq!(report.protocol, None);
        assert_eq!(
            report.to_string(),
            "unknown protocol: handshake: not a proxy handshake (first byte 0x16)"
        );
    }

    #[test]
    fn closed_before_anything_and_read_errors_send_nothing() {
        for steps in [vec![Say::Close], vec![Say::Bytes(vec![4, 1]), Say::Fail]] {
            let mut sent = Vec::new();
            let result = negotiate(
                script(steps),
                |bytes| sent.push(bytes),
                &policy(&["*"], &[]),
                TIMEOUT,
                net::resolve,
                dial_failing(io::ErrorKind::Other),
            );
            let report = refusal(result);
            assert!(sent.is_empty(), "{report}");
        }
    }

    #[test]
    fn handshake_rejections_are_answered() {
        let cases: [(&[u8], Vec<u8>); 3] = [
            (&[5, 1, 2], vec![5, 0xFF]),
            (
                b"\x04\x02\x00\x50\x0a\x00\x00\x01\x00",
                vec![0, 0x5B, 0, 0, 0, 0, 0, 0],
            ),
            (&[5, 1, 0, 5, 2, 0, 1], vec![5, 7, 0, 1, 0, 0, 0, 0, 0, 0]),
        ];
        for (request, last) in cases {
            let mut sent = Vec::new();
            let result = negotiate(
                says(&[request]),
                |bytes| sent.push(bytes),
                &policy(&["*"], &[]),
                TIMEOUT,
                net::resolve,
                dial_failing(io::ErrorKind::Other),
            );
            let report = refusal(result);
            assert_eq!(sent.last(), Some(&last), "{report}");
            assert!(report.reason.starts_with("handshake: "), "{report}");
        }
        let mut sent = Vec::new();
        let result = negotiate(
            says(&[b"GET http://x/ HTTP/1.1\r\n\r\n"]),
            |bytes| sent.push(bytes),
            &policy(&["*"], &[]),
            TIMEOUT,
            net::resolve,
            dial_failing(io::ErrorKind::Other),
        );
        let report = refusal(result);
        assert_eq!(status_line(&sent[0]), "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(report.outcome, Some(Outcome::CommandNotSupported));
    }

    #[test]
    fn addresses_in_the_report_are_the_ones_asked_for() {
        let report = Report {
            protocol: Some(Protocol::Socks4),
            requested: Some(Target::addr(IpAddr::from([10, 0, 0, 1]), 80)),
            allowed: Some(false),
            reason: "x".into(),
            ..Report::default()
        };
        assert_eq!(report.to_string(), "socks4 to 10.0.0.1:80 denied: x");
    }
}
