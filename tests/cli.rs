//! The command line: bad input is refused with a clear message and a documented exit code
//! before anything connects; `config` shows the effective settings; signals stop cleanly.

mod common;

use std::time::Duration;

use common::*;

/// Runs flytube to its end: exit code, stdout, stderr.
fn flytube<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let out = run_flytube(args, env);
    (out.code, out.stdout, out.stderr)
}

struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = TempDir::new("cli");
        keygen(&dir.join("id"), "ed25519");
        std::fs::write(
            dir.join("known_hosts"),
            "relay ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n",
        )
        .unwrap();
        Files { dir }
    }
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
    /// Valid base arguments for `config`.
    fn base(&self) -> Vec<String> {
        vec![
            "config".into(),
            "--relay".into(),
            "relay.example:2222".into(),
            "--user".into(),
            "tunnel".into(),
            "-i".into(),
            self.path("id"),
            "--known-hosts".into(),
            self.path("known_hosts"),
        ]
    }
    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.join(name), text).unwrap();
        self.path(name)
    }
}

fn expect_error(args: Vec<String>, env: &[(&str, &str)], code: i32, needles: &[&str]) {
    let (status, _, stderr) = flytube(&args, env);
    assert_eq!(status, Some(code), "args {args:?}\nstderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line error expected: {stderr}"
    );
}

fn with(mut base: Vec<String>, extra: &[&str]) -> Vec<String> {
    base.extend(extra.iter().map(|s| s.to_string()));
    base
}

#[test]
fn bad_forward_specs_and_ports() {
    let f = Files::new();
    for (spec, needle) in [
        (
            "8443:gitlab",
            "expected [BIND:]SOURCE_PORT:TARGET_HOST:TARGET_PORT",
        ),
        ("70000:h:443", "70000 is outside 1-65535"),
        ("0:h:443", "0 is outside 1-65535"),
        ("80:h:http", "\"http\" is not a number"),
        ("1:[::1:2", "unbalanced"),
    ] {
        expect_error(with(f.base(), &["-R", spec]), &[], 78, &[spec, needle]);
    }
    expect_error(f.base(), &[], 78, &["no forward"]);
}

#[test]
fn tests_name_their_settings_file_and_never_read_the_default_one() {
    let f = Files::new();
    let args = with(f.base(), &["-R", "1:h:2"]);
    let (status, stdout, stderr) = flytube(&args, &[]);
    assert_eq!(status, Some(0), "{stderr}");
    let named = format!("# settings file: {}\n", no_settings().display());
    assert!(stdout.starts_with(&named), "{stdout}");
}

#[test]
fn onboarding_variables_are_checked() {
    let f = Files::new();
    expect_error(
        f.base(),
        &[("SOURCE_PORT", "8443"), ("TARGET_HOST", "gitlab")],
        78,
        &["TARGET_PORT not set"],
    );
    expect_error(
        f.base(),
        &[
            ("SOURCE_PORT", "99999"),
            ("TARGET_HOST", "gitlab"),
            ("TARGET_PORT", "443"),
        ],
        78,
        &["SOURCE_PORT 99999 is outside 1-65535"],
    );
    let (status, stdout, stderr) = flytube(
        &f.base(),
        &[
            ("SOURCE_PORT", "8443"),
            ("TARGET_HOST", "gitlab.internal"),
            ("TARGET_PORT", "443"),
        ],
    );
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        stdout.contains("source_port: 8443") && stdout.contains("target_host: gitlab.internal"),
        "{stdout}"
    );
}

#[test]
fn missing_files_are_named() {
    let f = Files::new();
    for (flag, role, path) in [
        ("-i", "identity", "/nonexistent/id_ed25519"),
        ("--known-hosts", "known_hosts", "/nonexistent/known_hosts"),
    ] {
        let mut args = with(f.base(), &["-R", "1:h:2"]);
        set_arg(&mut args, flag, path);
        expect_error(args, &[], 78, &[role, path]);
    }
    expect_error(
        with(
            f.base(),
            &["-R", "1:h:2", "--certificate", "/nonexistent/cert.pub"],
        ),
        &[],
        78,
        &["certificate", "/nonexistent/cert.pub"],
    );
    expect_error(
        vec![
            "config".into(),
            "-c".into(),
            "/nonexistent/flytube.yaml".into(),
        ],
        &[],
        78,
        &["settings file /nonexistent/flytube.yaml"],
    );
}

