//! Snapshots (Raft §7): the application compacts the log at an applied index; a follower
//! whose next entry was compacted receives the snapshot in chunks and replaces its log.

use crate::entry::{Membership, Snapshot, SnapshotMeta};
use crate::error::StepError;
use crate::log::{LogError, LogReader};
use crate::message::{AppendOutcome, MessageBody};
use crate::node::RaftNode;
use crate::types::{LogIndex, NodeId};
use thiserror::Error;

/// A snapshot being received, chunk by chunk.
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    meta: SnapshotMeta,
    /// The chunks so far (empty when staging: the caller holds them).
    data: Vec<u8>,
    /// How many bytes arrived.
    received: u64,
    /// Staging: the last chunk arrived, and the caller is checking what it staged.
    complete: bool,
    /// Who sent it (the leader to answer once it is installed).
    from: NodeId,
}

/// What staging hands the caller in the next `Ready`.
#[derive(Clone, Debug, Default)]
pub(crate) struct StagingOutput {
    pub(crate) chunks: Vec<crate::ready::SnapshotPiece>,
    pub(crate) received: Option<SnapshotMeta>,
    pub(crate) dropped: bool,
}

impl StagingOutput {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.received.is_none() && !self.dropped
    }

    /// The snapshot being staged is given up: its chunks not yet handed out go with it.
    fn drop_staged(&mut self) {
        self.chunks.clear();
        self.received = None;
        self.dropped = true;
    }
}

/// A snapshot being sent to one follower.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingSnapshot {
    snapshot: Snapshot,
    /// The offset the follower acknowledged; the next chunk starts here.
    acknowledged: u64,
}

