//! Host key verification and authentication against a real sshd: what is trusted, what is
//! refused, and that a refusal sends nothing more.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// A SHA256 fingerprint no relay of the tests has.
const WRONG_PIN: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";

/// flytube with `args` and a forward, which must refuse to go on (exit 77).
fn refused(mut args: Vec<String>) -> Flytube {
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    flytube.assert_exit(77, Duration::from_secs(15));
    assert!(
        !flytube.output().contains("panicked"),
        "{}",
        flytube.output()
    );
    flytube
}

/// `args` pinning `fingerprint` instead of trusting known_hosts.
fn pinned(mut args: Vec<String>, fingerprint: &str) -> Vec<String> {
    remove_arg(&mut args, "--known-hosts");
    args.extend(["--host-key-fingerprint".into(), fingerprint.into()]);
    args
}

#[test]
fn host_key_mismatch_is_refused_before_auth() {
    let relay = Relay::start();
    let other = TempDir::new("other");
    keygen(&other.join("host"), "ed25519");
    let known = other.join("known_hosts");
    let host = format!("[127.0.0.1]:{}", relay.port);
    std::fs::write(&known, known_hosts_line(&host, &other.join("host.pub"))).unwrap();
    let mut args = relay.args();
    set_arg(&mut args, "--known-hosts", known.display());
    let flytube = refused(args);
    let out = flytube.output();
    assert!(
        out.contains(&fingerprint(&relay.host_pub())),
        "presented fingerprint missing: {out}"
    );
    assert!(
        out.contains(&fingerprint(&other.join("host.pub"))),
        "expected fingerprint missing: {out}"
    );
    let log = relay.log();
    assert!(
        !log.contains("Accepted publickey") && !log.contains("Failed publickey"),
        "auth was attempted:\n{log}"
    );
}

#[test]
fn unknown_relay_is_refused_with_the_line_to_add() {
    let relay = Relay::start();
    let empty = relay.write("empty_known_hosts", "# nothing yet\n");
    let mut args = relay.args();
    set_arg(&mut args, "--known-hosts", empty);
    let flytube = refused(args);
    flytube.assert_logged("has no entry for 127.0.0.1");
    flytube.assert_logged(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", relay.port));
}

#[test]
fn pinned_fingerprint_is_accepted_and_a_wrong_pin_refused() {
    let relay = Relay::start();
    let pin = fingerprint(&relay.host_pub());
    let (_echo, source, flytube) = echo_tunnel_with(pinned(relay.args(), &pin));
    assert_eq!(echo_round_trip(source, b"pinned"), b"pinned");
    drop(flytube);

    let flytube = refused(pinned(relay.args(), WRONG_PIN));
    flytube.assert_logged("pinned fingerprint is SHA256:47DEQ");
}

#[test]
fn hashed_known_hosts_entry_is_accepted() {
    let relay = Relay::start();
    // args() writes known_hosts in plain form; hash it afterwards.
    let args = relay.args();
    let known = relay.dir.join("known_hosts");
    run_ok(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&known));
    let text = std::fs::read_to_string(&known).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    let (_echo, source, _flytube) = echo_tunnel_with(args);
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
    let plain = relay.new_key("plain");
    std::fs::copy(
        relay.dir.join("plain.pub"),
        relay.dir.join("authorized_keys"),
    )
    .unwrap();
    let mut args = relay.args();
    set_arg(&mut args, "-i", plain.display());
    let (_echo, source, _flytube) = echo_tunnel_with(args);
    assert_eq!(echo_round_trip(source, b"plain"), b"plain");
}

#[test]
fn untrusted_key_is_rejected_with_authentication_failed() {
    let relay = Relay::start();
    let mut args = relay.args();
    set_arg(&mut args, "-i", relay.new_key("stranger").display());
    let flytube = refused(args);
    flytube.assert_logged("authentication failed");
    flytube.assert_logged("rejected key");
}

#[test]
fn certificate_from_another_ca_is_rejected() {
    let relay = Relay::start();
    let rogue = relay.new_key("rogue_ca");
    let key = relay.new_key("victim");
    sign(&rogue, &key, &relay.user, "-5m:+1d");
    let mut args = relay.args();
    set_arg(&mut args, "-i", key.display());
    refused(args).assert_logged("with certificate");
}

#[test]
fn known_hosts_and_pin_must_both_pass() {
    let relay = Relay::start();
    let mut args = relay.args(); // trusts the relay through known_hosts
    args.extend(["--host-key-fingerprint".into(), WRONG_PIN.into()]);
    refused(args).assert_logged("pinned fingerprint is SHA256:47DEQ");
}

#[test]
fn revoked_host_key_is_refused() {
    let relay = Relay::start();
    let args = relay.args();
    let known = relay.dir.join("known_hosts");
    let line = std::fs::read_to_string(&known).unwrap();
    std::fs::write(&known, format!("{line}@revoked {line}")).unwrap();
    refused(args).assert_logged("@revoked");
}
