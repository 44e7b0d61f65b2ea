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
    /// The newest snapshot, to send to a follower that is too far behind.
    fn snapshot(&self) -> Result<Snapshot, LogError>;
}
