//! Why the view refused an update or a decision: one enum per operation.

use super::operator::OperatorId;
use super::view::NodeState;
use crate::range::RangeId;
use flotilla_raft::NodeId;
use thiserror::Error;

/// Why a node or range update was refused by the view.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ViewError {
    /// The update names a node the view does not know.
    #[error("no node {0} is known: register a node before placing replicas on it")]
    UnknownNode(NodeId),
    /// A removed node's id is never used again.
    #[error("{0} was removed, and a removed node's id is never used again")]
    NodeRemoved(NodeId),
    /// Two replicas of one range on one node.
    #[error("range r{} has two replicas on {node}", range.0)]
    DuplicateReplica {
        /// The range.
        range: RangeId,
        /// The node.
        node: NodeId,
    },
    /// A range without a voter cannot commit anything.
    #[error("range r{} has no voter", .0.0)]
    NoVoter(RangeId),
    /// The leader named is not one of the range's voters.
    #[error("range r{}'s leader {node} is not one of its voters", range.0)]
    LeaderNotVoter {
        /// The range.
        range: RangeId,
        /// The leader named.
        node: NodeId,
    },
}

/// Why a decision was refused by the view (every meta replica refuses it alike).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The range already has an operator in flight.
    #[error("range r{} already has {operator} in flight", range.0)]
    RangeBusy {
        /// The range.
        range: RangeId,
        /// Its operator.
        operator: OperatorId,
    },
    /// The range is not in the view.
    #[error("no range r{} is known", .0.0)]
    UnknownRange(RangeId),
    /// The operator is not in flight (finished, abandoned, or never started).
    #[error("{0} is not in flight")]
    UnknownOperator(OperatorId),
    /// An advance that does not move forward, or past the last step.
    #[error("{operator} is at step {current} of {count}; it cannot go to step {requested}")]
    StepOutOfOrder {
        /// The operator.
        operator: OperatorId,
        /// Its current step.
        current: usize,
        /// How many steps it has.
        count: usize,
        /// The step asked for.
        requested: usize,
    },
    /// An operator must have at least one step.
    #[error("an operator must have at least one step")]
    NoSteps,
    /// The range's recorded replicas changed between the decision and its application (a
    /// membership report ordered before it): it is decided again on the new record.
    #[error("range r{}'s replicas changed since the decision was made on them", .0.0)]
    RangeChanged(RangeId),
}

/// Why a manual operator was refused (nothing was started).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManualError {
    /// The range is not in the view.
    #[error("no range r{} is known", .0.0)]
    UnknownRange(RangeId),
    /// One operator per range: the one in flight must finish or be abandoned first.
    #[error(
        "range r{} already has {operator} in flight: wait for it to finish or be abandoned",
        range.0
    )]
    RangeBusy {
        /// The range.
        range: RangeId,
        /// Its operator.
        operator: OperatorId,
    },
    /// The source of a move holds no replica of the range.
    #[error("{node} holds no replica of range r{}", range.0)]
    NoReplica {
        /// The range.
        range: RangeId,
        /// The node named as the source.
        node: NodeId,
    },
    /// The source of a move holds a learner, which only an operator in flight (or the cleanup
    /// rule) adds or removes.
    #[error(
        "{node} holds only a learner of range r{}: only a voter can be moved",
        range.0
    )]
    SourceNotVoter {
        /// The range.
        range: RangeId,
        /// The node named as the source.
        node: NodeId,
    },
    /// The target of a move holds a replica of the range already.
    #[error(
        "{node} already holds a replica of range r{}: two replicas of a range never share a node",
        range.0
    )]
    AlreadyHolds {
        /// The range.
        range: RangeId,
        /// The node named as the target.
        node: NodeId,
    },
    /// Leadership goes only to a voter.
    #[error("{node} holds no voter of range r{}: only a voter can lead", range.0)]
    NotVoter {
        /// The range.
        range: RangeId,
        /// The node named as the new leader.
        node: NodeId,
    },
    /// The range's leader is not known yet, so there is nothing to transfer from.
    #[error("range r{} has no known leader yet: try again in a moment", .0.0)]
    NoLeader(RangeId),
    /// The target leads the range already.
    #[error("{node} already leads range r{}", range.0)]
    AlreadyLeads {
        /// The range.
        range: RangeId,
        /// The node named as the new leader.
        node: NodeId,
    },
    /// The target is not a registered node.
    #[error("no node {0} is known")]
    UnknownNode(NodeId),
    /// Only a node that is up receives replicas and leaders.
    #[error("{node} is {state}, and only a node that is up receives replicas and leaders")]
    TargetNotUp {
        /// The node named as the target.
        node: NodeId,
        /// Its recorded state.
        state: NodeState,
    },
    /// The target is up but has not been heard from lately.
    #[error(
        "{0} has not been heard from lately (heartbeat_stale_ms), so it receives no replica or \
         leader"
    )]
    TargetNotLive(NodeId),
}
