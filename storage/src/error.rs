//! The error of each operation, split by operation: configuring, decoding a record, recovering,
//! writing, and reading or writing a snapshot file.

use flotilla_raft::GroupId;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// Why a data directory cannot be used by this process. The node must not start.
#[derive(Debug, Error)]
pub enum DataDirError {
    /// The file system failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another process holds the directory's lock.
    #[error(
        "the data directory {path} is in use by another process (pid {holder}): one directory, \
         one process"
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// What the lock file says of its holder (its pid).
        holder: String,
    },
    /// The directory holds a log but no identity file.
    #[error(
        "the data directory {path} holds a log or an engine but no identity file: it was damaged or \
         is not a Flotilla data directory. The node must not start on it"
    )]
    IdentityMissing {
        /// The directory.
        path: PathBuf,
    },
    /// The identity file does not parse or fails its checksum.
    #[error("the identity file {path} is damaged ({reason}); the node must not start on it")]
    IdentityDamaged {
        /// The identity file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory was never bootstrapped.
    #[error("the data directory {path} was never bootstrapped")]
    NotBootstrapped {
        /// The directory.
        path: PathBuf,
    },
    /// The directory belongs to another cluster.
    #[error(
        "the data directory {path} belongs to cluster `{found}`, not `{expected}`: check \
         --data-dir and --cluster-id"
    )]
    WrongCluster {
        /// The directory.
        path: PathBuf,
        /// The cluster it belongs to.
        found: String,
        /// The cluster this node is configured for.
        expected: String,
    },
    /// The directory belongs to another node.
    #[error(
        "the data directory {path} belongs to node {found}, not node {expected}: check \
         --data-dir and --node-id"
    )]
    WrongNode {
        /// The directory.
        path: PathBuf,
        /// The node it belongs to.
        found: u64,
        /// The node this process is configured as.
        expected: u64,
    },
}

/// Why a `LogConfig` was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A record must be allowed to carry at least one byte.
    #[error("record_bytes_max must be greater than zero")]
    RecordBytesMaxZero,
    /// At least one snapshot must be able to load, or no follower far behind catches up.
    #[error("snapshot_loads_max must be at least 1")]
    SnapshotLoadsMaxZero,
    /// At least one snapshot file must be able to be sent, or no follower far behind catches up.
    #[error("snapshot_sends_max must be at least 1")]
    SnapshotSendsMaxZero,
    /// The largest record plus the segment header must fit in one segment.
    #[error(
        "a record of {record_bytes_max} bytes does not fit a segment of {segment_bytes_max} bytes"
    )]
    RecordDoesNotFitSegment {
        /// The configured record limit.
        record_bytes_max: u64,
        /// The configured segment size.
        segment_bytes_max: u64,
    },
    /// Every record must fit in one sync window.
    #[error(
        "sync_bytes_max {sync_bytes_max} is smaller than one record of {record_bytes_max} bytes"
    )]
    SyncSmallerThanRecord {
        /// The configured sync window.
        sync_bytes_max: u64,
        /// The configured record limit.
        record_bytes_max: u64,
    },
    /// Record offsets inside a segment are 32-bit.
    #[error("segment_bytes_max {0} is larger than 4 GiB")]
    SegmentTooLarge(u64),
    /// The group-commit queue needs room for at least one writer.
    #[error("pending_writes_max must be greater than zero")]
    PendingWritesMaxZero,
}

/// Why bytes could not be decoded as a record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The buffer ends before the record does.
    #[error("the record is truncated: {needed_bytes} bytes needed, {available_bytes} available")]
    Truncated {
        /// Bytes the record claims.
        needed_bytes: u64,
        /// Bytes left in the buffer.
        available_bytes: u64,
    },
    /// The length field is larger than any record may be.
    #[error("the record length {payload_bytes} exceeds the limit of {payload_bytes_max} bytes")]
    TooLarge {
        /// The length field.
        payload_bytes: u64,
        /// The configured limit.
        payload_bytes_max: u64,
    },
    /// The stored checksum does not match the bytes.
    #[error("the record checksum {stored:#010x} does not match the computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The kind byte names no known record kind.
    #[error("the record kind {0} is unknown")]
    UnknownKind(u8),
    /// The payload passed its checksum but does not decode as its kind.
    #[error("the record payload does not decode: {0}")]
    Payload(String),
}

