//! The YAML settings file: its shape, and the one function that parses it.
//!
//! serde_yaml is deprecated upstream; `parse_yaml` is the only place that calls it, so the
//! parser can be swapped without touching anything else.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole file. Every field is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the relay is and who we are there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayConfig>,
    /// Key, certificate and passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// How the relay's host key is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<HostKeyConfig>,
    /// Remote forwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwards: Option<Vec<ForwardConfig>>,
    /// Liveness probing of the relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<KeepaliveConfig>,
    /// Reconnection backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<ReconnectConfig>,
    /// Resource limits and timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsConfig>,
    /// SSH ciphers in order of preference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<Vec<String>>,
    /// Destinations a dynamic forward may reach (rules: HOST[:PORT], HOST:LOW-HIGH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Destinations a dynamic forward must not reach; wins over `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
    /// Allow ciphers below 256-bit AEAD/CTR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_weaker_ciphers: Option<bool>,
    /// Log level and format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogConfig>,
    /// The operator endpoint (Prometheus metrics, /healthz, /readyz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// Where the daemon keeps its JSON status for `flytube health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_file: Option<PathBuf>,
}

/// `relay:`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Relay host name or address.
    pub host: Option<String>,
    /// Relay SSH port.
    pub port: Option<u16>,
    /// User name on the relay.
    pub user: Option<String>,
    /// TCP connect limit per address.
    pub connect_timeout_secs: Option<u64>,
    /// SSH handshake and authentication limit.
    pub handshake_timeout_secs: Option<u64>,
    /// Proxy URL (`http://`, `socks5://`, `socks5h://`), or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// File whose first line is the proxy password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password_file: Option<PathBuf>,
}

/// `auth:`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Private key file.
    pub identity: Option<PathBuf>,
    /// OpenSSH certificate file.
    pub certificate: Option<PathBuf>,
    /// File holding the key's passphrase.
    pub passphrase_file: Option<PathBuf>,
}

/// `host_key:`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostKeyConfig {
    /// known_hosts file.
    pub known_hosts: Option<PathBuf>,
    /// Pinned `SHA256:` fingerprint.
    pub fingerprint: Option<String>,
}

/// One item of `forwards:`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Address the relay binds (default `localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Port on the relay.
    pub source_port: u32,
    /// Host dialed inside the network; none (with no port) for a dynamic forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_host: Option<String>,
    /// Port dialed inside the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
    /// `direct` (default) or `relay`: where the target is dialed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// `keepalive:`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeepaliveConfig {
    /// Seconds of silence before a probe.
    pub interval_secs: Option<u64>,
    /// Probes without an answer before the session is rebuilt.
    pub count: Option<u32>,
}

/// `reconnect:`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReconnectConfig {
    /// First backoff step.
    pub initial_delay_ms: Option<u64>,
    /// Largest backoff step.
    pub max_delay_secs: Option<u64>,
    /// Largest wait between requests of a forward the relay refused (a standby replica
    /// waiting for the active one's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_retry_secs: Option<u64>,
}

/// `limits:`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most connections served at once.
    pub max_connections: Option<usize>,
    /// Limit on dialing a target.
    pub target_connect_timeout_secs: Option<u64>,
    /// Close connections idle this long; 0 = never.
    pub idle_timeout_secs: Option<u64>,
    /// On SIGTERM, how long in-flight connections may finish.
    pub drain_timeout_secs: Option<u64>,
    /// How long a dynamic-forward client has for its SOCKS / HTTP CONNECT handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_secs: Option<u64>,
    /// How long the pump may poll, without sleeping, before it sleeps; 0 = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_poll_us: Option<u64>,
    /// Most relay data held for targets that do not keep up, in MiB, before flytube stops
    /// reading the relay until they take some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued_mib: Option<u64>,
}

/// `log:`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// error, warn, info, debug or trace.
    pub level: Option<String>,
    /// text or json.
    pub format: Option<String>,
}

