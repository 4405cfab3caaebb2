//! The supervisor: connects, runs the pump on each session, and reconnects with backoff
//! until stopped. It decides which failures are retried and which end the process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::cert::{Certificate, Severity};
use crate::error::{Error, Result};
use crate::metrics;
use crate::notify::{self, Notifier};
use crate::pool::Pool;
use crate::proxy::ProxyChoice;
use crate::pump::{Pump, PumpEnd, PumpParts};
use crate::relay::{self, Connected, Negotiated};
use crate::settings::Reloader;
use crate::settings::Settings;
use crate::signals::{ReloadHandle, StopHandle};
use crate::state::{ForwardState, State};
use crate::wake::{self, Interest, WakeReceiver, Waker};
use crate::watchdog::{self, Liveness};

/// A session that lasted this long resets the reconnect backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Runs the tunnel until stopped.
pub struct Supervisor {
    settings: Settings,
    reload: ReloadHandle,
    reloader: Box<Reloader>,
    state: Arc<State>,
    notifier: Arc<Notifier>,
    stop: StopHandle,
    waker: Waker,
    wake_rx: WakeReceiver,
    pool: Pool,
    /// Connection ids stay unique across sessions, so log lines never mix two connections.
    next_id: u64,
}

impl Supervisor {
    /// Prepares the supervisor; nothing connects yet.
    pub fn new(settings: Settings) -> Result<Supervisor> {
        let (waker, wake_rx) = wake::wake_pair()
            .map_err(|e| Error::Local(format!("cannot create wake socket: {e}")))?;
        let state = State::new(forward_states(&settings));
        let notifier = Notifier::from_env();
        let stop = StopHandle::new(waker.clone(), state.clone(), notifier.clone());
        let reload = ReloadHandle::new(waker.clone());
        let unchanged = settings.clone();
        Ok(Supervisor {
            settings,
            reload,
            reloader: Box::new(move || Ok(unchanged.clone())),
            state,
            notifier,
            stop,
            waker,
            wake_rx,
            pool: Pool::default(),
            next_id: 0,
        })
    }

    /// The shared runtime state (metrics, readiness, status).
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Starts what lets operators see the daemon: the status file and systemd reporter,
    /// and the metrics endpoint when one is configured.
    fn start_reporting(&self) -> Result<()> {
        let refresh = self.settings.keepalive.interval;
        let certificate = self.settings.auth.certificate.clone();
        let state = self.state.clone();
        let daily = Box::new(move || review_certificate(certificate.as_deref(), Some(&state)));
        notify::spawn_reporter(
            self.state.clone(),
            self.notifier.clone(),
            self.settings.status_file.clone(),
            refresh,
            daily,
        )?;
        if let Some(addr) = self.settings.metrics.listen {
            metrics::serve(addr, self.state.clone(), self.stop.flag())?;
        }
        Ok(())
    }

    /// How SIGHUP re-reads the settings (without one, a reload finds nothing changed).
    pub fn set_reloader(&mut self, reloader: Box<Reloader>) {
        self.reloader = reloader;
    }

