//! Locks and condition variables whose holder may have panicked. Everything flytube keeps
//! behind a lock is plain data (flags, a message, a job), so a poisoned lock still holds a
//! usable value: take it over instead of spreading the panic to another thread.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Locks `mutex`, taking over a lock whose holder panicked.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `condvar` (spurious wake-ups included, as with `Condvar::wait`).
pub fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// Waits on `condvar` for at most `limit`.
pub fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    limit: Duration,
) -> MutexGuard<'a, T> {
    condvar
        .wait_timeout(guard, limit)
        .unwrap_or_else(|e| e.into_inner())
        .0
}
