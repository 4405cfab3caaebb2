//! The watchdog: a thread that never touches libssh2. It watches when the pump last heard
//! from the relay and, past the limit, breaks the session by shutting down a clone of its
//! socket, which makes the pump's next libssh2 call fail at once.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(250);

/// Shared between the pump (which records inbound traffic) and the watchdog.
pub struct Liveness {
    epoch: Instant,
    last_inbound_ms: AtomicU64,
    tripped: AtomicBool,
    tripped_after_ms: AtomicU64,
    ended: AtomicBool,
}

impl Liveness {
    /// Starts counting from now.
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness {
            epoch: Instant::now(),
            last_inbound_ms: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
            tripped_after_ms: AtomicU64::new(0),
            ended: AtomicBool::new(false),
        })
    }

    /// The relay just sent something.
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_inbound_ms.store(now, Ordering::Relaxed);
    }

    /// Time since the relay last sent anything.
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.last_inbound_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// True once the watchdog has broken the session.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// The silence that made the watchdog break the session.
    pub fn tripped_after(&self) -> Duration {
        Duration::from_millis(self.tripped_after_ms.load(Ordering::SeqCst))
    }

    /// The session is over; the watchdog may leave.
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }
}

/// Starts the watchdog for one session.
pub fn spawn(liveness: Arc<Liveness>, socket: TcpStream, limit: Duration, relay: String) {
    let spawned = thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while !liveness.ended.load(Ordering::SeqCst) {
                let silence = liveness.silence();
                if silence > limit {
                    log::warn!(
                        "relay {relay} silent for {}s (limit {}s): breaking the session",
                        silence.as_secs(),
                        limit.as_secs()
                    );
                    liveness
                        .tripped_after_ms
                        .store(silence.as_millis() as u64, Ordering::SeqCst);
                    liveness.tripped.store(true, Ordering::SeqCst);
                    let _ = socket.shutdown(Shutdown::Both);
                    return;
                }
                thread::sleep(TICK.min(limit.saturating_sub(silence) + Duration::from_millis(10)));
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the watchdog thread: {e}; relay liveness is not watched");
    }
}
