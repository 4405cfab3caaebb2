//! The sections of `Settings`, one per section of the YAML file, each validated by its own
//! short function from the command line (first), then the file, then the default.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    PASSPHRASE_ENV, Secret, check_key_permissions, check_readable, config_error, in_range, micros,
    millis, read_file, secs,
};
use crate::cli::Options;
use crate::config::{
    AuthConfig, HostKeyConfig, KeepaliveConfig, LimitsConfig, LogConfig, MetricsConfig,
    ReconnectConfig, RelayConfig,
};
use crate::error::Result;
use crate::forward::{join_host_port, parse_port};
use crate::hold::MIB;
use crate::hostkey::{Fingerprint, HostKeyPolicy};
use crate::keyfile;
use crate::logging::LogFormat;
use crate::proxy::ProxyChoice;
use crate::text::is_unsafe_char;

/// The production relay.
pub const DEFAULT_RELAY_HOST: &str = "firefly-relay.firefly.ai";
/// SSH port of the relay unless told otherwise.
pub const DEFAULT_RELAY_PORT: u16 = 22;
/// TCP connect limit per relay address.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// SSH handshake + authentication limit.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Silence from the relay before flytube probes it.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Silent intervals before the session is declared dead.
pub const DEFAULT_KEEPALIVE_COUNT: u32 = 3;
/// First reconnect backoff step (full jitter below it).
pub const DEFAULT_RECONNECT_INITIAL: Duration = Duration::from_secs(1);
/// Largest reconnect backoff step.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(60);
/// Largest wait before asking again for a forward the relay refused: a standby replica
/// takes over within this long after the active one's port is freed.
pub const DEFAULT_STANDBY_RETRY: Duration = Duration::from_secs(5);
/// Connections served at once; each costs two small threads.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;
/// Relay data held for targets that do not keep up, in MiB, beyond which flytube stops
/// reading the relay. Each connection holds at most its window (2 MiB) in libssh2 and
/// about 1.5 MiB on its way to the target, so without this bound a relay could make
/// `DEFAULT_MAX_CONNECTIONS` stalled connections hold some 7 GiB.
pub const DEFAULT_MAX_QUEUED_MIB: u64 = 256;
/// Limit on dialing a target inside the network.
pub const DEFAULT_TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight connections may finish after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// AES-256 only, GCM first: what the relay is asked for unless configured otherwise.
pub const DEFAULT_CIPHERS: &[&str] = &["aes256-gcm@openssh.com", "aes256-ctr"];
/// The ciphers the product promises: 256-bit keys, AEAD or CTR (with a MAC from OpenSSH's
/// default list: UMAC or SHA-2 HMAC, encrypt-then-MAC first; `libssh2::mac_preference`).
/// Anything else needs `allow_weaker_ciphers`.
pub const STRONG_CIPHERS: &[&str] = &[
    "aes256-gcm@openssh.com",
    "aes256-ctr",
    "chacha20-poly1305@openssh.com",
];

/// `relay:` where the relay is and who we are there.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySettings {
    /// Relay host name or address.
    pub host: String,
    /// Relay SSH port.
    pub port: u16,
    /// User name on the relay.
    pub user: String,
    /// TCP connect limit per relay address.
    pub connect_timeout: Duration,
    /// SSH handshake + authentication limit.
    pub handshake_timeout: Duration,
    /// The proxy the relay is reached through, or why there is none.
    pub proxy: ProxyChoice,
    /// The file the proxy password was read from, if any.
    pub proxy_password_file: Option<PathBuf>,
}

