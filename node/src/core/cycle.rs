//! One ready cycle for every group with work, in Raft's order (`MultiReady`): the early batches
//! leave, the durable committed prefix is applied and its clients answered, everything to
//! persist goes out in one log write (a `commit_only` hard state waits for the next one), the
//! persisted batches leave, snapshots are installed and the rest applied; then groups whose log
//! grew enough are compacted.

use super::machines::SinceSnapshot;
use super::split;
use super::waiting::ReadOp;
use super::{BatchSink, CoreError, NodeCore, Respond};
use crate::api::{ApiError, Reply};
use flotilla_raft::{
    Batch, Entry, GroupId, GroupMessage, LogIndex, MessageBody, MultiError, MultiReady,
    ProposeError, Ready,
};
use flotilla_shard_manager::META_GROUP;
use flotilla_storage::machine::batches_with_next;
use flotilla_storage::{Response, WriteBatch};

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    pub(super) fn cycle(&mut self) -> Result<(), CoreError> {
        self.note_refused_snapshots();
        self.install_checked_snapshots();
        self.compact_with_written_snapshots();
        let mut ready = self.multi.ready();
        self.count_leader_changes(&ready);
        // A client whose entry committed does not wait for the write of newer entries.
        self.send(std::mem::take(&mut ready.batches));
        for (group, group_ready) in &ready.groups {
            let durable = &group_ready.committed[..group_ready.committed_before_persist];
            self.apply_entries(*group, durable)?;
            self.confirm_reads(group_ready);
        }
        self.serve_reads();
        self.persist(&ready)?;
        self.send(std::mem::take(&mut ready.persisted_batches));
        let mut compact = Vec::new();
        for (group, group_ready) in &ready.groups {
            self.apply_rest(*group, group_ready)?;
            if self.snapshot_due(*group) {
                compact.push(*group);
            }
        }
        // Raft installs a snapshot handed over at the cycle's start in this cycle's ready: one
        // prepared for it and not taken (no longer wanted) is dropped, off the loop (a decoded
        // range or meta state can take tens of milliseconds to free).
        for (_, (_, unused)) in self.prepared.drain() {
            self.engine.drop_off_loop(Box::new(unused));
        }
        self.serve_reads();
        self.multi.advance(ready);
        self.host_splits()?;
        self.send_reserved();
        self.finish_merges()?;
        let forced = self.take_pinning_groups(&compact);
        compact.extend(forced);
        self.compact(compact)
    }

    /// Snapshots a replica refused (their data failed `check_snapshot`): nothing was
    /// installed, the leader sends them again; the operator hears of each.
    fn note_refused_snapshots(&mut self) {
        let (refused, count) = self.multi.take_snapshot_refusals();
        self.counters.snapshots_refused = count + self.staged_snapshots_refused;
        for (group, error) in refused {
            tracing::warn!(%group, %error, "a snapshot from the leader was refused");
        }
    }

    /// Received snapshots staged and checked off the loop: those that passed are handed to
    /// Raft to install (the next ready stores and restores them), those that failed are
    /// dropped, and the leader sends them again; the operator hears of each refusal.
    pub(super) fn install_checked_snapshots(&mut self) {
        for checked in self.engine.take_checked_snapshots() {
            let (group, meta) = (checked.group, &checked.meta);
            // (Stage 0: nothing was staged to check; refused below, so Raft drops it.)
            if checked.stage != 0 && !self.engine.is_current_staging(group, checked.stage) {
                // Staged anew since (given up and received again): that staging's check
                // decides.
                continue;
            }
            let installed = match checked.outcome {
                Ok((reference, prepared)) => {
                    let installed = self.multi.install_staged(group, meta, reference);
                    let prepared = prepared.and_then(super::machines::PreparedRestore::of);
                    if let (Ok(true), Some(prepared)) = (&installed, prepared) {
                        self.prepared.insert(group, (meta.last, prepared));
                    }
                    installed
                }
                Err(reason) => {
                    self.staged_snapshots_refused += 1;
                    let index = meta.last.index;
                    tracing::warn!(%group, %index, %reason, "a snapshot from the leader was refused");
                    self.multi.refuse_staged(group, meta).map(|_| false)
                }
            };
            if !installed.unwrap_or(false) {
                self.engine.discard_staged_snapshot(group, checked.stage);
            }
        }
    }

    fn count_leader_changes(&mut self, ready: &MultiReady) {
        for (group, group_ready) in &ready.groups {
            if let Some(leader) = group_ready.leader_changed {
                self.counters.leader_changes += 1;
                if leader == Some(self.config.node) {
                    self.counters.leaderships_won += 1;
                    let now_ms = self.clock.monotonic_ms;
                    self.placement.led_since_ms.insert(*group, now_ms);
                } else {
                    self.placement.led_since_ms.remove(group);
                }
                // Debug level: a node hosts thousands of groups, and `status` counts these.
                match leader {
                    Some(leader) => tracing::debug!(%group, %leader, "leader changed"),
                    None => tracing::debug!(%group, "leader unknown"),
                }
            }
        }
    }

    fn send(&self, batches: Vec<Batch>) {
        let bytes_max = self.config.tuning.batch_payload_bytes_max;
        for batch in batches
            .into_iter()
            .flat_map(|batch| split_oversized(batch, bytes_max))
        {
            self.sink.send_batch(batch);
        }
    }

    /// Makes everything `ready` asks durable in one write and one fdatasync. A hard state Raft
    /// marks `commit_only`, when nothing else of its group is written, rides with the next
    /// write instead of costing one. The write keeps `Persist`'s order (entries, then hard
    /// state), so a write torn by a crash never leaves a commit index over entries it lost.
    fn persist(&mut self, ready: &MultiReady) -> Result<(), CoreError> {
        let mut batch = WriteBatch::new();
        let mut entry_count = 0;
        for (group, group_ready) in &ready.groups {
            // Received snapshot chunks go to their staging file before they are acknowledged
            // (with the persisted batches); a whole one is checked off the loop.
            if group_ready.snapshot_staging_dropped {
                self.engine.drop_staged_snapshot(*group);
            }
            for piece in &group_ready.snapshot_chunks {
                self.engine.stage_snapshot_chunk(*group, piece);
            }
            if let Some(meta) = &group_ready.snapshot_received {
                let check = std::sync::Arc::clone(&self.staged_check);
                self.engine
                    .check_staged_snapshot(*group, meta.clone(), check);
            }
            let persist = &group_ready.persist;
            if persist.is_empty() {
                continue;
            }
            let alone = persist.snapshot.is_none()
                && persist.entries.is_empty()
                && persist.compaction.is_none();
            if let (true, true, Some(state)) = (alone, persist.commit_only, persist.hard_state) {
                self.deferred.insert(*group, state);
                continue;
            }
            let deferred = self.deferred.remove(group);
            entry_count += persist.entries.len() as u64;
            batch.persist(*group, persist);
            // Raft hands out a hard state only when it changed, so a write of entries alone
            // would otherwise drop the deferred one: it goes after them (older on disk would
            // be safe, but a restart would relearn more).
            if let (None, None, Some(state)) = (persist.hard_state, &persist.snapshot, deferred) {
                batch.set_hard_state(*group, state);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        for (group, state) in std::mem::take(&mut self.deferred) {
            batch.set_hard_state(group, state);
        }
        self.counters.entries_persisted += entry_count;
        self.counters.entries_per_write.observe(entry_count as f64);
        self.write_log(batch)
    }

    fn write_log(&mut self, batch: WriteBatch) -> Result<(), CoreError> {
        let stats = self.engine.write(batch)?;
        self.counters.write_micros += stats.write_micros;
        self.counters.fsyncs += 1;
        self.counters.log_bytes_written += stats.frame_bytes;
        self.counters
            .write_seconds
            .observe(stats.write_micros as f64 / 1e6);
        self.counters.cycles_since_gc += 1;
        self.find_pinning_groups();
        if self.counters.cycles_since_gc >= self.config.tuning.gc_interval_writes {
            self.counters.cycles_since_gc = 0;
            if let Err(error) = self.engine.gc() {
                tracing::warn!(%error, "log gc failed");
            }
        }
        Ok(())
    }

    /// Once the log holds more segments than `compact_beyond_segments`, notes the groups whose
    /// live entries keep the older ones, to compact this cycle. Looked for once per change of
    /// the segment count (a scan of every group, so about once per segment written).
    fn find_pinning_groups(&mut self) {
        let count = self.engine.segment_count();
        if count == self.segments_checked {
            return;
        }
        self.segments_checked = count;
        let keep = self.config.tuning.compact_beyond_segments;
        if count > keep {
            self.pinning = self.engine.groups_pinning_segments(keep);
        }
    }

    /// The groups `find_pinning_groups` noted that can compact now, so that the old segments
    /// go: hosted here, with every entry they hold in those segments applied (Raft handed it
    /// out; a compaction short of it would free nothing), and not compacting already. Those
    /// still applying, or writing a snapshot off the loop, wait for a later cycle; those due
    /// anyway, or gone, are dropped.
    fn take_pinning_groups(&mut self, due: &[GroupId]) -> Vec<GroupId> {
        if self.pinning.is_empty() {
            return Vec::new();
        }
        let due: rustc_hash::FxHashSet<GroupId> = due.iter().copied().collect();
        let mut forced = Vec::new();
        let mut waiting = Vec::new();
        for (group, through) in std::mem::take(&mut self.pinning) {
            if due.contains(&group) {
                continue;
            }
            let Some(raft) = self.multi.group(group) else {
                continue;
            };
            if raft.log().first_index() > through {
                continue;
            }
            if self.compacting.contains_key(&group) || raft.log().applied() < through {
                waiting.push((group, through));
                continue;
            }
            forced.push(group);
        }
        self.pinning = waiting;
        if !forced.is_empty() {
            tracing::debug!(
                groups = forced.len(),
                "compacting groups that keep old log segments"
            );
            self.collect_soon();
        }
        self.counters.compactions_forced += forced.len() as u64;
        forced
    }

    /// While the log holds more segments than it should, a compaction has the next write
    /// collect them, not one a thousand writes later.
    fn collect_soon(&mut self) {
        if self.segments_checked > self.config.tuning.compact_beyond_segments {
            self.counters.cycles_since_gc = self.config.tuning.gc_interval_writes;
        }
    }

    /// Writes the commit-only hard states still waiting (at a clean stop).
    pub(super) fn flush_deferred(&mut self) -> Result<(), CoreError> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for (group, state) in std::mem::take(&mut self.deferred) {
            batch.set_hard_state(group, state);
        }
        self.engine.write(batch)?;
        Ok(())
    }

    /// After the write: installs the snapshot `ready` persisted, then applies the committed
    /// entries the write made durable (those after `committed_before_persist`).
    fn apply_rest(&mut self, group: GroupId, ready: &Ready) -> Result<(), CoreError> {
        if let Some(snapshot) = &ready.persist.snapshot {
            // A received snapshot was staged in a file that is now the snapshot's own: it is
            // restored from the file, mapped, never gathered in memory.
            let bytes = self
                .engine
                .installed_snapshot_bytes(group, snapshot)
                .map_err(|source| CoreError::Restore {
                    group,
                    reason: source.to_string(),
                })?;
            // A range was decoded (in memory) or ingested (in the disk engine) off the loop
            // when its snapshot was checked.
            match self.prepared.remove(&group) {
                Some((last, prepared)) if last == snapshot.meta.last => {
                    let off_loop = self.machines.restore_prepared_from(
                        group,
                        &snapshot.meta,
                        &bytes,
                        prepared,
                    )?;
                    self.counters.snapshots_restored_off_loop += u64::from(off_loop);
                    for replaced in self.machines.take_retired() {
                        self.engine.drop_off_loop(replaced);
                    }
                }
                _ => self.machines.restore_from(group, &snapshot.meta, &bytes)?,
            }
            self.counters.snapshots_installed += 1;
            self.counters.meta_snapshots_installed += u64::from(group == META_GROUP);
            self.placement.snapshot_installed(group);
            self.waiting
                .snapshot_installed(group, snapshot.meta.last.index);
        }
        self.apply_entries(group, &ready.committed[ready.committed_before_persist..])
    }

    /// Applies `entries` of `group` in batches (one engine write each), each ending at an entry
    /// that changes the range's shape, so the node takes a split's right half or follows a
    /// merge right after the entry that made it; then answers their clients in order.
    fn apply_entries(&mut self, group: GroupId, entries: &[Entry]) -> Result<(), CoreError> {
        self.machines.count_applied(group, entries);
        self.counters.entries_applied += entries.len() as u64;
        for batch in apply_batches(entries) {
            let responses = self.machines.apply(group, batch)?;
            debug_assert_eq!(responses.len(), batch.len(), "one response per entry");
            for (entry, response) in batch.iter().zip(responses) {
                self.entry_applied(group, entry, response);
            }
        }
        if !entries.is_empty() {
            self.note_size(group);
            self.note_small(group);
        }
        Ok(())
    }

    /// Follows what `entry` of `group` did (a split, a reservation, a merge step) and answers
    /// its client.
    fn entry_applied(&mut self, group: GroupId, entry: &Entry, response: Option<Response>) {
        match response {
            Some(Response::Split { .. }) => self.split_applied(group, entry),
            Some(Response::Reserved { id }) => self.reservation_applied(entry, id),
            Some(ref response @ (Response::Merge { .. } | Response::Invalid(_))) => {
                self.merge_applied(group, entry, response);
            }
            _ => {}
        }
        self.waiting
            .applied(group, entry.index, entry.term, response);
    }

    /// Reads whose index is now known wait for it to apply; reads given up are refused.
    fn confirm_reads(&mut self, ready: &Ready) {
        for read in &ready.reads {
            self.waiting.confirm_read(read.context, read.index);
        }
        for &context in &ready.aborted_reads {
            if let Some((group, _, responder)) = self.waiting.take_read(context) {
                let leader_hint = self.multi.group(group).and_then(|raft| raft.leader());
                let error = MultiError::Propose(ProposeError::NotLeader { leader_hint });
                responder.answer(Err(self.refusal(group, error)));
            }
        }
    }

    /// Answers the reads whose index has applied, until their answers reach
    /// `read_bytes_per_turn`: the rest wait for the driver's next turn (which comes at once),
    /// so heartbeats and peer traffic are handled between slices of a read storm.
    pub(super) fn serve_reads(&mut self) {
        let machines = &self.machines;
        let scan_bytes_max = self.config.tuning.scan_bytes_max;
        let budget = self.config.tuning.read_bytes_per_turn;
        let mut servable = self
            .waiting
            .take_servable(|group| machines.applied(group))
            .into_iter();
        let mut served = 0usize;
        for read in servable.by_ref() {
            let machine = machines.kv(read.group);
            let command = match read.op {
                ReadOp::Kv(command) => command,
                ReadOp::RangeMap => {
                    let meta = machines.meta();
                    read.responder.answer(Ok(Reply::RangeMap {
                        map: meta.map.clone(),
                        directory: meta.directory.clone(),
                    }));
                    continue;
                }
                ReadOp::OpenBackup(epoch) => {
                    // A view holds the range's keys as the client's map has them: a range that
                    // split since the client read its map holds fewer, and the client would
                    // take the others for absent. Checked again now: the meta group may have
                    // recorded a split since the request came (the range's version moved), or
                    // not yet (the range's own bounds differ from the map's).
                    // A range frozen for a merge holds its keys as they were: the range that
                    // takes them may have written since (simulator seed 858).
                    let opened = match (self.mapped_as(read.group, epoch), machine) {
                        (Err(error), _) => Err(error),
                        (Ok(()), Some(machine))
                            if !machine.is_frozen() && split::keys_as_mapped(machines, machine) =>
                        {
                            self.backups.open_of(machine, self.clock.monotonic_ms)
                        }
                        _ => Err(ApiError::NotServed { group: read.group }),
                    };
                    read.responder.answer(opened.map(Reply::BackupOpened));
                    continue;
                }
            };
            let response =
                match machine.map(|machine| machine.read_bounded(&command, scan_bytes_max)) {
                    Some(Ok(response)) => response,
                    Some(Err(error)) => {
                        // The engine failed to read: the client hears it; the state is unchanged.
                        tracing::error!(group = %read.group, %error, "a read failed");
                        read.responder.answer(Err(ApiError::Unavailable(format!(
                            "the read failed: {error}"
                        ))));
                        continue;
                    }
                    None => None,
                };
            served += response.as_ref().map_or(0, crate::api::kv_answer_bytes);
            let result = response
                .map_or(Err(ApiError::NotServed { group: read.group }), |response| {
                    crate::api::kv_result(read.group, response)
                });
            read.responder.answer(result);
            if served >= budget {
                break;
            }
        }
        let rest: Vec<_> = servable.collect();
        self.reads_left = !rest.is_empty();
        self.waiting.put_back_servable(rest);
    }

    pub(super) fn snapshot_index(&self, group: GroupId) -> LogIndex {
        self.multi
            .group(group)
            .map_or(LogIndex(0), |raft| raft.log().first_index().prev())
    }

    fn snapshot_due(&self, group: GroupId) -> bool {
        let since = self.machines.since_snapshot(group);
        // Cheap first, from this node's own count: most groups of a cycle applied a few entries
        // since their snapshot, and the log's first index costs a lookup under its lock (with
        // 100,000 groups electing at once, a tenth of the loop).
        if since.entries < self.config.snapshot_entries {
            return false;
        }
        let applied = self.machines.applied(group).0;
        let entries = applied.saturating_sub(self.snapshot_index(group).0);
        snapshot_due(entries, since, self.config.snapshot_entries)
    }

    fn compact(&mut self, groups: Vec<GroupId>) -> Result<(), CoreError> {
        if groups.is_empty() {
            return Ok(());
        }
        // A range in the engine compacts its log with a note that the engine holds it: that
        // must be durable first (one sync of the engine for every range of the cycle).
        #[cfg(feature = "mutations")]
        let sync = self.config.mutation != super::CoreMutation::CompactWithoutEngineSync;
        #[cfg(not(feature = "mutations"))]
        let sync = true;
        if sync && groups.iter().any(|&group| group != META_GROUP) {
            self.machines.sync()?;
        }
        for group in groups {
            if group == META_GROUP {
                self.compact_meta();
                continue;
            }
            if !self.machines.in_engine() {
                // A range in memory is written to its snapshot file off the loop, from an
                // O(1) copy of its persistent map; its log compacts once the file is synced
                // (`compact_with_written_snapshots`).
                if self.compacting.contains_key(&group) {
                    continue;
                }
                if let Some(view) = self.machines.snapshot_view(group)? {
                    self.engine.write_snapshot(
                        group,
                        view,
                        flotilla_storage::machine::VIEW_CHUNK_BYTES,
                    );
                    let then = self.machines.since_snapshot(group);
                    self.compacting.insert(group, then);
                    continue;
                }
            }
            let mut index = self.machines.applied(group);
            if self.machines.in_engine() {
                // After a start the engine may be past what Raft has handed out again: the log
                // is compacted only up to that (the note says "at this entry or past it").
                let handed_out = self.multi.group(group).map(|raft| raft.log().applied());
                index = index.min(handed_out.unwrap_or(index));
            }
            let data = self.machines.snapshot_data(group)?;
            let size = data.len();
            match self.multi.compact(group, index, data) {
                Ok(()) => {
                    self.machines.snapshot_taken(group, size);
                    self.counters.snapshots_taken += 1;
                }
                Err(error) => tracing::warn!(%group, %error, "compaction refused"),
            }
        }
        Ok(())
    }

    /// The meta group's state is written to its snapshot file off the loop, from a copy that
    /// shares its ranges (O(nodes + operators in flight) here; encoding 100,000 ranges took
    /// 77 ms); its log compacts once the file is synced (`compact_with_written_snapshots`).
    fn compact_meta(&mut self) {
        if self.compacting.contains_key(&META_GROUP) {
            return;
        }
        let index = self.machines.applied(META_GROUP);
        let term = self
            .multi
            .group(META_GROUP)
            .and_then(|raft| raft.log().term(index).ok());
        let Some(term) = term else {
            // Not hosted here, or the entry is compacted away already: nothing to write.
            return;
        };
        let snapshot = self.machines.meta().snapshot();
        self.engine.write_encoded_snapshot(
            META_GROUP,
            flotilla_raft::LogId::new(term, index),
            Box::new(move || snapshot.encode()),
        );
        let then = self.machines.since_snapshot(META_GROUP);
        self.compacting.insert(META_GROUP, then);
    }

    /// Snapshots of ranges in memory written off the loop since the last call: each group's
    /// log is compacted with its file (storing the reference renames it into the snapshot
    /// file), unless the log is past it already (a snapshot installed meanwhile) or the group
    /// is gone, and then the file is removed.
    pub(super) fn compact_with_written_snapshots(&mut self) {
        for written in self.engine.take_written_snapshots() {
            let group = written.group;
            let then = self.compacting.remove(&group).unwrap_or_default();
            let (reference, size) = match written.outcome {
                Ok(written) => written,
                Err(reason) => {
                    // Tried again once as much is applied again, not at the next turn: a
                    // failing disk must not have the range streamed at every cycle.
                    tracing::warn!(%group, %reason, "a snapshot could not be written");
                    let last_size = self.machines.since_snapshot(group).snapshot_bytes;
                    self.machines.snapshot_taken_from(group, last_size, then);
                    continue;
                }
            };
            let index = written.last.index;
            if index <= self.snapshot_index(group) {
                self.engine.discard_written_snapshot(group, &reference);
                continue;
            }
            match self.multi.compact(group, index, reference.clone()) {
                Ok(()) => {
                    self.machines.snapshot_taken_from(group, size, then);
                    self.counters.snapshots_taken += 1;
                    self.counters.snapshots_written_off_loop += 1;
                    self.counters.meta_snapshots_written += u64::from(group == META_GROUP);
                    self.collect_soon();
                }
                Err(error) => {
                    // The group is gone or was replaced (a tombstone) since the copy.
                    tracing::debug!(%group, %error, "a written snapshot is no longer wanted");
                    self.engine.discard_written_snapshot(group, &reference);
                }
            }
        }
    }
}

