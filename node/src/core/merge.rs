//! Merges in the node core (issue 20): a range takes the keys of its right neighbour in three
//! entries of the two ranges' own logs (`docs/protocol/split-merge.md`, and
//! `docs/decisions/merge.md` for why this way):
//!
//! 1. the left range's leader proposes `PrepareMerge` in the left range: from then on it does
//!    not split and awaits its neighbour;
//! 2. it asks the right range's replicas, every placement round until the merge is over, to
//!    freeze into it; the right range's leader proposes `Freeze`, after which the right range
//!    serves nothing, for good;
//! 3. any replica of the right range frozen into the left one answers with its frozen state,
//!    and the left range's leader proposes `Merge` carrying that state, which every replica
//!    of the left range applies from the entry alone.
//!
//! A freeze the right range refused (it changed, it is too big, it takes part in another
//! merge) is answered `Refused`, and the left range gives the merge up (`AbortMerge`): a
//! refused freeze moved the right range's version on, so no copy of it can freeze the range
//! later. A frozen right range is never thawed: only the left range's `Merge` takes its keys.
//! Every replica of the left range that applies the merge destroys its replica of the right
//! range; whichever leads the left range has the meta group record the merge.

use super::placement::NodeNote;
use super::split::keys_as_mapped;
use super::{BatchSink, CoreError, NodeCore, Respond};
use crate::api::ApiError;
use flotilla_raft::{GroupId, LogIndex, NodeId, Term};
use flotilla_shard_manager::{META_GROUP, MetaCommand, RangeEpoch};
use flotilla_storage::{Command, MergeState, Proposal, Response};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the two ranges of a merge, and the meta leader, tell each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum MergeNote {
    /// From the left range's leader to the right range's replicas: freeze into `left` for
    /// its merge attempt `attempt`, holding at most `bytes_max` bytes.
    Freeze {
        /// The range that takes the keys.
        left: GroupId,
        /// The range to freeze.
        right: GroupId,
        /// The most bytes the right range may hold, sessions included (the right range's
        /// leader takes the lower of this and its own `ranges.merge_bytes`).
        bytes_max: u64,
        /// The left range's version while it awaits: which merge of it asks.
        attempt: u64,
    },
    /// From a replica of the right range frozen into `left`: its frozen state.
    Frozen {
        /// The range that takes the keys.
        left: GroupId,
        /// The frozen range.
        right: GroupId,
        /// Its state, encoded as a snapshot.
        #[serde(with = "serde_bytes")]
        state: Vec<u8>,
    },
    /// From the right range's leader: the freeze for `attempt` was refused when it applied,
    /// and is refused for good; give that attempt up.
    Refused {
        /// The range that asked.
        left: GroupId,
        /// The range that refused.
        right: GroupId,
        /// The attempt refused.
        attempt: u64,
    },
    /// From the left range's leader to the meta leader: the merge applied.
    Record(MergeRecord),
}

/// A merge a replica of the left range applied, as the meta group records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MergeRecord {
    /// The range that took the keys.
    pub(super) left: GroupId,
    /// The range merged into it.
    pub(super) right: GroupId,
    /// The left range's version as its state machine has it (the merge's, or later).
    pub(super) version: u64,
}

/// A freeze this node proposed as the right range's leader, awaiting its entry.
#[derive(Clone, Copy, Debug)]
struct FreezeProposed {
    index: LogIndex,
    term: Term,
    /// The left range's leader that asked.
    asker: NodeId,
    /// The left range, and its attempt.
    left: GroupId,
    attempt: u64,
}

