//! `WriteBatch`: what many groups want persisted in one write and one sync, in the order
//! `flotilla_raft::Ready` documents, and its encoding into records before it joins a commit.

use super::body::{Body, Effect, SnapshotMarker};
use super::record::{Frame, encode};
use crate::error::WriteError;
use flotilla_raft::{Entry, GroupId, HardState, Persist, Snapshot};

/// One group's operation, in the order it must be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// A received snapshot replacing the log.
    Install(Snapshot),
    /// Entries to append after dropping any conflicting suffix.
    Append(Vec<Entry>),
    /// A new hard state.
    HardState(HardState),
    /// A local snapshot; drop the entries it covers.
    Compact(Snapshot),
    /// The replica is destroyed; keep only this hard state.
    Destroy(HardState),
}

/// The persistence work of many groups, made durable together by `LogEngine::write`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) operations: Vec<(GroupId, Operation)>,
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one group's `Persist`, in its documented order: snapshot, entries, hard state,
    /// compaction.
    pub fn persist(&mut self, group: GroupId, persist: &Persist) {
        if let Some(snapshot) = &persist.snapshot {
            self.install_snapshot(group, snapshot.clone());
        }
        self.append(group, persist.entries.clone());
        if let Some(hard_state) = persist.hard_state {
            self.set_hard_state(group, hard_state);
        }
        if let Some(snapshot) = &persist.compaction {
            self.compact(group, snapshot.clone());
        }
    }

    /// Appends entries to a group, dropping its entries at or after `entries[0].index` first.
    pub fn append(&mut self, group: GroupId, entries: Vec<Entry>) {
        if !entries.is_empty() {
            self.operations.push((group, Operation::Append(entries)));
        }
    }

    /// Sets a group's hard state.
    pub fn set_hard_state(&mut self, group: GroupId, hard_state: HardState) {
        self.operations
            .push((group, Operation::HardState(hard_state)));
    }

    /// Replaces a group's whole log with a snapshot received from a leader.
    pub fn install_snapshot(&mut self, group: GroupId, snapshot: Snapshot) {
        self.operations.push((group, Operation::Install(snapshot)));
    }

    /// Stores a local snapshot of a group and drops the entries it covers.
    pub fn compact(&mut self, group: GroupId, snapshot: Snapshot) {
        self.operations.push((group, Operation::Compact(snapshot)));
    }

    /// Destroys a group's replica: its log and snapshot are dropped (its segments and snapshot
    /// file become garbage) and `tombstone` stays as its hard state, so a replica created for
    /// the group again starts from that term and can never be led by a stale leader.
    pub fn destroy(&mut self, group: GroupId, tombstone: HardState) {
        self.operations.push((group, Operation::Destroy(tombstone)));
    }

    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }
}

/// One encoded record and what it does once durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EncodedRecord {
    pub(crate) group: GroupId,
    pub(crate) frame_bytes: u32,
    pub(crate) effect: Effect,
    /// The entry itself, for the recent-entries cache (entries only).
    pub(crate) entry: Option<Entry>,
}

/// A batch turned into framed records, ready to be placed in a segment.
#[derive(Debug, Default)]
pub(crate) struct EncodedBatch {
    /// The frames, back to back.
    pub(crate) bytes: Vec<u8>,
    /// One per frame, in order.
    pub(crate) records: Vec<EncodedRecord>,
}

impl EncodedBatch {
    /// Frames `body` for `group`, refusing payloads over `payload_bytes_max`.
    pub(crate) fn push(
        &mut self,
        group: GroupId,
        body: Body,
        payload_bytes_max: u64,
    ) -> Result<(), WriteError> {
        let payload = body.encode_payload();
        let payload_bytes = payload.len() as u64;
        if payload_bytes > payload_bytes_max {
            return Err(WriteError::RecordTooLarge {
                group,
                payload_bytes,
                payload_bytes_max,
            });
        }
        let start = self.bytes.len();
        let kind = body.kind();
        encode(
            &Frame {
                group,
                kind,
                payload: &payload,
            },
            &mut self.bytes,
        );
        let frame_bytes = u32::try_from(self.bytes.len() - start).expect("checked above");
        let effect = body.effect();
        let entry = match body {
            Body::Entry(entry) => Some(entry),
            _ => None,
        };
        self.records.push(EncodedRecord {
            group,
            frame_bytes,
            effect,
            entry,
        });
        Ok(())
    }

    /// Pushes the record of a snapshot already stored in its file.
    pub(crate) fn push_marker(
        &mut self,
        group: GroupId,
        marker: SnapshotMarker,
        installs: bool,
        payload_bytes_max: u64,
    ) -> Result<(), WriteError> {
        let body = if installs {
            Body::Snapshot(marker)
        } else {
            Body::Compaction(marker)
        };
        self.push(group, body, payload_bytes_max)
    }
}
