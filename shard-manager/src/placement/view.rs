//! The cluster as the meta group sees it: nodes, ranges and operators in flight, with the
//! indexes the driver needs kept up to date on every change, so one tick costs what it changes
//! and never `ranges x nodes`.

use super::error::ViewError;
use super::operator::{Operator, OperatorId};
use crate::range::RangeId;
use flotilla_raft::{GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A node's state as recorded in the meta group (changed only through it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Serving, and may receive replicas and leaders.
    Up,
    /// Missed heartbeats: keeps its replicas, receives nothing new.
    Suspect,
    /// Declared down at `since_ms`; its replicas are re-placed once `down_after_ms` has passed.
    Down {
        /// When it was declared down.
        since_ms: u64,
    },
    /// Being emptied: its replicas and leaders leave it.
    Draining,
    /// Gone for good; its replicas are re-placed at once and its id is never reused.
    Removed,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            NodeState::Up => "up",
            NodeState::Suspect => "suspect",
            NodeState::Down { .. } => "down",
            NodeState::Draining => "draining",
            NodeState::Removed => "removed",
        };
        f.pad(name)
    }
}

/// One node: its state, when it was last heard from, and what it reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// Its recorded state.
    pub state: NodeState,
    /// When its last liveness heartbeat arrived.
    pub last_heartbeat_ms: u64,
    /// The requests per second it reports serving.
    pub load_requests_per_second: u64,
    /// The bytes of range data it reports holding.
    pub size_bytes: u64,
}

impl NodeView {
    /// A node that is up and was heard from at `now_ms`, with nothing reported yet.
    #[must_use]
    pub fn up(id: NodeId, now_ms: u64) -> Self {
        Self {
            id,
            state: NodeState::Up,
            last_heartbeat_ms: now_ms,
            load_requests_per_second: 0,
            size_bytes: 0,
        }
    }
}

/// A replica's role in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaRole {
    /// Votes and may lead.
    Voter,
    /// Receives the log but does not vote.
    Learner,
}

/// One replica of a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The node holding it.
    pub node: NodeId,
    /// Its role.
    pub role: ReplicaRole,
}

/// Whether `a` and `b` hold the same replicas in the same roles, in any order.
#[must_use]
pub fn same_replicas(a: &[Replica], b: &[Replica]) -> bool {
    a.len() == b.len() && a.iter().all(|replica| b.contains(replica))
}

/// One range: its group's membership and leader, and what it weighs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeView {
    /// The range.
    pub id: RangeId,
    /// Its Raft group.
    pub group: GroupId,
    /// Its replicas, at most one per node.
    pub replicas: Vec<Replica>,
    /// Its leader, when known (always a voter).
    pub leader: Option<NodeId>,
    /// Its data's size.
    pub size_bytes: u64,
    /// The requests per second it serves (its leader's load).
    pub load_requests_per_second: u64,
    /// The index, in the range's own log, of the membership `replicas` comes from: a report
    /// of an older membership never overwrites a newer one.
    pub membership_index: u64,
}

impl RangeView {
    /// A range whose replicas are all voters, led by the first.
    #[must_use]
    pub fn voters(id: RangeId, group: GroupId, nodes: &[NodeId]) -> Self {
        Self {
            id,
            group,
            replicas: nodes
                .iter()
                .map(|&node| Replica {
                    node,
                    role: ReplicaRole::Voter,
                })
                .collect(),
            leader: nodes.first().copied(),
            size_bytes: 0,
            load_requests_per_second: 0,
            membership_index: 0,
        }
    }

    /// The role of `node`'s replica, if it has one.
    #[must_use]
    pub fn role_of(&self, node: NodeId) -> Option<ReplicaRole> {
        self.replicas
            .iter()
            .find(|replica| replica.node == node)
            .map(|replica| replica.role)
    }

    /// Whether `node` holds a voter.
    #[must_use]
    pub fn is_voter(&self, node: NodeId) -> bool {
        self.role_of(node) == Some(ReplicaRole::Voter)
    }

