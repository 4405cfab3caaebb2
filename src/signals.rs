//! Signals, on their own named thread: SIGINT and SIGTERM stop (a second one stops at
//! once), SIGHUP re-reads the settings. signal-hook rather than ctrlc: ctrlc's termination
//! feature runs one handler for SIGINT, SIGTERM and SIGHUP alike, so `kill -HUP` took the
//! tunnel down for good under `Restart=on-failure`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::error::{Error, Result};
use crate::notify::Notifier;
use crate::state::State;
use crate::wake::Waker;

/// A request to re-read the settings, taken by whoever runs next (the pump, or the
/// supervisor between sessions).
#[derive(Clone)]
pub struct ReloadHandle {
    requested: Arc<AtomicBool>,
    waker: Waker,
}

impl ReloadHandle {
    /// A handle that rings `waker` when a reload is asked for.
    pub fn new(waker: Waker) -> ReloadHandle {
        ReloadHandle {
            requested: Arc::new(AtomicBool::new(false)),
            waker,
        }
    }

    /// Asks for a reload (SIGHUP).
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// True once per request.
    pub fn take(&self) -> bool {
        self.requested.swap(false, Ordering::SeqCst)
    }
}

/// The stop flags and the line that wakes whoever is sleeping.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    now: Arc<AtomicBool>,
    waker: Waker,
    state: Arc<State>,
    notifier: Arc<Notifier>,
}

impl StopHandle {
    /// A handle with nothing asked for yet.
    pub fn new(waker: Waker, state: Arc<State>, notifier: Arc<Notifier>) -> StopHandle {
        StopHandle {
            flag: Arc::new(AtomicBool::new(false)),
            now: Arc::new(AtomicBool::new(false)),
            waker,
            state,
            notifier,
        }
    }

    /// The flag a stop sets (for the pump and the metrics thread).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// The flag a second stop sets.
    pub fn now_flag(&self) -> Arc<AtomicBool> {
        self.now.clone()
    }

    /// Asks flytube to stop (SIGINT, SIGTERM): connections moving bytes get the drain time,
    /// idle ones are closed at once. A second request ends the drain immediately.
    pub fn stop(&self) {
        if self.flag.swap(true, Ordering::SeqCst) {
            self.now.store(true, Ordering::SeqCst);
        } else {
            self.notifier.stopping();
            self.state.set_stopping();
        }
        self.waker.wake();
    }

    /// True once a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Starts the signal thread.
pub fn spawn(stop: StopHandle, reload: ReloadHandle) -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::Local(format!("cannot install signal handlers: {e}")))?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGHUP => {
                        log::info!("SIGHUP: re-reading the settings");
                        reload.request();
                    }
                    _ => stop.stop(),
                }
            }
        })
        .map_err(|e| Error::Local(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}
