//! The state machines of one node's groups: a KV state machine per data group and the meta
//! state (range map + directory) of the meta group, restored from snapshots and advanced by
//! committed entries in log order.

use super::CoreError;
use flotilla_raft::{Entry, EntryPayload, GroupId, LogIndex, Snapshot, SnapshotMeta};
use flotilla_shard_manager::{META_GROUP, MetaAnswer, MetaCommand, MetaError, MetaState};
use flotilla_storage::machine::{ENGINE_STATE, VIEW_CHUNK_BYTES, encode_machine, is_engine_state};
use flotilla_storage::{
    Engine, IngestedRange, KvStateMachine, MachineError, MergeState, Response, StateMachine,
};
use std::collections::BTreeMap;

/// Where a node keeps its ranges' applied data.
#[derive(Clone, Debug, Default)]
pub enum RangeStore {
    /// In memory: a restart rebuilds every range from its snapshot and the log.
    #[default]
    Memory,
    /// In the node's one embedded engine, shared by all its ranges.
    Engine(Engine),
}

impl RangeStore {
    /// The state machine of `group` as the store holds it (empty for a group it never saw).
    fn open(&self, group: GroupId) -> Result<Box<dyn StateMachine>, MachineError> {
        match self {
            Self::Memory => Ok(Box::new(KvStateMachine::new(group))),
            Self::Engine(engine) => Ok(Box::new(engine.open_range(group)?)),
        }
    }

    /// Deletes whatever the store holds of `group`, which has no open state machine.
    fn destroy(&self, group: GroupId) -> Result<(), MachineError> {
        match self {
            Self::Memory => Ok(()),
            Self::Engine(engine) => Ok(engine.destroy_range(group)?),
        }
    }
}

/// The check of a received snapshot staged in a file, run off the loop: `check` (the node's
/// `SnapshotCheck`), then what the restore needs, so the Raft loop neither decodes nor writes
/// the range: for a range kept in memory its decoding into the state machine that replaces the
/// replica's once Raft installs the snapshot; for a range in the disk engine the snapshot
/// written into a fresh space of the engine, which the replica's machine switches to then.
/// A snapshot whose restore cannot be prepared is refused, unless `prepared_checks` is off
/// (the mutation that installs unchecked snapshots): it then installs, and fails on the loop.
pub(crate) fn staged_check(
    check: fn(GroupId, &SnapshotMeta, &[u8]) -> Result<(), String>,
    store: &RangeStore,
    prepared_checks: bool,
) -> flotilla_storage::StagedCheck {
    let store = store.clone();
    std::sync::Arc::new(move |group, meta, bytes| {
        if group == META_GROUP && !bytes.is_empty() {
            // Its check is its decoding (`check_snapshot`): done once, and kept for the restore.
            let state = super::boot::decode_meta_snapshot(bytes)?;
            return Ok(Some(flotilla_storage::Prepared(Box::new(
                PreparedRestore::Meta(Box::new(state)),
            ))));
        }
        check(group, meta, bytes)?;
        let membership = &meta.membership;
        let has_members = !(membership.voters.is_empty() && membership.learners.is_empty());
        if group == META_GROUP || bytes.is_empty() || !has_members {
            return Ok(None);
        }
        match prepare_restore(&store, group, meta, bytes) {
            Ok(prepared) => Ok(Some(flotilla_storage::Prepared(Box::new(prepared)))),
            // A failing engine is not the snapshot's fault: refusing it would have the leader
            // send it, and this node ingest it, again and again. The restore runs on the loop
            // instead, where an engine failure stops the node.
            Err(MachineError::Engine(_)) => Ok(None),
            Err(error) if prepared_checks => Err(error.to_string()),
            Err(_) => Ok(None),
        }
    })
}

