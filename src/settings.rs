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
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::secret::Secret;
pub use forwards::ONBOARDING_VARIABLES;
pub use proxy::PROXY_ENV;
pub use sections::*;

use crate::cli::Options;
use crate::config::{self, FileConfig};
use crate::dynamic::Policy;
use crate::error::{Error, Result};
use crate::forward::ForwardSpec;
use crate::hostkey::HostKeyPolicy;

/// The settings file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/flytube/flytube.yaml";
/// The environment variable holding the key passphrase, if any.
pub const PASSPHRASE_ENV: &str = "FLYTUBE_PASSPHRASE";

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
    /// Ciphers below the product's promise were explicitly allowed.
    pub allow_weaker_ciphers: bool,
    /// Log level and format.
    pub log: LogSettings,
    /// Where dynamic forwards may connect.
    pub policy: Arc<Policy>,
    /// The operator endpoint.
    pub metrics: MetricsSettings,
    /// The JSON status file for `flytube health`, if any.
    pub status_file: Option<PathBuf>,
    /// What was ignored while building the settings, and why; logged at start and shown
    /// by `flytube config` and `flytube check`.
    pub notes: Vec<String>,
}

/// Re-reads the settings the way they were first built (same command line and
/// environment, the file read again); called on SIGHUP.
pub type Reloader = dyn Fn() -> Result<Settings> + Send + Sync;

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
        let mut notes = Vec::new();
        let allow_weaker_ciphers =
            options.allow_weaker_ciphers || file.allow_weaker_ciphers.unwrap_or(false);
        let forwards = forwards::build(
            &options.forwards,
            env,
            file.forwards,
            target_via(options)?,
            &mut notes,
        )?;
        let policy = build_policy(options, env, file.allow, file.deny, &forwards)?;
        Ok(Settings {
            config_path,
            relay: RelaySettings::build(options, env, file.relay.unwrap_or_default())?,
            auth: AuthSettings::build(options, env, file.auth.unwrap_or_default())?,
            host_key: build_host_key(
                options,
                file.host_key.unwrap_or_default(),
                host_key == HostKeyRequirement::Required,
            )?,
            forwards,
            policy: Arc::new(policy),
            keepalive: KeepaliveSettings::build(options, file.keepalive.unwrap_or_default())?,
            reconnect: ReconnectSettings::build(file.reconnect.unwrap_or_default())?,
            limits: LimitsSettings::build(options, file.limits.unwrap_or_default())?,
            ciphers: build_ciphers(options, file.ciphers, allow_weaker_ciphers)?,
            allow_weaker_ciphers,
            log: LogSettings::build(options, file.log.unwrap_or_default())?,
            metrics: MetricsSettings::build(options, file.metrics.unwrap_or_default())?,
            status_file: options
                .status_file
                .clone()
                .or(file.status_file)
                .or_else(crate::notify::default_status_file),
            notes,
        })
    }

    /// What differs in `new`, one line per changed part, saying how it is applied.
    pub fn changes(&self, new: &Settings) -> Vec<String> {
        let mut out = Vec::new();
        let note = |out: &mut Vec<String>, changed: bool, what: &str, how: &str| {
            if changed {
                out.push(format!("{what} changed: {how}"));
            }
        };
        let session = "reconnecting with the new settings";
        note(&mut out, self.relay != new.relay, "relay", session);
        note(&mut out, self.auth != new.auth, "auth", session);
        note(&mut out, self.host_key != new.host_key, "host_key", session);
        note(
            &mut out,
            self.ciphers != new.ciphers || self.allow_weaker_ciphers != new.allow_weaker_ciphers,
            "ciphers",
            session,
        );
        for spec in new.forwards.iter().filter(|f| !self.forwards.contains(f)) {
            out.push(format!("forward {spec} added"));
        }
        for spec in self.forwards.iter().filter(|f| !new.forwards.contains(f)) {
            out.push(format!(
                "forward {spec} removed: cancelled on the relay; its open connections finish"
            ));
        }
        let now = "applied now";
        let next = "applies from the next session";
        let restart = "applies after a restart";
        note(&mut out, self.keepalive != new.keepalive, "keepalive", next);
        note(&mut out, self.reconnect != new.reconnect, "reconnect", now);
        note(&mut out, self.limits != new.limits, "limits", now);
        note(&mut out, self.policy != new.policy, "allow/deny", now);
        note(&mut out, self.log != new.log, "log", restart);
        note(&mut out, self.metrics != new.metrics, "metrics", restart);
        note(
            &mut out,
            self.status_file != new.status_file,
            "status_file",
            restart,
        );
        out
    }

    /// True when `new` cannot be applied to a running session: another relay, identity,
    /// host key policy or cipher list.
    pub fn needs_new_session(&self, new: &Settings) -> bool {
        self.relay != new.relay
            || self.auth != new.auth
            || self.host_key != new.host_key
            || self.ciphers != new.ciphers
            || self.allow_weaker_ciphers != new.allow_weaker_ciphers
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
            allow: Some(
                self.policy
                    .allow
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .collect(),
            ),
            deny: Some(
                self.policy
                    .deny
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .collect(),
            ),
            allow_weaker_ciphers: Some(self.allow_weaker_ciphers),
            log: Some(self.log.to_file()),
            metrics: Some(self.metrics.to_file()),
            status_file: self.status_file.clone(),
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
        for note in &self.notes {
            out.push_str(&format!("# note: {note}\n"));
        }
        out.push_str(&config::render_yaml(&self.to_file_config()));
        out
    }
}

