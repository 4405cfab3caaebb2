//! The dynamic forward through a real sshd: curl speaks SOCKS5, SOCKS4a and HTTP CONNECT to
//! the relay port, flytube dials only what the allow-list permits, and every refusal gets
//! the reply code the protocol defines (the refused destination is never dialed).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(20);

/// An HTTP server on 127.0.0.1:0 that answers every request with `body` and counts the
/// connections it accepted.
struct HttpTarget {
    port: u16,
    dials: Arc<AtomicUsize>,
}

impl HttpTarget {
    fn start(body: Vec<u8>) -> HttpTarget {
        HttpTarget::start_on("127.0.0.1:0", body)
    }

    fn start_on(addr: &str, body: Vec<u8>) -> HttpTarget {
        let listener = TcpListener::bind(addr).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dials = Arc::new(AtomicUsize::new(0));
        let counter = dials.clone();
        let body = Arc::new(body);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                thread::spawn(move || serve_http(stream, &body));
            }
        });
        HttpTarget { port, dials }
    }

    fn dials(&self) -> usize {
        self.dials.load(Ordering::SeqCst)
    }
}

fn serve_http(mut stream: TcpStream, body: &[u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// flytube with one dynamic forward on `source` and the given allow rules.
fn start_dynamic(relay: &Relay, source: u16, rules: &[String], extra: &[&str]) -> Flytube {
    let mut args = relay.args();
    args.extend(["-R".to_string(), format!("127.0.0.1:{source}")]);
    for rule in rules {
        args.extend(["--allow".to_string(), rule.clone()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    flytube
}

/// curl through the relay port with `proxy_args`; (exit code, body).
fn curl(proxy_args: &[&str], url: &str) -> (Option<i32>, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--noproxy", ""])
        .args(proxy_args)
        .arg(url)
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .expect("curl");
    (out.status.code(), out.stdout)
}

#[test]
fn curl_reaches_an_allowed_target_with_socks5_socks4a_and_http_connect() {
    let relay = Relay::start();
    let body = random_bytes(256 * 1024, 21);
    let target = HttpTarget::start(body.clone());
    let source = free_port();
    let rule = format!("127.0.0.1:{}", target.port);
    let flytube = start_dynamic(&relay, source, &[rule], &[]);
    let proxy = format!("127.0.0.1:{source}");
    let url = format!("http://127.0.0.1:{}/", target.port);
    for how in [
        vec!["--socks5-hostname", proxy.as_str()],
        vec!["--socks4a", proxy.as_str()],
        vec!["-p", "-x", &format!("http://{proxy}")],
    ] {
        let (code, got) = curl(&how, &url);
        assert_eq!(code, Some(0), "{how:?}: {}", flytube.output());
        assert!(
            got == body,
            "{how:?}: the body differs ({} bytes)",
            got.len()
        );
    }
    assert_eq!(target.dials(), 3);
    flytube.assert_logged("allowed");
    flytube.assert_logged(&format!("via 127.0.0.1:{}", target.port));
}

#[test]
fn denied_destinations_are_never_dialed_and_get_the_protocol_reply() {
    let relay = Relay::start();
    let allowed = HttpTarget::start(b"ok".to_vec());
    let other = HttpTarget::start(b"secret".to_vec());
    let source = free_port();
    // `*` for names, and one explicit loopback port: names resolving to loopback stay out.
    let rules = ["*".to_string(), format!("127.0.0.1:{}", allowed.port)];
    let flytube = start_dynamic(&relay, source, &rules, &[]);
    let proxy = format!("127.0.0.1:{source}");
    // A denied port on an allowed address.
    let (code, _) = curl(
        &["--socks5-hostname", &proxy],
        &format!("http://127.0.0.1:{}/", other.port),
    );
    assert_ne!(code, Some(0));
    // `*` asked for localhost: a name that resolves to loopback, not named by an address rule.
    let (code, _) = curl(
        &["--socks5-hostname", &proxy],
        &format!("http://localhost:{}/", other.port),
    );
    assert_ne!(code, Some(0));
    assert_eq!(other.dials(), 0, "a denied destination was dialed");
    // HTTP CONNECT refusals carry a status: 403 for a denial.
    let mut c = connect(source);
    write!(
        c,
        "CONNECT 127.0.0.1:{} HTTP/1.1\r\nHost: x\r\n\r\n",
        other.port
    )
    .unwrap();
    let mut reply = String::new();
    let _ = c.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply:?}");
    // SOCKS5 to the cloud metadata address: not allowed by ruleset (0x02), never dialed.
    let mut c = connect(source);
    c.write_all(&[5, 1, 0]).unwrap();
    let mut choice = [0u8; 2];
    c.read_exact(&mut choice).unwrap();
    assert_eq!(choice, [5, 0]);
    c.write_all(&[5, 1, 0, 1, 169, 254, 169, 254, 0, 80])
        .unwrap();
    let mut head = [0u8; 2];
    c.read_exact(&mut head).unwrap();
    assert_eq!(head, [5, 2], "SOCKS5 reply for 169.254.169.254");
    assert_eq!(other.dials(), 0);
    flytube.assert_logged("denied");
    // The allowed one still works on the same forward.
    let (code, got) = curl(
        &["--socks5-hostname", &proxy],
        &format!("http://127.0.0.1:{}/", allowed.port),
    );
    assert_eq!((code, got), (Some(0), b"ok".to_vec()));
}

#[test]
fn garbage_silence_and_truncated_requests_end_without_harm() {
    let relay = Relay::start();
    let target = HttpTarget::start(b"fine".to_vec());
    let source = free_port();
    let file = relay.dir.join("limits.yaml");
    std::fs::write(&file, "limits:\n  handshake_timeout_secs: 1\n").unwrap();
    let rules = [format!("127.0.0.1:{}", target.port)];
    let flytube = start_dynamic(&relay, source, &rules, &["-c", &file.display().to_string()]);
    // Garbage first byte: closed.
    let mut c = connect(source);
    c.write_all(b"\x00\x01garbage").unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    // A silent client and a truncated SOCKS5 request are cut after the handshake limit.
    let silent = connect(source);
    let mut truncated = connect(source);
    truncated
        .write_all(&[5, 1, 0, 5, 1, 0, 3, 20, b'a'])
        .unwrap();
    for mut c in [silent, truncated] {
        c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "not cut: {:?}",
            started.elapsed()
        );
    }
    // A garbage HTTP request gets 400.
    let mut c = connect(source);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = c.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 4"), "{reply:?}");
    assert_eq!(target.dials(), 0);
    // The forward still serves.
    let (code, got) = curl(
        &["--socks5-hostname", &format!("127.0.0.1:{source}")],
        &format!("http://127.0.0.1:{}/", target.port),
    );
    assert_eq!(
        (code, got),
        (Some(0), b"fine".to_vec()),
        "{}",
        flytube.output()
    );
}

#[test]
fn a_dynamic_forward_without_an_allow_list_does_not_start() {
    let relay = Relay::start();
    let mut args = relay.args();
    args[0] = "config".into();
    args.extend(["-R".to_string(), "1080".to_string()]);
    let out = Command::new(flytube_bin()).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("allow list is empty"), "{stderr}");
    args.extend(["--allow".to_string(), "10.0.0.0/33".to_string()]);
    let out = Command::new(flytube_bin()).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("10.0.0.0/33"), "{stderr}");
}

#[test]
fn an_ipv6_destination_is_reached_by_address_type_and_by_name() {
    let relay = Relay::start();
    let body = random_bytes(64 * 1024, 6);
    let target = HttpTarget::start_on("[::1]:0", body.clone());
    let source = free_port();
    let rule = format!("[::1]:{}", target.port);
    let flytube = start_dynamic(&relay, source, &[rule], &[]);
    let proxy = format!("127.0.0.1:{source}");
    let url = format!("http://[::1]:{}/", target.port);
    // --socks5: curl sends the IPv6 address itself (address type 4); --socks5-hostname and
    // HTTP CONNECT send the text.
    for how in [
        vec!["--socks5", proxy.as_str()],
        vec!["--socks5-hostname", proxy.as_str()],
        vec!["-p", "-x", &format!("http://{proxy}")],
    ] {
        let (code, got) = curl(&how, &url);
        assert_eq!(code, Some(0), "{how:?}: {}", flytube.output());
        assert!(got == body, "{how:?}: the body differs");
    }
    assert_eq!(target.dials(), 3);
    flytube.assert_logged(&format!("via [::1]:{}", target.port));
}
