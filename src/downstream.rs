//! The relay -> target direction of one connection, shared by its two routes: the pump's
//! direct non-blocking send to an idle target socket, and a writer thread that drains the
//! queue. One place holds the protocol between them.
//!
//! - The pump counts a message as `unwritten` before the writer can see it; the writer
//!   uncounts it once written (or taken by the dynamic-forward handshake). Zero unwritten
//!   means the socket has everything queued so far, so the pump may send directly without
//!   reordering bytes. The bytes are counted alike: what the connection holds on its way
//!   to the target, which the pump keeps under `limits.max_queued_mib` for all of them.
//! - Before queueing, the pump marks the queue `stalled`; the writer clears the mark when
//!   it takes a message and then rings the pump, so a full queue never leaves the pump
//!   asleep with data to deliver.
//! - The writer sleeps on a bell here, not in crossbeam's blocking receive: that one spins
//!   and then calls `sched_yield` up to four times before it sleeps, which on a busy
//!   machine cost flytube 17% of its CPU under `ab` (a context switch per yield). The pump
//!   rings after queueing, and once more when it drops its end; the ring reaches the
//!   kernel only when the writer is asleep.
//! - A writer with nothing to write leaves its thread: it parks its tools (the queue's
//!   receiving end, the socket) here and the thread goes back to the pool. The pump's next
//!   queueing takes them back and starts a writer on a pooled thread; the platform's EOF
//!   with no writer is a half-close the pump does itself. Most connections never stall,
//!   so their thread is free right after the dial and no thread is woken to end them (a
//!   context switch per connection under `ab` without keep-alive).
//! - A failed write is recorded here, beside the queue: the up queue may be full at that
//!   moment, and the reader then reports a plain EOF which the pump turns into the
//!   writer's error.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::sync;
use crate::wake::Waker;

/// The state both routes share (behind an `Arc`). `W` is what a writer needs to write
/// (its tools), kept here while no thread writes; opaque to this module.
pub struct Downstream<W = ()> {
    stalled: AtomicBool,
    unwritten: AtomicI64,
    unwritten_bytes: AtomicU64,
    error: Mutex<Option<String>>,
    bell: Mutex<Bell<W>>,
    rung: Condvar,
}

impl<W> Default for Downstream<W> {
    fn default() -> Self {
        Downstream {
            stalled: AtomicBool::new(false),
            unwritten: AtomicI64::new(0),
            unwritten_bytes: AtomicU64::new(0),
            error: Mutex::new(None),
            bell: Mutex::new(Bell {
                rung: false,
                sleeping: false,
                closed: false,
                parked: None,
            }),
            rung: Condvar::new(),
        }
    }
}

/// The writer's bell: set by the pump, read under the same lock, so no ring is lost.
struct Bell<W> {
    /// A message was queued since the writer last looked.
    rung: bool,
    /// The writer is asleep (only then does a ring need a system call).
    sleeping: bool,
    /// The pump dropped its end: nothing more will be queued.
    closed: bool,
    /// The tools of a writer that left its thread: no thread writes for this connection
    /// until the pump takes them back.
    parked: Option<W>,
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

impl<W> Downstream<W> {
    /// Pump: a message of `bytes` is about to be queued (counted, and the queue marked
    /// stalled).
    pub fn queueing(&self, bytes: usize) {
        self.stalled.store(true, Ordering::SeqCst);
        self.unwritten.fetch_add(1, Ordering::SeqCst);
        self.unwritten_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Pump: the message was queued; the queue is not stalled. Rings the writer; when no
    /// thread writes, returns the parked tools: the caller must start a writer with them.
    #[must_use = "parked tools returned here must start a writer"]
    pub fn queued(&self) -> Option<W> {
        self.stalled.store(false, Ordering::SeqCst);
        self.ring(|bell| {
            bell.rung = true;
            bell.parked.take()
        })
    }

    /// Pump: its end of the queue is gone. Rings the writer; parked tools are dropped.
    pub fn close(&self) {
        let parked = self.ring(|bell| {
            bell.closed = true;
            bell.parked.take()
        });
        drop(parked);
    }

    /// Pump: the parked tools, if no thread writes now (and so nothing is unwritten).
    pub fn take_parked(&self) -> Option<W> {
        self.bell().parked.take()
    }

    fn ring<T>(&self, mark: impl FnOnce(&mut Bell<W>) -> T) -> T {
        let mut bell = self.bell();
        let marked = mark(&mut bell);
        let sleeping = bell.sleeping;
        drop(bell);
        if sleeping {
            self.rung.notify_one();
        }
        marked
    }

    /// Writer, having found the queue empty: waits for a ring until `linger_until`.
    /// Returns the tools when something may have been queued (look again); `None` when the
    /// writer should leave its thread: the tools are parked here for the pump's next
    /// queueing, or dropped if the pump has gone.
    pub fn rest(&self, tools: W, linger_until: Instant) -> Option<W> {
        match self.wait_locked(Some(linger_until)) {
            (_, Woken::Rung) => Some(tools),
            (_, Woken::Closed) => None,
            // Parked under the lock the timeout was seen under: a ring after it finds them.
            (mut bell, Woken::TimedOut) => {
                bell.parked = Some(tools);
                None
            }
        }
    }

    /// Writer: sleeps until the pump rings, has gone, or `deadline` passes. Call it only
    /// after finding the queue empty; `Rung` means look again.
    pub fn wait(&self, deadline: Option<Instant>) -> Woken {
        self.wait_locked(deadline).1
    }

    /// The bell's wait; returns with the lock still held, so the caller can act on why it
    /// ended before the pump can ring again.
    fn wait_locked(&self, deadline: Option<Instant>) -> (MutexGuard<'_, Bell<W>>, Woken) {
        let mut bell = self.bell();
        loop {
            if bell.rung {
                bell.rung = false;
                return (bell, Woken::Rung);
            }
            if bell.closed {
                return (bell, Woken::Closed);
            }
            bell.sleeping = true;
            bell = match deadline {
                None => sync::wait(&self.rung, bell),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        bell.sleeping = false;
                        return (bell, Woken::TimedOut);
                    }
                    sync::wait_timeout(&self.rung, bell, left)
                }
            };
            bell.sleeping = false;
        }
    }

