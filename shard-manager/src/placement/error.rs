//! Why the view refused an update or a decision: one enum per operation.

use super::operator::OperatorId;
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
}
