//! The log as one replica sees it: persisted entries behind `LogReader`, the unstable tail, and
//! the commit and apply pointers (`snapshot <= applied <= committed <= last`).

use super::reader::{LogError, LogReader};
use super::unstable::Unstable;
use crate::entry::{Entry, Snapshot};
use crate::types::{LogId, LogIndex, Term};

/// A replica's log.
#[derive(Debug)]
pub struct RaftLog<L> {
    store: L,
    pub(crate) unstable: Unstable,
    committed: LogIndex,
    applied: LogIndex,
}

impl<L: LogReader> RaftLog<L> {
    /// The log over a persisted store, starting from what it holds.
    ///
    /// # Errors
    /// If the store cannot be read.
    pub fn new(store: L) -> Result<Self, LogError> {
        let initial = store.initial_state()?;
        let snapshot_index = initial.snapshot_meta.last.index;
        let last = store.last_index();
        let committed = initial.hard_state.commit.clamp(snapshot_index, last);
        Ok(Self {
            unstable: Unstable::new(last.next()),
            store,
            committed,
            applied: snapshot_index,
        })
    }

    /// The persisted store.
    pub fn store(&self) -> &L {
        &self.store
    }

    pub(crate) fn store_mut(&mut self) -> &mut L {
        &mut self.store
    }

    pub(crate) fn into_store(self) -> L {
        self.store
    }

    /// The highest index known committed.
    pub fn committed(&self) -> LogIndex {
        self.committed
    }

    /// The highest index applied to the state machine.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The last index, persisted or not.
    pub fn last_index(&self) -> LogIndex {
        self.unstable
            .last_index()
            .unwrap_or_else(|| self.store.last_index())
    }

    /// The last index the caller has persisted that the unstable tail does not override.
    pub fn persisted_index(&self) -> LogIndex {
        if self.unstable.snapshot.is_some() {
            return LogIndex::ZERO;
        }
        self.store.last_index().min(self.unstable.offset.prev())
    }

    /// The first index that still holds an entry.
    pub fn first_index(&self) -> LogIndex {
        match &self.unstable.snapshot {
            Some(snapshot) => snapshot.meta.last.index.next(),
            None => self.store.first_index(),
        }
    }

    /// The id of the last entry.
    pub fn last_log_id(&self) -> LogId {
        let index = self.last_index();
        let term = self.term(index).unwrap_or(Term::ZERO);
        LogId::new(term, index)
    }

    /// The term of the entry at `index` (or of the snapshot that ends there).
    ///
    /// # Errors
    /// `Compacted` before the snapshot, `Unavailable` past the end, or a storage failure.
    pub fn term(&self, index: LogIndex) -> Result<Term, LogError> {
        if index >= self.unstable.offset {
            return self
                .unstable
                .entry(index)
                .map(|entry| entry.term)
                .ok_or(LogError::Unavailable(index));
        }
        match &self.unstable.snapshot {
            Some(snapshot) if index == snapshot.meta.last.index => Ok(snapshot.meta.last.term),
            Some(_) => Err(LogError::Compacted(index)),
            None => self.store.term(index),
        }
    }

    /// Whether the log holds `log_id`.
    pub fn matches(&self, log_id: LogId) -> bool {
        self.term(log_id.index) == Ok(log_id.term)
    }

