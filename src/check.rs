//! `flytube check`: walks the path the tunnel takes, one step at a time, timing each and
//! stopping at the first broken one with a one-line fix.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::cert::{self, Certificate, Severity};
use crate::error::{EXIT_CONFIG, EXIT_NOPERM, EXIT_UNAVAILABLE, Error};
use crate::forward::{ForwardSpec, Via, join_host_port};
use crate::hostkey::{self, KnownEntries};
use crate::libssh2;
use crate::logging::json_string;
use crate::net;
use crate::proxy::{Destination, ProxyChoice, ProxyError, ProxyUrl};
use crate::relay::{self, Negotiated};
use crate::settings::STRONG_CIPHERS;
use crate::settings::Settings;
use crate::text::escape_untrusted;

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

/// A broken step: its line (with the fix) and the exit code it gives `check`.
struct Failure {
    step: Step,
    code: i32,
}

/// What a step hands on to the next ones, with its own line; or why the walk stops.
type Outcome<T> = Result<(T, Step), Failure>;

fn passed<T>(value: T, step: Step) -> Outcome<T> {
    Ok((value, step))
}

fn failed(step: Step, code: i32, fix: impl Into<String>) -> Failure {
    Failure {
        step: with_fix(step, fix),
        code,
    }
}

struct Report {
    json: bool,
    failed_code: Option<i32>,
    warnings: usize,
    passed: usize,
}

impl Report {
    fn new(json: bool) -> Report {
        Report {
            json,
            failed_code: None,
            warnings: 0,
            passed: 0,
        }
    }

    /// Prints a passed step's line and hands its value on.
    fn pass<T>(&mut self, outcome: Outcome<T>) -> Result<T, Failure> {
        let (value, step) = outcome?;
        self.emit(step);
        Ok(value)
    }

