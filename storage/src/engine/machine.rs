//! The state machine of one range whose applied data lives in the node's engine: the writes of
//! each entry (or of each batch of entries given to `apply_entries`), the sessions they changed
//! and the range's new metadata (applied entry, bounds and merge state included) go to the
//! engine in one atomic batch, so after a crash the range is at some applied entry exactly,
//! with the sessions of that entry, and replaying the WAL from the next one applies nothing
//! twice. A split or a merge is part of its entry's batch (`batch`). The session table is also
//! kept in memory (it is bounded by the session limits).
//!
//! A split's right half: when the right group holds no record in the engine, the split's batch
//! writes its records and `take_carved` hands out a machine over them. The node hosts a carve
//! only in place of an empty replica it never hosted (`host_splits`), which may well have a
//! machine of the right group open, holding nothing in the engine. The carve then reads (a
//! view to encode it, a get) but claims its group's place among the open ranges only when it
//! first writes (apply, restore, clear), refusing with `AlreadyOpen` while the other machine
//! lives: two machines of one group never both write. The node encodes the carve, drops it and
//! restores the right group's own machine from that encoding, which replaces the carve's
//! records. A carve the node does not host (the right group's replica here is a tombstone, or
//! merged away) leaves its records at applied entry 0 until the group's machine is cleared or
//! destroyed, as every hosted group's is at start. When the right group holds state already,
//! see `batch::Carve::Memory`.

use super::backend::{BackendView, WriteOp};
use super::batch::{BatchApply, Carve};
use super::ingest::IngestedRange;
use super::keys::{self, Space};
use super::meta::RangeMeta;
use super::rows::EngineRows;
use super::view::DiskView;
use super::{Engine, backend_error};
use crate::error::{EngineError, MachineError};
use crate::kv::execute;
use crate::kv::{Command, MergeState, RangeBounds, Response, SessionTable};
use crate::machine::{SnapshotView, StateMachine};
use flotilla_raft::{Entry, EntryPayload, GroupId, LogId, Membership};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A range's state machine over the node's engine.
pub struct DiskStateMachine {
    engine: Engine,
    group: GroupId,
    meta: RangeMeta,
    sessions: Arc<SessionTable>,
    /// A write failed: memory may be ahead of the engine.
    failed: bool,
    /// Whether this machine holds its group's place among the engine's open ranges (a carve
    /// made while another machine of its group was open claims it when it first writes).
    registered: AtomicBool,
    /// The right half of the last split applied, until the node takes it.
    carved: Option<Box<dyn StateMachine>>,
}

impl std::fmt::Debug for DiskStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStateMachine")
            .field("group", &self.group)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Drop for DiskStateMachine {
    fn drop(&mut self) {
        if *self.registered.get_mut() {
            self.engine.release(self.group);
        }
    }
}

impl DiskStateMachine {
    /// Loads `group` from the engine (see `Engine::open_range`).
    pub(super) fn open(engine: Engine, group: GroupId) -> Result<Self, EngineError> {
        let mut machine = Self {
            engine,
            group,
            meta: RangeMeta::default(),
            sessions: Arc::default(),
            failed: false,
            registered: AtomicBool::new(true),
            carved: None,
        };
        let meta = machine
            .engine
            .backend()
            .get(&keys::meta(group))
            .map_err(backend_error("read a range's metadata"))?;
        match meta {
            None => {
                machine.engine.delete_records(group)?;
                machine.meta = empty_meta(&machine.engine, group);
            }
            Some(bytes) => {
                machine.meta =
                    RangeMeta::decode(&bytes).map_err(|reason| EngineError::Damaged {
                        group,
                        record: "metadata",
                        reason,
                    })?;
                let view = machine.engine.backend().view();
                machine.sessions = Arc::new(load_sessions(&view, group, &machine.meta)?);
            }
        }
        Arc::make_mut(&mut machine.sessions).track_changes();
        Ok(machine)
    }

