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
//! - A failed write is recorded here, beside the queue: the up queue may be full at that
//!   moment, and the reader then reports a plain EOF which the pump turns into the
//!   writer's error.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::wake::Waker;

/// The state both routes share (behind an `Arc`).
#[derive(Debug, Default)]
pub struct Downstream {
    stalled: AtomicBool,
    unwritten: AtomicI64,
    error: Mutex<Option<String>>,
}

impl Downstream {
    /// Pump: a message is about to be queued (counted, and the queue marked stalled).
    pub fn queueing(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.unwritten.fetch_add(1, Ordering::SeqCst);
    }

    /// Pump: the message was queued; the queue is not stalled.
    pub fn queued(&self) {
        self.stalled.store(false, Ordering::SeqCst);
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