impl RelaySettings {
    /// `host:port` of the relay.
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    pub(super) fn build(
        options: &Options,
        env: &HashMap<String, String>,
        file: RelayConfig,
    ) -> Result<RelaySettings> {
        let (host, port) = match &options.relay {
            Some(text) => parse_relay(text)?,
            None => {
                let port = match file.port {
                    Some(0) => return Err(config_error("relay.port 0 is outside 1-65535")),
                    Some(port) => port,
                    None => DEFAULT_RELAY_PORT,
                };
                (file.host.unwrap_or_else(|| DEFAULT_RELAY_HOST.into()), port)
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || is_unsafe_char(c)) {
            return Err(config_error(format!(
                "relay host {host:?} is not a host name"
            )));
        }
        let user = options.user.clone().or(file.user).ok_or_else(|| {
            config_error("no relay user: set --user, FLYTUBE_USER or relay.user in the file")
        })?;
        if user.is_empty() || user.chars().any(|c| c.is_whitespace() || is_unsafe_char(c)) {
            return Err(config_error(format!(
                "relay user {user:?} is not a user name"
            )));
        }
        let (proxy, proxy_password_file) = super::proxy::build(
            options,
            env,
            file.proxy.as_deref(),
            file.proxy_password_file.as_deref(),
            &host,
        )?;
        Ok(RelaySettings {
            host,
            port,
            user,
            proxy,
            proxy_password_file,
            connect_timeout: secs(
                "relay.connect_timeout_secs",
                file.connect_timeout_secs,
                DEFAULT_CONNECT_TIMEOUT,
                1..=600,
            )?,
            handshake_timeout: secs(
                "relay.handshake_timeout_secs",
                file.handshake_timeout_secs,
                DEFAULT_HANDSHAKE_TIMEOUT,
                1..=600,
            )?,
        })
    }

    pub(super) fn to_file(&self) -> RelayConfig {
        RelayConfig {
            host: Some(self.host.clone()),
            port: Some(self.port),
            user: Some(self.user.clone()),
            connect_timeout_secs: Some(self.connect_timeout.as_secs()),
            handshake_timeout_secs: Some(self.handshake_timeout.as_secs()),
            proxy: Some(self.proxy.file_value()),
            proxy_password_file: self.proxy_password_file.clone(),
        }
    }
}

/// `auth:` the key, its certificate and passphrase.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    /// Private key file.
    pub identity: PathBuf,
    /// Certificate file, if any.
    pub certificate: Option<PathBuf>,
    /// Key passphrase, if any.
    pub passphrase: Option<Secret>,
    /// Where the passphrase came from, for `flytube config`.
    pub passphrase_source: Option<String>,
}

impl AuthSettings {
    pub(super) fn build(
        options: &Options,
        env: &HashMap<String, String>,
        file: AuthConfig,
    ) -> Result<AuthSettings> {
        let identity = options.identity.clone().or(file.identity).ok_or_else(|| {
            config_error(
                "no identity: set --identity, FLYTUBE_IDENTITY or auth.identity in the file",
            )
        })?;
        check_readable("identity", &identity)?;
        let certificate = match options.certificate.clone().or(file.certificate) {
            Some(path) => {
                check_readable("certificate", &path)?;
                Some(path)
            }
            None => {
                let beside = PathBuf::from(format!("{}-cert.pub", identity.display()));
                beside.is_file().then_some(beside)
            }
        };
        let (passphrase, passphrase_source) =
            match options.passphrase_file.clone().or(file.passphrase_file) {
                Some(path) => {
                    let text = read_file("passphrase", &path)?;
                    let line = text.lines().next().unwrap_or("").to_string();
                    (
                        Some(Secret::new(line)),
                        Some(format!("file {}", path.display())),
                    )
                }
                None => match env.get(PASSPHRASE_ENV) {
                    Some(value) => (
                        Some(Secret::new(value.clone())),
                        Some(format!("environment {PASSPHRASE_ENV}")),
                    ),
                    None => (None, None),
                },
            };
        let key_text = read_file("identity", &identity)?;
        let key = keyfile::check_private_key(
            &identity,
            &key_text,
            passphrase.as_ref().map(Secret::expose),
        )
        .map_err(config_error)?;
        check_key_permissions(&identity)?;
        if let Some(path) = &certificate {
            let text = read_file("certificate", path)?;
            keyfile::check_certificate_matches(path, &text, &key).map_err(config_error)?;
        }
        Ok(AuthSettings {
            identity,
            certificate,
            passphrase,
            passphrase_source,
        })
    }

