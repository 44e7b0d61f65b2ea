//! `GroupLog`: one group's view of the shared log, implementing `flotilla_raft::LogReader`
//! with exactly the semantics of `flotilla_raft::MemLog` (same errors, `Compacted` at or below
//! the snapshot, `Unavailable` past the end, `term()` valid at the snapshot index).

use super::Shared;
use super::body::{Body, SnapshotMarker};
use super::index::{GroupState, Location};
use super::record::decode;
use super::segment::Segment;
use super::snapfile;
use super::spool;
use flotilla_raft::{
    Entry, GroupId, HardState, InitialState, LogError, LogIndex, LogReader, Snapshot,
    SnapshotChunk, Term,
};
use std::sync::Arc;

/// The read handle of one group. Cheap to clone; sees every write that has returned.
#[derive(Clone)]
pub struct GroupLog {
    shared: Arc<Shared>,
    group: GroupId,
}

impl std::fmt::Debug for GroupLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupLog")
            .field("group", &self.group)
            .finish()
    }
}

/// Where one entry's record lies on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLocation {
    /// The segment's sequence number.
    pub segment: u64,
    /// The record's offset inside the segment file.
    pub offset: u64,
    /// The record's size, header included.
    pub frame_bytes: u32,
}

impl GroupLog {
    pub(crate) fn new(shared: Arc<Shared>, group: GroupId) -> Self {
        Self { shared, group }
    }

    /// The group this handle reads.
    #[must_use]
    pub fn group_id(&self) -> GroupId {
        self.group
    }

    /// The persisted hard state.
    #[must_use]
    pub fn hard_state(&self) -> HardState {
        self.with_state(|state| state.hard_state)
    }

    /// Where entry `index` is stored: its segment's sequence number, the record's offset in it
    /// and the record's size. For diagnostics and for tests that damage a record on purpose.
    #[must_use]
    pub fn record_location(&self, index: LogIndex) -> Option<RecordLocation> {
        self.with_state(|state| {
            state.entries.get(index).map(|location| RecordLocation {
                segment: location.segment,
                offset: location.offset,
                frame_bytes: location.frame_bytes,
            })
        })
    }

    /// The group's snapshot, read now on this thread whatever its size: what a node restores
    /// its state machine from at start, before any loop runs. (Raft's `snapshot()`, for
    /// sending, loads a large one off the loop instead.)
    ///
    /// # Errors
    /// The file is missing (`SnapshotTemporarilyUnavailable`), unreadable, or does not match
    /// its marker.
    pub fn load_snapshot(&self) -> Result<Snapshot, LogError> {
        match self.with_state(|state| state.snapshot.clone()) {
            Some(marker) => {
                snapfile::load(self.shared.fs.as_ref(), &self.shared.directory, &marker)
            }
            None => Ok(Snapshot::default()),
        }
    }

    fn with_state<R>(&self, read: impl FnOnce(&GroupState) -> R) -> R {
        let groups = self.shared.groups.read();
        match groups.get(&self.group) {
            Some(state) => read(state),
            None => read(&GroupState::default()),
        }
    }

    /// Extends `out` from the recent entries when they hold `low`, which is the common case (a
    /// follower's next entries, the entries to apply): one look-up and one clone per entry
    /// returned. Returns the index after the last entry added, or `None` (nothing added) when
    /// the cache starts after `low`.
    fn extend_from_memory(
        &self,
        low: LogIndex,
        high: LogIndex,
        budget: &mut Budget,
        out: &mut Vec<Entry>,
    ) -> Result<Option<LogIndex>, LogError> {
        self.with_state(|state| {
            check_range(state, low)?;
            check_range(state, high.prev())?;
            if state.recent.first().is_none_or(|(first, _)| first > low) {
                return Ok(None);
            }
            // The cache is a gapless run (`IndexRun`) ending where the log ends, so from `low` on
            // it holds every entry; the caller still checks where this stopped.
            let mut next = low;
            for (_, entry) in state.recent.range(low, high) {
                if !budget.admits(entry, out) {
                    break;
                }
                out.push(entry.clone());
                next = next.next();
            }
            Ok(Some(next))
        })
    }

