//! known_hosts as OpenSSH reads it: every line form is checked against OpenSSH's own answer
//! (`ssh-keygen -F`), and the end-to-end refusals (a revoked key, a bare host name on
//! another port) against a real sshd.

mod common;

use std::process::Command;

use common::*;

/// Does OpenSSH find an entry for `lookup` (`host` or `[host]:port`) in `file`?
fn openssh_finds(file: &std::path::Path, lookup: &str) -> bool {
    Command::new("ssh-keygen")
        .args(["-F", lookup, "-f"])
        .stderr(std::process::Stdio::null())
        .arg(file)
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false)
}

#[test]
fn every_line_form_agrees_with_ssh_keygen() {
    let dir = TempDir::new("known-hosts");
    let key_file = dir.join("host");
    keygen(&key_file, "ed25519");
    let key = std::fs::read_to_string(dir.join("host.pub")).unwrap();
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    let key = key.join(" ");
    let cases = [
        "[relay.example]:2222",
        "relay.example",
        "*",
        "[relay.example]:*",
        "*.example",
        "[*.example]:2222",
        "*,![relay.example]:2222",
        "[relay.exampl?]:2222",
        "other.example,[relay.example]:2222",
        "!other.example,[relay.example]:2222",
        "[RELAY.example]:2222",
        "[relay.example]:22",
        "relay.example,!*",
    ];
    for (port, lookup) in [(2222u16, "[relay.example]:2222"), (22, "relay.example")] {
        for pattern in cases {
            let file = dir.join("kh");
            std::fs::write(&file, format!("{pattern} {key}\n")).unwrap();
            let ours = !flytube::hostkey::known_entries_for(
                &std::fs::read_to_string(&file).unwrap(),
                "relay.example",
                port,
            )
            .keys
            .is_empty();
            let theirs = openssh_finds(&file, lookup);
            assert_eq!(
                ours, theirs,
                "pattern {pattern:?} for {lookup}: flytube {ours}, OpenSSH {theirs}"
            );
            // The same line hashed (ssh-keygen -H) must give the same answer, where OpenSSH
            // can hash it (only single plain names are hashed).
            if !pattern.contains(['*', '?', '!', ',']) {
                assert!(
                    Command::new("ssh-keygen")
                        .args(["-q", "-H", "-f"])
                        .arg(&file)
                        .stderr(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .status()
                        .unwrap()
                        .success()
                );
                let hashed = std::fs::read_to_string(&file).unwrap();
                assert!(hashed.starts_with("|1|"), "{hashed}");
                let ours = !flytube::hostkey::known_entries_for(&hashed, "relay.example", port)
                    .keys
                    .is_empty();
                assert_eq!(ours, theirs, "hashed {pattern:?} for {lookup}");
            }
        }
    }
}

#[test]
fn a_revoked_key_is_refused_whatever_else_vouches_for_it() {
    let relay = Relay::start();
    let key = std::fs::read_to_string(relay.host_pub()).unwrap();
    let known = relay.dir.join("kh_revoked");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {key}@revoked * {key}", relay.port),
    )
    .unwrap();
    let mut args = relay.args();
    let k = args.iter().position(|a| a == "--known-hosts").unwrap() + 1;
    args[k] = known.display().to_string();
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    let status = flytube.wait_exit(std::time::Duration::from_secs(20));
    assert_eq!(status.code(), Some(77), "{}", flytube.output());
    flytube.assert_logged("@revoked");
}

#[test]
fn a_bare_host_entry_does_not_vouch_for_another_port() {
    let relay = Relay::start();
    let key = std::fs::read_to_string(relay.host_pub()).unwrap();
    let known = relay.dir.join("kh_bare");
    std::fs::write(&known, format!("127.0.0.1 {key}")).unwrap();
    let mut args = relay.args();
    let k = args.iter().position(|a| a == "--known-hosts").unwrap() + 1;
    args[k] = known.display().to_string();
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::start(&args);
    let status = flytube.wait_exit(std::time::Duration::from_secs(20));
    assert_eq!(status.code(), Some(77), "{}", flytube.output());
    flytube.assert_logged(&format!("has no entry for 127.0.0.1:{}", relay.port));
}
