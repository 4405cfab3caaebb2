//! Validated settings, built from the YAML file, the environment and the command line
//! (in rising precedence) before any work starts. The core reads nothing else.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{LogFormat, Options};
use crate::config::{self, FileConfig, ForwardConfig};
use crate::error::{Error, Result};
use crate::forward::{ForwardSpec, join_host_port, parse_port};
use crate::hostkey::Fingerprint;

/// The settings file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/flytube/flytube.yaml";
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
/// Connections served at once; each costs two small threads.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;
/// Limit on dialing a target inside the network.
pub const DEFAULT_TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight connections may finish after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// AES-256 only, GCM first: what the relay is asked for unless configured otherwise.
pub const DEFAULT_CIPHERS: &[&str] = &["aes256-gcm@openssh.com", "aes256-ctr"];
/// The environment variable holding the key passphrase, if any.
pub const PASSPHRASE_ENV: &str = "FLYTUBE_PASSPHRASE";

/// A secret that never shows in Debug output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// How the relay's host key is trusted.
#[derive(Debug, Clone)]
pub struct HostKeyPolicy {
    /// known_hosts file with the relay's key.
    pub known_hosts: Option<PathBuf>,
    /// Pinned SHA256 fingerprint.
    pub fingerprint: Option<Fingerprint>,
}

/// Validated settings for every part of flytube.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The settings file that was read, if any.
    pub config_path: Option<PathBuf>,
    /// Relay host name or address.
    pub relay_host: String,
    /// Relay SSH port.
    pub relay_port: u16,
    /// User name on the relay.
    pub user: String,
    /// Private key file.
    pub identity: PathBuf,
    /// Certificate file, if any.
    pub certificate: Option<PathBuf>,
    /// Key passphrase, if any.
    pub passphrase: Option<Secret>,
    /// Where the passphrase came from, for `flytube config`.
    pub passphrase_source: Option<String>,
    /// Host key trust.
    pub host_key: HostKeyPolicy,
    /// Remote forwards, at least one.
    pub forwards: Vec<ForwardSpec>,
    /// Silence before a liveness probe.
    pub keepalive_interval: Duration,
    /// Silent intervals before the session is rebuilt.
    pub keepalive_count: u32,
    /// TCP connect limit per relay address.
    pub connect_timeout: Duration,
    /// SSH handshake + authentication limit.
    pub handshake_timeout: Duration,
    /// First reconnect backoff step.
    pub reconnect_initial: Duration,
    /// Largest reconnect backoff step.
    pub reconnect_max: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Limit on dialing a target.
    pub target_connect_timeout: Duration,
    /// Close connections idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// How long in-flight connections may finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Ciphers in order of preference.
    pub ciphers: Vec<String>,
    /// Log level filter.
    pub log_level: log::LevelFilter,
    /// Log format.
    pub log_format: LogFormat,
}

impl Settings {
    /// `host:port` of the relay.
    pub fn relay(&self) -> String {
        join_host_port(&self.relay_host, self.relay_port)
    }

    /// Builds settings from the command line options and an environment lookup
    /// (`SOURCE_PORT`, `TARGET_HOST`, `TARGET_PORT`, `FLYTUBE_PASSPHRASE`). Every problem
    /// is reported before anything connects.
    pub fn build(options: &Options, env: &HashMap<String, String>) -> Result<Settings> {
        Settings::build_inner(options, env, true)
    }

    /// Like `build`, but a missing host key setting is allowed: `flytube check` then shows
    /// the relay's fingerprint and the line to pin it (and still fails).
    pub fn build_for_check(options: &Options, env: &HashMap<String, String>) -> Result<Settings> {
        Settings::build_inner(options, env, false)
    }

