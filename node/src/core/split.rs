//! Splits in the node core (issue 20): a range's leader proposes a split to the range's own
//! log; every replica carries it out when it applies that entry, carving the right half's
//! state out of its own (no data crosses the network) and creating the right half's group on
//! the same voters; then the meta group records it. Until it does, the parent refuses the
//! right half's keys (`OutsideRange`, answered `NotServed`) and clients retry.
//!
//! The record is driven by every replica of the parent, not by the client that asked: each
//! keeps the splits it applied that the meta group does not show yet, and whichever leads the
//! parent reports them to the meta leader every placement round. A leader that crashes after
//! the split, or a client that gives up, leaves the next leader to report it; recording twice
//! changes nothing (`docs/protocol/split-merge.md`).

use super::machines::Machines;
use super::placement::NodeNote;
use super::{BatchSink, CoreError, NodeCore, Respond};
use crate::api::{ApiError, Reply};
use flotilla_raft::{
    Entry, EntryPayload, GroupId, HardState, LogId, LogIndex, Membership, NodeId, Persist,
    Snapshot, SnapshotMeta, Term,
};
use flotilla_shard_manager::{KeyRange, META_GROUP, MapSplit, MetaCommand, RangeEpoch, RangeId};
use flotilla_storage::StateMachine;
use flotilla_storage::kv::RangeBounds;
use flotilla_storage::machine::{VIEW_CHUNK_BYTES, encode_carved};
use flotilla_storage::{Command, Payload, Proposal, Response, WriteBatch};
use serde::{Deserialize, Serialize};

/// The entry a split's right half starts at: its first state is a snapshot there. Past 0, so
/// an empty replica of the new group (one created when a message reached a node before it
/// applied the split) cannot take the log from entry 1 on an empty state: the leader's log
/// starts after this entry, and it sends such a replica the snapshot.
pub(crate) const SPLIT_START: LogId = LogId {
    term: Term(1),
    index: LogIndex(1),
};

/// How long a range's leader waits for the split it asked for before it asks again.
const SPLIT_ASK_AGAIN_MS: u64 = 10_000;
/// Keys a range's leader keeps of its requests, for the median a load split cuts at.
const LOAD_SAMPLES: usize = 64;
/// The shortest window over which a range's load is measured.
const LOAD_WINDOW_MS: u64 = 1_000;

/// The requests a range's leader took since its window began, and a sample of their keys.
#[derive(Debug, Default)]
pub(super) struct Load {
    requests: u64,
    /// The latest `LOAD_SAMPLES` keys (a ring, by request count).
    keys: Vec<Vec<u8>>,
}

/// What a range's leader and the meta leader tell each other to split a range that grew past
/// `ranges.split_bytes` or `ranges.split_load_rps`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum SplitNote {
    /// From the range's leader: split `group` at `at`; a right half's id is wanted.
    Wanted {
        /// The range's group.
        group: GroupId,
        /// The split key.
        at: Vec<u8>,
    },
    /// From the meta leader: the id reserved for that split.
    Reserved {
        /// The range's group.
        group: GroupId,
        /// The split key.
        at: Vec<u8>,
        /// The right half's group.
        right: GroupId,
    },
}

/// A split the meta leader reserved an id for, waiting for the reservation to apply.
#[derive(Clone, Debug)]
pub(super) struct Reservation {
    /// The term the reservation was proposed in (an entry of another term at its index is not
    /// it).
    term: Term,
    /// The range's leader that asked.
    asker: NodeId,
    group: GroupId,
    at: Vec<u8>,
}

/// A split a replica of the parent applied, as the meta group records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SplitRecord {
    /// The parent's group.
    pub(super) group: GroupId,
    /// The first key of the right half.
    pub(super) at: Vec<u8>,
    /// The right half's group (and range id: the same number).
    pub(super) right: GroupId,
    /// The right half's voters.
    pub(super) voters: Vec<NodeId>,
    /// The right half's version as its state machine has it (the split's, or later).
    pub(super) version: u64,
}

impl SplitRecord {
    /// The split that made `right`, a right half whose own bounds are `bounds`, on `voters`
    /// (its parent is not known here: the record names the right half in its place).
    fn made(right: GroupId, bounds: &RangeBounds, voters: Vec<NodeId>) -> Self {
        Self {
            group: right,
            at: bounds.start.clone(),
            right,
            voters,
            version: bounds.version,
        }
    }
}

