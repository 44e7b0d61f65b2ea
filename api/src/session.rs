//! What a write says about its client session, so that a range applies it at most once however
//! often it is delivered (`docs/protocol/sessions.md`): the session's id, the limits a range
//! applies, and the tag every attempt of a write carries. The table that enforces them lives in
//! `flotilla-storage`.

use flotilla_raft::{GroupId, LogIndex};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A session: the group and index of the entry that opened it. Unique across splits and
/// merges, because group ids are never reused and a group's indexes only grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId {
    /// The group whose log opened the session.
    pub group: GroupId,
    /// The index of the entry that opened it.
    pub index: LogIndex,
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}.{}", self.group.0, self.index.0)
    }
}

/// The limits a range's session table applies. They travel in every entry that opens a
/// session, so all replicas apply the same ones (the last opened session's) at the same index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLimits {
    /// A session ends once this much log time passed without an entry of its own.
    pub expiry_ms: u64,
    /// Sessions the range keeps; opening one more ends the least recently active one.
    pub sessions_max: u32,
    /// Results one session may hold; a write that would hold one more ends the session. A
    /// client keeps `sequence - awaited_from` below it, so it never gets there.
    pub results_max: u32,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            expiry_ms: 3_600_000,
            sessions_max: 4096,
            results_max: 1024,
        }
    }
}

/// What a write says about its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionTag {
    /// The session.
    pub session: SessionId,
    /// This write's number in the session, from 1; every attempt of a write carries the same.
    pub sequence: u64,
    /// The lowest sequence whose answer the client still awaits (at most `sequence`): the
    /// table may forget the results below it, and refuses copies of those writes.
    pub awaited_from: u64,
}
