//! Operators: what the driver asks of a range, as a short list of steps that a node core turns
//! into Raft membership changes and leadership transfers, one at a time. Every step is checked
//! against the range as the meta group sees it, so executing one twice is harmless.

use super::view::{RangeView, Replica, ReplicaRole};
use crate::range::RangeId;
use flotilla_raft::{ChangeStep, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Identity of an operator, assigned by the view when it starts; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OperatorId(pub u64);

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}

/// One step of an operator. Each is done when the range shows its effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Move the range's leadership from `from` to `to` (a voter): Raft leadership transfer.
    /// Done once `from` no longer leads.
    TransferLeader {
        /// The current leader.
        from: NodeId,
        /// The voter to hand over to.
        to: NodeId,
    },
    /// Add `node` as a learner: it receives a snapshot, then the log. Done once it is a member.
    AddLearner {
        /// The new replica's node.
        node: NodeId,
    },
    /// Once the learner on `node` has caught up, make it a voter through joint consensus, and in
    /// the same change turn `demote` (the replica it replaces) into a learner, so the number of
    /// voters never changes. Done once `node` votes and `demote` does not.
    Promote {
        /// The learner to promote.
        node: NodeId,
        /// The voter it replaces, if any.
        demote: Option<NodeId>,
    },
    /// Remove `node`'s replica, whatever its role. Done once it is not a member.
    Remove {
        /// The replica's node.
        node: NodeId,
    },
}

impl Step {
    /// Whether `range` shows this step's effect.
    #[must_use]
    pub fn is_done(&self, range: &RangeView) -> bool {
        match *self {
            Step::TransferLeader { from, .. } => range.leader.is_some_and(|leader| leader != from),
            Step::AddLearner { node } => range.role_of(node).is_some(),
            Step::Promote { node, demote } => {
                range.is_voter(node) && demote.is_none_or(|demoted| !range.is_voter(demoted))
            }
            Step::Remove { node } => range.role_of(node).is_none(),
        }
    }

    /// The Raft membership change that carries this step out on `range` as it is now, without
    /// the parts already done; empty for a leadership transfer or a step already done. The node
    /// core proposes it with `propose_conf_change` on the range's leader.
    #[must_use]
    pub fn change_steps(&self, range: &RangeView) -> Vec<ChangeStep> {
        match *self {
            Step::TransferLeader { .. } => Vec::new(),
            Step::AddLearner { node } => match range.role_of(node) {
                None => vec![ChangeStep::AddLearner(node)],
                Some(_) => Vec::new(),
            },
            Step::Promote { node, demote } => promote_changes(range, node, demote),
            Step::Remove { node } => match range.role_of(node) {
                Some(_) => vec![ChangeStep::Remove(node)],
                None => Vec::new(),
            },
        }
    }

    /// `range` as it is once this step is done: what a simulated node core does at once. A
    /// leader that stops being a voter leaves the range leaderless (an election follows).
    #[must_use]
    pub fn carried_out(&self, range: &RangeView) -> RangeView {
        let mut range = range.clone();
        match *self {
            Step::TransferLeader { to, .. } => range.leader = Some(to),
            Step::AddLearner { node } => {
                if range.role_of(node).is_none() {
                    range.replicas.push(Replica {
                        node,
                        role: ReplicaRole::Learner,
                    });
                }
            }
            Step::Promote { node, demote } => {
                set_role(&mut range, node, ReplicaRole::Voter);
                if let Some(demoted) = demote {
                    set_role(&mut range, demoted, ReplicaRole::Learner);
                }
            }
            Step::Remove { node } => range.replicas.retain(|replica| replica.node != node),
        }
        if range.leader.is_some_and(|leader| !range.is_voter(leader)) {
            range.leader = None;
        }
        range
    }

    /// Whether the step copies a range's data to a new replica (and so may take long).
    #[must_use]
    pub fn copies_data(&self) -> bool {
        matches!(self, Step::AddLearner { .. } | Step::Promote { .. })
    }
}

fn set_role(range: &mut RangeView, node: NodeId, role: ReplicaRole) {
    if let Some(replica) = range
        .replicas
        .iter_mut()
        .find(|replica| replica.node == node)
    {
        replica.role = role;
    }
}

