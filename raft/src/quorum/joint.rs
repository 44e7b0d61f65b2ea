//! Joint quorum: a decision needs a majority of the incoming AND of the outgoing voters
//! (Raft §6); outside a joint configuration the outgoing set is empty and neutral.

use super::{MajorityQuorum, VoteResult};
use crate::entry::Membership;
use crate::types::NodeId;

/// The quorum of a (possibly joint) membership.
#[derive(Clone, Copy, Debug)]
pub struct JointQuorum<'a> {
    incoming: MajorityQuorum<'a>,
    outgoing: MajorityQuorum<'a>,
}

/// The quorum that decides for `membership`.
#[must_use]
pub fn quorum_of(membership: &Membership) -> JointQuorum<'_> {
    JointQuorum {
        incoming: MajorityQuorum::new(&membership.voters),
        outgoing: MajorityQuorum::new(&membership.outgoing),
    }
}

impl JointQuorum<'_> {
    /// The largest value both halves have reached by majority.
    pub fn committed(&self, value_of: impl Fn(NodeId) -> Option<u64>) -> u64 {
        let incoming = self.incoming.committed(&value_of);
        let outgoing = self.outgoing.committed(&value_of);
        incoming.min(outgoing)
    }

    /// The election outcome: won only if both halves won, lost if either lost.
    pub fn vote_result(&self, granted_by: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let incoming = self.incoming.vote_result(&granted_by);
        let outgoing = self.outgoing.vote_result(&granted_by);
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether the set of nodes for which `is_active` holds forms a quorum.
    pub fn is_active(&self, is_active: impl Fn(NodeId) -> bool) -> bool {
        self.vote_result(|node| Some(is_active(node))) == VoteResult::Won
    }
}
