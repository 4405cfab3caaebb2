//! What flytube is doing right now, for the operator-facing parts (metrics, readiness,
//! the status file, systemd notify). The pump and the supervisor write it; the hot path
//! only touches atomics through an `Arc<ForwardState>` it already holds, never a lock.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::sync::lock;

/// How a forwarded connection ended, as the `result` label of
/// `flytube_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnResult {
    /// Both sides finished normally.
    Completed,
    /// Refused by flytube (stopping, or a thread could not start).
    Refused,
    /// Refused because `limits.max_connections` were open.
    Limit,
    /// The target could not be reached (or was not allowed).
    TargetFailed,
    /// Ended early: idle limit, drain limit, reset, lost session.
    Aborted,
}

impl ConnResult {
    /// Every result, in label order.
    pub const ALL: [ConnResult; 5] = [
        ConnResult::Completed,
        ConnResult::Refused,
        ConnResult::Limit,
        ConnResult::TargetFailed,
        ConnResult::Aborted,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ConnResult::Completed => "completed",
            ConnResult::Refused => "refused",
            ConnResult::Limit => "limit",
            ConnResult::TargetFailed => "target_failed",
            ConnResult::Aborted => "aborted",
        }
    }
}

/// One forward's counters and whether the relay is serving it.
#[derive(Debug)]
pub struct ForwardState {
    /// The forward as `flytube config` writes it, e.g. `localhost:8443 -> gitlab:443`.
    pub name: String,
    /// The relay address of the forward, e.g. `0.0.0.0:8443` (the metrics label).
    pub label: String,
    bound: AtomicBool,
    problem: Mutex<Option<String>>,
    active: AtomicI64,
    results: [AtomicU64; 5],
    bytes_to_target: AtomicU64,
    bytes_from_target: AtomicU64,
}

impl ForwardState {
    /// A forward not yet requested.
    pub fn new(name: String, label: String) -> ForwardState {
        ForwardState {
            name,
            label,
            bound: AtomicBool::new(false),
            problem: Mutex::new(Some("not requested yet".into())),
            active: AtomicI64::new(0),
            results: Default::default(),
            bytes_to_target: AtomicU64::new(0),
            bytes_from_target: AtomicU64::new(0),
        }
    }

    /// The relay granted the forward.
    pub fn set_bound(&self) {
        self.bound.store(true, Ordering::SeqCst);
        *lock(&self.problem) = None;
    }

    /// The forward is not serving, and why ("refused: port in use or not permitted").
    pub fn set_unbound(&self, why: impl Into<String>) {
        self.bound.store(false, Ordering::SeqCst);
        *lock(&self.problem) = Some(why.into());
    }

    /// True while the relay serves it.
    pub fn is_bound(&self) -> bool {
        self.bound.load(Ordering::SeqCst)
    }

    /// Why it is not serving, if it is not.
    pub fn problem(&self) -> Option<String> {
        lock(&self.problem).clone()
    }

    /// A connection started.
    pub fn opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection that `opened` ended.
    pub fn closed(&self, result: ConnResult) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.count(result);
    }

    /// Counts a connection that ended, whether or not it was ever `opened`.
    pub fn count(&self, result: ConnResult) {
        let index = ConnResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.results[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes moved: relay -> target and target -> relay.
    pub fn add_bytes(&self, to_target: u64, from_target: u64) {
        if to_target > 0 {
            self.bytes_to_target.fetch_add(to_target, Ordering::Relaxed);
        }
        if from_target > 0 {
            self.bytes_from_target
                .fetch_add(from_target, Ordering::Relaxed);
        }
    }

    /// Connections open now.
    pub fn active(&self) -> i64 {
        self.active.load(Ordering::Relaxed).max(0)
    }

    /// Connections ended with `result` so far.
    pub fn total(&self, result: ConnResult) -> u64 {
        let index = ConnResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.results[index].load(Ordering::Relaxed)
    }

    /// Bytes moved so far: (to target, from target).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_to_target.load(Ordering::Relaxed),
            self.bytes_from_target.load(Ordering::Relaxed),
        )
    }
}

