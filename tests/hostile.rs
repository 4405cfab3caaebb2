//! A hostile relay: after host-key verification and authentication it floods flytube with
//! SSH messages nobody asked for. libssh2 used to queue every one of them until the session
//! ended (vendor/patches/0004): flytube's memory must stay bounded, the messages libssh2
//! has no use for must be answered as RFC 4253 asks, and the tunnel must keep working.
//! A relay that offers another MAC or cipher in a key re-exchange is refused
//! (vendor/patches/0009, 0010).
//!
//! The relay is a paramiko script (tests/hostile_relay.py, written into the test's
//! directory) run by the system python, /usr/bin/python3 with Debian's python3-paramiko
//! (installed by .ci/run and scripts/deps.sh). The test drives it line by line on stdin.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const SCRIPT: &str = include_str!("hostile_relay.py");
const PYTHON: &str = "/usr/bin/python3";

/// What flytube may hold at its peak, floods included. It needs about 14 MB; unpatched
/// libssh2 took it to about 350 MB with these floods.
const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;

/// The big flood: 4000 rounds of an unsolicited global-request reply (81) and of an
/// unassigned message type (192, "local extensions"), 32 KB each: 250 MB that nothing in
/// libssh2 asks for.
const FLOOD: &str = "flood 4000 32000 81 192";

/// Every other kind of message a client can be sent without asking, fewer of each: replies
/// to requests never made (82 global; 91/92 channel open and 99/100 channel request, for
/// channel 0, closed by then), transport, key exchange and authentication messages out of
/// their phase (3, 5, 6, 31, 50-53, 60, 61), and unassigned numbers.
const MIXED: &str =
    "flood 150 32000 82 91 92 99 100 3 5 6 31 50 51 52 53 60 61 101 127 128 200 255";

/// The SSH_MSG_UNIMPLEMENTED replies flytube owes the relay after both floods (RFC 4253
/// section 11.4), counted by the type of the message each one names by sequence number:
/// one for every message of a type libssh2 has no use for. The rest is dropped without a
/// word: messages out of their phase (authentication messages after authentication are to
/// be ignored, RFC 4252 section 6), replies nobody waits for, and SSH_MSG_UNIMPLEMENTED.
const ANSWERED: &str = "5:150 101:150 127:150 128:150 192:4000 200:150 255:150";

/// The paramiko relay, driven by commands on its stdin.
struct HostileRelay {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    port: u16,
    fingerprint: String,
    log: PathBuf,
    /// flytube's log, for failure messages, once flytube runs.
    flytube_log: Option<Box<dyn Fn() -> String>>,
}

