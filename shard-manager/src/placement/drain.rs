//! Rule 2, drain: leaders leave a draining node first (a transfer is quick), then its replicas
//! move to the nodes with the fewest. A draining node that dies is repaired instead.

use super::liveness::Liveness;
use super::operator::{OperatorKind, Step};
use super::planner::Planner;
use super::view::NodeState;
use flotilla_raft::NodeId;

/// Starts drain operators while the limits allow.
pub(super) fn drain(planner: &mut Planner<'_>) {
    let draining: Vec<NodeId> = planner
        .nodes
        .iter()
        .filter(|(_, plan)| plan.state == NodeState::Draining && plan.liveness != Liveness::Dead)
        .map(|(id, _)| *id)
        .collect();
    for node in draining {
        move_leaders_off(planner, node);
        move_replicas_off(planner, node);
    }
}

fn move_leaders_off(planner: &mut Planner<'_>, node: NodeId) {
    let Some(entry) = planner.view.nodes.get(&node) else {
        return;
    };
    for &id in &entry.leads {
        if !planner.transfers_left() || !planner.node_can_transfer(node) || !planner.scan() {
            return;
        }
        let Some(range) = planner.view.range(id) else {
            continue;
        };
        if !planner.is_free(id) {
            continue;
        }
        let to = planner
            .leader_target(range, node)
            .filter(|&to| planner.node_can_transfer(to));
        if let Some(to) = to {
            let steps = vec![Step::TransferLeader { from: node, to }];
            planner.start(range, OperatorKind::Drain, steps);
        }
    }
}

fn move_replicas_off(planner: &mut Planner<'_>, node: NodeId) {
    let wanted = planner.config.replicas_per_range;
    let Some(entry) = planner.view.nodes.get(&node) else {
        return;
    };
    for &id in &entry.ranges {
        if !planner.moves_left() || !planner.node_can_move(node) || !planner.scan() {
            return;
        }
        let Some(range) = planner.view.range(id) else {
            continue;
        };
        let movable = planner.is_free(id)
            && range.is_voter(node)
            && range.voter_nodes().count() <= wanted
            && range.learner_nodes().next().is_none()
            && planner.has_live_majority(range);
        if !movable {
            continue;
        }
        if let Some(target) = planner.best_target(range) {
            let steps = planner.move_steps(range, node, target);
            planner.start(range, OperatorKind::Drain, steps);
        }
    }
}
