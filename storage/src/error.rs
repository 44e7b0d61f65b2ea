//! The error of each operation, split by operation: configuring, decoding a record, recovering,
//! writing, and reading or writing a snapshot file.

use flotilla_raft::GroupId;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// Why a `LogConfig` was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A record must be allowed to carry at least one byte.
    #[error("record_bytes_max must be greater than zero")]
    RecordBytesMaxZero,
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
    /// A record before the tail is corrupt: an acknowledged write may be lost.
    #[error("{file} is corrupt at offset {offset}: {source}")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// The offset of the bad record.
        offset: u64,
        /// What is wrong with it.
        source: RecordError,
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
    /// A chunk was asked for past the end of the file.
    #[error("chunk at offset {offset} is past the end of the {file_bytes}-byte snapshot")]
    ChunkOutOfRange {
        /// The requested offset.
        offset: u64,
        /// The file size.
        file_bytes: u64,
    },
}
