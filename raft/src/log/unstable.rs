//! The tail of the log the caller has not persisted yet: a received snapshot and new entries.

use crate::entry::{Entry, Snapshot};
use crate::types::{LogId, LogIndex};

/// Entries (and possibly a snapshot) that exist only in memory until `advance`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unstable {
    /// A snapshot received from the leader; it replaces the whole persisted log.
    pub(crate) snapshot: Option<Snapshot>,
    /// New entries; `entries[0]` has index `offset`.
    pub(crate) entries: Vec<Entry>,
    /// The index of the first unstable entry (one past the persisted log it extends).
    pub(crate) offset: LogIndex,
}

impl Unstable {
    pub(crate) fn new(offset: LogIndex) -> Self {
        Self {
            snapshot: None,
            entries: Vec::new(),
            offset,
        }
    }

    /// The last unstable index, if any entry or snapshot is unstable.
    pub(crate) fn last_index(&self) -> Option<LogIndex> {
        match (self.entries.last(), &self.snapshot) {
            (Some(entry), _) => Some(entry.index),
            (None, Some(snapshot)) => Some(snapshot.meta.last.index),
            (None, None) => None,
        }
    }

    /// The unstable entry at `index`.
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let position = index.0.checked_sub(self.offset.0)?;
        self.entries.get(usize::try_from(position).ok()?)
    }

    /// Appends `entries`, replacing every unstable entry at or after `entries[0].index`.
    /// Entries before `offset` are persisted ones that the new entries override.
    pub(crate) fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        if first.index <= self.offset {
            self.offset = first.index;
            self.entries.clear();
        } else {
            let keep = (first.index.0 - self.offset.0) as usize;
            assert!(
                keep <= self.entries.len(),
                "unstable append leaves a gap at {}",
                first.index
            );
            self.entries.truncate(keep);
        }
        self.entries.extend_from_slice(entries);
    }

    /// Forgets entries up to `persisted`, which the caller has made durable, if the entry there
    /// is still the one that was persisted.
    pub(crate) fn stable_to(&mut self, persisted: LogId) {
        let Some(entry) = self.entry(persisted.index) else {
            return;
        };
        if entry.term != persisted.term {
            return;
        }
        let drop = (persisted.index.0 - self.offset.0 + 1) as usize;
        self.entries.drain(..drop);
        self.offset = persisted.index.next();
    }

    /// Forgets the snapshot once the caller has made it durable.
    pub(crate) fn stable_snapshot(&mut self, index: LogIndex) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.meta.last.index == index)
        {
            self.snapshot = None;
        }
    }

    /// Replaces everything with a received snapshot.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.meta.last.index.next();
        self.entries.clear();
        self.snapshot = Some(snapshot);
    }
}