    pub(super) fn to_file(&self) -> AuthConfig {
        AuthConfig {
            identity: Some(self.identity.clone()),
            certificate: self.certificate.clone(),
            passphrase_file: None,
        }
    }
}

/// `host_key:` how the relay's host key is trusted. Without a requirement (`flytube
/// check`), neither a file nor a pin is needed: check then prints the relay's key.
pub(super) fn build_host_key(
    options: &Options,
    file: HostKeyConfig,
    require: bool,
) -> Result<HostKeyPolicy> {
    let known_hosts = options.known_hosts.clone().or(file.known_hosts);
    if let Some(path) = &known_hosts {
        check_readable("known_hosts", path)?;
    }
    let fingerprint = match options.host_key_fingerprint.clone().or(file.fingerprint) {
        Some(text) => Some(Fingerprint::parse(&text).map_err(config_error)?),
        None => None,
    };
    if require && known_hosts.is_none() && fingerprint.is_none() {
        return Err(config_error(
            "no way to verify the relay's host key: set --known-hosts or \
             --host-key-fingerprint (or host_key.known_hosts / host_key.fingerprint in the \
             file); flytube never trusts an unknown relay",
        ));
    }
    Ok(HostKeyPolicy {
        known_hosts,
        fingerprint,
    })
}

pub(super) fn host_key_to_file(policy: &HostKeyPolicy) -> HostKeyConfig {
    HostKeyConfig {
        known_hosts: policy.known_hosts.clone(),
        fingerprint: policy.fingerprint.as_ref().map(|f| f.to_string()),
    }
}

/// `keepalive:` liveness probing of the relay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeepaliveSettings {
    /// Silence from the relay before a liveness probe.
    pub interval: Duration,
    /// Silent intervals before the session is rebuilt.
    pub count: u32,
}

impl KeepaliveSettings {
    /// How long the relay may stay silent before the session counts as dead: the pump's
    /// probe limit, the watchdog's and the kernel's TCP_USER_TIMEOUT all use it.
    pub fn dead_after(&self) -> Duration {
        self.interval * self.count
    }

    pub(super) fn build(options: &Options, file: KeepaliveConfig) -> Result<KeepaliveSettings> {
        let interval = secs(
            "keepalive interval",
            options.keepalive_interval.or(file.interval_secs),
            DEFAULT_KEEPALIVE_INTERVAL,
            1..=3600,
        )?;
        let count = options
            .keepalive_count
            .or(file.count)
            .unwrap_or(DEFAULT_KEEPALIVE_COUNT);
        in_range("keepalive count", count, 1..=100)?;
        Ok(KeepaliveSettings { interval, count })
    }

    pub(super) fn to_file(self) -> KeepaliveConfig {
        KeepaliveConfig {
            interval_secs: Some(self.interval.as_secs()),
            count: Some(self.count),
        }
    }
}

/// `reconnect:` the backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectSettings {
    /// First reconnect backoff step.
    pub initial: Duration,
    /// Largest reconnect backoff step.
    pub max: Duration,
    /// Largest wait before asking again for a refused forward.
    pub standby_retry: Duration,
}

impl ReconnectSettings {
    pub(super) fn build(file: ReconnectConfig) -> Result<ReconnectSettings> {
        let initial = millis(
            "reconnect.initial_delay_ms",
            file.initial_delay_ms,
            DEFAULT_RECONNECT_INITIAL,
            10..=60_000,
        )?;
        let max = secs(
            "reconnect.max_delay_secs",
            file.max_delay_secs,
            DEFAULT_RECONNECT_MAX,
            1..=3600,
        )?;
        if max < initial {
            return Err(config_error(
                "reconnect.max_delay_secs is smaller than reconnect.initial_delay_ms",
            ));
        }
        let standby_retry = secs(
            "reconnect.standby_retry_secs",
            file.standby_retry_secs,
            DEFAULT_STANDBY_RETRY,
            1..=3600,
        )?;
        Ok(ReconnectSettings {
            initial,
            max,
            standby_retry,
        })
    }

