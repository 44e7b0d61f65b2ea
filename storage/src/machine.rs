//! The state machine of one range behind one trait, so the node can keep applied data in memory
//! (`KvStateMachine`) or in the node's embedded engine (`DiskStateMachine`) and cannot tell the
//! difference except in what survives a restart. `tests/machine_conformance.rs` runs both
//! through the same suite.
//!
//! Calling order, per range: `apply_entry` for each committed entry in log order; `read_bounded`
//! at any time; `snapshot_view` for a read view at the applied entry that is then drained with
//! `next_chunk` (on any thread: the view never blocks applying); `restore` to replace the whole
//! state with a snapshot a leader sent; `clear` when the replica is destroyed.

use crate::error::{EngineError, MachineError};
use crate::kv::{
    Command, KvMap, KvSnapshotSource, KvStateMachine, MergeState, Payload, RangeBounds, Response,
    SessionTable,
};
use crate::snapshot::decode_snapshot;
use flotilla_raft::{Entry, EntryPayload, GroupId, LogId, Membership};
use std::collections::BTreeMap;
use std::ops::Bound;

/// A pair of a range: key and value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The data of a snapshot that says "this range's state is in the node's state machine engine,
/// at or past the snapshot's last entry": what a range in the engine compacts its log with,
/// instead of a copy of its state. It never leaves the node: a follower is sent a snapshot the
/// engine produces (`LogEngine::set_engine_snapshots`).
pub const ENGINE_STATE: &[u8] = b"flotilla: the range's state is in this node's engine";

/// Whether snapshot `data` is [`ENGINE_STATE`].
#[must_use]
pub fn is_engine_state(data: &[u8]) -> bool {
    data == ENGINE_STATE
}

/// Whether `entry` may share one apply batch with the entries after it: a blank entry, a
/// membership change, a command and a session's open or write may; a split or a merge step
/// (`Payload::batches_with_next`) ends its batch, which then reads and writes other ranges'
/// records, and after which the node takes the split's right half or follows the merge.
#[must_use]
pub fn batches_with_next(entry: &Entry) -> bool {
    match &entry.payload {
        EntryPayload::Normal(data) => Payload::batches_with_next(data),
        EntryPayload::Blank | EntryPayload::Membership(_) => true,
    }
}

/// The bytes a pair takes in the snapshot format beyond its key and value (two `u32` lengths),
/// which [`SnapshotView::next_chunk`] counts.
pub const PAIR_FRAMING_BYTES: usize = 8;

/// The applied state of one range.
pub trait StateMachine: Send + std::fmt::Debug {
    /// The range's group.
    fn group(&self) -> GroupId;

    /// The last entry applied; for the disk machine also the last written to the engine, in
    /// the same batch as its effects.
    fn applied(&self) -> LogId;

    /// Key and value bytes the range holds (what a storage quota counts).
    fn stored_bytes(&self) -> u64;

    /// Applies a committed entry (the next after `applied`); blank and membership entries only
    /// move the applied entry. Deterministic across replicas and implementations.
    ///
    /// # Errors
    /// The engine failed: the node must stop and reopen the range.
    ///
    /// # Panics
    /// If the entry is not after the last one applied: a bug in the caller.
    fn apply_entry(&mut self, entry: &Entry) -> Result<Option<Response>, MachineError>;

    /// Applies `entries` (consecutive, committed, after `applied`) as `apply_entry` would, one
    /// answer each; the disk machine commits them in one engine batch, so a later entry reads
    /// what an earlier one wrote and a crash keeps all of them or none. The caller bounds the
    /// batch (one ready's committed entries).
    ///
    /// # Errors
    /// The engine failed: the node must stop and reopen the range.
    ///
    /// # Panics
    /// If an entry is not after the one before it: a bug in the caller.
    fn apply_entries(&mut self, entries: &[Entry]) -> Result<Vec<Option<Response>>, MachineError> {
        entries
            .iter()
            .map(|entry| self.apply_entry(entry))
            .collect()
    }

    /// Answers `Get` or `Scan` from the applied state (`None` for a write), a scan stopping
    /// once its pairs reach `scan_bytes_max` bytes (with at least one pair).
    ///
    /// # Errors
    /// The engine failed.
    fn read_bounded(
        &self,
        command: &Command,
        scan_bytes_max: usize,
    ) -> Result<Option<Response>, MachineError>;

