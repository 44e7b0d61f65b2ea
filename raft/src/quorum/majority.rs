//! Majority quorum over one set of voters.

use super::VoteResult;
use crate::types::NodeId;
use std::collections::BTreeSet;

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
        let mut values: Vec<u64> = self
            .voters
            .iter()
            .map(|&voter| value_of(voter).unwrap_or(0))
            .collect();
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