/// Why the log could not be opened. The node must not start until an operator looks.
#[derive(Debug, Error)]
pub enum RecoveryError {
    /// The configuration is invalid.
    #[error("the log configuration is invalid: {0}")]
    Config(#[from] ConfigError),
    /// The file system failed.
    #[error("reading {file} failed: {source}")]
    Io {
        /// The file or directory.
        file: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Something the log wrote and synced has changed: an acknowledged write may be lost.
    #[error(
        "{file} is corrupt at offset {offset}: {problem}. The node must not start on this log; \
         keep it down and replace it (docs/operations.md, \"A damaged or lost disk\")"
    )]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// The offset of the damaged batch or structure.
        offset: u64,
        /// What is wrong, and why it cannot be a torn write.
        problem: Corruption,
    },
    /// The directory was bootstrapped but its log is gone: starting would forget promises.
    #[error(
        "the log in {directory} holds no segment, but this data directory was bootstrapped: \
         the log was deleted or moved. The node must not start empty under its old id"
    )]
    LogMissing {
        /// The log's directory.
        directory: PathBuf,
    },
    /// A segment belongs to another log (another data directory, node or cluster).
    #[error(
        "{file} belongs to another log (log id {found:#018x}, this data directory's is \
         {expected:#018x}): segments were copied between data directories"
    )]
    ForeignSegment {
        /// The segment file.
        file: PathBuf,
        /// The log id in its header.
        found: u64,
        /// The log id this directory expects.
        expected: u64,
    },
    /// A segment's header is not a Flotilla segment header or names another segment.
    #[error("{file} has a bad segment header: {reason}")]
    BadSegmentHeader {
        /// The segment file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The segment numbers have a hole.
    #[error("segment {missing_sequence} is missing from {directory}")]
    MissingSegment {
        /// The data directory.
        directory: PathBuf,
        /// The first missing sequence number.
        missing_sequence: u64,
    },
    /// Valid records describe a log that cannot exist.
    #[error("{file} at offset {offset} describes an impossible log: {reason}")]
    ImpossibleSequence {
        /// The segment file.
        file: PathBuf,
        /// The offset of the record.
        offset: u64,
        /// What is impossible.
        reason: String,
    },
    /// A snapshot marker names a file that is missing or has the wrong size.
    #[error("group {group} needs snapshot file {file}, which is missing or has the wrong size")]
    SnapshotMissing {
        /// The group.
        group: GroupId,
        /// The snapshot file.
        file: PathBuf,
    },
}

/// What recovery found wrong in a segment.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Corruption {
    /// A record of a batch is bad, and the batch cannot have been torn by a crash.
    #[error("the record at offset {record_offset} is bad ({source}), in a batch {why}")]
    BadRecord {
        /// Where the bad record starts.
        record_offset: u64,
        /// What is wrong with it.
        source: RecordError,
        /// Why this is not a torn write.
        why: NotTorn,
    },
    /// The zeros that pad a batch are not zeros, and the batch cannot have been torn.
    #[error("the padding at offset {padding_offset} is not zero, in a batch {why}")]
    BadPadding {
        /// Where the padding starts.
        padding_offset: u64,
        /// Why this is not a torn write.
        why: NotTorn,
    },
    /// A record passed its checksum but does not decode: written wrong, or by another version.
    #[error(
        "the record at offset {record_offset} passed its checksum but does not decode: {source}"
    )]
    Undecodable {
        /// Where the record starts.
        record_offset: u64,
        /// What is wrong with it.
        source: RecordError,
    },
    /// A batch's header is missing (zeros), and what follows cannot be a torn write.
    #[error("a batch header is missing (zeros) and {why}")]
    LostHeader {
        /// Why this is not a torn write.
        why: NotTorn,
    },
    /// 32 aligned bytes between batches are neither zeros, a batch header nor a sync mark.
    #[error("the bytes where a batch header or sync mark belongs are damaged")]
    DamagedFrame,
    /// A batch's sequence number does not follow the previous batch's.
    #[error("batch {found} follows batch {previous}")]
    OutOfSequence {
        /// The previous batch's number.
        previous: u64,
        /// This batch's number.
        found: u64,
    },
    /// A sync mark that does not confirm the batch just before it.
    #[error("a sync mark for batch {confirms} is not right after that batch")]
    StrayMark {
        /// The batch the mark names.
        confirms: u64,
    },
}

/// Why a damaged part of the log is not a torn write (which alone may be cut).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum NotTorn {
    /// Only the newest segment can end in a write that never synced.
    #[error("that is not in the newest segment, which alone can end in an unsynced write")]
    NotNewest,
    /// A later write (a sync mark or another batch) proves this one was synced.
    #[error("that a later write follows, so it was synced before it changed")]
    WrittenAfter,
    /// Every sector of the batch was written: a crash cannot leave a whole sector changed.
    #[error("with every sector present, which a crash cannot damage (the disk changed it at rest)")]
    NoSectorMissing,
    /// One sector is zeros that a crash or one flipped bit could equally explain.
    #[error(
        "with one zeroed sector that a crash and a flipped bit explain equally: it cannot be \
         told apart, so it is not cut"
    )]
    Ambiguous,
    /// What follows a missing header is longer than one write.
    #[error("more bytes follow it than one write can hold")]
    LongerThanOneWrite,
}

