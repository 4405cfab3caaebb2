//! `flytube check`: walks the path the tunnel takes, one step at a time, timing each and
//! stopping at the first broken one with a one-line fix.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::cert::{self, Certificate, Severity};
use crate::error::{EXIT_CONFIG, EXIT_NOPERM, EXIT_UNAVAILABLE, Error};
use crate::forward::join_host_port;
use crate::hostkey;
use crate::logging::json_string;
use crate::relay;
use crate::settings::Settings;

/// The verdict of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Passed.
    Ok,
    /// Passed, but something needs attention soon.
    Warn,
    /// Broken.
    Fail,
}

impl Mark {
    fn word(self) -> &'static str {
        match self {
            Mark::Ok => "ok",
            Mark::Warn => "warn",
            Mark::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Step {
    /// Short machine name (`resolve`, `tcp`, ...).
    pub name: String,
    /// Verdict.
    pub mark: Mark,
    /// How long the step took.
    pub elapsed: Duration,
    /// What was seen.
    pub detail: String,
    /// What to do, when broken or warned.
    pub fix: Option<String>,
}

struct Report {
    json: bool,
    failed_code: Option<i32>,
    warnings: usize,
    passed: usize,
}

impl Report {
    fn emit(&mut self, step: Step) {
        match step.mark {
            Mark::Ok => self.passed += 1,
            Mark::Warn => {
                self.passed += 1;
                self.warnings += 1;
            }
            Mark::Fail => {}
        }
        let mut out = io::stdout().lock();
        if self.json {
            let fix = step.fix.as_deref().map_or("null".to_string(), json_string);
            let _ = writeln!(
                out,
                "{{\"step\":{},\"status\":\"{}\",\"ms\":{:.1},\"detail\":{},\"fix\":{fix}}}",
                json_string(&step.name),
                step.mark.word(),
                step.elapsed.as_secs_f64() * 1000.0,
                json_string(&step.detail)
            );
        } else {
            let mark = match step.mark {
                Mark::Ok => "[ ok ]",
                Mark::Warn => "[warn]",
                Mark::Fail => "[FAIL]",
            };
            let _ = writeln!(
                out,
                "{mark} {:<22} {:>8.1} ms  {}",
                step.name,
                step.elapsed.as_secs_f64() * 1000.0,
                step.detail
            );
            if let Some(fix) = &step.fix {
                let _ = writeln!(out, "       fix: {fix}");
            }
        }
        let _ = out.flush();
    }

    fn fail(&mut self, code: i32, step: Step) -> i32 {
        self.emit(step);
        self.failed_code = Some(code);
        self.summary()
    }

    fn summary(&mut self) -> i32 {
        let code = self.failed_code.unwrap_or(0);
        let text = match self.failed_code {
            None if self.warnings > 0 => format!(
                "all {} steps passed, {} with a warning",
                self.passed, self.warnings
            ),
            None => format!("all {} steps passed", self.passed),
            Some(_) => format!(
                "{} steps passed, then one failed (exit {code})",
                self.passed
            ),
        };
        let mut out = io::stdout().lock();
        if self.json {
            let _ = writeln!(
                out,
                "{{\"summary\":{},\"status\":\"{}\",\"exit\":{code}}}",
                json_string(&text),
                if code == 0 { "ok" } else { "fail" }
            );
        } else {
            let _ = writeln!(out, "{text}");
        }
        code
    }
}

fn step(name: impl Into<String>, mark: Mark, started: Instant, detail: impl Into<String>) -> Step {
    Step {
        name: name.into(),
        mark,
        elapsed: started.elapsed(),
        detail: detail.into(),
        fix: None,
    }
}

fn with_fix(mut s: Step, fix: impl Into<String>) -> Step {
    s.fix = Some(fix.into());
    s
}

/// Reports settings that failed validation as the first (failed) step.
pub fn report_invalid_settings(error: &Error, json: bool) -> i32 {
    let mut report = Report {
        json,
        failed_code: None,
        warnings: 0,
        passed: 0,
    };
    let s = step("settings", Mark::Fail, Instant::now(), error.to_string());
    report.fail(
        EXIT_CONFIG,
        with_fix(
            s,
            "correct the value named above; `man flytube` lists what is allowed",
        ),
    )
}

/// Runs every step and returns the exit code.
pub fn run(settings: &Settings, json: bool) -> i32 {
    let mut r = Report {
        json,
        failed_code: None,
        warnings: 0,
        passed: 0,
    };
    let relay_name = settings.relay();

    let t = Instant::now();
    let source = settings
        .config_path
        .as_ref()
        .map_or("command line and environment".to_string(), |p| {
            format!("file {} + environment + command line", p.display())
        });
    r.emit(step(
        "settings",
        Mark::Ok,
        t,
        format!("{source}; {} forward(s)", settings.forwards.len()),
    ));

    // Relay name.
    let t = Instant::now();
    let addrs = match relay::resolve(settings) {
        Ok(addrs) => addrs,
        Err(e) => {
            let s = step("resolve relay", Mark::Fail, t, e.to_string());
            return r.fail(
                EXIT_UNAVAILABLE,
                with_fix(
                    s,
                    format!(
                        "this machine cannot resolve {:?}: check its DNS settings \
                         (/etc/resolv.conf), or give the relay's address with --relay",
                        settings.relay_host
                    ),
                ),
            );
        }
    };
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    r.emit(step(
        "resolve relay",
        Mark::Ok,
        t,
        format!("{} -> {}", settings.relay_host, list.join(", ")),
    ));

    // TCP.
    let t = Instant::now();
    let stream = match dial_any(&addrs, settings.connect_timeout) {
        Ok((stream, addr)) => {
            r.emit(step(
                "tcp connect",
                Mark::Ok,
                t,
                format!("connected to {addr}"),
            ));
            stream
        }
        Err((detail, kind)) => {
            let fix = match kind {
                io::ErrorKind::TimedOut => format!(
                    "no answer within {}s: allow outbound TCP from this machine to {} port {} \
                     in the firewall",
                    settings.connect_timeout.as_secs(),
                    list.join(", "),
                    settings.relay_port
                ),
                io::ErrorKind::ConnectionRefused => format!(
                    "refused: nothing listens on port {} there, or a firewall rejects it; \
                     check --relay and the outbound firewall rule",
                    settings.relay_port
                ),
                _ => "check the network path to the relay (routes, proxy-only networks)".into(),
            };
            let s = step("tcp connect", Mark::Fail, t, detail);
            return r.fail(EXIT_UNAVAILABLE, with_fix(s, fix));
        }
    };

    // Handshake.
    let t = Instant::now();
    let scratch = match ssh2::Session::new() {
        Ok(s) => s,
        Err(e) => {
            let s = step("ssh handshake", Mark::Fail, t, e.to_string());
            return r.fail(EXIT_UNAVAILABLE, s);
        }
    };
    let known = match relay::known_entries(&scratch, settings) {
        Ok(k) => k,
        Err(e) => {
            let s = step("ssh handshake", Mark::Fail, t, e.to_string());
            return r.fail(EXIT_CONFIG, s);
        }
    };
    let (session, negotiated) = match relay::handshake(stream, settings, known.as_ref()) {
        Ok(done) => done,
        Err(e) => {
            let s = step("ssh handshake", Mark::Fail, t, e.to_string());
            return r.fail(
                EXIT_UNAVAILABLE,
                with_fix(
                    s,
                    format!(
                        "make sure {relay_name} is the relay's SSH port and that it allows one of \
                         the ciphers {}",
                        settings.ciphers.join(", ")
                    ),
                ),
            );
        }
    };
    r.emit(step(
        "ssh handshake",
        Mark::Ok,
        t,
        format!(
            "{}; kex {}, cipher {}",
            negotiated.banner, negotiated.kex, negotiated.cipher
        ),
    ));

    // Host key.
    let t = Instant::now();
    let presented = &negotiated.host_key;
    let fp = presented.fingerprint();
    if settings.host_key.known_hosts.is_none() && settings.host_key.fingerprint.is_none() {
        let s = step(
            "host key",
            Mark::Fail,
            t,
            format!(
                "relay presents {} {fp}; nothing is configured to trust",
                presented.key_type
            ),
        );
        return r.fail(
            EXIT_NOPERM,
            with_fix(
                s,
                format!(
                    "check this fingerprint with the relay's operator, then pin it with \
                     --host-key-fingerprint {fp} or add this line to a known_hosts file: {}",
                    presented.known_hosts_line(&settings.relay_host, settings.relay_port)
                ),
            ),
        );
    }
    if let Err(detail) = hostkey::verify(
        presented,
        &settings.host_key,
        known.as_ref(),
        &settings.relay_host,
        settings.relay_port,
    ) {
        let s = step("host key", Mark::Fail, t, detail);
        return r.fail(
            EXIT_NOPERM,
            with_fix(
                s,
                "never connect through an unverified relay: confirm the new fingerprint with the \
                 relay's operator before changing the pin or known_hosts",
            ),
        );
    }
    r.emit(step(
        "host key",
        Mark::Ok,
        t,
        format!("{} {fp} matches", presented.key_type),
    ));

    // Authentication.
    let t = Instant::now();
    let (mark, detail, fix) = describe_credentials(settings);
    if mark == Mark::Fail {
        let s = step("authentication", Mark::Fail, t, detail);
        return r.fail(EXIT_NOPERM, with_fix(s, fix.unwrap_or_default()));
    }
    if let Err(e) = relay::authenticate(&session, settings) {
        let s = step(
            "authentication",
            Mark::Fail,
            t,
            format!("{e}; offered {detail}"),
        );
        return r.fail(
            EXIT_NOPERM,
            with_fix(
                s,
                "ask the relay's operator to trust this key (or the certificate's CA) for this \
                 user; the relay's log says why it refused",
            ),
        );
    }
    let mut s = step(
        "authentication",
        mark,
        t,
        format!("accepted as {}: {detail}", settings.user),
    );
    s.fix = fix;
    r.emit(s);

    // Forwards: each requested, then cancelled.
    session.set_timeout(relay::duration_ms(settings.handshake_timeout));
    for spec in &settings.forwards {
        let t = Instant::now();
        let name = format!(
            "forward {}",
            join_host_port(spec.bind_address(), spec.source_port)
        );
        match session.channel_forward_listen(spec.source_port, Some(spec.bind_address()), None) {
            Ok((listener, _)) => {
                drop(listener);
                r.emit(step(
                    name,
                    Mark::Ok,
                    t,
                    format!("{spec}: granted, then cancelled"),
                ));
            }
            Err(e) => {
                let s = step(name, Mark::Fail, t, format!("{spec}: {}", e.message()));
                let fix = if e.code() == ssh2::ErrorCode::Session(-32) {
                    format!(
                        "the relay refused port {}: it is in use (a running flytube with this \
                         forward holds it, which is expected) or not permitted for user {} \
                         (PermitListen, AllowTcpForwarding on the relay)",
                        spec.source_port, settings.user
                    )
                } else {
                    "the session broke while requesting the forward; run check again".into()
                };
                return r.fail(EXIT_UNAVAILABLE, with_fix(s, fix));
            }
        }
    }
    let _ = session.disconnect(None, "flytube check done", None);

    // Targets, dialed from here as the tunnel would.
    for spec in &settings.forwards {
        let t = Instant::now();
        let name = format!("target {}", spec.target());
        let addrs: Vec<SocketAddr> =
            match (spec.target_host.as_str(), spec.target_port).to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(e) => {
                    let s = step(
                        name,
                        Mark::Fail,
                        t,
                        format!("cannot resolve {:?}: {e}", spec.target_host),
                    );
                    return r.fail(
                        EXIT_UNAVAILABLE,
                        with_fix(
                            s,
                            "check the target name and this machine's DNS for internal names",
                        ),
                    );
                }
            };
        match dial_any(&addrs, settings.target_connect_timeout) {
            Ok((_, addr)) => r.emit(step(name, Mark::Ok, t, format!("reachable at {addr}"))),
            Err((detail, _)) => {
                let s = step(name, Mark::Fail, t, detail);
                return r.fail(
                    EXIT_UNAVAILABLE,
                    with_fix(
                        s,
                        format!(
                            "start the service at {} or fix TARGET_HOST/TARGET_PORT; this machine \
                             must be allowed to reach it",
                            spec.target()
                        ),
                    ),
                );
            }
        }
    }
    r.summary()
}

/// Tries each address; the error carries every failure and the kind of the last one.
fn dial_any(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), (String, io::ErrorKind)> {
    let mut failures = Vec::new();
    let mut kind = io::ErrorKind::Other;
    for addr in addrs {
        match relay::dial(*addr, timeout) {
            Ok(stream) => return Ok((stream, *addr)),
            Err(e) => {
                kind = e.kind();
                failures.push(format!("{addr}: {e}"));
            }
        }
    }
    Err((failures.join("; "), kind))
}

/// What we offer: the key type, and for a certificate its principals, serial and validity.
fn describe_credentials(settings: &Settings) -> (Mark, String, Option<String>) {
    let Some(path) = &settings.certificate else {
        let pub_path = format!("{}.pub", settings.identity.display());
        let key_type = std::fs::read_to_string(&pub_path)
            .ok()
            .and_then(|t| cert::public_key_type(&t).ok())
            .unwrap_or_else(|| "key".into());
        return (
            Mark::Ok,
            format!(
                "{key_type} {} (no certificate)",
                settings.identity.display()
            ),
            None,
        );
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return (
                Mark::Fail,
                format!("cannot read certificate {}: {e}", path.display()),
                Some("fix the certificate path or its permissions".into()),
            );
        }
    };
    let cert = match Certificate::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            return (
                Mark::Fail,
                format!("certificate {}: {e}", path.display()),
                Some(
                    "give an OpenSSH certificate (ssh-keygen -s CA ... writes KEY-cert.pub)".into(),
                ),
            );
        }
    };
    let principals = if cert.principals.is_empty() {
        "any principal".to_string()
    } else {
        format!("principals {}", cert.principals.join(","))
    };
    let detail = format!(
        "{} {} (id {:?}, serial {}, {principals}, valid {})",
        cert.cert_type,
        path.display(),
        cert.key_id,
        cert.serial,
        cert.window()
    );
    if !cert.principals.is_empty() && !cert.principals.contains(&settings.user) {
        return (
            Mark::Fail,
            detail,
            Some(format!(
                "the certificate is not valid for user {:?}: have it re-signed with -n {}",
                settings.user, settings.user
            )),
        );
    }
    match cert.notice() {
        None => (Mark::Ok, detail, None),
        Some(n) if n.severity == Severity::Warn => (Mark::Warn, detail, Some(n.advice)),
        Some(n) => (Mark::Fail, format!("{detail}: {}", n.state), Some(n.advice)),
    }
}
