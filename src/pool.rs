//! Worker threads kept parked between connections and reused, so that a new connection
//! costs a queue hand-off instead of a thread's creation and teardown (clone, stack mmap,
//! guard page, signal stack, munmap: about fifteen system calls each way).
//!
//! A thread that finishes its connection parks for `PARK` and then ends; at most
//! `MAX_PARKED` park at once, so a burst of connections leaves no lasting crowd behind.
//! Parked threads form a stack: the one parked last (its stack and buffers still in
//! cache) takes the next connection, and the ones at the bottom age out. Each sleeps on
//! its own slot, handed its job directly; not on a shared crossbeam queue, whose blocking
//! receive spins and calls `sched_yield` before it sleeps (8% of flytube's CPU under
//! `ab` with new connections).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::sync::{self, lock};

/// How long a thread with nothing to do waits for the next connection before it ends.
pub const PARK: Duration = Duration::from_secs(5);
/// Most threads parked at once; a thread finishing beyond this ends at once.
pub const MAX_PARKED: usize = 64;
/// Stack of the worker threads: they keep their buffers on the heap, so thousands of
/// connections cost little address space.
pub const STACK: usize = 128 * 1024;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool: cheap to clone, shared by every session of the process.
#[derive(Clone, Default)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Parked threads, the most recently parked last.
    parked: Mutex<Vec<Arc<Slot>>>,
    /// Threads alive, parked or working.
    live: AtomicUsize,
    /// Numbers the threads' names.
    spawned: AtomicUsize,
}

/// Where a parked thread waits for its next job.
#[derive(Default)]
struct Slot {
    job: Mutex<Option<Job>>,
    handed: Condvar,
}

impl Pool {
    /// Worker threads alive now (working or parked).
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Threads parked now, waiting for a connection.
    pub fn parked(&self) -> usize {
        self.inner.parked().len()
    }

    /// Runs `job` on a parked thread, or on a new one when none is parked.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let job: Job = Box::new(job);
        // Taken off the stack, a slot is ours: its thread waits until it gets the job.
        let parked = self.inner.parked().pop();
        if let Some(slot) = parked {
            *lock(&slot.job) = Some(job);
            slot.handed.notify_one();
            return Ok(());
        }
        let number = self.inner.spawned.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        inner.live.fetch_add(1, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name(format!("worker-{number}"))
            .stack_size(STACK)
            .spawn(move || serve(&inner, job));
        if spawned.is_err() {
            self.inner.live.fetch_sub(1, Ordering::SeqCst);
        }
        spawned.map(|_| ())
    }
}

impl Inner {
    fn parked(&self) -> MutexGuard<'_, Vec<Arc<Slot>>> {
        lock(&self.parked)
    }

    /// Takes `slot` off the stack; false when a submitter has taken it already.
    fn leave(&self, slot: &Arc<Slot>) -> bool {
        let mut parked = self.parked();
        let at = parked.iter().position(|s| Arc::ptr_eq(s, slot));
        at.map(|at| parked.remove(at)).is_some()
    }
}

/// A worker thread's life: its first job, then park and take jobs until `PARK` passes
/// with none, or too many are parked already.
fn serve(inner: &Arc<Inner>, first: Job) {
    // Counted out however the thread ends, a panicking job included.
    let _alive = Alive(inner.clone());
    let slot = Arc::new(Slot::default());
    first();
    loop {
        {
            let mut parked = inner.parked();
            if parked.len() >= MAX_PARKED {
                break;
            }
            parked.push(slot.clone());
        }
        match wait_for_job(inner, &slot) {
            Some(job) => job(),
            None => break,
        }
    }
}

/// A worker thread's place in `live`, given up when the thread ends.
struct Alive(Arc<Inner>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits as a parked thread: a job, or `None` once `PARK` has passed and this thread has
/// taken itself off the stack.
fn wait_for_job(inner: &Inner, slot: &Arc<Slot>) -> Option<Job> {
    let deadline = Instant::now() + PARK;
    let mut job = lock(&slot.job);
    loop {
        if let Some(job) = job.take() {
            return Some(job);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        job = sync::wait_timeout(&slot.handed, job, left);
    }
    drop(job);
    if inner.leave(slot) {
        return None;
    }
    // A submitter took this slot off the stack just now: its job is on the way.
    let mut job = lock(&slot.job);
    loop {
        if let Some(job) = job.take() {
            return Some(job);
        }
        job = sync::wait(&slot.handed, job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn a_parked_thread_takes_the_next_job() {
        let pool = Pool::default();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        pool.run(move || first.send(thread::current().id()).unwrap())
            .unwrap();
        let a = rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.parked() == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!((pool.parked(), pool.live()), (1, 1));
        pool.run(move || tx.send(thread::current().id()).unwrap())
            .unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            a,
            "the parked thread ran the second job"
        );
        assert_eq!(pool.live(), 1);
    }

    #[test]
    fn the_thread_parked_last_takes_the_next_job() {
        let pool = Pool::default();
        let (tx, rx) = mpsc::channel();
        // Two threads at once, the second finishing well after the first.
        for delay in [0, 100] {
            let tx = tx.clone();
            pool.run(move || {
                thread::sleep(Duration::from_millis(delay));
                tx.send(thread::current().id()).unwrap();
            })
            .unwrap();
        }
        let (_first, last) = (rx.recv().unwrap(), rx.recv().unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.parked() < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.parked(), 2);
        pool.run(move || tx.send(thread::current().id()).unwrap())
            .unwrap();
        assert_eq!(rx.recv().unwrap(), last, "the most recently parked thread");
        assert_eq!(pool.live(), 2);
    }

    #[test]
    fn busy_threads_are_not_waited_for() {
        let pool = Pool::default();
        let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        for _ in 0..8 {
            let release = release_rx.clone();
            let done = done_tx.clone();
            pool.run(move || {
                release.recv().unwrap();
                done.send(()).unwrap();
            })
            .unwrap();
        }
        assert_eq!(pool.live(), 8, "every job got its own thread");
        for _ in 0..8 {
            release_tx.send(()).unwrap();
        }
        for _ in 0..8 {
            done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
    }
}