    /// The handle SIGHUP uses.
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// The handle signal handlers use.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Connects and serves, reconnecting after every failure that another attempt can fix.
    ///
    /// Policy: configuration errors and a relay host key that does not verify end the
    /// process at once (exit 78 and 77): retrying cannot fix them and a changed host key
    /// needs a human. A rejected key or certificate ends the process if the relay never
    /// accepted it in this run (exit 77: a setup mistake); once a session has been up, it
    /// is retried at the backoff cap with an error logged each time, since a relay-side
    /// change or a certificate renewal fixes it without a restart. Everything else (DNS,
    /// refused or timed-out connections, broken sessions) is retried with backoff forever.
    pub fn run(mut self) -> Result<()> {
        let mut backoff =
            Backoff::new(self.settings.reconnect.initial, self.settings.reconnect.max);
        let mut ever_up = false;
        let settings = &self.settings;
        log::info!(
            "flytube {} starting: relay {} as {}, {} forward(s)",
            env!("CARGO_PKG_VERSION"),
            settings.relay.address(),
            settings.relay.user,
            settings.forwards.len()
        );
        for note in &settings.notes {
            log::warn!("{note}");
        }
        if settings.relay.proxy != ProxyChoice::Direct {
            log::info!("proxy: {}", settings.relay.proxy);
        }
        if let Err(e) = self.start_reporting() {
            log::error!("{e}");
            return Err(e);
        }
        let mut backoff_for = self.settings.reconnect;
        while !self.stop.is_stopped() {
            if self.reload.take() {
                self.reload_between_sessions();
            }
            if backoff_for != self.settings.reconnect {
                backoff_for = self.settings.reconnect;
                backoff = Backoff::new(backoff_for.initial, backoff_for.max);
            }
            let delay = match relay::connect(&self.settings) {
                Ok((connected, negotiated)) => {
                    if ever_up {
                        self.state.count_reconnect();
                    }
                    ever_up = true;
                    let started = Instant::now();
                    match self.serve(connected, &negotiated) {
                        PumpEnd::Stopped => return Ok(()),
                        PumpEnd::Reload => {
                            self.state
                                .set_session(false, "reconnecting: settings reloaded");
                            Duration::ZERO
                        }
                        PumpEnd::Lost(reason) => {
                            if started.elapsed() >= STABLE_AFTER {
                                backoff.reset();
                            }
                            let delay = backoff.next_delay();
                            log::warn!(
                                "tunnel down after {}s: {reason}; reconnecting in {:.1}s",
                                started.elapsed().as_secs(),
                                delay.as_secs_f64()
                            );
                            self.state.set_session(
                                false,
                                format!("reconnecting in {:.0}s: {reason}", delay.as_secs_f64()),
                            );
                            delay
                        }
                    }
                }
                Err(e) => {
                    let delay = retry_delay(&e, ever_up, &self.settings, &mut backoff);
                    let Some(delay) = delay else {
                        self.state.set_phase(format!("stopped: {e}"));
                        return Err(e);
                    };
                    self.state
                        .set_phase(format!("retrying in {:.0}s: {e}", delay.as_secs_f64()));
                    delay
                }
            };
            self.sleep(delay);
        }
        log::info!("stopped");
        Ok(())
    }

    /// Runs the pump on one session, with a watchdog beside it, until the session ends.
    fn serve(&mut self, connected: Connected, negotiated: &Negotiated) -> PumpEnd {
        let settings = self.settings.clone();
        self.state.set_session(
            true,
            format!("connected to relay {}", settings.relay.address()),
        );
        log::info!(
            relay:% = settings.relay.address(),
            peer:% = connected.peer,
            cipher = negotiated.cipher.as_str(),
            mac = negotiated.mac.as_str(),
            kex = negotiated.kex.as_str(),
            host_key:% = negotiated.host_key.fingerprint();
            "connected to relay {} ({}): {}, kex {}, cipher {}, host key {} {}",
            settings.relay.address(),
            connected.peer,
            negotiated.banner,
            negotiated.kex,
            negotiated.cipher_and_mac(),
            negotiated.host_key.key_type,
            negotiated.host_key.fingerprint()
        );
        let liveness = Liveness::new();
        match connected.control.try_clone() {
            Ok(socket) => watchdog::spawn(
                liveness.clone(),
                socket,
                settings.keepalive.dead_after(),
                settings.relay.address(),
            ),
            Err(e) => log::error!("cannot clone the relay socket for the watchdog: {e}"),
        }
        let pump = Pump::new(PumpParts {
            settings,
            reload: self.reload.clone(),
            reloader: self.reloader.as_ref(),
            session: connected.session,
            socket: connected.control,
            waker: self.waker.clone(),
            wake_rx: &mut self.wake_rx,
            stop: self.stop.flag(),
            stop_now: self.stop.now_flag(),
            liveness,
            state: self.state.clone(),
            notifier: self.notifier.clone(),
            pool: self.pool.clone(),
            next_id: &mut self.next_id,
        });
        let (end, settings) = pump.run();
        self.settings = settings;
        end
    }

