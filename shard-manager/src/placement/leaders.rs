//! Rule 4, leader balance: leadership moves (a Raft transfer, no data copied) until every node
//! that receives leads within one of the mean. Once ranges report load, a leadership weighs
//! its range's load instead of 1, and leaders move while the most loaded node is above the mean
//! by more than the tolerance and a transfer lowers the larger of the two loads.

use super::balance::{Cursors, scan_from};
use super::operator::{OperatorKind, Step};
use super::planner::Planner;
use super::view::RangeView;
use flotilla_raft::NodeId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many chains of transfers one tick looks for.
const PATH_SEARCHES_PER_TICK_MAX: usize = 8;

/// How many of the most loaded nodes one search starts from (each start is `nodes^2` at most):
/// bounds a tick's cost when no chain exists yet, as while new nodes hold no voter.
const PATH_SOURCES_PER_SEARCH_MAX: usize = 4;

/// Starts leader transfers while the limits allow.
pub(super) fn balance_leaders(planner: &mut Planner<'_>, cursors: &mut Cursors) {
    if planner.load_mode {
        balance_leader_load(planner, cursors);
    } else {
        balance_leader_counts(planner, cursors);
    }
}

/// Count mode. A leadership can only go to a voter of its range, so the fullest node may have
/// no direct transfer that helps; then a chain `a -> b -> c` moves one leadership's worth from
/// `a` to `c` and leaves `b` as it was. The chain is the shortest path, over "leads a range with
/// a voter on", from a node to one leading at least two fewer.
fn balance_leader_counts(planner: &mut Planner<'_>, cursors: &mut Cursors) {
    let mut blocked = BTreeSet::new();
    for _ in 0..PATH_SEARCHES_PER_TICK_MAX {
        if !planner.transfers_left() || !planner.scans_left() {
            return;
        }
        let Some(path) = find_path(planner, &blocked) else {
            return;
        };
        match hop_ranges(planner, cursors, &path) {
            Ok(hops) => start_hops(planner, hops),
            Err(edge) => {
                blocked.insert(edge);
            }
        }
    }
}

fn scores(planner: &Planner<'_>) -> Vec<(NodeId, i64)> {
    planner
        .nodes
        .iter()
        .filter(|(_, plan)| plan.receives())
        .map(|(id, plan)| (*id, plan.leader_score))
        .collect()
}

/// The chain of nodes for the next transfers, from a node leading the most that has one.
fn find_path(planner: &Planner<'_>, blocked: &BTreeSet<(NodeId, NodeId)>) -> Option<Vec<NodeId>> {
    let scores = scores(planner);
    let min = scores.iter().map(|(_, score)| *score).min()?;
    let mut sources: Vec<(NodeId, i64)> = scores
        .iter()
        .copied()
        .filter(|(id, score)| *score >= min + 2 && planner.node_can_transfer(*id))
        .collect();
    sources.sort_by_key(|(id, score)| (std::cmp::Reverse(*score), *id));
    let reachable_min = scores
        .iter()
        .filter(|(id, _)| planner.node_can_transfer(*id))
        .map(|(_, score)| *score)
        .min()?;
    sources
        .iter()
        .take(PATH_SOURCES_PER_SEARCH_MAX)
        .filter(|(_, score)| reachable_min <= score - 2)
        .find_map(|&(source, score)| shortest_path(planner, &scores, blocked, source, score - 2))
}

/// Breadth-first search from `source` to a node with a score of at most `goal`.
fn shortest_path(
    planner: &Planner<'_>,
    scores: &[(NodeId, i64)],
    blocked: &BTreeSet<(NodeId, NodeId)>,
    source: NodeId,
    goal: i64,
) -> Option<Vec<NodeId>> {
    let mut parents: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    let mut queue = VecDeque::from([source]);
    while let Some(node) = queue.pop_front() {
        for &(next, score) in scores {
            let edge = (node, next);
            let usable = next != source
                && !parents.contains_key(&next)
                && !blocked.contains(&edge)
                && planner.view.lead_pairs.contains_key(&edge)
                && planner.node_can_transfer(next);
            if !usable {
                continue;
            }
            parents.insert(next, node);
            if score <= goal {
                return Some(unwind(&parents, source, next));
            }
            queue.push_back(next);
        }
    }
    None
}

fn unwind(parents: &BTreeMap<NodeId, NodeId>, source: NodeId, end: NodeId) -> Vec<NodeId> {
    let mut path = vec![end];
    let mut node = end;
    while node != source {
        let Some(&parent) = parents.get(&node) else {
            break;
        };
        path.push(parent);
        node = parent;
    }
    path.reverse();
    path
}

