//! Seeds that once found a bug, each with one line on the bug. Each bug can be re-enacted by a
//! test-only mutation, so every CI run proves the seed still reaches the bug (it fails with the
//! mutation) and that the bug stays fixed (it passes without).

use flotilla_raft::Mutation;

/// One simulator find.
pub struct Regression {
    /// The seed that (under the current scenario generator) reaches the bug.
    pub seed: u64,
    /// The bug, in one line.
    pub bug: &'static str,
    /// The broken rule that re-enacts it.
    pub mutation: Mutation,
    /// What the simulator reports when the bug is present.
    pub expected: &'static str,
}

/// Every bug the simulator found in the protocol.
pub const REGRESSION_SEEDS: &[Regression] = &[Regression {
    seed: 7,
    bug: "a follower in the replicate state whose pipelined AppendEntries were lost was never \
          sent them again while no new proposal came (fixed: an empty AppendEntries at `next` \
          on each heartbeat answer from a lagging follower)",
    mutation: Mutation::NoPositionCheck,
    expected: "liveness violated",
}];
