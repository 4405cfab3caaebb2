//! The relay -> target direction of one connection, shared by its two routes: the pump's
//! direct non-blocking send to an idle target socket, and the writer thread that drains
//! the queue. One place holds the protocol between them.
//!
//! - The pump counts a message as `unwritten` before the writer can see it; the writer
//!   uncounts it once written (or taken by the dynamic-forward handshake). Zero unwritten
//!   means the socket has everything queued so far, so the pump may send directly without
//!   reordering bytes.
//! - Before queueing, the pump marks the queue `stalled`; the writer clears the mark when
//!   it takes a message and then rings the pump, so a full queue never leaves the pump
//!   asleep with data to deliver.
//! - The writer sleeps on a bell here, not in crossbeam's blocking receive: that one spins
//!   and then calls `sched_yield` up to four times before it sleeps, which on a busy
//!   machine cost flytube 17% of its CPU under `ab` (a context switch per yield). The pump
//!   rings after queueing, and once more when it drops its end; the ring reaches the
//!   kernel only when the writer is asleep.
//! - A failed write is recorded here, beside the queue: the up queue may be full at that
//!   moment, and the reader then reports a plain EOF which the pump turns into the
//!   writer's error.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::sync;
use crate::wake::Waker;

/// The state both routes share (behind an `Arc`).
#[derive(Debug, Default)]
pub struct Downstream {
    stalled: AtomicBool,
    unwritten: AtomicI64,
    error: Mutex<Option<String>>,
    bell: Mutex<Bell>,
    rung: Condvar,
}

/// The writer's bell: set by the pump, read under the same lock, so no ring is lost.
#[derive(Debug, Default)]
struct Bell {
    /// A message was queued since the writer last looked.
    rung: bool,
    /// The writer is asleep (only then does a ring need a system call).
    sleeping: bool,
    /// The pump dropped its end: nothing more will be queued.
    closed: bool,
}

/// Why the writer's wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Woken {
    /// Something was queued: look at the queue again.
    Rung,
    /// The pump has gone; what is queued is all there will be.
    Closed,
    /// The deadline passed.
    TimedOut,
}

impl Downstream {
    /// Pump: a message is about to be queued (counted, and the queue marked stalled).
    pub fn queueing(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.unwritten.fetch_add(1, Ordering::SeqCst);
    }

    /// Pump: the message was queued; the queue is not stalled. Rings the writer.
    pub fn queued(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.ring(|bell| bell.rung = true);
    }

    /// Pump: its end of the queue is gone. Rings the writer.
    pub fn close(&self) {
        self.ring(|bell| bell.closed = true);
    }

    fn ring(&self, mark: impl FnOnce(&mut Bell)) {
        let mut bell = self.bell();
        mark(&mut bell);
        let sleeping = bell.sleeping;
        drop(bell);
        if sleeping {
            self.rung.notify_one();
        }
    }

    /// Writer: sleeps until the pump rings, has gone, or `deadline` passes. Call it only
    /// after finding the queue empty; `Rung` means look again.
    pub fn wait(&self, deadline: Option<Instant>) -> Woken {
        let mut bell = self.bell();
        loop {
            if bell.rung {
                bell.rung = false;
                return Woken::Rung;
            }
            if bell.closed {
                return Woken::Closed;
            }
            bell.sleeping = true;
            bell = match deadline {
                None => sync::wait(&self.rung, bell),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        bell.sleeping = false;
                        return Woken::TimedOut;
                    }
                    sync::wait_timeout(&self.rung, bell, left)
                }
            };
            bell.sleeping = false;
        }
    }

    fn bell(&self) -> MutexGuard<'_, Bell> {
        sync::lock(&self.bell)
    }

    /// Pump: the queue was full; the message stays with the pump (still marked stalled).
    pub fn not_queued(&self) {
        self.unwritten.fetch_sub(1, Ordering::SeqCst);
    }

    /// Pump: nothing queued is left unwritten, so a direct send keeps the order.
    pub fn idle(&self) -> bool {
        self.unwritten.load(Ordering::SeqCst) == 0
    }

    /// Writer: a message was taken off the queue; wakes the pump if it was waiting for room.
    pub fn took(&self, waker: &Waker) {
        if self.stalled.swap(false, Ordering::SeqCst) {
            waker.wake();
        }
    }

    /// Writer: a data message is written (or consumed otherwise).
    pub fn written(&self) {
        self.unwritten.fetch_sub(1, Ordering::SeqCst);
    }

    /// Writer: writing to the target failed.
    pub fn failed(&self, why: String) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(why);
        }
    }

    /// Why writing to the target failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn a_ring_before_the_wait_is_not_lost() {
        let shared = Downstream::default();
        shared.queueing();
        shared.queued();
        assert_eq!(shared.wait(None), Woken::Rung);
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            shared.wait(Some(soon)),
            Woken::TimedOut,
            "one ring, one wake"
        );
    }

    #[test]
    fn a_sleeping_writer_wakes_for_a_message_and_for_the_close() {
        let shared = Arc::new(Downstream::default());
        let writer = {
            let shared = shared.clone();
            thread::spawn(move || {
                let far = Some(Instant::now() + Duration::from_secs(10));
                (shared.wait(far), shared.wait(far), shared.wait(far))
            })
        };
        // Give the writer time to fall asleep, so the rings have to wake it.
        thread::sleep(Duration::from_millis(50));
        shared.queueing();
        shared.queued();
        thread::sleep(Duration::from_millis(50));
        shared.close();
        let woken = writer.join().unwrap();
        assert_eq!(woken, (Woken::Rung, Woken::Closed, Woken::Closed));
    }

    #[test]
    fn the_deadline_ends_a_quiet_wait() {
        let shared = Downstream::default();
        let started = Instant::now();
        let woken = shared.wait(Some(started + Duration::from_millis(30)));
        assert_eq!(woken, Woken::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