/// One transfer of a chain: the range, from, to.
type Hop<'v> = (&'v RangeView, NodeId, NodeId);

/// For each hop of `path`, a free range led by its first node with a voter on its second; or
/// the hop for which there is none.
fn hop_ranges<'v>(
    planner: &mut Planner<'v>,
    cursors: &mut Cursors,
    path: &[NodeId],
) -> Result<Vec<Hop<'v>>, (NodeId, NodeId)> {
    let mut hops = Vec::new();
    for pair in path.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let range = transferable(planner, cursors, from, |_, range| range.is_voter(to));
        hops.push((range.ok_or((from, to))?, from, to));
    }
    Ok(hops)
}

fn start_hops(planner: &mut Planner<'_>, hops: Vec<Hop<'_>>) {
    for (range, from, to) in hops {
        let steps = vec![Step::TransferLeader { from, to }];
        planner.start(range, OperatorKind::LeaderBalance, steps);
    }
}

/// A free range led by `from` that `accept`s, scanning on from `from`'s cursor.
fn transferable<'v>(
    planner: &mut Planner<'v>,
    cursors: &mut Cursors,
    from: NodeId,
    mut accept: impl FnMut(&Planner<'v>, &RangeView) -> bool,
) -> Option<&'v RangeView> {
    let view = planner.view;
    let leads = &view.nodes.get(&from)?.leads;
    for &id in scan_from(leads, cursors.get(&from).copied()) {
        if !planner.scan() {
            return None;
        }
        cursors.insert(from, id);
        let Some(range) = view.range(id) else {
            continue;
        };
        if planner.is_free(id) && planner.all_voters_live(range) && accept(planner, range) {
            return Some(range);
        }
    }
    None
}

/// Load mode: the most loaded node above the mean by more than the tolerance hands a range to
/// the least loaded voter of it when that lowers the larger of the two loads by more than the
/// tolerance.
fn balance_leader_load(planner: &mut Planner<'_>, cursors: &mut Cursors) {
    let mut exhausted = BTreeSet::new();
    while planner.transfers_left() && planner.scans_left() {
        let Some((source, tolerance)) = most_loaded(planner, &exhausted) else {
            return;
        };
        match load_transfer(planner, cursors, source, tolerance) {
            Some((range, to)) => {
                let steps = vec![Step::TransferLeader { from: source, to }];
                planner.start(range, OperatorKind::LeaderBalance, steps);
            }
            None => {
                exhausted.insert(source);
            }
        }
    }
}

/// The most loaded node that may hand over, if it is above the mean by more than the
/// tolerance, with the tolerance.
fn most_loaded(planner: &Planner<'_>, exhausted: &BTreeSet<NodeId>) -> Option<(NodeId, i64)> {
    let scores = scores(planner);
    let total: i64 = scores.iter().map(|(_, score)| *score).sum();
    let mean = total
        / i64::try_from(scores.len())
            .ok()
            .filter(|&count| count > 0)?;
    let percent = i64::try_from(planner.config.leader_load_tolerance_percent).unwrap_or(i64::MAX);
    let tolerance = mean.saturating_mul(percent) / 100;
    let (source, score) = scores
        .into_iter()
        .filter(|(id, _)| !exhausted.contains(id) && planner.node_can_transfer(*id))
        .max_by_key(|(id, score)| (*score, std::cmp::Reverse(*id)))?;
    (score > mean + tolerance).then_some((source, tolerance))
}

fn load_transfer<'v>(
    planner: &mut Planner<'v>,
    cursors: &mut Cursors,
    source: NodeId,
    tolerance: i64,
) -> Option<(&'v RangeView, NodeId)> {
    let range = transferable(planner, cursors, source, |planner, range| {
        lighter_voter(planner, range, source, tolerance).is_some()
    })?;
    let to = lighter_voter(planner, range, source, tolerance)?;
    Some((range, to))
}

/// The least loaded voter of `range` that `source` should hand it to, if the transfer lowers
/// the larger of their two loads by more than `tolerance`. A range without load never moves.
fn lighter_voter(
    planner: &Planner<'_>,
    range: &RangeView,
    source: NodeId,
    tolerance: i64,
) -> Option<NodeId> {
    let weight = planner.leader_weight(range);
    let source_score = planner.plan(source)?.leader_score;
    let to = planner
        .leader_target(range, source)
        .filter(|&to| planner.node_can_transfer(to))?;
    let to_score = planner.plan(to)?.leader_score;
    (weight > 0 && source_score - to_score > weight + tolerance).then_some(to)
}
