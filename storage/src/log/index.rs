//! The per-group in-memory index: where each live entry of a group sits in the segments, plus
//! the group's hard state and newest snapshot marker. Recovery and live writes update it through
//! the same `apply`, so a reopened log is the log that was written.

use super::body::{Effect, SnapshotMarker};
use super::recent::{RecentEntries, RecentLimits};
use super::run::IndexRun;
use flotilla_raft::{Entry, HardState, LogIndex, Term};
use std::collections::BTreeMap;

/// Where one entry's record sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    /// The segment's sequence number.
    pub(crate) segment: u64,
    /// The record's offset inside the segment.
    pub(crate) offset: u64,
    /// The record's size including its header.
    pub(crate) frame_bytes: u32,
    /// The entry's term, kept here so `term()` needs no disk read.
    pub(crate) term: Term,
}

/// Where each live entry of a group sits, by index.
///
/// Live writes are validated to be consecutive, so this is a flat run. Only a damaged log
/// replayed by recovery can leave a gap. The locations then move to a map that keeps the gap
/// exactly as the records left it, so recovery can report it, or find it covered by a later
/// truncation or compaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Locations {
    /// Consecutive indices (always, outside a damaged recovery).
    Run(IndexRun<Location>),
    /// After a record that left a gap.
    Sparse(BTreeMap<LogIndex, Location>),
}

impl Default for Locations {
    fn default() -> Self {
        Self::Run(IndexRun::default())
    }
}

impl Locations {
    pub(crate) fn first(&self) -> Option<(LogIndex, &Location)> {
        match self {
            Self::Run(run) => run.first(),
            Self::Sparse(map) => map
                .first_key_value()
                .map(|(index, location)| (*index, location)),
        }
    }

    pub(crate) fn last_index(&self) -> Option<LogIndex> {
        match self {
            Self::Run(run) => run.last_index(),
            Self::Sparse(map) => map.last_key_value().map(|(index, _)| *index),
        }
    }

    pub(crate) fn get(&self, index: LogIndex) -> Option<&Location> {
        match self {
            Self::Run(run) => run.get(index),
            Self::Sparse(map) => map.get(&index),
        }
    }

    /// Records `location` for `index`, replacing every entry from `index` on (a conflicting
    /// append overwrites the log's suffix).
    fn put(&mut self, index: LogIndex, location: Location) {
        self.truncate_from(index);
        match self {
            Self::Run(run) => {
                if run.push(index, location).is_err() {
                    let mut map: BTreeMap<LogIndex, Location> = run
                        .iter()
                        .map(|(index, location)| (index, *location))
                        .collect();
                    map.insert(index, location);
                    *self = Self::Sparse(map);
                }
            }
            Self::Sparse(map) => {
                map.insert(index, location);
            }
        }
    }

    /// Drops every entry from `index` on.
    fn truncate_from(&mut self, index: LogIndex) {
        match self {
            Self::Run(run) => run.truncate_from(index),
            Self::Sparse(map) => {
                map.split_off(&index);
            }
        }
    }

    /// Drops every entry below `index`.
    fn keep_from(&mut self, index: LogIndex) {
        match self {
            Self::Run(run) => run.keep_from(index),
            Self::Sparse(map) => *map = map.split_off(&index),
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    /// The entries in `[low, high)`, in order.
    pub(crate) fn range(
        &self,
        low: LogIndex,
        high: LogIndex,
    ) -> Box<dyn Iterator<Item = (LogIndex, &Location)> + '_> {
        match self {
            Self::Run(run) => Box::new(run.range(low, high)),
            Self::Sparse(map) => Box::new(
                map.range(low..high.max(low))
                    .map(|(index, location)| (*index, location)),
            ),
        }
    }
}

/// One group's persisted state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    /// The newest snapshot, if the group has one.
    pub(crate) snapshot: Option<SnapshotMarker>,
    /// Live entries by index. Contiguous after `snapshot_index()` once recovery has finished.
    pub(crate) entries: Locations,
    /// The persisted hard state.
    pub(crate) hard_state: HardState,
    /// The most recently written entries, served without a disk read. Always a suffix of
    /// `entries` (never an entry the index no longer holds), without gaps.
    pub(crate) recent: RecentEntries,
}

impl GroupState {
    /// The last index the snapshot covers (zero without one).
    #[must_use]
    pub(crate) fn snapshot_index(&self) -> LogIndex {
        self.snapshot
            .as_ref()
            .map_or(LogIndex::ZERO, SnapshotMarker::index)
    }

    /// The term of the snapshot's last entry (zero without one).
    #[must_use]
    pub(crate) fn snapshot_term(&self) -> Term {
        self.snapshot
            .as_ref()
            .map_or(Term::ZERO, |marker| marker.meta.last.term)
    }

    /// The last index: the last entry, or the snapshot's when no entry follows it.
    #[must_use]
    pub(crate) fn last_index(&self) -> LogIndex {
        self.entries
            .last_index()
            .unwrap_or_else(|| self.snapshot_index())
    }

    /// The segment holding the oldest live entry, which every newer segment must outlive.
    #[must_use]
    pub(crate) fn oldest_segment(&self) -> Option<u64> {
        self.entries.first().map(|(_, location)| location.segment)
    }

