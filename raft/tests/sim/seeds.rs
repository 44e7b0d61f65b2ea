//! Seeds that once found a bug, each with one line on the bug. They run on every CI.

/// (seed, what it found).
pub const REGRESSION_SEEDS: &[(u64, &str)] = &[];
