//! systemd notification (sd_notify(3)) and the status file: how the service manager and
//! `flytube health` learn the daemon's state. Both do nothing unless asked for
//! (`NOTIFY_SOCKET` set by systemd, a status file path configured or `RUNTIME_DIRECTORY`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{State, unix_now};

/// The status file name inside `RUNTIME_DIRECTORY`.
pub const STATUS_FILE_NAME: &str = "status";
/// Where `flytube health` looks when nothing says otherwise: the packaged unit's
/// `RuntimeDirectory=flytube`.
pub const DEFAULT_STATUS_FILE: &str = "/run/flytube/status";

/// Talks to systemd when it runs us as `Type=notify`.
#[derive(Debug)]
pub struct Notifier {
    enabled: bool,
    /// Half the `WATCHDOG_USEC` systemd asked for (zero: no watchdog).
    watchdog_every: Duration,
    epoch: Instant,
    last_ping_ms: AtomicU64,
}

impl Notifier {
    /// From the environment systemd set up (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub fn from_env() -> Arc<Notifier> {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        // Ping twice per period, as sd_watchdog_enabled(3) recommends.
        let watchdog_every = match sd_notify::watchdog_enabled() {
            Some(period) if enabled => period / 2,
            _ => Duration::ZERO,
        };
        Arc::new(Notifier {
            enabled,
            watchdog_every,
            epoch: Instant::now(),
            last_ping_ms: AtomicU64::new(0),
        })
    }

    fn send(&self, states: &[sd_notify::NotifyState]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(states)
        {
            log::debug!("sd_notify: {e}");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
    }

    /// `STATUS=...`
    pub fn status(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    /// `STOPPING=1`
    pub fn stopping(&self) {
        self.send(&[sd_notify::NotifyState::Stopping]);
    }

    /// `RELOADING=1` then, once done, `READY=1`: systemd wants both around a reload.
    pub fn reloading(&self) {
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[sd_notify::NotifyState::Reloading, now]),
            Err(_) => self.send(&[sd_notify::NotifyState::Reloading]),
        }
    }

    /// `WATCHDOG=1`, at most twice per watchdog period. Called from the pump's loop and the
    /// supervisor's waits, so a wedged pump stops the pings and systemd restarts us.
    pub fn watchdog(&self) {
        if self.watchdog_every.is_zero() {
            return;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_ping_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.watchdog_every.as_millis() as u64 {
            self.last_ping_ms.store(now, Ordering::Relaxed);
            self.send(&[sd_notify::NotifyState::Watchdog]);
        }
    }

    /// How often the watchdog wants a ping (zero: never).
    pub fn watchdog_every(&self) -> Duration {
        self.watchdog_every
    }
}

/// The status file's content.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's process id.
    pub pid: u32,
    /// `ready`, `connecting`, `stopping`, ...
    pub state: String,
    /// What the daemon is doing, as in `STATUS=`.
    pub detail: String,
    /// Each forward and whether it is serving.
    pub forwards: Vec<ForwardStatus>,
    /// Unix time the daemon started.
    pub since: u64,
    /// Unix time of the last input from the relay (0: never).
    pub last_relay_input: u64,
    /// Unix time this file was written.
    pub updated: u64,
    /// The file is rewritten at least this often; older means the daemon is stuck.
    pub refresh_secs: u64,
}

/// One forward in the status file.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardStatus {
    /// The forward, as `flytube config` writes it.
    pub forward: String,
    /// True while the relay serves it.
    pub serving: bool,
    /// Connections open now.
    pub active: i64,
    /// Why it is not serving.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub problem: Option<String>,
}

impl Status {
    /// A snapshot of the state.
    pub fn of(state: &State, refresh: Duration) -> Status {
        let ready = state.readiness().is_ok();
        let word = if state.stopping() {
            "stopping"
        } else if ready {
            "ready"
        } else if state.session_up() {
            "degraded"
        } else {
            "connecting"
        };
        Status {
            pid: std::process::id(),
            state: word.into(),
            detail: state.summary(),
            forwards: state
                .forwards()
                .iter()
                .map(|f| ForwardStatus {
                    forward: f.name.clone(),
                    serving: f.is_bound(),
                    active: f.active(),
                    problem: f.problem().filter(|_| !f.is_bound()),
                })
                .collect(),
            since: state.started_unix(),
            last_relay_input: state.last_relay_input().as_secs(),
            updated: unix_now().as_secs(),
            refresh_secs: refresh.as_secs().max(1),
        }
    }
}

