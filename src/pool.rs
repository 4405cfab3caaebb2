//! Worker threads kept parked between connections and reused, so that a new connection
//! costs a queue hand-off instead of a thread's creation and teardown (clone, stack mmap,
//! guard page, signal stack, munmap: about fifteen system calls each way).
//!
//! A thread that finishes its connection parks for `PARK` and then ends; at most
//! `MAX_PARKED` park at once, so a burst of connections leaves no lasting crowd behind.
//! Bookkeeping: `idle` counts parked threads that may still be handed a job. A submitter
//! claims one by decrementing it before queueing its job; a parked thread that times out
//! may only leave by decrementing it itself. So every queued job has a thread that has
//! not left and will take it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

/// How long a thread with nothing to do waits for the next connection before it ends.
pub const PARK: Duration = Duration::from_secs(5);
/// Most threads parked at once; a thread finishing beyond this ends at once.
pub const MAX_PARKED: usize = 64;
/// Stack of the worker threads: they keep their buffers on the heap, so thousands of
/// connections cost little address space.
pub const STACK: usize = 128 * 1024;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool: cheap to clone, shared by every session of the process.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    /// Parked threads not yet claimed by a submitter.
    idle: AtomicUsize,
    /// Threads alive, parked or working.
    live: AtomicUsize,
    /// Numbers the threads' names.
    spawned: AtomicUsize,
}

impl Default for Pool {
    fn default() -> Pool {
        let (jobs, queue) = unbounded();
        Pool {
            inner: Arc::new(Inner {
                jobs,
                queue,
                idle: AtomicUsize::new(0),
                live: AtomicUsize::new(0),
                spawned: AtomicUsize::new(0),
            }),
        }
    }
}

impl Pool {
    /// Worker threads alive now (working or parked).
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Threads parked now, waiting for a connection.
    pub fn parked(&self) -> usize {
        self.inner.idle.load(Ordering::SeqCst)
    }

    /// Runs `job` on a parked thread, or on a new one when none is parked.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let job: Job = Box::new(job);
        if claim(&self.inner.idle) {
            // The claimed thread (or another parked one) takes it; none can leave first.
            return match self.inner.jobs.send(job) {
                Ok(()) => Ok(()),
                Err(_) => Err(io::Error::other("worker pool closed")),
            };
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

/// A worker thread's life: its first job, then park and take jobs until `PARK` passes
/// with none, or too many are parked already.
fn serve(inner: &Arc<Inner>, first: Job) {
    // Counted out however the thread ends, a panicking job included.
    let _alive = Alive(inner.clone());
    first();
    loop {
        // Park, unless enough threads are parked already.
        let parked = inner
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_PARKED).then_some(n + 1)
            });
        if parked.is_err() {
            break;
        }
        match wait_for_job(inner) {
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

/// Waits as a parked thread: a job, or `None` once this thread has left the pool.
fn wait_for_job(inner: &Inner) -> Option<Job> {
    loop {
        match inner.queue.recv_timeout(PARK) {
            Ok(job) => return Some(job),
            Err(RecvTimeoutError::Timeout) => {
                if claim(&inner.idle) {
                    return None;
                }
                // A submitter claimed us just now: its job is on the way.
            }
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Takes one unit off `count` unless it is zero.
fn claim(count: &AtomicUsize) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
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

    #[test]
    fn claims_never_go_below_zero() {
        let count = AtomicUsize::new(1);
        assert!(claim(&count));
        assert!(!claim(&count));
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
