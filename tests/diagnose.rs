//! A failed SSH handshake says what happened: another protocol on the port, a silent port,
//! a connection closed at once, garbage after the banner, or no cipher in common with a
//! real sshd. `flytube check` and `run` give the same diagnosis.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

/// A scripted TCP server on 127.0.0.1: `garbage` (an SSH banner, then noise), `smtp` (another
/// protocol's greeting), `close` (closes at once). Killed on drop.
struct FakeServer {
    child: Child,
    port: u16,
}

impl FakeServer {
    fn start(mode: &str) -> FakeServer {
        let script = r#"
import socket, sys, threading, os, time
mode = sys.argv[1]
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    try:
        if mode == "close":
            c.close(); return
        if mode == "garbage":
            c.sendall(b"SSH-2.0-Fake_1.0\r\n"); time.sleep(0.1); c.sendall(os.urandom(3000))
        if mode == "smtp":
            c.sendall(b"220 mail.example ESMTP\r\n")
        time.sleep(20)
    except OSError:
        pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
        let mut child = Command::new("python3")
            .args(["-c", script, mode])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        FakeServer {
            port: line.trim().parse().expect("port"),
            child,
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flytube check` against `port` with a 2 s handshake limit; its handshake line.
fn check_handshake(relay: &Relay, port: u16) -> String {
    let config = relay.dir.join("short.yaml");
    std::fs::write(&config, "relay:\n  handshake_timeout_secs: 2\n").unwrap();
    let out = Command::new(flytube_bin())
        .args([
            "check",
            "-c",
            &config.display().to_string(),
            "--relay",
            &format!("127.0.0.1:{port}"),
            "--user",
            &relay.user,
            "-i",
            &relay.identity().display().to_string(),
            "--known-hosts",
            &relay.known_hosts().display().to_string(),
            "-R",
            "1:h:2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    stdout
        .lines()
        .find(|l| l.contains("ssh handshake"))
        .unwrap_or_else(|| panic!("no handshake line in {stdout}"))
        .to_string()
}

#[test]
fn each_failure_is_named() {
    let relay = Relay::start();
    for (mode, needle) in [
        (
            "smtp",
            "is not an SSH server: it answered \"220 mail.example ESMTP\"",
        ),
        (
            "close",
            "closed the connection before sending an SSH banner",
        ),
        (
            "garbage",
            "sent an SSH banner (SSH-2.0-Fake_1.0) and then bytes that are not an SSH key exchange",
        ),
    ] {
        let server = FakeServer::start(mode);
        let line = check_handshake(&relay, server.port);
        assert!(line.contains(needle), "{mode}: {line}");
        assert!(!line.contains("no common key exchange"), "{mode}: {line}");
    }
    // A port where something listens and says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let line = check_handshake(&relay, silent.local_addr().unwrap().port());
    assert!(
        line.contains("accepted the TCP connection but sent nothing"),
        "{line}"
    );
}

#[test]
fn no_common_mac_names_both_lists() {
    // A CTR cipher needs a MAC; this relay allows only one flytube never offers.
    let relay = Relay::start_with("Ciphers aes256-ctr\nMACs hmac-sha1-96");
    let line = check_handshake(&relay, relay.port);
    assert!(line.contains("no MAC in common"), "{line}");
    assert!(line.contains("offers hmac-sha1-96"), "{line}");
    assert!(
        line.contains("flytube offers umac-64-etm@openssh.com,umac-128-etm@openssh.com,"),
        "{line}"
    );
}

#[test]
fn no_common_cipher_names_both_lists() {
    let relay = Relay::start_with("Ciphers aes128-ctr");
    let line = check_handshake(&relay, relay.port);
    assert!(line.contains("no cipher in common"), "{line}");
    assert!(line.contains("offers aes128-ctr"), "{line}");
    assert!(
        line.contains("flytube offers aes256-gcm@openssh.com,aes256-ctr"),
        "{line}"
    );
}
