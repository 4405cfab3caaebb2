//! Validated settings, built from the YAML file, the environment and the command line
//! (in rising precedence) before any work starts. The core reads nothing else.
//!
//! One pipeline: read the file, then build each section from the command line, the file
//! and the defaults with its own short function (`settings/sections.rs`,
//! `settings/forwards.rs`). New features add a section, not lines here.

mod forwards;
mod proxy;
mod sections;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use forwards::ONBOARDING_VARIABLES;
pub use proxy::PROXY_ENV;
pub use sections::*;

use crate::cli::Options;
use crate::config::{self, FileConfig};
use crate::error::{Error, Result};
use crate::forward::ForwardSpec;
use crate::hostkey::HostKeyPolicy;

/// The settings file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/flytube/flytube.yaml";
/// The environment variable holding the key passphrase, if any.
pub const PASSPHRASE_ENV: &str = "FLYTUBE_PASSPHRASE";

/// A secret that never shows in Debug output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from a file, the environment or a URL.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

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

/// Validated settings for every part of flytube, in the sections of the YAML file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The settings file that was read, if any.
    pub config_path: Option<PathBuf>,
    /// Where the relay is and who we are there.
    pub relay: RelaySettings,
    /// Key, certificate, passphrase.
    pub auth: AuthSettings,
    /// How the relay's host key is trusted.
    pub host_key: HostKeyPolicy,
    /// Remote forwards, at least one.
    pub forwards: Vec<ForwardSpec>,
    /// Liveness probing of the relay.
    pub keepalive: KeepaliveSettings,
    /// Reconnect backoff.
    pub reconnect: ReconnectSettings,
    /// Limits and timeouts of forwarded connections.
    pub limits: LimitsSettings,
    /// Ciphers in order of preference.
    pub ciphers: Vec<String>,
    /// Log level and format.
    pub log: LogSettings,
}

/// Whether the settings must say how to trust the relay's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyRequirement {
    /// `run` and `config`: flytube never trusts an unknown relay.
    Required,
    /// `check`: without a file or pin it shows the relay's fingerprint (and fails).
    Optional,
}

impl Settings {
    /// Builds settings from the command line options and an environment lookup
    /// (`SOURCE_PORT`, `TARGET_HOST`, `TARGET_PORT`, `FLYTUBE_PASSPHRASE`, and
    /// `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY` in either case). Every problem is reported
    /// before anything connects.
    pub fn build(options: &Options, env: &HashMap<String, String>) -> Result<Settings> {
        Settings::build_with(options, env, HostKeyRequirement::Required)
    }

    /// Like `build`, but a missing host key setting is allowed: `flytube check` then shows
    /// the relay's fingerprint and the line to pin it (and still fails).
    pub fn build_for_check(options: &Options, env: &HashMap<String, String>) -> Result<Settings> {
        Settings::build_with(options, env, HostKeyRequirement::Optional)
    }

    fn build_with(
        options: &Options,
        env: &HashMap<String, String>,
        host_key: HostKeyRequirement,
    ) -> Result<Settings> {
        let (file, config_path) = load_file(options.config.as_deref())?;
        Ok(Settings {
            config_path,
            relay: RelaySettings::build(options, env, file.relay.unwrap_or_default())?,
            auth: AuthSettings::build(options, env, file.auth.unwrap_or_default())?,
            host_key: build_host_key(
                options,
                file.host_key.unwrap_or_default(),
                host_key == HostKeyRequirement::Required,
            )?,
            forwards: forwards::build(&options.forwards, env, file.forwards)?,
            keepalive: KeepaliveSettings::build(options, file.keepalive.unwrap_or_default())?,
            reconnect: ReconnectSettings::build(file.reconnect.unwrap_or_default())?,
            limits: LimitsSettings::build(options, file.limits.unwrap_or_default())?,
            ciphers: build_ciphers(options, file.ciphers)?,
            log: LogSettings::build(options, file.log.unwrap_or_default())?,
        })
    }

    /// The effective settings in the file's own shape, for `flytube config`.
    pub fn to_file_config(&self) -> FileConfig {
        FileConfig {
            relay: Some(self.relay.to_file()),
            auth: Some(self.auth.to_file()),
            host_key: Some(host_key_to_file(&self.host_key)),
            forwards: Some(forwards::to_file(&self.forwards)),
            keepalive: Some(self.keepalive.to_file()),
            reconnect: Some(self.reconnect.to_file()),
            limits: Some(self.limits.to_file()),
            ciphers: Some(self.ciphers.clone()),
            log: Some(self.log.to_file()),
        }
    }

    /// `flytube config` output: YAML, with where the settings came from and secrets masked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.config_path {
            Some(path) => out.push_str(&format!("# settings file: {}\n", path.display())),
            None => out.push_str("# settings file: none\n"),
        }
        match &self.auth.passphrase_source {
            Some(source) => out.push_str(&format!("# key passphrase: MASKED (from {source})\n")),
            None => out.push_str("# key passphrase: none\n"),
        }
        out.push_str(&proxy::comment(
            &self.relay.proxy,
            self.relay.proxy_password_file.as_deref(),
        ));
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

fn file_error(role: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::File { role, path, source }
}

fn read_file(role: &'static str, path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(file_error(role, path))
}

fn check_readable(role: &'static str, path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(file_error(role, path))?;
    if !meta.is_file() {
        return Err(config_error(format!(
            "{role} {} is not a regular file",
            path.display()
        )));
    }
    fs::File::open(path).map_err(file_error(role, path))?;
    Ok(())
}

/// A value that must lie in `allowed`; the error names it and the range.
fn in_range<T: PartialOrd + fmt::Display>(
    what: &str,
    value: T,
    allowed: std::ops::RangeInclusive<T>,
) -> Result<T> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(config_error(format!(
            "{what} {value} is outside {}-{}",
            allowed.start(),
            allowed.end()
        )))
    }
}

/// A whole-seconds setting: `default` when unset, else checked against `allowed`.
fn secs(
    what: &str,
    value: Option<u64>,
    default: Duration,
    allowed: std::ops::RangeInclusive<u64>,
) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) => in_range(what, s, allowed).map(Duration::from_secs),
    }
}

/// A milliseconds setting: `default` when unset, else checked against `allowed`.
fn millis(
    what: &str,
    value: Option<u64>,
    default: Duration,
    allowed: std::ops::RangeInclusive<u64>,
) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(ms) => in_range(what, ms, allowed).map(Duration::from_millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_masked_in_debug() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "MASKED");
    }

    #[test]
    fn ranges_name_the_value() {
        let err = secs("x.y_secs", Some(0), Duration::ZERO, 1..=9)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.y_secs 0 is outside 1-9"), "{err}");
        assert_eq!(
            millis("m", None, Duration::from_millis(5), 1..=9).unwrap(),
            Duration::from_millis(5)
        );
    }
}