/// `group`'s restore from the snapshot `bytes` of `meta`, prepared off the loop.
fn prepare_restore(
    store: &RangeStore,
    group: GroupId,
    meta: &SnapshotMeta,
    bytes: &[u8],
) -> Result<PreparedRestore, MachineError> {
    match store {
        RangeStore::Memory => {
            let mut machine = KvStateMachine::new(group);
            machine.restore_as_member(bytes, &meta.membership)?;
            Ok(PreparedRestore::Decoded(Box::new(machine)))
        }
        RangeStore::Engine(engine) => {
            let ingested = engine.ingest_snapshot(group, bytes, Some(&meta.membership))?;
            Ok(PreparedRestore::Ingested(Box::new(ingested)))
        }
    }
}

/// What a staged check prepared off the loop for a range's restore.
#[derive(Debug)]
pub(crate) enum PreparedRestore {
    /// A range in memory, decoded: swapped in for the replica's machine.
    Decoded(Box<dyn StateMachine + Send>),
    /// A range in the disk engine, written into a space of its own: the replica's machine
    /// switches to it (dropped unused, the space is deleted in the background).
    Ingested(Box<IngestedRange>),
    /// The meta group's state, decoded: it replaces the node's.
    Meta(Box<MetaState>),
}

impl PreparedRestore {
    /// What `prepared` holds, if a staged check of this node's made it.
    pub(crate) fn of(prepared: flotilla_storage::Prepared) -> Option<Self> {
        prepared.0.downcast::<Self>().ok().map(|prepared| *prepared)
    }
}

/// Every state machine of the node.
pub(crate) struct Machines {
    store: RangeStore,
    /// Entries the log replayed that the engine had applied before this start.
    applied_before_start: u64,
    kv: BTreeMap<GroupId, Box<dyn StateMachine>>,
    meta: MetaState,
    meta_applied: LogIndex,
    /// States replaced at install (the meta group's, a range's in memory) whose drop would
    /// stall the loop, to drop elsewhere (`take_retired`).
    retired: Vec<Box<dyn Send>>,
    /// Per group, what it applied since its last snapshot, for the snapshot policy.
    since_snapshot: BTreeMap<GroupId, SinceSnapshot>,
    /// Key and value bytes of every KV state machine (what the storage quota counts).
    stored_bytes: u64,
    /// The ranges here awaiting the merge of their right neighbour, and that neighbour.
    absorbing: BTreeMap<GroupId, GroupId>,
    /// The ranges here frozen for a merge, and the range that takes their keys.
    frozen: BTreeMap<GroupId, GroupId>,
}

/// A group's log since its last snapshot, against that snapshot's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SinceSnapshot {
    /// Entries applied since the snapshot (by this process: after a restart, those replayed
    /// from the log after it, as many as the log holds past it).
    pub(crate) entries: u64,
    /// Payload bytes of the entries applied since the snapshot.
    pub(crate) log_bytes: u64,
    /// The snapshot's size in bytes (0: none, or an empty state).
    pub(crate) snapshot_bytes: u64,
}

impl std::fmt::Debug for Machines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machines")
            .field("store", &self.store)
            .field("ranges", &self.kv.len())
            .field("meta_applied", &self.meta_applied)
            .field("stored_bytes", &self.stored_bytes)
            .finish_non_exhaustive()
    }
}

impl Machines {
    pub(crate) fn new(meta: MetaState, store: RangeStore) -> Self {
        Self {
            store,
            applied_before_start: 0,
            kv: BTreeMap::new(),
            meta,
            meta_applied: LogIndex(0),
            retired: Vec::new(),
            since_snapshot: BTreeMap::new(),
            stored_bytes: 0,
            absorbing: BTreeMap::new(),
            frozen: BTreeMap::new(),
        }
    }

