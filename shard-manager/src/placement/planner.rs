//! One tick's working state: what every node will hold once the operators in flight and those
//! started this tick are done, the limits left, and the decisions made so far. The rules read
//! and update it; only the driver turns it into a `PlacementReady`.

use super::config::PlacementConfig;
use super::liveness::{Liveness, liveness};
use super::operator::{Decision, OperatorKind, Step, limited_nodes, source_of, target_of};
use super::view::{ClusterView, NodeState, RangeView};
use crate::range::RangeId;
use flotilla_raft::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// One node as this tick plans it.
#[derive(Clone, Copy, Debug)]
pub(super) struct NodePlan {
    pub(super) liveness: Liveness,
    pub(super) state: NodeState,
    /// Replicas once every operator is done.
    pub(super) replicas: i64,
    /// Leaders (or leader load, once load is reported) once every transfer is done.
    pub(super) leader_score: i64,
    pub(super) moves: usize,
    pub(super) transfers: usize,
}

impl NodePlan {
    /// Whether the node may be given replicas and leaders, and take part in balancing.
    pub(super) fn receives(&self) -> bool {
        self.state == NodeState::Up && self.liveness == Liveness::Live
    }
}

/// The tick's working state.
pub(super) struct Planner<'a> {
    pub(super) view: &'a ClusterView,
    pub(super) config: &'a PlacementConfig,
    pub(super) now_ms: u64,
    pub(super) nodes: BTreeMap<NodeId, NodePlan>,
    pub(super) load_mode: bool,
    pub(super) decisions: Vec<Decision>,
    moves_in_flight: usize,
    transfers_in_flight: usize,
    busy: BTreeSet<RangeId>,
    scanned: usize,
}

impl<'a> Planner<'a> {
    pub(super) fn new(view: &'a ClusterView, config: &'a PlacementConfig, now_ms: u64) -> Self {
        let load_mode = view.load_reported();
        let nodes = view
            .nodes
            .iter()
            .map(|(&id, entry)| {
                let plan = NodePlan {
                    liveness: liveness(&entry.view, now_ms, config),
                    state: entry.view.state,
                    replicas: entry.planned_replicas(),
                    leader_score: if load_mode {
                        entry.planned_leader_load()
                    } else {
                        entry.planned_leaders()
                    },
                    moves: entry.moves,
                    transfers: entry.transfers,
                };
                (id, plan)
            })
            .collect();
        Self {
            view,
            config,
            now_ms,
            nodes,
            load_mode,
            decisions: Vec::new(),
            moves_in_flight: view.moves_in_flight,
            transfers_in_flight: view.transfers_in_flight,
            busy: BTreeSet::new(),
            scanned: 0,
        }
    }

    pub(super) fn plan(&self, node: NodeId) -> Option<&NodePlan> {
        self.nodes.get(&node)
    }

    pub(super) fn liveness(&self, node: NodeId) -> Liveness {
        self.plan(node).map_or(Liveness::Dead, |plan| plan.liveness)
    }

    /// Counts one range examined; false once this tick's scan budget is spent.
    pub(super) fn scan(&mut self) -> bool {
        self.scanned += 1;
        self.scanned <= self.config.ranges_scanned_per_tick_max
    }

    /// Whether the scan budget ran out this tick: the next tick may find more to do.
    pub(super) fn scan_limit_reached(&self) -> bool {
        self.scanned >= self.config.ranges_scanned_per_tick_max
    }

    pub(super) fn scans_left(&self) -> bool {
        self.scanned < self.config.ranges_scanned_per_tick_max
    }

    pub(super) fn moves_left(&self) -> bool {
        self.moves_in_flight < self.config.moves_in_flight_max
    }

    pub(super) fn transfers_left(&self) -> bool {
        self.transfers_in_flight < self.config.leader_transfers_in_flight_max
    }

    /// Whether `node` may take part in one more move: a dead node sends nothing, so it is not
    /// limited.
    pub(super) fn node_can_move(&self, node: NodeId) -> bool {
        self.plan(node).is_some_and(|plan| {
            plan.liveness == Liveness::Dead || plan.moves < self.config.moves_per_node_max
        })
    }

    pub(super) fn node_can_transfer(&self, node: NodeId) -> bool {
        self.plan(node)
            .is_some_and(|plan| plan.transfers < self.config.leader_transfers_per_node_max)
    }

    /// Whether no operator is in flight on `range` and none was started this tick.
    pub(super) fn is_free(&self, range: RangeId) -> bool {
        !self.busy.contains(&range) && !self.view.operator_by_range.contains_key(&range)
    }