/// Whether `machine` holds the keys the meta group's map gives its range: always at version 0
/// (its keys are the map's); past it, once the map records its last split.
pub(super) fn keys_as_mapped(machines: &Machines, machine: &dyn StateMachine) -> bool {
    let bounds = machine.bounds();
    bounds.version == 0
        || mapped_keys(machines, machine.group())
            .is_some_and(|keys| keys.start == bounds.start && keys.end == bounds.end)
}

/// The keys the meta group's map gives `group`'s range.
fn mapped_keys(machines: &Machines, group: GroupId) -> Option<&KeyRange> {
    machines
        .meta()
        .map
        .range_of_group(group)
        .map(|range| &range.keys)
}

/// The voters of the group `raft` serves, unless a change of them is under way (joint,
/// learners, or a membership not yet committed): a split's new group takes the parent's voters,
/// so a split waits until they are settled (the driver's moves finish first).
fn settled_voters<L: flotilla_raft::LogReader>(
    raft: &flotilla_raft::RaftNode<L>,
) -> Option<Vec<NodeId>> {
    let membership = raft.membership();
    let settled = !membership.is_joint()
        && membership.learners.is_empty()
        && raft.membership_index() <= raft.log().committed();
    settled.then(|| membership.voters.iter().copied().collect())
}

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// A client asks the leader of `group` to split its range at `at` into group `right`.
    /// Checked like a write to `at` (epoch, bounds, membership), then proposed with the range
    /// as this leader sees it and the group's voters; answered once applied.
    pub(super) fn split_request(
        &mut self,
        (group, epoch): (GroupId, RangeEpoch),
        at: Vec<u8>,
        right: GroupId,
        responder: R,
    ) {
        // Sent again after it took effect (its answer was lost): done.
        if let Some(version) = self.split_done(&at, right) {
            return responder.answer(Ok(Reply::Kv(Response::Split { right, version })));
        }
        let probe = Command::Get { key: at.clone() };
        if let Err(error) = self.check(group, epoch, &probe) {
            return responder.answer(Err(error));
        }
        let proposal = match self.split_proposal(group, at, right) {
            Ok(proposal) => proposal,
            Err(error) => return responder.answer(Err(error)),
        };
        if self.waiting.len() >= self.config.limits.pending_requests_max {
            return responder.answer(Err(ApiError::Busy));
        }
        self.propose(group, proposal.to_payload(), responder);
    }

    /// The split of `group` at `at` into `right` as this node would propose it: with the range
    /// as it sees it and the group's voters. Refused when `right` exists or the voters are
    /// changing (`Busy`); a key that does not cut the range in two is the entry's to refuse.
    fn split_proposal(
        &self,
        group: GroupId,
        at: Vec<u8>,
        right: GroupId,
    ) -> Result<Proposal, ApiError> {
        if right == META_GROUP || self.multi.group(right).is_some() {
            return Err(ApiError::AdminRefused(format!(
                "group {right} exists already; reserve a new id"
            )));
        }
        let raft = self
            .multi
            .group(group)
            .ok_or(ApiError::NotServed { group })?;
        let voters = settled_voters(raft).ok_or(ApiError::Busy)?;
        // Only a range whose keys are the map's: the map records a split of the range it
        // shows, so one after a split or merge not recorded yet would never be recorded (a
        // merged range split again at the old boundary: simulator seed 74).
        let machine = self
            .machines
            .kv(group)
            .ok_or(ApiError::NotServed { group })?;
        if !keys_as_mapped(&self.machines, machine) {
            return Err(ApiError::Busy);
        }
        let expected = self.bounds_of(group).ok_or(ApiError::NotServed { group })?;
        Ok(Proposal::Split {
            expected,
            at,
            right,
            voters,
        })
    }

    /// The version of the right half, if a split at `at` into `right` took effect on this
    /// node (as its own replica applied it, or as the meta group recorded it).
    fn split_done(&self, at: &[u8], right: GroupId) -> Option<u64> {
        let applied = self
            .placement
            .splits_unrecorded
            .values()
            .any(|split| split.right == right && split.at == at);
        let recorded = self
            .machines
            .meta()
            .map
            .range(RangeId(right.0))
            .is_some_and(|range| range.keys.start == at);
        (applied || recorded).then(|| {
            self.machines
                .kv(right)
                .map_or(1, |machine| machine.bounds().version)
        })
    }

    /// The bounds of `group`'s range as its state machine holds them, or (a range that never
    /// split, at version 0) as the meta group's map does.
    pub(super) fn bounds_of(&self, group: GroupId) -> Option<RangeBounds> {
        let machine = self.machines.kv(group)?;
        if machine.bounds().version > 0 {
            return Some(machine.bounds().clone());
        }
        let keys = mapped_keys(&self.machines, group)?;
        Some(RangeBounds {
            start: keys.start.clone(),
            end: keys.end.clone(),
            version: 0,
        })
    }

    /// `group` applied the split `entry` (its answer was `Response::Split`): takes the carved
    /// right half, hosted once the cycle's ready is done (`host_splits`), and keeps the split
    /// to report until the meta group shows it.
    pub(super) fn split_applied(&mut self, group: GroupId, entry: &Entry) {
        let Some(carved) = self.machines.take_carved(group) else {
            return;
        };
        let EntryPayload::Normal(data) = &entry.payload else {
            return;
        };
        let Ok(Payload::Proposal(Proposal::Split { at, voters, .. })) = Payload::decode(data)
        else {
            return;
        };
        let split = SplitRecord {
            group,
            at,
            right: carved.group(),
            voters,
            version: carved.bounds().version,
        };
        tracing::debug!(%group, index = %entry.index, right = %split.right, "split applied");
        self.note_split_time(group, split.right);
        self.placement
            .splits_unrecorded
            .insert(group, split.clone());
        self.placement.splits_to_host.push((split, carved));
    }

    /// Hosts the right halves of the splits this cycle applied, from their carved state: its
    /// first state persisted (a snapshot at `SPLIT_START` with the split's voters), then the
    /// group created. Runs after the cycle's ready (no group appears in the middle of one) and
    /// before compaction (so the parent's log keeps the split until the right half is
    /// durable). A replica of the right half already here keeps what it has: it took the new
    /// group's snapshot first, or this is the log replayed after a restart (the carved state
    /// is the same or older), or it is the tombstone of a replica destroyed since (moved away
    /// or merged), which never comes back: brought back at the split's start, it would have
    /// lost the entries it acknowledged and the votes it gave (simulator seed 482: a replica
    /// voted in a term, was destroyed, came back with the carved state after a restart and
    /// voted again in that term, electing a second leader).
    ///
    /// # Errors
    /// Persisting a right half's first state failed.
    pub(super) fn host_splits(&mut self) -> Result<(), CoreError> {
        for (split, carved) in std::mem::take(&mut self.placement.splits_to_host) {
            let (group, right) = (split.group, split.right);
            // Only an empty replica this process created for a group this node never hosted
            // (`drop_votes_for_empty_replicas`) gives way to the carved state, with the term
            // and vote it has.
            let never_hosted = self.placement.never_hosted.contains(&right);
            let existing = self.multi.group(right).map(|raft| {
                let empty = super::placement::is_empty_replica(raft);
                (empty && never_hosted, raft.term(), raft.vote())
            });
            let gives_way = existing.is_none_or(|(gives_way, ..)| gives_way);
            // A right half merged away since (the parent's log replayed after a restart) is
            // not brought back: the meta group lists it, and its replicas are garbage.
            if !gives_way || self.machines.meta().merged.contains(&right) {
                tracing::debug!(%group, %right, "the split's right half is hosted already");
                // A carve the disk engine wrote for a group with no state machine here (a
                // tombstone, or a range merged away) is deleted: nothing would read it.
                drop(carved);
                if self.machines.kv(right).is_none() {
                    self.machines.destroy(right)?;
                }
                continue;
            }
            let (term, vote) = match existing {
                Some((_, term, vote)) if term >= SPLIT_START.term => (term, vote),
                _ => (SPLIT_START.term, None),
            };
            self.multi.remove_group(right);
            self.placement.never_hosted.remove(&right);
            let data = encode_carved(carved.as_ref(), SPLIT_START, VIEW_CHUNK_BYTES)
                .map_err(super::machines::machine_failed(group))?;
            // The carved machine is dropped before the right half's own one opens: the engine
            // holds one state machine per range.
            drop(carved);
            let snapshot = Snapshot {
                meta: SnapshotMeta {
                    last: SPLIT_START,
                    membership: Membership::with_voters(split.voters),
                },
                data,
            };
            let mut batch = WriteBatch::new();
            batch.persist(
                right,
                &Persist {
                    snapshot: Some(snapshot.clone()),
                    hard_state: Some(HardState {
                        term,
                        vote,
                        commit: SPLIT_START.index,
                    }),
                    ..Persist::default()
                },
            );
            self.engine.write(batch)?;
            let store = self.engine.group(right);
            if let Err(error) = self.multi.create_group(right, store) {
                // Only a full node refuses (`limits.ranges_hosted_max`): the group is on disk
                // and hosted at the next start; the new group's other replicas serve it.
                tracing::error!(%group, %right, %error, "could not host a split's right half");
                continue;
            }
            self.machines.restore(right, &snapshot)?;
            tracing::info!(%group, %right, "split: hosting the right half");
        }
        Ok(())
    }

    /// At start, with the ranges in the engine: a range the engine holds that the log has no
    /// group of is either a split's right half whose hosting a crash cut short (the engine
    /// applied the parent's split, which the log will not replay: the parent is past it), or
    /// what a crash left of a destroyed replica. The first is hosted as `host_splits` would
    /// have (this node never hosted its group, which the log would show, even as a
    /// tombstone); the rest is deleted.
    ///
    /// # Errors
    /// The engine failed, or persisting a right half's first state failed.
    pub(super) fn adopt_carves(&mut self) -> Result<(), CoreError> {
        for machine in self.machines.unhosted()? {
            let group = machine.group();
            let bounds = machine.bounds();
            let carve = machine.applied().index == LogIndex(0) && bounds.version > 0;
            let voters = machine
                .membership()
                .map(|membership| membership.voters.iter().copied().collect::<Vec<_>>())
                .filter(|voters| carve && !voters.is_empty());
            let Some(voters) = voters else {
                drop(machine);
                tracing::info!(%group, "deleting the engine's records of a range not hosted");
                self.machines.destroy_unhosted(group)?;
                continue;
            };
            tracing::info!(%group, "hosting a split's right half the engine holds");
            self.counters.carves_adopted += 1;
            let split = SplitRecord::made(group, bounds, voters);
            self.placement.splits_to_host.push((split, machine));
        }
        self.host_splits()
    }

    /// Every placement round: the splits this node applied that the meta group now shows are
    /// forgotten; the others, of ranges this node leads, are reported to the meta leader (or
    /// proposed, on it).
    pub(super) fn report_splits(&mut self) {
        if self.placement.splits_unrecorded.is_empty() {
            return;
        }
        let meta = self.machines.meta();
        self.placement.splits_unrecorded.retain(|_, split| {
            meta.map.range(RangeId(split.right.0)).is_none() && !meta.merged.contains(&split.right)
        });
        let led: Vec<SplitRecord> = self
            .placement
            .splits_unrecorded
            .values()
            .filter(|split| self.leads(split.group))
            .cloned()
            .collect();
        for split in led {
            self.send_note(NodeNote::Split(split), None);
        }
    }

    /// A range this node now leads (its leader changed) that the map does not show, whose
    /// own bounds say a split made it: it reports its own split, as its parent's replicas do
    /// until the map shows it. Those may all have lost the split they applied (each took a
    /// snapshot past it and restarted), and nothing else would ever record it (simulator seed
    /// 608).
    pub(super) fn note_unrecorded_split(&mut self, group: GroupId) {
        let Some(machine) = self.machines.kv(group) else {
            return;
        };
        let meta = self.machines.meta();
        let bounds = machine.bounds();
        if group == META_GROUP
            || bounds.version == 0
            || meta.cluster.range_of_group(group).is_some()
            || meta.merged.contains(&group)
        {
            return;
        }
        let Some(voters) = self.multi.group(group).and_then(settled_voters) else {
            return;
        };
        let split = SplitRecord::made(group, bounds, voters);
        self.placement.splits_unrecorded.insert(group, split);
    }

    /// On the meta leader: records a split a range's leader reported (a copy changes nothing).
    pub(super) fn take_split_note(&mut self, split: SplitRecord) {
        if !self.leads(META_GROUP) {
            return;
        }
        let meta = self.machines.meta();
        if meta.map.range(RangeId(split.right.0)).is_some() {
            return;
        }
        // The range the map shows holding the split key: the parent, or, when splits of it
        // are recorded out of order, the part of it that holds the key now (the map is cut
        // at every split key alike, whichever order the records come in).
        let range = meta.map.lookup(&split.at).id;
        let command = MetaCommand::RecordSplitAtVersion {
            split: MapSplit {
                range,
                at: split.at,
                right: RangeId(split.right.0),
                right_group: split.right,
                voters: split.voters,
            },
            version: split.version,
        };
        if let Err(error) = self.multi.propose(META_GROUP, command.encode()) {
            tracing::debug!(%error, "recording a split was refused");
        }
    }

    /// After `group` applied entries: a range past `ranges.split_bytes` is noted, for its
    /// leader to split it at the next placement round.
    pub(super) fn note_size(&mut self, group: GroupId) {
        let limit = self.config.tuning.split_bytes;
        if limit == 0 || group == META_GROUP {
            return;
        }
        if self
            .machines
            .kv(group)
            .is_some_and(|machine| machine.stored_bytes() > limit)
        {
            self.placement.oversized.insert(group);
        }
    }

    /// Every placement round: each range this node leads that grew past `ranges.split_bytes`
    /// asks the meta leader for a right half's id, to split at its middle key (again after
    /// `SPLIT_ASK_AGAIN_MS` if nothing came of it).
    pub(super) fn split_big_ranges(&mut self) {
        let limit = self.config.tuning.split_bytes;
        let now_ms = self.clock.monotonic_ms;
        let groups: Vec<GroupId> = self.placement.oversized.iter().copied().collect();
        for group in groups {
            let Some(machine) = self.machines.kv(group) else {
                self.placement.oversized.remove(&group);
                continue;
            };
            if machine.stored_bytes() <= limit {
                self.placement.oversized.remove(&group);
                self.placement.splits_asked.remove(&group);
                continue;
            }
            if !self.may_ask_split(group, now_ms) {
                continue;
            }
            let at = match machine.middle_key() {
                Ok(Some(at)) => at,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%group, %error, "the range's middle key could not be read");
                    continue;
                }
            };
            self.placement.splits_asked.insert(group, now_ms);
            self.counters.splits_asked_by_size += 1;
            tracing::info!(%group, bytes = machine.stored_bytes(), "the range is over split_bytes");
            self.send_note(NodeNote::SizeSplit(SplitNote::Wanted { group, at }), None);
        }
    }

    /// A request for `group` on `key` came: counted towards the range's load (on its leader;
    /// the others refuse it, and their count is never read).
    pub(super) fn note_load(&mut self, group: GroupId, key: &[u8]) {
        let tuning = &self.config.tuning;
        if (tuning.split_load_rps == 0 && tuning.merge_below_rps == 0) || group == META_GROUP {
            return;
        }
        let samples = tuning.split_load_rps != 0;
        let load = self.placement.loads.entry(group).or_default();
        // The keys are sampled for a load split's median; a merge's coldness needs the count.
        if samples {
            let slot = (load.requests % LOAD_SAMPLES as u64) as usize;
            match load.keys.get_mut(slot) {
                Some(kept) => {
                    kept.clear();
                    kept.extend_from_slice(key);
                }
                None => load.keys.push(key.to_vec()),
            }
        }
        load.requests += 1;
    }

    /// Every placement round, once the window is a second or more: each range this node
    /// leads that served more than `ranges.split_load_rps` asks to split at the median of its
    /// sampled keys (TiKV's load-based split), so its halves can be led from two nodes. The
    /// window's loads are kept until the next one ends: merges by size take only cold ranges.
    pub(super) fn split_hot_ranges(&mut self) {
        let limit = self.config.tuning.split_load_rps;
        let now_ms = self.clock.monotonic_ms;
        let elapsed_ms = now_ms.saturating_sub(self.placement.load_window_ms);
        let counted = limit != 0 || self.config.tuning.merge_below_rps != 0;
        if !counted || elapsed_ms < LOAD_WINDOW_MS {
            return;
        }
        self.placement.last_window_start_ms = self.placement.load_window_ms;
        self.placement.load_window_ms = now_ms;
        self.placement.last_rps.clear();
        for (group, load) in std::mem::take(&mut self.placement.loads) {
            let rps = load.requests * 1000 / elapsed_ms;
            self.placement.last_rps.insert(group, rps);
            if limit == 0 || rps <= limit || !self.may_ask_split(group, now_ms) {
                continue;
            }
            let mut keys = load.keys;
            keys.sort_unstable();
            let Some(at) = keys.get(keys.len() / 2).cloned() else {
                continue;
            };
            let inside = self
                .bounds_of(group)
                .is_some_and(|bounds| bounds.contains(&at) && at != bounds.start);
            if !inside {
                continue;
            }
            self.placement.splits_asked.insert(group, now_ms);
            self.counters.splits_asked_by_load += 1;
            tracing::info!(%group, rps, "the range is over split_load_rps");
            self.send_note(NodeNote::SizeSplit(SplitNote::Wanted { group, at }), None);
        }
    }

    /// Whether this node may ask for a split of `group` now: it leads it, its last ask is
    /// `SPLIT_ASK_AGAIN_MS` old or more, and no split of it waits for the meta group's record.
    fn may_ask_split(&self, group: GroupId, now_ms: u64) -> bool {
        let asked = self
            .placement
            .splits_asked
            .get(&group)
            .is_some_and(|&at_ms| now_ms < at_ms + SPLIT_ASK_AGAIN_MS);
        self.leads(group) && !asked && !self.placement.splits_unrecorded.contains_key(&group)
    }

    /// A note of the size and load splits' exchange, from `from`.
    pub(super) fn take_split_size_note(&mut self, from: NodeId, note: SplitNote) {
        match note {
            SplitNote::Wanted { group, at } => {
                if !self.leads(META_GROUP) {
                    return;
                }
                let proposed = self
                    .multi
                    .propose(META_GROUP, MetaCommand::ReserveRange.encode());
                match proposed {
                    Ok(index) => {
                        let term = self
                            .multi
                            .group(META_GROUP)
                            .map_or(Term(0), flotilla_raft::RaftNode::term);
                        let reservation = Reservation {
                            term,
                            asker: from,
                            group,
                            at,
                        };
                        self.placement.reservations.insert(index, reservation);
                    }
                    Err(error) => tracing::debug!(%error, "reserving a split's id was refused"),
                }
            }
            SplitNote::Reserved { group, at, right } => self.propose_size_split(group, at, right),
        }
    }

    /// On the meta leader: the reservation at `entry` applied with `id`; the range's leader
    /// that asked for it is told once the cycle's ready is done (`send_reserved`).
    pub(super) fn reservation_applied(&mut self, entry: &Entry, id: u64) {
        let Some(reservation) = self.placement.reservations.remove(&entry.index) else {
            return;
        };
        // Entries apply in order: a reservation at an earlier index never will (a lost term).
        self.placement
            .reservations
            .retain(|&index, _| index > entry.index);
        if reservation.term != entry.term {
            return;
        }
        let note = SplitNote::Reserved {
            group: reservation.group,
            at: reservation.at,
            right: GroupId(id),
        };
        // Sent after the cycle's ready: the asker may be this node, which then proposes.
        self.placement.reserved.push((reservation.asker, note));
    }

    /// After the cycle's ready: tells the askers of the reservations that applied.
    pub(super) fn send_reserved(&mut self) {
        for (asker, note) in std::mem::take(&mut self.placement.reserved) {
            self.send_note(NodeNote::SizeSplit(note), Some(asker));
        }
    }

    /// On the range's leader: proposes the split the meta leader reserved an id for, if the
    /// range is still as it was (led here, the key inside, the voters settled).
    fn propose_size_split(&mut self, group: GroupId, at: Vec<u8>, right: GroupId) {
        let cuts = self
            .bounds_of(group)
            .is_some_and(|bounds| bounds.contains(&at) && at != bounds.start);
        if !self.leads(group) || !cuts {
            return;
        }
        let proposed = self
            .split_proposal(group, at, right)
            .map_err(|error| error.to_string())
            .and_then(|proposal| {
                let payload = proposal.to_payload();
                self.multi
                    .propose(group, payload)
                    .map_err(|error| error.to_string())
            });
        if let Err(error) = proposed {
            tracing::debug!(%group, %error, "a size or load split was not proposed");
        }
    }
}