/// The core's merge state.
#[derive(Debug, Default)]
pub(super) struct Merges {
    /// Per right range this node leads: the freeze it proposed.
    freezes: BTreeMap<GroupId, FreezeProposed>,
    /// Per left range this node leads: the term it proposed the merge's last entry (`Merge`
    /// or `AbortMerge`) in, so it proposes it once per term, however many answers come.
    finishing: BTreeMap<GroupId, Term>,
    /// Notes for peers, sent once the cycle's ready is done.
    outbox: Vec<(NodeId, MergeNote)>,
    /// Right ranges whose merge a replica here applied: destroyed once the ready is done.
    to_destroy: Vec<GroupId>,
    /// Per left range, the merge a replica here applied that the meta map does not show yet.
    unrecorded: BTreeMap<GroupId, MergeRecord>,
    /// How many merged groups the meta state listed when this node last looked for replicas
    /// of them to destroy, and the placement rounds since.
    merged_seen: usize,
    rounds_since_merged_check: u64,
    /// Ranges hosted here holding fewer bytes than `ranges.merge_below_bytes` (merged by their
    /// leader with a neighbour as small).
    small: BTreeSet<GroupId>,
    /// When (monotonic ms) a split here made or shrank a range, for `ranges.merge_wait_seconds`.
    split_at_ms: BTreeMap<GroupId, u64>,
    /// When this node, leading a range, last prepared its merge by size.
    asked_ms: BTreeMap<GroupId, u64>,
}

/// How long a range's leader waits for the merge by size it prepared before it tries again.
const MERGE_ASK_AGAIN_MS: u64 = 10_000;

/// The replicas of merged groups are looked for at least this often, in placement rounds,
/// even when the meta state merged none since: an empty replica created for a message before
/// the merge was recorded may take the frozen state afterwards.
const MERGED_CHECK_EVERY_ROUNDS_MAX: u64 = 120;

impl<R: Respond, S: BatchSink> NodeCore<R, S> {
    /// A client asks the leader of `group` to merge its range with its right neighbour: the
    /// range prepares, and is answered `Merge { Prepared }` once the entry applies; the rest
    /// follows each placement round.
    pub(super) fn merge_request(&mut self, (group, epoch): (GroupId, RangeEpoch), responder: R) {
        let proposal = self
            .bounds_of(group)
            .ok_or(ApiError::NotServed { group })
            .and_then(|bounds| {
                let probe = Command::Get {
                    key: bounds.start.clone(),
                };
                self.check(group, epoch, &probe)?;
                self.merge_proposal(group)
            });
        match proposal {
            Ok(proposal) if self.waiting.len() < self.config.limits.pending_requests_max => {
                self.propose(group, proposal.to_payload(), responder);
            }
            Ok(_) => responder.answer(Err(ApiError::Busy)),
            Err(error) => responder.answer(Err(error)),
        }
    }

    /// The first entry of a merge of `group` with its right neighbour, as this node would
    /// propose it. Refused while the range's keys differ from the map's (a split not yet
    /// recorded: `Busy`), for the last range, and for a neighbour too big to merge.
    fn merge_proposal(&self, group: GroupId) -> Result<Proposal, ApiError> {
        let refused = |reason: String| Err(ApiError::AdminRefused(reason));
        let limit = self.config.tuning.merge_bytes;
        if limit == 0 {
            return refused("merges are off (ranges.merge_bytes is 0)".to_owned());
        }
        let machine = self
            .machines
            .kv(group)
            .ok_or(ApiError::NotServed { group })?;
        let expected = self.bounds_of(group).ok_or(ApiError::NotServed { group })?;
        if let MergeState::Absorbing { right } = *machine.merge_state() {
            // Asked again: applied again, answered as prepared.
            return Ok(Proposal::PrepareMerge { expected, right });
        }
        if !keys_as_mapped(&self.machines, machine) || self.split_unrecorded(group) {
            return Err(ApiError::Busy);
        }
        let Some(end) = expected.end.clone() else {
            return refused("the last range has no right neighbour to merge".to_owned());
        };
        let map = &self.machines.meta().map;
        let right = map.lookup(&end);
        if right.keys.start != end {
            return Err(ApiError::Busy);
        }
        let right_bytes = match self.machines.kv(right.group) {
            Some(machine) => Some(machine.stored_bytes()),
            None => self
                .machines
                .meta()
                .cluster
                .range(right.id)
                .map(|view| view.size_bytes),
        };
        if let Some(bytes) = right_bytes.filter(|&bytes| bytes > limit) {
            return refused(format!(
                "range {} holds {bytes} bytes, more than ranges.merge_bytes ({limit})",
                right.id.0
            ));
        }
        Ok(Proposal::PrepareMerge {
            expected,
            right: right.group,
        })
    }