    /// A read view of the state at the applied entry, to stream as a snapshot in chunks while
    /// this machine goes on applying.
    ///
    /// # Errors
    /// The engine failed.
    fn snapshot_view(&self) -> Result<Box<dyn SnapshotView>, MachineError>;

    /// Replaces the whole state with the snapshot `bytes` (the snapshot file format). The
    /// disk machine writes the pairs in bounded batches, never one of the whole range.
    ///
    /// # Errors
    /// The snapshot is invalid or of another range, or the engine failed.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), MachineError>;

    /// Deletes every pair, session and the applied entry of the range (a destroyed replica):
    /// the machine is then empty at index 0.
    ///
    /// # Errors
    /// The engine failed.
    fn clear(&mut self) -> Result<(), MachineError>;

    /// The keys the range holds and its version, as its own log says.
    fn bounds(&self) -> &RangeBounds;

    /// Its part in a merge, as its own log says.
    fn merge_state(&self) -> &MergeState;

    /// Whether it is frozen for a merge into its left neighbour: it serves nothing any more.
    fn is_frozen(&self) -> bool {
        matches!(self.merge_state(), MergeState::Frozen { .. })
    }

    /// How many pairs the range holds.
    fn pair_count(&self) -> u64;

    /// The session table as of the applied entry.
    fn sessions(&self) -> &SessionTable;

    /// The right half of the split the last entry applied (`Response::Split`), once: the state
    /// machine of the new group, holding the keys from the split key on and a copy of the
    /// session table, at applied entry 0.
    fn take_carved(&mut self) -> Option<Box<dyn StateMachine>>;

    /// The group's members as of the applied entry, as the disk machine keeps them
    /// (`set_membership`, membership entries, a split's parent's voters); `None` in memory.
    fn membership(&self) -> Option<&Membership>;

    /// `restore`, and the group's members at the snapshot's entry are `membership`: the disk
    /// machine writes them with the restored state, in the same last batch.
    ///
    /// # Errors
    /// As `restore`.
    fn restore_as_member(
        &mut self,
        bytes: &[u8],
        membership: &Membership,
    ) -> Result<(), MachineError> {
        self.restore(bytes)?;
        self.set_membership(membership)
    }

    /// Records `membership` as the group's members at the applied entry (a snapshot's, once
    /// restored from it): the disk machine keeps them with its state, to name them in the
    /// snapshots it produces; the in-memory machine keeps none.
    ///
    /// # Errors
    /// The engine failed.
    fn set_membership(&mut self, membership: &Membership) -> Result<(), MachineError>;

    /// Makes `ingested`, a snapshot written into the disk engine off the Raft loop
    /// (`Engine::ingest_snapshot`), the range's state: for the disk machine one small write
    /// that switches its metadata to the ingested space, its old space deleted in the
    /// background. A machine outside that engine refuses it (and the space is deleted).
    ///
    /// # Errors
    /// `NotInEngine`, `WrongGroup`, or the engine failed.
    fn restore_ingested(
        &mut self,
        ingested: crate::engine::IngestedRange,
    ) -> Result<(), MachineError> {
        Err(MachineError::NotInEngine(ingested.group()))
    }

    /// The key in the middle of the range's pairs (where a split by size cuts it), `None` if
    /// the range holds fewer than two pairs or the middle key is the range's first key.
    ///
    /// # Errors
    /// The engine failed.
    fn middle_key(&self) -> Result<Option<Vec<u8>>, MachineError>;
}

/// The bytes of pairs pulled from a state machine's view at a time while its whole state is
/// encoded (`encode_machine`, `encode_carved`, `Engine::range_snapshot`): memory holds one
/// such chunk besides the encoding.
pub const VIEW_CHUNK_BYTES: usize = 1 << 20;

/// The whole snapshot of `machine` at its applied entry, in the snapshot format (what a split's
/// right half starts from, and what a merge entry carries), its pairs pulled in chunks of
/// `chunk_bytes_max` bytes.
///
/// # Errors
/// The engine failed.
pub fn encode_machine(
    machine: &dyn StateMachine,
    chunk_bytes_max: usize,
) -> Result<Vec<u8>, MachineError> {
    let mut view = machine.snapshot_view()?;
    Ok(crate::snapshot::encode_view(
        view.as_mut(),
        chunk_bytes_max,
    )?)
}