    /// How many of the group's entries are cached in memory (for tests and status).
    #[must_use]
    pub fn recent_entry_count(&self) -> usize {
        self.with_state(|state| state.recent.len())
    }

    /// The locations of at most `count_max` entries from `low` on, below `high`, with their
    /// segments, after MemLog's range checks.
    fn locate_run(
        &self,
        low: LogIndex,
        high: LogIndex,
        count_max: usize,
    ) -> Result<Vec<(Location, Arc<Segment>)>, LogError> {
        let groups = self.shared.groups.read();
        let default = GroupState::default();
        let state = groups.get(&self.group).unwrap_or(&default);
        check_range(state, low)?;
        check_range(state, high.prev())?;
        let segments = self.shared.segments.read();
        state
            .entries
            .range(low, high)
            .take(count_max)
            .map(|(index, location)| {
                let segment = segments.get(&location.segment).cloned().ok_or_else(|| {
                    LogError::Storage(format!("entry {index} points at a deleted segment"))
                })?;
                Ok((*location, segment))
            })
            .collect()
    }

    /// Reads and checks the entry at `location`, expected to have `index`.
    fn read_entry(
        &self,
        location: &Location,
        segment: &Segment,
        index: LogIndex,
    ) -> Result<Entry, LogError> {
        let limit = self.shared.config.record_bytes_max;
        let decoded = segment
            .with_bytes(location.offset, location.frame_bytes as usize, |bytes| {
                decode(bytes, limit).and_then(|frame| Body::decode(&frame))
            })
            .map_err(|error| storage_error(segment, location, &error.to_string()))?
            .map_err(|error| storage_error(segment, location, &error.to_string()))?;
        match decoded {
            Body::Entry(entry) if entry.index == index && entry.term == location.term => Ok(entry),
            other => Err(storage_error(
                segment,
                location,
                &format!("expected entry {index}, found {other:?}"),
            )),
        }
    }
}

/// Entries located per look-up on the way to the segments.
const LOCATE_RUN: usize = 64;

/// `entries`' byte limit: stop once `bytes_max` is exceeded, but always return one entry.
struct Budget {
    bytes_max: u64,
    bytes_total: u64,
    spent: bool,
}

impl Budget {
    fn new(bytes_max: u64) -> Self {
        Self {
            bytes_max,
            bytes_total: 0,
            spent: false,
        }
    }

    /// Whether `entry` may join `out`; once it may not, the budget is spent.
    fn admits(&mut self, entry: &Entry, out: &[Entry]) -> bool {
        self.bytes_total += entry.payload_bytes();
        self.spent = !out.is_empty() && self.bytes_total > self.bytes_max;
        !self.spent
    }
}

fn storage_error(segment: &Segment, location: &Location, reason: &str) -> LogError {
    LogError::Storage(format!(
        "{} at offset {}: {reason}",
        segment.path.display(),
        location.offset
    ))
}

/// MemLog's `offset` check: `Compacted` at or below the snapshot, `Unavailable` past the end.
fn check_range(state: &GroupState, index: LogIndex) -> Result<(), LogError> {
    if index <= state.snapshot_index() {
        return Err(LogError::Compacted(index));
    }
    if index > state.last_index() {
        return Err(LogError::Unavailable(index));
    }
    Ok(())
}