    /// After `group` applied entries: a range below `ranges.merge_below_bytes` is noted, for
    /// its leader to merge it with a neighbour as small.
    pub(super) fn note_small(&mut self, group: GroupId) {
        let limit = self.config.tuning.merge_below_bytes;
        if limit == 0 || group == META_GROUP {
            return;
        }
        let small = self
            .machines
            .kv(group)
            .is_some_and(|machine| machine.stored_bytes() < limit);
        if small {
            self.merges.small.insert(group);
        } else {
            self.merges.small.remove(&group);
        }
    }

    /// A split here made `right` out of `group`: neither merges by itself for a while.
    pub(super) fn note_split_time(&mut self, group: GroupId, right: GroupId) {
        let now_ms = self.clock.monotonic_ms;
        self.merges.split_at_ms.insert(group, now_ms);
        self.merges.split_at_ms.insert(right, now_ms);
    }

    /// Every placement round: one small range this node leads whose right neighbour is small
    /// enough too (their bytes together below `ranges.merge_below_bytes`), neither split in the
    /// last `ranges.merge_wait_seconds`, prepares its merge (TiKV's and CockroachDB's merge
    /// queues do the same for small, quiet ranges). One a round, so a cluster of empty ranges
    /// merges step by step rather than all at once.
    fn merge_small_ranges(&mut self) {
        let limit = self.config.tuning.merge_below_bytes;
        if limit == 0 {
            return;
        }
        let now_ms = self.clock.monotonic_ms;
        let wait_ms = self.config.tuning.merge_wait_ms;
        self.merges
            .split_at_ms
            .retain(|_, &mut at_ms| now_ms < at_ms.saturating_add(wait_ms));
        self.merges
            .asked_ms
            .retain(|_, &mut at_ms| now_ms < at_ms.saturating_add(MERGE_ASK_AGAIN_MS));
        let candidates: Vec<GroupId> = self.merges.small.iter().copied().collect();
        for group in candidates {
            let Some(machine) = self.machines.kv(group) else {
                self.merges.small.remove(&group);
                continue;
            };
            if !self.leads(group)
                || self.merges.split_at_ms.contains_key(&group)
                || self.merges.asked_ms.contains_key(&group)
                || *machine.merge_state() != MergeState::None
            {
                continue;
            }
            let own_bytes = machine.stored_bytes();
            let Some(end) = self.bounds_of(group).and_then(|bounds| bounds.end) else {
                continue;
            };
            let meta = self.machines.meta();
            let right = meta.map.lookup(&end);
            let right_bytes = match self.machines.kv(right.group) {
                Some(machine) => Some(machine.stored_bytes()),
                None => meta.cluster.range(right.id).map(|view| view.size_bytes),
            };
            let fits = right_bytes.is_some_and(|bytes| own_bytes.saturating_add(bytes) < limit);
            if !fits
                || self.merges.split_at_ms.contains_key(&right.group)
                || !self.cold(group, right.group)
            {
                continue;
            }
            let Ok(proposal) = self.merge_proposal(group) else {
                continue;
            };
            match self.multi.propose(group, proposal.to_payload()) {
                Ok(_) => {
                    self.merges.asked_ms.insert(group, now_ms);
                    self.counters.merges_asked_by_size += 1;
                    tracing::info!(%group, bytes = own_bytes, "the range is below merge_below_bytes");
                    return;
                }
                Err(error) => tracing::debug!(%group, %error, "a merge by size was not proposed"),
            }
        }
    }

