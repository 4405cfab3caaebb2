//! The bound on relay data held for targets that do not keep up
//! (`limits.max_queued_mib`): while the connections hold more than that, the pump reads
//! nothing more from the relay, and what they hold drains to the targets.
//!
//! Why: each connection may hold its SSH window (2 MiB) in libssh2 plus its writer's queue
//! (about 1.5 MiB) on the way to its target, and the relay decides how many connections
//! there are and what they carry. A relay, or a platform, sending to targets that do not
//! read would otherwise make flytube hold gigabytes (2048 connections by default). Not
//! reading the relay socket is TCP flow control on the whole session: the relay's sends
//! stop, nothing is dropped, and every connection goes on once the targets take some.
//! A hold during which the targets take nothing at all outlives the keepalive timeout and
//! ends the session the way a silent relay does (the watchdog), with this as the reason.
//!
//! Via-relay connections (`splice.rs`) are not counted: they drain through the relay
//! itself, so a hold would also hold back the window adjusts their writes wait for, and
//! nothing would drain. Each holds at most its two windows and a 64 KiB buffer per
//! direction, so `limits.max_connections` bounds them.

use std::time::{Duration, Instant};

/// A mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// The least the pump may read before it counts again: nearer the bound than this, it
/// holds the input instead of counting after every small read.
const LEAST_HEADROOM: u64 = 256 * 1024;

/// The longest the pump sleeps while it holds the relay's input: writers that empty their
/// queues do not wake it, and the count that lets the input go must not wait for the next
/// keepalive.
pub const LONGEST_SLEEP_WHILE_HELD: Duration = Duration::from_millis(10);

/// How often a hold is logged at most; the holds in between are counted in the next line.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Whether the pump holds the relay's input, and since when.
#[derive(Debug)]
pub struct InputHold {
    bound: u64,
    held: Option<Held>,
    /// What the connections held at the last count.
    last_count: u64,
    last_logged: Option<Instant>,
    unlogged: u64,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    since: Instant,
    logged: bool,
}

impl InputHold {
    /// Holds nothing yet; `bound` in bytes.
    pub fn new(bound: u64) -> InputHold {
        InputHold {
            bound,
            held: None,
            last_count: 0,
            last_logged: None,
            unlogged: 0,
        }
    }

    /// A reload changed the bound; the caller counts again at once.
    pub fn set_bound(&mut self, bound: u64) {
        self.bound = bound;
    }

    /// True when the connections are due a count: always while input is held (to let it
    /// go), else once the pump has read from the relay all that `headroom` allowed it
    /// (`allowance_left` zero): what the connections hold can only have grown by that.
    pub fn count_due(&self, allowance_left: u64) -> bool {
        self.held.is_some() || allowance_left == 0
    }

    /// How much the pump may read from the relay before it counts again: the room under
    /// the bound at the last count, none while input is held.
    pub fn headroom(&self) -> u64 {
        match self.held {
            Some(_) => 0,
            None => self.bound.saturating_sub(self.last_count),
        }
    }

    /// The connections hold `bytes` at `now`: holds input within `LEAST_HEADROOM` of the
    /// bound, and lets it go at three quarters of it (so a session at the bound does not
    /// flip on every pass). Returns whether input is held.
    pub fn counted(&mut self, bytes: u64, now: Instant) -> bool {
        self.last_count = bytes;
        match &mut self.held {
            None if bytes + LEAST_HEADROOM > self.bound => {
                let logged = self
                    .last_logged
                    .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
                if logged {
                    log::warn!(
                        "holding the relay's input: connections hold {:.1} MiB for targets that do not keep up (limits.max_queued_mib {}){}",
                        bytes as f64 / MIB as f64,
                        self.bound / MIB,
                        match self.unlogged {
                            0 => String::new(),
                            n => format!("; {n} more holds since the last message"),
                        }
                    );
                    self.last_logged = Some(now);
                    self.unlogged = 0;
                } else {
                    self.unlogged += 1;
                }
                self.held = Some(Held { since: now, logged });
            }
            Some(held) if bytes <= self.bound / 4 * 3 => {
                if held.logged {
                    log::info!(
                        "reading the relay again after {:.1}s: connections hold {:.1} MiB",
                        now.duration_since(held.since).as_secs_f64(),
                        bytes as f64 / MIB as f64
                    );
                }
                self.held = None;
            }
            Some(_) | None => {}
        }
        self.held.is_some()
    }

    /// True while input is held.
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// While input is held: why, for the reason a session ends with.
    pub fn describe(&self) -> Option<String> {
        self.held.map(|held| {
            format!(
                "the relay's input was held for {:.1}s: connections hold {:.1} MiB for targets that do not read (limits.max_queued_mib {})",
                held.since.elapsed().as_secs_f64(),
                self.last_count as f64 / MIB as f64,
                self.bound / MIB
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_near_the_bound_and_lets_go_at_three_quarters() {
        let mut hold = InputHold::new(8 * MIB);
        let now = Instant::now();
        assert_eq!(
            hold.headroom(),
            8 * MIB,
            "nothing held: the whole bound to read"
        );
        assert!(!hold.count_due(1), "allowance left: no count");
        assert!(hold.count_due(0), "allowance used up: count");
        assert!(!hold.counted(5 * MIB, now));
        assert_eq!(hold.headroom(), 3 * MIB, "the room under the bound");
        assert!(
            hold.counted(8 * MIB - LEAST_HEADROOM + 1, now),
            "too near the bound"
        );
        assert!(hold.is_held());
        assert_eq!(hold.headroom(), 0, "held: nothing to read");
        assert!(hold.count_due(1), "held: counted on every pass");
        assert!(hold.describe().unwrap().contains("limits.max_queued_mib 8"));
        assert!(hold.counted(7 * MIB, now), "still above three quarters");
        assert!(!hold.counted(6 * MIB, now));
        assert_eq!(hold.describe(), None);
        assert_eq!(hold.headroom(), 2 * MIB);
    }

    #[test]
    fn a_reload_counts_with_the_new_bound() {
        let mut hold = InputHold::new(64 * MIB);
        let now = Instant::now();
        assert!(!hold.counted(10 * MIB, now));
        hold.set_bound(8 * MIB);
        assert_eq!(hold.headroom(), 0, "already past the new bound");
        assert!(hold.counted(10 * MIB, now));
    }
}
