//! Errors of the calls into a replica, one enum per operation.

use crate::log::LogError;
use crate::types::{LogIndex, NodeId};
use thiserror::Error;

/// Why a proposal (data, membership change, read or transfer) was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This replica is not the leader; `leader_hint` is the leader it last heard of.
    #[error("this replica is not the leader (last known leader: {leader_hint:?})")]
    NotLeader {
        /// The leader this replica last heard of, if any.
        leader_hint: Option<NodeId>,
    },
    /// A leadership transfer is in progress; proposals wait until it ends.
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    /// A membership change is still pending; only one may be in flight.
    #[error("a membership change is still pending")]
    MembershipChangePending,
    /// The membership change would leave no voter, or names a step that is a no-op.
    #[error("the membership change is invalid: {0}")]
    InvalidMembershipChange(&'static str),
    /// The transfer target is not a voter of the group.
    #[error("{0} is not a voter of this group")]
    NotAVoter(NodeId),
    /// Too many reads are waiting for confirmation.
    #[error("too many reads are pending; try again later")]
    TooManyPendingReads,
}

/// Why a message was not stepped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The message is addressed to another replica.
    #[error("the message is addressed to {to}, not to this replica")]
    WrongRecipient {
        /// The addressee.
        to: NodeId,
    },
    /// The sender is not a member of the group this replica knows of; the message was
    /// ignored (it may be from a removed replica).
    #[error("the sender {0} is not a member of this group")]
    UnknownSender(NodeId),
    /// The message contradicts itself or the protocol (e.g. entries that do not follow
    /// `prev`, or an acknowledgement of entries the leader never had); it was ignored.
    #[error("malformed message from {from}: {reason}")]
    Malformed {
        /// The sender.
        from: NodeId,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A whole snapshot arrived but its data failed the configured `SnapshotCheck`: it was
    /// dropped, nothing was installed, and the leader will send it again.
    #[error("the snapshot at index {index} from {from} was refused: {reason}")]
    SnapshotRefused {
        /// The sender.
        from: NodeId,
        /// The snapshot's last index.
        index: LogIndex,
        /// Why the check refused it.
        reason: String,
    },
    /// The persisted log could not be read; the node must stop.
    #[error(transparent)]
    Log(#[from] LogError),
}