    fn bell(&self) -> MutexGuard<'_, Bell<W>> {
        sync::lock(&self.bell)
    }

    /// Pump: the queue was full; the message of `bytes` stays with the pump (still marked
    /// stalled).
    pub fn not_queued(&self, bytes: usize) {
        self.unwritten.fetch_sub(1, Ordering::SeqCst);
        self.unwritten_bytes
            .fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    /// Pump: nothing queued is left unwritten, so a direct send keeps the order.
    pub fn idle(&self) -> bool {
        self.unwritten.load(Ordering::SeqCst) == 0
    }

    /// Pump: the bytes queued and not yet written (a snapshot).
    pub fn unwritten_bytes(&self) -> u64 {
        self.unwritten_bytes.load(Ordering::Relaxed)
    }

    /// Writer: a message was taken off the queue; wakes the pump if it was waiting for room.
    pub fn took(&self, waker: &Waker) {
        if self.stalled.swap(false, Ordering::SeqCst) {
            waker.wake();
        }
    }

    /// Writer: a message of `bytes` is written, or its EOF done (or consumed otherwise).
    pub fn written(&self, bytes: usize) {
        self.unwritten_bytes
            .fetch_sub(bytes as u64, Ordering::Relaxed);
        self.unwritten.fetch_sub(1, Ordering::SeqCst);
    }

    /// Writer: writing to the target failed.
    pub fn failed(&self, why: String) {
        *sync::lock(&self.error) = Some(why);
    }

    /// Why writing to the target failed, if it did.
    pub fn error(&self) -> Option<String> {
        sync::lock(&self.error).clone()
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
        let shared = Downstream::<()>::default();
        shared.queueing(0);
        assert_eq!(shared.queued(), None, "a writer is attached");
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
        let shared = Arc::new(Downstream::<()>::default());
        let writer = {
            let shared = shared.clone();
            thread::spawn(move || {
                let far = Some(Instant::now() + Duration::from_secs(10));
                (shared.wait(far), shared.wait(far), shared.wait(far))
            })
        };
        // Give the writer time to fall asleep, so the rings have to wake it.
        thread::sleep(Duration::from_millis(50));
        shared.queueing(0);
        assert_eq!(shared.queued(), None);
        thread::sleep(Duration::from_millis(50));
        shared.close();
        let woken = writer.join().unwrap();
        assert_eq!(woken, (Woken::Rung, Woken::Closed, Woken::Closed));
    }

    #[test]
    fn the_deadline_ends_a_quiet_wait() {
        let shared = Downstream::<()>::default();
        let started = Instant::now();
        let woken = shared.wait(Some(started + Duration::from_millis(30)));
        assert_eq!(woken, Woken::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn an_idle_writer_parks_its_tools_and_the_next_queueing_takes_them_back() {
        let shared = Downstream::<&str>::default();
        assert_eq!(
            shared.rest("tools", Instant::now()),
            None,
            "nothing queued: park"
        );
        shared.queueing(0);
        assert_eq!(
            shared.queued(),
            Some("tools"),
            "the pump must start a writer"
        );
        assert_eq!(shared.take_parked(), None, "taken once");
    }

    #[test]
    fn a_ring_before_the_rest_keeps_the_writer_on_its_thread() {
        let shared = Downstream::<&str>::default();
        shared.queueing(0);
        assert_eq!(shared.queued(), None);
        assert_eq!(shared.rest("tools", Instant::now()), Some("tools"));
        assert_eq!(shared.take_parked(), None);
    }

    #[test]
    fn a_lingering_writer_is_rung_and_the_close_drops_parked_tools() {
        let shared = Arc::new(Downstream::<&str>::default());
        let writer = {
            let shared = shared.clone();
            thread::spawn(move || shared.rest("tools", Instant::now() + Duration::from_secs(10)))
        };
        thread::sleep(Duration::from_millis(50));
        shared.queueing(0);
        assert_eq!(shared.queued(), None, "the lingering writer takes it");
        assert_eq!(writer.join().unwrap(), Some("tools"));

        assert_eq!(shared.rest("tools", Instant::now()), None);
        shared.close();
        assert_eq!(
            shared.take_parked(),
            None,
            "the pump has gone: nothing to start"
        );
        assert_eq!(shared.rest("tools", Instant::now()), None, "closed: leave");
        assert_eq!(shared.take_parked(), None, "not parked after the close");
    }
}
