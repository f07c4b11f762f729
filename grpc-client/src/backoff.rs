//! [`Backoff`]: how long a client waits before dialling again.
//!
//! The delay ceiling starts at [`INITIAL_BACKOFF`] (100 ms) and doubles on every
//! [`Backoff::grow`] up to [`MAX_BACKOFF`] (10 s); [`Backoff::reset`] returns it to
//! the start once a connection worked. Each wait is drawn with full jitter — a
//! uniform share of the ceiling, at least a tenth of it — so clients that lost the
//! same server together do not come back together.
//!
//! Invariants: every delay lies in `[ceiling / 10, ceiling]`; the ceiling never
//! leaves `[initial, max]`. No clock and no sleeping here: the caller sleeps, in a
//! `select!` with its shutdown signal.

use std::time::Duration;

use rand::Rng;

/// The first delay ceiling, and the one after a reset.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The largest delay ceiling.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The smallest share of the ceiling a jittered delay takes.
const MIN_JITTER_SHARE: f64 = 0.1;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 10 s, as every Meridian client reconnects.
    fn default() -> Self {
        Self::new(INITIAL_BACKOFF, MAX_BACKOFF)
    }
}

impl Backoff {
    /// Backoff from `initial` doubling to `max` (`max` below `initial` is raised to it).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            ceiling: initial,
        }
    }

    /// The current ceiling: the longest the next delay can be.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// The next delay, jittered with `rng`, without growing the ceiling.
    pub fn delay_with(&self, rng: &mut impl Rng) -> Duration {
        let share: f64 = rng.random();
        self.ceiling.mul_f64(share.max(MIN_JITTER_SHARE))
    }

    /// [`Backoff::delay_with`] the thread's random generator.
    pub fn delay(&self) -> Duration {
        self.delay_with(&mut rand::rng())
    }

    /// Doubles the ceiling, up to the maximum.
    pub fn grow(&mut self) {
        self.ceiling = self.ceiling.saturating_mul(2).min(self.max);
    }

    /// The next delay, then [`Backoff::grow`]: one failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay();
        self.grow();
        delay
    }

    /// Back to the initial ceiling: the connection worked.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_ceiling_doubles_from_100_ms_to_10_s_and_stays() {
        let mut backoff = Backoff::default();
        let mut ceilings = vec![];
        for _ in 0..10 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.grow();
        }
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn delays_are_jittered_within_a_tenth_and_the_whole_ceiling() {
        let mut rng = StdRng::seed_from_u64(12);
        let mut backoff = Backoff::default();
        for _ in 0..12 {
            let ceiling = backoff.ceiling();
            let delays: Vec<Duration> = (0..500).map(|_| backoff.delay_with(&mut rng)).collect();
            for d in &delays {
                assert!(
                    *d >= ceiling / 10 && *d <= ceiling,
                    "{d:?} outside {ceiling:?}"
                );
            }
            // Full jitter: the draws spread over the range, not a fixed delay.
            let below_half = delays.iter().filter(|d| **d < ceiling / 2).count();
            assert!(
                (150..350).contains(&below_half),
                "{below_half} of 500 below half"
            );
            backoff.grow();
        }
    }

    #[test]
    fn next_delay_grows_and_reset_starts_over() {
        let mut backoff = Backoff::default();
        for _ in 0..20 {
            assert!(backoff.next_delay() <= MAX_BACKOFF);
        }
        assert_eq!(backoff.ceiling(), MAX_BACKOFF);
        backoff.reset();
        assert_eq!(backoff.ceiling(), INITIAL_BACKOFF);
        assert!(backoff.next_delay() <= INITIAL_BACKOFF);
        assert_eq!(backoff.ceiling(), INITIAL_BACKOFF * 2);
    }

    #[test]
    fn custom_bounds_are_kept() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_millis(10));
        backoff.grow();
        assert_eq!(
            backoff.ceiling(),
            Duration::from_secs(1),
            "max raised to initial"
        );
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        for _ in 0..10 {
            backoff.grow();
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(5));
    }
}