    /// Whether `group` and its right neighbour `right` served fewer requests per second than
    /// `ranges.merge_below_rps` together over the last load window, as counted here (PD's merge
    /// checker likewise skips hot regions). `group` is led here, so its count is its load; the
    /// neighbour's counts if its leader is here too, else it is taken as cold.
    /// A range whose leadership came here during the last window (a leader transfer after a
    /// split, say) has no count for it yet: it is not cold before a whole window is counted.
    fn cold(&self, group: GroupId, right: GroupId) -> bool {
        let limit = self.config.tuning.merge_below_rps;
        if limit == 0 {
            return true;
        }
        let placement = &self.placement;
        let counted = |group| {
            placement
                .led_since_ms
                .get(&group)
                .is_none_or(|&since| since <= placement.last_window_start_ms)
        };
        let rps = |group| placement.last_rps.get(&group).copied().unwrap_or(0);
        counted(group) && counted(right) && rps(group).saturating_add(rps(right)) < limit
    }

    /// Every placement round: merges this node applied that the map now shows are forgotten
    /// and the others reported (by the left range's leader); each left range this node leads
    /// asks its neighbour to freeze (or, once frozen, for its state); frozen replicas the
    /// left range here has taken are destroyed.
    pub(super) fn drive_merges(&mut self) {
        self.merge_small_ranges();
        let cluster = &self.machines.meta().cluster;
        self.merges
            .unrecorded
            .retain(|_, record| cluster.range_of_group(record.right).is_some());
        let merged = &self.machines.meta().merged;
        self.merges.rounds_since_merged_check += 1;
        if merged.len() != self.merges.merged_seen
            || self.merges.rounds_since_merged_check >= MERGED_CHECK_EVERY_ROUNDS_MAX
        {
            self.merges.rounds_since_merged_check = 0;
            // A group the meta group lists as merged is garbage wherever it is found (a
            // replica that lagged behind the freeze, or one whose left range is not here).
            self.merges.merged_seen = merged.len();
            let hosted: Vec<GroupId> = merged
                .iter()
                .copied()
                .filter(|&group| self.multi.group(group).is_some())
                .collect();
            self.merges.to_destroy.extend(hosted);
        }
        if self.merges.unrecorded.is_empty()
            && self.machines.absorbing().next().is_none()
            && self.machines.frozen().next().is_none()
        {
            self.destroy_merged_replicas();
            return;
        }
        let records: Vec<MergeRecord> = self
            .merges
            .unrecorded
            .values()
            .filter(|record| self.leads(record.left))
            .copied()
            .collect();
        for record in records {
            self.send_note(NodeNote::Merge(MergeNote::Record(record)), None);
        }
        let bytes_max = self.config.tuning.merge_bytes;
        // Not once its last entry is proposed in this term: every frozen replica would send
        // its whole state again each round.
        let asks: Vec<(GroupId, GroupId, u64)> = self
            .machines
            .absorbing()
            .filter(|&(left, _)| self.leads(left) && !self.finishing_now(left))
            .filter_map(|(left, right)| {
                let attempt = self.machines.kv(left)?.bounds().version;
                Some((left, right, attempt))
            })
            .collect();
        for (left, right, attempt) in asks {
            let Some(replicas) = cluster_replicas(self, right) else {
                continue;
            };
            let note = MergeNote::Freeze {
                left,
                right,
                bytes_max,
                attempt,
            };
            for node in replicas {
                self.send_note(NodeNote::Merge(note.clone()), Some(node));
            }
        }
        // A replica frozen into a range whose replica here holds its keys (it took the merge
        // in a snapshot, past the entry) is no longer needed by anyone.
        let taken: Vec<GroupId> = self
            .machines
            .frozen()
            .filter(|&(right, left)| self.merged_here(left, right))
            .map(|(right, _)| right)
            .collect();
        self.merges.to_destroy.extend(taken);
        self.destroy_merged_replicas();
    }