    /// The session table as of the applied entry.
    #[must_use]
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// The right half of a split whose batch committed: a machine over the records the batch
    /// wrote, or the carve in memory.
    fn carved_machine(&self, carve: Carve) -> Box<dyn StateMachine> {
        match carve {
            Carve::Memory(machine) => Box::new(machine),
            Carve::Disk {
                group,
                meta,
                mut sessions,
            } => {
                sessions.track_changes();
                Box::new(Self {
                    engine: self.engine.clone(),
                    group,
                    meta: *meta,
                    sessions: Arc::new(sessions),
                    failed: false,
                    registered: AtomicBool::new(self.engine.register(group)),
                    carved: None,
                })
            }
        }
    }

    /// Where the range's sessions and pairs live.
    pub(super) fn space(&self) -> Space {
        self.meta.space_of(self.group)
    }

    fn check_usable(&self) -> Result<(), EngineError> {
        if self.failed {
            return Err(EngineError::Failed(self.group));
        }
        Ok(())
    }

    /// What a write needs: a usable machine that holds its group's place.
    fn check_writable(&self) -> Result<(), EngineError> {
        self.check_usable()?;
        self.claim()
    }

    /// Takes the group's place among the engine's open ranges unless this machine holds it.
    fn claim(&self) -> Result<(), EngineError> {
        if self.registered.load(Ordering::Acquire) {
            return Ok(());
        }
        if !self.engine.register(self.group) {
            return Err(EngineError::AlreadyOpen(self.group));
        }
        self.registered.store(true, Ordering::Release);
        Ok(())
    }

    /// Commits `ops`, the changed sessions and the metadata of `meta` in one batch.
    fn commit_batch(&mut self, mut ops: Vec<WriteOp>, meta: RangeMeta) -> Result<(), EngineError> {
        let sessions = Arc::make_mut(&mut self.sessions);
        let space = self.meta.space_of(self.group);
        for id in sessions.take_changed() {
            ops.push((keys::session(space, id), sessions.session_image(id)));
        }
        let meta = RangeMeta {
            session_limits: sessions.limits(),
            session_clock_ms: sessions.clock_ms(),
            ..meta
        };
        ops.push((keys::meta(self.group), Some(meta.encode())));
        self.engine.commit(ops)?;
        self.meta = meta;
        Ok(())
    }

    /// Applies `entries` and commits their effects, the sessions they changed and the
    /// metadata of the last one in one batch (a split's right half and a merged neighbour's
    /// pairs included).
    fn apply_batch(&mut self, entries: &[Entry]) -> Result<Vec<Option<Response>>, EngineError> {
        let Some(last) = entries.last() else {
            return Ok(Vec::new());
        };
        let mut batch = BatchApply::new(&self.engine, self.group, &self.meta, &mut self.sessions);
        let mut applied = self.meta.applied_index;
        let mut responses = Vec::with_capacity(entries.len());
        for entry in entries {
            assert!(
                entry.index.0 > applied,
                "entry {} applied twice or out of order",
                entry.index
            );
            applied = entry.index.0;
            let response = match &entry.payload {
                EntryPayload::Normal(data) => Some(batch.apply(entry.index, data)?),
                EntryPayload::Membership(membership) => {
                    batch.membership_applied(membership);
                    None
                }
                EntryPayload::Blank => None,
            };
            responses.push(response);
        }
        let (ops, meta, carve) = batch.finish(last, &self.meta);
        self.commit_batch(ops, meta)?;
        if let Some(carve) = carve {
            self.carved = Some(self.carved_machine(carve));
        }
        Ok(responses)
    }

    /// Restores from snapshot `bytes` here, on the caller's thread: ingests them into a fresh
    /// space and switches to it, as the node does off the loop. An invalid snapshot changes
    /// nothing (its space is deleted in the background).
    fn restore_parts(
        &mut self,
        bytes: &[u8],
        membership: Option<&Membership>,
    ) -> Result<(), MachineError> {
        let ingested = self.engine.ingest_snapshot(self.group, bytes, membership)?;
        self.switch_to(ingested)
    }