    fn emit(&mut self, mut step: Step) {
        // Details quote the relay (banner, messages) and certificates: never raw.
        step.detail = escape_untrusted(&step.detail).into_owned();
        step.fix = step.fix.map(|f| escape_untrusted(&f).into_owned());
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

    fn fail(&mut self, failure: Failure) -> i32 {
        self.emit(failure.step);
        self.failed_code = Some(failure.code);
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
    let s = step("settings", Mark::Fail, Instant::now(), error.to_string());
    Report::new(json).fail(failed(
        s,
        EXIT_CONFIG,
        "correct the value named above; `man flytube` lists what is allowed",
    ))
}

/// Runs every step and returns the exit code.
pub fn run(settings: &Settings, json: bool) -> i32 {
    let mut report = Report::new(json);
    match walk(settings, &mut report) {
        Ok(()) => report.summary(),
        Err(failure) => report.fail(failure),
    }
}

/// The path the tunnel takes, in order; the first failure ends the walk.
fn walk(settings: &Settings, report: &mut Report) -> Result<(), Failure> {
    report.pass(settings_step(settings))?;
    let relay = &settings.relay;
    let stream = match relay.proxy.proxy() {
        None => {
            let addrs = report.pass(resolve_step(settings))?;
            report.pass(tcp_step(settings, &addrs))?
        }
        Some(proxy) => {
            // Only socks5:// resolves the relay's name here; the others leave it to the proxy.
            let resolved = if proxy.resolves_locally() && relay.host.parse::<IpAddr>().is_err() {
                report.pass(resolve_step(settings))?
            } else {
                Vec::new()
            };
            let destinations = Destination::for_relay(proxy, &relay.host, relay.port, &resolved);
            report.pass(proxy_step(settings, proxy, &destinations))?
        }
    };
    let (session, negotiated, known) = report.pass(handshake_step(settings, stream))?;
    report.pass(host_key_step(settings, &negotiated, known.as_ref()))?;
    report.pass(auth_step(settings, &session))?;
    session.set_timeout(libssh2::duration_ms(settings.relay.handshake_timeout));
    for spec in &settings.forwards {
        report.pass(forward_step(settings, &session, spec))?;
    }
    for spec in settings.forwards.iter().filter(|f| f.via == Via::Relay) {
        report.pass(relay_target_step(&session, spec))?;
    }
    let _ = session.disconnect(None, "flytube check done", None);
    for spec in settings.forwards.iter().filter(|f| f.via == Via::Direct) {
        report.pass(target_step(settings, spec))?;
    }
    Ok(())
}

fn settings_step(settings: &Settings) -> Outcome<()> {
    let t = Instant::now();
    let source = settings
        .config_path
        .as_ref()
        .map_or("command line and environment".to_string(), |p| {
            format!("file {} + environment + command line", p.display())
        });
    let mut detail = format!("{source}; {} forward(s)", settings.forwards.len());
    if settings.relay.proxy != ProxyChoice::Direct {
        detail.push_str(&format!("; proxy {}", settings.relay.proxy));
    }
    if settings.notes.is_empty() {
        return passed((), step("settings", Mark::Ok, t, detail));
    }
    let s = step("settings", Mark::Warn, t, detail);
    passed((), with_fix(s, settings.notes.join("; ")))
}

fn resolve_step(settings: &Settings) -> Outcome<Vec<SocketAddr>> {
    let t = Instant::now();
    let name = "resolve relay";
    let addrs = relay::resolve(settings).map_err(|e| {
        failed(
            step(name, Mark::Fail, t, e.to_string()),
            EXIT_UNAVAILABLE,
            format!(
                "this machine cannot resolve {:?}: check its DNS settings (/etc/resolv.conf), \
                 or give the relay's address with --relay",
                settings.relay.host
            ),
        )
    })?;
    let detail = format!("{} -> {}", settings.relay.host, ip_list(&addrs));
    passed(addrs, step(name, Mark::Ok, t, detail))
}

fn tcp_step(settings: &Settings, addrs: &[SocketAddr]) -> Outcome<TcpStream> {
    let t = Instant::now();
    let name = "tcp connect";
    let dialed = relay::connect_tcp(settings, addrs).map_err(|e| {
        let kind = match &e {
            Error::Connect { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        let relay = &settings.relay;
        let fix = match kind {
            io::ErrorKind::TimedOut => format!(
                "no answer within {}s: allow outbound TCP from this machine to {} port {} in \
                 the firewall",
                relay.connect_timeout.as_secs(),
                ip_list(addrs),
                relay.port
            ),
            io::ErrorKind::ConnectionRefused => format!(
                "refused: nothing listens on port {} there, or a firewall rejects it; check \
                 --relay and the outbound firewall rule",
                relay.port
            ),
            _ => "check the network path to the relay (routes, proxy-only networks)".into(),
        };
        failed(
            step(name, Mark::Fail, t, e.to_string()),
            EXIT_UNAVAILABLE,
            fix,
        )
    })?;
    let detail = format!("connected to {}", dialed.addr);
    passed(dialed.stream, step(name, Mark::Ok, t, detail))
}

/// The way to the relay through the proxy: its name resolves, TCP reaches it, and it opens
/// a tunnel to the relay (CONNECT or SOCKS5), each timed.
fn proxy_step(
    settings: &Settings,
    proxy: &ProxyUrl,
    destinations: &[Destination],
) -> Outcome<TcpStream> {
    let t = Instant::now();
    let name = "proxy";
    let relay = &settings.relay;
    let why = relay.proxy.why();
    let fail = |detail: String, fix: String| {
        failed(
            step(name, Mark::Fail, t, format!("{proxy} ({why}){detail}")),
            EXIT_UNAVAILABLE,
            fix,
        )
    };
    let addrs = net::resolve(&proxy.host, proxy.port).map_err(|e| {
        fail(
            format!(": {e}"),
            format!(
                "this machine cannot resolve the proxy {:?}: check its DNS settings, or the \
                 proxy setting ({why})",
                proxy.host
            ),
        )
    })?;
    let resolved_ms = ms(t.elapsed());
    let handshake = proxy.scheme.handshake_name();
    let tunnel = relay::open_tunnel(settings, proxy, &addrs, destinations).map_err(|e| {
        if let ProxyError::Dial(dial) = &e {
            return fail(format!(": {e}"), proxy_dial_fix(dial, settings, proxy));
        }
        let target = match destinations {
            [one] => one.to_string(),
            _ => relay.address(),
        };
        fail(
            format!(": {handshake} {target}: {e}"),
            proxy_fix(&e, settings, proxy),
        )
    })?;
    let detail = format!(
        "{proxy} ({why}) at {}: resolved in {resolved_ms} ms, TCP {} ms, {handshake} {}: {} \
         in {} ms",
        tunnel.dialed.addr,
        ms(tunnel.connected),
        tunnel.destination,
        tunnel.opened.answer,
        ms(tunnel.opened.elapsed)
    );
    passed(tunnel.dialed.stream, step(name, Mark::Ok, t, detail))
}

/// Milliseconds with one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// What to do about a proxy that TCP cannot reach.
fn proxy_dial_fix(error: &net::DialError, settings: &Settings, proxy: &ProxyUrl) -> String {
    let why = settings.relay.proxy.why();
    match error.kind() {
        io::ErrorKind::TimedOut => format!(
            "no answer from the proxy within {}s: check its address and port ({why}) and that \
             the firewall lets this machine reach {}",
            settings.relay.connect_timeout.as_secs(),
            proxy.address()
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "nothing accepts connections at {}: check the proxy's port ({why}) and that the \
             proxy is running",
            proxy.address()
        ),
        _ => format!(
            "check the network path from this machine to the proxy {}",
            proxy.address()
        ),
    }
}

/// What to do about a proxy that would not open the tunnel.
fn proxy_fix(error: &ProxyError, settings: &Settings, proxy: &ProxyUrl) -> String {
    let relay = settings.relay.address();
    let why = settings.relay.proxy.why();
    let credentials = format!(
        "set the proxy user and password in relay.proxy ({}://USER:PASSWORD@{}, or --proxy; \
         the password may come from relay.proxy_password_file)",
        proxy.scheme.name(),
        proxy.address()
    );
    match error {
        ProxyError::Http { schemes, .. }
            if error.is_auth()
                && !schemes.is_empty()
                && !schemes.iter().any(|s| s.eq_ignore_ascii_case("basic")) =>
        {
            format!(
                "the proxy offers only {}, flytube speaks Basic: ask the proxy admins for an \
                 account that may use Basic, or run a local helper (cntlm, px) and point \
                 relay.proxy at it",
                schemes.join(", ")
            )
        }
        e if e.is_auth() => match &proxy.user {
            Some(user) => format!("the proxy refused user {user:?}: {credentials}"),
            None => credentials,
        },
        ProxyError::Http { .. } if error.is_forbidden() => {
            format!("ask the proxy admins to allow CONNECT to {relay}")
        }
        _ if error.is_forbidden() => {
            format!("ask the proxy admins to allow connections to {relay}")
        }
        ProxyError::SocksReply { code: 3 | 4, .. } if proxy.resolves_locally() => format!(
            "the proxy cannot reach the addresses this machine resolved for {}: use socks5h:// \
             instead of socks5:// so that the proxy resolves the name itself",
            settings.relay.host
        ),
        ProxyError::SocksReply { code: 8, .. } => format!(
            "the proxy does not take this kind of address: switch between socks5:// (address \
             resolved here) and socks5h:// (name resolved by the proxy) ({why})"
        ),
        _ if error.is_upstream() => format!(
            "the proxy could not reach the relay: check that {relay} is up (--relay), and ask \
             the proxy admins whether the proxy may connect to it"
        ),
        ProxyError::TimedOut { .. } => format!(
            "the proxy did not answer within {}s: check that {} is a proxy of the kind its \
             URL names ({why}); a slow way from the proxy to the relay delays its answer too",
            settings.relay.connect_timeout.as_secs(),
            proxy.address()
        ),
        ProxyError::NotProxy { .. }
        | ProxyError::Closed { .. }
        | ProxyError::TooLarge { .. }
        | ProxyError::Malformed(_)
        | ProxyError::SocksBadMethod { .. } => format!(
            "check the proxy's scheme and port ({why}): http:// for an HTTP proxy, socks5:// \
             or socks5h:// for a SOCKS5 proxy; its log may say more"
        ),
        _ => format!("check the network path to the proxy {}", proxy.address()),
    }
}

type Handshaken = (ssh2::Session, Negotiated, Option<KnownEntries>);

fn handshake_step(settings: &Settings, stream: TcpStream) -> Outcome<Handshaken> {
    let t = Instant::now();
    let name = "ssh handshake";
    let known = relay::load_known_hosts(settings).map_err(|e| Failure {
        step: step(name, Mark::Fail, t, e.to_string()),
        code: EXIT_CONFIG,
    })?;
    let (session, negotiated) =
        relay::handshake(stream, settings, known.as_ref()).map_err(|e| {
            failed(
                step(name, Mark::Fail, t, e.to_string()),
                EXIT_UNAVAILABLE,
                format!(
                    "make sure {} is the relay's SSH port and that it allows one of the \
                     ciphers {}",
                    settings.relay.address(),
                    settings.ciphers.join(", ")
                ),
            )
        })?;
    let detail = format!(
        "{}; kex {}, cipher {}",
        negotiated.banner,
        negotiated.kex,
        negotiated.cipher_and_mac()
    );
    let mut s = step(name, Mark::Ok, t, detail);
    if !STRONG_CIPHERS.contains(&negotiated.cipher.as_str()) {
        s = with_fix(
            step(name, Mark::Warn, t, s.detail),
            format!(
                "cipher {} is weaker than 256-bit AEAD/CTR (allowed by allow_weaker_ciphers); \
                 ask the relay's operator to enable one of {}",
                negotiated.cipher,
                STRONG_CIPHERS.join(", ")
            ),
        );
    }
    passed((session, negotiated, known), s)
}

fn host_key_step(
    settings: &Settings,
    negotiated: &Negotiated,
    known: Option<&KnownEntries>,
) -> Outcome<()> {
    let t = Instant::now();
    let name = "host key";
    let presented = &negotiated.host_key;
    let fp = presented.fingerprint();
    let relay = &settings.relay;
    if settings.host_key.known_hosts.is_none() && settings.host_key.fingerprint.is_none() {
        let detail = format!(
            "relay presents {} {fp}; nothing is configured to trust",
            presented.key_type
        );
        return Err(failed(
            step(name, Mark::Fail, t, detail),
            EXIT_NOPERM,
            format!(
                "check this fingerprint with the relay's operator, then pin it with \
                 --host-key-fingerprint {fp} or add this line to a known_hosts file: {}",
                presented.known_hosts_line(&relay.host, relay.port)
            ),
        ));
    }
    hostkey::verify(
        presented,
        &settings.host_key,
        known,
        &relay.host,
        relay.port,
    )
    .map_err(|detail| {
        failed(
            step(name, Mark::Fail, t, detail),
            EXIT_NOPERM,
            "never connect through an unverified relay: confirm the new fingerprint with \
                 the relay's operator before changing the pin or known_hosts",
        )
    })?;
    let detail = format!("{} {fp} matches", presented.key_type);
    passed((), step(name, Mark::Ok, t, detail))
}

fn auth_step(settings: &Settings, session: &ssh2::Session) -> Outcome<()> {
    let t = Instant::now();
    let name = "authentication";
    let (mark, detail, fix) = describe_credentials(settings);
    if mark == Mark::Fail {
        return Err(failed(
            step(name, Mark::Fail, t, detail),
            EXIT_NOPERM,
            fix.unwrap_or_default(),
        ));
    }
    relay::authenticate(session, settings).map_err(|e| {
        failed(
            step(name, Mark::Fail, t, format!("{e}; offered {detail}")),
            EXIT_NOPERM,
            "ask the relay's operator to trust this key (or the certificate's CA) for this \
             user; the relay's log says why it refused",
        )
    })?;
    let mut s = step(
        name,
        mark,
        t,
        format!("accepted as {}: {detail}", settings.relay.user),
    );
    s.fix = fix;
    passed((), s)
}

/// Asks the relay for the forward, then cancels it at once.
fn forward_step(settings: &Settings, session: &ssh2::Session, spec: &ForwardSpec) -> Outcome<()> {
    let t = Instant::now();
    let name = format!(
        "forward {}",
        join_host_port(spec.bind_display(), spec.source_port)
    );
    match session.channel_forward_listen(spec.source_port, Some(spec.bind_address()), None) {
        Ok((listener, _)) => {
            drop(listener);
            let detail = format!("{spec}: granted, then cancelled");
            passed((), step(name, Mark::Ok, t, detail))
        }
        Err(e) => {
            let fix = if libssh2::is(&e, libssh2::LIBSSH2_ERROR_REQUEST_DENIED) {
                format!(
                    "the relay refused port {}: it is in use (a running flytube with this \
                     forward holds it, which is expected) or not permitted for user {} \
                     (PermitListen, AllowTcpForwarding on the relay)",
                    spec.source_port, settings.relay.user
                )
            } else {
                "the session broke while requesting the forward; run check again".into()
            };
            let detail = format!("{spec}: {}", e.message());
            Err(failed(
                step(name, Mark::Fail, t, detail),
                EXIT_UNAVAILABLE,
                fix,
            ))
        }
    }
}

/// Asks the relay to connect to a via-relay target (a direct-tcpip channel, opened and
/// closed at once), as the tunnel would for each connection.
fn relay_target_step(session: &ssh2::Session, spec: &ForwardSpec) -> Outcome<()> {
    let t = Instant::now();
    let name = format!("target {} via relay", spec.target_display());
    let Some(target) = &spec.target else {
        return passed((), step(name, Mark::Ok, t, "dynamic"));
    };
    match session.channel_direct_tcpip(&target.host, target.port, None) {
        Ok(mut channel) => {
            let _ = channel.close();
            let detail = format!("the relay connected to {target}");
            passed((), step(name, Mark::Ok, t, detail))
        }
        Err(e) => Err(failed(
            step(
                name,
                Mark::Fail,
                t,
                format!("the relay refused: {}", e.message()),
            ),
            EXIT_UNAVAILABLE,
            format!(
                "the relay must allow direct-tcpip to {target} for this user \
                 (AllowTcpForwarding yes or local, PermitOpen), and reach it from its network"
            ),
        )),
    }
}

/// Dials the target from here, as the tunnel would.
fn target_step(settings: &Settings, spec: &ForwardSpec) -> Outcome<()> {
    let t = Instant::now();
    let name = format!("target {}", spec.target_display());
    let timeout = settings.limits.target_connect_timeout;
    let Some(target) = &spec.target else {
        return passed(
            (),
            step(
                name,
                Mark::Ok,
                t,
                "dynamic: each connection names its destination",
            ),
        );
    };
    match net::dial(&target.host, target.port, timeout) {
        Ok(dialed) => {
            let detail = format!("reachable at {}", dialed.addr);
            passed((), step(name, Mark::Ok, t, detail))
        }
        Err(e) => {
            let fix = if e.is_resolve() {
                "check the target name and this machine's DNS for internal names".to_string()
            } else {
                format!(
                    "start the service at {} or fix TARGET_HOST/TARGET_PORT; this machine must \
                     be allowed to reach it",
                    spec.target_display()
                )
            };
            Err(failed(
                step(name, Mark::Fail, t, e.to_string()),
                EXIT_UNAVAILABLE,
                fix,
            ))
        }
    }
}

fn ip_list(addrs: &[SocketAddr]) -> String {
    let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    ips.join(", ")
}

/// What we offer: the key type, and for a certificate its principals, serial and validity.
fn describe_credentials(settings: &Settings) -> (Mark, String, Option<String>) {
    let Some(path) = &settings.auth.certificate else {
        let pub_path = format!("{}.pub", settings.auth.identity.display());
        let key_type = std::fs::read_to_string(&pub_path)
            .ok()
            .and_then(|t| cert::public_key_type(&t).ok())
            .unwrap_or_else(|| "key".into());
        return (
            Mark::Ok,
            format!(
                "{key_type} {} (no certificate)",
                settings.auth.identity.display()
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
    // A principal other than the user is offered anyway: the relay may map it
    // (AuthorizedPrincipalsFile), and only its answer decides.
    let user = &settings.relay.user;
    let mapped = (!cert.principals.is_empty() && !cert.principals.contains(user)).then(|| {
        format!(
            "the certificate names {} but not the user {user:?}: the relay must map one of \
             them to {user:?} (AuthorizedPrincipalsFile), or have it re-signed with -n {user}",
            cert.principals.join(",")
        )
    });
    match (cert.notice(), mapped) {
        (Some(n), _) if n.severity != Severity::Warn => {
            (Mark::Fail, format!("{detail}: {}", n.state), Some(n.advice))
        }
        (Some(n), Some(mapped)) => (Mark::Warn, detail, Some(format!("{}; {mapped}", n.advice))),
        (Some(n), None) => (Mark::Warn, detail, Some(n.advice)),
        (None, Some(mapped)) => (Mark::Warn, detail, Some(mapped)),
        (None, None) => (Mark::Ok, detail, None),
    }
}
