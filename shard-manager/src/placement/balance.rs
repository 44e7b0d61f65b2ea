//! Rule 3, spread: replicas move from the node holding the most to the one holding the fewest
//! until every node that receives holds within one of the mean. Two replicas of a range never
//! share a node: a target already holding one is never chosen (and the view refuses such a
//! range outright). Only healthy ranges move: every voter live, no learner, no operator.

use super::operator::OperatorKind;
use super::planner::Planner;
use super::view::RangeView;
use crate::range::RangeId;
use flotilla_raft::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Where the scan of each node's ranges resumes, so a tick does not re-examine the ranges the
/// last one found unmovable.
pub(super) type Cursors = BTreeMap<NodeId, RangeId>;

/// Starts rebalancing moves while the limits allow and the spread is more than one.
pub(super) fn rebalance(planner: &mut Planner<'_>, cursors: &mut Cursors) {
    let mut exhausted = BTreeSet::new();
    while planner.moves_left() && planner.scans_left() {
        let Some((source, target)) = extremes(planner, &exhausted) else {
            return;
        };
        match movable_range(planner, cursors, source, target) {
            Some(range) => {
                let steps = planner.move_steps(range, source, target);
                planner.start(range, OperatorKind::Rebalance, steps);
            }
            None => {
                exhausted.insert(source);
            }
        }
    }
}

/// The fullest node that can still give (not yet found without a movable range) and the
/// emptiest that can take, if they differ by two or more.
fn extremes(planner: &Planner<'_>, exhausted: &BTreeSet<NodeId>) -> Option<(NodeId, NodeId)> {
    let candidates = || {
        planner
            .nodes
            .iter()
            .filter(|(id, plan)| plan.receives() && planner.node_can_move(**id))
    };
    let (target, target_plan) = candidates().min_by_key(|(id, plan)| (plan.replicas, **id))?;
    let (source, source_plan) = candidates()
        .filter(|(id, _)| !exhausted.contains(*id))
        .max_by_key(|(id, plan)| (plan.replicas, std::cmp::Reverse(**id)))?;
    (source_plan.replicas - target_plan.replicas >= 2).then_some((*source, *target))
}

/// A range on `source` that can move to `target`, scanning on from where the last scan of
/// `source` stopped (so a scan cut short by the budget resumes, rather than re-reading the
/// same ranges every tick).
fn movable_range<'v>(
    planner: &mut Planner<'v>,
    cursors: &mut Cursors,
    source: NodeId,
    target: NodeId,
) -> Option<&'v RangeView> {
    let view = planner.view;
    let ranges = &view.nodes.get(&source)?.ranges;
    for &id in scan_from(ranges, cursors.get(&source).copied()) {
        if !planner.scan() {
            return None;
        }
        cursors.insert(source, id);
        let Some(range) = view.range(id) else {
            continue;
        };
        if can_move(planner, range, source, target) {
            return Some(range);
        }
    }
    None
}

fn can_move(planner: &Planner<'_>, range: &RangeView, source: NodeId, target: NodeId) -> bool {
    planner.is_free(range.id)
        && range.is_voter(source)
        && range.role_of(target).is_none()
        && range.voter_nodes().count() == planner.config.replicas_per_range
        && range.learner_nodes().next().is_none()
        && planner.all_voters_live(range)
}

/// Every range of `set`, starting after `cursor` and wrapping around to it.
pub(super) fn scan_from(
    set: &BTreeSet<RangeId>,
    cursor: Option<RangeId>,
) -> impl Iterator<Item = &RangeId> {
    let after = cursor.map_or(Bound::Unbounded, Bound::Excluded);
    let before = cursor.map_or(Bound::Unbounded, Bound::Included);
    let wrapped = set
        .range((Bound::Unbounded, before))
        .take_while(move |_| cursor.is_some());
    set.range((after, Bound::Unbounded)).chain(wrapped)
}