    fn build_inner(
        options: &Options,
        env: &HashMap<String, String>,
        require_host_key: bool,
    ) -> Result<Settings> {
        let (file, config_path) = load_file(options.config.as_deref())?;
        let relay = file.relay.unwrap_or_default();
        let auth = file.auth.unwrap_or_default();
        let host_key = file.host_key.unwrap_or_default();
        let keepalive = file.keepalive.unwrap_or_default();
        let reconnect = file.reconnect.unwrap_or_default();
        let limits = file.limits.unwrap_or_default();
        let log = file.log.unwrap_or_default();

        let (relay_host, relay_port) = match &options.relay {
            Some(text) => parse_relay(text)?,
            None => {
                let port = match relay.port {
                    Some(0) => return Err(config_error("relay.port 0 is outside 1-65535")),
                    Some(port) => port,
                    None => DEFAULT_RELAY_PORT,
                };
                (
                    relay.host.unwrap_or_else(|| DEFAULT_RELAY_HOST.into()),
                    port,
                )
            }
        };
        if relay_host.is_empty()
            || relay_host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(config_error(format!(
                "relay host {relay_host:?} is not a host name"
            )));
        }

        let user = options.user.clone().or(relay.user).ok_or_else(|| {
            config_error("no relay user: set --user, FLYTUBE_USER or relay.user in the file")
        })?;
        if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(config_error(format!(
                "relay user {user:?} is not a user name"
            )));
        }

        let identity = options.identity.clone().or(auth.identity).ok_or_else(|| {
            config_error(
                "no identity: set --identity, FLYTUBE_IDENTITY or auth.identity in the file",
            )
        })?;
        check_readable("identity", &identity)?;
        let certificate = match options.certificate.clone().or(auth.certificate) {
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
            match options.passphrase_file.clone().or(auth.passphrase_file) {
                Some(path) => {
                    let text = read_file("passphrase", &path)?;
                    let line = text.lines().next().unwrap_or("").to_string();
                    (Some(Secret(line)), Some(format!("file {}", path.display())))
                }
                None => match env.get(PASSPHRASE_ENV) {
                    Some(value) => (
                        Some(Secret(value.clone())),
                        Some(format!("environment {PASSPHRASE_ENV}")),
                    ),
                    None => (None, None),
                },
            };

        let known_hosts = options.known_hosts.clone().or(host_key.known_hosts);
        if let Some(path) = &known_hosts {
            check_readable("known_hosts", path)?;
        }
        let fingerprint = match options
            .host_key_fingerprint
            .clone()
            .or(host_key.fingerprint)
        {
            Some(text) => Some(Fingerprint::parse(&text).map_err(config_error)?),
            None => None,
        };
        if require_host_key && known_hosts.is_none() && fingerprint.is_none() {
            return Err(config_error(
                "no way to verify the relay's host key: set --known-hosts or \
                 --host-key-fingerprint (or host_key.known_hosts / host_key.fingerprint in the \
                 file); flytube never trusts an unknown relay",
            ));
        }

        let forwards = build_forwards(&options.forwards, env, file.forwards)?;

        let keepalive_interval = secs(
            "keepalive interval",
            options.keepalive_interval.or(keepalive.interval_secs),
            DEFAULT_KEEPALIVE_INTERVAL,
            1..=3600,
        )?;
        let keepalive_count = options
            .keepalive_count
            .or(keepalive.count)
            .unwrap_or(DEFAULT_KEEPALIVE_COUNT);
        if !(1..=100).contains(&keepalive_count) {
            return Err(config_error(format!(
                "keepalive count {keepalive_count} is outside 1-100"
            )));
        }
        let connect_timeout = secs(
            "relay.connect_timeout_secs",
            relay.connect_timeout_secs,
            DEFAULT_CONNECT_TIMEOUT,
            1..=600,
        )?;
        let handshake_timeout = secs(
            "relay.handshake_timeout_secs",
            relay.handshake_timeout_secs,
            DEFAULT_HANDSHAKE_TIMEOUT,
            1..=600,
        )?;
        let reconnect_initial = match reconnect.initial_delay_ms {
            None => DEFAULT_RECONNECT_INITIAL,
            Some(ms @ 10..=60_000) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(config_error(format!(
                    "reconnect.initial_delay_ms {ms} is outside 10-60000"
                )));
            }
        };
        let reconnect_max = secs(
            "reconnect.max_delay_secs",
            reconnect.max_delay_secs,
            DEFAULT_RECONNECT_MAX,
            1..=3600,
        )?;
        if reconnect_max < reconnect_initial {
            return Err(config_error(
                "reconnect.max_delay_secs is smaller than reconnect.initial_delay_ms",
            ));
        }
        let max_connections = options
            .max_connections
            .or(limits.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !(1..=100_000).contains(&max_connections) {
            return Err(config_error(format!(
                "max connections {max_connections} is outside 1-100000"
            )));
        }
        let target_connect_timeout = secs(
            "limits.target_connect_timeout_secs",
            limits.target_connect_timeout_secs,
            DEFAULT_TARGET_CONNECT_TIMEOUT,
            1..=600,
        )?;
        let idle_timeout = match limits.idle_timeout_secs {
            None | Some(0) => None,
            Some(s @ 1..=604_800) => Some(Duration::from_secs(s)),
            Some(s) => {
                return Err(config_error(format!(
                    "limits.idle_timeout_secs {s} is outside 0-604800 (0 = never)"
                )));
            }
        };
        let drain_timeout = match limits.drain_timeout_secs {
            None => DEFAULT_DRAIN_TIMEOUT,
            Some(s @ 0..=3600) => Duration::from_secs(s),
            Some(s) => {
                return Err(config_error(format!(
                    "limits.drain_timeout_secs {s} is outside 0-3600"
                )));
            }
        };

        let ciphers = match &options.ciphers {
            Some(list) => list.split(',').map(|c| c.trim().to_string()).collect(),
            None => file
                .ciphers
                .unwrap_or_else(|| DEFAULT_CIPHERS.iter().map(|c| c.to_string()).collect()),
        };
        check_ciphers(&ciphers)?;

        let log_format = match (options.log_format, log.format.as_deref()) {
            (Some(format), _) => format,
            (None, None | Some("text")) => LogFormat::Text,
            (None, Some("json")) => LogFormat::Json,
            (None, Some(other)) => {
                return Err(config_error(format!(
                    "log.format {other:?} is not allowed (use text or json)"
                )));
            }
        };
        let base_level = match log.level.as_deref() {
            None => log::LevelFilter::Info,
            Some(text) => text.parse().map_err(|_| {
                config_error(format!(
                    "log.level {text:?} is not allowed (use error, warn, info, debug or trace)"
                ))
            })?,
        };
        let log_level = adjust_level(base_level, options.verbose, options.quiet);

        Ok(Settings {
            config_path,
            relay_host,
            relay_port,
            user,
            identity,
            certificate,
            passphrase,
            passphrase_source,
            host_key: HostKeyPolicy {
                known_hosts,
                fingerprint,
            },
            forwards,
            keepalive_interval,
            keepalive_count,
            connect_timeout,
            handshake_timeout,
            reconnect_initial,
            reconnect_max,
            max_connections,
            target_connect_timeout,
            idle_timeout,
            drain_timeout,
            ciphers,
            log_level,
            log_format,
        })
    }

    /// The effective settings in the file's own shape, for `flytube config`.
    pub fn to_file_config(&self) -> FileConfig {
        use crate::config::*;
        FileConfig {
            relay: Some(RelayConfig {
                host: Some(self.relay_host.clone()),
                port: Some(self.relay_port),
                user: Some(self.user.clone()),
                connect_timeout_secs: Some(self.connect_timeout.as_secs()),
                handshake_timeout_secs: Some(self.handshake_timeout.as_secs()),
            }),
            auth: Some(AuthConfig {
                identity: Some(self.identity.clone()),
                certificate: self.certificate.clone(),
                passphrase_file: None,
            }),
            host_key: Some(HostKeyConfig {
                known_hosts: self.host_key.known_hosts.clone(),
                fingerprint: self.host_key.fingerprint.as_ref().map(|f| f.to_string()),
            }),
            forwards: Some(
                self.forwards
                    .iter()
                    .map(|f| ForwardConfig {
                        bind: f.bind.clone(),
                        source_port: f.source_port.into(),
                        target_host: f.target_host.clone(),
                        target_port: f.target_port.into(),
                    })
                    .collect(),
            ),
            keepalive: Some(KeepaliveConfig {
                interval_secs: Some(self.keepalive_interval.as_secs()),
                count: Some(self.keepalive_count),
            }),
            reconnect: Some(ReconnectConfig {
                initial_delay_ms: Some(self.reconnect_initial.as_millis() as u64),
                max_delay_secs: Some(self.reconnect_max.as_secs()),
            }),
            limits: Some(LimitsConfig {
                max_connections: Some(self.max_connections),
                target_connect_timeout_secs: Some(self.target_connect_timeout.as_secs()),
                idle_timeout_secs: Some(self.idle_timeout.map_or(0, |d| d.as_secs())),
                drain_timeout_secs: Some(self.drain_timeout.as_secs()),
            }),
            ciphers: Some(self.ciphers.clone()),
            log: Some(LogConfig {
                level: Some(self.log_level.to_string().to_lowercase()),
                format: Some(
                    match self.log_format {
                        LogFormat::Text => "text",
                        LogFormat::Json => "json",
                    }
                    .into(),
                ),
            }),
        }
    }

    /// `flytube config` output: YAML, with where the settings came from and secrets masked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.config_path {
            Some(path) => out.push_str(&format!("# settings file: {}\n", path.display())),
            None => out.push_str("# settings file: none\n"),
        }
        match &self.passphrase_source {
            Some(source) => out.push_str(&format!("# key passphrase: MASKED (from {source})\n")),
            None => out.push_str("# key passphrase: none\n"),
        }
        out.push_str(&config::render_yaml(&self.to_file_config()));
        out
    }
}