    /// A range this node now leads (its leader changed) that holds keys past those the map
    /// gives it merged its neighbour, and the map does not show it yet: its record is due.
    /// What every replica learns when it applies the merge, a replica that took a snapshot
    /// past it (or restarted from one) learns here, so a merge is recorded whichever replica
    /// leads the range.
    pub(super) fn note_unrecorded_merge(&mut self, left: GroupId) {
        let Some(machine) = self.machines.kv(left) else {
            return;
        };
        let bounds = machine.bounds();
        let meta = self.machines.meta();
        let Some(mapped) = meta
            .cluster
            .range_of_group(left)
            .and_then(|range| meta.map.range(range.id))
        else {
            return;
        };
        let Some(mapped_end) = mapped.keys.end.as_ref() else {
            return;
        };
        if bounds.version == 0 || bounds.start != mapped.keys.start || !bounds.contains(mapped_end)
        {
            return;
        }
        let right = meta.map.lookup(mapped_end).group;
        let version = bounds.version;
        self.merges.unrecorded.insert(
            left,
            MergeRecord {
                left,
                right,
                version,
            },
        );
    }

    /// Whether this node's replica of `left` holds the keys of `right`, frozen into it: its
    /// bounds cover the frozen range's first key at a later version than the frozen one (the
    /// left range never held that key at a later version before it merged `right`).
    fn merged_here(&self, left: GroupId, right: GroupId) -> bool {
        let (Some(left), Some(right)) = (self.machines.kv(left), self.machines.kv(right)) else {
            return false;
        };
        left.bounds().contains(&right.bounds().start)
            && left.bounds().version > right.bounds().version
    }

    /// A note of a merge's exchange, from `from`.
    pub(super) fn take_merge_note(&mut self, from: NodeId, note: MergeNote) {
        match note {
            MergeNote::Freeze {
                left,
                right,
                bytes_max,
                attempt,
            } => self.freeze_asked(from, (left, right, attempt), bytes_max),
            MergeNote::Frozen { left, right, state } => {
                // Only a state frozen for this very attempt (the entry checks it again): a
                // merge entry refused would hold the asks back for the rest of the term.
                let attempt = self
                    .machines
                    .kv(left)
                    .map(|machine| machine.bounds().version);
                let frozen_for = flotilla_storage::decode_snapshot(&state)
                    .ok()
                    .map(|frozen| frozen.merge_state().clone());
                let current = attempt.is_some_and(|attempt| {
                    frozen_for
                        == Some(MergeState::Frozen {
                            into: left,
                            attempt,
                        })
                });
                if current {
                    self.finish_merge(left, right, Proposal::Merge { right, state });
                }
            }
            MergeNote::Refused {
                left,
                right,
                attempt,
            } => {
                // Only the attempt refused: a refusal of an earlier one, late, changes nothing.
                let current = self
                    .machines
                    .kv(left)
                    .is_some_and(|machine| machine.bounds().version == attempt);
                if current {
                    self.finish_merge(left, right, Proposal::AbortMerge { right });
                }
            }
            MergeNote::Record(record) => self.record_merge(record),
        }
    }

