//! Pure Raft for one group and for many. No IO, no clock, no async: time is `tick()`,
//! randomness is a seed you pass in, and every output leaves in a `Ready` batch that the
//! caller persists, sends and applies before calling `advance()`.
#![forbid(unsafe_code)]

pub mod config;
pub mod entry;
pub mod error;
mod handler;
pub mod log;
pub mod message;
pub mod multi;
mod node;
mod progress;
pub mod quorum;
pub mod ready;
mod rng;
mod state;
mod timers;
pub mod types;

#[cfg(feature = "mutations")]
pub use config::Mutation;
pub use config::{Config, ConfigError, ReadMode, SnapshotCheck};
pub use entry::{
    Bytes, ChangeStep, Entry, EntryPayload, HardState, Membership, Snapshot, SnapshotMeta,
};
pub use error::{ProposeError, StepError};
pub use handler::membership::plan_membership;
pub use handler::snapshot::CompactError;
pub use handler::snapshot_send::SnapshotSendCounters;
pub use log::{InitialState, LogError, LogReader, MemLog, SnapshotChunk};
pub use message::{
    AppendOutcome, Batch, GroupMessage, HeartbeatEntry, HeartbeatResponseEntry, Message,
    MessageBody, Note,
};
pub use multi::{MultiConfig, MultiError, MultiRaft, MultiReady, Refusal};
pub use node::{RaftNode, Role, Status};
pub use ready::{Persist, ReadState, Ready, SnapshotPiece};
pub use types::{GroupId, Incarnation, LogId, LogIndex, NodeId, Term};
