//! Every limit of the log engine in one place, checked once by `validate()` when opening.

use crate::error::ConfigError;
pub use crate::log::SnapshotLoading;
use crate::log::batch_frame::{FRAME_BYTES, padded};
use crate::log::record::HEADER_BYTES;

/// The size of the header at the start of every segment file.
pub const SEGMENT_HEADER_BYTES: u64 = 32;

/// The limits and policies of a `LogEngine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// The size of one segment file; new segments are preallocated to this size.
    pub segment_bytes_max: u64,
    /// The largest payload a single record may carry (one entry, one hard state, one marker).
    pub record_bytes_max: u64,
    /// The most bytes of one batch: what is written between two syncs, its 32-byte header
    /// included. A batch whose header a crash lost can span at most this much.
    pub sync_bytes_max: u64,
    /// The most write calls that may wait for the group commit at once (a bounded queue).
    pub pending_writes_max: usize,
    /// Whether to `set_len` new segments to `segment_bytes_max` up front, so appends overwrite
    /// allocated blocks instead of growing the file.
    pub preallocate: bool,
    /// How many of each group's most recently written entries are kept in memory, so reads of
    /// fresh entries (a leader replicating what it just wrote) need no disk read. 0 turns the
    /// cache off.
    pub recent_entries_per_group: usize,
    /// The most payload bytes of each group's recent entries kept in memory (the newest entry
    /// stays even when larger): with large values the count alone would let every group hold
    /// hundreds of megabytes.
    pub recent_bytes_per_group: u64,
    /// Where a snapshot larger than `snapshot_inline_bytes_max`, read to be sent to a follower,
    /// is loaded: off the Raft loop, which is answered "temporarily unavailable" meanwhile.
    pub snapshot_loading: SnapshotLoading,
    /// Snapshots up to this size are read at once, on the caller's thread.
    pub snapshot_inline_bytes_max: u64,
    /// The most snapshots of ranges in the engine being streamed into spool files off the
    /// loop, or streamed and not yet taken, at once. At least 1.
    pub snapshot_loads_max: usize,
    /// The most snapshot files open to be sent at once, each held until the transfers reading
    /// it end (a new ask past it waits, "temporarily unavailable"). At least 1.
    pub snapshot_sends_max: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes_max: 64 << 20,
            record_bytes_max: 8 << 20,
            sync_bytes_max: 16 << 20,
            pending_writes_max: 1024,
            preallocate: true,
            recent_entries_per_group: 512,
            recent_bytes_per_group: 4 << 20,
            snapshot_loading: SnapshotLoading::Background,
            snapshot_inline_bytes_max: 1 << 20,
            snapshot_loads_max: 4,
            snapshot_sends_max: 64,
        }
    }
}

impl LogConfig {
    /// Small limits for tests: segments roll over every few records.
    #[must_use]
    pub fn small_for_tests() -> Self {
        Self {
            segment_bytes_max: 16 << 10,
            record_bytes_max: 4 << 10,
            sync_bytes_max: 8 << 10,
            pending_writes_max: 64,
            preallocate: true,
            recent_entries_per_group: 8,
            recent_bytes_per_group: 16 << 10,
            ..Self::default()
        }
    }

    /// What the recent-entries cache of each group may hold.
    pub(crate) fn recent_limits(&self) -> crate::log::recent::RecentLimits {
        crate::log::recent::RecentLimits {
            entries_max: self.recent_entries_per_group,
            bytes_max: self.recent_bytes_per_group,
        }
    }

    /// Checks the limits against each other.
    ///
    /// # Errors
    /// A sentence naming the first limit that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let record_bytes_total = self.record_bytes_max + HEADER_BYTES as u64;
        if self.record_bytes_max == 0 {
            return Err(ConfigError::RecordBytesMaxZero);
        }
        if self.snapshot_loads_max == 0 {
            return Err(ConfigError::SnapshotLoadsMaxZero);
        }
        if self.snapshot_sends_max == 0 {
            return Err(ConfigError::SnapshotSendsMaxZero);
        }
        // A segment holds at least one batch of one record, and the mark after it.
        let batch_bytes_max = FRAME_BYTES + padded(record_bytes_total) + FRAME_BYTES;
        if SEGMENT_HEADER_BYTES + batch_bytes_max > self.segment_bytes_max {
            return Err(ConfigError::RecordDoesNotFitSegment {
                record_bytes_max: self.record_bytes_max,
                segment_bytes_max: self.segment_bytes_max,
            });
        }
        if self.sync_bytes_max < FRAME_BYTES + record_bytes_total {
            return Err(ConfigError::SyncSmallerThanRecord {
                sync_bytes_max: self.sync_bytes_max,
                record_bytes_max: self.record_bytes_max,
            });
        }
        if self.segment_bytes_max > u64::from(u32::MAX) {
            return Err(ConfigError::SegmentTooLarge(self.segment_bytes_max));
        }
        if self.pending_writes_max == 0 {
            return Err(ConfigError::PendingWritesMaxZero);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_test_configs_are_valid() {
        LogConfig::default().validate().unwrap();
        LogConfig::small_for_tests().validate().unwrap();
    }

    #[test]
    fn record_larger_than_segment_is_rejected() {
        let config = LogConfig {
            record_bytes_max: 1 << 20,
            segment_bytes_max: 1 << 20,
            ..LogConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::RecordDoesNotFitSegment { .. })
        ));
    }

    #[test]
    fn zero_pending_writes_is_rejected() {
        let config = LogConfig {
            pending_writes_max: 0,
            ..LogConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::PendingWritesMaxZero));
    }
}