    pub(super) fn to_file(self) -> ReconnectConfig {
        ReconnectConfig {
            initial_delay_ms: Some(self.initial.as_millis() as u64),
            max_delay_secs: Some(self.max.as_secs()),
            standby_retry_secs: Some(self.standby_retry.as_secs()),
        }
    }
}

/// `limits:` resource limits and timeouts of forwarded connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsSettings {
    /// How long a dynamic-forward client has for its proxy handshake.
    pub handshake_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Limit on dialing a target.
    pub target_connect_timeout: Duration,
    /// Close connections idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// How long in-flight connections may finish after SIGTERM.
    pub drain_timeout: Duration,
    /// How long the pump may poll, without sleeping, before it sleeps (busy_poll.rs);
    /// zero: never.
    pub busy_poll: Duration,
    /// Most relay data held for targets that do not keep up, in bytes (`max_queued_mib`),
    /// before the pump stops reading the relay until they take some.
    pub max_queued: u64,
}

impl LimitsSettings {
    pub(super) fn build(options: &Options, file: LimitsConfig) -> Result<LimitsSettings> {
        let max_connections = options
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        in_range("max connections", max_connections, 1..=100_000)?;
        let idle_timeout = match file.idle_timeout_secs {
            None | Some(0) => None,
            Some(s @ 1..=604_800) => Some(Duration::from_secs(s)),
            Some(s) => {
                return Err(config_error(format!(
                    "limits.idle_timeout_secs {s} is outside 0-604800 (0 = never)"
                )));
            }
        };
        Ok(LimitsSettings {
            handshake_timeout: secs(
                "limits.handshake_timeout_secs",
                file.handshake_timeout_secs,
                crate::dynamic::DEFAULT_HANDSHAKE_TIMEOUT,
                1..=600,
            )?,
            max_connections,
            target_connect_timeout: secs(
                "limits.target_connect_timeout_secs",
                file.target_connect_timeout_secs,
                DEFAULT_TARGET_CONNECT_TIMEOUT,
                1..=600,
            )?,
            idle_timeout,
            drain_timeout: secs(
                "limits.drain_timeout_secs",
                file.drain_timeout_secs,
                DEFAULT_DRAIN_TIMEOUT,
                0..=3600,
            )?,
            busy_poll: micros(
                "limits.busy_poll_us",
                file.busy_poll_us,
                crate::busy_poll::DEFAULT_LIMIT,
                0..=crate::busy_poll::MAX_LIMIT_US,
            )?,
            max_queued: in_range(
                "limits.max_queued_mib",
                file.max_queued_mib.unwrap_or(DEFAULT_MAX_QUEUED_MIB),
                1..=1024 * 1024,
            )? * MIB,
        })
    }

    pub(super) fn to_file(self) -> LimitsConfig {
        LimitsConfig {
            max_connections: Some(self.max_connections),
            target_connect_timeout_secs: Some(self.target_connect_timeout.as_secs()),
            idle_timeout_secs: Some(self.idle_timeout.map_or(0, |d| d.as_secs())),
            drain_timeout_secs: Some(self.drain_timeout.as_secs()),
            handshake_timeout_secs: Some(self.handshake_timeout.as_secs()),
            busy_poll_us: Some(self.busy_poll.as_micros() as u64),
            max_queued_mib: Some(self.max_queued / MIB),
        }
    }
}

