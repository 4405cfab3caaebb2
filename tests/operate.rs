//! What operators see: readiness, metrics, the status file with `flytube health`, and
//! systemd notifications, against a real sshd that goes down and comes back.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;

const READY: Duration = Duration::from_secs(20);

/// GET through curl: (HTTP status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Polls until `path` answers `status`, or panics after `timeout`.
fn wait_status(port: u16, path: &str, status: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, body) = get(port, path);
        if code == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} stayed {code} (wanted {status}): {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn health(status_file: &str) -> (Option<i32>, String) {
    let out = Command::new(flytube_bin())
        .args(["health", "--status-file", status_file])
        .env_remove("FLYTUBE_STATUS_FILE")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn readiness_metrics_and_health_follow_the_relay() {
    let mut relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let metrics_port = free_port();
    let status = relay.dir.join("status").display().to_string();
    let mut args = relay.args();
    args.extend(forward(source, echo.port));
    args.extend([
        "--metrics-listen".to_string(),
        format!("127.0.0.1:{metrics_port}"),
        "--status-file".to_string(),
        status.clone(),
        "--keepalive-interval".to_string(),
        "1".to_string(),
        "--keepalive-count".to_string(),
        "3".to_string(),
    ]);
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    assert_eq!(get(metrics_port, "/healthz").0, 200);
    wait_status(metrics_port, "/readyz", 200, READY);
    let data = random_bytes(1 << 20, 11);
    assert!(
        echo_round_trip(source, &data) == data,
        "echoed bytes differ"
    );
    flytube.wait_for("closed: forward", Duration::from_secs(5));
    let text = get(metrics_port, "/metrics").1;
    let label = format!("forward=\"127.0.0.1:{source}\"");
    assert_eq!(metric(&text, "flytube_session_up"), Some(1), "{text}");
    // The relay fixture's certificate is valid for 52 weeks.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry = metric(&text, "flytube_certificate_expiry_timestamp_seconds").unwrap_or(0);
    assert!(expiry > now + 300 * 86_400, "{text}");
    assert_eq!(
        metric(
            &text,
            &format!("flytube_bytes_total{{{label},direction=\"to_target\"}}")
        ),
        Some(1 << 20),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("flytube_bytes_total{{{label},direction=\"from_target\"}}")
        ),
        Some(1 << 20),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("flytube_connections_total{{{label},result=\"completed\"}}")
        ),
        Some(1),
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("flytube_connections_active{{{label}}}")),
        Some(0)
    );
    let (code, line) = health(&status);
    assert_eq!(code, Some(0), "{line}");
    assert!(line.contains("1/1 forwards serving"), "{line}");

    // The relay goes away: not ready, and the body says why.
    relay.kill_all();
    let body = wait_status(metrics_port, "/readyz", 503, Duration::from_secs(15));
    assert!(body.contains("no session with the relay"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&status).0 == Some(0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, line) = health(&status);
    assert_eq!(code, Some(1), "{line}");
    assert_eq!(
        get(metrics_port, "/healthz").0,
        200,
        "the process still answers"
    );

    // It comes back by itself.
    relay.restart();
    wait_status(metrics_port, "/readyz", 200, Duration::from_secs(30));
    let text = get(metrics_port, "/metrics").1;
    assert!(
        metric(&text, "flytube_reconnects_total").unwrap_or(0) >= 1,
        "{text}"
    );

    // A dead daemon is unhealthy even though its last status said ready.
    drop(flytube);
    let (code, line) = health(&status);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("not running"), "{line}");
}

