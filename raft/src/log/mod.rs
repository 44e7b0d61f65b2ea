//! The log as Raft sees it: the persisted part behind `LogReader`, plus the unstable tail
//! that the caller has not persisted yet.

mod mem;
mod raft_log;
mod reader;
mod unstable;

pub use mem::MemLog;
pub use raft_log::RaftLog;
pub use reader::{InitialState, LogError, LogReader, SnapshotChunk};
