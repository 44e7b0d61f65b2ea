//! One write-ahead log for all Raft groups of a node, the KV state machine each group applies
//! (in memory, or in the node's one embedded engine, behind `StateMachine`), and the immutable
//! snapshot files a lagging follower receives. Every log write is one `write` and one
//! `fdatasync` shared by concurrent callers; a torn tail is truncated and reported, any other
//! corruption stops recovery with an error naming the file and offset. The engine is never
//! synced per entry: a range reopens at an applied entry and the log replays the rest.
#![deny(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
#[cfg(any(test, feature = "testing"))]
pub mod crash;
pub mod data_dir;
pub mod engine;
pub mod error;
pub mod file;
pub mod inspect;
pub mod kv;
mod le;
pub mod log;
pub mod machine;
mod mmap;
pub mod snapshot;

pub use config::{LogConfig, SnapshotLoading};
#[cfg(any(test, feature = "testing"))]
pub use crash::{CrashFile, CrashFs};
pub use data_dir::{DataDir, DirIdentity, DirPeek, DirState};
pub use engine::{DiskStateMachine, Engine, EngineConfig, IngestedRange};
#[cfg(any(test, feature = "testing"))]
pub use engine::{EngineModel, ModelError};
pub use error::{
    ConfigError, Corruption, DataDirError, EngineError, MachineError, NotTorn, RecordError,
    RecoveryError, SnapshotError, WriteError,
};
pub use file::{FileSystem, RealFs, SegmentFile};
pub use machine::{PAIR_FRAMING_BYTES, Pair, SnapshotView, StateMachine};

pub use kv::{Codec, Command, KvStateMachine, MergeState, MergeStep, Payload, Proposal, Response};
pub use log::{
    CheckedSnapshot, GcStats, GroupLog, LogBinding, LogEngine, Prepared, RecordLocation,
    RecoveryReport, SnapshotBytes, StagedCheck, TornTail, WriteBatch, WriteStats, WrittenSnapshot,
};
pub use snapshot::{
    SnapshotFile, SnapshotWriter, decode_snapshot, verify_snapshot, write_snapshot,
};
