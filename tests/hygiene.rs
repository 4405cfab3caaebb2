//! Careful with local input: private key permissions as OpenSSH checks them, and files that
//! are not regular files, too large, or YAML built to exhaust the parser are refused fast
//! with a message naming the file (exit 78), never a hang.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `flytube config` with a clean environment; gives up (and fails) after 10 s.
fn config(args: &[String]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(flytube_bin())
        .arg("config")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("flytube config hung on {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = TempDir::new("hygiene");
        keygen(&dir.join("id"), "ed25519");
        std::fs::write(
            dir.join("known_hosts"),
            "relay ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n",
        )
        .unwrap();
        Setup { dir }
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--relay".into(),
            "relay.example".into(),
            "--user".into(),
            "u".into(),
            "-i".into(),
            self.dir.join("id").display().to_string(),
            "--known-hosts".into(),
            self.dir.join("known_hosts").display().to_string(),
            "-R".into(),
            "1:h:2".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

#[test]
fn a_key_others_can_read_is_refused_with_the_chmod() {
    let s = Setup::new();
    let key = s.dir.join("id");
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, stderr, _) = config(&s.args(&[]));
        assert_eq!(code, Some(78), "mode {mode:o}: {stderr}");
        assert!(
            stderr.contains(&format!("chmod 600 {}", key.display())),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("mode {mode:04o}")), "{stderr}");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stderr, _) = config(&s.args(&[]));
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(config(&s.args(&[])).0, Some(0));
}

#[test]
fn a_key_owned_by_someone_else_is_their_decision() {
    // root:flytube 0640 in packages, fsGroup secrets in Kubernetes: only meaningful when the
    // test runs as root and can hand the key to another owner.
    let s = Setup::new();
    let key = s.dir.join("id");
    let chowned = Command::new("chown")
        .args(["65534:0"])
        .arg(&key)
        .status()
        .map(|st| st.success())
        .unwrap_or(false);
    if !chowned {
        eprintln!("not root: cannot give the key to another owner; skipped");
        return;
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, stderr, _) = config(&s.args(&[]));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn fifos_devices_and_huge_files_are_refused_not_read() {
    let s = Setup::new();
    let fifo = s.dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.display().to_string();
    let (code, stderr, _) = config(&s.args(&["-c", &fifo]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("is not a regular file"), "{stderr}");
    let (code, stderr, _) = config(&s.args(&["--passphrase-file", "/dev/zero"]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("/dev/zero is not a regular file"),
        "{stderr}"
    );
    let big = s.dir.join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(2 * 1024 * 1024))).unwrap();
    let (code, stderr, _) = config(&s.args(&["-c", &big.display().to_string()]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("larger than 1048576 bytes"), "{stderr}");
}

#[test]
fn yaml_bombs_are_refused_at_once() {
    let s = Setup::new();
    let deep = s.dir.join("deep.yaml");
    std::fs::write(&deep, format!("relay: {}\n", "[".repeat(100_000))).unwrap();
    let (code, stderr, took) = config(&s.args(&["-c", &deep.display().to_string()]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("nested more than"), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let mut bomb = String::from("a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
    for level in 1..12 {
        let prev = (b'a' + level - 1) as char;
        let name = (b'a' + level) as char;
        bomb.push_str(&format!(
            "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    let path = s.dir.join("bomb.yaml");
    std::fs::write(&path, bomb).unwrap();
    let (code, stderr, took) = config(&s.args(&["-c", &path.display().to_string()]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("anchors and aliases"), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn key_mistakes_are_configuration_errors_before_connecting() {
    let s = Setup::new();
    let dir = &s.dir;
    // A public key given as the identity.
    let public = dir.join("id.pub").display().to_string();
    let mut args = s.args(&[]);
    let at = args.iter().position(|a| a == "-i").unwrap() + 1;
    args[at] = public.clone();
    let (code, stderr, _) = config(&args);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("identity {public} is a public key")),
        "{stderr}"
    );

    // An encrypted key: no passphrase, a wrong one, the right one.
    let locked = dir.join("locked");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "s3cret", "-f"])
            .arg(&locked),
    );
    args[at] = locked.display().to_string();
    let (code, stderr, _) = config(&args);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("is encrypted and no passphrase is set"),
        "{stderr}"
    );
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let mut with_wrong = args.clone();
    with_wrong.extend(["--passphrase-file".to_string(), wrong.display().to_string()]);
    let (code, stderr, _) = config(&with_wrong);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("the passphrase does not decrypt identity"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("nope"),
        "the passphrase must never be printed: {stderr}"
    );
    let right = dir.join("right");
    std::fs::write(&right, "s3cret\n").unwrap();
    let mut with_right = args.clone();
    with_right.extend(["--passphrase-file".to_string(), right.display().to_string()]);
    let (code, stderr, _) = config(&with_right);
    assert_eq!(code, Some(0), "{stderr}");

    // A certificate for another key.
    let ca = dir.join("ca");
    keygen(&ca, "ed25519");
    let other = dir.join("other");
    keygen(&other, "ed25519");
    sign(&ca, &other, "u", "+1d");
    let mut mismatched = s.args(&[]);
    mismatched.extend([
        "--certificate".to_string(),
        dir.join("other-cert.pub").display().to_string(),
    ]);
    let (code, stderr, _) = config(&mismatched);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("certifies another key than the identity"),
        "{stderr}"
    );

    // Not a key at all.
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, "hello\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    args[at] = garbage.display().to_string();
    let (code, stderr, _) = config(&args);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("is not a private key"), "{stderr}");
}