/// `ciphers:` names, in order of preference, checked against what the linked libssh2
/// supports.
pub(super) fn build_ciphers(
    options: &Options,
    file: Option<Vec<String>>,
    allow_weaker: bool,
) -> Result<Vec<String>> {
    let ciphers: Vec<String> = match &options.ciphers {
        Some(list) => list.split(',').map(|c| c.trim().to_string()).collect(),
        None => file.unwrap_or_else(|| DEFAULT_CIPHERS.iter().map(|c| c.to_string()).collect()),
    };
    if ciphers.is_empty() || ciphers.iter().any(String::is_empty) {
        return Err(config_error(
            "ciphers: the list is empty or has an empty name",
        ));
    }
    let supported = crate::libssh2::supported_ciphers()?;
    for cipher in &ciphers {
        if !supported.contains(cipher) {
            return Err(config_error(format!(
                "cipher {cipher:?} is not supported (allowed: {})",
                supported.join(", ")
            )));
        }
        if !allow_weaker && !STRONG_CIPHERS.contains(&cipher.as_str()) {
            return Err(config_error(format!(
                "cipher {cipher:?} is weaker than flytube promises (256-bit AEAD or CTR: {}); \
                 set allow_weaker_ciphers: true in the file (or --allow-weaker-ciphers) only \
                 if the relay can do nothing better",
                STRONG_CIPHERS.join(", ")
            )));
        }
    }
    Ok(ciphers)
}

/// `log:` level and format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSettings {
    /// Log level filter.
    pub level: log::LevelFilter,
    /// Log format.
    pub format: LogFormat,
}

impl LogSettings {
    pub(super) fn build(options: &Options, file: LogConfig) -> Result<LogSettings> {
        let format = match options.log_format.as_deref().or(file.format.as_deref()) {
            None => LogFormat::Text,
            Some(text) => text.parse().map_err(|_| {
                config_error(format!(
                    "log format {text:?} is not allowed (use text or json)"
                ))
            })?,
        };
        let base = match file.level.as_deref() {
            None => log::LevelFilter::Info,
            Some(text) => text.parse().map_err(|_| {
                config_error(format!(
                    "log.level {text:?} is not allowed (use error, warn, info, debug or trace)"
                ))
            })?,
        };
        Ok(LogSettings {
            level: adjust_level(base, options.verbose, options.quiet),
            format,
        })
    }

    pub(super) fn to_file(self) -> LogConfig {
        LogConfig {
            level: Some(self.level.to_string().to_lowercase()),
            format: Some(self.format.name().into()),
        }
    }
}

/// `metrics:` the operator endpoint; off unless an address is given, loopback only unless
/// `allow_remote` says otherwise (flytube listens on nothing unless told).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricsSettings {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: Option<std::net::SocketAddr>,
    /// A non-loopback `listen` was explicitly allowed.
    pub allow_remote: bool,
}

impl MetricsSettings {
    pub(super) fn build(options: &Options, file: MetricsConfig) -> Result<MetricsSettings> {
        let allow_remote = file.allow_remote.unwrap_or(false);
        let Some(text) = options.metrics_listen.clone().or(file.listen) else {
            return Ok(MetricsSettings {
                listen: None,
                allow_remote,
            });
        };
        let listen: std::net::SocketAddr = text.parse().map_err(|_| {
            config_error(format!(
                "metrics listen address {text:?} is not ADDRESS:PORT (e.g. 127.0.0.1:9466 or \
                 [::1]:9466)"
            ))
        })?;
        if !listen.ip().is_loopback() && !allow_remote {
            return Err(config_error(format!(
                "metrics listen address {listen} is not loopback: the endpoint has no \
                 authentication, so set metrics.allow_remote: true to serve it beyond this host"
            )));
        }
        Ok(MetricsSettings {
            listen: Some(listen),
            allow_remote,
        })
    }

    pub(super) fn to_file(self) -> MetricsConfig {
        MetricsConfig {
            listen: self.listen.map(|a| a.to_string()),
            allow_remote: Some(self.allow_remote),
        }
    }
}