fn promote_changes(range: &RangeView, node: NodeId, demote: Option<NodeId>) -> Vec<ChangeStep> {
    let mut changes = Vec::new();
    if range.role_of(node) == Some(ReplicaRole::Learner) {
        changes.push(ChangeStep::AddVoter(node));
    }
    if let Some(demoted) = demote.filter(|&demoted| range.is_voter(demoted)) {
        changes.push(ChangeStep::AddLearner(demoted));
    }
    changes
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Step::TransferLeader { from, to } => write!(f, "transfer-leader {from}->{to}"),
            Step::AddLearner { node } => write!(f, "add-learner {node}"),
            Step::Promote { node, demote: None } => write!(f, "promote {node}"),
            Step::Promote {
                node,
                demote: Some(demoted),
            } => write!(f, "promote {node} demote {demoted}"),
            Step::Remove { node } => write!(f, "remove {node}"),
        }
    }
}

/// Which rule made an operator: its priority and why it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OperatorKind {
    /// A range below its replica count, or with a replica on a node gone for good.
    Repair,
    /// A learner no operator owns (left by an abandoned move), or a voter too many.
    Cleanup,
    /// A replica or a leader leaving a draining node.
    Drain,
    /// A replica moving from a node with more replicas than the mean to one with fewer.
    Rebalance,
    /// Leadership moving towards the mean (of counts, or of load once load is reported).
    LeaderBalance,
    // Appended: the meta log encodes a kind by its position.
    /// Asked for by a person (`flotilla range move|transfer-leader`): bypasses the limits when
    /// it starts, then progresses and is abandoned like any other.
    Manual,
}

impl fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            OperatorKind::Repair => "repair",
            OperatorKind::Cleanup => "cleanup",
            OperatorKind::Drain => "drain",
            OperatorKind::Rebalance => "rebalance",
            OperatorKind::LeaderBalance => "leader-balance",
            OperatorKind::Manual => "manual",
        };
        f.write_str(name)
    }
}

/// An operator in flight, as the meta group records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Its identity.
    pub id: OperatorId,
    /// The range it changes.
    pub range: RangeId,
    /// The rule that made it.
    pub kind: OperatorKind,
    /// What to do, in order; never empty.
    pub steps: Vec<Step>,
    /// The step being carried out now (an index into `steps`).
    pub step_index: usize,
    /// When the current step began (the meta leader's milliseconds).
    pub step_started_ms: u64,
    /// The range's recorded replicas the current step was decided on (by the decision that
    /// started the operator or advanced it to this step). The range's leader carries
    /// a membership step out only while its group still has exactly these replicas, and the
    /// driver gives the operator up once the record shows others without the step done: a
    /// step decided on an older membership (a cleanup of a learner a late step had promoted)
    /// is never applied to a newer one. TiKV checks a conf change's region epoch the same way;
    /// the replicas and not the membership's log index, which a replica that took it from a
    /// snapshot knows as the snapshot's index.
    #[serde(default)]
    pub decided_on: Vec<Replica>,
}

impl Operator {
    /// The step being carried out now.
    #[must_use]
    pub fn step(&self) -> Option<&Step> {
        self.steps.get(self.step_index)
    }

    /// The node that receives a new replica, if any.
    #[must_use]
    pub fn target(&self) -> Option<NodeId> {
        target_of(&self.steps)
    }

    /// The node whose replica goes away, if any.
    #[must_use]
    pub fn source(&self) -> Option<NodeId> {
        source_of(&self.steps)
    }

    /// Whether the operator adds or promotes a replica on `node`: that node's replica must not
    /// be destroyed while it is in flight.
    #[must_use]
    pub fn adds(&self, node: NodeId) -> bool {
        self.steps.iter().any(|step| match *step {
            Step::AddLearner { node: added } | Step::Promote { node: added, .. } => added == node,
            Step::TransferLeader { .. } | Step::Remove { .. } => false,
        })
    }

    /// The two ends of a plain leadership transfer (an operator of that one step), which
    /// counts against the leader-transfer limits rather than the move limits.
    #[must_use]
    pub fn transfer(&self) -> Option<(NodeId, NodeId)> {
        transfer_of(&self.steps)
    }

    /// Every node the operator's limits are counted against.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        limited_nodes(&self.steps)
    }
}

/// The node an operator of `steps` adds a replica on.
pub(crate) fn target_of(steps: &[Step]) -> Option<NodeId> {
    steps.iter().find_map(|step| match *step {
        Step::AddLearner { node } => Some(node),
        _ => None,
    })
}

/// The node an operator of `steps` removes a replica from.
pub(crate) fn source_of(steps: &[Step]) -> Option<NodeId> {
    steps.iter().find_map(|step| match *step {
        Step::Remove { node } => Some(node),
        _ => None,
    })
}

