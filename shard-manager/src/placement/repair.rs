//! Rule 1, repair: a range with fewer voters than configured gets a new one; a voter on a dead
//! node (down for `down_after_ms`, or removed) is replaced; a learner no operator owns is
//! removed; a voter too many is removed. Only ranges that still have a live majority are
//! touched: a change needs a quorum to commit.

use super::liveness::Liveness;
use super::operator::{OperatorKind, Step};
use super::planner::Planner;
use super::view::{NodeState, RangeView};
use crate::range::RangeId;
use flotilla_raft::NodeId;

/// Starts repair operators while the limits allow.
pub(super) fn repair(planner: &mut Planner<'_>) {
    add_missing_voters(planner);
    replace_dead_voters(planner);
    remove_stray_learners(planner);
    remove_extra_voters(planner);
}

fn add_missing_voters(planner: &mut Planner<'_>) {
    let wanted = planner.config.replicas_per_range;
    let short = planner.view.by_voter_count.range(..wanted);
    for id in short.flat_map(|(_, ranges)| ranges.iter().copied()) {
        if !planner.moves_left() || !planner.scan() {
            return;
        }
        let Some(range) = repairable(planner, id) else {
            continue;
        };
        if let Some(target) = planner.best_target(range) {
            let steps = vec![
                Step::AddLearner { node: target },
                Step::Promote {
                    node: target,
                    demote: None,
                },
            ];
            planner.start(range, OperatorKind::Repair, steps);
        }
    }
}

fn replace_dead_voters(planner: &mut Planner<'_>) {
    let wanted = planner.config.replicas_per_range;
    let dead: Vec<NodeId> = planner
        .nodes
        .iter()
        .filter(|(_, plan)| plan.liveness == Liveness::Dead)
        .map(|(id, _)| *id)
        .collect();
    for node in dead {
        let Some(entry) = planner.view.nodes.get(&node) else {
            continue;
        };
        for &id in &entry.ranges {
            if !planner.moves_left() || !planner.scan() {
                return;
            }
            let Some(range) = repairable(planner, id) else {
                continue;
            };
            if !range.is_voter(node) || range.voter_nodes().count() > wanted {
                continue;
            }
            if let Some(target) = planner.best_target(range) {
                let steps = planner.move_steps(range, node, target);
                planner.start(range, OperatorKind::Repair, steps);
            }
        }
    }
}

/// A range that is free, has no learner (a learner is cleaned up first) and can still commit.
fn repairable<'v>(planner: &Planner<'v>, id: RangeId) -> Option<&'v RangeView> {
    let range = planner.view.range(id)?;
    let ready = planner.is_free(id)
        && range.learner_nodes().next().is_none()
        && planner.has_live_majority(range);
    ready.then_some(range)
}

fn remove_stray_learners(planner: &mut Planner<'_>) {
    for &id in &planner.view.with_learners {
        if !planner.moves_left() || !planner.scan() {
            return;
        }
        let Some(range) = planner.view.range(id) else {
            continue;
        };
        if !planner.is_free(id) || !planner.has_live_majority(range) {
            continue;
        }
        if let Some(node) = range.learner_nodes().next() {
            planner.start(range, OperatorKind::Cleanup, vec![Step::Remove { node }]);
        }
    }
}

fn remove_extra_voters(planner: &mut Planner<'_>) {
    let wanted = planner.config.replicas_per_range;
    let over = planner.view.by_voter_count.range(wanted + 1..);
    for id in over.flat_map(|(_, ranges)| ranges.iter().copied()) {
        if !planner.moves_left() || !planner.scan() {
            return;
        }
        let Some(range) = repairable(planner, id) else {
            continue;
        };
        let Some(victim) = extra_voter(planner, range) else {
            continue;
        };
        let mut steps = planner.hand_over_steps(range, victim);
        steps.push(Step::Remove { node: victim });
        planner.start(range, OperatorKind::Cleanup, steps);
    }
}

/// The voter to remove from an over-replicated range: a dead one first, then a suspect one,
/// then one on a draining node, then the one on the fullest node; never one whose removal
/// leaves the rest without a live majority, nor one on a node out of moves.
fn extra_voter(planner: &Planner<'_>, range: &RangeView) -> Option<NodeId> {
    let rank = |node: NodeId| {
        let plan = planner.plan(node);
        let liveness = plan.map_or(Liveness::Dead, |plan| plan.liveness);
        let draining = plan.is_some_and(|plan| plan.state == NodeState::Draining);
        let replicas = plan.map_or(0, |plan| plan.replicas);
        (liveness, draining, replicas, std::cmp::Reverse(node))
    };
    let victim = range
        .voter_nodes()
        .filter(|&node| planner.node_can_move(node))
        .max_by_key(|&node| rank(node))?;
    let voters = range.voter_nodes().count() - 1;
    let alive = range
        .voter_nodes()
        .filter(|&node| node != victim && planner.liveness(node) != Liveness::Dead)
        .count();
    (alive * 2 > voters).then_some(victim)
}
