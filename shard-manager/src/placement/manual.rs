//! Manual operators: a person asks for one replica move or one leadership transfer on one
//! range (PD's `operator add transfer-peer` and `transfer-leader`). The request is checked
//! against the view and becomes a `Decision::Start` of kind `Manual` with the same steps the
//! rules would use; from then on it is an operator like any other (progress, timeouts,
//! abandon). It bypasses the move and transfer limits when it starts, as PD's admin operators
//! do, but counts against them while in flight; one operator per range still holds.

use super::PlacementDriver;
use super::error::ManualError;
use super::liveness::Liveness;
use super::operator::{Decision, OperatorKind, Step};
use super::planner::Planner;
use super::view::{ClusterView, NodeState, RangeView, ReplicaRole};
use crate::range::RangeId;
use flotilla_raft::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a person asks of one range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManualRequest {
    /// Move `range`'s voter on `from` to `to` (which holds no replica of it).
    MoveReplica {
        /// The range.
        range: RangeId,
        /// The node whose voter leaves.
        from: NodeId,
        /// The node that receives it.
        to: NodeId,
    },
    /// Hand `range`'s leadership to its voter on `to`.
    TransferLeader {
        /// The range.
        range: RangeId,
        /// The voter to lead.
        to: NodeId,
    },
}

impl ManualRequest {
    /// The range asked about.
    #[must_use]
    pub fn range(&self) -> RangeId {
        match *self {
            ManualRequest::MoveReplica { range, .. }
            | ManualRequest::TransferLeader { range, .. } => range,
        }
    }
}

impl fmt::Display for ManualRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ManualRequest::MoveReplica { range, from, to } => {
                write!(f, "move r{}'s replica from {from} to {to}", range.0)
            }
            ManualRequest::TransferLeader { range, to } => {
                write!(f, "transfer r{}'s leadership to {to}", range.0)
            }
        }
    }
}

impl PlacementDriver {
    /// The decision that starts `request` on `view` at `now_ms`: a `Manual` operator with the
    /// steps the rules would use (a move hands leadership away first when the source leads,
    /// then adds a learner, promotes it while demoting the source, and removes the source).
    ///
    /// # Errors
    /// Why the request does not fit the view, as a sentence: an unknown range, one with an
    /// operator in flight, a source without a voter, a target that already holds a replica
    /// (or, for a transfer, holds no voter or leads already), or a target that is not up and
    /// live.
    pub fn manual(
        &self,
        view: &ClusterView,
        request: ManualRequest,
        now_ms: u64,
    ) -> Result<Decision, ManualError> {
        let range = free_range(view, request.range())?;
        let planner = Planner::new(view, self.config(), now_ms);
        let steps = match request {
            ManualRequest::MoveReplica { from, to, .. } => {
                check_move(range, from, to)?;
                check_receiver(&planner, to)?;
                planner.move_steps(range, from, to)
            }
            ManualRequest::TransferLeader { to, .. } => {
                let from = check_transfer(range, to)?;
                check_receiver(&planner, to)?;
                vec![Step::TransferLeader { from, to }]
            }
        };
        Ok(Decision::Start {
            range: range.id,
            kind: OperatorKind::Manual,
            steps,
            now_ms,
            decided_on: Some(range.replicas.clone()),
        })
    }
}

/// The range, if known and without an operator in flight.
fn free_range(view: &ClusterView, id: RangeId) -> Result<&RangeView, ManualError> {
    let range = view.range(id).ok_or(ManualError::UnknownRange(id))?;
    match view.operator_for(id) {
        Some(operator) => Err(ManualError::RangeBusy {
            range: id,
            operator: operator.id,
        }),
        None => Ok(range),
    }
}

fn check_move(range: &RangeView, from: NodeId, to: NodeId) -> Result<(), ManualError> {
    match range.role_of(from) {
        None => {
            return Err(ManualError::NoReplica {
                range: range.id,
                node: from,
            });
        }
        Some(ReplicaRole::Learner) => {
            return Err(ManualError::SourceNotVoter {
                range: range.id,
                node: from,
            });
        }
        Some(ReplicaRole::Voter) => {}
    }
    if range.role_of(to).is_some() {
        return Err(ManualError::AlreadyHolds {
            range: range.id,
            node: to,
        });
    }
    Ok(())
}

/// The current leader, if `to` may take over from it.
fn check_transfer(range: &RangeView, to: NodeId) -> Result<NodeId, ManualError> {
    if !range.is_voter(to) {
        return Err(ManualError::NotVoter {
            range: range.id,
            node: to,
        });
    }
    match range.leader {
        None => Err(ManualError::NoLeader(range.id)),
        Some(leader) if leader == to => Err(ManualError::AlreadyLeads {
            range: range.id,
            node: to,
        }),
        Some(leader) => Ok(leader),
    }
}

/// Whether `node` may receive a replica or a leadership: known, up, and heard from.
fn check_receiver(planner: &Planner<'_>, node: NodeId) -> Result<(), ManualError> {
    let plan = planner.plan(node).ok_or(ManualError::UnknownNode(node))?;
    if plan.state != NodeState::Up {
        return Err(ManualError::TargetNotUp {
            node,
            state: plan.state,
        });
    }
    if plan.liveness != Liveness::Live {
        return Err(ManualError::TargetNotLive(node));
    }
    Ok(())
}