/// Why `compact` refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CompactError {
    /// The index is past what the state machine applied.
    #[error("cannot snapshot at {index}: only {applied} is applied")]
    NotApplied {
        /// The index asked for.
        index: LogIndex,
        /// The applied index.
        applied: LogIndex,
    },
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl<L: LogReader> RaftNode<L> {
    /// Hands Raft a snapshot of the state machine at `index` (at most the applied index). The
    /// next `Ready` asks the caller to store it and drop the entries it covers.
    ///
    /// # Errors
    /// `NotApplied` if `index` is past the applied index.
    pub fn compact(&mut self, index: LogIndex, data: Vec<u8>) -> Result<(), CompactError> {
        let applied = self.log.applied();
        if index > applied {
            return Err(CompactError::NotApplied { index, applied });
        }
        if index < self.log.first_index() {
            return Ok(());
        }
        let term = self.log.term(index)?;
        let membership = self.membership_at(index);
        self.membership_history.retain(|(at, _)| *at > index);
        self.membership_history
            .insert(0, (index, membership.clone()));
        let meta = SnapshotMeta {
            last: crate::types::LogId::new(term, index),
            membership,
        };
        self.compaction = Some(Snapshot { meta, data });
        Ok(())
    }

    fn membership_at(&self, index: LogIndex) -> Membership {
        let from_history = self
            .membership_history
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map(|(_, membership)| membership.clone());
        from_history.unwrap_or_else(|| self.snapshot_membership())
    }

    fn snapshot_membership(&self) -> Membership {
        match self.log.store().initial_state() {
            Ok(initial) => initial.snapshot_meta.membership,
            Err(_) => self.membership.clone(),
        }
    }

    /// Leader: start sending the newest snapshot to `to`. Returns whether a chunk was sent.
    pub(crate) fn send_snapshot(&mut self, to: NodeId) -> bool {
        let snapshot = match self.log.store().snapshot() {
            Ok(snapshot) => snapshot,
            Err(LogError::SnapshotTemporarilyUnavailable) => return false,
            Err(error) => {
                self.fail(error);
                return false;
            }
        };
        let index = snapshot.meta.last.index;
        if let Some(progress) = self.progress.get_mut(&to) {
            progress.become_snapshot(index);
        }
        let outgoing = OutgoingSnapshot {
            snapshot,
            acknowledged: 0,
        };
        if let Some(replaced) = self.outgoing_snapshots.insert(to, outgoing) {
            self.log.store().snapshot_released(&replaced.snapshot);
        }
        self.resend_snapshot_chunk(to);
        true
    }

    /// Leader: stops sending `to` its snapshot (received, given up, or `to` left the group),
    /// and tells the log.
    pub(crate) fn drop_outgoing_snapshot(&mut self, to: NodeId) {
        if let Some(outgoing) = self.outgoing_snapshots.remove(&to) {
            self.log.store().snapshot_released(&outgoing.snapshot);
        }
    }

    /// Leader: stops sending every snapshot (leadership lost), and tells the log.
    pub(crate) fn drop_outgoing_snapshots(&mut self) {
        for (_, outgoing) in std::mem::take(&mut self.outgoing_snapshots) {
            self.log.store().snapshot_released(&outgoing.snapshot);
        }
    }

    /// Leader: send the chunk after what `to` acknowledged (again, if it was lost), read
    /// through the log (`LogReader::snapshot_chunk`), which may stream it from a file. A chunk
    /// the log cannot give now is asked for again at the follower's next heartbeat answer; one
    /// it can no longer give at all (`Compacted`: replaced by a newer snapshot) gives the
    /// snapshot up, and the follower is sent the newest one afresh; a storage failure stops
    /// the replica, as any failed read of its log does.
    pub(crate) fn resend_snapshot_chunk(&mut self, to: NodeId) {
        let Some(outgoing) = self.outgoing_snapshots.get(&to) else {
            return;
        };
        let chunk = self.log.store().snapshot_chunk(
            &outgoing.snapshot,
            outgoing.acknowledged,
            self.config.snapshot_chunk_bytes,
        );
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(LogError::SnapshotTemporarilyUnavailable) => return,
            Err(error @ LogError::Storage(_)) => return self.fail(error),
            Err(_) => {
                self.drop_outgoing_snapshot(to);
                if let Some(progress) = self.progress.get_mut(&to) {
                    progress.snapshot_given_up();
                }
                return;
            }
        };
        let body = MessageBody::InstallSnapshot {
            meta: outgoing.snapshot.meta.clone(),
            offset: outgoing.acknowledged,
            data: chunk.data,
            done: chunk.done,
        };
        self.send(to, body);
    }

    /// Leader: `to` acknowledged a chunk and expects `next_offset`.
    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        snapshot_index: LogIndex,
        next_offset: u64,
    ) {
        let Some(outgoing) = self.outgoing_snapshots.get_mut(&from) else {
            return;
        };
        if outgoing.snapshot.meta.last.index != snapshot_index {
            return;
        }
        outgoing.acknowledged = next_offset;
        self.resend_snapshot_chunk(from);
    }

    /// Follower: one chunk of a snapshot from the leader of our term.
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Result<(), StepError> {
        let end = offset.saturating_add(data.len() as u64);
        if end > self.config.snapshot_bytes_max {
            if self.incoming_snapshot.take().is_some() && self.config.snapshot_staging {
                self.staging.drop_staged();
            }
            let reason = "the snapshot is larger than snapshot_bytes_max";
            return Err(StepError::Malformed { from, reason });
        }
        let index = meta.last.index;
        if index <= self.log.committed() {
            let last = self.log.committed();
            self.send(
                from,
                MessageBody::AppendResponse(AppendOutcome::Accepted { last }),
            );
            return Ok(());
        }
        if self
            .incoming_snapshot
            .as_ref()
            .is_some_and(|incoming| incoming.complete && incoming.meta == meta)
        {
            // Staged whole: the caller is checking it, and answers for it.
            return Ok(());
        }
        let received = self.receive_chunk(from, meta, offset, data);
        if !done || received.is_none() {
            let body = MessageBody::SnapshotResponse {
                snapshot_index: index,
                next_offset: received.unwrap_or_else(|| self.incoming_length(index)),
            };
            self.send(from, body);
            return Ok(());
        }
        if self.config.snapshot_staging {
            let incoming = self.incoming_snapshot.as_mut();
            if let Some(incoming) = incoming {
                let last = incoming.meta.last;
                if self.log.matches(last) {
                    self.incoming_snapshot = None;
                    self.staging.drop_staged();
                    self.log.commit_to(last.index);
                    self.accept_snapshot(from, last.index);
                } else {
                    incoming.complete = true;
                    self.staging.received = Some(incoming.meta.clone());
                }
            }
            return Ok(());
        }
        match self.incoming_snapshot.take() {
            Some(incoming) => self.install_snapshot(from, incoming),
            None => Ok(()),
        }
    }

    /// Adds a chunk if it continues the snapshot being received (staging: hands it to the
    /// caller); returns the new length.
    fn receive_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
    ) -> Option<u64> {
        if offset == 0 {
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta: meta.clone(),
                data: Vec::new(),
                received: 0,
                complete: false,
                from,
            });
            // Chunks of a snapshot given up are of no use to the caller any more (the chunk
            // at offset 0 starts a new staging, so nothing needs dropping).
            self.staging.chunks.clear();
            self.staging.received = None;
        }
        let incoming = self.incoming_snapshot.as_mut()?;
        if incoming.meta != meta || incoming.received != offset || incoming.complete {
            return None;
        }
        incoming.received += data.len() as u64;
        incoming.from = from;
        if self.config.snapshot_staging {
            self.staging.chunks.push(crate::ready::SnapshotPiece {
                last: meta.last,
                offset,
                data,
            });
        } else {
            incoming.data.extend_from_slice(&data);
        }
        Some(incoming.received)
    }

    fn incoming_length(&self, index: LogIndex) -> u64 {
        match &self.incoming_snapshot {
            Some(incoming) if incoming.meta.last.index == index => incoming.received,
            _ => 0,
        }
    }

    /// Follower, staging: the caller checked the snapshot it staged for `meta` and stores it
    /// as `data` (what `Ready::persist.snapshot` hands back: a reference to the staged file,
    /// say). Installs it as a received snapshot is installed, unless it is no longer wanted:
    /// another snapshot is being received, the log moved past it meanwhile, or this replica
    /// campaigns or leads now, whose log only its own entries may change (false; the caller
    /// drops what it staged).
    pub fn install_staged(&mut self, meta: &SnapshotMeta, data: Vec<u8>) -> bool {
        let Some(incoming) = self
            .incoming_snapshot
            .take_if(|incoming| incoming.complete && incoming.meta == *meta)
        else {
            return false;
        };
        if self.role != crate::node::Role::Follower {
            return false;
        }
        let last = incoming.meta.last;
        if last.index <= self.log.committed() || self.log.matches(last) {
            if self.log.matches(last) {
                self.log.commit_to(last.index);
            }
            self.accept_snapshot(incoming.from, self.log.committed());
            return false;
        }
        self.membership = incoming.meta.membership.clone();
        self.membership_history.clear();
        self.log.restore(Snapshot {
            meta: incoming.meta,
            data,
        });
        self.accept_snapshot(incoming.from, last.index);
        true
    }

    /// Follower, staging: the caller refused the snapshot it staged for `meta` (it does not
    /// check). It is dropped unanswered: the leader's next chunk finds nothing received and
    /// the snapshot is sent again from its start. False if it was no longer being received.
    pub fn refuse_staged(&mut self, meta: &SnapshotMeta) -> bool {
        self.incoming_snapshot
            .take_if(|incoming| incoming.complete && incoming.meta == *meta)
            .is_some()
    }

    /// Tells the leader `from` the follower holds everything up to `last`.
    fn accept_snapshot(&mut self, from: NodeId, last: LogIndex) {
        let body = MessageBody::AppendResponse(AppendOutcome::Accepted { last });
        self.send(from, body);
    }

    /// Follower: the last chunk arrived. If the log already holds the snapshot's last entry,
    /// only the commit index moves (§7: keep the entries that follow); otherwise the data
    /// must pass `snapshot_check` (refused, it is dropped unanswered: the leader's next chunk
    /// finds nothing received and starts it over), and then the log is replaced and the state
    /// machine restored from the snapshot.
    fn install_snapshot(
        &mut self,
        from: NodeId,
        incoming: IncomingSnapshot,
    ) -> Result<(), StepError> {
        let last = incoming.meta.last;
        if self.log.matches(last) {
            self.log.commit_to(last.index);
        } else {
            let check = self.config.snapshot_check.0;
            if let Err(reason) = check(self.config.group, &incoming.meta, &incoming.data) {
                return Err(StepError::SnapshotRefused {
                    from,
                    index: last.index,
                    reason,
                });
            }
            self.membership = incoming.meta.membership.clone();
            self.membership_history.clear();
            self.log.restore(Snapshot {
                meta: incoming.meta,
                data: incoming.data,
            });
        }
        self.accept_snapshot(from, last.index);
        Ok(())
    }
}