    /// Makes `ingested` the range's state: its metadata record, naming the ingested space,
    /// in one batch; then the old space is queued for deletion in the background.
    fn switch_to(&mut self, ingested: IngestedRange) -> Result<(), MachineError> {
        if !ingested.is_of(&self.engine) {
            return Err(MachineError::NotInEngine(self.group));
        }
        if ingested.group() != self.group {
            return Err(MachineError::WrongGroup {
                expected: self.group,
                found: ingested.group(),
            });
        }
        let committed = self
            .engine
            .commit(vec![(keys::meta(self.group), Some(ingested.meta.encode()))]);
        // A failed commit may still have reached the journal: the ingested space is not
        // deleted (the next open's sweep decides from what is durable), and the machine fails.
        let (meta, mut sessions) = ingested.switched();
        committed?;
        let old = self.space();
        sessions.track_changes();
        self.meta = meta;
        self.sessions = Arc::new(sessions);
        self.carved = None;
        self.engine.delete_space_later(old);
        Ok(())
    }

    /// Marks the machine failed if `result` is an error.
    fn guard<T, E>(&mut self, result: Result<T, E>) -> Result<T, E> {
        self.failed |= result.is_err();
        result
    }
}

impl StateMachine for DiskStateMachine {
    fn group(&self) -> GroupId {
        self.group
    }

    fn applied(&self) -> LogId {
        self.meta.applied()
    }

    fn stored_bytes(&self) -> u64 {
        self.meta.stored_bytes
    }

    fn apply_entry(&mut self, entry: &Entry) -> Result<Option<Response>, MachineError> {
        let mut responses = self.apply_entries(std::slice::from_ref(entry))?;
        Ok(responses.pop().flatten())
    }

    fn apply_entries(&mut self, entries: &[Entry]) -> Result<Vec<Option<Response>>, MachineError> {
        self.check_writable()?;
        let result = self.apply_batch(entries);
        Ok(self.guard(result)?)
    }

    fn read_bounded(
        &self,
        command: &Command,
        scan_bytes_max: usize,
    ) -> Result<Option<Response>, MachineError> {
        self.check_usable()?;
        if let MergeState::Frozen { into, .. } = self.meta.merge {
            let reads = matches!(command, Command::Get { .. } | Command::Scan { .. });
            return Ok(reads.then_some(Response::Merging { into }));
        }
        let rows = EngineRows::new(&self.engine, self.group, &self.meta);
        Ok(execute::read(
            &rows,
            &self.meta.bounds,
            command,
            scan_bytes_max,
        )?)
    }

    fn snapshot_view(&self) -> Result<Box<dyn SnapshotView>, MachineError> {
        self.check_usable()?;
        let view = self.engine.backend().view();
        Ok(Box::new(DiskView::new(
            self.group,
            self.meta.clone(),
            self.sessions.clone(),
            view,
        )))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), MachineError> {
        self.check_writable()?;
        let result = self.restore_parts(bytes, None);
        // An invalid snapshot is refused before anything is deleted; only engine errors fail.
        self.failed |= matches!(result, Err(MachineError::Engine(_)));
        result
    }

    fn restore_as_member(
        &mut self,
        bytes: &[u8],
        membership: &Membership,
    ) -> Result<(), MachineError> {
        self.check_writable()?;
        let result = self.restore_parts(bytes, Some(membership));
        self.failed |= matches!(result, Err(MachineError::Engine(_)));
        result
    }

    fn clear(&mut self) -> Result<(), MachineError> {
        self.check_writable()?;
        let result = self.engine.delete_range(self.group, self.space());
        self.guard(result)?;
        self.meta = empty_meta(&self.engine, self.group);
        self.carved = None;
        self.sessions = Arc::default();
        Arc::make_mut(&mut self.sessions).track_changes();
        Ok(())
    }

    fn bounds(&self) -> &RangeBounds {
        &self.meta.bounds
    }

    fn merge_state(&self) -> &MergeState {
        &self.meta.merge
    }

