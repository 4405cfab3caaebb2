//! `flytube check` against the real sshd fixture: every step, every way it can break.

mod common;

use common::*;

fn check(args: &[String], json: bool) -> Outcome {
    // Everything after "run" in the fixture's arguments.
    let mut check = vec!["check"];
    if json {
        check.push("--json");
    }
    check.extend(args[1..].iter().map(String::as_str));
    run_flytube(&check, &[])
}

/// `flytube check` of `args` with a forward to a port where nothing listens, which must
/// fail with exit `code`.
fn failing(mut args: Vec<String>, json: bool, code: i32) -> Outcome {
    args.extend(forward(free_port(), 9));
    let out = check(&args, json);
    assert_eq!(out.code, Some(code), "{}", out.stdout);
    out
}

/// The relay's arguments with `key` as identity.
fn with_identity(relay: &Relay, key: &std::path::Path) -> Vec<String> {
    let mut args = relay.args();
    set_arg(&mut args, "-i", key.display());
    args
}

fn line<'a>(out: &'a Outcome, step: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.contains(step))
        .unwrap_or_else(|| panic!("no {step:?} line in:\n{}", out.stdout))
}

#[test]
fn all_good_passes_every_step() {
    let relay = Relay::start();
    let echo = Target::echo();
    let mut args = relay.args();
    args.extend(forward(free_port(), echo.port));
    let out = check(&args, false);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    for step in [
        "settings",
        "resolve relay",
        "tcp connect",
        "ssh handshake",
        "host key",
        "authentication",
        "forward 127.0.0.1:",
        "target 127.0.0.1:",
    ] {
        assert!(line(&out, step).starts_with("[ ok ]"), "{}", out.stdout);
    }
    assert!(
        line(&out, "ssh handshake").contains("cipher aes256-gcm@openssh.com"),
        "{}",
        out.stdout
    );
    assert!(
        line(&out, "authentication").contains(&format!("principals {}", relay.user)),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.trim_end().ends_with("all 8 steps passed"),
        "{}",
        out.stdout
    );
    assert!(relay.log().contains("Accepted publickey"));

    let json = check(&args, true);
    assert_eq!(json.code, Some(0));
    let lines: Vec<&str> = json.stdout.lines().collect();
    assert_eq!(lines.len(), 9, "{}", json.stdout);
    assert!(lines.iter().all(|l| l.starts_with('{') && l.ends_with('}')));
    assert!(
        lines[3].contains("\"step\":\"ssh handshake\",\"status\":\"ok\""),
        "{}",
        lines[3]
    );
    assert!(
        lines[8].contains("\"status\":\"ok\",\"exit\":0"),
        "{}",
        lines[8]
    );
}

#[test]
fn wrong_host_key_fails_with_both_fingerprints() {
    let relay = Relay::start();
    let other = TempDir::new("otherkey");
    keygen(&other.join("k"), "ed25519");
    let mut args = relay.args();
    remove_arg(&mut args, "--known-hosts");
    args.extend([
        "--host-key-fingerprint".into(),
        fingerprint(&other.join("k.pub")),
    ]);
    let out = failing(args, false, 77);
    let host = line(&out, "host key");
    assert!(host.starts_with("[FAIL]"));
    assert!(
        host.contains(&fingerprint(&relay.host_pub()))
            && host.contains(&fingerprint(&other.join("k.pub"))),
        "{host}"
    );
    assert!(
        out.stdout
            .contains("fix: never connect through an unverified relay")
    );
    assert!(
        !out.stdout.contains("authentication"),
        "must stop before auth:\n{}",
        out.stdout
    );
}

#[test]
fn no_host_key_yet_prints_the_pin_and_fails() {
    let relay = Relay::start();
    let mut args = relay.args();
    remove_arg(&mut args, "--known-hosts");
    let out = failing(args, false, 77);
    let fp = fingerprint(&relay.host_pub());
    assert!(
        out.stdout.contains(&format!("--host-key-fingerprint {fp}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", relay.port)),
        "{}",
        out.stdout
    );
    assert!(
        !relay.log().contains("publickey"),
        "no auth may be attempted"
    );
}

#[test]
fn no_relay_listening_fails_at_tcp() {
    let relay = Relay::start();
    let mut args = relay.args();
    set_arg(&mut args, "--relay", format!("127.0.0.1:{}", free_port()));
    let out = failing(args, false, 69);
    assert!(line(&out, "tcp connect").starts_with("[FAIL]"));
    assert!(
        out.stdout.contains("fix: refused: nothing listens on port"),
        "{}",
        out.stdout
    );
}