/// `--target-via` / `FLYTUBE_TARGET_VIA`, if given.
fn target_via(options: &Options) -> Result<Option<crate::forward::Via>> {
    options
        .target_via
        .as_deref()
        .map(|text| crate::forward::Via::parse(text).map_err(config_error))
        .transpose()
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

/// The largest settings, key, certificate, known_hosts or passphrase file flytube reads:
/// far above any real one, far below what could exhaust memory.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Reads a regular file of at most `MAX_FILE_SIZE` bytes. A FIFO (which would block) or a
/// device such as /dev/zero (which never ends) is refused before it is opened for reading.
fn read_file(role: &'static str, path: &Path) -> Result<String> {
    let file = check_readable(role, path)?;
    let mut text = String::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(file_error(role, path))?;
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(config_error(format!(
            "{role} file {} is larger than {MAX_FILE_SIZE} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// Checks that `path` is a readable regular file of a sane size, and opens it.
fn check_readable(role: &'static str, path: &Path) -> Result<fs::File> {
    let meta = fs::metadata(path).map_err(file_error(role, path))?;
    if !meta.is_file() {
        return Err(config_error(format!(
            "{role} {} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(config_error(format!(
            "{role} file {} is larger than {MAX_FILE_SIZE} bytes",
            path.display()
        )));
    }
    fs::File::open(path).map_err(file_error(role, path))
}

/// OpenSSH's rule for private keys (`sshkey_perm_ok`): a key owned by the user flytube runs
/// as must not be readable or writable by group or others. A key owned by someone else
/// (root:flytube 0640, a Kubernetes secret with fsGroup) is allowed: its owner decided.
fn check_key_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::metadata(path).map_err(file_error("identity", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if Some(meta.uid()) == effective_uid() && mode & 0o077 != 0 {
        return Err(config_error(format!(
            "identity {} is accessible by others (mode {mode:04o}): a private key must be \
             readable by its owner only; run: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// The user id flytube runs as, read without `unsafe` from the owner of `/proc/self`
/// (Linux gives a process's /proc directory its effective uid).
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").ok().map(|m| m.uid())
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
    duration(what, value, default, allowed, Duration::from_secs)
}

/// A microseconds setting: `default` when unset, else checked against `allowed`.
fn micros(
    what: &str,
    value: Option<u64>,
    default: Duration,
    allowed: std::ops::RangeInclusive<u64>,
) -> Result<Duration> {
    duration(what, value, default, allowed, Duration::from_micros)
}

/// A milliseconds setting: `default` when unset, else checked against `allowed`.
fn millis(
    what: &str,
    value: Option<u64>,
    default: Duration,
    allowed: std::ops::RangeInclusive<u64>,
) -> Result<Duration> {
    duration(what, value, default, allowed, Duration::from_millis)
}

fn duration(
    what: &str,
    value: Option<u64>,
    default: Duration,
    allowed: std::ops::RangeInclusive<u64>,
    unit: fn(u64) -> Duration,
) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(n) => in_range(what, n, allowed).map(unit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_masked_in_debug() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "MASKED");
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