    /// On a replica of the right range: frozen into `left`, it answers with its state; its
    /// leader proposes the freeze otherwise (once per term while one is in flight), if the
    /// range's keys are the map's (so the map records the merge of exactly these keys).
    fn freeze_asked(
        &mut self,
        asker: NodeId,
        (left, right, attempt): (GroupId, GroupId, u64),
        bytes_max: u64,
    ) {
        let Some(machine) = self.machines.kv(right) else {
            return;
        };
        if *machine.merge_state()
            == (MergeState::Frozen {
                into: left,
                attempt,
            })
        {
            let Some(state) = self.frozen_state(right) else {
                return;
            };
            let note = MergeNote::Frozen { left, right, state };
            return self.send_note(NodeNote::Merge(note), Some(asker));
        }
        if !self.leads(right)
            || !keys_as_mapped(&self.machines, machine)
            || self.split_unrecorded(right)
        {
            return;
        }
        let term = self.multi.group(right).map_or(Term(0), |raft| raft.term());
        if self
            .merges
            .freezes
            .get(&right)
            .is_some_and(|proposed| proposed.term == term)
        {
            return;
        }
        let Some(expected) = self.bounds_of(right) else {
            return;
        };
        let proposal = Proposal::Freeze {
            expected,
            into: left,
            bytes_max: bytes_max.min(self.config.tuning.merge_bytes),
            attempt,
        };
        match self.multi.propose(right, proposal.to_payload()) {
            Ok(index) => {
                let proposed = FreezeProposed {
                    index,
                    term,
                    asker,
                    left,
                    attempt,
                };
                self.merges.freezes.insert(right, proposed);
            }
            Err(error) => tracing::debug!(%right, %error, "a freeze was not proposed"),
        }
    }

    /// Whether this node, leading `left`, proposed its merge's last entry in this term.
    fn finishing_now(&self, left: GroupId) -> bool {
        let term = self.multi.group(left).map_or(Term(0), |raft| raft.term());
        self.merges.finishing.get(&left) == Some(&term)
    }

    /// On the left range's leader: proposes the merge's last entry (the merge, or giving it
    /// up), once per term, while the range still awaits `right`.
    fn finish_merge(&mut self, left: GroupId, right: GroupId, proposal: Proposal) {
        let awaits = self
            .machines
            .absorbing()
            .any(|(absorbing, awaited)| absorbing == left && awaited == right);
        if !awaits || !self.leads(left) {
            return;
        }
        let term = self.multi.group(left).map_or(Term(0), |raft| raft.term());
        if self.merges.finishing.get(&left) == Some(&term) {
            return;
        }
        match self.multi.propose(left, proposal.to_payload()) {
            Ok(_) => {
                self.merges.finishing.insert(left, term);
            }
            Err(error) => tracing::debug!(%left, %error, "a merge's last entry was not proposed"),
        }
    }

    /// On the meta leader: records a merge a left range's leader reported (a copy changes
    /// nothing).
    fn record_merge(&mut self, record: MergeRecord) {
        if !self.leads(META_GROUP) {
            return;
        }
        let cluster = &self.machines.meta().cluster;
        let (Some(left), Some(right)) = (
            cluster.range_of_group(record.left).map(|range| range.id),
            cluster.range_of_group(record.right).map(|range| range.id),
        ) else {
            return;
        };
        let command = MetaCommand::RecordMergeAtVersion {
            left,
            right,
            version: record.version,
        };
        if let Err(error) = self.multi.propose(META_GROUP, command.encode()) {
            tracing::debug!(%error, "recording a merge was refused");
        }
    }

    /// `group` applied an entry of a merge answered `response`: the merge's freeze this node
    /// proposed is answered to its asker; a merge applied by the left range dooms the right
    /// range's replica here and waits to be recorded.
    pub(super) fn merge_applied(
        &mut self,
        group: GroupId,
        entry: &flotilla_raft::Entry,
        response: &Response,
    ) {
        if let Some(proposed) = self.merges.freezes.get(&group).copied()
            && proposed.index == entry.index
        {
            self.merges.freezes.remove(&group);
            if proposed.term == entry.term {
                self.answer_freeze(group, proposed, response);
            }
        }
        let Response::Merge {
            right,
            step,
            version,
        } = *response
        else {
            return;
        };
        match step {
            flotilla_storage::MergeStep::Aborted => {
                self.merges.finishing.remove(&group);
                self.counters.merges_given_up += 1;
            }
            flotilla_storage::MergeStep::Merged => {
                self.merges.finishing.remove(&group);
                tracing::info!(left = %group, %right, index = %entry.index, "merge applied");
                self.counters.merges_applied += 1;
                self.merges.to_destroy.push(right);
                let record = MergeRecord {
                    left: group,
                    right,
                    version,
                };
                self.merges.unrecorded.insert(group, record);
            }
            flotilla_storage::MergeStep::Prepared | flotilla_storage::MergeStep::Frozen => {}
        }
    }