impl HostileRelay {
    /// Starts the relay; `rcvbuf` sets SO_RCVBUF on its socket.
    fn start(dir: &TempDir, host_key: &Path, client_pub: &Path, rcvbuf: Option<u32>) -> Self {
        let check = Command::new(PYTHON)
            .args(["-c", "import paramiko"])
            .output()
            .unwrap_or_else(|e| panic!("{PYTHON}: {e}"));
        assert!(
            check.status.success(),
            "{PYTHON} lacks paramiko (apt-get install python3-paramiko): {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let script = dir.join("hostile_relay.py");
        std::fs::write(&script, SCRIPT).unwrap();
        let log = dir.join("relay.log");
        let stderr = std::fs::File::create(dir.join("relay.stderr")).unwrap();
        let mut command = Command::new(PYTHON);
        command.arg(&script).arg(host_key).arg(client_pub).arg(&log);
        if let Some(bytes) = rcvbuf {
            command.arg(bytes.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the paramiko relay");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut relay = HostileRelay {
            child,
            stdin,
            lines,
            port: 0,
            fingerprint: String::new(),
            log,
            flytube_log: None,
        };
        relay.port = relay
            .expect("port", Duration::from_secs(20))
            .parse()
            .unwrap();
        relay.fingerprint = relay.expect("fingerprint", Duration::from_secs(5));
        relay
    }

    /// The next line from the relay, which must start with `word`; returns the rest.
    fn expect(&self, word: &str, timeout: Duration) -> String {
        let line = self.lines.recv_timeout(timeout).unwrap_or_else(|e| {
            panic!(
                "relay said nothing within {timeout:?} ({e}) while {word:?} was due; {}",
                self.diagnostics()
            )
        });
        match line.strip_prefix(word) {
            Some(rest) => rest.trim().to_string(),
            None => panic!(
                "relay said {line:?}, {word:?} was due; {}",
                self.diagnostics()
            ),
        }
    }

    /// Sends one command and returns what followed its "ok".
    fn command(&mut self, command: &str, timeout: Duration) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.expect("ok", timeout)
    }

    fn diagnostics(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let flytube = self
            .flytube_log
            .as_ref()
            .map(|log| log())
            .unwrap_or_default();
        format!(
            "relay log:\n{}\nrelay stderr:\n{}\nflytube log:\n{flytube}",
            read(&self.log),
            read(&self.log.with_file_name("relay.stderr"))
        )
    }
}

impl Drop for HostileRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// flytube serving one forward from the hostile relay to a target (an echo server unless
/// told otherwise), with the relay's host key pinned by the fingerprint the relay script
/// computed.
struct Setup {
    relay: HostileRelay,
    flytube: Flytube,
    _echo: Option<Target>,
    _dir: TempDir,
}

fn setup(rcvbuf: Option<u32>) -> Setup {
    setup_with(rcvbuf, None, &[])
}

/// `target`: flytube's target port instead of an echo server (no echo is checked then);
/// `extra`: more arguments for flytube.
fn setup_with(rcvbuf: Option<u32>, target: Option<u16>, extra: &[&str]) -> Setup {
    let dir = TempDir::new("hostile");
    let host_key = dir.join("host_ed25519");
    let identity = dir.join("id_ed25519");
    keygen(&host_key, "ed25519");
    keygen(&identity, "ed25519");
    let mut relay = HostileRelay::start(&dir, &host_key, &dir.join("id_ed25519.pub"), rcvbuf);
    // The script's fingerprint of paramiko's key is the one OpenSSH computes.
    assert_eq!(
        relay.fingerprint,
        fingerprint(&dir.join("host_ed25519.pub"))
    );
    let echo = target.is_none().then(Target::echo);
    let target = target.unwrap_or_else(|| echo.as_ref().unwrap().port);
    let mut args: Vec<String> = vec![
        "run".into(),
        "--relay".into(),
        format!("127.0.0.1:{}", relay.port),
        "--user".into(),
        user(),
        "-i".into(),
        identity.display().to_string(),
        "--host-key-fingerprint".into(),
        relay.fingerprint.clone(),
    ];
    args.extend(forward(free_port(), target));
    args.extend(extra.iter().map(|a| a.to_string()));
    let flytube = Flytube::start(&args);
    relay.flytube_log = Some(Box::new(flytube.output_reader()));
    flytube.wait_for("serving", Duration::from_secs(30));
    relay.expect("forward", Duration::from_secs(5));
    if echo.is_some() {
        assert_eq!(
            relay.command("echo before-the-flood", Duration::from_secs(40)),
            "before-the-flood"
        );
    }
    Setup {
        relay,
        flytube,
        _echo: echo,
        _dir: dir,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// flytube's peak RSS so far, asserted under the limit.
fn assert_peak_bounded(flytube: &Flytube, before: u64) {
    let peak = status_kib(flytube.pid(), "VmHWM");
    let now = status_kib(flytube.pid(), "VmRSS");
    eprintln!(
        "flytube RSS: {:.1} MiB before the flood, {:.1} MiB after, peak {:.1} MiB",
        mib(before),
        mib(now),
        mib(peak)
    );
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "flytube peaked at {:.1} MiB (limit {:.0} MiB): unsolicited messages were kept",
        mib(peak),
        mib(PEAK_RSS_LIMIT_KIB)
    );
}

#[test]
fn unsolicited_messages_do_not_grow_memory_and_the_tunnel_survives() {
    let Setup {
        mut relay,
        mut flytube,
        _echo,
        _dir,
    } = setup(None);
    let before = status_kib(flytube.pid(), "VmRSS");
    relay.command(FLOOD, Duration::from_secs(300));
    relay.command(MIXED, Duration::from_secs(300));
    // Messages are handled in order: once the echo is back, flytube has read them all.
    assert_eq!(
        relay.command("echo after-the-flood", Duration::from_secs(60)),
        "after-the-flood"
    );
    assert_peak_bounded(&flytube, before);
    assert_eq!(
        relay.command("unimplemented", Duration::from_secs(10)),
        ANSWERED
    );

    // What a well-behaved relay does still works: keepalive@openssh.com is answered
    // (refused, as OpenSSH expects of a client), a rekey started by the relay completes
    // (a stale key exchange reply from the flood would break it), and data flows.
    assert_eq!(
        relay.command("keepalive", Duration::from_secs(20)),
        "failure"
    );
    relay.command("rekey", Duration::from_secs(40));
    assert_eq!(
        relay.command("echo after-the-rekey", Duration::from_secs(40)),
        "after-the-rekey"
    );
    assert_eq!(
        relay.command("bulk 1000000", Duration::from_secs(60)),
        "1000000 bytes echoed"
    );
    assert!(flytube.is_running(), "flytube exited: {}", flytube.output());
    assert_eq!(flytube.count("tunnel down"), 0, "{}", flytube.output());
}

/// libssh2 sends each SSH_MSG_UNIMPLEMENTED from its read path. When the socket is full,
/// the reply has to be finished later, naming the same message, before anything else is
/// read. The relay has a small receive buffer and stops reading for 3 s at the first reply
/// while it goes on sending: flytube's socket fills (strace showed thousands of sends
/// failing with EAGAIN), and every reply must still arrive, right and in order. Meanwhile
/// flytube must wait for room, not spin: its pump once polled for input it could not read
/// before the reply was out, and burned a core for as long as the relay stalled.
#[test]
fn unimplemented_replies_wait_for_a_relay_that_stops_reading() {
    let Setup {
        mut relay,
        flytube,
        _echo,
        _dir,
    } = setup(Some(4096));
    let before = status_kib(flytube.pid(), "VmRSS");
    relay.command("stall 3", Duration::from_secs(10));
    let (cpu_before, started) = (cpu_seconds(flytube.pid()), Instant::now());
    relay.command("flood 100000 1 192", Duration::from_secs(300));
    assert_eq!(
        relay.command("echo after-the-stall", Duration::from_secs(60)),
        "after-the-stall"
    );
    let (cpu, wall) = (
        cpu_seconds(flytube.pid()) - cpu_before,
        started.elapsed().as_secs_f64(),
    );
    // Answering the 100,000 messages takes flytube some 0.3 s of CPU here, over about 5 s
    // of wall time (the 3 s stall included); the spin took 3 s more.
    assert!(
        cpu < wall / 3.0,
        "flytube used {cpu:.2} s of CPU in the {wall:.2} s of the flood, stall and echo: {}",
        flytube.output()
    );
    assert_peak_bounded(&flytube, before);
    assert_eq!(
        relay.command("unimplemented", Duration::from_secs(10)),
        "192:100000"
    );
    assert_eq!(flytube.count("tunnel down"), 0, "{}", flytube.output());
}

/// A target that never reads its first connection (so flytube stops reading the channel
/// feeding it) and echoes the later ones.
fn stalling_target() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut stalled = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            if stalled.is_empty() {
                stalled.push(stream);
                continue;
            }
            thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut &stream, &mut writer);
                let _ = writer.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// Channel data takes the channel's window, which bounds what libssh2 queues for a channel
/// nobody reads: but SSH_MSG_CHANNEL_DATA with no data takes none, and was queued all the
/// same. The relay leaves one byte of window open on a channel whose target does not read
/// and sends empty data messages.
#[test]
fn empty_channel_data_is_not_queued() {
    const GROWTH_LIMIT_KIB: u64 = 8 * 1024;
    let Setup {
        mut relay,
        flytube,
        _echo,
        _dir,
    } = setup_with(None, Some(stalling_target()), &[]);
    relay.command("hold", Duration::from_secs(60));
    let before = status_kib(flytube.pid(), "VmRSS");
    relay.command("empty 200000", Duration::from_secs(300));
    assert_eq!(
        relay.command("echo after-the-empty-data", Duration::from_secs(60)),
        "after-the-empty-data"
    );
    let after = status_kib(flytube.pid(), "VmRSS");
    eprintln!(
        "flytube RSS: {:.1} MiB before the empty data messages, {:.1} MiB after",
        mib(before),
        mib(after)
    );
    assert!(
        after < before + GROWTH_LIMIT_KIB,
        "flytube grew from {:.1} to {:.1} MiB: empty data messages were kept",
        mib(before),
        mib(after)
    );
    assert_eq!(flytube.count("tunnel down"), 0, "{}", flytube.output());
}

/// A relay that offers another MAC in a key re-exchange. libssh2 switches methods when it
/// agrees on them, before the new keys are in place, and goes on authenticating with the
/// old method's state through the new method: a switch between an HMAC and a UMAC (patch
/// 0009, a different kind of state) would have one read as the other. Patch 0009 makes
/// libssh2 refuse a MAC change in a re-exchange and keep the methods in use; libssh2 then
/// leaves the exchange (it ignores a failed re-exchange the peer started), so the relay
/// gets the next ordinary message (flytube's liveness probe, a channel open) where it
/// waits for the key exchange reply, and drops the session; flytube reconnects. Without
/// the refusal the exchange went on with wrong MACs until the watchdog broke it. paramiko
/// has no UMAC, so the change here is between two HMACs.
#[test]
fn a_mac_change_in_a_re_exchange_is_refused() {
    let Setup {
        mut relay,
        mut flytube,
        _echo,
        _dir,
    } = setup(None);
    // paramiko has no AES-GCM and no UMAC: aes256-ctr with the first HMAC of flytube's list.
    flytube.assert_logged("cipher aes256-ctr with hmac-sha2-256-etm@openssh.com");
    assert_re_exchange_refused(&mut relay, &mut flytube, "rekey-mac hmac-sha2-512");
}

/// The relay's re-exchange (`command`) fails, the session ends and flytube lives on.
fn assert_re_exchange_refused(relay: &mut HostileRelay, flytube: &mut Flytube, command: &str) {
    let answer = relay.command(command, Duration::from_secs(40));
    assert!(answer.starts_with("failed SSHException"), "{answer}");
    flytube.wait_for("tunnel down", Duration::from_secs(30));
    assert!(flytube.is_running(), "flytube exited: {}", flytube.output());
}

/// The same for the cipher: libssh2 runs the newly agreed cipher on the old one's state
/// until the new keys are in place, and the cipher methods keep different kinds of state
/// (an OpenSSL context; chacha20-poly1305's own keys). Patch 0010 refuses a cipher change
/// in a re-exchange. flytube offers two ciphers paramiko has (AES-CTR with 256 and 128-bit
/// keys); the relay asks for the second in a re-exchange, is refused and drops the session;
/// flytube reconnects with the first. Without the refusal the re-exchange succeeded.
#[test]
fn a_cipher_change_in_a_re_exchange_is_refused() {
    let Setup {
        mut relay,
        mut flytube,
        _echo,
        _dir,
    } = setup_with(
        None,
        None,
        &[
            "--ciphers",
            "aes256-ctr,aes128-ctr",
            "--allow-weaker-ciphers",
        ],
    );
    flytube.assert_logged("cipher aes256-ctr with");
    assert_re_exchange_refused(&mut relay, &mut flytube, "rekey-cipher aes128-ctr");
    assert_eq!(
        flytube.count("cipher aes128-ctr"),
        0,
        "{}",
        flytube.output()
    );
}

/// Patch 0012 draws the random padding of flytube's packets from a per-session pool, filled
/// from OpenSSL a few hundred bytes at a time. The relay decrypts every packet flytube sends
/// (aes256-ctr with an encrypt-then-MAC HMAC, so each packet reaches paramiko's cipher whole)
/// and keeps its padding: across many pool refills no padding repeats another (4 to 19
/// random bytes each) and none is the zeroes a used pool byte is cleared to.
#[test]
fn packet_padding_is_random_and_never_reused() {
    let Setup {
        mut relay,
        flytube,
        _echo,
        _dir,
    } = setup(None);
    flytube.assert_logged("cipher aes256-ctr with hmac-sha2-256-etm@openssh.com");
    for round in 0..80 {
        let text = format!("padding-round-{round}");
        assert_eq!(
            relay.command(&format!("echo {text}"), Duration::from_secs(40)),
            text
        );
    }
    let answer = relay.command("padding", Duration::from_secs(10));
    let counts: Vec<usize> = answer
        .split_whitespace()
        .map(|n| n.parse().unwrap_or_else(|_| panic!("padding: {answer}")))
        .collect();
    let [packets, distinct, zeroed] = counts[..] else {
        panic!("padding: {answer}");
    };
    // Each echo is a channel open, data, EOF and close: four packets or more from flytube,
    // 4 to 19 bytes of padding each, so the 512-byte pool is refilled several times.
    assert!(packets >= 320, "only {packets} packets recorded: {answer}");
    assert_eq!(distinct, packets, "a padding repeated: {answer}");
    assert_eq!(zeroed, 0, "a padding of zero bytes: {answer}");
}

/// libssh2 patch 0013 stops a read once one recv() has returned data and every byte of
/// it has been dealt with. Here each data packet arrives in the same socket write as an
/// SSH_MSG_IGNORE, so one recv() takes both and the read's first packet is not data: each
/// must still reach the target at once, and the ignored message must not end the read
/// with an error (a first draft of the patch returned "channel not found" from accept
/// there and the tunnel dropped). A packet left in libssh2's buffer would be found by
/// the pump's next pass, at worst at its 200-us acknowledgement timer, so the bound
/// below catches a lost or stuck packet, not that.
#[test]
fn a_data_packet_behind_another_in_one_read_is_not_left_waiting() {
    let Setup {
        mut relay,
        flytube: _flytube,
        _echo,
        _dir,
    } = setup(None);
    let answer = relay.command("coalesced 20", Duration::from_secs(150));
    let times: Vec<f64> = answer
        .split_whitespace()
        .map(|n| n.parse().unwrap_or_else(|_| panic!("coalesced: {answer}")))
        .collect();
    let [median_ms, max_ms] = times[..] else {
        panic!("coalesced: {answer}");
    };
    // Milliseconds on a quiet machine; a packet held back until the pump's one-second
    // tick, or lost, fails this.
    assert!(
        median_ms < 250.0,
        "round trips took {median_ms} ms (median), {max_ms} ms (max): a data packet was \
         held back"
    );
}
