//! The liveness property, as a checker: once faults stop, every group whose voters include a
//! majority that is up and connected (the network carries packets both ways between each two
//! of them) has a leader that such a majority follows, within a bounded number of election
//! timeouts. The transport's reconnect policy is part of the system under test here, not a
//! fault: a healed pair whose link waits for its next attempt counts as connected.

use crate::cluster::MultiCluster;
use flotilla_raft::{GroupId, Membership, NodeId, Role};
use std::collections::BTreeSet;

/// Election timeouts a connected majority may take to elect after losing its leader (split
/// votes are possible; ten rounds in a row of a three-replica group are not, in practice).
pub const ELECTION_ROUNDS_MAX: u64 = 10;

impl MultiCluster {
    /// How long after faults stop every group with a connected live majority must have a
    /// leader: the leader's node must be declared down, then at most ten election rounds.
    pub fn liveness_bound_ms(&self) -> u64 {
        let timing = self.layout.timing;
        timing.node_timeout_ms() + ELECTION_ROUNDS_MAX * timing.election_ms_max()
    }

    /// Groups with a connected live majority of voters but no leader such a majority follows.
    pub fn leaderless_groups(&self) -> Vec<GroupId> {
        self.groups
            .iter()
            .copied()
            .filter(|&group| self.has_connected_live_majority(group))
            .filter(|&group| self.effective_leader(group).is_none())
            .collect()
    }

    /// Stops message loss, duplication and long reordering (faults stop; delays stay), runs
    /// until every group with a connected live majority has had a leader, for at most the
    /// liveness bound, then restores them. Panics naming the groups that had none.
    pub fn check_liveness(&mut self, after: &str) {
        let faults = (
            self.drop_percent,
            self.duplicate_percent,
            self.long_reordering,
        );
        (
            self.drop_percent,
            self.duplicate_percent,
            self.long_reordering,
        ) = (0, 0, false);
        let bound_ms = self.liveness_bound_ms();
        let started_ms = self.now_ms;
        let mut waiting: BTreeSet<GroupId> = self.groups.iter().copied().collect();
        self.run_until(bound_ms, |cluster| {
            waiting.retain(|&group| {
                cluster.has_connected_live_majority(group)
                    && cluster.effective_leader(group).is_none()
            });
            waiting.is_empty()
        });
        (
            self.drop_percent,
            self.duplicate_percent,
            self.long_reordering,
        ) = faults;
        if waiting.is_empty() {
            return;
        }
        let stuck: Vec<String> = waiting.iter().take(4).map(|&g| self.describe(g)).collect();
        panic!(
            "liveness violated: {after} at {started_ms} ms, {} groups with a connected live \
             majority had no leader in {bound_ms} ms: {}",
            waiting.len(),
            stuck.join("; ")
        );
    }

    /// The voters of `group` as its most advanced live replica knows them.
    pub fn membership_of(&self, group: GroupId) -> Option<Membership> {
        self.live_replicas(group)
            .max_by_key(|(_, raft)| raft.log().committed())
            .map(|(_, raft)| raft.membership().clone())
    }

    /// Whether some majority of `group`'s voters (of both halves, when joint) is hosted on up
    /// nodes that are all connected to each other.
    pub fn has_connected_live_majority(&self, group: GroupId) -> bool {
        let Some(membership) = self.membership_of(group) else {
            return false;
        };
        let hosts: Vec<NodeId> = self.live_replicas(group).map(|(id, _)| id).collect();
        subsets(&hosts)
            .filter(|subset| self.all_connected(subset))
            .any(|subset| is_quorum(&membership, &subset))
    }

    /// A leader of `group` on an up node that a majority of voters follows: connected to it,
    /// in its term, knowing it as leader (a quiescent follower counts).
    pub fn effective_leader(&self, group: GroupId) -> Option<NodeId> {
        let membership = self.membership_of(group)?;
        self.live_replicas(group)
            .filter(|(_, raft)| raft.role() == Role::Leader)
            .find(|&(leader, raft)| {
                let followers: BTreeSet<NodeId> = self
                    .live_replicas(group)
                    .filter(|&(id, _)| id == leader || self.connected(id, leader))
                    .filter(|(_, follower)| follower.term() == raft.term())
                    .filter(|(_, follower)| follower.leader() == Some(leader))
                    .map(|(id, _)| id)
                    .collect();
                is_quorum(&membership, &followers)
            })
            .map(|(leader, _)| leader)
    }

    fn live_replicas(
        &self,
        group: GroupId,
    ) -> impl Iterator<Item = (NodeId, &flotilla_raft::RaftNode<flotilla_raft::MemLog>)> + '_ {
        self.nodes.keys().filter_map(move |&id| {
            self.multi(id)
                .and_then(|multi| multi.group(group))
                .map(|raft| (id, raft))
        })
    }

    fn all_connected(&self, nodes: &BTreeSet<NodeId>) -> bool {
        nodes
            .iter()
            .all(|&a| nodes.iter().all(|&b| a == b || self.connected(a, b)))
    }

    /// One line on a group's replicas: role, term, leader, quiescence, and the links' state.
    pub fn describe(&self, group: GroupId) -> String {
        let replicas: Vec<String> = self
            .live_replicas(group)
            .map(|(id, raft)| {
                let quiet = self
                    .multi(id)
                    .is_some_and(|multi| multi.is_quiescent(group));
                format!(
                    "{id} {:?} t{} leader {:?}{}",
                    raft.role(),
                    raft.term().0,
                    raft.leader(),
                    if quiet { " quiescent" } else { "" }
                )
            })
            .collect();
        let hosts: Vec<NodeId> = self.live_replicas(group).map(|(id, _)| id).collect();
        let mut links = Vec::new();
        for (position, &a) in hosts.iter().enumerate() {
            for &b in &hosts[position + 1..] {
                links.push(format!("{a}-{b} back at {:?}", self.links.back_at(a, b)));
            }
        }
        format!(
            "{group}: [{}] links [{}]",
            replicas.join(", "),
            links.join(", ")
        )
    }
}

/// Whether `nodes` holds a majority of the voters (and of the outgoing voters, when joint).
/// No voters, no quorum: a replica created empty for a membership change knows none until its
/// leader's snapshot arrives.
fn is_quorum(membership: &Membership, nodes: &BTreeSet<NodeId>) -> bool {
    let majority =
        |voters: &BTreeSet<NodeId>| 2 * voters.intersection(nodes).count() > voters.len();
    majority(&membership.voters)
        && (membership.outgoing.is_empty() || majority(&membership.outgoing))
}

/// Every subset of `nodes` (at most five: 32 subsets).
fn subsets(nodes: &[NodeId]) -> impl Iterator<Item = BTreeSet<NodeId>> + '_ {
    (0u32..1 << nodes.len()).map(move |mask| {
        nodes
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, &node)| node)
            .collect()
    })
}
