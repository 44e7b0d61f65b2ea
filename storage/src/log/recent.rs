//! One group's most recently written entries, kept in memory so a leader replicating what it
//! just wrote needs no disk read: bounded in entries and in payload bytes.

use crate::log::run::IndexRun;
use flotilla_raft::{Entry, LogIndex};

/// What the cache of one group may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecentLimits {
    /// The most entries (0: the cache is off).
    pub(crate) entries_max: usize,
    /// The most payload bytes; the newest entry is kept even when it alone is larger.
    pub(crate) bytes_max: u64,
}

/// A run of a group's newest entries and their payload bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecentEntries {
    run: IndexRun<Entry>,
    bytes: u64,
}

impl RecentEntries {
    pub(crate) fn len(&self) -> usize {
        self.run.len()
    }

    /// Payload bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn first(&self) -> Option<(LogIndex, &Entry)> {
        self.run.first()
    }

    pub(crate) fn range(
        &self,
        low: LogIndex,
        high: LogIndex,
    ) -> impl Iterator<Item = (LogIndex, &Entry)> {
        self.run.range(low, high)
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (LogIndex, &Entry)> {
        self.run.iter()
    }

    /// Drops every index from `index` on.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        let dropped: u64 = self
            .run
            .range(index, LogIndex(u64::MAX))
            .map(|(_, entry)| entry.payload_bytes())
            .sum();
        self.bytes -= dropped;
        self.run.truncate_from(index);
    }

    /// Drops every index below `index`.
    pub(crate) fn keep_from(&mut self, index: LogIndex) {
        let dropped: u64 = self
            .run
            .range(LogIndex::ZERO, index)
            .map(|(_, entry)| entry.payload_bytes())
            .sum();
        self.bytes -= dropped;
        self.run.keep_from(index);
    }

    pub(crate) fn clear(&mut self) {
        self.run.clear();
        self.bytes = 0;
    }

    /// Appends `entry`, replacing what it overwrites (an entry at or below the newest one)
    /// and restarting from it after a gap (never expected), then evicts the oldest entries
    /// past either limit.
    pub(crate) fn remember(&mut self, entry: Entry, limits: RecentLimits) {
        if limits.entries_max == 0 {
            return;
        }
        let index = entry.index;
        self.truncate_from(index);
        let bytes = entry.payload_bytes();
        if let Err(entry) = self.run.push(index, entry) {
            self.clear();
            let _ = self.run.push(index, entry);
        }
        self.bytes += bytes;
        while self.run.len() > 1
            && (self.run.len() > limits.entries_max || self.bytes > limits.bytes_max)
        {
            if let Some((_, oldest)) = self.run.first() {
                self.bytes -= oldest.payload_bytes();
            }
            self.run.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::{EntryPayload, Term};

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Normal(vec![0; bytes].into()),
        }
    }

    #[test]
    fn the_cache_is_bounded_in_entries_and_in_bytes() {
        let limits = RecentLimits {
            entries_max: 4,
            bytes_max: 1000,
        };
        let mut recent = RecentEntries::default();
        for index in 1..=10 {
            recent.remember(entry(index, 100), limits);
        }
        assert_eq!((recent.len(), recent.bytes()), (4, 400));
        for index in 11..=13 {
            recent.remember(entry(index, 400), limits);
        }
        assert_eq!(
            (recent.len(), recent.bytes()),
            (2, 800),
            "bytes bound the count"
        );
        recent.remember(entry(14, 5000), limits);
        assert_eq!(
            (recent.len(), recent.bytes()),
            (1, 5000),
            "the newest stays"
        );
        recent.remember(entry(14, 10), limits);
        assert_eq!(
            (recent.len(), recent.bytes()),
            (1, 10),
            "an overwrite replaces it"
        );
        recent.truncate_from(LogIndex(14));
        assert_eq!((recent.len(), recent.bytes()), (0, 0));
    }
}