    /// The ranges here awaiting the merge of their right neighbour: (left, right).
    pub(crate) fn absorbing(&self) -> impl Iterator<Item = (GroupId, GroupId)> + '_ {
        self.absorbing.iter().map(|(&left, &right)| (left, right))
    }

    /// The ranges here frozen for a merge: (right, the left one that takes its keys).
    pub(crate) fn frozen(&self) -> impl Iterator<Item = (GroupId, GroupId)> + '_ {
        self.frozen.iter().map(|(&right, &left)| (right, left))
    }

    /// Follows `group`'s part in a merge after its state changed.
    fn note_merge(&mut self, group: GroupId) {
        let state = self
            .kv
            .get(&group)
            .map_or(&MergeState::None, |machine| machine.merge_state());
        match *state {
            MergeState::None => {
                self.absorbing.remove(&group);
                self.frozen.remove(&group);
            }
            MergeState::Absorbing { right } => {
                self.absorbing.insert(group, right);
                self.frozen.remove(&group);
            }
            MergeState::Frozen { into, .. } => {
                self.frozen.insert(group, into);
                self.absorbing.remove(&group);
            }
        }
    }

    /// Entries the log replayed that the engine had applied before this start.
    pub(crate) fn entries_applied_before_start(&self) -> u64 {
        self.applied_before_start
    }

    /// Key and value bytes this node's ranges hold.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    pub(crate) fn meta(&self) -> &MetaState {
        &self.meta
    }

    /// The meta state, for what only the meta leader hears (heartbeats, leaders, loads).
    pub(crate) fn meta_mut(&mut self) -> &mut MetaState {
        &mut self.meta
    }

    /// Drops `group`'s state machine and deletes what the store holds of it (its replica was
    /// destroyed).
    ///
    /// # Errors
    /// The engine failed.
    pub(crate) fn destroy(&mut self, group: GroupId) -> Result<(), CoreError> {
        if let Some(machine) = self.kv.remove(&group) {
            self.stored_bytes -= machine.stored_bytes();
        }
        self.since_snapshot.remove(&group);
        self.note_merge(group);
        self.store.destroy(group).map_err(machine_failed(group))
    }

    /// At start, once every group of the log is restored: the ranges the engine holds that
    /// the log has no group of, each opened apart (not hosted).
    ///
    /// # Errors
    /// The engine failed.
    pub(crate) fn unhosted(&self) -> Result<Vec<Box<dyn StateMachine>>, CoreError> {
        let RangeStore::Engine(engine) = &self.store else {
            return Ok(Vec::new());
        };
        let groups = engine.range_ids().map_err(CoreError::Engine)?;
        groups
            .into_iter()
            .filter(|group| !self.kv.contains_key(group))
            .map(|group| self.store.open(group).map_err(machine_failed(group)))
            .collect()
    }

    /// Deletes what the store holds of `group`, which has no state machine here.
    ///
    /// # Errors
    /// The engine failed.
    pub(crate) fn destroy_unhosted(&self, group: GroupId) -> Result<(), CoreError> {
        self.store.destroy(group).map_err(machine_failed(group))
    }

    pub(crate) fn kv(&self, group: GroupId) -> Option<&dyn StateMachine> {
        self.kv.get(&group).map(AsRef::as_ref)
    }

    /// `group`'s state machine, opened from the store if it has none yet.
    fn kv_mut(&mut self, group: GroupId) -> Result<&mut Box<dyn StateMachine>, CoreError> {
        if !self.kv.contains_key(&group) {
            let machine = self.store.open(group).map_err(machine_failed(group))?;
            self.stored_bytes += machine.stored_bytes();
            self.kv.insert(group, machine);
        }
        Ok(self.kv.get_mut(&group).expect("inserted above"))
    }

    /// The last index `group` applied.
    pub(crate) fn applied(&self, group: GroupId) -> LogIndex {
        if group == META_GROUP {
            return self.meta_applied;
        }
        self.kv
            .get(&group)
            .map_or(LogIndex(0), |machine| machine.applied().index)
    }

    /// Replaces `group`'s state with `snapshot` (an empty one starts empty): at start from the
    /// log, from a snapshot the leader sent, or a split's right half from its first state.
    ///
    /// # Errors
    /// `Restore` when the snapshot does not restore, `Machine` when the engine failed.
    pub(crate) fn restore(&mut self, group: GroupId, snapshot: &Snapshot) -> Result<(), CoreError> {
        self.restore_from(group, &snapshot.meta, &snapshot.data)
    }

    /// As `restore`, from the snapshot's bytes where they lie (a file mapped, say).
    ///
    /// # Errors
    /// As `restore`.
    pub(crate) fn restore_from(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: &[u8],
    ) -> Result<(), CoreError> {
        self.snapshot_taken(group, data.len());
        if group == META_GROUP {
            if !data.is_empty() {
                self.meta = MetaState::decode(data).map_err(|error| CoreError::Restore {
                    group,
                    reason: error.to_string(),
                })?;
            }
            self.meta_applied = meta.last.index;
            return Ok(());
        }
        let in_engine = self.in_engine();
        let machine = self.kv_mut(group)?;
        let before = machine.stored_bytes();
        let restored = restore_range(machine.as_mut(), meta, data, in_engine);
        let after = machine.stored_bytes();
        self.stored_bytes = self.stored_bytes - before + after;
        self.note_merge(group);
        restored
    }

    /// Replaces `group`'s state machine with `machine`, restored off the loop from the snapshot
    /// of `meta` (`data_bytes` long) that was just installed: as `restore_from` would leave it,
    /// without decoding anything here.
    fn restore_prepared(
        &mut self,
        group: GroupId,
        data_bytes: usize,
        machine: Box<dyn StateMachine>,
    ) {
        self.snapshot_taken(group, data_bytes);
        let after = machine.stored_bytes();
        let before = match self.kv.insert(group, machine) {
            Some(old) => {
                let bytes = old.stored_bytes();
                self.retired.push(Box::new(old));
                bytes
            }
            None => 0,
        };
        self.stored_bytes = self.stored_bytes - before + after;
        self.note_merge(group);
    }

    /// Makes `prepared`, made off the loop from the snapshot of `meta` that was just installed
    /// (`data`, mapped), `group`'s state, as `restore_from` would leave it: a decoded machine
    /// swapped in, or the live disk machine switched to the ingested space with one write.
    /// An engine already at the snapshot or past it keeps its state (as `restore_from` does),
    /// and the ingested space is deleted. Returns whether the prepared state was taken (false:
    /// restored on the loop instead).
    ///
    /// # Errors
    /// As `restore`.
    pub(crate) fn restore_prepared_from(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: &[u8],
        prepared: PreparedRestore,
    ) -> Result<bool, CoreError> {
        let ingested = match prepared {
            PreparedRestore::Decoded(machine) => {
                self.restore_prepared(group, data.len(), machine);
                return Ok(true);
            }
            PreparedRestore::Meta(state) => {
                debug_assert_eq!(group, META_GROUP, "only the meta group's check decodes one");
                self.snapshot_taken(group, data.len());
                let replaced = std::mem::replace(&mut self.meta, *state);
                self.retired.push(Box::new(replaced));
                self.meta_applied = meta.last.index;
                return Ok(true);
            }
            PreparedRestore::Ingested(ingested) => ingested,
        };
        let machine = self.kv_mut(group)?;
        if machine.applied().index >= meta.last.index {
            return self.restore_from(group, meta, data).map(|()| false);
        }
        let before = machine.stored_bytes();
        let restored = machine.restore_ingested(*ingested);
        if let Err(MachineError::NotInEngine(_)) = restored {
            // A machine outside the engine (none is hosted so today): restored from the file.
            return self.restore_from(group, meta, data).map(|()| false);
        }
        let after = machine.stored_bytes();
        self.stored_bytes = self.stored_bytes - before + after;
        self.snapshot_taken(group, data.len());
        self.note_merge(group);
        restored.map(|()| true).map_err(|error| match error {
            MachineError::Engine(_) => machine_failed(group)(error),
            _ => CoreError::Restore {
                group,
                reason: error.to_string(),
            },
        })
    }

    /// The states replaced since the last call, to drop off the loop.
    pub(crate) fn take_retired(&mut self) -> Vec<Box<dyn Send>> {
        std::mem::take(&mut self.retired)
    }

    /// The right half of the split `group` just applied (once).
    pub(crate) fn take_carved(&mut self, group: GroupId) -> Option<Box<dyn StateMachine>> {
        self.kv.get_mut(&group)?.take_carved()
    }

    /// Applies committed `entries` of `group`, in order, as one batch (the disk engine commits
    /// them in one write): the response of each KV command, one per entry. The caller ends a
    /// batch at an entry that changes the range's shape (`Payload::batches_with_next`), so a
    /// split's right half is the batch's last and `take_carved` finds it.
    ///
    /// # Errors
    /// The engine failed: the node must stop.
    pub(crate) fn apply(
        &mut self,
        group: GroupId,
        entries: &[Entry],
    ) -> Result<Vec<Option<Response>>, CoreError> {
        if group == META_GROUP {
            return Ok(entries.iter().map(|entry| self.apply_meta(entry)).collect());
        }
        let in_engine = self.in_engine();
        let machine = self.kv_mut(group)?;
        // The engine applied these before a restart (the log replays from its snapshot).
        let applied = machine.applied().index;
        let skipped = if in_engine {
            entries.partition_point(|entry| entry.index <= applied)
        } else {
            0
        };
        let mut responses = vec![None; skipped];
        let rest = &entries[skipped..];
        if rest.is_empty() {
            self.applied_before_start += skipped as u64;
            return Ok(responses);
        }
        let before = machine.stored_bytes();
        let applied = machine.apply_entries(rest).map_err(machine_failed(group))?;
        let after = machine.stored_bytes();
        self.stored_bytes = self.stored_bytes - before + after;
        self.applied_before_start += skipped as u64;
        if applied
            .iter()
            .any(|response| matches!(response, Some(Response::Merge { .. })))
        {
            self.note_merge(group);
        }
        responses.extend(applied);
        Ok(responses)
    }

    fn apply_meta(&mut self, entry: &Entry) -> Option<Response> {
        self.meta_applied = entry.index;
        let EntryPayload::Normal(data) = &entry.payload else {
            return None;
        };
        let index = entry.index.0;
        // A refusal is the answer an operator waiting on the entry gets (`Invalid`).
        let applied = MetaCommand::decode(data).map(|command| self.meta.apply_answered(command));
        let refusal = match applied {
            Ok(Ok(MetaAnswer::Applied)) => return None,
            Ok(Ok(MetaAnswer::Reserved(id))) => return Some(Response::Reserved { id: id.0 }),
            // A placement decision proposed twice, or overtaken, is refused harmlessly.
            Ok(Err(error @ MetaError::Placement(_))) => {
                tracing::debug!(index, %error, "placement decision refused");
                error.to_string()
            }
            Ok(Err(error)) => {
                tracing::warn!(index, %error, "meta command refused");
                error.to_string()
            }
            Err(error) => {
                tracing::warn!(index, %error, "meta command does not decode");
                error.to_string()
            }
        };
        Some(Response::Invalid(refusal))
    }

    /// `entries` of `group` were applied: their payload counts toward its next snapshot.
    pub(crate) fn count_applied(&mut self, group: GroupId, entries: &[Entry]) {
        if !entries.is_empty() {
            let bytes: u64 = entries.iter().map(Entry::payload_bytes).sum();
            let since = self.since_snapshot.entry(group).or_default();
            since.entries += entries.len() as u64;
            since.log_bytes += bytes;
        }
    }

    /// `group`'s state was snapshotted (or restored from a snapshot) at `bytes` bytes.
    pub(crate) fn snapshot_taken(&mut self, group: GroupId, bytes: usize) {
        let since = SinceSnapshot {
            entries: 0,
            log_bytes: 0,
            snapshot_bytes: bytes as u64,
        };
        self.since_snapshot.insert(group, since);
    }

    /// A snapshot of `size` bytes of `group` taken from a copy made when it had applied `then`
    /// since its last: what it applied after the copy still counts toward the next (the log
    /// keeps those entries).
    pub(crate) fn snapshot_taken_from(&mut self, group: GroupId, size: u64, then: SinceSnapshot) {
        let now = self.since_snapshot(group);
        let since = SinceSnapshot {
            entries: now.entries.saturating_sub(then.entries),
            log_bytes: now.log_bytes.saturating_sub(then.log_bytes),
            snapshot_bytes: size,
        };
        self.since_snapshot.insert(group, since);
    }

    /// What `group` applied since its last snapshot.
    pub(crate) fn since_snapshot(&self, group: GroupId) -> SinceSnapshot {
        self.since_snapshot.get(&group).copied().unwrap_or_default()
    }

    /// The snapshot bytes of `group` at its applied index, to compact its log with: for a
    /// range in the engine, `ENGINE_STATE` (the caller synced the engine first).
    ///
    /// # Errors
    /// The engine failed.
    pub(crate) fn snapshot_data(&self, group: GroupId) -> Result<Vec<u8>, CoreError> {
        debug_assert_ne!(
            group, META_GROUP,
            "the meta group's snapshot is written off the loop"
        );
        if matches!(self.store, RangeStore::Engine(_)) {
            return Ok(ENGINE_STATE.to_vec());
        }
        self.encoded_state(group)
    }

    /// Whether the ranges live in the disk engine.
    pub(crate) fn in_engine(&self) -> bool {
        matches!(self.store, RangeStore::Engine(_))
    }

    /// Makes every range's applied state in the engine durable (before the logs are compacted
    /// with `ENGINE_STATE`).
    ///
    /// # Errors
    /// The engine failed.
    pub(crate) fn sync(&self) -> Result<(), CoreError> {
        match &self.store {
            RangeStore::Memory => Ok(()),
            RangeStore::Engine(engine) => engine.sync().map_err(CoreError::Engine),
        }
    }

    /// A view of `group`'s state at its applied entry that another thread can encode while the
    /// range goes on applying (an O(1) copy for a range in memory); `None` without a state
    /// machine.
    ///
    /// # Errors
    /// The engine failed.
    pub(crate) fn snapshot_view(
        &self,
        group: GroupId,
    ) -> Result<Option<Box<dyn flotilla_storage::SnapshotView>>, CoreError> {
        let Some(machine) = self.kv.get(&group) else {
            return Ok(None);
        };
        machine
            .snapshot_view()
            .map(Some)
            .map_err(machine_failed(group))
    }

    /// `group`'s whole state in the snapshot format (a frozen range's, for the merge entry).
    ///
    /// # Errors
    /// The engine failed.
    pub(crate) fn encoded_state(&self, group: GroupId) -> Result<Vec<u8>, CoreError> {
        let Some(machine) = self.kv.get(&group) else {
            return Ok(Vec::new());
        };
        encode_machine(machine.as_ref(), VIEW_CHUNK_BYTES).map_err(machine_failed(group))
    }
}

