//! The supervisor: connects, runs the pump on each session, and reconnects with backoff
//! until stopped. It decides which failures are retried and which end the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::cert::{Certificate, Validity, format_utc};
use crate::check::EXPIRY_WARNING;
use crate::error::{Error, Result};
use crate::proxy::ProxyChoice;
use crate::pump::{Pump, PumpEnd, PumpParts};
use crate::relay::{self, Connected, Negotiated};
use crate::settings::Settings;
use crate::wake::{self, Interest, WakeReceiver, Waker};
use crate::watchdog::{self, Liveness};
use crate::worker::ThreadCount;

/// A session that lasted this long resets the reconnect backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The stop flag and the line that wakes whoever is sleeping.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Waker,
}

impl StopHandle {
    /// Asks flytube to stop (signal handlers call this).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// True once a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Runs the tunnel until stopped.
pub struct Supervisor {
    settings: Settings,
    stop: StopHandle,
    waker: Waker,
    wake_rx: WakeReceiver,
    threads: ThreadCount,
    /// Connection ids stay unique across sessions, so log lines never mix two connections.
    next_id: u64,
}

impl Supervisor {
    /// Prepares the supervisor; nothing connects yet.
    pub fn new(settings: Settings) -> Result<Supervisor> {
        let (waker, wake_rx) = wake::wake_pair()
            .map_err(|e| Error::Local(format!("cannot create wake socket: {e}")))?;
        let stop = StopHandle {
            flag: Arc::new(AtomicBool::new(false)),
            waker: waker.clone(),
        };
        Ok(Supervisor {
            settings,
            stop,
            waker,
            wake_rx,
            threads: ThreadCount::default(),
            next_id: 0,
        })
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
        let settings = self.settings.clone();
        let mut backoff = Backoff::new(settings.reconnect.initial, settings.reconnect.max);
        let mut ever_up = false;
        log::info!(
            "flytube {} starting: relay {} as {}, {} forward(s)",
            env!("CARGO_PKG_VERSION"),
            settings.relay.address(),
            settings.relay.user,
            settings.forwards.len()
        );
        if settings.relay.proxy != ProxyChoice::Direct {
            log::info!("proxy: {}", settings.relay.proxy);
        }
        warn_about_certificate(&settings);
        while !self.stop.is_stopped() {
            let delay = match relay::connect(&settings) {
                Ok((connected, negotiated)) => {
                    ever_up = true;
                    let started = Instant::now();
                    match self.serve(connected, &negotiated) {
                        PumpEnd::Stopped => return Ok(()),
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
                            delay
                        }
                    }
                }
                Err(e) => retry_delay(e, ever_up, &settings, &mut backoff)?,
            };
            self.sleep(delay);
        }
        log::info!("stopped");
        Ok(())
    }

    /// Runs the pump on one session, with a watchdog beside it, until the session ends.
    fn serve(&mut self, connected: Connected, negotiated: &Negotiated) -> PumpEnd {
        let settings = &self.settings;
        log::info!(
            "connected to relay {} ({}): {}, kex {}, cipher {}, host key {} {}",
            settings.relay.address(),
            connected.peer,
            negotiated.banner,
            negotiated.kex,
            negotiated.cipher,
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
            session: connected.session,
            socket: connected.control,
            waker: self.waker.clone(),
            wake_rx: &mut self.wake_rx,
            stop: self.stop.flag.clone(),
            liveness,
            threads: self.threads.clone(),
            next_id: &mut self.next_id,
        });
        pump.run()
    }

    /// Sleeps, but returns at once when a stop is asked for.
    fn sleep(&mut self, delay: Duration) {
        let until = Instant::now() + delay;
        while !self.stop.is_stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let none = Interest {
                read: false,
                write: false,
            };
            match wake::wait(-1, none, &self.wake_rx, left) {
                Ok(ready) => self.wake_rx.clear(ready.woken),
                Err(_) => std::thread::sleep(left.min(Duration::from_millis(100))),
            }
        }
    }
}

/// How long to wait after a failed connect, or the error that ends the process (the
/// policy on `Supervisor::run`).
fn retry_delay(
    error: Error,
    ever_up: bool,
    settings: &Settings,
    backoff: &mut Backoff,
) -> Result<Duration> {
    match error {
        e if e.is_permanent() => {
            log::error!("{e}");
            Err(e)
        }
        e @ Error::Auth { .. } if !ever_up => {
            log::error!("{e}");
            Err(e)
        }
        e @ Error::Auth { .. } => {
            warn_about_certificate(settings);
            let delay = settings.reconnect.max;
            log::error!("{e}; retrying in {}s", delay.as_secs());
            Ok(delay)
        }
        e => {
            let delay = backoff.next_delay();
            log::warn!("{e}; retrying in {:.1}s", delay.as_secs_f64());
            Ok(delay)
        }
    }
}

/// Logs a certificate that is expired, not yet valid, or close to its end: the most common
/// reason a working tunnel stops authenticating.
fn warn_about_certificate(settings: &Settings) {
    let Some(path) = &settings.auth.certificate else {
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
    match cert.validity() {
        Validity::Expired => log::error!(
            "certificate {} expired at {}: renew it",
            path.display(),
            format_utc(cert.valid_before)
        ),
        Validity::NotYet => log::error!(
            "certificate {} is valid only from {}: check this machine's clock",
            path.display(),
            format_utc(cert.valid_after)
        ),
        Validity::Valid(left) if Duration::from_secs(left) < EXPIRY_WARNING => log::warn!(
            "certificate {} expires at {} (in {:.1} days): renew it soon",
            path.display(),
            format_utc(cert.valid_before),
            left as f64 / 86_400.0
        ),
        Validity::Valid(_) => {}
    }
}
