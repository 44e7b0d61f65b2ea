//! The node's status as clients and `flotilla status` see it: every group's role, term,
//! leader and indexes, and what the node counted; and the lighter `Observation` the driver
//! publishes for the metrics and the readiness probe.

use super::{BatchSink, Counters, NodeCore, Respond};
use crate::api::{GroupStatus, NodeStatus, PeerState, PeerStatus};
use flotilla_raft::{GroupId, NodeId, Role};

/// What the node is and has done, at one moment: the counters and a summary of its groups,
/// for `/metrics`, `/ready` and the summary log line. Built in one pass over the groups.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// The core's counters.
    pub counters: Counters,
    /// Groups this node hosts a replica of (the meta group included).
    pub groups_hosted: u64,
    /// Groups this node leads.
    pub groups_led: u64,
    /// Groups that are quiescent (idle: no ticks, no heartbeats of their own).
    pub groups_quiescent: u64,
    /// Groups whose replica here knows no leader, lowest id first.
    pub groups_without_leader: Vec<GroupId>,
    /// Groups whose replica here has not applied all it knows committed, lowest id first.
    pub groups_behind: Vec<GroupId>,
    /// Client requests waiting for their entry to apply or their read to be confirmed.
    pub waiting: u64,
    /// Key and value bytes this node's ranges hold.
    pub stored_bytes: u64,
    /// Every watched peer and how it is heard.
    pub peers: Vec<PeerStatus>,
    /// Segment files the log uses.
    pub log_segments: u64,
    /// Every hosted group with the leader its replica here knows, lowest id first (for the
    /// status page: which node leads what).
    pub leaders: Vec<(GroupId, Option<NodeId>)>,
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// The node at this moment, for the metrics and the readiness probe (the driver publishes
    /// it every `tuning.metrics_publish_interval_ms`).
    #[must_use]
    pub fn observe(&self) -> Observation {
        let mut observation = Observation {
            counters: self.counters,
            waiting: self.waiting.len() as u64,
            stored_bytes: self.machines.stored_bytes(),
            peers: self.peer_statuses(),
            log_segments: self.engine.segment_sequences().len() as u64,
            ..Observation::default()
        };
        for group in self
            .multi
            .group_ids()
            .filter(|&group| self.is_member(group))
        {
            let Some(raft) = self.multi.group(group) else {
                continue;
            };
            let status = raft.status();
            observation.groups_hosted += 1;
            observation.groups_led += u64::from(status.role == Role::Leader);
            observation.groups_quiescent += u64::from(self.multi.is_quiescent(group));
            observation.leaders.push((group, status.leader));
            if status.leader.is_none() {
                observation.groups_without_leader.push(group);
            }
            if status.applied < status.committed {
                observation.groups_behind.push(group);
            }
        }
        observation
    }

    pub(super) fn status(&self) -> NodeStatus {
        let groups = self
            .multi
            .group_ids()
            .filter(|&group| self.is_member(group))
            .filter_map(|group| {
                let raft = self.multi.group(group)?;
                let status = raft.status();
                Some(GroupStatus {
                    group,
                    role: format!("{:?}", status.role),
                    term: status.term.0,
                    leader: status.leader,
                    committed: status.committed.0,
                    applied: status.applied.0,
                    snapshot_index: self.snapshot_index(group).0,
                    quiescent: self.multi.is_quiescent(group),
                    stored_bytes: self
                        .machines
                        .kv(group)
                        .map_or(0, flotilla_storage::KvStateMachine::stored_bytes),
                })
            })
            .collect();
        let meta = self.machines.meta();
        NodeStatus {
            node: self.config.node,
            epoch: meta.map.epoch(),
            groups,
            fsyncs: self.counters.fsyncs,
            entries_persisted: self.counters.entries_persisted,
            write_micros: self.counters.write_micros,
            busy_micros: self.counters.busy_micros,
            uptime_micros: self.counters.uptime_micros,
            requests: self.counters.requests,
            batches_refused: self.counters.batches_refused,
            waiting: self.waiting.len() as u64,
            leader_changes: self.counters.leader_changes,
            live_peers: self.multi.live_peers().collect(),
            incarnation: self.registry.incarnation,
            registered_directories: meta.data_directories.keys().copied().collect(),
            peers: self.peer_statuses(),
        }
    }

    /// Each watched peer as Raft hears it, told apart by whether a connection to it is open: a
    /// connected but quiet peer is a stalled connection or a stuck peer, an unreachable one is
    /// down or cut off.
    fn peer_statuses(&self) -> Vec<PeerStatus> {
        let node_timeout_ticks = self.multi.config().node_timeout_ticks;
        self.multi
            .peer_silences()
            .map(|(node, silent_ticks)| PeerStatus {
                node,
                state: PeerState::of(
                    silent_ticks,
                    node_timeout_ticks,
                    self.sink.is_connected(node),
                ),
                silent_ms: silent_ticks * self.config.tick_ms,
            })
            .collect()
    }
}