/// The daemon's state as a whole.
#[derive(Debug)]
pub struct State {
    started_unix: u64,
    session_up: AtomicBool,
    /// The pump holds the relay's input: its connections hold `limits.max_queued_mib`.
    input_held: AtomicBool,
    input_holds: AtomicU64,
    ever_ready: AtomicBool,
    reconnects: AtomicU64,
    /// Busy polls that found the answer, and those that ran out and slept.
    busy_polls: [AtomicU64; 2],
    last_relay_input_ms: AtomicU64,
    certificate_expiry: AtomicI64,
    stopping: AtomicBool,
    phase: Mutex<String>,
    forwards: RwLock<Vec<Arc<ForwardState>>>,
    changed_tx: Sender<()>,
    changed_rx: Receiver<()>,
}

impl State {
    /// Fresh state for these forwards.
    pub fn new(forwards: Vec<Arc<ForwardState>>) -> Arc<State> {
        let (changed_tx, changed_rx) = bounded(1);
        Arc::new(State {
            started_unix: unix_now().as_secs(),
            session_up: AtomicBool::new(false),
            input_held: AtomicBool::new(false),
            input_holds: AtomicU64::new(0),
            ever_ready: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            busy_polls: [AtomicU64::new(0), AtomicU64::new(0)],
            last_relay_input_ms: AtomicU64::new(0),
            certificate_expiry: AtomicI64::new(0),
            stopping: AtomicBool::new(false),
            phase: Mutex::new("starting".into()),
            forwards: RwLock::new(forwards),
            changed_tx,
            changed_rx,
        })
    }

    /// Wakes whoever reports the state (status file, systemd): something changed.
    pub fn changed(&self) {
        let _ = self.changed_tx.try_send(());
    }

    /// Waits for a change, at most `timeout`; true if one came.
    pub fn wait_change(&self, timeout: Duration) -> bool {
        self.changed_rx.recv_timeout(timeout).is_ok()
    }

