//! Errors of the calls into a MultiRaft host.

use crate::error::ProposeError;
use crate::handler::snapshot::CompactError;
use crate::log::LogError;
use crate::types::{GroupId, NodeId};
use thiserror::Error;

/// Why a MultiRaft call failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MultiError {
    /// This node hosts no replica of the group.
    #[error("this node hosts no replica of {0}")]
    UnknownGroup(GroupId),
    /// The node already hosts a replica of the group.
    #[error("this node already hosts a replica of {0}")]
    GroupExists(GroupId),
    /// The node hosts as many groups as it may.
    #[error("this node already hosts the maximum of {0} groups")]
    TooManyGroups(usize),
    /// The batch is addressed to another node.
    #[error("the batch is addressed to {to}, not to this node")]
    WrongNode {
        /// The addressee.
        to: NodeId,
    },
    /// Some messages of a batch named groups this node does not host; they were skipped.
    #[error("{count} messages from {from} named groups this node does not host")]
    UnknownGroups {
        /// The sending node.
        from: NodeId,
        /// How many were skipped.
        count: usize,
    },
    /// The batch came from a process this node does not accept for its sender's id.
    #[error("a batch from {from} was refused: {refusal}")]
    Refused {
        /// The sending node.
        from: NodeId,
        /// Why.
        refusal: super::incarnation::Refusal,
    },
    /// The group refused the proposal.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// The group refused the compaction.
    #[error(transparent)]
    Compact(#[from] CompactError),
    /// A store failed; the node must stop.
    #[error(transparent)]
    Log(#[from] LogError),
}