/// Writes `status` to `path` atomically: a reader sees the old file or the new one, never
/// half of one.
pub fn write_status(path: &Path, status: &Status) -> std::io::Result<()> {
    let text = serde_json::to_string(status).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
    }
    fs::rename(&tmp, path)
}

/// How often the reporter runs its daily job (the certificate review).
const DAILY: Duration = Duration::from_secs(86_400);

/// Starts the reporter thread: on every state change, and at least every `refresh`, it
/// rewrites the status file and sends systemd the status line (and `READY=1` the first
/// time every forward serves); at start and once a day it runs `daily` (the certificate
/// review). It ends with the process.
pub fn spawn_reporter(
    state: Arc<State>,
    notifier: Arc<Notifier>,
    status_file: Option<PathBuf>,
    refresh: Duration,
    daily: Box<dyn Fn() + Send>,
) -> Result<()> {
    thread::Builder::new()
        .name("reporter".into())
        .spawn(move || {
            let mut last_line = String::new();
            let mut last_daily: Option<Instant> = None;
            loop {
                if last_daily.is_none_or(|at| at.elapsed() >= DAILY) {
                    daily();
                    last_daily = Some(Instant::now());
                }
                let line = state.summary();
                if state.first_ready() {
                    notifier.ready(&line);
                } else if line != last_line {
                    notifier.status(&line);
                }
                last_line = line;
                if let Some(path) = &status_file
                    && let Err(e) = write_status(path, &Status::of(&state, refresh))
                {
                    log::warn!("cannot write status file {}: {e}", path.display());
                }
                state.wait_change(refresh);
            }
        })
        .map_err(|e| Error::Local(format!("cannot start the reporter thread: {e}")))?;
    Ok(())
}

/// `flytube health`: one line, and whether the daemon is alive, ready and its status file
/// fresh.
pub fn health(path: &Path) -> (bool, String) {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return (
                false,
                format!("unhealthy: cannot read status file {}: {e}", path.display()),
            );
        }
    };
    let status: Status = match serde_json::from_str(&text) {
        Ok(status) => status,
        Err(e) => {
            return (
                false,
                format!(
                    "unhealthy: status file {} is not valid: {e}",
                    path.display()
                ),
            );
        }
    };
    if !Path::new(&format!("/proc/{}", status.pid)).exists() {
        return (
            false,
            format!("unhealthy: flytube (pid {}) is not running", status.pid),
        );
    }
    let age = unix_now().as_secs().saturating_sub(status.updated);
    // Two missed refreshes plus slack: the reporter is stuck, or the daemon is.
    let limit = status.refresh_secs * 2 + 5;
    if age > limit {
        return (
            false,
            format!(
                "unhealthy: status file is {age}s old (limit {limit}s): flytube (pid {}) is stuck",
                status.pid
            ),
        );
    }
    if status.state != "ready" {
        return (
            false,
            format!("not ready (pid {}): {}", status.pid, status.detail),
        );
    }
    (
        true,
        format!("ready (pid {}): {}", status.pid, status.detail),
    )
}

/// The status file to use: the one configured, or `$RUNTIME_DIRECTORY/status` under
/// systemd's `RuntimeDirectory=`.
pub fn default_status_file() -> Option<PathBuf> {
    let dir = std::env::var_os("RUNTIME_DIRECTORY")?;
    // systemd may pass several directories separated by ':'; the first is ours.
    let first = dir.to_string_lossy().split(':').next()?.to_string();
    Some(Path::new(&first).join(STATUS_FILE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ForwardState;

    #[test]
    fn health_reads_what_the_reporter_writes() {
        let dir = std::env::temp_dir().join(format!("flytube-health-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status");
        let forward = Arc::new(ForwardState::new("a".into(), "localhost:1".into()));
        let state = State::new(vec![forward.clone()]);
        write_status(&path, &Status::of(&state, Duration::from_secs(15))).unwrap();
        let (ok, line) = health(&path);
        assert!(!ok && line.starts_with("not ready"), "{line}");
        state.set_session(true, "connected to relay r:22");
        forward.set_bound();
        write_status(&path, &Status::of(&state, Duration::from_secs(15))).unwrap();
        let (ok, line) = health(&path);
        assert!(ok, "{line}");
        assert!(line.contains("1/1 forwards serving"), "{line}");
        fs::write(&path, "{").unwrap();
        assert!(!health(&path).0);
        fs::remove_dir_all(&dir).unwrap();
        let (ok, line) = health(&path);
        assert!(!ok && line.contains("cannot read status file"), "{line}");
    }
}
