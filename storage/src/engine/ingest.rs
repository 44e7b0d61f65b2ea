//! A received snapshot written into a fresh space of the engine while the range goes on
//! serving its old state: the snapshot's pairs streamed from its bytes (a mapped file) in
//! batches of `batch_bytes_max`, then its sessions; no metadata record names the space yet.
//! The range's live `DiskStateMachine` switches to it with one small write, its metadata record
//! naming the new space (`DiskStateMachine::restore_ingested`); the old space is deleted in the
//! background. An ingested space never switched to is deleted in the background when its
//! handle drops, and one a crash left is deleted at the next open (no metadata names it).

use super::Engine;
use super::keys::{self, Space};
use super::meta::RangeMeta;
use crate::error::MachineError;
use crate::kv::SessionTable;
use crate::snapshot::snapshot_parts;
use flotilla_raft::{GroupId, LogId, Membership};

/// A snapshot of one range ingested into a space of the engine, not yet switched to: what
/// `DiskStateMachine::restore_ingested` makes the range's state. Dropped unused, its space is
/// deleted in the background.
pub struct IngestedRange {
    engine: Engine,
    group: GroupId,
    space: Space,
    /// The range's metadata once switched (naming `space`).
    pub(super) meta: RangeMeta,
    /// Its session table at the snapshot's entry.
    pub(super) sessions: SessionTable,
    /// Switched to: the space is the range's, not to delete.
    switched: bool,
}

impl std::fmt::Debug for IngestedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestedRange")
            .field("group", &self.group)
            .field("space", &self.space)
            .field("applied", &self.meta.applied())
            .finish_non_exhaustive()
    }
}

impl Drop for IngestedRange {
    fn drop(&mut self) {
        if !self.switched {
            self.engine.inner.spaces.delete_later(self.space);
        }
    }
}

impl IngestedRange {
    /// The range it restores.
    #[must_use]
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The snapshot's last entry.
    #[must_use]
    pub fn applied(&self) -> LogId {
        self.meta.applied()
    }

    /// The key and value bytes of its pairs.
    #[must_use]
    pub fn stored_bytes(&self) -> u64 {
        self.meta.stored_bytes
    }

    /// Whether it was ingested into `engine`.
    pub(super) fn is_of(&self, engine: &Engine) -> bool {
        std::sync::Arc::ptr_eq(&self.engine.inner, &engine.inner)
    }

    /// The range took it: its space is no longer to delete.
    pub(super) fn switched(mut self) -> (RangeMeta, SessionTable) {
        self.switched = true;
        (
            std::mem::take(&mut self.meta),
            std::mem::take(&mut self.sessions),
        )
    }
}