fn config_error(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// Reads and parses the settings file: the one given, or the default one if it exists.
fn load_file(explicit: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>)> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_PATH);
            if !default.exists() {
                return Ok((FileConfig::default(), None));
            }
            default
        }
    };
    let text = read_file("settings", &path)?;
    let file = config::parse_yaml(&text, &path.display().to_string()).map_err(Error::Config)?;
    Ok((file, Some(path)))
}

fn read_file(role: &'static str, path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::File {
        role,
        path: path.to_path_buf(),
        source,
    })
}

fn check_readable(role: &'static str, path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|source| Error::File {
        role,
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(config_error(format!(
            "{role} {} is not a regular file",
            path.display()
        )));
    }
    fs::File::open(path).map_err(|source| Error::File {
        role,
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
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
    match text.matches(':').count() {
        0 => Ok((text.to_string(), DEFAULT_RELAY_PORT)),
        1 => {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            let port = parse_port(port).map_err(|e| bad(format!("port {e}")))?;
            Ok((host.to_string(), port))
        }
        _ => Ok((text.to_string(), DEFAULT_RELAY_PORT)),
    }
}

fn build_forwards(
    cli: &[String],
    env: &HashMap<String, String>,
    file: Option<Vec<ForwardConfig>>,
) -> Result<Vec<ForwardSpec>> {
    let forwards = if !cli.is_empty() {
        cli.iter()
            .map(|spec| ForwardSpec::parse(spec).map_err(config_error))
            .collect::<Result<Vec<_>>>()?
    } else if let Some(forward) = forward_from_env(env)? {
        vec![forward]
    } else {
        file.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, f)| forward_from_file(i, f))
            .collect::<Result<Vec<_>>>()?
    };
    if forwards.is_empty() {
        return Err(config_error(
            "no forward: give -R SOURCE_PORT:TARGET_HOST:TARGET_PORT, set SOURCE_PORT, \
             TARGET_HOST and TARGET_PORT, or list forwards in the file",
        ));
    }
    for (i, a) in forwards.iter().enumerate() {
        if let Some(b) = forwards[..i]
            .iter()
            .find(|b| b.source_port == a.source_port && b.bind_address() == a.bind_address())
        {
            return Err(config_error(format!(
                "forwards {b} and {a} use the same relay port"
            )));
        }
    }
    Ok(forwards)
}