#[test]
fn no_host_key_means_no_start() {
    let f = Files::new();
    let args = vec![
        "run".into(),
        "--relay".into(),
        "127.0.0.1:9".into(),
        "--user".into(),
        "u".into(),
        "-i".into(),
        f.path("id"),
        "-R".into(),
        "1:h:2".into(),
    ];
    expect_error(
        args,
        &[],
        78,
        &["never trusts an unknown relay", "--known-hosts"],
    );
    expect_error(
        with(
            f.base(),
            &["-R", "1:h:2", "--host-key-fingerprint", "MD5:12:34"],
        ),
        &[],
        78,
        &["\"MD5:12:34\"", "SHA256:"],
    );
}

#[test]
fn yaml_errors_name_the_line_and_key() {
    let f = Files::new();
    let unknown = f.write("unknown.yaml", "relay:\n  host: r\n  prot: 22\n");
    expect_error(
        with(f.base(), &["-c", &unknown]),
        &[],
        78,
        &["line 3", "unknown field `prot`"],
    );
    let syntax = f.write("syntax.yaml", "relay:\n  host: [r\nauth: x\n");
    expect_error(
        with(f.base(), &["-c", &syntax]),
        &[],
        78,
        &["syntax.yaml line"],
    );
    let port = f.write(
        "port.yaml",
        "forwards:\n  - source_port: 70000\n    target_host: h\n    target_port: 1\n",
    );
    expect_error(
        with(f.base(), &["-c", &port]),
        &[],
        78,
        &["forwards[0].source_port 70000"],
    );
    let busy = f.write("busy.yaml", "limits:\n  busy_poll_us: 5000\n");
    expect_error(
        with(f.base(), &["-c", &busy, "-R", "1:h:2"]),
        &[],
        78,
        &["limits.busy_poll_us 5000", "0-1000"],
    );
    let queued = f.write("queued.yaml", "limits:\n  max_queued_mib: 0\n");
    expect_error(
        with(f.base(), &["-c", &queued, "-R", "1:h:2"]),
        &[],
        78,
        &["limits.max_queued_mib 0", "1-1048576"],
    );
    let level = f.write("level.yaml", "log:\n  level: loud\n");
    expect_error(
        with(f.base(), &["-c", &level, "-R", "1:h:2"]),
        &[],
        78,
        &["\"loud\"", "debug"],
    );
}

#[test]
fn bad_values_on_the_command_line() {
    let f = Files::new();
    expect_error(
        with(f.base(), &["-R", "1:h:2", "--relay", "r:0"]),
        &[],
        78,
        &["\"r:0\"", "outside 1-65535"],
    );
    expect_error(
        with(
            f.base(),
            &["-R", "1:h:2", "--ciphers", "aes256-gcm@openssh.com,rot13"],
        ),
        &[],
        78,
        &["\"rot13\"", "aes256-ctr"],
    );
    expect_error(
        with(f.base(), &["-R", "1:h:2", "--keepalive-interval", "0"]),
        &[],
        78,
        &["keepalive interval 0"],
    );
    expect_error(
        with(f.base(), &["-R", "1:h:2", "--max-connections", "0"]),
        &[],
        78,
        &["max connections 0"],
    );
    // clap's own usage errors exit 2.
    let (status, _, stderr) = flytube(&["run", "--keepalive-interval", "soon"], &[]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("soon"), "{stderr}");
    let (status, _, _) = flytube(&["frobnicate"], &[]);
    assert_eq!(status, Some(2));
}

