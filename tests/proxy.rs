//! Reaching the relay through real proxies on loopback: tinyproxy (HTTP CONNECT with Basic
//! authentication) and microsocks (SOCKS5 with RFC 1929 user/password). Every output of
//! flytube (the run log at trace level, `config`, `check`) is searched for the passwords.

mod common;
#[path = "common/proxies.rs"]
mod proxies;

use base64ct::{Base64, Base64Unpadded, Encoding};
use std::process::Command;
use std::time::Duration;

use common::*;
use proxies::*;

const READY: Duration = Duration::from_secs(20);
const USER: &str = "flyproxy";
/// tinyproxy's BasicAuth takes only `[-a-z0-9._]`.
const TINY_PASSWORD: &str = "tiny-s3cret.pw";
/// microsocks takes anything: this one must be percent-encoded in a URL.
const SOCKS_PASSWORD: &str = "m1cr0:s@cks/pw%";
const SOCKS_PASSWORD_ENCODED: &str = "m1cr0%3As%40cks%2Fpw%25";
const WRONG_PASSWORD: &str = "wr0ng-guess.pw";

/// The machine's own proxy variables, blanked (flytube treats blank as unset, as curl does).
const NO_PROXY_ENV: &[(&str, &str)] = &[
    ("https_proxy", ""),
    ("HTTPS_PROXY", ""),
    ("all_proxy", ""),
    ("ALL_PROXY", ""),
    ("no_proxy", ""),
    ("NO_PROXY", ""),
];

fn env_with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<_> = NO_PROXY_ENV
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .copied()
        .collect();
    env.extend_from_slice(extra);
    env
}

/// Every form a password could leak in.
fn assert_no_secret(what: &str, text: &str) {
    for secret in [
        TINY_PASSWORD,
        SOCKS_PASSWORD,
        SOCKS_PASSWORD_ENCODED,
        WRONG_PASSWORD,
    ] {
        assert!(!text.contains(secret), "{what} shows a password:\n{text}");
        for basic in [
            Base64::encode_string(format!("{USER}:{secret}").as_bytes()),
            Base64Unpadded::encode_string(format!("{USER}:{secret}").as_bytes()),
        ] {
            assert!(
                !text.contains(&basic),
                "{what} shows Basic credentials:\n{text}"
            );
        }
    }
}

