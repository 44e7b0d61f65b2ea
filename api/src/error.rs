//! Why a node refused a request, as the wire carries it.

use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::RangeDescriptor;
use serde::{Deserialize, Serialize};

/// Why a node refused a request. Only `Busy`, `NotLeader`, `StaleEpoch`, `NotServed`,
/// `Dropped`, `Unavailable` and `BadSessionTag` mean the request was not applied. A write in a
/// session may be sent again after any of them, with the same tag. `PermissionDenied`,
/// `QuotaExceeded`, `DiskReserve` and `TooLarge` mean not applied too, and are final until an
/// operator changes something: sending the request again is refused again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    /// This replica is not the group's leader; `leader` is the one it last heard of.
    #[error("node is not the leader of {group}; leader hint: {leader:?} at {address:?}")]
    NotLeader {
        /// The group.
        group: GroupId,
        /// The leader this replica last heard of.
        leader: Option<NodeId>,
        /// That leader's address, from the directory.
        address: Option<String>,
    },
    /// The key (or a scan's span) is no longer in the range the request named: the range
    /// split or merged since the client's map. `ranges` are the node's descriptors of the
    /// ranges that hold the key (none if it knows nothing newer): the client takes them into
    /// its map and sends the request where they say.
    #[error("the range changed: {} descriptor(s) of the ranges holding the key now", ranges.len())]
    StaleEpoch {
        /// The ranges holding the key, as the node knows them.
        ranges: Vec<RangeDescriptor>,
    },
    /// This node hosts no replica of the group, or the key lies outside the group's range.
    #[error("routing error: this node does not serve {group} for that key")]
    NotServed {
        /// The group asked for.
        group: GroupId,
    },
    /// A key or value over the configured limit.
    #[error("{what} of {bytes} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// "key" or "value".
        what: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The node's request queue is full; try again shortly.
    #[error("the node is busy; try again")]
    Busy,
    /// Another leader's entry was applied at the proposal's index: it was not applied, and
    /// never will be.
    #[error("the proposal was dropped by a leader change; it was not applied")]
    Dropped,
    /// The node is shutting down or failed; the request was not applied.
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// The answer does not fit in a frame (for a write: it was applied).
    #[error("the response does not fit in a frame: {0}")]
    ResponseTooLarge(String),
    /// The proposal's entry was covered by a snapshot from the leader before this node applied
    /// it: it may or may not have been applied.
    #[error("the outcome is unknown: the entry was superseded by a snapshot")]
    OutcomeUnknown,
    /// A write's tag awaits answers above its own sequence, or numbers it 0.
    #[error("sequence {sequence} cannot await answers from {awaited_from}: a write awaits its own")]
    BadSessionTag {
        /// The write's sequence.
        sequence: u64,
        /// The lowest sequence the tag says the client awaits.
        awaited_from: u64,
    },
    /// The node's ranges hold the storage quota already: writes that add data are refused
    /// (nothing was applied); reads and deletes still work.
    #[error(
        "the node stores {stored_bytes} bytes, at its quota of {quota_bytes} \
         (limits.storage_quota_bytes): delete data or raise the quota; nothing was written"
    )]
    QuotaExceeded {
        /// Key and value bytes the node's ranges hold.
        stored_bytes: u64,
        /// The quota.
        quota_bytes: u64,
    },
    /// The node's disk is down to its reserve: writes that add data are refused (nothing was
    /// applied), so the log keeps room to finish what it started; reads and deletes still work.
    #[error(
        "the node's disk has {free_bytes} bytes free, below its reserve of {reserve_bytes} \
         (limits.disk_reserve_bytes): free disk space; nothing was written"
    )]
    DiskReserve {
        /// Free bytes on the data directory's file system.
        free_bytes: u64,
        /// The reserve.
        reserve_bytes: u64,
    },
    // Last, so that the wire numbers of the variants before it stay as they were.
    /// The connection's certificate may not send this request (`[access]` in the node's
    /// configuration): final, never retried.
    #[error("permission denied: {who} may not {action}")]
    PermissionDenied {
        /// `client "reader"` or `node 3`.
        who: String,
        /// What it may not do (`put`).
        action: String,
    },
    /// An operator's command does not fit the cluster (an unknown or removed node, say):
    /// final, nothing changed.
    #[error("the cluster refused the command: {0}")]
    AdminRefused(String),
    /// The backup view is not open on this node: it was closed, dropped for being idle
    /// longer than `limits.backup_view_idle_ms`, or the node restarted. Open another.
    #[error("backup view {view} is not open on this node; open the range's view again")]
    NoBackupView {
        /// The view.
        view: u64,
    },
    /// A backup chunk was asked out of order: only the next one, or the last one again.
    #[error("backup view {view} serves chunk {next} next; chunk {asked} cannot be served")]
    BackupChunkOutOfOrder {
        /// The view.
        view: u64,
        /// The chunk asked for.
        asked: u64,
        /// The next chunk the view serves.
        next: u64,
    },
    /// The node holds `limits.backup_views_max` backup views already.
    #[error(
        "the node holds {open} backup views, its limit (limits.backup_views_max); \
         try again once a backup finished"
    )]
    BackupViewsFull {
        /// Views open.
        open: usize,
    },
}