#[test]
fn config_prints_effective_settings_with_precedence_and_masks_secrets() {
    let f = Files::new();
    let file = f.write(
        "settings.yaml",
        "relay:\n  host: from-file\n  user: file-user\nkeepalive:\n  interval_secs: 30\n  count: 5\n\
         forwards:\n  - source_port: 1\n    target_host: file-target\n    target_port: 2\n",
    );
    let args = [
        "config",
        "-c",
        &file,
        "-i",
        &f.path("id"),
        "--known-hosts",
        &f.path("known_hosts"),
        "--keepalive-count",
        "7",
    ];
    let (status, stdout, stderr) = flytube(
        &args,
        &[
            ("FLYTUBE_USER", "env-user"),
            ("FLYTUBE_KEEPALIVE_INTERVAL", "20"),
            ("FLYTUBE_PASSPHRASE", "hunter2"),
        ],
    );
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stdout.contains("host: from-file"), "{stdout}");
    assert!(
        stdout.contains("user: env-user"),
        "env beats file: {stdout}"
    );
    assert!(
        stdout.contains("interval_secs: 20"),
        "env beats file: {stdout}"
    );
    assert!(stdout.contains("count: 7"), "flag beats file: {stdout}");
    assert!(stdout.contains("target_host: file-target"), "{stdout}");
    assert!(stdout.contains("aes256-gcm@openssh.com"), "{stdout}");
    assert!(
        stdout.contains("MASKED") && !stdout.contains("hunter2"),
        "{stdout}"
    );
    // The flag beats the environment.
    let (_, stdout, _) = flytube(
        &[&args[..], &["--user", "flag-user"]].concat(),
        &[("FLYTUBE_USER", "env-user")],
    );
    assert!(stdout.contains("user: flag-user"), "{stdout}");
}

#[test]
fn example_config_parses_and_is_complete() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flytube.yaml.example"))
            .unwrap();
    let config = flytube::config::parse_yaml(&text, "flytube.yaml.example").unwrap();
    let relay = config.relay.unwrap();
    assert_eq!(relay.host.as_deref(), Some("firefly-relay.firefly.ai"));
    assert_eq!(config.forwards.unwrap().len(), 2);
    assert!(config.auth.is_some() && config.host_key.is_some() && config.keepalive.is_some());
    assert!(
        config.reconnect.is_some()
            && config.limits.is_some()
            && config.ciphers.is_some()
            && config.log.is_some()
    );
    // Every key of the file format is shown (set or commented) in the example.
    for key in [
        "relay",
        "host",
        "port",
        "user",
        "connect_timeout_secs",
        "handshake_timeout_secs",
        "proxy",
        "proxy_password_file",
        "auth",
        "identity",
        "certificate",
        "passphrase_file",
        "host_key",
        "known_hosts",
        "fingerprint",
        "forwards",
        "source_port",
        "target_host",
        "target_port",
        "bind",
        "keepalive",
        "interval_secs",
        "count",
        "reconnect",
        "initial_delay_ms",
        "max_delay_secs",
        "standby_retry_secs",
        "limits",
        "max_connections",
        "target_connect_timeout_secs",
        "idle_timeout_secs",
        "drain_timeout_secs",
        "busy_poll_us",
        "max_queued_mib",
        "ciphers",
        "log",
        "level",
        "format",
        "allow_weaker_ciphers",
        "allow",
        "deny",
        "via",
        "handshake_timeout_secs",
        "metrics",
        "listen",
        "allow_remote",
        "status_file",
    ] {
        assert!(text.contains(&format!("{key}:")), "example lacks {key}");
    }
    // And nothing else: a misspelt key in the example would be rejected by flytube.
    assert!(
        flytube::config::parse_yaml(
            &text
                .replace("# passphrase_file", "passphrase_file")
                .replace("# listen", "listen")
                .replace("# status_file", "status_file"),
            "x"
        )
        .is_ok()
    );
}

#[test]
fn sigterm_stops_serving_and_exits_zero() {
    let relay = Relay::start();
    let (_echo, source, mut flytube) = echo_tunnel(&relay, &[]);
    assert_eq!(echo_round_trip(source, b"up"), b"up");
    flytube.signal("TERM");
    flytube.assert_exit(0, Duration::from_secs(10));
    flytube.assert_logged("stopped");
    // The forward was cancelled: nothing listens on the relay port any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", source)).is_err());
}

