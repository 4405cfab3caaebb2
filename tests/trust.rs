//! Host key verification and authentication against a real sshd: what is trusted, what is
//! refused, and that a refusal sends nothing more.

mod common;

use std::time::Duration;

use common::*;

const READY: Duration = Duration::from_secs(20);

fn replace_arg(args: &mut [String], flag: &str, value: String) {
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1] = value;
}

fn remove_arg(args: &mut Vec<String>, flag: &str) {
    let i = args.iter().position(|a| a == flag).unwrap();
    args.drain(i..i + 2);
}

#[test]
fn host_key_mismatch_is_refused_before_auth() {
    let relay = Relay::start();
    let other = TempDir::new("other");
    keygen(&other.join("host"), "ed25519");
    let key = std::fs::read_to_string(other.join("host.pub")).unwrap();
    let mut fields = key.split_whitespace();
    let known = other.join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            relay.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let mut args = relay.args();
    replace_arg(&mut args, "--known-hosts", known.display().to_string());
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    let status = flytube.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(77), "{}", flytube.output());
    let out = flytube.output();
    assert!(
        out.contains(&fingerprint(&relay.host_pub())),
        "presented fingerprint missing: {out}"
    );
    assert!(
        out.contains(&fingerprint(&other.join("host.pub"))),
        "expected fingerprint missing: {out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    let log = relay.log();
    assert!(
        !log.contains("Accepted publickey") && !log.contains("Failed publickey"),
        "auth was attempted:\n{log}"
    );
}

#[test]
fn unknown_relay_is_refused_with_the_line_to_add() {
    let relay = Relay::start();
    let empty = relay.dir.join("empty_known_hosts");
    std::fs::write(&empty, "# nothing yet\n").unwrap();
    let mut args = relay.args();
    replace_arg(&mut args, "--known-hosts", empty.display().to_string());
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    assert_eq!(flytube.wait_exit(Duration::from_secs(15)).code(), Some(77));
    let out = flytube.output();
    assert!(out.contains("has no entry for 127.0.0.1"), "{out}");
    assert!(
        out.contains(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", relay.port)),
        "{out}"
    );
}

#[test]
fn pinned_fingerprint_is_accepted_and_a_wrong_pin_refused() {
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let mut args = relay.args();
    remove_arg(&mut args, "--known-hosts");
    args.extend([
        "--host-key-fingerprint".into(),
        fingerprint(&relay.host_pub()),
    ]);
    args.extend(forward(source, echo.port));
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    assert_eq!(echo_round_trip(source, b"pinned"), b"pinned");
    drop(flytube);

    let mut wrong = relay.args();
    remove_arg(&mut wrong, "--known-hosts");
    wrong.extend([
        "--host-key-fingerprint".into(),
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
    ]);
    wrong.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&wrong);
    assert_eq!(flytube.wait_exit(Duration::from_secs(15)).code(), Some(77));
    assert!(
        flytube
            .output()
            .contains("pinned fingerprint is SHA256:47DEQ"),
        "{}",
        flytube.output()
    );
}

#[test]
fn hashed_known_hosts_entry_is_accepted() {
    let relay = Relay::start();
    let echo = Target::echo();
    let known = relay.known_hosts();
    run_ok(
        std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&known),
    );
    let text = std::fs::read_to_string(&known).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    let source = free_port();
    let mut args = relay.args();
    // args() rewrites known_hosts in plain form; hash it again afterwards.
    run_ok(
        std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&known),
    );
    args.extend(forward(source, echo.port));
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    assert_eq!(echo_round_trip(source, b"hashed"), b"hashed");
}

#[test]
fn certificate_auth_is_accepted() {
    let relay = Relay::start();
    let (_echo, source, _flytube) = echo_tunnel(&relay, &[]);
    assert_eq!(echo_round_trip(source, b"cert"), b"cert");
    let log = relay.log();
    assert!(
        log.contains("Accepted publickey") && log.contains("ED25519-CERT"),
        "{log}"
    );
}

#[test]
fn plain_key_in_authorized_keys_is_accepted() {
    let relay = Relay::start();
    let echo = Target::echo();
    let plain = relay.dir.join("plain");
    keygen(&plain, "ed25519");
    std::fs::copy(
        relay.dir.join("plain.pub"),
        relay.dir.join("authorized_keys"),
    )
    .unwrap();
    let source = free_port();
    let mut args = relay.args();
    replace_arg(&mut args, "-i", plain.display().to_string());
    args.extend(forward(source, echo.port));
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    assert_eq!(echo_round_trip(source, b"plain"), b"plain");
}

#[test]
fn untrusted_key_is_rejected_with_authentication_failed() {
    let relay = Relay::start();
    let stranger = relay.dir.join("stranger");
    keygen(&stranger, "ed25519");
    let mut args = relay.args();
    replace_arg(&mut args, "-i", stranger.display().to_string());
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    let status = flytube.wait_exit(Duration::from_secs(15));
    let out = flytube.output();
    assert_eq!(status.code(), Some(77), "{out}");
    assert!(out.contains("authentication failed"), "{out}");
    assert!(out.contains("rejected key"), "{out}");
}

#[test]
fn certificate_from_another_ca_is_rejected() {
    let relay = Relay::start();
    let rogue = relay.dir.join("rogue_ca");
    keygen(&rogue, "ed25519");
    let key = relay.dir.join("victim");
    keygen(&key, "ed25519");
    sign(&rogue, &key, &relay.user, "-5m:+1d");
    let mut args = relay.args();
    replace_arg(&mut args, "-i", key.display().to_string());
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    assert_eq!(flytube.wait_exit(Duration::from_secs(15)).code(), Some(77));
    flytube.assert_logged("with certificate");
}

#[test]
fn known_hosts_and_pin_must_both_pass() {
    let relay = Relay::start();
    let mut args = relay.args(); // trusts the relay through known_hosts
    args.extend([
        "--host-key-fingerprint".into(),
        "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
    ]);
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    assert_eq!(flytube.wait_exit(Duration::from_secs(15)).code(), Some(77));
    flytube.assert_logged("pinned fingerprint is SHA256:47DEQ");
}

#[test]
fn revoked_host_key_is_refused() {
    let relay = Relay::start();
    let mut args = relay.args();
    let known = relay.dir.join("known_hosts");
    let line = std::fs::read_to_string(&known).unwrap();
    std::fs::write(&known, format!("{line}@revoked {line}")).unwrap();
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    assert_eq!(flytube.wait_exit(Duration::from_secs(15)).code(), Some(77));
    flytube.assert_logged("@revoked");
}