/// Runs a flytube subcommand to completion: exit code, stdout, stderr.
fn flytube_once(args: &[String], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(flytube_bin());
    cmd.args(args)
        .env_remove("FLYTUBE_CONFIG")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run flytube");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `args` (a `run` command line) as another subcommand.
fn as_command(args: &[String], command: &str) -> Vec<String> {
    let mut args = args.to_vec();
    args[0] = command.into();
    args
}

/// A settings file with quick reconnects, so retries show within seconds.
fn fast_reconnect(relay: &Relay) -> String {
    let path = relay.dir.join("fast.yaml");
    std::fs::write(
        &path,
        "reconnect:\n  initial_delay_ms: 200\n  max_delay_secs: 1\n",
    )
    .unwrap();
    path.display().to_string()
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn tiny_url(proxy: &ProxyProcess, password: &str) -> String {
    format!("http://{USER}:{password}@127.0.0.1:{}", proxy.port)
}

#[test]
fn http_connect_through_tinyproxy_carries_the_tunnel_and_hides_the_password() {
    let relay = Relay::start();
    let proxy = tinyproxy(Some((USER, TINY_PASSWORD)), &[relay.port]);
    let url = tiny_url(&proxy, TINY_PASSWORD);
    let (echo, source, flytube) = echo_tunnel(&relay, &["--proxy", &url, "-vv"]);
    let data = random_bytes(1 << 20, 11);
    assert!(echo_round_trip(source, &data) == data, "data changed");
    proxy.wait_logged(
        &format!("CONNECT 127.0.0.1:{} HTTP/1.1", relay.port),
        Duration::from_secs(5),
    );
    let shown = format!("http://{USER}:MASKED@127.0.0.1:{}", proxy.port);
    flytube.assert_logged(&format!("proxy: {shown} (from --proxy)"));
    flytube.assert_logged(&format!(
        "proxy {shown} (127.0.0.1:{}) opened a tunnel to relay 127.0.0.1:{}",
        proxy.port, relay.port
    ));
    flytube.assert_logged("HTTP/1.0 200 Connection established");
    // The host key was checked against the relay's own name and port.
    flytube.assert_logged(&format!("connected to relay 127.0.0.1:{}", relay.port));

    // check, through the proxy, with a forward that the running flytube does not hold.
    let check_args = with(
        as_command(&relay.args(), "check"),
        &[
            "--proxy",
            &url,
            "-R",
            &format!("{}:127.0.0.1:{}", free_port(), echo.port),
        ],
    );
    let (code, stdout, stderr) = flytube_once(&check_args, NO_PROXY_ENV);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.get(7..).is_some_and(|step| step.starts_with("proxy ")))
        .unwrap();
    assert!(line.starts_with("[ ok ]"), "{stdout}");
    assert!(
        line.contains(&format!(
            "CONNECT 127.0.0.1:{}: HTTP/1.0 200 Connection established",
            relay.port
        )),
        "{line}"
    );
    assert!(!stdout.contains("tcp connect"), "{stdout}");
    assert!(!stdout.contains("resolve relay"), "{stdout}");
    assert_no_secret("check", &(stdout + &stderr));
    let (_, json, stderr) = flytube_once(&with(check_args, &["--json"]), NO_PROXY_ENV);
    assert!(json.contains("\"step\":\"proxy\""), "{json}");
    assert_no_secret("check --json", &(json + &stderr));

    let (code, stdout, stderr) = flytube_once(
        &with(
            as_command(&relay.args(), "config"),
            &["--proxy", &url, "-R", "1:127.0.0.1:1"],
        ),
        NO_PROXY_ENV,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("# proxy: {shown} (from --proxy)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("# proxy password: MASKED (from the URL)"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("proxy: {shown}\n")), "{stdout}");
    assert_no_secret("config", &(stdout + &stderr));
    assert_no_secret("the run log", &flytube.output());
}

#[test]
fn socks5_through_microsocks_with_an_encoded_password() {
    let relay = Relay::start();
    let proxy = microsocks(Some((USER, SOCKS_PASSWORD)));
    let url = format!(
        "socks5://{USER}:{SOCKS_PASSWORD_ENCODED}@127.0.0.1:{}",
        proxy.port
    );
    let (_echo, source, flytube) = echo_tunnel(&relay, &["--proxy", &url, "-vv"]);
    let data = random_bytes(1 << 20, 12);
    assert!(echo_round_trip(source, &data) == data, "data changed");
    proxy.wait_logged(
        &format!("connected to 127.0.0.1:{}", relay.port),
        Duration::from_secs(5),
    );
    flytube.assert_logged("SOCKS5 succeeded");
    assert_no_secret("the run log", &flytube.output());

    // The password from a file, the URL naming only the user, in a settings file.
    let secret = relay.dir.join("proxy-password");
    std::fs::write(&secret, format!("{SOCKS_PASSWORD}\n")).unwrap();
    let settings = relay.dir.join("proxy.yaml");
    std::fs::write(
        &settings,
        format!(
            "relay:\n  proxy: socks5h://{USER}@127.0.0.1:{}\n  proxy_password_file: {}\n",
            proxy.port,
            secret.display()
        ),
    )
    .unwrap();
    let settings = settings.display().to_string();
    let (_echo, source, from_file) = echo_tunnel(&relay, &["-c", &settings, "-vv"]);
    assert_eq!(echo_round_trip(source, b"file"), b"file");
    from_file.assert_logged("(from relay.proxy in the settings file)");
    assert_no_secret("the run log", &from_file.output());
    let (code, stdout, stderr) = flytube_once(
        &with(
            as_command(&relay.args(), "config"),
            &["-c", &settings, "-R", "1:127.0.0.1:1"],
        ),
        NO_PROXY_ENV,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "# proxy password: MASKED (from file {})",
            secret.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("proxy_password_file: {}", secret.display())),
        "{stdout}"
    );
    assert_no_secret("config", &(stdout + &stderr));
}

/// Arguments naming the relay as `localhost`, with a known_hosts entry for that name only.
fn args_by_name(relay: &Relay) -> Vec<String> {
    let mut args = relay.args();
    let i = args.iter().position(|a| a == "--relay").unwrap();
    args[i + 1] = format!("localhost:{}", relay.port);
    let key = std::fs::read_to_string(relay.host_pub()).unwrap();
    let mut fields = key.split_whitespace();
    let known = relay.dir.join("known_hosts_by_name");
    std::fs::write(
        &known,
        format!(
            "[localhost]:{} {} {}\n",
            relay.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let k = args.iter().position(|a| a == "--known-hosts").unwrap();
    args[k + 1] = known.display().to_string();
    args
}

#[test]
fn socks5h_lets_the_proxy_resolve_the_relay_name() {
    let relay = Relay::start();
    let proxy = microsocks(None);
    let url = format!("socks5h://127.0.0.1:{}", proxy.port);
    let echo = Target::echo();
    let source = free_port();
    let args = with(args_by_name(&relay), &["--proxy", &url]);
    let mut run = args.clone();
    run.extend(forward(source, echo.port));
    let flytube = Flytube::start(&run);
    flytube.wait_for("serving", READY);
    assert_eq!(echo_round_trip(source, b"by name"), b"by name");
    // The proxy got the name; the host key matched the relay's name, not the proxy's.
    proxy.wait_logged(
        &format!("connected to localhost:{}", relay.port),
        Duration::from_secs(5),
    );
    flytube.assert_logged(&format!(
        "opened a tunnel to relay localhost:{}",
        relay.port
    ));

    // socks5:// resolves the name here and sends the address.
    let url = format!("socks5://127.0.0.1:{}", proxy.port);
    let check = with(
        as_command(&args_by_name(&relay), "check"),
        &[
            "--proxy",
            &url,
            "-R",
            &format!("{}:127.0.0.1:1", free_port()),
        ],
    );
    let (code, stdout, _) = flytube_once(&check, NO_PROXY_ENV);
    assert_eq!(code, Some(69), "the target is closed: {stdout}");
    assert!(
        stdout.contains("[ ok ] resolve relay"),
        "socks5:// resolves here: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "SOCKS5 127.0.0.1:{}: SOCKS5 succeeded",
            relay.port
        )),
        "{stdout}"
    );
}

#[test]
fn wrong_or_missing_proxy_password_is_reported_and_retried() {
    let relay = Relay::start();
    let proxy = tinyproxy(Some((USER, TINY_PASSWORD)), &[relay.port]);
    let config = fast_reconnect(&relay);
    let url = tiny_url(&proxy, WRONG_PASSWORD);
    let mut flytube = Flytube::start(&with(
        relay.args(),
        &["-c", &config, "--proxy", &url, "-R", "1:127.0.0.1:1"],
    ));
    flytube.wait_for_n(
        "proxy authentication failed: the proxy rejected the password of user \"flyproxy\"",
        3,
        READY,
    );
    flytube.assert_logged("it offers Basic");
    flytube.assert_logged("retrying in");
    assert!(
        flytube.is_running(),
        "a proxy refusal must not end flytube:\n{}",
        flytube.output()
    );
    assert_no_secret("the run log", &flytube.output());

    // No credentials at all: tinyproxy asks for them with 407.
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let bare = Flytube::start(&with(
        relay.args(),
        &["-c", &config, "--proxy", &url, "-R", "1:127.0.0.1:1"],
    ));
    bare.wait_for_n(
        "407 Proxy Authentication Required; it offers Basic",
        2,
        READY,
    );
    bare.assert_logged("proxy authentication required");

    // check says what to do.
    let (code, stdout, stderr) = flytube_once(
        &with(
            as_command(&relay.args(), "check"),
            &[
                "--proxy",
                &tiny_url(&proxy, WRONG_PASSWORD),
                "-R",
                "1:127.0.0.1:1",
            ],
        ),
        NO_PROXY_ENV,
    );
    assert_eq!(code, Some(69), "{stdout}");
    assert!(stdout.contains("[FAIL] proxy"), "{stdout}");
    assert!(
        stdout.contains("fix: the proxy refused user \"flyproxy\": set the proxy user and password in relay.proxy"),
        "{stdout}"
    );
    assert_no_secret("check", &(stdout + &stderr));
    drop(flytube);
}

#[test]
fn forbidden_port_is_named_with_the_fix_and_retried() {
    let relay = Relay::start();
    // CONNECT only to port 443: the relay's port is forbidden.
    let proxy = tinyproxy(None, &[443]);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let (code, stdout, _) = flytube_once(
        &with(
            as_command(&relay.args(), "check"),
            &["--proxy", &url, "-R", "1:127.0.0.1:1"],
        ),
        NO_PROXY_ENV,
    );
    assert_eq!(code, Some(69), "{stdout}");
    let relay_address = format!("127.0.0.1:{}", relay.port);
    assert!(
        stdout.contains(&format!(
            "the proxy forbids CONNECT to {relay_address} (403 Access violation)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "fix: ask the proxy admins to allow CONNECT to {relay_address}"
        )),
        "{stdout}"
    );
    let config = fast_reconnect(&relay);
    let mut flytube = Flytube::start(&with(
        relay.args(),
        &["-c", &config, "--proxy", &url, "-R", "1:127.0.0.1:1"],
    ));
    flytube.wait_for_n("403 Access violation", 2, READY);
    flytube.assert_logged("retrying in");
    assert!(flytube.is_running());
}

#[test]
fn proxy_down_is_retried_and_the_tunnel_recovers_when_it_comes_back() {
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let config = fast_reconnect(&relay);
    let proxy_port = free_port();
    let url = format!("http://127.0.0.1:{proxy_port}");
    let mut args = with(relay.args(), &["-c", &config, "--proxy", &url]);
    args.extend(forward(source, echo.port));
    let flytube = Flytube::start(&args);
    flytube.wait_for_n("cannot reach the proxy", 2, READY);
    flytube.assert_logged("Connection refused");
    flytube.assert_logged("retrying in");
    let mut proxy = tinyproxy_on(proxy_port, None, &[relay.port]).expect("proxy port taken");
    flytube.wait_for("serving", READY);
    assert_eq!(echo_round_trip(source, b"up"), b"up");

    // The proxy dies under a running tunnel, then returns.
    proxy.stop();
    flytube.wait_for("tunnel down", Duration::from_secs(10));
    flytube.wait_for_n("cannot reach the proxy", 3, READY);
    proxy.restart();
    flytube.wait_for_n("serving", 2, READY);
    assert_eq!(echo_round_trip(source, b"again"), b"again");
}

#[test]
fn https_proxy_is_honoured_and_no_proxy_bypasses_it() {
    let relay = Relay::start();
    let proxy = tinyproxy(None, &[relay.port]);
    let url = &format!("http://127.0.0.1:{}", proxy.port);
    let connect_line = format!("CONNECT 127.0.0.1:{} HTTP/1.1", relay.port);

    let env = env_with(&[("HTTPS_PROXY", url)]);
    let echo = Target::echo();
    let source = free_port();
    let mut args = relay.args();
    args.extend(forward(source, echo.port));
    let flytube = Flytube::start_env(&args, &env);
    flytube.wait_for("serving", READY);
    assert_eq!(echo_round_trip(source, b"via env"), b"via env");
    flytube.assert_logged(&format!("proxy: {url} (from HTTPS_PROXY)"));
    proxy.wait_logged(&connect_line, Duration::from_secs(5));
    drop(flytube);
    let (_, stdout, _) = flytube_once(&as_command(&args, "config"), &env);
    assert!(
        stdout.contains(&format!("# proxy: {url} (from HTTPS_PROXY)")),
        "{stdout}"
    );

    // NO_PROXY: the relay is reached directly, the proxy sees nothing new.
    let tunnels_before = proxy.log().matches(&connect_line).count();
    let env = env_with(&[
        ("HTTPS_PROXY", url),
        ("NO_PROXY", "example.com, 127.0.0.0/8"),
    ]);
    let flytube = Flytube::start_env(&args, &env);
    flytube.wait_for("serving", READY);
    assert_eq!(echo_round_trip(source, b"direct"), b"direct");
    flytube.assert_logged(
        "proxy: none (NO_PROXY entry \"127.0.0.0/8\" matches the relay, so HTTPS_PROXY is not used)",
    );
    assert!(
        !flytube.output().contains("opened a tunnel"),
        "{}",
        flytube.output()
    );
    assert_eq!(proxy.log().matches(&connect_line).count(), tunnels_before);
    let (_, stdout, _) = flytube_once(&as_command(&args, "check"), &env);
    assert!(stdout.contains("[ ok ] tcp connect"), "{stdout}");
    assert!(stdout.contains("proxy none (NO_PROXY entry"), "{stdout}");

    // --proxy none turns the environment off too.
    let (_, stdout, _) = flytube_once(
        &with(as_command(&args, "config"), &["--proxy", "none"]),
        &env_with(&[("ALL_PROXY", url)]),
    );
    assert!(
        stdout.contains("# proxy: none (turned off by --proxy)"),
        "{stdout}"
    );
}

#[test]
fn a_proxy_whose_upstream_goes_silent_is_detected_by_the_probes() {
    // flytube -> tinyproxy -> a path that can black-hole -> sshd. The proxy keeps
    // flytube's side open while nothing comes back.
    let relay = Relay::start_with("ClientAliveInterval 1\nClientAliveCountMax 2\n");
    let path = FaultyProxy::start(relay.port);
    let proxy = tinyproxy(None, &[path.port]);
    let echo = Target::echo();
    let source = free_port();
    let config = fast_reconnect(&relay);
    let mut args = relay.args();
    let i = args.iter().position(|a| a == "--relay").unwrap();
    args[i + 1] = format!("127.0.0.1:{}", path.port);
    // The relay as flytube names it: the faulty path's port (a bare host would vouch for
    // port 22 only).
    let known = relay.dir.join("known_hosts_via");
    let key = std::fs::read_to_string(relay.host_pub()).unwrap();
    std::fs::write(&known, format!("[127.0.0.1]:{} {key}", path.port)).unwrap();
    let k = args.iter().position(|a| a == "--known-hosts").unwrap();
    args[k + 1] = known.display().to_string();
    let url = format!("http://127.0.0.1:{}", proxy.port);
    args = with(
        args,
        &[
            "-c",
            &config,
            "--proxy",
            &url,
            "--keepalive-interval",
            "1",
            "--keepalive-count",
            "3",
        ],
    );
    args.extend(forward(source, echo.port));
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    assert_eq!(echo_round_trip(source, b"before"), b"before");
    path.freeze_existing();
    flytube.wait_for("silent for", Duration::from_secs(10));
    flytube.wait_for_n("serving", 2, Duration::from_secs(30));
    assert_eq!(echo_round_trip(source, b"after"), b"after");
}

#[test]
fn check_names_a_proxy_of_the_wrong_kind_or_none_at_all() {
    let relay = Relay::start();
    let socks = microsocks(None);
    let check = |url: &str| {
        let args = with(
            as_command(&relay.args(), "check"),
            &["--proxy", url, "-R", "1:127.0.0.1:1"],
        );
        let (code, stdout, _) = flytube_once(&args, NO_PROXY_ENV);
        assert_eq!(code, Some(69), "{stdout}");
        assert!(stdout.contains("[FAIL] proxy"), "{stdout}");
        stdout
    };
    // An HTTP client at a SOCKS5 server: its refusal is recognised.
    let out = check(&format!("http://127.0.0.1:{}", socks.port));
    assert!(
        out.contains(r#"does not speak HTTP: it answered "\x05\xff" (a SOCKS5 proxy"#),
        "{out}"
    );
    assert!(
        out.contains("fix: check the proxy's scheme and port"),
        "{out}"
    );
    // SOCKS5 at the relay itself: its SSH banner is named.
    let out = check(&format!("socks5://127.0.0.1:{}", relay.port));
    assert!(
        out.contains("does not speak SOCKS5: it answered \"SSH-2.0-"),
        "{out}"
    );
    assert!(out.contains("an SSH server"), "{out}");
    // Nothing there.
    let port = free_port();
    let out = check(&format!("http://127.0.0.1:{port}"));
    assert!(out.contains("cannot reach the proxy"), "{out}");
    assert!(
        out.contains(&format!(
            "fix: nothing accepts connections at 127.0.0.1:{port}"
        )),
        "{out}"
    );
}
