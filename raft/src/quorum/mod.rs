//! Quorum math for simple and joint configurations: the commit index a set of voters
//! guarantees, and the outcome of an election.

mod joint;
mod majority;

pub use joint::{JointQuorum, quorum_of};
pub use majority::MajorityQuorum;

/// Where an election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// A quorum can no longer grant.
    Lost,
    /// Neither yet.
    Pending,
}

#[cfg(test)]
mod tests;