/// How an engine failure of `group`'s state machine stops the node.
pub(super) fn machine_failed(group: GroupId) -> impl FnOnce(MachineError) -> CoreError {
    move |source| CoreError::Machine { group, source }
}

/// Gives `machine` the state `snapshot` says (`Machines::restore`): the engine's state kept
/// when it is at the snapshot or past it, the snapshot's data restored otherwise.
fn restore_range(
    machine: &mut dyn StateMachine,
    meta: &SnapshotMeta,
    data: &[u8],
    in_engine: bool,
) -> Result<(), CoreError> {
    let group = machine.group();
    let index = meta.last.index;
    let applied = machine.applied().index;
    let membership = &meta.membership;
    let refused = |reason: String| Err(CoreError::Restore { group, reason });
    let restored = if is_engine_state(data) {
        if !in_engine {
            return refused(
                "its log notes that its state is in the disk engine, but this node runs with \
                 storage.engine = memory: start it with storage.engine = disk"
                    .to_owned(),
            );
        }
        // The log was compacted once the engine had synced the range at `index` or past it:
        // an engine behind that lost what it synced.
        if applied < index {
            return refused(format!(
                "the engine holds the range at entry {applied}, behind entry {index} it had \
                 synced when the log was compacted: the engine lost synced writes"
            ));
        }
        Ok(())
    } else if membership.voters.is_empty() && membership.learners.is_empty() {
        // No members: a tombstone, or a replica created empty; it holds nothing.
        machine.clear()
    } else if in_engine && applied >= index {
        // The engine is at the snapshot or past it (a restart): the log's entries after the
        // engine's are applied, those before are not again. A range that names no members
        // applied no membership entry since it began from this snapshot (a new cluster's
        // first state): the snapshot's are its members.
        match machine.membership() {
            None => machine.set_membership(membership),
            Some(_) => Ok(()),
        }
    } else if data.is_empty() {
        machine.clear()
    } else {
        machine.restore_as_member(data, membership)
    };
    restored.map_err(|error| match error {
        MachineError::Engine(_) => machine_failed(group)(error),
        _ => CoreError::Restore {
            group,
            reason: error.to_string(),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::{LogId, NodeId, Term};
    use flotilla_shard_manager::{Directory, RangeMap};
    use flotilla_storage::kv::KvMap;

    fn kv_snapshot(group: GroupId, index: u64, keys: u8) -> Snapshot {
        let map: KvMap = (0..keys).map(|key| (vec![key], vec![key; 100])).collect();
        let applied = LogId::new(Term(1), LogIndex(index));
        let machine = KvStateMachine::from_parts(group, applied, map);
        let mut snapshot = Snapshot::default();
        snapshot.meta.last = applied;
        snapshot.data = flotilla_storage::snapshot::encode_snapshot(&machine.snapshot_source());
        snapshot
    }

    #[test]
    fn the_log_since_a_snapshot_is_measured_against_it_also_after_a_restore() {
        let group = GroupId(1);
        let mut machines = Machines::new(
            MetaState::new(
                RangeMap::uniform(1, |_| vec![NodeId(1)]),
                Directory::new([(NodeId(1), "127.0.0.1:1".to_string())]),
            ),
            RangeStore::Memory,
        );
        // A restore (what recovery at start does) knows the snapshot's size.
        let snapshot = kv_snapshot(group, 10, 50);
        machines.restore(group, &snapshot).unwrap();
        let restored = machines.since_snapshot(group);
        assert_eq!(restored.snapshot_bytes, snapshot.data.len() as u64);
        assert_eq!(restored.log_bytes, 0);
        // Applied entries count their payload bytes.
        let entries: Vec<Entry> = (11..=12)
            .map(|index| Entry {
                index: LogIndex(index),
                term: Term(1),
                payload: EntryPayload::Normal(vec![0; 30].into()),
            })
            .collect();
        machines.count_applied(group, &entries);
        assert_eq!(machines.since_snapshot(group).log_bytes, 60);
        assert_eq!(machines.since_snapshot(group).entries, 2);
        // A new snapshot starts the count again at its own size.
        machines.snapshot_taken(group, 123);
        assert_eq!(
            machines.since_snapshot(group),
            SinceSnapshot {
                entries: 0,
                log_bytes: 0,
                snapshot_bytes: 123
            }
        );
    }

    /// A node started with its ranges in memory on a log compacted onto the disk engine says
    /// what to do instead of starting with ranges it does not hold.
    #[test]
    fn a_log_compacted_onto_the_engine_needs_the_engine() {
        let mut machines = Machines::new(
            MetaState::new(
                RangeMap::uniform(1, |_| vec![NodeId(1)]),
                Directory::new([(NodeId(1), "127.0.0.1:1".to_string())]),
            ),
            RangeStore::Memory,
        );
        let mut snapshot = Snapshot::default();
        snapshot.meta.last = LogId::new(Term(1), LogIndex(10));
        snapshot.meta.membership = flotilla_raft::Membership::with_voters([NodeId(1)]);
        snapshot.data = ENGINE_STATE.to_vec();
        let error = machines.restore(GroupId(1), &snapshot).unwrap_err();
        assert!(
            error.to_string().contains("storage.engine = disk"),
            "{error}"
        );
    }
}
