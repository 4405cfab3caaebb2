//! Targets reached through the relay (`--target-via relay`): each forwarded connection is
//! spliced to a direct-tcpip channel over the same SSH session, inside the pump. Against a
//! real sshd that allows direct-tcpip (AllowTcpForwarding yes).

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(20);

fn via_relay(relay: &Relay, forwards: &[(u16, u16)]) -> Flytube {
    let mut args = relay.args();
    for (source, target) in forwards {
        args.extend(forward(*source, *target));
    }
    args.extend(["--target-via".to_string(), "relay".to_string()]);
    let flytube = Flytube::start(&args);
    flytube.wait_for_n("serving", forwards.len(), READY);
    flytube
}

#[test]
fn one_mib_round_trips_intact_through_a_direct_tcpip_channel() {
    let relay = Relay::start_with("AllowTcpForwarding yes\nLogLevel DEBUG1");
    let echo = Target::echo();
    let source = free_port();
    let flytube = via_relay(&relay, &[(source, echo.port)]);
    let data = random_bytes(1 << 20, 9);
    let back = echo_round_trip(source, &data);
    assert!(
        back == data,
        "echoed bytes differ ({} bytes back)",
        back.len()
    );
    flytube.wait_for("closed: forward", Duration::from_secs(5));
    let out = flytube.output();
    assert!(
        out.contains("to target 1048576 B, from target 1048576 B"),
        "{out}"
    );
    assert!(
        out.contains("(via relay)") && out.contains("completed"),
        "{out}"
    );
    let log = relay.log();
    assert!(
        log.contains("direct-tcpip") || log.contains("server_request_direct_tcpip"),
        "the relay saw no direct-tcpip channel:\n{log}"
    );
}

#[test]
fn half_close_is_carried_both_ways() {
    let relay = Relay::start_with("AllowTcpForwarding yes");
    let (target, rx) = one_shot_target(move |mut s| {
        s.write_all(b"banner").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let source = free_port();
    let _flytube = via_relay(&relay, &[(source, target)]);
    let mut c = connect(source);
    let mut banner = Vec::new();
    c.read_to_end(&mut banner).unwrap();
    assert_eq!(banner, b"banner", "target's EOF arrives after its data");
    c.write_all(b"after-their-eof").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got, b"after-their-eof");
}

#[test]
fn a_hundred_concurrent_connections_each_get_their_own_bytes() {
    let relay = Relay::start_with("AllowTcpForwarding yes\nMaxSessions 200");
    let echo = Target::echo();
    let source = free_port();
    let _flytube = via_relay(&relay, &[(source, echo.port)]);
    let handles: Vec<_> = (0..100u64)
        .map(|i| {
            thread::spawn(move || {
                let data = random_bytes(32 * 1024 + i as usize, i);
                let back = echo_round_trip(source, &data);
                back == data
            })
        })
        .collect();
    let intact = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .filter(|same| *same)
        .count();
    assert_eq!(intact, 100);
}

#[test]
fn a_refused_open_ends_only_its_own_connection() {
    let echo = Target::echo();
    let refused_target = free_port();
    let relay = Relay::start_with(&format!(
        "AllowTcpForwarding yes\nPermitOpen 127.0.0.1:{}",
        echo.port
    ));
    let (good, bad) = (free_port(), free_port());
    let flytube = via_relay(&relay, &[(good, echo.port), (bad, refused_target)]);
    // A healthy connection stays open across the refusal.
    let mut healthy = connect(good);
    healthy.write_all(b"one").unwrap();
    let mut buf = [0u8; 3];
    healthy.read_exact(&mut buf).unwrap();
    let mut refused = connect(bad);
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = refused.read_to_end(&mut rest);
    assert!(rest.is_empty());
    flytube.wait_for("the relay refused to connect to", Duration::from_secs(5));
    healthy.write_all(b"two").unwrap();
    healthy.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two");
    assert_eq!(
        flytube.count("connected to relay"),
        1,
        "the session must not be rebuilt"
    );
}

/// `flytube check` of one via-relay forward to `target` against `relay`: (exit, stdout).
fn check_via_relay(relay: &Relay, target: u16) -> (Option<i32>, String) {
    let mut args = relay.args();
    args[0] = "check".into();
    args.extend(forward(free_port(), target));
    args.extend(["--target-via".to_string(), "relay".to_string()]);
    let out = run_flytube(&args, &[]);
    (out.code, out.stdout)
}

#[test]
fn check_opens_a_channel_to_each_via_relay_target() {
    let echo = Target::echo();
    let refusing = Relay::start_with("AllowTcpForwarding yes\nPermitOpen 127.0.0.1:1");
    let (code, stdout) = check_via_relay(&refusing, echo.port);
    assert_eq!(code, Some(69), "{stdout}");
    assert!(
        stdout.contains("via relay") && stdout.contains("the relay refused"),
        "{stdout}"
    );
    let allowing = Relay::start_with("AllowTcpForwarding yes");
    let (code, stdout) = check_via_relay(&allowing, echo.port);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("the relay connected to 127.0.0.1:{}", echo.port)),
        "{stdout}"
    );
}
