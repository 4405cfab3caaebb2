//! The core tunnel against a real sshd: data integrity, half-close, concurrency, isolation.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// flytube serving each (relay port, target port) pair.
fn start_tunnel(relay: &Relay, forwards: &[(u16, u16)]) -> Flytube {
    let mut args = relay.args();
    for (source, target) in forwards {
        args.extend(forward(*source, *target));
    }
    Flytube::serving(&args)
}

#[test]
fn one_mib_of_random_data_round_trips_intact() {
    let relay = Relay::start();
    let (_echo, source, flytube) = echo_tunnel(&relay, &[]);
    let data = random_bytes(1 << 20, 7);
    let back = echo_round_trip(source, &data);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
    flytube.wait_for("closed: forward", Duration::from_secs(5));
    let out = flytube.output();
    assert!(
        out.contains("to target 1048576 B, from target 1048576 B"),
        "{out}"
    );
    assert!(out.contains("completed"), "{out}");
    assert!(
        relay.log().contains("ED25519-CERT"),
        "certificate auth expected:\n{}",
        relay.log()
    );
}

#[test]
fn half_close_is_carried_both_ways() {
    let relay = Relay::start();
    // A target that sends a banner, half-closes, then reports what it reads until EOF.
    let (target, rx) = one_shot_target(move |mut s| {
        s.write_all(b"banner").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let source = free_port();
    let _flytube = start_tunnel(&relay, &[(source, target)]);
    let mut client = connect(source);
    let mut banner = Vec::new();
    client.read_to_end(&mut banner).unwrap();
    assert_eq!(
        banner, b"banner",
        "target's FIN must reach the client as EOF"
    );
    // Our direction is still open after the target's EOF.
    client.write_all(b"after-eof").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("target saw EOF");
    assert_eq!(got, b"after-eof");
}

#[test]
fn client_half_close_then_target_answers() {
    let relay = Relay::start();
    // A target that reads a request until EOF, then answers and closes.
    let (target, _served) = one_shot_target(move |mut s| {
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(format!("read {} bytes", got.len()).as_bytes())
            .unwrap();
    });
    let source = free_port();
    let _flytube = start_tunnel(&relay, &[(source, target)]);
    let mut client = connect(source);
    client.write_all(&[1u8; 1000]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "read 1000 bytes");
}

#[test]
fn hundred_concurrent_connections() {
    let relay = Relay::start();
    let (_echo, source, flytube) = echo_tunnel(&relay, &[]);
    let handles: Vec<_> = (0..100)
        .map(|i| {
            thread::spawn(move || {
                let data = random_bytes(64 * 1024, i + 1);
                let back = echo_round_trip(source, &data);
                back == data
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    assert_eq!(ok, 100);
    flytube.wait_for_n("completed", 100, Duration::from_secs(20));
}

#[test]
fn dead_target_is_closed_fast_and_isolated() {
    let relay = Relay::start();
    let echo = Target::echo();
    let dead_target = free_port(); // nothing listens there
    let healthy = free_port();
    let dead = free_port();
    let flytube = start_tunnel(&relay, &[(healthy, echo.port), (dead, dead_target)]);
    // A long-lived healthy connection, open across the failure.
    let mut long = connect(healthy);
    assert_echoes(&mut long, b"before");

    let started = Instant::now();
    let mut client = connect(dead);
    let mut sink = Vec::new();
    let _ = client.read_to_end(&mut sink);
    let took = started.elapsed();
    assert!(sink.is_empty());
    assert!(
        took < Duration::from_secs(1),
        "dead target took {took:?} to close"
    );
    flytube.wait_for("target unreachable", Duration::from_secs(5));

    assert_echoes(&mut long, b"after");
    assert_eq!(echo_round_trip(healthy, b"fresh"), b"fresh");
}

#[test]
fn target_that_resets_closes_only_its_connection() {
    let relay = Relay::start();
    let echo = Target::echo();
    let target = Target::resetting();
    let healthy = free_port();
    let resetting = free_port();
    let _flytube = start_tunnel(&relay, &[(healthy, echo.port), (resetting, target.port)]);
    let started = Instant::now();
    let mut client = connect(resetting);
    let mut sink = Vec::new();
    let _ = client.read_to_end(&mut sink);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(echo_round_trip(healthy, b"still fine"), b"still fine");
}

#[test]
fn client_that_goes_away_while_the_target_streams_ends_the_connection() {
    let relay = Relay::start();
    // A target that streams until it cannot write any more, like iperf3 -R's server.
    let (target, rx) = one_shot_target(move |mut s| {
        let chunk = vec![7u8; 64 * 1024];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        started.elapsed()
    });
    let source = free_port();
    let flytube = start_tunnel(&relay, &[(source, target)]);
    let mut client = connect(source);
    let mut buf = vec![0u8; 1 << 20];
    client.read_exact(&mut buf).unwrap();
    // Go away with unread data queued: the client's kernel resets the connection.
    drop(client);
    let streamed = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the target's connection must be closed once the client is gone");
    assert!(streamed < Duration::from_secs(10), "{streamed:?}");
    flytube.wait_for("the platform side went away", Duration::from_secs(5));
}

#[test]
fn client_that_resets_while_a_slow_target_talks_ends_the_connection() {
    let relay = Relay::start();
    // A target that talks all the time and reads slowly, so flytube's queues towards it and
    // the SSH window are full when the platform client resets.
    let (target, rx) = one_shot_target(move |mut s| {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut talker = s.try_clone().unwrap();
        thread::spawn(move || {
            let chunk = vec![2u8; 16 * 1024];
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) && talker.write_all(&chunk).is_ok() {
                thread::sleep(Duration::from_millis(5));
            }
        });
        thread::sleep(Duration::from_millis(300));
        let mut sink = vec![0u8; 1 << 16];
        let started = Instant::now();
        // True once the connection is released (EOF or reset), false after 20 s.
        loop {
            match s.read(&mut sink) {
                Ok(0) | Err(_) => break true,
                Ok(_) => thread::sleep(Duration::from_millis(20)),
            }
            if started.elapsed() > Duration::from_secs(20) {
                break false;
            }
        }
    });
    let source = free_port();
    let flytube = start_tunnel(&relay, &[(source, target)]);
    let client = connect(source);
    client.set_nonblocking(true).unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut writer = &client;
    let started = Instant::now();
    // Push until the whole path is full (bounded by time).
    while started.elapsed() < Duration::from_secs(2) {
        match writer.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("client write: {e}"),
        }
    }
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    assert!(
        rx.recv_timeout(Duration::from_secs(25)).unwrap(),
        "the target was not released"
    );
    flytube.wait_for("closed: forward", Duration::from_secs(10));
}

#[test]
fn star_bind_asks_the_relay_for_every_interface() {
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let mut args = relay.args();
    args.extend([
        "-R".to_string(),
        format!("*:{source}:127.0.0.1:{}", echo.port),
    ]);
    let flytube = Flytube::start(&args);
    flytube.wait_for(&format!("forward *:{source} -> 127.0.0.1:"), READY);
    // The relay (GatewayPorts no) still binds loopback; what matters is that the request
    // carried the empty address and that connections arriving on it are served.
    let data = random_bytes(64 * 1024, 3);
    assert!(
        echo_round_trip(source, &data) == data,
        "echoed bytes differ"
    );
}

#[test]
fn each_connection_logs_who_connected_to_the_relay() {
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let flytube = start_tunnel(&relay, &[(source, echo.port)]);
    let client = connect(source);
    let local = client.local_addr().unwrap();
    drop(client);
    flytube.wait_for("closed: forward", Duration::from_secs(5));
    // sshd reports the platform client's own address and port as the originator.
    flytube.assert_logged(&format!("from {local} closed"));
}

/// Only the first forward's accept reads the relay socket (libssh2 queues every forward's
/// channels as it reads); the others find theirs queued. A connection to any of four
/// forwards is accepted at once: the last one while the tunnel is otherwise idle, each in
/// turn, and all four at the same time.
#[test]
fn every_forward_accepts_when_it_alone_has_a_connection() {
    let relay = Relay::start();
    let echoes: Vec<Target> = (0..4).map(|_| Target::echo()).collect();
    let sources: Vec<u16> = echoes.iter().map(|_| free_port()).collect();
    let forwards: Vec<(u16, u16)> = sources
        .iter()
        .zip(&echoes)
        .map(|(s, e)| (*s, e.port))
        .collect();
    let flytube = start_tunnel(&relay, &forwards);
    let mut expected = 0;
    for &source in sources.iter().rev() {
        // Idle first, so nothing but this connection's open reaches flytube.
        thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(echo_round_trip(source, b"alone"), b"alone");
        expected += 1;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "forward on relay port {source} took {:?}",
            started.elapsed()
        );
    }
    for round in 0..20u64 {
        for &source in sources.iter().rev() {
            let data = random_bytes(100 + round as usize, round + 1);
            assert_eq!(echo_round_trip(source, &data), data);
            expected += 1;
        }
    }
    let handles: Vec<_> = (0..40u64)
        .map(|i| {
            let source = sources[i as usize % sources.len()];
            thread::spawn(move || {
                let data = random_bytes(4096, i + 100);
                echo_round_trip(source, &data) == data
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .filter_map(|h| h.join().ok())
        .filter(|ok| *ok)
        .count();
    assert_eq!(ok, 40);
    expected += 40;
    flytube.wait_for_n("completed", expected, Duration::from_secs(20));
}
