//! The one trait through which Raft reads its persisted log: implemented by `MemLog` here and
//! by the write-ahead log engine in `flotilla-storage`. Writes never go through it; they leave
//! Raft in `Ready` and the caller performs them.

use crate::entry::{Entry, HardState, Snapshot, SnapshotMeta};
use crate::types::{LogIndex, Term};
use thiserror::Error;

/// What a replica restarts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The newest snapshot the log holds (default when there is none).
    pub snapshot_meta: SnapshotMeta,
}

/// Why a read from the log failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LogError {
    /// The entry was compacted into a snapshot; it no longer exists. Send a snapshot instead.
    #[error("entry {0} was compacted into a snapshot")]
    Compacted(LogIndex),
    /// The entry is past the end of the log.
    #[error("entry {0} is past the end of the log")]
    Unavailable(LogIndex),
    /// The snapshot is being built; try again later.
    #[error("the snapshot is temporarily unavailable; try again later")]
    SnapshotTemporarilyUnavailable,
    /// The storage itself failed; the node must stop.
    #[error("the log storage failed: {0}")]
    Storage(String),
}

/// Reads a group's persisted log. Every method sees everything the caller has persisted
/// (acknowledged with `advance`), and nothing else.
pub trait LogReader {
    /// The hard state and snapshot to restart from.
    fn initial_state(&self) -> Result<InitialState, LogError>;
    /// Entries in `[low, high)`, stopping once `bytes_max` is exceeded but always at least one.
    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        bytes_max: u64,
    ) -> Result<Vec<Entry>, LogError>;
    /// The term of the entry at `index`; valid from the snapshot's last index to the last index.
    fn term(&self, index: LogIndex) -> Result<Term, LogError>;
    /// The first index that still has an entry (the snapshot's last index + 1).
    fn first_index(&self) -> LogIndex;
    /// The last index persisted (the snapshot's last index when no entry follows it).
    fn last_index(&self) -> LogIndex;
    /// The newest snapshot, to send to a follower that is too far behind. Its `data` may be a
    /// reference the log resolves in `snapshot_chunk` (a file it streams from), so a leader
    /// holds one chunk of a large snapshot at a time, never the whole.
    fn snapshot(&self) -> Result<Snapshot, LogError>;

    /// The bytes of `snapshot` (as `snapshot()` returned it) from `offset` on, at most
    /// `bytes_max` of them (at least one unless the snapshot ends at `offset`), and whether
    /// they are its last. By default the bytes of `snapshot.data` itself.
    ///
    /// # Errors
    /// `SnapshotTemporarilyUnavailable` to be asked again later; `Compacted` if the snapshot
    /// can no longer be read (replaced by a newer one: it is given up, and the follower sent
    /// the log's newest snapshot afresh); `Storage` if the storage failed (the replica stops).
    fn snapshot_chunk(
        &self,
        snapshot: &Snapshot,
        offset: u64,
        bytes_max: u64,
    ) -> Result<SnapshotChunk, LogError> {
        Ok(SnapshotChunk::of_bytes(&snapshot.data, offset, bytes_max))
    }

    /// Raft no longer sends `snapshot` (as `snapshot()` gave it) to one follower: that
    /// transfer ended, was given up, or its leader stepped down. A log that streams snapshots
    /// from files may close one no transfer reads any more. By default nothing.
    fn snapshot_released(&self, snapshot: &Snapshot) {
        let _ = snapshot;
    }
}

/// A piece of a snapshot being sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot's bytes from the offset asked for.
    pub data: Vec<u8>,
    /// Whether they end the snapshot.
    pub done: bool,
}

impl SnapshotChunk {
    /// The chunk of `bytes` from `offset` (clamped to its length), at most `bytes_max` long.
    #[must_use]
    pub fn of_bytes(bytes: &[u8], offset: u64, bytes_max: u64) -> Self {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start
            .saturating_add(usize::try_from(bytes_max).unwrap_or(usize::MAX))
            .min(bytes.len());
        Self {
            data: bytes.get(start..end).unwrap_or_default().to_vec(),
            done: end == bytes.len(),
        }
    }
}
