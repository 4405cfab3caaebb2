//! Adaptive busy polling: before the pump sleeps, it may poll its sockets without sleeping
//! for a short while, when waits show that its peers are near.
//!
//! Why: a round trip through flytube wakes the pump twice, once for the platform's request
//! from the relay and once for the target's answer. On a virtual machine each wake-up costs
//! a context switch and often an inter-processor interrupt, and for small messages between
//! near peers those costs are most of flytube's part of the round trip. A pump that polls
//! through the short gaps stays on its CPU and leaves the other one to its peers, and the
//! whole exchange gets faster. `ssh -R` always sleeps. Measured on a 2-CPU VM: see
//! "What changed in the tenth session" in docs/performance.md.
//!
//! What it costs is CPU while small messages flow, so it is bounded:
//! - a poll never lasts longer than `limits.busy_poll_us`;
//! - each kind of wait (for a target's answer, for the relay) polls only while the last
//!   wait of its kind ended within `NEAR` limits, so a relay or target milliseconds away
//!   is never polled for, and a client's think time does not turn polling on for the relay;
//! - not while bulk data flows (`BULK_BYTES` per wake-up), which is paced by throughput,
//!   not by wake-ups;
//! - never on a machine, or under a container CPU quota, with fewer than two CPUs, where
//!   the polling pump would hold the CPU its peers need.
//!
//! Each poll round yields the CPU: the kernel wakes a socket's reader with a "sync" hint
//! that queues it on the waker's CPU, so the peer the pump just sent to may be waiting
//! for this very CPU. A bare spin would hold it off for the whole poll; a yield runs it.

use std::time::Duration;

/// The default limit (`limits.busy_poll_us`).
pub const DEFAULT_LIMIT: Duration = Duration::from_micros(50);

/// The largest limit a setting may ask for.
pub const MAX_LIMIT_US: u64 = 1000;

/// A wait that slept and ended within this many limits still says the peers are near:
/// polling makes the whole exchange faster (the peers keep the other CPU to themselves),
/// so a wait of about twice the limit when sleeping is often caught once polling.
const NEAR: u32 = 4;

/// Relay bytes moved per wake-up (a moving average) beyond which the traffic is bulk:
/// paced by throughput, not by wake-ups, so polling would only spend CPU. Bulk moves at
/// least one full packet (32 KiB) per wake-up; small messages (requests, answers, even
/// redis-benchmark's 16 pipelined commands from 20 clients) stay well below.
const BULK_BYTES: u64 = 16 * 1024;

/// What the pump is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A connection sent its target data and has not read the answer yet.
    Answer,
    /// Anything else: in practice, the relay.
    Other,
}

/// Whether to poll before sleeping, per kind of wait: yes while the last wait of the kind
/// ended within `NEAR` limits.
#[derive(Debug, Clone)]
pub struct Governor {
    limit: Duration,
    near: [bool; 2],
    /// Relay bytes moved per wake-up, a moving average.
    per_wake: u64,
    /// Relay bytes moved in all, as of the last sleep.
    moved_at_sleep: u64,
}

impl Governor {
    /// Starts sleeping, until waits show that polling would pay. `limit` zero: never poll.
    pub fn new(limit: Duration) -> Governor {
        Governor {
            limit,
            near: [false; 2],
            per_wake: 0,
            moved_at_sleep: 0,
        }
    }

    /// True when the limit is zero: the pump always sleeps.
    pub fn is_off(&self) -> bool {
        self.limit.is_zero()
    }

    /// The pump is about to sleep, having moved `total` bytes to and from the relay in
    /// all; true when the traffic is bulk (then it should not poll, and the wait says
    /// nothing).
    pub fn moved(&mut self, total: u64) -> bool {
        let bytes = total.saturating_sub(self.moved_at_sleep);
        self.moved_at_sleep = total;
        self.per_wake = (self.per_wake * 3 + bytes) / 4;
        self.per_wake > BULK_BYTES
    }

    /// How long to poll before sleeping, for a wait of this kind.
    pub fn window(&self, wait: Wait) -> Duration {
        match self.near[wait as usize] {
            true => self.limit,
            false => Duration::ZERO,
        }
    }

    /// A wait of this kind ended after `idle`: `caught` when polling saw the event. (A wait
    /// that a timer ended with nothing ready means something only if it outlasted `NEAR`
    /// limits: the caller records it only then.)
    pub fn record(&mut self, wait: Wait, idle: Duration, caught: bool) {
        self.near[wait as usize] = caught || idle <= self.limit * NEAR;
    }

    /// True when a wait that ended after `idle` with nothing ready says something.
    pub fn telling(&self, idle: Duration) -> bool {
        idle > self.limit * NEAR
    }
}

/// The limit the pump uses: the configured one where at least two CPUs are available,
/// zero (never poll) where fewer are or the count is unknown.
pub fn effective_limit(configured: Duration) -> Duration {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 || configured.is_zero() {
        return configured;
    }
    log::debug!("busy polling off: {cpus} CPU available");
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(50);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn polling_starts_off_and_follows_the_last_wait_of_its_kind() {
        let mut g = Governor::new(LIMIT);
        assert_eq!(g.window(Wait::Answer), Duration::ZERO);
        // Slept, and the answer came after 150 us: near enough to poll next time.
        g.record(Wait::Answer, us(150), false);
        assert_eq!(g.window(Wait::Answer), LIMIT);
        assert_eq!(g.window(Wait::Other), Duration::ZERO, "kinds are separate");
        g.record(Wait::Answer, us(20), true);
        assert_eq!(g.window(Wait::Answer), LIMIT);
        // A target milliseconds away: no polling for the next wait.
        g.record(Wait::Answer, Duration::from_millis(3), false);
        assert_eq!(g.window(Wait::Answer), Duration::ZERO);
        assert!(g.telling(Duration::from_millis(3)));
        assert!(!g.telling(us(150)));
    }

    #[test]
    fn bulk_is_told_from_small_messages_by_bytes_per_wake_up() {
        let mut g = Governor::new(LIMIT);
        // `moved` takes the running total; each step below adds one wake-up's bytes.
        let mut total = 0;
        let mut wake_up = |g: &mut Governor, bytes: u64| {
            total += bytes;
            g.moved(total)
        };
        for _ in 0..20 {
            assert!(!wake_up(&mut g, 200), "200-byte messages are not bulk");
        }
        let mut wakes = 0;
        while !wake_up(&mut g, 64 * 1024) {
            wakes += 1;
            assert!(wakes < 3, "64 KiB per wake-up not bulk after {wakes}");
        }
        let mut wakes = 0;
        while wake_up(&mut g, 100) {
            wakes += 1;
            assert!(wakes < 10, "still bulk after {wakes} small wake-ups");
        }
    }

    #[test]
    fn a_zero_limit_never_polls() {
        let mut g = Governor::new(Duration::ZERO);
        assert!(g.is_off());
        g.record(Wait::Answer, Duration::ZERO, true);
        assert_eq!(g.window(Wait::Answer), Duration::ZERO);
        assert_eq!(effective_limit(Duration::ZERO), Duration::ZERO);
    }
}
