//! The per-group in-memory index: where each live entry of a group sits in the segments, plus
//! the group's hard state and newest snapshot marker. Recovery and live writes update it through
//! the same `apply`, so a reopened log is the log that was written.

use super::body::{Effect, SnapshotMarker};
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

/// One group's persisted state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupState {
    /// The newest snapshot, if the group has one.
    pub(crate) snapshot: Option<SnapshotMarker>,
    /// Live entries by index. Contiguous after `snapshot_index()` once recovery has finished.
    pub(crate) entries: BTreeMap<LogIndex, Location>,
    /// The persisted hard state.
    pub(crate) hard_state: HardState,
    /// The most recently written entries, served without a disk read. Always a suffix of
    /// `entries` (never an entry the index no longer holds).
    pub(crate) recent: BTreeMap<LogIndex, Entry>,
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
            .last_key_value()
            .map_or(self.snapshot_index(), |(index, _)| *index)
    }

    /// The segment holding the oldest live entry, which every newer segment must outlive.
    #[must_use]
    pub(crate) fn oldest_segment(&self) -> Option<u64> {
        self.entries
            .first_key_value()
            .map(|(_, location)| location.segment)
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
        }
    }

    fn apply_entry(&mut self, index: LogIndex, location: Location) -> Result<(), String> {
        if index <= self.snapshot_index() {
            return Err(format!(
                "entry {index} is at or below the snapshot at {}",
                self.snapshot_index()
            ));
        }
        // The common case appends past the last entry: only split when something conflicts.
        if self
            .entries
            .last_key_value()
            .is_some_and(|(last, _)| *last >= index)
        {
            self.entries.split_off(&index);
            self.recent.split_off(&index);
        }
        self.entries.insert(index, location);
        Ok(())
    }

    fn install(&mut self, marker: SnapshotMarker) -> Option<SnapshotMarker> {
        self.entries.clear();
        self.recent.clear();
        self.hard_state.commit = self.hard_state.commit.max(marker.index());
        self.snapshot.replace(marker)
    }

    fn compact(&mut self, marker: SnapshotMarker) -> Option<SnapshotMarker> {
        if marker.index() <= self.snapshot_index() {
            return Some(marker);
        }
        self.entries = self.entries.split_off(&marker.index().next());
        self.recent = self.recent.split_off(&marker.index().next());
        self.snapshot.replace(marker)
    }

    /// Keeps `entry` (just made durable and indexed) among the recent ones, evicting the
    /// oldest beyond `count_max`.
    pub(crate) fn remember(&mut self, entry: Entry, count_max: usize) {
        if count_max == 0 || !self.entries.contains_key(&entry.index) {
            return;
        }
        self.recent.insert(entry.index, entry);
        while self.recent.len() > count_max {
            self.recent.pop_first();
        }
    }

    /// Checks, after recovery, that the entries follow the snapshot without a gap.
    ///
    /// # Errors
    /// A sentence naming the first missing index, and the location of the entry after it.
    pub(crate) fn check_contiguous(&self) -> Result<(), (String, Location)> {
        let mut expected = self.snapshot_index().next();
        for (index, location) in &self.entries {
            if *index != expected {
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
        assert_eq!(group.entries[&LogIndex(3)].segment, 2);
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
}