    fn pair_count(&self) -> u64 {
        self.meta.pair_count
    }

    fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    fn take_carved(&mut self) -> Option<Box<dyn StateMachine>> {
        self.carved.take()
    }

    fn membership(&self) -> Option<&Membership> {
        self.meta.membership.as_ref()
    }

    fn set_membership(&mut self, membership: &Membership) -> Result<(), MachineError> {
        self.check_writable()?;
        let meta = RangeMeta {
            membership: Some(membership.clone()),
            ..self.meta.clone()
        };
        let result = self.commit_batch(Vec::new(), meta);
        Ok(self.guard(result)?)
    }

    fn restore_ingested(&mut self, ingested: IngestedRange) -> Result<(), MachineError> {
        self.check_writable()?;
        let result = self.switch_to(ingested);
        self.failed |= matches!(result, Err(MachineError::Engine(_)));
        result
    }

    fn middle_key(&self) -> Result<Option<Vec<u8>>, MachineError> {
        self.check_usable()?;
        let count = self.meta.pair_count;
        if count < 2 {
            return Ok(None);
        }
        // A walk over half the range: a split by size asks once per placement round at most.
        let mut skip = count / 2;
        let mut middle = None;
        self.engine
            .backend()
            .scan(
                &keys::data(self.space(), b""),
                &keys::data_end(self.space()),
                &mut |key, _| {
                    if skip > 0 {
                        skip -= 1;
                        return true;
                    }
                    middle = Some(keys::user_key(key).to_vec());
                    false
                },
            )
            .map_err(backend_error("find a range's middle key"))?;
        Ok(middle.filter(|key| *key != self.bounds().start))
    }
}

/// `group`'s session table in `view`, whose metadata there is `meta`.
pub(super) fn load_sessions(
    view: &BackendView,
    group: GroupId,
    meta: &RangeMeta,
) -> Result<SessionTable, EngineError> {
    let mut images = Vec::new();
    let (start, end) = keys::sessions(meta.space_of(group));
    view.scan(&start, &end, &mut |key, value| {
        images.push((keys::session_id(key), value.to_vec()));
        true
    })
    .map_err(backend_error("read a range's sessions"))?;
    let damaged = |reason: String| EngineError::Damaged {
        group,
        record: "session",
        reason,
    };
    let images = images
        .iter()
        .map(|(id, bytes)| Ok((id.ok_or_else(|| damaged("a bad key".into()))?, &bytes[..])))
        .collect::<Result<Vec<_>, EngineError>>()?;
    SessionTable::from_images(meta.session_limits, meta.session_clock_ms, images)
        .map_err(|error| damaged(error.to_string()))
}

/// The metadata of a range of `group` that starts empty: in its group's own space, unless that
/// is still being deleted.
fn empty_meta(engine: &Engine, group: GroupId) -> RangeMeta {
    let space = engine.space_for_new_range(group);
    RangeMeta {
        space: space.is_drawn().then_some(space),
        ..RangeMeta::default()
    }
}

