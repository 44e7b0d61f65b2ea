//! The node's status as clients and `flotilla status` see it: every group's role, term,
//! leader and indexes, and what the node counted.

use super::{BatchSink, NodeCore, Respond};
use crate::api::{GroupStatus, NodeStatus, PeerState, PeerStatus};

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    pub(super) fn status(&self) -> NodeStatus {
        let groups = self
            .multi
            .group_ids()
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
