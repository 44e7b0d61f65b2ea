//! The replica's random number generator: SplitMix64 from the seed in `Config`. Eight bytes of
//! state per replica (thousands of replicas share a node), the same sequence on every platform.

/// A seeded SplitMix64 generator.
#[derive(Clone, Debug)]
pub(crate) struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `[low, high)`, without modulo bias (Lemire's multiply-shift).
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "an empty range [{low}, {high})");
        let span = high - low;
        let product = u128::from(self.next_u64()) * u128::from(span);
        low + (product >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_in_range_and_cover_it() {
        let mut rng = SeededRng::new(7);
        let mut seen = [false; 10];
        for _ in 0..1_000 {
            let value = rng.range(10, 20);
            assert!((10..20).contains(&value));
            seen[(value - 10) as usize] = true;
        }
        assert!(
            seen.iter().all(|&hit| hit),
            "every value of the range appears"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut first = SeededRng::new(42);
        let mut second = SeededRng::new(42);
        let mut other = SeededRng::new(43);
        let a: Vec<u64> = (0..8).map(|_| first.range(0, 1 << 40)).collect();
        let b: Vec<u64> = (0..8).map(|_| second.range(0, 1 << 40)).collect();
        let c: Vec<u64> = (0..8).map(|_| other.range(0, 1 << 40)).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