    /// The state of the frozen range `right`, encoded for the merge entry that hands it to
    /// its left neighbour; `None` (logged) if the engine failed to read it: the asker asks
    /// again.
    fn frozen_state(&self, right: GroupId) -> Option<Vec<u8>> {
        self.machines
            .encoded_state(right)
            .inspect_err(|error| {
                tracing::error!(%right, %error, "a frozen range's state could not be read");
            })
            .ok()
    }

    /// Tells the asker of the freeze of `right` how it went (once the ready is done).
    fn answer_freeze(&mut self, right: GroupId, proposed: FreezeProposed, response: &Response) {
        let left = proposed.left;
        let note = match response {
            Response::Merge { .. } => {
                let Some(state) = self.frozen_state(right) else {
                    return;
                };
                MergeNote::Frozen { left, right, state }
            }
            Response::Invalid(reason) => {
                tracing::info!(%right, %left, %reason, "a freeze for a merge was refused");
                MergeNote::Refused {
                    left,
                    right,
                    attempt: proposed.attempt,
                }
            }
            _ => return,
        };
        self.merges.outbox.push((proposed.asker, note));
    }

    /// After the cycle's ready: the notes for peers leave, and the replicas of right ranges
    /// merged here are destroyed.
    ///
    /// # Errors
    /// Writing the tombstones failed.
    pub(super) fn finish_merges(&mut self) -> Result<(), CoreError> {
        for (to, note) in std::mem::take(&mut self.merges.outbox) {
            self.send_note(NodeNote::Merge(note), Some(to));
        }
        self.destroy_doomed_replicas()
    }

    /// In a placement round: destroys the replicas of merged ranges found.
    fn destroy_merged_replicas(&mut self) {
        if let Err(error) = self.destroy_doomed_replicas() {
            // The next write fails the same way and stops the node; nothing was destroyed.
            tracing::error!(%error, "destroying merged replicas failed");
        }
    }

    /// Destroys the replicas of right ranges merged away (data dropped, a tombstone kept so
    /// their messages are refused).
    fn destroy_doomed_replicas(&mut self) -> Result<(), CoreError> {
        if self.merges.to_destroy.is_empty() {
            return Ok(());
        }
        let mut groups = std::mem::take(&mut self.merges.to_destroy);
        groups.sort_unstable();
        groups.dedup();
        let doomed: Vec<GroupId> = groups
            .into_iter()
            .filter(|&group| {
                self.multi.group(group).is_some_and(|raft| {
                    !raft.membership().voters.is_empty() || self.machines.kv(group).is_some()
                })
            })
            .collect();
        for &group in &doomed {
            self.merges.freezes.remove(&group);
            tracing::info!(%group, "destroying a replica merged into its left neighbour");
        }
        self.destroy_replicas(doomed)
    }

    /// Whether a split of `group` applied here waits for the meta group's record.
    fn split_unrecorded(&self, group: GroupId) -> bool {
        self.placement.splits_unrecorded.contains_key(&group)
    }
}

/// The nodes the placement view places `group`'s replicas on.
fn cluster_replicas<R: Respond, S: BatchSink>(
    core: &NodeCore<R, S>,
    group: GroupId,
) -> Option<Vec<NodeId>> {
    let range = core.machines.meta().cluster.range_of_group(group)?;
    Some(range.replicas.iter().map(|replica| replica.node).collect())
}