#[test]
fn metrics_refuse_a_remote_address_unless_allowed() {
    let relay = Relay::start();
    let mut args = relay.args();
    args[0] = "config".into();
    args.extend(forward(1000, 1000));
    args.extend(["--metrics-listen".to_string(), "0.0.0.0:9466".to_string()]);
    let out = Command::new(flytube_bin()).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("metrics.allow_remote"), "{stderr}");
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let socket_path = relay.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut args = relay.args();
    args.extend(forward(source, echo.port));
    let notify = socket_path.display().to_string();
    let mut flytube = Flytube::start_env(
        &args,
        &[
            ("NOTIFY_SOCKET", notify.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen = Vec::new();
    let mut serving_seen_first = false;
    let deadline = Instant::now() + READY;
    while Instant::now() < deadline
        && !(seen.iter().any(|m: &String| m.contains("READY=1"))
            && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3)
    {
        let mut buf = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).to_string();
            if message.contains("READY=1") {
                // READY=1 means the relay serves the forward: its port must answer now (the
                // log line may still be in the pipe, so the port is the proof).
                serving_seen_first = std::net::TcpStream::connect(("127.0.0.1", source)).is_ok();
            }
            seen.push(message);
        }
    }
    let ready = seen.iter().find(|m| m.contains("READY=1"));
    assert!(ready.is_some(), "no READY=1 in {seen:?}");
    assert!(serving_seen_first, "READY=1 before the forward served");
    assert!(
        ready.unwrap().contains("STATUS=connected to relay") && ready.unwrap().contains("1/1"),
        "{seen:?}"
    );
    assert!(
        seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        "{seen:?}"
    );
    flytube.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stopping = false;
    while !stopping && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buf) {
            stopping = String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
        }
    }
    assert!(stopping, "no STOPPING=1");
    assert_eq!(flytube.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[test]
fn json_log_lines_carry_structured_fields() {
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let mut args = relay.args();
    args.extend(forward(source, echo.port));
    args.extend(["--log-format".to_string(), "json".to_string()]);
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    let data = random_bytes(10_000, 5);
    assert!(echo_round_trip(source, &data) == data);
    flytube.wait_for("closed: forward", Duration::from_secs(5));
    let lines: Vec<serde_json::Value> = flytube
        .output()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let session = lines
        .iter()
        .find(|l| {
            l["msg"]
                .as_str()
                .unwrap_or("")
                .starts_with("connected to relay")
        })
        .expect("session line");
    assert_eq!(session["relay"], format!("127.0.0.1:{}", relay.port));
    assert!(
        session["cipher"].as_str().unwrap().starts_with("aes256"),
        "{session}"
    );
    assert!(
        session["host_key"].as_str().unwrap().starts_with("SHA256:"),
        "{session}"
    );
    let conn = lines
        .iter()
        .find(|l| l["msg"].as_str().unwrap_or("").contains("closed: forward"))
        .expect("connection line");
    assert_eq!(conn["bytes_to_target"], 10_000, "{conn}");
    assert_eq!(conn["bytes_from_target"], 10_000, "{conn}");
    assert_eq!(conn["reason"], "completed", "{conn}");
    assert!(conn["conn"].as_u64().is_some() && conn["duration_s"].as_f64().is_some());
    assert_eq!(conn["target"], format!("127.0.0.1:{}", echo.port), "{conn}");
    assert!(
        conn["forward"]
            .as_str()
            .unwrap()
            .contains(&source.to_string())
    );
}

#[test]
fn journal_lines_carry_priorities_and_no_timestamp() {
    let relay = Relay::start();
    let mut args: Vec<String> = relay.args();
    args.extend(forward(free_port(), 9));
    // Unreachable relay user key: an error line (priority 3) then exit 77.
    let script = format!(
        "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec {} {} --user nobody-here",
        flytube_bin(),
        args.join(" ")
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("<6>INFO")), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("<3>ERROR") && l.contains("authentication")),
        "{stderr}"
    );
    // Without JOURNAL_STREAM the lines start with a timestamp.
    let plain = Command::new(flytube_bin())
        .args(&args)
        .args(["--user", "nobody-here"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.lines().all(|l| !l.starts_with('<')), "{stderr}");
}

/// Relay arguments for `run` without forwards, plus `-c FILE`.
fn run_with_file(relay: &Relay, file: &std::path::Path) -> Vec<String> {
    let mut args = relay.args();
    args.extend(["-c".to_string(), file.display().to_string()]);
    args
}