/// `metrics:`
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `ADDRESS:PORT` to serve on; unset: no endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Allow a non-loopback listen address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_remote: Option<bool>,
}

/// Parses the YAML text of a settings file. `origin` names the file in errors, which
/// carry the line and column of the problem.
pub fn parse_yaml(text: &str, origin: &str) -> Result<FileConfig, String> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    check_shape(text).map_err(|e| format!("{origin} {e}"))?;
    serde_yaml::from_str(text).map_err(|e| match e.location() {
        Some(at) => format!(
            "{origin} line {} column {}: {}",
            at.line(),
            at.column(),
            strip_location(&e.to_string())
        ),
        None => format!("{origin}: {e}"),
    })
}

/// Deepest nesting of `[`/`{` collections a settings file may have: the real format needs 3.
pub const MAX_FLOW_DEPTH: usize = 16;
/// Deepest indentation (in columns) a settings file may have: the real format needs 6.
pub const MAX_INDENT: usize = 64;

/// Refuses what the settings format never needs and a parser would pay dearly for: YAML
/// anchors and aliases (an alias bomb of 100 KB expands to hundreds of MB), deeply nested
/// flow collections (100k `[` took half a minute of CPU) and absurd indentation. A cheap
/// scan that skips comments and quoted strings, run before the real parser.
fn check_shape(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for (number, line) in text.lines().enumerate() {
        let at = |what: String| format!("line {}: {what}", number + 1);
        let indent = line.len() - line.trim_start().len();
        if indent > MAX_INDENT {
            return Err(at(format!(
                "indented {indent} columns; settings are never nested that deep (limit {MAX_INDENT})"
            )));
        }
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') if previous.is_whitespace() => break,
                (None, '\'' | '"') if previous.is_whitespace() || "[{,:-".contains(previous) => {
                    quote = Some(c)
                }
                (None, '&' | '*') if previous.is_whitespace() || "[{,".contains(previous) => {
                    return Err(at(format!(
                        "YAML anchors and aliases ({c}name) are not allowed in the settings \
                         file; write each value out (quote a value that starts with {c})"
                    )));
                }
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(at(format!(
                            "collections nested more than {MAX_FLOW_DEPTH} deep"
                        )));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            previous = c;
        }
    }
    Ok(())
}

/// Renders effective settings as YAML for `flytube config`.
pub fn render_yaml(config: &FileConfig) -> String {
    serde_yaml::to_string(config).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
}

/// serde_yaml appends " at line L column C" to its messages; we print the location first.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let err = parse_yaml("relay:\n  host: a\n  prot: 22\n", "f.yaml").unwrap_err();
        assert!(err.contains("f.yaml line 3"), "{err}");
        assert!(err.contains("unknown field `prot`"), "{err}");
    }

    #[test]
    fn syntax_error_names_line() {
        let err = parse_yaml("relay:\n  host: [a\n", "f.yaml").unwrap_err();
        assert!(err.starts_with("f.yaml line "), "{err}");
    }

    #[test]
    fn anchors_aliases_and_deep_nesting_are_refused() {
        let bomb = "a: &a [x, x]\nb: &b [*a, *a]\n";
        let err = parse_yaml(bomb, "f.yaml").unwrap_err();
        assert!(err.contains("f.yaml line 1: YAML anchors"), "{err}");
        let deep = format!("relay: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let err = parse_yaml(&deep, "f.yaml").unwrap_err();
        assert!(err.contains("nested more than 16"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Stars and ampersands inside quotes and comments are plain text.
        let fine = "forwards:\n  - bind: '*'   # all & every\n    source_port: 1\n    target_host: \"a&b\"\n    target_port: 2\n";
        assert!(parse_yaml(fine, "f.yaml").is_ok());
    }

    #[test]
    fn empty_file_is_empty_config() {
        let config = parse_yaml("\n# nothing\n", "f.yaml").unwrap();
        assert!(config.relay.is_none());
    }
}
