//! What an inspection reports: each segment, each group, the findings and the totals. Plain data
//! that serializes as the JSON of `flotilla inspect --output json`.

use flotilla_raft::{GroupId, LogIndex, NodeId, Term};
use serde::Serialize;
use std::path::PathBuf;

/// Everything an inspection of one log found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogInspection {
    /// The log's directory.
    pub directory: PathBuf,
    /// Every segment file, oldest first.
    pub segments: Vec<SegmentReport>,
    /// Every group with persisted state, by id (from the records before the first damage).
    pub groups: Vec<GroupReport>,
    /// What is wrong, or what the next start would repair.
    pub findings: Vec<Finding>,
    /// Sums over the segments and groups.
    pub totals: Totals,
}

impl LogInspection {
    /// Whether a node would start on this log as it is: no finding is damage (a torn tail or an
    /// orphaned snapshot file is only a notice, which the next start repairs).
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.findings
            .iter()
            .all(|finding| finding.severity == Severity::Notice)
    }
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentReport {
    /// The file.
    pub file: PathBuf,
    /// Its sequence number (from its name).
    pub sequence: u64,
    /// Its length (preallocated segments are longer than what they hold).
    pub file_bytes: u64,
    /// Where its valid batches end; `None` when the scan stopped at damage.
    pub valid_bytes: Option<u64>,
    /// Records in the batches that checked out.
    pub record_count: u64,
    /// The torn write at its end that the next start cuts, if any.
    pub torn_tail: Option<TornReport>,
}

/// A write that never completed its sync, at the end of the newest segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TornReport {
    /// Where it starts: the next start cuts the segment here.
    pub offset: u64,
    /// How many bytes (up to the last non-zero one) would be discarded.
    pub discarded_bytes: u64,
}

/// One group's persisted state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupReport {
    /// The group (the range's id; the meta group is `flotilla_shard_manager::META_GROUP`).
    pub group: GroupId,
    /// The first entry in the log (`None` when the snapshot is all there is).
    pub first_index: Option<LogIndex>,
    /// The last index: the last entry's, or the snapshot's when no entry follows it.
    pub last_index: LogIndex,
    /// The term of that last index.
    pub last_term: Term,
    /// How many entries the log holds for the group.
    pub entry_count: u64,
    /// The persisted term, vote and commit index.
    pub hard_state: HardStateReport,
    /// What a start would apply up to: the state machines live in memory and are rebuilt from
    /// the snapshot plus the committed entries, so this is the larger of the snapshot's index
    /// and `min(commit, last_index)`.
    pub applied_index: LogIndex,
    /// The snapshot in force, if any.
    pub snapshot: Option<SnapshotReport>,
}

/// A group's hard state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HardStateReport {
    /// The latest term the replica saw.
    pub term: Term,
    /// Whom it voted for in that term.
    pub vote: Option<NodeId>,
    /// The highest index it knew committed.
    pub commit: LogIndex,
}

/// A group's snapshot marker and what its file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotReport {
    /// The last index the snapshot covers.
    pub index: LogIndex,
    /// The term of that index.
    pub term: Term,
    /// The snapshot file's name in the log's directory (empty: a snapshot without data,
    /// which has no file).
    pub file: String,
    /// The length the marker records.
    pub data_bytes: u64,
    /// The crc32c the marker records.
    pub data_checksum: u32,
    /// The file's length, `None` when it is missing (or there is none).
    pub file_bytes: Option<u64>,
    /// Whether the file's bytes were read and matched the marker's checksum (and, for a KV
    /// snapshot, the format's own checksum); `false` when not asked for or when they did not.
    pub verified: bool,
}

/// One thing wrong, or one repair the next start would make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Whether it stops a node from starting.
    pub severity: Severity,
    /// The file concerned.
    pub file: Option<PathBuf>,
    /// Where in the file.
    pub offset: Option<u64>,
    /// What is wrong, as a sentence.
    pub problem: String,
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The node would refuse to start, or data is damaged.
    Damage,
    /// The next start repairs it (a torn tail cut, an orphaned snapshot file deleted).
    Notice,
}

/// Sums over the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Segment files.
    pub segment_count: u64,
    /// Their lengths, summed.
    pub segment_bytes: u64,
    /// Records read.
    pub record_count: u64,
    /// Groups with persisted state.
    pub group_count: u64,
    /// Snapshot files in force.
    pub snapshot_count: u64,
    /// Their recorded lengths, summed.
    pub snapshot_bytes: u64,
}
