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
    /// Log level and format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogConfig>,
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
    /// Host dialed inside the network.
    pub target_host: String,
    /// Port dialed inside the network.
    pub target_port: u32,
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

/// Parses the YAML text of a settings file. `origin` names the file in errors, which
/// carry the line and column of the problem.
pub fn parse_yaml(text: &str, origin: &str) -> Result<FileConfig, String> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
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
    fn empty_file_is_empty_config() {
        let config = parse_yaml("\n# nothing\n", "f.yaml").unwrap();
        assert!(config.relay.is_none());
    }
}