    /// SIGHUP while no session is up: anything valid applies to the next attempt.
    fn reload_between_sessions(&mut self) {
        match (self.reloader)() {
            Ok(new) => {
                let changes = self.settings.changes(&new);
                if changes.is_empty() {
                    log::info!("reload: the settings did not change");
                }
                for change in changes {
                    log::info!("reload: {change}");
                }
                self.state.set_forwards(forward_states(&new));
                self.settings = new;
            }
            Err(e) => log::error!("reload refused, keeping the running settings: {e}"),
        }
    }

    /// Sleeps, but returns at once when a stop is asked for.
    fn sleep(&mut self, delay: Duration) {
        let until = Instant::now() + delay;
        while !self.stop.is_stopped() {
            self.notifier.watchdog();
            let mut left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            if !self.notifier.watchdog_every().is_zero() {
                left = left.min(self.notifier.watchdog_every());
            }
            let none = Interest {
                read: false,
                write: false,
            };
            match wake::wait(-1, none, &self.wake_rx, &mut wake::Targets::default(), left) {
                Ok(ready) => self.wake_rx.clear(ready.woken),
                Err(_) => std::thread::sleep(left.min(Duration::from_millis(100))),
            }
        }
    }
}

/// How long to wait after a failed connect, or `None` when the error ends the process
/// (the policy on `Supervisor::run`).
fn retry_delay(
    error: &Error,
    ever_up: bool,
    settings: &Settings,
    backoff: &mut Backoff,
) -> Option<Duration> {
    match error {
        e if e.is_permanent() => {
            log::error!("{e}");
            None
        }
        e @ Error::Auth { .. } if !ever_up => {
            log::error!("{e}");
            None
        }
        e @ Error::Auth { .. } => {
            warn_about_certificate(settings);
            let delay = settings.reconnect.max;
            log::error!("{e}; retrying in {}s", delay.as_secs());
            Some(delay)
        }
        e => {
            let delay = backoff.next_delay();
            log::warn!("{e}; retrying in {:.1}s", delay.as_secs_f64());
            Some(delay)
        }
    }
}

/// The runtime state of each configured forward.
fn forward_states(settings: &Settings) -> Vec<Arc<ForwardState>> {
    settings
        .forwards
        .iter()
        .map(|spec| {
            let label = crate::forward::join_host_port(spec.bind_display(), spec.source_port);
            Arc::new(ForwardState::new(spec.to_string(), label))
        })
        .collect()
}

/// Logs a certificate that is expired, not yet valid, or close to its end: the most common
/// reason a working tunnel stops authenticating.
fn warn_about_certificate(settings: &Settings) {
    review_certificate(settings.auth.certificate.as_deref(), None);
}

/// Reads the certificate, logs its notice (expired, not yet valid, close to its end) and
/// records its end for the `flytube_certificate_expiry_timestamp_seconds` metric. Called
/// at start, after a rejected key, and once a day while the session stays up.
fn review_certificate(path: Option<&std::path::Path>, state: Option<&State>) {
    let Some(path) = path else {
        return;
    };
    let cert = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| Certificate::parse(&text))
    {
        Ok(cert) => cert,
        Err(e) => {
            log::warn!("certificate {}: {e}", path.display());
            return;
        }
    };
    if let Some(state) = state {
        state.set_certificate_expiry(i64::try_from(cert.valid_before).unwrap_or(i64::MAX));
    }
    match cert.notice() {
        Some(n) if n.severity == Severity::Fail => log::error!("{}: {}", path.display(), n.advice),
        Some(n) => log::warn!("{}: {}", path.display(), n.advice),
        None => {}
    }
}
