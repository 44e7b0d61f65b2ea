//! An in-memory persisted log: the test double for the write-ahead log, and the "disk" of the
//! simulator (what a crash keeps).

use super::reader::{InitialState, LogError, LogReader};
use crate::entry::{Entry, HardState, Snapshot};
use crate::ready::Persist;
use crate::types::{LogIndex, Term};

/// A group's persisted state held in memory: snapshot, entries after it, and hard state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemLog {
    snapshot: Snapshot,
    entries: Vec<Entry>,
    hard_state: HardState,
}

impl MemLog {
    /// An empty log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `persist` durable, in the order `Ready` documents.
    pub fn persist(&mut self, persist: &Persist) {
        if let Some(snapshot) = &persist.snapshot {
            self.install_snapshot(snapshot.clone());
        }
        self.append(&persist.entries);
        if let Some(hard_state) = persist.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(snapshot) = &persist.compaction {
            self.compact(snapshot.clone());
        }
    }

    /// Appends `entries`, first dropping every entry at or after `entries[0].index`.
    ///
    /// # Panics
    /// If the entries would leave a gap or overwrite the snapshot: a bug in the caller.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.snapshot.meta.last.index,
            "append over the snapshot"
        );
        assert!(
            first.index <= self.last_index().next(),
            "append leaves a gap"
        );
        let keep = (first.index.0 - self.first_index().0) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Replaces the whole log with a snapshot received from a leader.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) {
        self.entries.clear();
        self.hard_state.commit = self.hard_state.commit.max(snapshot.meta.last.index);
        self.snapshot = snapshot;
    }

    /// Stores a snapshot taken locally and drops the entries it covers.
    ///
    /// # Panics
    /// If the snapshot is past the last entry or older than the current one.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.last.index;
        assert!(index <= self.last_index(), "compaction past the last entry");
        if index <= self.snapshot.meta.last.index {
            return;
        }
        let drop = (index.0 - self.snapshot.meta.last.index.0) as usize;
        self.entries.drain(..drop);
        self.snapshot = snapshot;
    }

    /// The persisted hard state.
    #[must_use]
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Every entry after the snapshot.
    #[must_use]
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    fn offset(&self, index: LogIndex) -> Result<usize, LogError> {
        if index <= self.snapshot.meta.last.index {
            return Err(LogError::Compacted(index));
        }
        if index > self.last_index() {
            return Err(LogError::Unavailable(index));
        }
        Ok((index.0 - self.first_index().0) as usize)
    }
}

impl LogReader for MemLog {
    fn initial_state(&self) -> Result<InitialState, LogError> {
        Ok(InitialState {
            hard_state: self.hard_state,
            snapshot_meta: self.snapshot.meta.clone(),
        })
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: u64,
    ) -> Result<Vec<Entry>, LogError> {
        if low >= high {
            return Ok(Vec::new());
        }
        let start = self.offset(low)?;
        let end = self.offset(high.prev())? + 1;
        let mut bytes_total = 0;
        let mut out = Vec::new();
        for entry in self.entries.get(start..end).unwrap_or_default() {
            bytes_total += entry.payload_bytes();
            if !out.is_empty() && bytes_total > bytes_max {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Result<Term, LogError> {
        if index == self.snapshot.meta.last.index {
            return Ok(self.snapshot.meta.last.term);
        }
        let offset = self.offset(index)?;
        self.entries
            .get(offset)
            .map(|entry| entry.term)
            .ok_or(LogError::Unavailable(index))
    }

    fn first_index(&self) -> LogIndex {
        self.snapshot.meta.last.index.next()
    }

    fn last_index(&self) -> LogIndex {
        self.snapshot
            .meta
            .last
            .index
            .plus(self.entries.len() as u64)
    }

    fn snapshot(&self) -> Result<Snapshot, LogError> {
        Ok(self.snapshot.clone())
    }
}