/// `entries` cut into apply batches, each ending at an entry that changes its range's shape (a
/// split or a merge step): a batch keeps only its last split's right half, and the node takes
/// it, or follows the merge, before the next batch applies.
fn apply_batches(entries: &[Entry]) -> impl Iterator<Item = &[Entry]> {
    entries.split_inclusive(|entry| !batches_with_next(entry))
}

/// Whether a group snapshots now: once `every_entries` entries were applied since its last
/// snapshot, and not before they carry as many bytes as that snapshot. Encoding the whole state
/// then costs at most as much as the log it replaces; a fixed entry count alone made a group
/// with a large state re-encode it far more often than it changed (one range of 100,000 keys,
/// every ~0.6 s at 30 K puts/s).
fn snapshot_due(entries: u64, since: SinceSnapshot, every_entries: u64) -> bool {
    entries >= every_entries && since.log_bytes >= since.snapshot_bytes
}

/// Splits a batch whose messages carry more than `bytes_max` into several (each with at least
/// one message); the coalesced heartbeats and notes ride in the first.
fn split_oversized(mut batch: Batch, bytes_max: u64) -> Vec<Batch> {
    let weight = |message: &GroupMessage| match &message.message.body {
        MessageBody::AppendEntries { entries, .. } => {
            entries.iter().map(|entry| entry.payload_bytes() + 64).sum()
        }
        MessageBody::InstallSnapshot { data, .. } => data.len() as u64,
        _ => 64,
    };
    let total: u64 = batch.messages.iter().map(weight).sum();
    if total <= bytes_max {
        return vec![batch];
    }
    let mut parts = Vec::new();
    let mut current = batch.sibling();
    current.heartbeats = std::mem::take(&mut batch.heartbeats);
    current.heartbeat_responses = std::mem::take(&mut batch.heartbeat_responses);
    current.notes = std::mem::take(&mut batch.notes);
    let mut bytes = 0;
    for message in batch.messages {
        let size = weight(&message);
        if !current.messages.is_empty() && bytes + size > bytes_max {
            let next = current.sibling();
            parts.push(std::mem::replace(&mut current, next));
            bytes = 0;
        }
        bytes += size;
        current.messages.push(message);
    }
    parts.push(current);
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_raft::{EntryPayload, LogId, Message, NodeId, Term};

    fn append(group: u64, payload_bytes: usize) -> GroupMessage {
        let entry = Entry {
            index: LogIndex(1),
            term: Term(1),
            payload: EntryPayload::Normal(vec![0; payload_bytes].into()),
        };
        GroupMessage {
            group: GroupId(group),
            message: Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(1),
                body: MessageBody::AppendEntries {
                    prev: LogId::default(),
                    entries: vec![entry],
                    commit: LogIndex(0),
                },
            },
        }
    }

    #[test]
    fn big_batches_are_split_under_the_payload_limit_and_small_ones_are_not() {
        let mut small = Batch::new(NodeId(1), NodeId(2));
        small.messages = (0..10).map(|group| append(group, 1000)).collect();
        assert_eq!(split_oversized(small, 4 << 20).len(), 1);
        let mut big = Batch::new(NodeId(1), NodeId(2));
        big.messages = (0..16).map(|group| append(group, 1 << 20)).collect();
        let parts = split_oversized(big, 4 << 20);
        // Three 1 MiB entries (plus their overhead) fit under 4 MiB, four do not.
        assert_eq!(parts.len(), 6);
        assert!(parts.iter().all(|part| part.messages.len() <= 3));
        assert_eq!(
            parts.iter().map(|part| part.messages.len()).sum::<usize>(),
            16
        );
        let mut huge = Batch::new(NodeId(1), NodeId(2));
        huge.messages = vec![append(1, 6 << 20)];
        assert_eq!(
            split_oversized(huge, 4 << 20).len(),
            1,
            "one message always goes, alone"
        );
    }

    /// Commands batch with what follows them; a split or a merge step ends its batch, so two
    /// splits in one committed slice (a follower catching up) each leave their right half.
    #[test]
    fn applied_entries_are_batched_up_to_each_change_of_shape() {
        use flotilla_storage::{Codec, Command, Proposal};
        let bounds = flotilla_storage::kv::RangeBounds {
            start: Vec::new(),
            end: None,
            version: 0,
        };
        let put = Command::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }
        .encode();
        let split = |at: &[u8], right| Proposal::Split {
            expected: bounds.clone(),
            at: at.to_vec(),
            right: GroupId(right),
            voters: vec![NodeId(1)],
        };
        let payloads = [
            EntryPayload::Blank,
            EntryPayload::Normal(put.clone().into()),
            EntryPayload::Normal(split(b"m", 7).to_payload().into()),
            EntryPayload::Normal(put.clone().into()),
            EntryPayload::Normal(split(b"f", 8).to_payload().into()),
            EntryPayload::Normal(
                Proposal::AbortMerge { right: GroupId(9) }
                    .to_payload()
                    .into(),
            ),
            EntryPayload::Membership(flotilla_raft::Membership::with_voters([NodeId(1)])),
            EntryPayload::Normal(put.into()),
        ];
        let entries: Vec<Entry> = (1..)
            .zip(payloads)
            .map(|(index, payload)| Entry {
                index: LogIndex(index),
                term: Term(1),
                payload,
            })
            .collect();
        let lengths: Vec<usize> = apply_batches(&entries).map(<[Entry]>::len).collect();
        assert_eq!(lengths, [3, 2, 1, 2]);
        assert_eq!(apply_batches(&[]).count(), 0);
    }

    #[test]
    fn a_group_snapshots_after_enough_entries_and_as_many_bytes_as_its_last_snapshot() {
        let since = |log_bytes, snapshot_bytes| SinceSnapshot {
            entries: 0,
            log_bytes,
            snapshot_bytes,
        };
        // A small state: the entry count decides.
        assert!(!snapshot_due(19_999, since(10 << 20, 1_000), 20_000));
        assert!(snapshot_due(20_000, since(10 << 20, 1_000), 20_000));
        // A large state (27 MB): 20,000 puts of 300 bytes are not enough log to pay for it.
        assert!(!snapshot_due(20_000, since(6 << 20, 27 << 20), 20_000));
        assert!(snapshot_due(95_000, since(27 << 20, 27 << 20), 20_000));
        // No snapshot yet: the entry count alone.
        assert!(snapshot_due(20_000, since(0, 0), 20_000));
    }
}
