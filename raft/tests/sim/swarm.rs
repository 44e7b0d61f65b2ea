//! Per-seed random configuration of a run (VOPR "swarm testing"): each seed draws its own
//! cluster size, network faults, crash rate, clock skew and workload mix, so that many seeds
//! explore many corners rather than one average.

use crate::harness::network::Faults;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// What one seed runs.
#[derive(Clone, Debug)]
pub struct Swarm {
    /// Voters at the start (3-7).
    pub replica_count: u64,
    /// The wire during the safety phase.
    pub faults: Faults,
    /// Percent chance per step of a new partition.
    pub partition_percent: u32,
    /// Percent chance per step of a crash.
    pub crash_percent: u32,
    /// Of crashes, percent that happen mid-ready (losing unsynced writes).
    pub torn_crash_percent: u32,
    /// Clock rates vary in [100 - skew, 100 + skew] percent.
    pub clock_skew_percent: u64,
    /// Snapshot every this many applied entries.
    pub snapshot_interval: Option<u64>,
    /// Percent chance per step of a client proposal.
    pub propose_percent: u32,
    /// Percent chance per step of a linearizable read.
    pub read_percent: u32,
    /// Percent chance per step of a membership change.
    pub membership_percent: u32,
    /// Percent chance per step of a leadership transfer.
    pub transfer_percent: u32,
    /// Steps of the safety phase.
    pub safety_steps: u64,
}

/// Simulated milliseconds per step of the scenario.
pub const STEP_MS: u64 = 20;

impl Swarm {
    /// Draws a configuration from the seed's scenario generator.
    pub fn random(rng: &mut ChaCha8Rng) -> Self {
        let delay_ms_max = rng.random_range(1..=60);
        Self {
            replica_count: rng.random_range(3..=7),
            faults: Faults {
                drop_percent: rng.random_range(0..=30),
                duplicate_percent: rng.random_range(0..=50),
                delay_ms_min: 0,
                delay_ms_max,
                long_reordering: rng.random_ratio(1, 10),
            },
            partition_percent: rng.random_range(0..=4),
            crash_percent: rng.random_range(0..=3),
            torn_crash_percent: rng.random_range(0..=100),
            clock_skew_percent: rng.random_range(0..=20),
            snapshot_interval: rng.random_bool(0.6).then(|| rng.random_range(5..=60)),
            propose_percent: rng.random_range(10..=80),
            read_percent: rng.random_range(0..=30),
            membership_percent: if rng.random_bool(0.4) { 2 } else { 0 },
            transfer_percent: if rng.random_bool(0.4) { 2 } else { 0 },
            safety_steps: rng.random_range(200..=600),
        }
    }
}