#[test]
fn sigint_stops_too() {
    let relay = Relay::start();
    let mut args = relay.args();
    args.extend(forward(free_port(), 9));
    let mut flytube = Flytube::serving(&args);
    flytube.signal("INT");
    flytube.assert_exit(0, Duration::from_secs(10));
}

#[test]
fn version_prints() {
    let (status, stdout, _) = flytube(&["--version"], &[]);
    assert_eq!(status, Some(0));
    assert!(stdout.starts_with("flytube "), "{stdout}");
}

#[test]
fn man_page_documents_every_command_flag_and_variable() {
    use clap::CommandFactory;
    let man =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/flytube.8")).unwrap();
    // roff escapes '-' as '\-'.
    let man = man.replace("\\-", "-");
    let cli = flytube::cli::Cli::command();
    for sub in cli.get_subcommands() {
        assert!(
            man.contains(&format!(".B {}", sub.get_name())),
            "man page lacks command {}",
            sub.get_name()
        );
        for arg in sub.get_arguments() {
            if let Some(long) = arg.get_long() {
                if long == "help" {
                    continue;
                }
                assert!(
                    man.contains(&format!("--{long}")),
                    "man page lacks --{long}"
                );
            }
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(man.contains(env.as_ref()), "man page lacks {env}");
            }
        }
    }
    for name in [
        "SOURCE_PORT",
        "TARGET_HOST",
        "TARGET_PORT",
        "FLYTUBE_PASSPHRASE",
        "RUST_LOG",
    ] {
        assert!(man.contains(name), "man page lacks {name}");
    }
    for code in ["69", "77", "78"] {
        assert!(
            man.contains(&format!(".B {code}")),
            "man page lacks exit status {code}"
        );
    }
}

#[test]
fn bad_environment_values_name_the_variable() {
    let f = Files::new();
    let args = with(f.base(), &["-R", "1:h:2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, stderr) = flytube(&args, &[("FLYTUBE_KEEPALIVE_INTERVAL", "abc")]);
    assert_eq!(status, Some(78), "{stderr}");
    assert!(
        stderr.contains("FLYTUBE_KEEPALIVE_INTERVAL=\"abc\"")
            && stderr.contains("--keepalive-interval"),
        "{stderr}"
    );
    // The same variable is ignored when the flag is given on the command line.
    let mut typed = args.clone();
    typed.extend(["--keepalive-interval", "0"]);
    let (status, _, stderr) = flytube(&typed, &[("FLYTUBE_KEEPALIVE_INTERVAL", "abc")]);
    assert_eq!(status, Some(78), "{stderr}");
    assert!(stderr.contains("keepalive interval 0"), "{stderr}");
}

#[test]
fn star_bind_is_shown_as_star_and_default_bind_is_left_out() {
    let f = Files::new();
    let args = with(
        f.base(),
        &["-R", "*:8443:gitlab:443", "-R", "9443:k8s:6443"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = flytube(&args, &[]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stdout.contains("bind: '*'"), "{stdout}");
    assert_eq!(stdout.matches("bind:").count(), 1, "{stdout}");
}

#[test]
fn ciphers_below_the_promise_need_an_explicit_opt_in() {
    let f = Files::new();
    expect_error(
        with(
            f.base(),
            &[
                "-R",
                "1:h:2",
                "--ciphers",
                "aes256-gcm@openssh.com,aes128-ctr",
            ],
        ),
        &[],
        78,
        &["\"aes128-ctr\" is weaker", "allow_weaker_ciphers"],
    );
    let args = with(
        f.base(),
        &[
            "-R",
            "1:h:2",
            "--ciphers",
            "aes128-ctr",
            "--allow-weaker-ciphers",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = flytube(&args, &[]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stdout.contains("allow_weaker_ciphers: true"), "{stdout}");
    let args = with(
        f.base(),
        &["-R", "1:h:2", "--ciphers", "chacha20-poly1305@openssh.com"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, stderr) = flytube(&args, &[]);
    assert_eq!(
        status,
        Some(0),
        "chacha20-poly1305 is 256-bit AEAD: {stderr}"
    );
}