/// The onboarding variables `SOURCE_PORT`, `TARGET_HOST`, `TARGET_PORT`: all or none.
fn forward_from_env(env: &HashMap<String, String>) -> Result<Option<ForwardSpec>> {
    let names = ["SOURCE_PORT", "TARGET_HOST", "TARGET_PORT"];
    let values: Vec<Option<&String>> = names.iter().map(|n| env.get(*n)).collect();
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(config_error(format!(
            "SOURCE_PORT, TARGET_HOST and TARGET_PORT go together; {} not set",
            missing.join(", ")
        )));
    }
    let source = values[0].map_or("", |s| s.as_str());
    let host = values[1].map_or("", |s| s.as_str());
    let target = values[2].map_or("", |s| s.as_str());
    let forward = ForwardSpec {
        bind: None,
        source_port: parse_port(source).map_err(|e| config_error(format!("SOURCE_PORT {e}")))?,
        target_host: host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        target_port: parse_port(target).map_err(|e| config_error(format!("TARGET_PORT {e}")))?,
    };
    forward
        .validate()
        .map_err(|e| config_error(format!("TARGET_HOST: {e}")))?;
    Ok(Some(forward))
}

fn forward_from_file(index: usize, f: ForwardConfig) -> Result<ForwardSpec> {
    let at = format!("forwards[{index}]");
    let port = |what: &str, value: u32| -> Result<u16> {
        match value {
            1..=65535 => Ok(value as u16),
            _ => Err(config_error(format!(
                "{at}.{what} {value} is outside 1-65535"
            ))),
        }
    };
    let forward = ForwardSpec {
        bind: f.bind.filter(|b| !b.is_empty() && b != "*"),
        source_port: port("source_port", f.source_port)?,
        target_host: f.target_host,
        target_port: port("target_port", f.target_port)?,
    };
    forward
        .validate()
        .map_err(|e| config_error(format!("{at}: {e}")))?;
    Ok(forward)
}