    /// The forwards, in configuration order.
    pub fn forwards(&self) -> Vec<Arc<ForwardState>> {
        self.forwards
            .read()
            .map(|f| f.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Replaces the forward list (settings reloaded).
    pub fn set_forwards(&self, forwards: Vec<Arc<ForwardState>>) {
        match self.forwards.write() {
            Ok(mut f) => *f = forwards,
            Err(e) => *e.into_inner() = forwards,
        }
        self.changed();
    }

    /// The session came up or went down; `phase` says what happens now.
    pub fn set_session(&self, up: bool, phase: impl Into<String>) {
        self.session_up.store(up, Ordering::SeqCst);
        if !up {
            for forward in self.forwards() {
                forward.set_unbound("no session with the relay");
            }
        }
        self.set_phase(phase);
    }

    /// A short description of what the daemon is doing, for `STATUS=` and the status file.
    pub fn set_phase(&self, phase: impl Into<String>) {
        *lock(&self.phase) = phase.into();
        self.changed();
    }

    /// What the daemon is doing.
    pub fn phase(&self) -> String {
        lock(&self.phase).clone()
    }

    /// True while a session is up.
    pub fn session_up(&self) -> bool {
        self.session_up.load(Ordering::SeqCst)
    }

    /// The pump started (true) or stopped (false) holding the relay's input.
    pub fn set_input_held(&self, held: bool) {
        if !self.input_held.swap(held, Ordering::Relaxed) && held {
            self.input_holds.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True while the pump holds the relay's input; and how many times it started to.
    pub fn input_held(&self) -> (bool, u64) {
        (
            self.input_held.load(Ordering::Relaxed),
            self.input_holds.load(Ordering::Relaxed),
        )
    }

    /// One more reconnect.
    pub fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Reconnects so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// One more busy poll before a sleep: `answered` if something became ready within
    /// the limit, else the pump went to sleep after it.
    pub fn count_busy_poll(&self, answered: bool) {
        self.busy_polls[usize::from(!answered)].fetch_add(1, Ordering::Relaxed);
    }

    /// Busy polls so far: (answered, ran out).
    pub fn busy_polls(&self) -> (u64, u64) {
        (
            self.busy_polls[0].load(Ordering::Relaxed),
            self.busy_polls[1].load(Ordering::Relaxed),
        )
    }

    /// The relay sent something just now (called at most once per pump wake-up).
    pub fn touch_relay_input(&self) {
        let now = unix_now().as_millis() as u64;
        self.last_relay_input_ms.store(now, Ordering::Relaxed);
    }

    /// Unix time of the last input from the relay (0: never).
    pub fn last_relay_input(&self) -> Duration {
        Duration::from_millis(self.last_relay_input_ms.load(Ordering::Relaxed))
    }

    /// Unix time the certificate expires (0: no certificate).
    pub fn set_certificate_expiry(&self, unix_secs: i64) {
        self.certificate_expiry.store(unix_secs, Ordering::Relaxed);
    }

    /// Unix time the certificate expires (0: no certificate).
    pub fn certificate_expiry(&self) -> i64 {
        self.certificate_expiry.load(Ordering::Relaxed)
    }

    /// The drain started.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.set_phase("stopping: draining connections");
    }

    /// True once the drain started.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Unix time the process started.
    pub fn started_unix(&self) -> u64 {
        self.started_unix
    }

    /// Ready: a session is up and every forward is bound. Otherwise what is missing, one
    /// item per line.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut missing = Vec::new();
        if self.stopping() {
            missing.push("flytube is stopping".to_string());
        } else if !self.session_up() {
            missing.push(format!("no session with the relay: {}", self.phase()));
        } else {
            for forward in self.forwards() {
                if let Some(problem) = forward.problem().filter(|_| !forward.is_bound()) {
                    missing.push(format!("forward {} {problem}", forward.label));
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }

    /// True the first time every forward is bound (for systemd's `READY=1`).
    pub fn first_ready(&self) -> bool {
        self.readiness().is_ok() && !self.ever_ready.swap(true, Ordering::SeqCst)
    }

    /// `connected to relay; 2/2 forwards serving`, or the phase when not connected.
    pub fn summary(&self) -> String {
        if !self.session_up() || self.stopping() {
            return self.phase();
        }
        let forwards = self.forwards();
        let bound = forwards.iter().filter(|f| f.is_bound()).count();
        format!(
            "{}; {bound}/{} forwards serving",
            self.phase(),
            forwards.len()
        )
    }
}

/// Time since the Unix epoch (zero if the clock is before it).
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Arc<State> {
        State::new(vec![
            Arc::new(ForwardState::new("a".into(), "localhost:1".into())),
            Arc::new(ForwardState::new("b".into(), "localhost:2".into())),
        ])
    }

    #[test]
    fn ready_only_with_session_and_every_forward() {
        let state = two();
        assert!(state.readiness().is_err());
        state.set_session(true, "connected to relay r:22");
        let forwards = state.forwards();
        forwards[0].set_bound();
        let missing = state.readiness().unwrap_err();
        assert_eq!(missing, vec!["forward localhost:2 not requested yet"]);
        forwards[1].set_unbound("refused: port in use or not permitted");
        assert!(state.readiness().unwrap_err()[0].contains("refused"));
        forwards[1].set_bound();
        assert!(state.readiness().is_ok());
        assert!(state.first_ready());
        assert!(!state.first_ready(), "READY=1 is sent once");
        assert_eq!(
            state.summary(),
            "connected to relay r:22; 2/2 forwards serving"
        );
        state.set_session(false, "reconnecting in 4s");
        assert!(!forwards[0].is_bound());
        assert!(state.readiness().unwrap_err()[0].contains("reconnecting in 4s"));
    }

    #[test]
    fn counters_add_up() {
        let forward = ForwardState::new("a".into(), "l:1".into());
        forward.opened();
        forward.opened();
        forward.add_bytes(10, 0);
        forward.add_bytes(5, 7);
        forward.closed(ConnResult::Completed);
        forward.count(ConnResult::Limit);
        assert_eq!(forward.active(), 1);
        assert_eq!(forward.total(ConnResult::Completed), 1);
        assert_eq!(forward.total(ConnResult::Limit), 1);
        assert_eq!(forward.bytes(), (15, 7));
    }
}