/// The first state of a split's right half, in the snapshot format: the state `carved` holds
/// (at applied entry 0, as `take_carved` hands it out) as the snapshot at `start` that its new
/// group's log begins with.
///
/// # Errors
/// The engine failed.
pub fn encode_carved(
    carved: &dyn StateMachine,
    start: LogId,
    chunk_bytes_max: usize,
) -> Result<Vec<u8>, MachineError> {
    let mut view = Relabeled {
        inner: carved.snapshot_view()?,
        applied: start,
    };
    Ok(crate::snapshot::encode_view(&mut view, chunk_bytes_max)?)
}

/// A view whose applied entry is given, not its machine's.
struct Relabeled {
    inner: Box<dyn SnapshotView>,
    applied: LogId,
}

impl SnapshotView for Relabeled {
    fn group(&self) -> GroupId {
        self.inner.group()
    }

    fn applied(&self) -> LogId {
        self.applied
    }

    fn pair_count(&self) -> u64 {
        self.inner.pair_count()
    }

    fn stored_bytes(&self) -> u64 {
        self.inner.stored_bytes()
    }

    fn sessions(&self) -> &SessionTable {
        self.inner.sessions()
    }

    fn bounds(&self) -> &RangeBounds {
        self.inner.bounds()
    }

    fn merge_state(&self) -> &MergeState {
        self.inner.merge_state()
    }

    fn declined(&self) -> &BTreeMap<GroupId, u64> {
        self.inner.declined()
    }

    fn next_chunk(
        &mut self,
        chunk_bytes_max: usize,
        pairs: &mut Vec<Pair>,
    ) -> Result<bool, EngineError> {
        self.inner.next_chunk(chunk_bytes_max, pairs)
    }
}

/// A consistent view of one range at one applied entry, drained in chunks.
pub trait SnapshotView: Send {
    /// The range's group.
    fn group(&self) -> GroupId;

    /// The last entry the view includes.
    fn applied(&self) -> LogId;

    /// How many pairs the view holds.
    fn pair_count(&self) -> u64;

    /// Key and value bytes of those pairs.
    fn stored_bytes(&self) -> u64;

    /// The session table at the view's entry.
    fn sessions(&self) -> &SessionTable;

    /// The range's bounds at the view's entry.
    fn bounds(&self) -> &RangeBounds;

    /// The range's part in a merge at the view's entry.
    fn merge_state(&self) -> &MergeState;

    /// The merge attempts the range refused to freeze for, at the view's entry.
    fn declined(&self) -> &BTreeMap<GroupId, u64>;

    /// Appends the next pairs in key order to `pairs`, up to `chunk_bytes_max` bytes as the
    /// snapshot format lays them out (key and value plus 8 bytes of lengths each), at least one
    /// pair; false, appending nothing, once every pair was handed out.
    ///
    /// # Errors
    /// The engine failed.
    fn next_chunk(
        &mut self,
        chunk_bytes_max: usize,
        pairs: &mut Vec<Pair>,
    ) -> Result<bool, EngineError>;
}

impl StateMachine for KvStateMachine {
    fn group(&self) -> GroupId {
        KvStateMachine::group(self)
    }

    fn applied(&self) -> LogId {
        KvStateMachine::applied(self)
    }

    fn stored_bytes(&self) -> u64 {
        KvStateMachine::stored_bytes(self)
    }

    fn apply_entry(&mut self, entry: &Entry) -> Result<Option<Response>, MachineError> {
        Ok(KvStateMachine::apply_entry(self, entry))
    }

    fn read_bounded(
        &self,
        command: &Command,
        scan_bytes_max: usize,
    ) -> Result<Option<Response>, MachineError> {
        Ok(KvStateMachine::read_bounded(self, command, scan_bytes_max))
    }

    fn snapshot_view(&self) -> Result<Box<dyn SnapshotView>, MachineError> {
        Ok(Box::new(MemoryView {
            source: self.snapshot_source(),
            stored_bytes: KvStateMachine::stored_bytes(self),
            after: None,
        }))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), MachineError> {
        let restored = decode_snapshot(bytes)?;
        if restored.group() != self.group() {
            return Err(MachineError::WrongGroup {
                expected: self.group(),
                found: restored.group(),
            });
        }
        *self = restored;
        Ok(())
    }

    fn clear(&mut self) -> Result<(), MachineError> {
        *self = KvStateMachine::new(self.group());
        Ok(())
    }

