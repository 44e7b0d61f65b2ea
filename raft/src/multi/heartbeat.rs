//! The coalesced heartbeat: every heartbeat interval, ONE batch to each peer node carries
//! (group, term, commit, read round) for every active group this node leads with a replica
//! there, and the peer answers with ONE batch of responses. Per-group heartbeat messages never
//! reach the wire; a follower steps each entry exactly as the heartbeat it replaces.

use super::MultiRaft;
use crate::log::LogReader;
use crate::message::{Batch, GroupMessage, HeartbeatEntry, HeartbeatResponseEntry, MessageBody};
use crate::node::Role;
use crate::ready::Ready;
use crate::types::{GroupId, NodeId};
use std::collections::BTreeMap;

/// Moves a group's outbound messages into the per-node batches (those that may leave before
/// the write into `early`, the rest into `persisted`), turning heartbeats and their responses
/// into coalesced entries. `quiesce` marks the heartbeats as the group's last.
pub(super) fn route_messages(
    node: NodeId,
    group: GroupId,
    quiesce: bool,
    ready: &mut Ready,
    early: &mut BTreeMap<NodeId, Batch>,
    persisted: &mut BTreeMap<NodeId, Batch>,
) {
    route(node, group, quiesce, &mut ready.messages, early);
    route(
        node,
        group,
        quiesce,
        &mut ready.persisted_messages,
        persisted,
    );
}

fn route(
    node: NodeId,
    group: GroupId,
    quiesce: bool,
    messages: &mut Vec<crate::message::Message>,
    outbox: &mut BTreeMap<NodeId, Batch>,
) {
    for message in messages.drain(..) {
        let batch = outbox
            .entry(message.to)
            .or_insert_with(|| Batch::new(node, message.to));
        match message.body {
            MessageBody::Heartbeat { commit, read_round } => {
                batch.heartbeats.push(HeartbeatEntry {
                    group,
                    term: message.term,
                    commit,
                    read_round,
                    quiesce,
                })
            }
            MessageBody::HeartbeatResponse { read_round } => {
                batch.heartbeat_responses.push(HeartbeatResponseEntry {
                    group,
                    term: message.term,
                    read_round,
                });
            }
            _ => batch.messages.push(GroupMessage { group, message }),
        }
    }
}

impl<L: LogReader> MultiRaft<L> {
    /// The node heartbeat: every active leader group heartbeats (idle ones for the last time,
    /// then quiesce), and every `liveness_every_heartbeats` heartbeats every peer node gets a
    /// batch, empty or not, as a liveness signal (a peer with heartbeat entries gets its batch
    /// anyway).
    pub(super) fn heartbeat_tick(&mut self) {
        let leaders: Vec<GroupId> = self
            .active
            .iter()
            .copied()
            .filter(|group| self.groups[group].raft.role() == Role::Leader)
            .collect();
        for group in leaders {
            let hosted = self
                .groups
                .get_mut(&group)
                .expect("active groups are hosted");
            let idle = self.config.quiesce && hosted.raft.is_idle();
            hosted.raft.heartbeat();
            self.dirty.insert(group);
            if idle {
                self.set_quiescent(group);
            }
        }
        let heartbeats = self.now_ticks / self.config.heartbeat_interval_ticks;
        if !heartbeats.is_multiple_of(self.config.liveness_every_heartbeats) {
            return;
        }
        let node = self.config.node;
        let peers: Vec<NodeId> = self.liveness.peers().collect();
        for peer in peers {
            self.outbox
                .entry(peer)
                .or_insert_with(|| Batch::new(node, peer));
        }
    }

    /// Steps the coalesced heartbeat from `from`. Returns how many entries named unknown groups.
    pub(super) fn step_heartbeats(
        &mut self,
        from: NodeId,
        entries: Vec<HeartbeatEntry>,
    ) -> Result<usize, super::MultiError> {
        let node = self.config.node;
        let (known, unknown): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|entry| self.groups.contains_key(&entry.group));
        for entry in known {
            if !entry.quiesce {
                self.wake_group(entry.group);
            }
            self.step_quietly(entry.group, entry.to_message(from, node))?;
            if entry.quiesce {
                self.quiesce_follower_if_caught_up(entry.group, from, entry.commit);
            }
        }
        Ok(unknown.len())
    }

    /// Steps the coalesced heartbeat response from `from`. Responses never wake a group.
    pub(super) fn step_heartbeat_responses(
        &mut self,
        from: NodeId,
        entries: Vec<HeartbeatResponseEntry>,
    ) -> Result<usize, super::MultiError> {
        let node = self.config.node;
        let (known, unknown): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|entry| self.groups.contains_key(&entry.group));
        for entry in known {
            self.step_quietly(entry.group, entry.to_message(from, node))?;
        }
        Ok(unknown.len())
    }
}