/// `allow:` and `deny:` the customer's rules for dynamic forwards: from `--allow`/`--deny`
/// (or `FLYTUBE_ALLOW`/`FLYTUBE_DENY`, rules separated by whitespace), else the file. Every
/// rule is checked now; a dynamic forward with no allow rule is an error.
pub(super) fn build_policy(
    options: &Options,
    env: &HashMap<String, String>,
    file_allow: Option<Vec<String>>,
    file_deny: Option<Vec<String>>,
    forwards: &[crate::forward::ForwardSpec],
) -> Result<crate::dynamic::Policy> {
    let from = |cli: &[String], variable: &str, file: Option<Vec<String>>| -> Vec<String> {
        if !cli.is_empty() {
            return cli.to_vec();
        }
        match env.get(variable) {
            Some(value) => value.split_whitespace().map(str::to_string).collect(),
            None => file.unwrap_or_default(),
        }
    };
    let allow = from(&options.allow, "FLYTUBE_ALLOW", file_allow);
    let deny = from(&options.deny, "FLYTUBE_DENY", file_deny);
    let policy = crate::dynamic::Policy::parse(&allow, &deny).map_err(config_error)?;
    if let Some(dynamic) = forwards.iter().find(|f| f.is_dynamic())
        && policy.allow.is_empty()
    {
        return Err(config_error(format!(
            "forward {dynamic} is dynamic but the allow list is empty: set allow (--allow \
             RULE, FLYTUBE_ALLOW or allow: in the file) to the destinations it may reach, \
             e.g. *.corp.example:443 or 10.0.0.0/8"
        )));
    }
    Ok(policy)
}

/// `HOST[:PORT]`, `[IPV6]:PORT` or a bare IPv6 address.
fn parse_relay(text: &str) -> Result<(String, u16)> {
    let bad = |why: String| config_error(format!("relay {text:?}: {why} (use HOST[:PORT])"));
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("missing ']'".into()))?;
        let port = match after {
            "" => DEFAULT_RELAY_PORT,
            _ => {
                let port = after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("text after ']' must be :PORT".into()))?;
                parse_port(port).map_err(|e| bad(format!("port {e}")))?
            }
        };
        return Ok((host.to_string(), port));
    }
    match text.split_once(':') {
        None => Ok((text.to_string(), DEFAULT_RELAY_PORT)),
        Some((host, port)) if !port.contains(':') => {
            let port = parse_port(port).map_err(|e| bad(format!("port {e}")))?;
            Ok((host.to_string(), port))
        }
        // Two or more colons without brackets: a bare IPv6 address.
        Some(_) => Ok((text.to_string(), DEFAULT_RELAY_PORT)),
    }
}

fn adjust_level(base: log::LevelFilter, verbose: u8, quiet: u8) -> log::LevelFilter {
    use log::LevelFilter::*;
    let order = [Off, Error, Warn, Info, Debug, Trace];
    let index = order.iter().position(|l| *l == base).unwrap_or(3) as i32;
    let adjusted = (index + i32::from(verbose) - i32::from(quiet)).clamp(1, 5);
    order[adjusted as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_forms() {
        assert_eq!(parse_relay("r.example").unwrap(), ("r.example".into(), 22));
        assert_eq!(
            parse_relay("r.example:2222").unwrap(),
            ("r.example".into(), 2222)
        );
        assert_eq!(parse_relay("[::1]:2222").unwrap(), ("::1".into(), 2222));
        assert_eq!(parse_relay("::1").unwrap(), ("::1".into(), 22));
        let err = parse_relay("r:99999").unwrap_err().to_string();
        assert!(err.contains("99999 is outside 1-65535"), "{err}");
    }

    #[test]
    fn verbosity_moves_the_level() {
        use log::LevelFilter::*;
        assert_eq!(adjust_level(Info, 1, 0), Debug);
        assert_eq!(adjust_level(Info, 5, 0), Trace);
        assert_eq!(adjust_level(Info, 0, 2), Error);
        assert_eq!(adjust_level(Info, 0, 9), Error);
    }

    #[test]
    fn dead_after_is_interval_times_count() {
        let keepalive = KeepaliveSettings {
            interval: Duration::from_secs(15),
            count: 3,
        };
        assert_eq!(keepalive.dead_after(), Duration::from_secs(45));
    }
}