    /// The last live entry held in a segment older than `segment`: compacting up to it frees
    /// those segments of this group (an entry's segment never decreases with its index).
    #[must_use]
    pub(crate) fn last_index_before_segment(&self, segment: u64) -> Option<LogIndex> {
        self.entries
            .range(LogIndex::ZERO, LogIndex(u64::MAX))
            .take_while(|(_, location)| location.segment < segment)
            .last()
            .map(|(index, _)| index)
    }

    /// Applies one record. Returns the snapshot marker that is no longer in force (the one it
    /// replaced, or itself when it is older than the current one), whose file may be deleted
    /// once this record is durable.
    ///
    /// # Errors
    /// A sentence when the record cannot follow the current state (an entry at or below the
    /// snapshot): corruption or a bug, never a torn write.
    pub(crate) fn apply(
        &mut self,
        effect: Effect,
        location: Location,
    ) -> Result<Option<SnapshotMarker>, String> {
        match effect {
            Effect::Entry { index, .. } => self.apply_entry(index, location).map(|()| None),
            Effect::HardState(hard_state) => {
                self.hard_state = hard_state;
                Ok(None)
            }
            Effect::Snapshot(marker) => Ok(self.install(marker)),
            Effect::Compaction(marker) => Ok(self.compact(marker)),
            Effect::Destroy(tombstone) => {
                self.entries.clear();
                self.recent.clear();
                self.hard_state = tombstone;
                Ok(self.snapshot.take())
            }
        }
    }

    fn apply_entry(&mut self, index: LogIndex, location: Location) -> Result<(), String> {
        if index <= self.snapshot_index() {
            return Err(format!(
                "entry {index} is at or below the snapshot at {}",
                self.snapshot_index()
            ));
        }
        self.entries.put(index, location);
        self.recent.truncate_from(index);
        Ok(())
    }

    fn install(&mut self, marker: SnapshotMarker) -> Option<SnapshotMarker> {
        self.entries.clear();
        self.recent.clear();
        self.hard_state.commit = self.hard_state.commit.max(marker.index());
        self.snapshot.replace(marker)
    }

    fn compact(&mut self, marker: SnapshotMarker) -> Option<SnapshotMarker> {
        // A group with no snapshot adopts even one at index 0: a checkpoint repeats the
        // bootstrap snapshot (index 0, the initial membership) as a compaction, and once the
        // segment holding the original install is deleted that copy is the only one.
        if self.snapshot.is_some() && marker.index() <= self.snapshot_index() {
            return Some(marker);
        }
        self.entries.keep_from(marker.index().next());
        self.recent.keep_from(marker.index().next());
        self.snapshot.replace(marker)
    }

    /// Keeps `entry` (just made durable and indexed) among the recent ones, evicting the
    /// oldest past the cache's limits.
    pub(crate) fn remember(&mut self, entry: Entry, limits: RecentLimits) {
        if self.entries.get(entry.index).is_none() {
            return;
        }
        self.recent.remember(entry, limits);
    }