    /// Entries in `[low, high)`, at most `bytes_max` of payload but at least one.
    ///
    /// # Errors
    /// If part of the range is compacted or missing.
    pub fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: u64,
    ) -> Result<Vec<Entry>, LogError> {
        if low >= high {
            return Ok(Vec::new());
        }
        if high > self.last_index().next() {
            return Err(LogError::Unavailable(high.prev()));
        }
        let mut out = Vec::new();
        if low < self.unstable.offset {
            if self.unstable.snapshot.is_some() {
                return Err(LogError::Compacted(low));
            }
            let stable_high = high.min(self.unstable.offset);
            out = self.store.entries(low, stable_high, bytes_max)?;
            if out
                .last()
                .is_none_or(|entry| entry.index < stable_high.prev())
            {
                return Ok(out);
            }
        }
        let mut bytes_total: u64 = out.iter().map(Entry::payload_bytes).sum();
        let unstable_low = low.max(self.unstable.offset);
        let mut index = unstable_low;
        while index < high {
            let Some(entry) = self.unstable.entry(index) else {
                break;
            };
            bytes_total += entry.payload_bytes();
            if !out.is_empty() && bytes_total > bytes_max {
                break;
            }
            out.push(entry.clone());
            index = index.next();
        }
        Ok(out)
    }

    /// The first index of `entries` whose term differs from the log's (or that the log does not
    /// hold yet), if any.
    pub(crate) fn find_conflict(&self, entries: &[Entry]) -> Option<LogIndex> {
        entries
            .iter()
            .find(|entry| !self.matches(entry.log_id()))
            .map(|entry| entry.index)
    }

    /// Fast backtracking (Raft §5.3 optimization): the largest index at or before `index` whose
    /// term is at most `term`. A compacted position counts as a match of term zero.
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> LogId {
        let mut probe = index.min(self.last_index());
        loop {
            match self.term(probe) {
                Ok(found) if found <= term => return LogId::new(found, probe),
                Ok(_) if probe > LogIndex::ZERO => probe = probe.prev(),
                _ => return LogId::new(Term::ZERO, probe),
            }
        }
    }

    /// Appends entries that follow the log's tail (or override an uncommitted suffix).
    ///
    /// # Panics
    /// If the entries would override a committed entry: a safety bug.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.committed,
            "entry {} conflicts with committed entry {}",
            first.index,
            self.committed
        );
        assert!(
            first.index <= self.last_index().next(),
            "append leaves a gap"
        );
        self.unstable.truncate_and_append(entries);
    }

    /// AppendEntries on a follower (Raft §5.3): if the log holds `prev`, append the new part of
    /// `entries` and return the index of the last entry they cover.
    pub(crate) fn try_append(&mut self, prev: LogId, entries: &[Entry]) -> Option<LogIndex> {
        if !self.matches(prev) {
            return None;
        }
        let last_new = prev.index.plus(entries.len() as u64);
        if let Some(conflict) = self.find_conflict(entries) {
            let skip = (conflict.0 - prev.index.0 - 1) as usize;
            self.append(entries.get(skip..).unwrap_or_default());
        }
        Some(last_new)
    }

    /// Moves the commit index forward to `index` (never back).
    ///
    /// # Panics
    /// If `index` is past the last entry: the caller did not check.
    pub(crate) fn commit_to(&mut self, index: LogIndex) {
        if index <= self.committed {
            return;
        }
        assert!(
            index <= self.last_index(),
            "commit {index} past the last index"
        );
        self.committed = index;
    }

    /// Records that the state machine applied everything up to `index`.
    pub(crate) fn applied_to(&mut self, index: LogIndex) {
        assert!(
            index <= self.committed,
            "applied {index} past the commit index"
        );
        assert!(index >= self.applied, "applied index moved back to {index}");
        self.applied = index;
    }

    /// Committed entries not yet handed to the state machine.
    ///
    /// # Errors
    /// If the store cannot read them (the node must stop).
    pub(crate) fn next_committed(&self, bytes_max: u64) -> Result<Vec<Entry>, LogError> {
        let low = self.applied.next().max(self.first_index());
        self.entries(low, self.committed.next(), bytes_max)
    }

    /// The caller persisted entries up to `log_id` and the snapshot at `snapshot_index`.
    pub(crate) fn stable_to(&mut self, log_id: Option<LogId>, snapshot_index: Option<LogIndex>) {
        if let Some(index) = snapshot_index {
            self.unstable.stable_snapshot(index);
        }
        if let Some(log_id) = log_id {
            self.unstable.stable_to(log_id);
        }
    }

    /// Replaces the log with a snapshot received from the leader.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        self.committed = snapshot.meta.last.index;
        self.unstable.restore(snapshot);
    }

    /// After the caller restored the state machine from the snapshot at `index`.
    pub(crate) fn applied_snapshot(&mut self, index: LogIndex) {
        self.applied = self.applied.max(index);
    }
}
