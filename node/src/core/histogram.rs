//! Fixed-bucket histograms the core fills as it works (log write latency, entries per write).
//! They are plain numbers, copied out with the counters, so the driver publishes them without
//! a lock and the HTTP listener encodes them without touching the core.

/// The most buckets a histogram has, the unbounded one included.
pub const BUCKETS_MAX: usize = 16;

/// Upper bounds, in seconds, of latency buckets (100 µs to 5 s; the last bucket is unbounded).
pub const LATENCY_BOUNDS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds of entries-per-write buckets (group commit: 1 to 4096 entries per fdatasync).
pub const ENTRY_COUNT_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

const _: () = assert!(LATENCY_BOUNDS_SECONDS.len() < BUCKETS_MAX);
const _: () = assert!(ENTRY_COUNT_BOUNDS.len() < BUCKETS_MAX);

/// Observations counted per bucket; bucket `i` holds values at most `bounds[i]` (and above
/// the bound before it), the bucket after the last bound holds the rest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: [u64; BUCKETS_MAX],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, fewer than `BUCKETS_MAX`).
    #[must_use]
    pub const fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() < BUCKETS_MAX);
        Self {
            bounds,
            counts: [0; BUCKETS_MAX],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts `value`.
    pub fn observe(&mut self, value: f64) {
        let bucket = bucket_of(self.bounds, value);
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// The sum of every value observed.
    #[must_use]
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// How many values were observed.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Each bucket's upper bound (`f64::MAX` for the unbounded one) and its own count (not
    /// cumulative), as Prometheus' encoder takes them.
    #[must_use]
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.counts)
            .collect()
    }
}

/// The bucket `value` falls in: the first bound at least as large, else the unbounded one.
#[must_use]
pub fn bucket_of(bounds: &[f64], value: f64) -> usize {
    bounds
        .iter()
        .position(|&bound| value <= bound)
        .unwrap_or(bounds.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_the_first_bucket_whose_bound_covers_them() {
        let mut histogram = Histogram::new(ENTRY_COUNT_BOUNDS);
        for value in [1.0, 3.0, 4.0, 5000.0] {
            histogram.observe(value);
        }
        let buckets = histogram.buckets();
        assert_eq!(buckets.len(), ENTRY_COUNT_BOUNDS.len() + 1);
        assert_eq!(buckets[0], (1.0, 1));
        assert_eq!(buckets[2], (4.0, 2));
        assert_eq!(buckets[ENTRY_COUNT_BOUNDS.len()], (f64::MAX, 1));
        assert_eq!(histogram.count(), 4);
        assert!((histogram.sum() - 5008.0).abs() < f64::EPSILON);
    }
}