    /// Checks, after recovery, that the entries follow the snapshot without a gap.
    ///
    /// # Errors
    /// A sentence naming the first missing index, and the location of the entry after it.
    pub(crate) fn check_contiguous(&self) -> Result<(), (String, Location)> {
        let mut expected = self.snapshot_index().next();
        for (index, location) in self.entries.range(LogIndex::ZERO, LogIndex(u64::MAX)) {
            if index != expected {
                let reason = format!("entry {expected} is missing before entry {index}");
                return Err((reason, *location));
            }
            expected = expected.next();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::{LogId, SnapshotMeta};

    fn at(segment: u64) -> Location {
        Location {
            segment,
            offset: 0,
            frame_bytes: 0,
            term: Term(1),
        }
    }

    fn entry(index: u64) -> Effect {
        Effect::Entry {
            index: LogIndex(index),
            term: Term(1),
        }
    }

    fn marker(index: u64) -> SnapshotMarker {
        SnapshotMarker {
            meta: SnapshotMeta {
                last: LogId::new(Term(1), LogIndex(index)),
                membership: Default::default(),
            },
            file_name: format!("s{index}"),
            data_bytes: 0,
            data_checksum: 0,
        }
    }

    #[test]
    fn an_entry_replaces_the_suffix_from_its_index() {
        let mut group = GroupState::default();
        for index in 1..=5 {
            group.apply(entry(index), at(1)).unwrap();
        }
        group.apply(entry(3), at(2)).unwrap();
        assert_eq!(group.last_index(), LogIndex(3));
        assert_eq!(group.entries.get(LogIndex(3)).unwrap().segment, 2);
    }

    #[test]
    fn compaction_drops_covered_entries_and_returns_the_old_marker() {
        let mut group = GroupState::default();
        for index in 1..=5 {
            group.apply(entry(index), at(index)).unwrap();
        }
        assert_eq!(group.apply(Effect::Compaction(marker(2)), at(9)), Ok(None));
        let replaced = group.apply(Effect::Compaction(marker(4)), at(9)).unwrap();
        assert_eq!(replaced, Some(marker(2)));
        assert_eq!(group.oldest_segment(), Some(5));
        group.check_contiguous().unwrap();
    }

    #[test]
    fn an_entry_below_the_snapshot_is_impossible() {
        let mut group = GroupState::default();
        group.apply(Effect::Snapshot(marker(4)), at(1)).unwrap();
        assert!(group.apply(entry(4), at(1)).is_err());
        assert_eq!(group.hard_state.commit, LogIndex(4));
    }

    #[test]
    fn a_gap_is_found_after_recovery() {
        let mut group = GroupState::default();
        group.apply(entry(1), at(1)).unwrap();
        group.apply(entry(3), at(1)).unwrap();
        assert!(group.check_contiguous().is_err());
    }

    /// The index as it was before `Locations`: one map, which keeps gaps exactly as records
    /// leave them. The model for the property below.
    #[derive(Default)]
    struct MapModel {
        snapshot: LogIndex,
        entries: BTreeMap<LogIndex, Location>,
    }

    impl MapModel {
        fn apply(&mut self, op: &Op, location: Location) {
            match *op {
                Op::Entry(index) => {
                    if index > self.snapshot {
                        self.entries.split_off(&index);
                        self.entries.insert(index, location);
                    }
                }
                Op::Compaction(index) => {
                    if index > self.snapshot {
                        self.entries = self.entries.split_off(&index.next());
                        self.snapshot = index;
                    }
                }
                Op::Snapshot(index) => {
                    self.entries.clear();
                    self.snapshot = index;
                }
            }
        }

        fn check_contiguous(&self) -> Result<(), (String, Location)> {
            let mut expected = self.snapshot.next();
            for (index, location) in &self.entries {
                if *index != expected {
                    return Err((
                        format!("entry {expected} is missing before entry {index}"),
                        *location,
                    ));
                }
                expected = expected.next();
            }
            Ok(())
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Entry(LogIndex),
        Compaction(LogIndex),
        Snapshot(LogIndex),
    }

    /// Ops around the current end of the log: appends, overwrites, gaps, compactions and
    /// snapshots, some behind what the state holds.
    fn op() -> impl proptest::strategy::Strategy<Value = (u8, i64)> {
        (0u8..10, -6i64..4)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn the_index_matches_a_map_of_every_entry(ops in proptest::collection::vec(op(), 1..80)) {
            let mut state = GroupState::default();
            let mut model = MapModel::default();
            for (step, (kind, delta)) in ops.into_iter().enumerate() {
                let last = state.last_index().0 as i64;
                let index = LogIndex(u64::try_from((last + delta).max(1)).unwrap());
                let op = match kind {
                    0 => Op::Compaction(index),
                    1 => Op::Snapshot(index),
                    _ => Op::Entry(index),
                };
                let location = at(step as u64);
                let effect = match op {
                    Op::Entry(index) => Effect::Entry { index, term: Term(1) },
                    Op::Compaction(index) => Effect::Compaction(marker(index.0)),
                    Op::Snapshot(index) => Effect::Snapshot(marker(index.0)),
                };
                let applied = state.apply(effect, location);
                proptest::prop_assert_eq!(applied.is_ok(), !matches!(op, Op::Entry(i) if i <= model.snapshot));
                model.apply(&op, location);
                if applied.is_ok()
                    && let Op::Entry(index) = op {
                        let entry = Entry { term: Term(1), index, payload: flotilla_raft::EntryPayload::Normal(vec![].into()) };
                        state.remember(entry, RecentLimits { entries_max: 4, bytes_max: u64::MAX });
                    }
                let last = model.entries.last_key_value().map_or(model.snapshot, |(index, _)| *index);
                proptest::prop_assert_eq!(state.last_index(), last);
                proptest::prop_assert_eq!(state.snapshot_index(), model.snapshot);
                proptest::prop_assert_eq!(state.oldest_segment(), model.entries.first_key_value().map(|(_, l)| l.segment));
                proptest::prop_assert_eq!(state.check_contiguous(), model.check_contiguous());
                for probe in 0..=last.0 + 2 {
                    proptest::prop_assert_eq!(state.entries.get(LogIndex(probe)), model.entries.get(&LogIndex(probe)));
                }
                let low = LogIndex(last.0.saturating_sub(3));
                let ranged: Vec<(LogIndex, Location)> = state.entries.range(low, last.next()).map(|(i, l)| (i, *l)).collect();
                let expected: Vec<(LogIndex, Location)> = model.entries.range(low..last.next()).map(|(i, l)| (*i, *l)).collect();
                proptest::prop_assert_eq!(ranged, expected);
                // The cache: a gapless run of at most 4 entries the index still holds.
                let cached: Vec<LogIndex> = state.recent.iter().map(|(index, entry)| {
                    assert_eq!(index, entry.index);
                    index
                }).collect();
                proptest::prop_assert!(cached.len() <= 4);
                proptest::prop_assert!(cached.windows(2).all(|pair| pair[1] == pair[0].next()));
                proptest::prop_assert!(cached.iter().all(|&index| model.entries.contains_key(&index)));
            }
        }
    }
}