/// Why a write was not made durable. After an `Io` error the engine refuses further writes.
#[derive(Debug, Error, Clone)]
pub enum WriteError {
    /// Writing or syncing failed; the write may or may not be on disk.
    #[error("writing or syncing the log failed: {0}")]
    Io(Arc<io::Error>),
    /// An earlier write failed, so durability can no longer be promised.
    #[error("an earlier write failed; the log must be reopened")]
    EngineFailed,
    /// A single record is larger than the configured limit.
    #[error(
        "a record of group {group} has {payload_bytes} bytes, over the limit of {payload_bytes_max}"
    )]
    RecordTooLarge {
        /// The group.
        group: GroupId,
        /// The record's payload size.
        payload_bytes: u64,
        /// The configured limit.
        payload_bytes_max: u64,
    },
}

impl From<io::Error> for WriteError {
    fn from(error: io::Error) -> Self {
        WriteError::Io(Arc::new(error))
    }
}

/// Why a snapshot file could not be written or read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The file system failed.
    #[error("snapshot file {file} failed: {source}")]
    Io {
        /// The snapshot file.
        file: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with a snapshot header.
    #[error("the snapshot does not start with a valid header")]
    BadHeader,
    /// The bytes end before the header says they do.
    #[error("the snapshot is truncated: {needed_bytes} bytes needed, {available_bytes} available")]
    Truncated {
        /// Bytes the header claims.
        needed_bytes: u64,
        /// Bytes present.
        available_bytes: u64,
    },
    /// The checksum over the body does not match.
    #[error("the snapshot checksum {stored:#010x} does not match the computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The body passed its checksum but does not decode.
    #[error("the snapshot body does not decode: {0}")]
    Decode(String),
    /// Pairs handed to a [`crate::snapshot::SnapshotWriter`] break the file's rules.
    #[error("snapshot {file} cannot be written: {reason}")]
    Unwritable {
        /// The snapshot file.
        file: PathBuf,
        /// The rule broken, as a sentence.
        reason: String,
    },
    /// A chunk was asked for past the end of the file.
    #[error("chunk at offset {offset} is past the end of the {file_bytes}-byte snapshot")]
    ChunkOutOfRange {
        /// The requested offset.
        offset: u64,
        /// The file size.
        file_bytes: u64,
    },
}

/// Why the state machine engine, or one range in it, could not be used. Any of these stops the
/// node: a range whose write failed may hold more in memory than in the engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A limit of the configuration is out of range.
    #[error("the engine configuration is invalid: {0}")]
    Config(#[from] crate::engine::EngineConfigError),
    /// The embedded engine failed.
    #[error("the state machine engine failed to {operation}: {source}")]
    Backend {
        /// What the engine was doing.
        operation: &'static str,
        /// The engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record of a range does not decode.
    #[error("range {group} holds a damaged {record} record in the engine: {reason}")]
    Damaged {
        /// The range's group.
        group: GroupId,
        /// Which record.
        record: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The range is already open through another handle.
    #[error("range {0} is already open in the engine; a range has one state machine at a time")]
    AlreadyOpen(GroupId),
    /// The group's id is in the part of the key space the engine draws spaces from.
    #[error(
        "group {0} cannot keep a range in the engine: ids from 2^63 on are the engine's own \
         key spaces"
    )]
    GroupIdOutOfRange(GroupId),
    /// The engine belongs to another data directory, or holds ranges with no owner recorded.
    #[error(
        "the state machine engine is not this data directory's ({directory_id:032x}): it records \
         {recorded}; the node must not start on another node's ranges"
    )]
    NotOwn {
        /// This data directory.
        directory_id: u128,
        /// The owner the engine records, in hex, or "no owner".
        recorded: String,
    },
    /// A snapshot of the range cannot be produced.
    #[error("range {group} cannot produce a snapshot: {reason}")]
    NoSnapshot {
        /// The range's group.
        group: GroupId,
        /// Why, as a sentence.
        reason: &'static str,
    },
    /// The file a snapshot of the range was streamed to failed.
    #[error("a snapshot of range {group} could not be written to its file: {source}")]
    SnapshotFile {
        /// The range's group.
        group: GroupId,
        /// The file's error.
        source: std::io::Error,
    },
    /// An earlier write of this state machine failed.
    #[error("an earlier write of range {0} failed; the range must be reopened from the engine")]
    Failed(GroupId),
}

/// Why a state machine could not apply, read, snapshot or restore.
#[derive(Debug, Error)]
pub enum MachineError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The snapshot to restore is not valid.
    #[error("the snapshot cannot be restored: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The snapshot belongs to another range.
    #[error("a snapshot of range {found} cannot restore range {expected}")]
    WrongGroup {
        /// The range restoring.
        expected: GroupId,
        /// The snapshot's range.
        found: GroupId,
    },
    /// A snapshot ingested into the disk engine was offered to a range kept elsewhere (in
    /// memory, or in another engine).
    #[error("range {0} does not keep its state in the engine the snapshot was ingested into")]
    NotInEngine(GroupId),
}
