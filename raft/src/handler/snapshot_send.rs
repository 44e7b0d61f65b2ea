//! A leader sends a snapshot (Raft §7) as a window of chunks: at most
//! `snapshot_inflight_bytes_max` bytes sent and not acknowledged, acknowledged cumulatively,
//! sent again from the acknowledged offset only when the transfer stalled, and given up only
//! when its follower stays silent (`docs/protocol/snapshots.md`, "A leader sends a window").

use crate::entry::Snapshot;
use crate::log::{LogError, LogReader};
use crate::message::MessageBody;
use crate::node::RaftNode;
use crate::types::{LogIndex, NodeId};

/// A snapshot being sent to one follower.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingSnapshot {
    snapshot: Snapshot,
    /// This transfer's number (`MessageBody::InstallSnapshot::transfer`).
    transfer: u64,
    /// The follower holds every byte before this offset (its answers are cumulative).
    acknowledged: u64,
    /// The next chunk starts here: `acknowledged..sent` is in flight.
    sent: u64,
    /// The highest offset sent in this transfer: no answer may acknowledge past it.
    sent_max: u64,
    /// The last chunk was sent (and `sent` was not moved back since).
    sent_last: bool,
    /// When `acknowledged` last moved, or the window was last sent again, in ticks.
    progressed_at_tick: u64,
}

/// What a leader's snapshot sending did, counted for the host's metrics. Taken with
/// `RaftNode::take_snapshot_send_counters` (a `MultiRaft` sums its groups').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotSendCounters {
    /// InstallSnapshot chunks sent (first copies and copies sent again).
    pub chunks_sent: u64,
    /// Snapshot bytes those chunks carried.
    pub chunk_bytes_sent: u64,
    /// Transfers started from offset 0.
    pub transfers_started: u64,
    /// Transfers given up earlier and resumed from their acknowledged offset (the newest
    /// snapshot was still the same).
    pub transfers_resumed: u64,
    /// Transfers given up because their follower stayed silent.
    pub transfers_given_up: u64,
    /// Windows sent again from the acknowledged offset after a transfer stalled.
    pub windows_resent: u64,
}

impl SnapshotSendCounters {
    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &Self) {
        self.chunks_sent += other.chunks_sent;
        self.chunk_bytes_sent += other.chunk_bytes_sent;
        self.transfers_started += other.transfers_started;
        self.transfers_resumed += other.transfers_resumed;
        self.transfers_given_up += other.transfers_given_up;
        self.windows_resent += other.windows_resent;
    }
}

impl<L: LogReader> RaftNode<L> {
    /// What snapshot sending did since the last call.
    pub fn take_snapshot_send_counters(&mut self) -> SnapshotSendCounters {
        std::mem::take(&mut self.snapshot_send_counters)
    }

    /// Leader: start sending the newest snapshot to `to`, or resume the transfer given up
    /// earlier if that snapshot is still the newest. Returns whether the transfer started.
    pub(crate) fn send_snapshot(&mut self, to: NodeId) -> bool {
        let snapshot = match self.log.store().snapshot() {
            Ok(snapshot) => snapshot,
            Err(LogError::SnapshotTemporarilyUnavailable) => return false,
            Err(error) => {
                self.fail(error);
                return false;
            }
        };
        if let Some(progress) = self.progress.get_mut(&to) {
            progress.become_snapshot(snapshot.meta.last.index);
        }
        let outgoing = self.resumed_or_new_transfer(to, snapshot);
        if let Some(replaced) = self.outgoing_snapshots.insert(to, outgoing) {
            self.log.store().snapshot_released(&replaced.snapshot);
        }
        self.send_snapshot_window(to);
        true
    }