    fn bounds(&self) -> &RangeBounds {
        KvStateMachine::bounds(self)
    }

    fn merge_state(&self) -> &MergeState {
        KvStateMachine::merge_state(self)
    }

    fn pair_count(&self) -> u64 {
        self.map().len() as u64
    }

    fn sessions(&self) -> &SessionTable {
        KvStateMachine::sessions(self)
    }

    fn take_carved(&mut self) -> Option<Box<dyn StateMachine>> {
        KvStateMachine::take_carved(self).map(|carved| Box::new(carved) as Box<dyn StateMachine>)
    }

    fn set_membership(&mut self, _membership: &Membership) -> Result<(), MachineError> {
        Ok(())
    }

    fn membership(&self) -> Option<&Membership> {
        None
    }

    fn middle_key(&self) -> Result<Option<Vec<u8>>, MachineError> {
        let map = self.map();
        let Some(middle) = map.key_at(map.len() / 2) else {
            return Ok(None);
        };
        Ok(
            (map.len() >= 2 && *middle != KvStateMachine::bounds(self).start)
                .then(|| middle.clone()),
        )
    }
}

/// The view of an in-memory machine: the shared map, walked from after the last key handed out.
struct MemoryView {
    source: KvSnapshotSource,
    /// Key and value bytes of the map.
    stored_bytes: u64,
    /// The last key handed out.
    after: Option<Vec<u8>>,
}

impl SnapshotView for MemoryView {
    fn group(&self) -> GroupId {
        self.source.group
    }

    fn applied(&self) -> LogId {
        self.source.applied
    }

    fn pair_count(&self) -> u64 {
        self.source.map.len() as u64
    }

    fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    fn sessions(&self) -> &SessionTable {
        &self.source.sessions
    }

    fn bounds(&self) -> &RangeBounds {
        &self.source.bounds
    }

    fn merge_state(&self) -> &MergeState {
        &self.source.merge
    }

    fn declined(&self) -> &BTreeMap<GroupId, u64> {
        &self.source.declined
    }

    fn next_chunk(
        &mut self,
        chunk_bytes_max: usize,
        pairs: &mut Vec<Pair>,
    ) -> Result<bool, EngineError> {
        let after = self.after.take();
        let lower = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let map: &KvMap = &self.source.map;
        let mut bytes = 0usize;
        let mut taken = 0usize;
        for (key, value) in map.range(lower, Bound::Unbounded) {
            bytes = bytes.saturating_add(PAIR_FRAMING_BYTES + key.len() + value.len());
            if bytes > chunk_bytes_max && taken > 0 {
                break;
            }
            pairs.push((key.clone(), value.clone()));
            taken += 1;
        }
        self.after = match pairs.last() {
            Some((last, _)) if taken > 0 => Some(last.clone()),
            _ => after,
        };
        Ok(taken > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::encode_snapshot;
    use flotilla_raft::{LogIndex, Term};

    fn frozen_machine() -> KvStateMachine {
        let map: KvMap = (0..20u8).map(|key| (vec![key], vec![key; 10])).collect();
        KvStateMachine::from_parts(GroupId(7), LogId::new(Term(2), LogIndex(40)), map)
            .with_bounds(RangeBounds {
                start: vec![0],
                end: Some(vec![100]),
                version: 3,
            })
            .with_merge(MergeState::Frozen {
                into: GroupId(6),
                attempt: 5,
            })
            .with_declined(BTreeMap::from([(GroupId(8), 2)]))
    }

    /// Through its view, in small chunks, a range frozen for a merge encodes as the whole
    /// machine does: its merge state and refused attempts included.
    #[test]
    fn a_machine_encodes_through_its_view_as_a_whole() {
        let machine = frozen_machine();
        let whole = encode_snapshot(&machine.snapshot_source());
        assert_eq!(encode_machine(&machine, 16).unwrap(), whole);
        let decoded = crate::decode_snapshot(&whole).unwrap();
        assert_eq!(decoded, machine);
    }

    /// A carved right half takes the given applied entry and nothing else changes.
    #[test]
    fn a_carved_half_is_encoded_at_its_start() {
        let machine = frozen_machine();
        let start = LogId::new(Term(1), LogIndex(5));
        let decoded = crate::decode_snapshot(&encode_carved(&machine, start, 16).unwrap()).unwrap();
        assert_eq!(decoded, machine.clone().with_applied(start));
    }
}
