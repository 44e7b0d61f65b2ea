//! Moving operators in flight along: the next step once the range shows the current one done,
//! `Finish` after the last, `Abandon` when the range is gone, the target can no longer take
//! the replica or the leadership, the range's membership changed under the current step, or a
//! step outlived its timeout.

use super::liveness::Liveness;
use super::operator::{AbandonReason, Decision, Operator, Step};
use super::planner::Planner;
use super::view::{NodeState, RangeView, same_replicas};
use flotilla_raft::NodeId;

/// Decides, for every operator in flight, whether it advances, finishes or is given up.
pub(super) fn progress(planner: &mut Planner<'_>) {
    let decisions: Vec<Decision> = planner
        .view
        .operators()
        .filter_map(|operator| next_decision(planner, operator))
        .collect();
    planner.decisions.extend(decisions);
}

fn next_decision(planner: &Planner<'_>, operator: &Operator) -> Option<Decision> {
    let abandon = |reason| Decision::Abandon {
        operator: operator.id,
        reason,
    };
    let Some(range) = planner.view.range(operator.range) else {
        return Some(abandon(AbandonReason::RangeGone));
    };
    if let Some(node) = lost_receiver(planner, operator, range) {
        return Some(abandon(AbandonReason::TargetUnavailable(node)));
    }
    let done = operator
        .steps
        .iter()
        .skip(operator.step_index)
        .take_while(|step| step.is_done(range))
        .count();
    let step_index = operator.step_index + done;
    if step_index == operator.steps.len() {
        return Some(Decision::Finish {
            operator: operator.id,
        });
    }
    if done > 0 {
        return Some(Decision::Advance {
            operator: operator.id,
            step_index,
            now_ms: planner.now_ms,
            decided_on: Some(range.replicas.clone()),
        });
    }
    if !same_replicas(&range.replicas, &operator.decided_on) {
        return Some(abandon(AbandonReason::RangeChanged));
    }
    timed_out(planner, operator, range).then(|| {
        abandon(AbandonReason::TimedOut {
            step_index: operator.step_index,
        })
    })
}

/// The node that was to receive a replica or the leadership, if it no longer can: it is
/// draining, removed, recorded down or dead. A replica already promoted is kept (the move
/// finishes and repair takes over if the node is really gone); a suspect node is waited for
/// until the step times out.
fn lost_receiver(planner: &Planner<'_>, operator: &Operator, range: &RangeView) -> Option<NodeId> {
    let receiver = match operator.step()? {
        Step::TransferLeader { to, .. } => *to,
        Step::AddLearner { node } | Step::Promote { node, .. } => *node,
        Step::Remove { .. } => return None,
    };
    if operator.target() == Some(receiver) && range.is_voter(receiver) {
        return None;
    }
    let plan = planner.plan(receiver)?;
    let gone = plan.liveness == Liveness::Dead
        || matches!(
            plan.state,
            NodeState::Draining | NodeState::Removed | NodeState::Down { .. }
        );
    gone.then_some(receiver)
}

fn timed_out(planner: &Planner<'_>, operator: &Operator, range: &RangeView) -> bool {
    let Some(step) = operator.step() else {
        return false;
    };
    let timeout_ms = planner
        .config
        .step_timeout_for(step.copies_data(), range.size_bytes);
    planner.now_ms.saturating_sub(operator.step_started_ms) >= timeout_ms
}
