//! Exponential backoff with full jitter, so a fleet of connectors that lost the same relay
//! does not return in one thundering herd.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Delays are never shorter than this, so a zero draw cannot turn into a hot loop.
const FLOOR: Duration = Duration::from_millis(100);

/// Growing delays: attempt n waits a random time in [0, min(max, initial * 2^n)].
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Starts at `initial`, caps at `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32)
            ^ (Instant::now().elapsed().as_nanos() as u64);
        Backoff {
            initial,
            max,
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The next delay; each call doubles the ceiling until the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let fraction = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(fraction).max(FLOOR.min(ceiling))
    }

    /// The current ceiling (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The largest delay it will ever give.
    pub fn cap(&self) -> Duration {
        self.max
    }

    /// Back to the first step, after a stable period.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// xorshift64*: plenty for jitter, and no extra crate.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_to_the_cap_and_jitter_stays_below_it() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling && d >= FLOOR, "{d:?} vs {ceiling:?}");
            ceilings.push(ceiling.as_secs());
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let draws: Vec<Duration> = (0..50).map(|_| b.next_delay()).collect();
        let min = draws.iter().min().unwrap();
        let max = draws.iter().max().unwrap();
        assert!(*max - *min > Duration::from_secs(20), "{min:?}..{max:?}");
    }
}