impl LogReader for GroupLog {
    fn initial_state(&self) -> Result<InitialState, LogError> {
        Ok(self.with_state(|state| InitialState {
            hard_state: state.hard_state,
            snapshot_meta: state
                .snapshot
                .as_ref()
                .map(|marker| marker.meta.clone())
                .unwrap_or_default(),
        }))
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
        let mut budget = Budget::new(bytes_max);
        let mut out = Vec::new();
        let mut next = low;
        while next < high && !budget.spent {
            if let Some(reached) = self.extend_from_memory(next, high, &mut budget, &mut out)? {
                let moved = reached > next;
                next = reached;
                if moved || budget.spent {
                    continue;
                }
            }
            // Older than the cache: a short run from the segments, then the cache is asked
            // again. Each call costs what it returns, never the whole `[low, high)` (a leader
            // catching up a follower far behind asks for everything up to its last entry).
            let run = self.locate_run(next, high, LOCATE_RUN)?;
            if run.is_empty() {
                return Err(LogError::Storage(format!("entry {next} has no location")));
            }
            for (location, segment) in run {
                let entry = self.read_entry(&location, &segment, next)?;
                if !budget.admits(&entry, &out) {
                    break;
                }
                out.push(entry);
                next = next.next();
            }
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Result<Term, LogError> {
        self.with_state(|state| {
            if index == state.snapshot_index() {
                return Ok(state.snapshot_term());
            }
            check_range(state, index)?;
            state
                .entries
                .get(index)
                .map(|location| location.term)
                .ok_or(LogError::Unavailable(index))
        })
    }

    fn first_index(&self) -> LogIndex {
        self.with_state(|state| state.snapshot_index().next())
    }

    fn last_index(&self) -> LogIndex {
        self.with_state(GroupState::last_index)
    }

    /// The snapshot to send a follower. A small one is read at once. A large snapshot file is
    /// sent from the file a chunk at a time, through a reference (`spool`). A range whose
    /// state is in the engine is streamed into a spool off the loop first
    /// (`SnapshotTemporarilyUnavailable` until it is; see `snapshot_loads`), unless its newest
    /// spool still covers the log's note.
    fn snapshot(&self) -> Result<Snapshot, LogError> {
        let shared = &self.shared;
        let (fs, directory) = (shared.fs.as_ref(), &shared.directory);
        let marker = self.with_state(|state| state.snapshot.clone());
        let sent_from_file = |marker: &SnapshotMarker| {
            marker.is_engine_state()
                || (marker.has_file()
                    && marker.data_bytes > shared.config.snapshot_inline_bytes_max)
        };
        let Some(marker) = marker.filter(sent_from_file) else {
            return self.load_snapshot();
        };
        if let Some(shared_file) = shared.spools.share(self.group, marker.index()) {
            return Ok(shared_file);
        }
        if !shared.spools.has_room(fs, directory) {
            return Err(LogError::SnapshotTemporarilyUnavailable);
        }
        if !marker.is_engine_state() {
            let file = spool::FileRef {
                name: marker.file_name.clone(),
                data_bytes: marker.data_bytes,
            };
            let checksum = marker.data_checksum;
            return shared.spools.send_file(
                fs,
                directory,
                (self.group, marker.meta),
                file,
                checksum,
            );
        }
        let Some(produce) = shared.engine_snapshots.read().clone() else {
            return Err(LogError::Storage(format!(
                "group {}'s state is in the engine, and nothing produces its snapshots",
                self.group
            )));
        };
        let (group, shared_for_load) = (self.group, Arc::clone(shared));
        let spooled = shared
            .snapshot_loads
            .take_or_start(group, &marker, move || {
                let shared = shared_for_load;
                shared
                    .spools
                    .spool(shared.fs.as_ref(), &shared.directory, group, |file| {
                        produce(group, file)
                    })
            })?;
        // Closed meanwhile (no room for it, or its group destroyed): made again at next ask.
        if !shared.spools.acquire(&spooled) {
            return Err(LogError::SnapshotTemporarilyUnavailable);
        }
        Ok(spooled)
    }

    /// A chunk of a snapshot `snapshot()` gave: read from its file when it is a reference.
    fn snapshot_chunk(
        &self,
        snapshot: &Snapshot,
        offset: u64,
        bytes_max: u64,
    ) -> Result<SnapshotChunk, LogError> {
        let shared = &self.shared;
        match shared.spools.resolve(&snapshot.data) {
            Some(file) => shared.spools.read_chunk(&file, offset, bytes_max),
            None => Ok(SnapshotChunk::of_bytes(&snapshot.data, offset, bytes_max)),
        }
    }

    /// A transfer no longer reads `snapshot`: its file is closed once none does.
    fn snapshot_released(&self, snapshot: &Snapshot) {
        let shared = &self.shared;
        shared
            .spools
            .release(shared.fs.as_ref(), &shared.directory, snapshot);
    }
}