    /// Whether more than half of the range's voters are not dead: a membership change can
    /// commit, and stays able to while one move runs.
    pub(super) fn has_live_majority(&self, range: &RangeView) -> bool {
        let voters = range.voter_nodes().count();
        let alive = range
            .voter_nodes()
            .filter(|&node| self.liveness(node) != Liveness::Dead)
            .count();
        alive * 2 > voters
    }

    pub(super) fn all_voters_live(&self, range: &RangeView) -> bool {
        range
            .voter_nodes()
            .all(|node| self.liveness(node) == Liveness::Live)
    }

    /// The node that should receive a new replica of `range`: one that receives, has no replica
    /// of it, has a move left, and holds the fewest replicas (the lowest id on a tie).
    pub(super) fn best_target(&self, range: &RangeView) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(id, plan)| {
                plan.receives()
                    && plan.moves < self.config.moves_per_node_max
                    && range.role_of(**id).is_none()
            })
            .min_by_key(|(id, plan)| (plan.replicas, **id))
            .map(|(id, _)| *id)
    }

    /// The voter of `range` other than `leaving` that should lead it: one that receives, with
    /// the lowest leader score (the lowest id on a tie).
    pub(super) fn leader_target(&self, range: &RangeView, leaving: NodeId) -> Option<NodeId> {
        range
            .voter_nodes()
            .filter(|&node| node != leaving)
            .filter_map(|node| Some((node, self.plan(node)?)))
            .filter(|(_, plan)| plan.receives())
            .min_by_key(|(node, plan)| (plan.leader_score, *node))
            .map(|(node, _)| node)
    }

    /// The steps that move `range`'s replica from `source` to `target`: hand over leadership
    /// first if the (live) source leads, add a learner, promote it while demoting the source,
    /// then remove the source.
    pub(super) fn move_steps(
        &self,
        range: &RangeView,
        source: NodeId,
        target: NodeId,
    ) -> Vec<Step> {
        let mut steps = self.hand_over_steps(range, source);
        steps.push(Step::AddLearner { node: target });
        steps.push(Step::Promote {
            node: target,
            demote: range.is_voter(source).then_some(source),
        });
        steps.push(Step::Remove { node: source });
        steps
    }

    /// A leadership transfer away from `node`, if it leads `range` and is not dead.
    pub(super) fn hand_over_steps(&self, range: &RangeView, node: NodeId) -> Vec<Step> {
        let leads = range.leader == Some(node) && self.liveness(node) != Liveness::Dead;
        match self.leader_target(range, node) {
            Some(to) if leads => vec![Step::TransferLeader { from: node, to }],
            _ => Vec::new(),
        }
    }

    /// Records the start of an operator and what it will change.
    pub(super) fn start(&mut self, range: &RangeView, kind: OperatorKind, steps: Vec<Step>) {
        debug_assert!(self.is_free(range.id), "two operators on one range");
        let transfer_only = matches!(steps.as_slice(), [Step::TransferLeader { .. }]);
        self.count_start(&steps, transfer_only);
        self.plan_effects(range, &steps);
        self.busy.insert(range.id);
        self.decisions.push(Decision::Start {
            range: range.id,
            kind,
            steps,
            now_ms: self.now_ms,
            decided_on: Some(range.replicas.clone()),
        });
    }

    fn count_start(&mut self, steps: &[Step], transfer_only: bool) {
        if transfer_only {
            self.transfers_in_flight += 1;
        } else {
            self.moves_in_flight += 1;
        }
        for node in limited_nodes(steps) {
            if let Some(plan) = self.nodes.get_mut(&node) {
                if transfer_only {
                    plan.transfers += 1;
                } else {
                    plan.moves += 1;
                }
            }
        }
    }

    fn plan_effects(&mut self, range: &RangeView, steps: &[Step]) {
        if let Some(plan) = target_of(steps).and_then(|node| self.nodes.get_mut(&node)) {
            plan.replicas += 1;
        }
        if let Some(plan) = source_of(steps).and_then(|node| self.nodes.get_mut(&node)) {
            plan.replicas -= 1;
        }
        let weight = self.leader_weight(range);
        for step in steps {
            if let Step::TransferLeader { from, to } = *step {
                self.shift_leader_score(from, to, weight);
            }
        }
    }

    /// What one range's leadership weighs: 1, or its load once load is reported.
    pub(super) fn leader_weight(&self, range: &RangeView) -> i64 {
        if self.load_mode {
            super::view::load(range.load_requests_per_second)
        } else {
            1
        }
    }

    fn shift_leader_score(&mut self, from: NodeId, to: NodeId, weight: i64) {
        if let Some(plan) = self.nodes.get_mut(&from) {
            plan.leader_score -= weight;
        }
        if let Some(plan) = self.nodes.get_mut(&to) {
            plan.leader_score += weight;
        }
    }
}