fn secs(
    what: &str,
    value: Option<u64>,
    default: Duration,
    allowed: std::ops::RangeInclusive<u64>,
) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) if allowed.contains(&s) => Ok(Duration::from_secs(s)),
        Some(s) => Err(config_error(format!(
            "{what} {s} is outside {}-{} seconds",
            allowed.start(),
            allowed.end()
        ))),
    }
}

/// Checks cipher names against what the linked libssh2 supports.
fn check_ciphers(ciphers: &[String]) -> Result<()> {
    if ciphers.is_empty() || ciphers.iter().any(String::is_empty) {
        return Err(config_error(
            "ciphers: the list is empty or has an empty name",
        ));
    }
    let session = ssh2::Session::new()
        .map_err(|e| Error::Local(format!("cannot create ssh session: {e}")))?;
    let supported = session
        .supported_algs(ssh2::MethodType::CryptCs)
        .map_err(|e| Error::Local(format!("cannot list ciphers: {e}")))?;
    for cipher in ciphers {
        if !supported.contains(&cipher.as_str()) {
            return Err(config_error(format!(
                "cipher {cipher:?} is not supported (allowed: {})",
                supported.join(", ")
            )));
        }
    }
    Ok(())
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
    fn env_triple_must_be_complete() {
        let mut env = HashMap::new();
        env.insert("SOURCE_PORT".to_string(), "8443".to_string());
        let err = forward_from_env(&env).unwrap_err().to_string();
        assert!(err.contains("TARGET_HOST, TARGET_PORT not set"), "{err}");
        env.insert("TARGET_HOST".into(), "gitlab".into());
        env.insert("TARGET_PORT".into(), "443".into());
        let f = forward_from_env(&env).unwrap().unwrap();
        assert_eq!(f.to_string(), "localhost:8443 -> gitlab:443");
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
    fn secret_is_masked_in_debug() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "MASKED");
    }
}
