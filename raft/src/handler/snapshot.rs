//! Snapshots (Raft §7): the application compacts the log at an applied index; a follower
//! whose next entry was compacted receives the snapshot in chunks and replaces its log.

use crate::entry::{Membership, Snapshot, SnapshotMeta};
use crate::error::StepError;
use crate::log::{LogError, LogReader};
use crate::message::{AppendOutcome, MessageBody};
use crate::node::RaftNode;
use crate::types::{LogIndex, NodeId, Term};
use thiserror::Error;

/// A snapshot being received, chunk by chunk.
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    meta: SnapshotMeta,
    /// The term and number of the transfer it arrives by: a chunk of a smaller one is late.
    transfer: (Term, u64),
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

/// One InstallSnapshot chunk, as it arrived.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub(crate) meta: SnapshotMeta,
    pub(crate) transfer: u64,
    pub(crate) offset: u64,
    pub(crate) data: Vec<u8>,
    pub(crate) done: bool,
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

    /// Follower: one chunk of a snapshot from the leader of our term. A chunk that continues
    /// the transfer being received is kept; a chunk at offset 0 of a newer transfer starts it
    /// over; a late copy of a chunk already received, or of an earlier transfer, changes
    /// nothing. Every chunk but the last received is answered with the offset expected next.
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        chunk: Chunk,
    ) -> Result<(), StepError> {
        let end = chunk.offset.saturating_add(chunk.data.len() as u64);
        if end > self.config.snapshot_bytes_max {
            if self.incoming_snapshot.take().is_some() && self.config.snapshot_staging {
                self.staging.drop_staged();
            }
            let reason = "the snapshot is larger than snapshot_bytes_max";
            return Err(StepError::Malformed { from, reason });
        }
        let index = chunk.meta.last.index;
        if index <= self.log.committed() {
            self.accept_snapshot(from, self.log.committed());
            return Ok(());
        }
        let transfer = (self.term, chunk.transfer);
        let ignored = self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            // Staged whole (the caller is checking it, and answers for it), or a late chunk of
            // a transfer this one replaced.
            (incoming.complete && incoming.meta == chunk.meta) || transfer < incoming.transfer
        });
        if ignored {
            return Ok(());
        }
        let done = chunk.done;
        let received = self.receive_chunk(from, chunk);
        if !done || received.is_none() {
            let body = MessageBody::SnapshotResponse {
                snapshot_index: index,
                transfer: transfer.1,
                next_offset: received.unwrap_or_else(|| self.incoming_length(transfer, index)),
            };
            self.send(from, body);
            return Ok(());
        }
        self.last_chunk_received(from)
    }

    /// Follower: the last chunk arrived. Staging, the caller is asked to check what it staged
    /// (unless the log holds the snapshot's last entry already: only the commit moves);
    /// otherwise the snapshot is installed now.
    fn last_chunk_received(&mut self, from: NodeId) -> Result<(), StepError> {
        if !self.config.snapshot_staging {
            return match self.incoming_snapshot.take() {
                Some(incoming) => self.install_snapshot(from, incoming),
                None => Ok(()),
            };
        }
        let Some(incoming) = self.incoming_snapshot.as_mut() else {
            return Ok(());
        };
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
        Ok(())
    }

    /// Adds a chunk if it continues the transfer being received (staging: hands it to the
    /// caller); returns the new length. Offset 0 of a newer transfer (or of any, when nothing
    /// is being received) starts it over; nothing else does, so a late copy of the first
    /// chunk cannot throw away what arrived after it.
    fn receive_chunk(&mut self, from: NodeId, chunk: Chunk) -> Option<u64> {
        let transfer = (self.term, chunk.transfer);
        let newer = self
            .incoming_snapshot
            .as_ref()
            .is_none_or(|incoming| transfer > incoming.transfer);
        if chunk.offset == 0 && newer {
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta: chunk.meta.clone(),
                transfer,
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
        let continues = incoming.transfer == transfer
            && incoming.meta == chunk.meta
            && incoming.received == chunk.offset
            && !incoming.complete;
        if !continues {
            return None;
        }
        incoming.received += chunk.data.len() as u64;
        incoming.from = from;
        if self.config.snapshot_staging {
            self.staging.chunks.push(crate::ready::SnapshotPiece {
                last: chunk.meta.last,
                offset: chunk.offset,
                data: chunk.data,
            });
        } else {
            incoming.data.extend_from_slice(&chunk.data);
        }
        Some(incoming.received)
    }

    /// How much of `transfer` of the snapshot at `index` arrived: what to answer a chunk that
    /// did not continue it (0: nothing, start over).
    fn incoming_length(&self, transfer: (Term, u64), index: LogIndex) -> u64 {
        match &self.incoming_snapshot {
            Some(incoming)
                if incoming.transfer == transfer && incoming.meta.last.index == index =>
            {
                incoming.received
            }
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
    /// check). It is dropped, and the leader is told the follower holds nothing of that
    /// transfer (an answer of offset 0), so it sends the snapshot again from its start at
    /// once rather than after its resend timeout. False if it was no longer being received.
    pub fn refuse_staged(&mut self, meta: &SnapshotMeta) -> bool {
        let refused = self
            .incoming_snapshot
            .take_if(|incoming| incoming.complete && incoming.meta == *meta);
        match refused {
            Some(incoming) => {
                self.ask_to_start_over(&incoming);
                true
            }
            None => false,
        }
    }

    /// Tells the leader of `incoming` the follower holds nothing of its transfer.
    fn ask_to_start_over(&mut self, incoming: &IncomingSnapshot) {
        let body = MessageBody::SnapshotResponse {
            snapshot_index: incoming.meta.last.index,
            transfer: incoming.transfer.1,
            next_offset: 0,
        };
        self.send(incoming.from, body);
    }

    /// Tells the leader `from` the follower holds everything up to `last`.
    fn accept_snapshot(&mut self, from: NodeId, last: LogIndex) {
        let body = MessageBody::AppendResponse(AppendOutcome::Accepted { last });
        self.send(from, body);
    }

    /// Follower: the last chunk arrived. If the log already holds the snapshot's last entry,
    /// only the commit index moves (§7: keep the entries that follow); otherwise the data
    /// must pass `snapshot_check` (refused, it is dropped and the leader asked to start over
    /// with an answer of offset 0), and then the log is replaced and the state machine
    /// restored from the snapshot.
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
                self.ask_to_start_over(&incoming);
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