fn forwards_yaml(forwards: &[(u16, u16)]) -> String {
    let mut text = String::from("forwards:\n");
    for (source, target) in forwards {
        text.push_str(&format!(
            "  - bind: 127.0.0.1\n    source_port: {source}\n    target_host: 127.0.0.1\n    target_port: {target}\n"
        ));
    }
    text
}

#[test]
fn sighup_adds_and_removes_forwards_and_survives_a_broken_file() {
    let relay = Relay::start();
    let echo = Target::echo();
    let (first, second) = (free_port(), free_port());
    let file = relay.dir.join("flytube.yaml");
    std::fs::write(&file, forwards_yaml(&[(first, echo.port)])).unwrap();
    let mut flytube = Flytube::start(&run_with_file(&relay, &file));
    flytube.wait_for("serving", READY);
    // A broken file: logged, nothing changes, still serving.
    std::fs::write(&file, "forwards: [\n").unwrap();
    flytube.signal("HUP");
    flytube.wait_for(
        "reload refused, keeping the running settings",
        Duration::from_secs(5),
    );
    let data = random_bytes(4096, 1);
    assert!(echo_round_trip(first, &data) == data);
    // A second forward added and the first removed, on the same session.
    std::fs::write(&file, forwards_yaml(&[(second, echo.port)])).unwrap();
    flytube.signal("HUP");
    flytube.wait_for_n("serving", 2, Duration::from_secs(10));
    assert!(echo_round_trip(second, &data) == data);
    flytube.assert_logged(&format!(
        "forward 127.0.0.1:{first} -> 127.0.0.1:{} removed",
        echo.port
    ));
    assert_eq!(
        flytube.count("connected to relay"),
        1,
        "no new session for forwards"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", first)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the relay still listens on the removed forward"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(flytube.is_running(), "SIGHUP must not stop flytube");
}

#[test]
fn sigterm_does_not_wait_for_idle_connections_and_a_second_one_cuts_the_drain() {
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let mut args = relay.args();
    args.extend(forward(source, echo.port));
    let mut flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    // An idle open connection: the drain limit is 10 s, the stop must not take it.
    let idle = connect(source);
    let mut buf = [0u8; 4];
    use std::io::{Read, Write};
    (&idle).write_all(b"ping").unwrap();
    (&idle).read_exact(&mut buf).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    flytube.signal("TERM");
    assert_eq!(flytube.wait_exit(Duration::from_secs(8)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    flytube.assert_logged("idle when flytube stopped");

    // A busy connection holds the drain; a second signal ends it at once.
    let mut flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    let busy = connect(source);
    let writer = std::thread::spawn(move || {
        let chunk = vec![7u8; 16 * 1024];
        let deadline = Instant::now() + Duration::from_secs(20);
        // Keep bytes moving (the echo sends them back; nobody reads them, so the
        // connection stays busy until the windows fill, then stays not-idle).
        while Instant::now() < deadline && (&busy).write_all(&chunk).is_ok() {}
    });
    std::thread::sleep(Duration::from_millis(300));
    flytube.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    flytube.signal("TERM");
    assert_eq!(flytube.wait_exit(Duration::from_secs(8)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    flytube.assert_logged("stopping now (second signal)");
    drop(writer);
}

#[test]
fn a_standby_warns_once_then_counts_quietly() {
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let mut args = relay.args();
    args.extend(forward(source, echo.port));
    let active = Flytube::start(&args);
    active.wait_for("serving", READY);
    let file = relay.dir.join("standby.yaml");
    std::fs::write(
        &file,
        "reconnect:\n  initial_delay_ms: 100\n  standby_retry_secs: 1\n",
    )
    .unwrap();
    let mut standby_args = args.clone();
    standby_args.extend(["-c".to_string(), file.display().to_string()]);
    let standby = Flytube::start(&standby_args);
    standby.wait_for_n("refused forward", 4, Duration::from_secs(15));
    let out = standby.output();
    let warnings = out
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("refused forward"))
        .count();
    assert_eq!(warnings, 1, "{out}");
    assert!(out.contains("times in a row"), "{out}");
    // The active one goes away: the standby takes over within its retry cap.
    drop(active);
    standby.wait_for_n("serving", 1, Duration::from_secs(10));
}

#[test]
fn byte_counters_move_while_a_connection_is_open() {
    use std::io::{Read, Write};
    let relay = Relay::start();
    let echo = Target::echo();
    let source = free_port();
    let metrics_port = free_port();
    let mut args = relay.args();
    args.extend(forward(source, echo.port));
    args.extend([
        "--metrics-listen".to_string(),
        format!("127.0.0.1:{metrics_port}"),
    ]);
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    let mut c = connect(source);
    let data = random_bytes(100_000, 4);
    c.write_all(&data).unwrap();
    let mut back = vec![0u8; data.len()];
    c.read_exact(&mut back).unwrap();
    let series =
        format!("flytube_bytes_total{{forward=\"127.0.0.1:{source}\",direction=\"to_target\"}}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = get(metrics_port, "/metrics").1;
        if metric(&text, &series) == Some(100_000) {
            assert_eq!(
                metric(
                    &text,
                    &format!("flytube_connections_active{{forward=\"127.0.0.1:{source}\"}}")
                ),
                Some(1)
            );
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);
}

/// flytube serving one forward to `target` with the settings file `settings` and metrics
/// on a port of their own; returns it, the forward's relay port and the metrics port.
fn serving_with_metrics(relay: &Relay, target: u16, settings: &str) -> (Flytube, u16, u16) {
    let source = free_port();
    let metrics_port = free_port();
    let config = relay.write(&format!("settings-{metrics_port}.yaml"), settings);
    let mut args = relay.args();
    args.extend(forward(source, target));
    args.extend([
        "-c".to_string(),
        config,
        "--metrics-listen".to_string(),
        format!("127.0.0.1:{metrics_port}"),
    ]);
    let flytube = Flytube::start(&args);
    flytube.wait_for("serving", READY);
    (flytube, source, metrics_port)
}

/// Small round trips through a tunnel whose settings file is `settings`; returns the
/// busy-poll counters (answered, ran out) from the metrics.
fn busy_polls_after_round_trips(relay: &Relay, settings: &str, round_trips: usize) -> (u64, u64) {
    let echo = Target::echo();
    let (flytube, source, metrics_port) = serving_with_metrics(relay, echo.port, settings);
    let mut client = connect(source);
    client.set_nodelay(true).unwrap();
    let mut answer = [0u8; 64];
    for i in 0..round_trips {
        let message = [i as u8; 64];
        client.write_all(&message).unwrap();
        client.read_exact(&mut answer).unwrap();
        assert_eq!(answer, message, "round trip {i} came back different");
    }
    drop(client);
    flytube.wait_for("closed: forward", Duration::from_secs(5));
    let text = get(metrics_port, "/metrics").1;
    let count = |outcome: &str| {
        let series = format!("flytube_busy_polls_total{{outcome=\"{outcome}\"}}");
        metric(&text, &series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    (count("answered"), count("ran_out"))
}

#[test]
fn busy_polling_waits_for_a_fast_target_and_can_be_turned_off() {
    let relay = Relay::start();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (answered, ran_out) =
        busy_polls_after_round_trips(&relay, "limits:\n  busy_poll_us: 1000\n", 300);
    if cpus >= 2 {
        // The echo target answers within microseconds: most round trips find the answer
        // while polling (a loaded machine may make some run out).
        assert!(
            answered >= 30,
            "{answered} answered, {ran_out} ran out, of 300 round trips"
        );
    } else {
        assert_eq!((answered, ran_out), (0, 0), "busy polling with {cpus} CPU");
    }
    eprintln!("busy_poll_us 1000, {cpus} CPUs: {answered} answered, {ran_out} ran out");
    let off = busy_polls_after_round_trips(&relay, "limits:\n  busy_poll_us: 0\n", 300);
    assert_eq!(off, (0, 0), "busy_poll_us: 0 must always sleep");
}

/// A target whose connections read nothing until `open` is set, then read to the end;
/// each sends (length, FNV-1a hash) of what it read. Accepted sockets have a small
/// receive buffer, so what the target's kernel takes in is small beside the test's data.
fn gated_sink(open: Arc<AtomicBool>) -> (u16, Receiver<(usize, u64)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&listener)
        .set_recv_buffer_size(16 * 1024)
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (open, tx) = (open.clone(), tx.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !open.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let mut stream = stream;
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let (mut len, mut hash) = (0usize, 0xcbf2_9ce4_8422_2325u64);
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    len += n;
                    hash = buf[..n].iter().fold(hash, |h, &b| {
                        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                    });
                }
                let _ = tx.send((len, hash));
            });
        }
    });
    (port, rx)
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The platform (or a relay) sends to targets that read nothing: each connection may hold
/// its 2 MiB window and its writer's queue, and 16 of them grew flytube by 43 MiB with the
/// bound out of the way (`max_queued_mib` at its largest). With `limits.max_queued_mib: 4`
/// flytube stops reading the relay at 4 MiB (4.5-6.3 MiB of growth measured: the bound
/// counts data, not the heap it passed through), says so in its log and metrics, and
/// when the targets read again every byte arrives intact and the session is the same one.
#[test]
fn relay_data_for_targets_that_do_not_read_stays_under_max_queued_mib() {
    const CLIENTS: u64 = 16;
    const EACH: usize = 6 * 1024 * 1024;
    const GROWTH_LIMIT_KIB: u64 = 16 * 1024;
    let relay = Relay::start();
    let open = Arc::new(AtomicBool::new(false));
    let (target, results) = gated_sink(open.clone());
    let (flytube, source, metrics_port) =
        serving_with_metrics(&relay, target, "limits:\n  max_queued_mib: 4\n");
    let before = status_kib(flytube.pid(), "VmRSS");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            std::thread::spawn(move || {
                let data = random_bytes(EACH, seed);
                let mut stream = connect(source);
                stream
                    .set_write_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                stream.write_all(&data).unwrap();
                stream.shutdown(std::net::Shutdown::Write).unwrap();
                (data.len(), fnv1a(&data))
            })
        })
        .collect();
    let held = |text: &str| metric(text, "flytube_relay_input_held");
    let deadline = Instant::now() + Duration::from_secs(20);
    while held(&get(metrics_port, "/metrics").1) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "relay input not held within 20 s; log:\n{}",
            flytube.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Held: whatever the relay still sends waits in its socket, not in flytube.
    std::thread::sleep(Duration::from_secs(1));
    let during = status_kib(flytube.pid(), "VmRSS");
    eprintln!(
        "flytube RSS {:.1} MiB before, {:.1} MiB while the targets read nothing",
        before as f64 / 1024.0,
        during as f64 / 1024.0
    );
    assert!(
        during < before + GROWTH_LIMIT_KIB,
        "flytube grew from {before} to {during} KiB with max_queued_mib 4"
    );
    flytube.assert_logged("holding the relay's input");
    open.store(true, Ordering::SeqCst);
    let mut sent: Vec<(usize, u64)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let mut arrived: Vec<(usize, u64)> = (0..CLIENTS)
        .map(|_| results.recv_timeout(Duration::from_secs(60)).unwrap())
        .collect();
    sent.sort_unstable();
    arrived.sort_unstable();
    assert_eq!(arrived, sent, "every connection's bytes, intact");
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = get(metrics_port, "/metrics").1;
        if held(&text) == Some(0) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        held(&text),
        Some(0),
        "still held after the targets read:\n{text}"
    );
    assert!(
        metric(&text, "flytube_relay_input_holds_total") >= Some(1),
        "{text}"
    );
    assert_eq!(flytube.count("tunnel down"), 0, "{}", flytube.output());
}