/// `group`'s metadata in `view`, `None` if it has none.
pub(super) fn load_meta(
    view: &BackendView,
    group: GroupId,
) -> Result<Option<RangeMeta>, EngineError> {
    let key = keys::meta(group);
    let mut end = key.clone();
    end.push(0);
    let mut found = None;
    view.scan(&key, &end, &mut |_, value| {
        found = Some(value.to_vec());
        false
    })
    .map_err(backend_error("read a range's metadata"))?;
    found
        .map(|bytes| {
            RangeMeta::decode(&bytes).map_err(|reason| EngineError::Damaged {
                group,
                record: "metadata",
                reason,
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::kv::SessionId;
    use flotilla_raft::LogIndex;

    /// A snapshot the engine produces is the range's state at its applied entry, named with
    /// the members of that entry (its last membership entry; after a restore, the snapshot's),
    /// and the same bytes as the machine's own encoding.
    #[test]
    fn a_produced_snapshot_names_the_members_of_its_entry() {
        use crate::kv::Codec;
        use flotilla_raft::{Membership, NodeId, Term};
        let directory = tempfile::tempdir().unwrap();
        let engine = Engine::open(directory.path(), EngineConfig::small_for_tests()).unwrap();
        let group = GroupId(5);
        let mut machine = engine.open_range(group).unwrap();
        assert!(engine.range_snapshot(group, 64).is_err(), "no members yet");
        let members = |nodes: &[u64]| Membership::with_voters(nodes.iter().map(|&n| NodeId(n)));
        let entry = |index: u64, payload: EntryPayload| Entry {
            index: LogIndex(index),
            term: Term(2),
            payload,
        };
        let put = |key: &str| {
            let command = Command::Put {
                key: key.as_bytes().to_vec(),
                value: vec![7; 20],
            };
            EntryPayload::Normal(command.encode().into())
        };
        machine
            .apply_entries(&[
                entry(1, EntryPayload::Membership(members(&[1, 2, 3]))),
                entry(2, put("a")),
                entry(3, put("b")),
            ])
            .unwrap();
        let produced = engine.range_snapshot(group, 16).unwrap();
        assert_eq!(produced.meta.last, machine.applied());
        assert_eq!(produced.meta.membership, members(&[1, 2, 3]));
        assert_eq!(
            produced.data,
            crate::machine::encode_machine(&machine, 1 << 20).unwrap()
        );
        // Streamed into a file (a leader's spool), it is the same bytes, of the same length.
        let fs = crate::CrashFs::new(1);
        let file = crate::FileSystem::open(&fs, std::path::Path::new("/spool"), true).unwrap();
        file.write_at(0, &[0xee; 4096]).unwrap();
        let (meta, length) = engine
            .write_range_snapshot(group, 16, file.as_ref())
            .unwrap();
        assert_eq!(meta, produced.meta);
        assert_eq!(file.len_bytes().unwrap(), length, "cut to its length");
        let mut streamed = vec![0; usize::try_from(length).unwrap()];
        file.read_at(0, &mut streamed).unwrap();
        assert_eq!(streamed, produced.data);
        // Restored from a snapshot (on another node), the range names that snapshot's members.
        let elsewhere = tempfile::tempdir().unwrap();
        let other = Engine::open(elsewhere.path(), EngineConfig::small_for_tests()).unwrap();
        let mut replica = other.open_range(group).unwrap();
        replica
            .restore_as_member(&produced.data, &members(&[4, 5, 6]))
            .unwrap();
        let restored = other.range_snapshot(group, 16).unwrap();
        assert_eq!(restored.meta.membership, members(&[4, 5, 6]));
        assert_eq!(restored.meta.last, produced.meta.last);
        assert_eq!(restored.data, produced.data);
    }

    /// What a crash in the middle of an install or a deletion leaves: pairs and sessions
    /// without metadata. Opening the range deletes them instead of serving half a snapshot.
    #[test]
    fn a_range_without_metadata_is_deleted_when_opened() {
        let directory = tempfile::tempdir().unwrap();
        let engine = Engine::open(directory.path(), EngineConfig::small_for_tests()).unwrap();
        let group = GroupId(4);
        let session = SessionId {
            group,
            index: LogIndex(1),
        };
        engine
            .commit(vec![
                (
                    keys::data(Space::of(group), b"half"),
                    Some(b"installed".to_vec()),
                ),
                (keys::session(Space::of(group), session), Some(vec![0])),
            ])
            .unwrap();
        let machine = engine.open_range(group).unwrap();
        assert_eq!(machine.applied(), LogId::default());
        let get = Command::Get {
            key: b"half".to_vec(),
        };
        let answer = machine.read_bounded(&get, 1).unwrap();
        assert_eq!(answer, Some(Response::Value(None)));
        assert!(machine.sessions().is_empty());
        let (start, end) = keys::whole_range(group);
        let left = engine.records_between(&start, &end);
        assert_eq!(left, 0, "nothing of the range is left in the engine");
    }
}