    /// The transfer of `snapshot` to `to`: the one given up earlier, from where the follower
    /// was, if it sent the same snapshot (equal references name the same bytes); else a new one
    /// from offset 0 under a new number.
    fn resumed_or_new_transfer(&mut self, to: NodeId, snapshot: Snapshot) -> OutgoingSnapshot {
        let now = self.timers.now();
        let given_up = self.given_up_snapshots.remove(&to);
        if let Some(given_up) = given_up.filter(|given_up| given_up.snapshot == snapshot) {
            self.snapshot_send_counters.transfers_resumed += 1;
            return OutgoingSnapshot {
                snapshot,
                sent: given_up.acknowledged,
                sent_last: false,
                progressed_at_tick: now,
                ..given_up
            };
        }
        self.snapshot_send_counters.transfers_started += 1;
        self.snapshot_transfer_last += 1;
        OutgoingSnapshot {
            snapshot,
            transfer: self.snapshot_transfer_last,
            acknowledged: 0,
            sent: 0,
            sent_max: 0,
            sent_last: false,
            progressed_at_tick: now,
        }
    }

    /// Leader: stops sending `to` its snapshot (received, or `to` left the group), and tells
    /// the log; a transfer given up earlier is forgotten too.
    pub(crate) fn drop_outgoing_snapshot(&mut self, to: NodeId) {
        self.given_up_snapshots.remove(&to);
        if let Some(outgoing) = self.outgoing_snapshots.remove(&to) {
            self.log.store().snapshot_released(&outgoing.snapshot);
        }
    }

    /// Leader: stops sending every snapshot (leadership lost), and tells the log.
    pub(crate) fn drop_outgoing_snapshots(&mut self) {
        self.given_up_snapshots.clear();
        for (_, outgoing) in std::mem::take(&mut self.outgoing_snapshots) {
            self.log.store().snapshot_released(&outgoing.snapshot);
        }
    }

    /// Check-quorum: gives up the transfers to followers silent for `snapshot_give_up_ticks`
    /// (the log may close their files), remembering where each was: a follower merely slow
    /// for a while resumes there if the newest snapshot is still the same when it is back.
    pub(crate) fn give_up_silent_snapshot_transfers(&mut self) {
        let now = self.timers.now();
        let ticks = self.config.snapshot_give_up_ticks;
        let silent: Vec<NodeId> = self
            .outgoing_snapshots
            .keys()
            .filter(|node| {
                self.progress
                    .get(node)
                    .is_none_or(|progress| progress.silent_for(ticks, now))
            })
            .copied()
            .collect();
        for node in silent {
            if let Some(outgoing) = self.outgoing_snapshots.remove(&node) {
                self.log.store().snapshot_released(&outgoing.snapshot);
                self.given_up_snapshots.insert(node, outgoing);
            }
            self.snapshot_send_counters.transfers_given_up += 1;
            if let Some(progress) = self.progress.get_mut(&node) {
                progress.snapshot_given_up();
            }
        }
    }

    /// Leader: a heartbeat answer from a follower receiving a snapshot. Sends nothing unless
    /// the transfer made no progress for `snapshot_resend_ticks` (a chunk or its answer was
    /// lost): then the window goes again from the acknowledged offset. Also fills a window a
    /// log could not read earlier (`SnapshotTemporarilyUnavailable`).
    pub(crate) fn on_snapshot_heartbeat_answer(&mut self, from: NodeId) {
        let now = self.timers.now();
        let resend_ticks = self.config.snapshot_resend_ticks;
        let Some(outgoing) = self.outgoing_snapshots.get_mut(&from) else {
            return;
        };
        if now.saturating_sub(outgoing.progressed_at_tick) >= resend_ticks {
            outgoing.sent = outgoing.acknowledged;
            outgoing.sent_last = false;
            outgoing.progressed_at_tick = now;
            self.snapshot_send_counters.windows_resent += 1;
        }
        self.send_snapshot_window(from);
    }