    /// The nodes holding voters.
    pub fn voter_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes_with(ReplicaRole::Voter)
    }

    /// The nodes holding learners.
    pub fn learner_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes_with(ReplicaRole::Learner)
    }

    fn nodes_with(&self, role: ReplicaRole) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas
            .iter()
            .filter(move |replica| replica.role == role)
            .map(|replica| replica.node)
    }

    pub(crate) fn validate(&self) -> Result<(), ViewError> {
        for (index, replica) in self.replicas.iter().enumerate() {
            if self.replicas[..index]
                .iter()
                .any(|other| other.node == replica.node)
            {
                return Err(ViewError::DuplicateReplica {
                    range: self.id,
                    node: replica.node,
                });
            }
        }
        if self.voter_nodes().next().is_none() {
            return Err(ViewError::NoVoter(self.id));
        }
        match self.leader {
            Some(node) if !self.is_voter(node) => Err(ViewError::LeaderNotVoter {
                range: self.id,
                node,
            }),
            _ => Ok(()),
        }
    }
}

/// A node with its indexes: the ranges it holds and leads, and the operators touching it.
#[derive(Clone, Debug)]
pub(crate) struct NodeEntry {
    pub(crate) view: NodeView,
    /// Ranges with a replica here, in any role.
    pub(crate) ranges: BTreeSet<RangeId>,
    /// Ranges led from here.
    pub(crate) leads: BTreeSet<RangeId>,
    /// The summed load of the ranges led from here.
    pub(crate) leader_load: u64,
    /// Operators in flight that will add a replica here (not added yet).
    pub(crate) replicas_incoming: usize,
    /// Operators in flight that will remove a replica from here (not removed yet).
    pub(crate) replicas_outgoing: usize,
    /// Leadership transfers in flight towards here, and their load.
    pub(crate) leaders_incoming: (usize, u64),
    /// Leadership transfers in flight away from here, and their load.
    pub(crate) leaders_outgoing: (usize, u64),
    /// Move operators in flight whose limits count against this node.
    pub(crate) moves: usize,
    /// Leader-transfer operators in flight whose limits count against this node.
    pub(crate) transfers: usize,
}

impl NodeEntry {
    fn new(view: NodeView) -> Self {
        Self {
            view,
            ranges: BTreeSet::new(),
            leads: BTreeSet::new(),
            leader_load: 0,
            replicas_incoming: 0,
            replicas_outgoing: 0,
            leaders_incoming: (0, 0),
            leaders_outgoing: (0, 0),
            moves: 0,
            transfers: 0,
        }
    }

    /// Replicas here once the operators in flight are done.
    pub(crate) fn planned_replicas(&self) -> i64 {
        count(self.ranges.len()) + count(self.replicas_incoming) - count(self.replicas_outgoing)
    }

    /// Leaders here once the transfers in flight are done.
    pub(crate) fn planned_leaders(&self) -> i64 {
        count(self.leads.len()) + count(self.leaders_incoming.0) - count(self.leaders_outgoing.0)
    }

    /// Leader load here once the transfers in flight are done.
    pub(crate) fn planned_leader_load(&self) -> i64 {
        load(self.leader_load) + load(self.leaders_incoming.1) - load(self.leaders_outgoing.1)
    }
}