#[test]
fn unresolvable_relay_fails_at_resolve() {
    let relay = Relay::start();
    let mut args = relay.args();
    // An empty label is rejected by the resolver itself: no DNS query leaves the machine.
    set_arg(&mut args, "--relay", "relay..invalid:22");
    let out = failing(args, true, 69);
    let resolve = line(&out, "resolve relay");
    assert!(
        resolve.contains("\"status\":\"fail\"") && resolve.contains("relay..invalid"),
        "{resolve}"
    );
    assert!(resolve.contains("DNS"), "{resolve}");
}

#[test]
fn untrusted_key_fails_authentication() {
    let relay = Relay::start();
    let args = with_identity(&relay, &relay.new_key("stranger"));
    let out = failing(args, false, 77);
    let auth = line(&out, "authentication");
    assert!(
        auth.starts_with("[FAIL]") && auth.contains("rejected key"),
        "{auth}"
    );
}

#[test]
fn expired_certificate_fails_before_offering_it() {
    let relay = Relay::start();
    let key = relay.certified_key("old", "20200101:20200102");
    let out = failing(with_identity(&relay, &key), false, 77);
    let auth = line(&out, "authentication");
    assert!(
        auth.contains("EXPIRED") && auth.contains("2020-01-02"),
        "{auth}"
    );
    assert!(
        out.stdout
            .contains("fix: the certificate expired at 2020-01-02"),
        "{}",
        out.stdout
    );
}

#[test]
fn certificate_expiring_soon_warns() {
    let relay = Relay::start();
    let key = relay.certified_key("soon", "-1d:+3d");
    let echo = Target::echo();
    let mut args = with_identity(&relay, &key);
    args.extend(forward(free_port(), echo.port));
    let out = check(&args, false);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        line(&out, "authentication").starts_with("[warn]"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("expires in 2.9 days") || out.stdout.contains("expires in 3.0 days"),
        "{}",
        out.stdout
    );
}

#[test]
fn squatted_forward_fails() {
    let relay = Relay::start();
    let squatter = Squatter::new();
    let mut args = relay.args();
    args.extend(forward(squatter.port, 9));
    let out = check(&args, false);
    assert_eq!(out.code, Some(69), "{}", out.stdout);
    assert!(line(&out, "forward 127.0.0.1:").starts_with("[FAIL]"));
    assert!(out.stdout.contains("it is in use"), "{}", out.stdout);
}

#[test]
fn target_down_fails() {
    let relay = Relay::start();
    let down = free_port();
    let mut args = relay.args();
    args.extend(forward(free_port(), down));
    let out = check(&args, false);
    assert_eq!(out.code, Some(69), "{}", out.stdout);
    let target = line(&out, "target 127.0.0.1:");
    assert!(
        target.starts_with("[FAIL]") && target.contains("refused"),
        "{target}"
    );
    assert!(
        out.stdout
            .contains(&format!("fix: start the service at 127.0.0.1:{down}")),
        "{}",
        out.stdout
    );
}

#[test]
fn invalid_settings_are_the_first_failed_step() {
    let out = check(&["run".into(), "--relay".into(), "r:0".into()], false);
    assert_eq!(out.code, Some(78), "{}", out.stdout);
    assert!(
        line(&out, "settings").starts_with("[FAIL]"),
        "{}",
        out.stdout
    );
}

#[test]
fn certificate_details_are_read_from_a_real_certificate() {
    let relay = Relay::start();
    let text = std::fs::read_to_string(relay.dir.join("id_ed25519-cert.pub")).unwrap();
    let cert = flytube::cert::Certificate::parse(&text).unwrap();
    assert_eq!(cert.cert_type, "ssh-ed25519-cert-v01@openssh.com");
    assert_eq!(cert.key_id, "flytube-test");
    assert_eq!(cert.principals, vec![relay.user.clone()]);
    assert!(matches!(cert.validity(), flytube::cert::Validity::Valid(left) if left > 86_000));
}

#[test]
fn a_certificate_for_a_mapped_principal_is_offered_and_the_relay_decides() {
    // The relay maps principal "site-berlin" to the login user (AuthorizedPrincipalsFile),
    // so a certificate without the user's name is valid there.
    let dir = TempDir::new("principals");
    std::fs::write(dir.join("principals"), "site-berlin\n").unwrap();
    let relay = Relay::start_with(&format!(
        "AuthorizedPrincipalsFile {}",
        dir.join("principals").display()
    ));
    let key = dir.join("id_mapped");
    keygen(&key, "ed25519");
    sign(&relay.dir.join("ca"), &key, "site-berlin", "-5m:+52w");
    let echo = Target::echo();
    let mut args = relay.args();
    let at = args.iter().position(|a| a == "-i").unwrap() + 1;
    args[at] = key.display().to_string();
    args.extend(forward(free_port(), echo.port));
    let out = check(&args, false);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let auth = line(&out, "authentication");
    assert!(auth.starts_with("[warn]"), "{}", out.stdout);
    assert!(
        out.stdout.contains("AuthorizedPrincipalsFile"),
        "{}",
        out.stdout
    );
}