    /// Leader: `from` answered a chunk of `(snapshot_index, transfer)`: it holds every byte
    /// before `next_offset`. Only an answer that moves the acknowledged offset sends more (as
    /// much as the window then allows), or one that says the follower holds nothing (it
    /// restarted, or refused what it received) after something was acknowledged or the last
    /// chunk was sent (a snapshot of one chunk is never acknowledged before it is checked):
    /// the transfer starts over. Any other answer (a duplicate, a late one, one of an earlier
    /// transfer) sends nothing.
    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        (snapshot_index, transfer): (LogIndex, u64),
        next_offset: u64,
    ) {
        let now = self.timers.now();
        let Some(outgoing) = self.outgoing_snapshots.get_mut(&from) else {
            return;
        };
        if outgoing.snapshot.meta.last.index != snapshot_index
            || outgoing.transfer != transfer
            || next_offset > outgoing.sent_max
        {
            return;
        }
        if next_offset > outgoing.acknowledged {
            outgoing.acknowledged = next_offset;
            if next_offset > outgoing.sent {
                outgoing.sent = next_offset;
                outgoing.sent_last = false;
            }
        } else if next_offset == 0 && (outgoing.acknowledged > 0 || outgoing.sent_last) {
            outgoing.acknowledged = 0;
            outgoing.sent = 0;
            outgoing.sent_last = false;
        } else {
            return;
        }
        outgoing.progressed_at_tick = now;
        self.send_snapshot_window(from);
    }

    /// Leader: sends `to` the chunks after `sent` while fewer than
    /// `snapshot_inflight_bytes_max` bytes are unacknowledged, each read through the log
    /// (`LogReader::snapshot_chunk`), which may stream it from a file. A chunk the log cannot
    /// give now is asked for again at the follower's next heartbeat answer; one it can no
    /// longer give at all (`Compacted`: replaced by a newer snapshot) gives the snapshot up,
    /// and the follower is sent the newest one afresh; a storage failure stops the replica,
    /// as any failed read of its log does.
    fn send_snapshot_window(&mut self, to: NodeId) {
        let window = self.config.snapshot_inflight_bytes_max;
        while let Some(outgoing) = self.outgoing_snapshots.get(&to) {
            if outgoing.sent_last || outgoing.sent - outgoing.acknowledged >= window {
                return;
            }
            if !self.send_snapshot_chunk(to) {
                return;
            }
        }
    }

    /// Sends `to` the chunk at its transfer's `sent`; false if none could be sent.
    fn send_snapshot_chunk(&mut self, to: NodeId) -> bool {
        let Some(outgoing) = self.outgoing_snapshots.get(&to) else {
            return false;
        };
        let read = self.log.store().snapshot_chunk(
            &outgoing.snapshot,
            outgoing.sent,
            self.config.snapshot_chunk_bytes,
        );
        let chunk = match read {
            Ok(chunk) => chunk,
            Err(LogError::SnapshotTemporarilyUnavailable) => return false,
            Err(error @ LogError::Storage(_)) => {
                self.fail(error);
                return false;
            }
            Err(_) => {
                self.drop_outgoing_snapshot(to);
                if let Some(progress) = self.progress.get_mut(&to) {
                    progress.snapshot_given_up();
                }
                return false;
            }
        };
        let chunk_bytes = chunk.data.len() as u64;
        // A log that hands out an empty chunk before the last would send it forever.
        let moves = chunk_bytes > 0 || chunk.done;
        let body = MessageBody::InstallSnapshot {
            meta: outgoing.snapshot.meta.clone(),
            transfer: outgoing.transfer,
            offset: outgoing.sent,
            data: chunk.data,
            done: chunk.done,
        };
        if let Some(outgoing) = self.outgoing_snapshots.get_mut(&to) {
            outgoing.sent += chunk_bytes;
            outgoing.sent_max = outgoing.sent_max.max(outgoing.sent);
            outgoing.sent_last = chunk.done;
        }
        self.snapshot_send_counters.chunks_sent += 1;
        self.snapshot_send_counters.chunk_bytes_sent += chunk_bytes;
        self.send(to, body);
        moves
    }
}