pub(crate) fn count(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn load(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What an operator in flight will still change, cached so it can be taken back exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effect {
    pub(crate) replica_in: Option<NodeId>,
    pub(crate) replica_out: Option<NodeId>,
    pub(crate) leader: Option<(NodeId, NodeId, u64)>,
}

#[derive(Clone, Debug)]
pub(crate) struct OperatorEntry {
    pub(crate) operator: Operator,
    pub(crate) effect: Effect,
}

/// The cluster as the meta group records it, with its indexes. Every meta replica keeps one and
/// applies the same updates and decisions in log order, so every replica's view is the same.
///
/// What the meta log records (node states, range replicas, operators) is the view's encoding;
/// what only the meta leader learns (heartbeats, loads, sizes, leaders) is not encoded, and a
/// decoded view starts without it (`record.rs`).
///
/// The ranges are a persistent map, so the replicated part is copied in O(nodes + operators)
/// (`ViewCopy`) and encoded off the meta group's Raft loop.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(try_from = "super::record::ViewRecord")]
pub struct ClusterView {
    pub(crate) nodes: BTreeMap<NodeId, NodeEntry>,
    pub(crate) ranges: imbl::OrdMap<RangeId, RangeView>,
    /// Each range's id by its group.
    pub(crate) by_group: HashMap<GroupId, RangeId>,
    /// Ranges by how many voters they have.
    pub(crate) by_voter_count: BTreeMap<usize, BTreeSet<RangeId>>,
    /// Ranges with at least one learner.
    pub(crate) with_learners: BTreeSet<RangeId>,
    /// (leader node, other voter node) -> how many ranges are led from the first with a voter on
    /// the second: the edges a leadership transfer can take.
    pub(crate) lead_pairs: HashMap<(NodeId, NodeId), u32>,
    /// The summed load of every range.
    pub(crate) range_load_total: u64,
    pub(crate) operators: BTreeMap<OperatorId, OperatorEntry>,
    pub(crate) operator_by_range: HashMap<RangeId, OperatorId>,
    pub(crate) moves_in_flight: usize,
    pub(crate) transfers_in_flight: usize,
    pub(crate) next_operator: u64,
}

impl ClusterView {
    /// An empty view.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a node, or replaces what is known of it (its indexes stay).
    ///
    /// # Errors
    /// `NodeRemoved` if the node was removed and the update would bring it back.
    pub fn upsert_node(&mut self, view: NodeView) -> Result<(), ViewError> {
        match self.nodes.get_mut(&view.id) {
            Some(entry) if entry.view.state == NodeState::Removed => {
                if view.state != NodeState::Removed {
                    return Err(ViewError::NodeRemoved(view.id));
                }
                entry.view = view;
            }
            Some(entry) => entry.view = view,
            None => {
                self.nodes.insert(view.id, NodeEntry::new(view));
            }
        }
        Ok(())
    }

    /// Records a node's liveness heartbeat with the load and size it reports.
    ///
    /// # Errors
    /// `UnknownNode` if the node is not registered.
    pub fn heartbeat(
        &mut self,
        node: NodeId,
        now_ms: u64,
        load_requests_per_second: u64,
        size_bytes: u64,
    ) -> Result<(), ViewError> {
        let entry = self
            .nodes
            .get_mut(&node)
            .ok_or(ViewError::UnknownNode(node))?;
        entry.view.last_heartbeat_ms = now_ms;
        entry.view.load_requests_per_second = load_requests_per_second;
        entry.view.size_bytes = size_bytes;
        Ok(())
    }

    /// Changes a node's recorded state.
    ///
    /// # Errors
    /// `UnknownNode`, or `NodeRemoved` for a removed node.
    pub fn set_node_state(&mut self, node: NodeId, state: NodeState) -> Result<(), ViewError> {
        let mut view = self
            .node(node)
            .cloned()
            .ok_or(ViewError::UnknownNode(node))?;
        view.state = state;
        self.upsert_node(view)
    }

    /// Records a range, or replaces what is known of it (after a membership change, a new
    /// leader, or a new size or load).
    ///
    /// # Errors
    /// If two replicas share a node, no replica votes, the leader does not vote, or a node is
    /// unknown.
    pub fn upsert_range(&mut self, range: RangeView) -> Result<(), ViewError> {
        range.validate()?;
        if let Some(node) = range
            .replicas
            .iter()
            .map(|replica| replica.node)
            .find(|node| !self.nodes.contains_key(node))
        {
            return Err(ViewError::UnknownNode(node));
        }
        self.unindex_operator_effect(range.id);
        if let Some(old) = self.ranges.remove(&range.id) {
            self.unindex_range(&old);
        }
        self.index_range(&range);
        self.ranges.insert(range.id, range.clone());
        self.index_operator_effect(range.id);
        Ok(())
    }

    /// Records what the leader of range `id` reports: that `leader` leads it, with its size
    /// and load. Heard by the meta leader only, never encoded; a leader that is not one of the
    /// recorded voters (the record is behind) is not taken.
    ///
    /// # Errors
    /// `LeaderNotVoter` when the leader does not vote in the record (an unknown range changes
    /// nothing).
    pub fn report_range(
        &mut self,
        id: RangeId,
        leader: NodeId,
        size_bytes: u64,
        load_requests_per_second: u64,
    ) -> Result<(), ViewError> {
        let Some(range) = self.ranges.get(&id) else {
            return Ok(());
        };
        if range.leader == Some(leader)
            && range.size_bytes == size_bytes
            && range.load_requests_per_second == load_requests_per_second
        {
            return Ok(());
        }
        let mut range = range.clone();
        range.leader = Some(leader);
        range.size_bytes = size_bytes;
        range.load_requests_per_second = load_requests_per_second;
        self.upsert_range(range)
    }

    /// Every node counts as heard from at `now_ms`: a new meta leader knows nothing of the
    /// heartbeats its predecessor heard, so it gives every node a full grace period.
    pub fn heard_from_all(&mut self, now_ms: u64) {
        for entry in self.nodes.values_mut() {
            entry.view.last_heartbeat_ms = now_ms;
        }
    }

    /// Forgets a range (merged away), and ends its operator.
    pub fn remove_range(&mut self, id: RangeId) {
        if let Some(&operator) = self.operator_by_range.get(&id) {
            // Known to exist: it is indexed under the range.
            let _ = self.end(operator);
        }
        if let Some(old) = self.ranges.remove(&id) {
            self.unindex_range(&old);
        }
    }

    /// A node, if known.
    #[must_use]
    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.nodes.get(&id).map(|entry| &entry.view)
    }

    /// Every node, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeView> {
        self.nodes.values().map(|entry| &entry.view)
    }

    /// A range, if known.
    #[must_use]
    pub fn range(&self, id: RangeId) -> Option<&RangeView> {
        self.ranges.get(&id)
    }

    /// Every range, by id.
    pub fn ranges(&self) -> impl Iterator<Item = &RangeView> {
        self.ranges.values()
    }

    /// The range served by `group`, if known.
    #[must_use]
    pub fn range_of_group(&self, group: GroupId) -> Option<&RangeView> {
        self.by_group.get(&group).and_then(|id| self.ranges.get(id))
    }

    /// How many replicas (any role) `node` holds.
    #[must_use]
    pub fn replica_count(&self, node: NodeId) -> usize {
        self.nodes.get(&node).map_or(0, |entry| entry.ranges.len())
    }

    /// How many ranges `node` leads.
    #[must_use]
    pub fn leader_count(&self, node: NodeId) -> usize {
        self.nodes.get(&node).map_or(0, |entry| entry.leads.len())
    }

    /// The operators in flight, by id.
    pub fn operators(&self) -> impl Iterator<Item = &Operator> {
        self.operators.values().map(|entry| &entry.operator)
    }

    /// The operator in flight on `range`, if any.
    #[must_use]
    pub fn operator_for(&self, range: RangeId) -> Option<&Operator> {
        let id = self.operator_by_range.get(&range)?;
        self.operators.get(id).map(|entry| &entry.operator)
    }

    /// Whether any range reports load (then leaders are balanced by load, not by count).
    #[must_use]
    pub fn load_reported(&self) -> bool {
        self.range_load_total > 0
    }

    fn index_range(&mut self, range: &RangeView) {
        self.by_group.insert(range.group, range.id);
        self.index_range_with(range, 1);
    }

    fn unindex_range(&mut self, range: &RangeView) {
        if self.by_group.get(&range.group) == Some(&range.id) {
            self.by_group.remove(&range.group);
        }
        self.index_range_with(range, -1);
    }

    /// Adds (`sign` 1) or takes back (`sign` -1) a range's contribution to every index.
    fn index_range_with(&mut self, range: &RangeView, sign: i8) {
        let voters = range.voter_nodes().count();
        let adding = sign > 0;
        set_member(
            self.by_voter_count.entry(voters).or_default(),
            range.id,
            adding,
        );
        if self
            .by_voter_count
            .get(&voters)
            .is_some_and(BTreeSet::is_empty)
        {
            self.by_voter_count.remove(&voters);
        }
        let has_learner = range.learner_nodes().next().is_some();
        set_member(&mut self.with_learners, range.id, adding && has_learner);
        self.range_load_total = add_signed(
            self.range_load_total,
            range.load_requests_per_second,
            adding,
        );
        for replica in &range.replicas {
            if let Some(entry) = self.nodes.get_mut(&replica.node) {
                set_member(&mut entry.ranges, range.id, adding);
            }
        }
        self.index_leader(range, adding);
    }

    fn index_leader(&mut self, range: &RangeView, adding: bool) {
        let Some(leader) = range.leader else {
            return;
        };
        if let Some(entry) = self.nodes.get_mut(&leader) {
            set_member(&mut entry.leads, range.id, adding);
            entry.leader_load =
                add_signed(entry.leader_load, range.load_requests_per_second, adding);
        }
        for voter in range.voter_nodes().filter(|&voter| voter != leader) {
            let edges = self.lead_pairs.entry((leader, voter)).or_default();
            *edges = if adding {
                edges.saturating_add(1)
            } else {
                edges.saturating_sub(1)
            };
            if *edges == 0 {
                self.lead_pairs.remove(&(leader, voter));
            }
        }
    }
}

fn set_member(set: &mut BTreeSet<RangeId>, id: RangeId, member: bool) {
    if member {
        set.insert(id);
    } else {
        set.remove(&id);
    }
}

pub(crate) fn add_signed(total: u64, value: u64, adding: bool) -> u64 {
    if adding {
        total.saturating_add(value)
    } else {
        total.saturating_sub(value)
    }
}