impl Engine {
    /// Writes the snapshot `bytes` of `group` into a fresh space, in batches of at most
    /// `batch_bytes_max` key and value bytes, streaming its pairs (memory never holds the
    /// range): off the Raft loop, while the range serves its old state. `membership` names the
    /// group's members at the snapshot's entry, as `restore_as_member` does.
    ///
    /// # Errors
    /// The snapshot is invalid or of another range (the space written so far is deleted in the
    /// background), or the engine failed.
    pub fn ingest_snapshot(
        &self,
        group: GroupId,
        bytes: &[u8],
        membership: Option<&Membership>,
    ) -> Result<IngestedRange, MachineError> {
        let mut parts = snapshot_parts(bytes)?;
        if parts.header.group != group {
            return Err(MachineError::WrongGroup {
                expected: group,
                found: parts.header.group,
            });
        }
        let mut ingested = IngestedRange {
            engine: self.clone(),
            group,
            space: self.inner.spaces.draw(),
            meta: RangeMeta::default(),
            sessions: SessionTable::default(),
            switched: false,
        };
        let space = ingested.space;
        let limit = self.config().batch_bytes_max;
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        let mut stored_bytes = 0u64;
        for pair in &mut parts {
            let (key, value) = pair?;
            stored_bytes += (key.len() + value.len()) as u64;
            batch_bytes = batch_bytes.saturating_add(key.len() + value.len());
            batch.push((keys::data(space, key), Some(value.to_vec())));
            if batch_bytes >= limit {
                self.commit(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
        }
        let sessions = std::mem::take(&mut parts.sessions);
        for id in sessions.ids() {
            batch.push((keys::session(space, id), sessions.session_image(id)));
        }
        if !batch.is_empty() {
            self.commit(batch)?;
        }
        let (merge, declined) = std::mem::take(&mut parts.merge);
        ingested.meta = RangeMeta {
            applied_index: parts.header.applied.index.0,
            applied_term: parts.header.applied.term.0,
            pair_count: parts.header.pair_count,
            stored_bytes,
            session_limits: sessions.limits(),
            session_clock_ms: sessions.clock_ms(),
            bounds: std::mem::take(&mut parts.bounds),
            merge,
            declined,
            membership: membership.cloned(),
            space: Some(space),
        };
        ingested.sessions = sessions;
        Ok(ingested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, EngineModel};
    use crate::kv::{Command, KvStateMachine, MergeStep, Proposal, RangeBounds, Response};
    use crate::machine::{StateMachine, encode_machine};
    use crate::snapshot::encode_snapshot;
    use flotilla_raft::{Entry, EntryPayload, LogIndex, NodeId, Term};

    const GROUP: GroupId = GroupId(5);
    const RIGHT: GroupId = GroupId(9);

    /// The snapshot of `group` at entry `index` holding one pair per key in `keys`, each valued
    /// `value`.
    fn snapshot(group: GroupId, index: u64, keys: &[u8], value: u8) -> Vec<u8> {
        let map = keys
            .iter()
            .map(|&key| (vec![key], vec![value; 20]))
            .collect();
        let applied = LogId::new(Term(1), LogIndex(index));
        encode_snapshot(&KvStateMachine::from_parts(group, applied, map).snapshot_source())
    }

    fn entry(index: u64, proposal: &Proposal) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(1),
            payload: EntryPayload::Normal(proposal.to_payload().into()),
        }
    }

    /// An entry putting `value` (twenty times) at `key`.
    fn put(index: u64, key: u8, value: u8) -> Entry {
        use crate::kv::Codec;
        let command = Command::Put {
            key: vec![key],
            value: vec![value; 20],
        };
        Entry {
            index: LogIndex(index),
            term: Term(1),
            payload: EntryPayload::Normal(command.encode().into()),
        }
    }

    fn read(machine: &dyn StateMachine, key: u8) -> Option<Vec<u8>> {
        let get = Command::Get { key: vec![key] };
        match machine.read_bounded(&get, 1 << 20).unwrap() {
            Some(Response::Value(value)) => value,
            other => panic!("a get answered {other:?}"),
        }
    }

    fn model_engine(model: &EngineModel) -> Engine {
        Engine::open_model(model, EngineConfig::small_for_tests()).unwrap()
    }

    /// A range with pairs `a`..`d` applied into its group's own space.
    fn applied_range(engine: &Engine) -> crate::DiskStateMachine {
        let mut machine = engine.open_range(GROUP).unwrap();
        let entries: Vec<Entry> = (b'a'..=b'd')
            .zip(1..)
            .map(|(key, index)| put(index, key, 1))
            .collect();
        machine.apply_entries(&entries).unwrap();
        assert_eq!(engine.records_in(Space::of(GROUP)), 4);
        machine
    }

    /// Ingested off the loop, the snapshot changes nothing the range serves until the switch,
    /// which is one batch; the old space is then deleted by the engine's thread, and the range
    /// reopens in its new space.
    #[test]
    fn an_ingested_snapshot_is_switched_to_in_one_write_and_the_old_space_deleted() {
        let directory = tempfile::tempdir().unwrap();
        let engine = Engine::open(directory.path(), EngineConfig::small_for_tests()).unwrap();
        let mut machine = applied_range(&engine);
        let keys: Vec<u8> = (b'k'..=b'z').collect();
        let ingested = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 50, &keys, 2), None)
            .unwrap();
        let space = ingested.space;
        assert!(space.is_drawn());
        assert_eq!(engine.records_in(space), keys.len());
        assert_eq!(
            read(&machine, b'a'),
            Some(vec![1; 20]),
            "still the old state"
        );
        assert_eq!(read(&machine, b'k'), None);
        machine.restore_ingested(ingested).unwrap();
        assert_eq!(machine.applied().index, LogIndex(50));
        assert_eq!(machine.pair_count(), keys.len() as u64);
        assert_eq!(read(&machine, b'a'), None);
        assert_eq!(read(&machine, b'k'), Some(vec![2; 20]));
        engine.wait_for_deletions().unwrap();
        assert_eq!(
            engine.records_in(Space::of(GROUP)),
            0,
            "the old space is gone"
        );
        assert_eq!(engine.spaces_deleted(), 1);
        // The range goes on in its new space, and reopens there.
        machine.apply_entry(&put(51, b'a', 3)).unwrap();
        assert_eq!(engine.records_in(space), keys.len() + 1);
        drop(machine);
        drop(engine);
        let engine = Engine::open(directory.path(), EngineConfig::small_for_tests()).unwrap();
        let machine = engine.open_range(GROUP).unwrap();
        assert_eq!(machine.applied().index, LogIndex(51));
        assert_eq!(read(&machine, b'a'), Some(vec![3; 20]));
        assert_eq!(read(&machine, b'z'), Some(vec![2; 20]));
        assert_eq!(
            engine.range_ids().unwrap(),
            [GROUP],
            "a space is not a range"
        );
    }

    /// The switch is one batch of the engine: the metadata record.
    #[test]
    fn the_switch_is_one_batch() {
        let model = EngineModel::new();
        let engine = model_engine(&model);
        let mut machine = applied_range(&engine);
        let ingested = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 50, b"xyz", 2), None)
            .unwrap();
        let before = model.unsynced_batch_count();
        machine.restore_ingested(ingested).unwrap();
        assert_eq!(model.unsynced_batch_count(), before + 1);
    }

    /// An ingested space the range never takes (the staging replaced, the install refused) is
    /// deleted once dropped, and the range keeps its state.
    #[test]
    fn an_ingested_snapshot_dropped_unused_is_deleted() {
        let directory = tempfile::tempdir().unwrap();
        let engine = Engine::open(directory.path(), EngineConfig::small_for_tests()).unwrap();
        let machine = applied_range(&engine);
        let ingested = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 50, b"klmnop", 2), None)
            .unwrap();
        let space = ingested.space;
        drop(ingested);
        engine.wait_for_deletions().unwrap();
        assert_eq!(engine.records_in(space), 0);
        assert_eq!(read(&machine, b'a'), Some(vec![1; 20]));
        assert_eq!(engine.records_in(Space::of(GROUP)), 4);
        // A snapshot of another range, or a damaged one, ingests nothing that stays.
        let wrong = engine.ingest_snapshot(GROUP, &snapshot(RIGHT, 50, b"k", 2), None);
        assert!(matches!(wrong, Err(MachineError::WrongGroup { .. })));
        let mut damaged = snapshot(GROUP, 50, b"klmnop", 2);
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(engine.ingest_snapshot(GROUP, &damaged, None).is_err());
        engine.wait_for_deletions().unwrap();
        let left = engine.records_between(&keys::drawn_start(), &keys::drawn_end());
        assert_eq!(left, 0, "no drawn space is left");
    }

    /// A crash after an ingest and before its switch leaves a space no metadata names: the
    /// next open deletes it, and draws spaces past it from then on.
    #[test]
    fn a_space_ingested_before_a_crash_is_deleted_at_the_next_open() {
        let model = EngineModel::new();
        let engine = model_engine(&model);
        drop(applied_range(&engine));
        let ingested = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 50, b"klmnop", 2), None)
            .unwrap();
        let space = ingested.space;
        std::mem::forget(ingested);
        model.crash(usize::MAX);
        let engine = model_engine(&model);
        assert_eq!(engine.records_in(space), 6, "queued, not yet deleted");
        engine.wait_for_deletions().unwrap();
        assert_eq!(engine.records_in(space), 0);
        let machine = engine.open_range(GROUP).unwrap();
        assert_eq!(read(&machine, b'a'), Some(vec![1; 20]));
        let next = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 50, b"k", 2), None)
            .unwrap();
        assert!(
            next.space > space,
            "a space is drawn past every one present"
        );
    }

    /// A range switched to an empty snapshot names a drawn space that holds no record: after a
    /// reopen the next space drawn is past it too, so another range's ingest never lands in
    /// (and, dropped, never deletes) the space a live range writes to.
    #[test]
    fn a_space_named_but_empty_is_never_drawn_again_after_a_reopen() {
        let model = EngineModel::new();
        let engine = model_engine(&model);
        let mut machine = applied_range(&engine);
        let empty = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 50, b"", 2), None)
            .unwrap();
        let named = empty.space;
        machine.restore_ingested(empty).unwrap();
        drop(machine);
        engine.sync().unwrap();
        engine.wait_for_deletions().unwrap();
        assert_eq!(engine.records_in(named), 0, "the range holds nothing yet");
        drop(engine);
        let engine = model_engine(&model);
        let other = engine
            .ingest_snapshot(RIGHT, &snapshot(RIGHT, 7, b"xy", 3), None)
            .unwrap();
        assert!(other.space > named, "{:?} drawn again", other.space);
        drop(other);
        engine.wait_for_deletions().unwrap();
        let mut machine = engine.open_range(GROUP).unwrap();
        machine.apply_entries(&[put(51, b'q', 4)]).unwrap();
        assert_eq!(read(&machine, b'q'), Some(vec![4; 20]));
        assert_eq!(engine.records_in(named), 1, "its write is in its space");
    }

    /// A crash after the switch and before the old space is gone: the range reopens in its new
    /// space, and the next open deletes the old one, its group's own or a drawn one.
    #[test]
    fn a_switch_before_a_crash_keeps_the_range_and_its_old_space_goes_at_the_next_open() {
        let model = EngineModel::new();
        let engine = model_engine(&model);
        let mut machine = applied_range(&engine);
        let first = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 50, b"klm", 2), None)
            .unwrap();
        let first_space = first.space;
        machine.restore_ingested(first).unwrap();
        drop(machine);
        // The engine model deletes at the next sync: none came.
        model.crash(usize::MAX);
        let engine = model_engine(&model);
        assert_eq!(engine.records_in(Space::of(GROUP)), 4);
        engine.wait_for_deletions().unwrap();
        assert_eq!(engine.records_in(Space::of(GROUP)), 0, "its own space went");
        let mut machine = engine.open_range(GROUP).unwrap();
        assert_eq!(machine.applied().index, LogIndex(50));
        assert_eq!(read(&machine, b'k'), Some(vec![2; 20]));
        // From one drawn space to another.
        let second = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 60, b"xy", 3), None)
            .unwrap();
        machine.restore_ingested(second).unwrap();
        drop(machine);
        model.crash(usize::MAX);
        let engine = model_engine(&model);
        engine.wait_for_deletions().unwrap();
        assert_eq!(
            engine.records_in(first_space),
            0,
            "the first drawn space went"
        );
        let machine = engine.open_range(GROUP).unwrap();
        assert_eq!(machine.applied().index, LogIndex(60));
        assert_eq!(read(&machine, b'x'), Some(vec![3; 20]));
        assert_eq!(read(&machine, b'k'), None);
    }

    /// A range cleared while its own space is still being deleted (switched away from, then
    /// destroyed) starts again in a drawn space, so the deletion cannot take its new pairs.
    #[test]
    fn a_range_that_starts_again_never_writes_into_a_space_being_deleted() {
        let model = EngineModel::new();
        let engine = model_engine(&model);
        let mut machine = applied_range(&engine);
        let ingested = engine
            .ingest_snapshot(GROUP, &snapshot(GROUP, 50, b"klm", 2), None)
            .unwrap();
        machine.restore_ingested(ingested).unwrap();
        machine.clear().unwrap();
        machine.apply_entry(&put(1, b'q', 4)).unwrap();
        engine.wait_for_deletions().unwrap();
        assert_eq!(read(&machine, b'q'), Some(vec![4; 20]));
        assert_eq!(engine.records_in(Space::of(GROUP)), 0);
        drop(machine);
        engine.destroy_range(GROUP).unwrap();
        engine.wait_for_deletions().unwrap();
        let left = engine.records_between(&keys::meta(GroupId(0)), &keys::owner());
        assert_eq!(
            left, 0,
            "a destroyed range leaves nothing, its space included"
        );
    }

    /// A range written before spaces existed (a format 2 metadata record, its pairs under its
    /// group's id) reads unchanged, and keeps writing format 3 there.
    #[test]
    fn a_range_from_before_spaces_reads_unchanged() {
        #[derive(serde::Serialize)]
        struct V2 {
            applied_index: u64,
            applied_term: u64,
            pair_count: u64,
            stored_bytes: u64,
            session_limits: crate::kv::SessionLimits,
            session_clock_ms: u64,
            bounds: RangeBounds,
            merge: crate::kv::MergeState,
            declined: std::collections::BTreeMap<GroupId, u64>,
        }
        let v2 = V2 {
            applied_index: 7,
            applied_term: 1,
            pair_count: 1,
            stored_bytes: 2,
            session_limits: crate::kv::SessionLimits::default(),
            session_clock_ms: 0,
            bounds: RangeBounds::default(),
            merge: crate::kv::MergeState::None,
            declined: std::collections::BTreeMap::new(),
        };
        let record = postcard::to_extend(&v2, vec![2]).unwrap();
        let model = EngineModel::new();
        let engine = model_engine(&model);
        engine
            .commit(vec![
                (keys::meta(GROUP), Some(record)),
                (keys::data(Space::of(GROUP), b"o"), Some(b"v".to_vec())),
            ])
            .unwrap();
        let mut machine = engine.open_range(GROUP).unwrap();
        assert_eq!(machine.applied().index, LogIndex(7));
        let get = Command::Get { key: b"o".to_vec() };
        let answer = machine.read_bounded(&get, 1 << 20).unwrap();
        assert_eq!(answer, Some(Response::Value(Some(b"v".to_vec()))));
        machine.apply_entry(&put(8, b'p', 1)).unwrap();
        let written = engine.backend().get(&keys::meta(GROUP)).unwrap().unwrap();
        assert_eq!(written[0], 3);
        assert_eq!(engine.records_in(Space::of(GROUP)), 2);
    }

    /// A range in a drawn space splits (its right half into the new group's own space) and
    /// merges a neighbour that lives in a drawn space too; destroyed, it leaves nothing.
    #[test]
    fn a_range_in_a_drawn_space_splits_and_merges() {
        let model = EngineModel::new();
        let engine = model_engine(&model);
        let mut left = engine.open_range(GROUP).unwrap();
        let alphabet: Vec<u8> = (b'a'..=b'z').collect();
        left.restore(&snapshot(GROUP, 10, &alphabet, 1)).unwrap();
        let left_space = left.space();
        assert!(left_space.is_drawn());
        let split = Proposal::Split {
            expected: RangeBounds::default(),
            at: b"m".to_vec(),
            right: RIGHT,
            voters: vec![NodeId(1)],
        };
        let answer = left.apply_entry(&entry(11, &split)).unwrap();
        assert!(matches!(answer, Some(Response::Split { .. })), "{answer:?}");
        let mut right = left.take_carved().unwrap();
        assert_eq!(left.pair_count(), 12);
        assert_eq!(right.pair_count(), 14);
        assert_eq!(engine.records_in(left_space), 12);
        assert_eq!(engine.records_in(Space::of(RIGHT)), 14);
        assert_eq!(read(right.as_ref(), b'z'), Some(vec![1; 20]));
        assert_eq!(read(&left, b'a'), Some(vec![1; 20]));
        // The right half moves to a drawn space of its own (a snapshot from its leader).
        let right_state = encode_machine(right.as_ref(), 64).unwrap();
        right.restore(&right_state).unwrap();
        engine.wait_for_deletions().unwrap();
        assert_eq!(engine.records_in(Space::of(RIGHT)), 0);
        // Merged back: the left range reads the right one's pairs from its space.
        let prepare = Proposal::PrepareMerge {
            expected: left.bounds().clone(),
            right: RIGHT,
        };
        let answer = left.apply_entry(&entry(12, &prepare)).unwrap();
        assert!(
            matches!(
                answer,
                Some(Response::Merge {
                    step: MergeStep::Prepared,
                    ..
                })
            ),
            "{answer:?}"
        );
        let freeze = Proposal::Freeze {
            expected: right.bounds().clone(),
            into: GROUP,
            bytes_max: u64::MAX,
            attempt: left.bounds().version,
        };
        let frozen_at = right.applied().index.0 + 1;
        let answer = right.apply_entry(&entry(frozen_at, &freeze)).unwrap();
        assert!(
            matches!(
                answer,
                Some(Response::Merge {
                    step: MergeStep::Frozen,
                    ..
                })
            ),
            "{answer:?}"
        );
        let merge = Proposal::Merge {
            right: RIGHT,
            state: encode_machine(right.as_ref(), 64).unwrap(),
        };
        let answer = left.apply_entry(&entry(13, &merge)).unwrap();
        assert!(
            matches!(
                answer,
                Some(Response::Merge {
                    step: MergeStep::Merged,
                    ..
                })
            ),
            "{answer:?}"
        );
        assert_eq!(left.pair_count(), 26);
        assert_eq!(engine.records_in(left.space()), 26);
        assert_eq!(read(&left, b'z'), Some(vec![1; 20]));
        drop(right);
        engine.destroy_range(RIGHT).unwrap();
        drop(left);
        engine.destroy_range(GROUP).unwrap();
        engine.wait_for_deletions().unwrap();
        assert!(engine.range_ids().unwrap().is_empty());
        assert_eq!(engine.records_in(left_space), 0);
    }
}
