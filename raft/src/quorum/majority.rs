//! Majority quorum over one set of voters.

use super::VoteResult;
use crate::types::NodeId;
use std::collections::BTreeSet;

/// Voter sets up to this size are counted without allocating.
const INLINE_VOTERS: usize = 9;

/// A set of voters deciding by simple majority.
#[derive(Clone, Copy, Debug)]
pub struct MajorityQuorum<'a> {
    voters: &'a BTreeSet<NodeId>,
}

impl<'a> MajorityQuorum<'a> {
    /// The majority quorum of `voters`.
    #[must_use]
    pub fn new(voters: &'a BTreeSet<NodeId>) -> Self {
        Self { voters }
    }

    /// The largest value that a majority of voters has reached, given each voter's value
    /// (absent counts as zero). An empty set of voters imposes no limit (`u64::MAX`), so it
    /// is neutral inside a joint quorum.
    pub fn committed(&self, value_of: impl Fn(NodeId) -> Option<u64>) -> u64 {
        if self.voters.is_empty() {
            return u64::MAX;
        }
        // Called on every append acknowledgement: groups of up to `INLINE_VOTERS` voters (all
        // practical ones) sort on the stack instead of allocating.
        let mut inline = [0u64; INLINE_VOTERS];
        let mut heap = Vec::new();
        let values: &mut [u64] = if self.voters.len() <= INLINE_VOTERS {
            &mut inline[..self.voters.len()]
        } else {
            heap.resize(self.voters.len(), 0);
            &mut heap
        };
        for (slot, &voter) in values.iter_mut().zip(self.voters) {
            *slot = value_of(voter).unwrap_or(0);
        }
        values.sort_unstable_by(|a, b| b.cmp(a));
        let majority = self.voters.len() / 2 + 1;
        values[majority - 1]
    }

    /// The outcome of an election given each voter's answer (absent: not answered yet).
    /// An empty set of voters wins, so it is neutral inside a joint quorum.
    pub fn vote_result(&self, granted_by: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0, 0);
        for &voter in self.voters {
            match granted_by(voter) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let majority = self.voters.len() / 2 + 1;
        if granted >= majority {
            VoteResult::Won
        } else if granted + missing >= majority {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}
