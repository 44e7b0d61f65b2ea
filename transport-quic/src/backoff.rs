//! The reconnect delay policy: exponential with a cap and explicit jitter, pure and clock-free.
//!
//! The caller passes the attempt number and a jitter sample; `JitterSequence` makes the samples
//! from a seed, so a run is reproducible and two nodes with different seeds do not redial in step.

use std::time::Duration;

/// Exponential backoff: `delay_base * 2^attempt`, capped at `delay_max`, minus up to
/// `jitter_percent` percent at random.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The delay before the first retry (attempt 0), before jitter.
    pub delay_base: Duration,
    /// The longest delay, before jitter.
    pub delay_max: Duration,
    /// The largest share of a delay, in percent, that jitter removes.
    pub jitter_percent: u8,
}

/// Samples from 0 to `JITTER_SCALE` (inclusive) map to removing 0 to `jitter_percent` percent.
pub const JITTER_SCALE: u64 = 1_000;

impl BackoffPolicy {
    /// The delay before retry number `attempt` (0-based) given a jitter sample (any u64; only
    /// `sample % (JITTER_SCALE + 1)` matters).
    #[must_use]
    pub fn delay(&self, attempt: u32, jitter_sample: u64) -> Duration {
        let ceiling = self.delay_ceiling(attempt);
        let share = jitter_sample % (JITTER_SCALE + 1);
        let removed_nanos =
            ceiling.as_nanos() * u128::from(self.jitter_percent) * u128::from(share)
                / (100 * u128::from(JITTER_SCALE));
        ceiling.saturating_sub(Duration::from_nanos(
            u64::try_from(removed_nanos).unwrap_or(u64::MAX),
        ))
    }

    /// The delay before retry number `attempt` without jitter: doubling, then capped.
    #[must_use]
    pub fn delay_ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.delay_base.saturating_mul(factor).min(self.delay_max)
    }
}

/// A reproducible stream of jitter samples (splitmix64) from a seed.
#[derive(Clone, Debug)]
pub struct JitterSequence {
    state: u64,
}

impl JitterSequence {
    /// A sequence that starts from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next sample.
    pub fn next_sample(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(jitter_percent: u8) -> BackoffPolicy {
        BackoffPolicy {
            delay_base: Duration::from_millis(10),
            delay_max: Duration::from_millis(1_000),
            jitter_percent,
        }
    }

    #[test]
    fn without_jitter_the_delay_doubles_then_stops_at_the_cap() {
        let delays: Vec<u64> = (0..10)
            .map(|a| policy(0).delay(a, 12345).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]
        );
    }

    #[test]
    fn full_jitter_sample_removes_exactly_the_percentage() {
        assert_eq!(policy(50).delay(0, JITTER_SCALE), Duration::from_millis(5));
        assert_eq!(policy(50).delay(0, 0), Duration::from_millis(10));
    }

    #[test]
    fn the_same_seed_gives_the_same_samples_and_another_seed_does_not() {
        let take = |seed| {
            let mut sequence = JitterSequence::new(seed);
            (0..4).map(|_| sequence.next_sample()).collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
    }

    proptest! {
        #[test]
        fn delay_stays_within_jitter_bounds(attempt in any::<u32>(), sample in any::<u64>(), jitter in 0u8..=100) {
            let policy = policy(jitter);
            let ceiling = policy.delay_ceiling(attempt);
            let delay = policy.delay(attempt, sample);
            prop_assert!(delay <= ceiling);
            prop_assert!(delay <= policy.delay_max);
            prop_assert!(delay.as_nanos() * 100 >= ceiling.as_nanos() * u128::from(100 - jitter));
        }

        #[test]
        fn ceiling_never_decreases(attempt in 0u32..1000) {
            prop_assert!(policy(0).delay_ceiling(attempt) <= policy(0).delay_ceiling(attempt + 1));
        }
    }
}