/// The two ends of `steps` if they are one plain leadership transfer.
pub(crate) fn transfer_of(steps: &[Step]) -> Option<(NodeId, NodeId)> {
    match steps {
        [Step::TransferLeader { from, to }] => Some((*from, *to)),
        _ => None,
    }
}

/// Every node the limits of an operator of `steps` count against.
pub(crate) fn limited_nodes(steps: &[Step]) -> impl Iterator<Item = NodeId> + '_ {
    let transfer = transfer_of(steps)
        .into_iter()
        .flat_map(|(from, to)| [from, to]);
    target_of(steps)
        .into_iter()
        .chain(source_of(steps))
        .chain(transfer)
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} r{} {}:", self.id, self.range.0, self.kind)?;
        write_steps(f, &self.steps)
    }
}

pub(crate) fn write_steps(f: &mut fmt::Formatter<'_>, steps: &[Step]) -> fmt::Result {
    for (index, step) in steps.iter().enumerate() {
        let separator = if index == 0 { " " } else { ", " };
        write!(f, "{separator}{step}")?;
    }
    Ok(())
}

/// Why an operator was given up. What is left behind (a learner, a demoted voter) is removed by
/// the cleanup rule; nothing is ever left below its voter count by giving up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbandonReason {
    /// The range is no longer in the view (split, merged or dropped).
    RangeGone,
    /// The node receiving the replica (or the leadership) is down, draining or removed.
    TargetUnavailable(NodeId),
    /// The range's membership changed, and not by the current step: the step was decided on
    /// a membership the range no longer has.
    RangeChanged,
    /// The current step took longer than its timeout.
    TimedOut {
        /// The step that did not finish.
        step_index: usize,
    },
}

impl fmt::Display for AbandonReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbandonReason::RangeGone => write!(f, "the range is gone"),
            AbandonReason::RangeChanged => {
                write!(f, "the range's membership changed under the current step")
            }
            AbandonReason::TargetUnavailable(node) => {
                write!(f, "the target {node} is no longer available")
            }
            AbandonReason::TimedOut { step_index } => {
                write!(f, "step {step_index} timed out")
            }
        }
    }
}

/// One write to the meta group: the driver proposes it, and every replica applies it to its
/// view with `ClusterView::apply`. The write is the record: a new meta leader resumes from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Start an operator on `range`; the view gives it the next id.
    Start {
        /// The range.
        range: RangeId,
        /// The rule that made it.
        kind: OperatorKind,
        /// Its steps.
        steps: Vec<Step>,
        /// When it starts.
        now_ms: u64,
        /// The range's recorded replicas the driver decided on (see [`Decision::decided_on`]).
        decided_on: Option<Vec<Replica>>,
    },
    /// The range shows every step before `step_index` done: go on with that one.
    Advance {
        /// The operator.
        operator: OperatorId,
        /// The step to carry out now.
        step_index: usize,
        /// When it starts.
        now_ms: u64,
        /// The range's recorded replicas the driver saw the earlier steps done on (see
        /// [`Decision::decided_on`]).
        decided_on: Option<Vec<Replica>>,
    },
    /// Every step is done.
    Finish {
        /// The operator.
        operator: OperatorId,
    },
    /// The operator is given up.
    Abandon {
        /// The operator.
        operator: OperatorId,
        /// Why.
        reason: AbandonReason,
    },
}

impl Decision {
    /// The range's recorded replicas a `Start` or an `Advance` was decided on. The view takes
    /// one only while the range still has exactly these (`ApplyError::RangeChanged`), and its
    /// step is carried out on them alone: a membership report can be ordered in the meta log
    /// between the view the driver read and its decision, and a step decided on the older
    /// record (a cleanup of a learner that a late step had promoted) must not be taken as
    /// decided on the newer one (simulator seed 911). `None` only in a decision written
    /// before decisions named their record: it is taken on the record as it is.
    #[must_use]
    pub fn decided_on(&self) -> Option<&[Replica]> {
        match self {
            Decision::Start { decided_on, .. } | Decision::Advance { decided_on, .. } => {
                decided_on.as_deref()
            }
            Decision::Finish { .. } | Decision::Abandon { .. } => None,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Start {
                range, kind, steps, ..
            } => {
                write!(f, "start r{} {kind}:", range.0)?;
                write_steps(f, steps)
            }
            Decision::Advance {
                operator,
                step_index,
                ..
            } => write!(f, "advance {operator} to step {step_index}"),
            Decision::Finish { operator } => write!(f, "finish {operator}"),
            Decision::Abandon { operator, reason } => write!(f, "abandon {operator}: {reason}"),
        }
    }
}
