//! What a node answers: one [`ResponseFrame`] per request, carrying the request's id and
//! either a [`Reply`] or an [`ApiError`].

use crate::error::ApiError;
use crate::kv::Response;
use crate::status::NodeStatus;
use flotilla_raft::GroupId;
use flotilla_shard_manager::placement::{NodeView, Operator, RangeView};
use flotilla_shard_manager::{Directory, RangeMap};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The placement driver's view, as the meta leader holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementStatus {
    /// The nodes, their states and what they last reported.
    pub nodes: Vec<NodeView>,
    /// The ranges, their replicas and leaders.
    pub ranges: Vec<RangeView>,
    /// The operators in flight.
    pub operators: Vec<Operator>,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The request's id.
    pub id: u64,
    /// The outcome.
    pub result: Result<Reply, ApiError>,
}

impl ResponseFrame {
    /// What a frame's id, result tags and lengths count for in the size of its encoding.
    pub const OVERHEAD_BYTES: usize = 32;
}

/// The key and value bytes a key-value answer carries (8 more per scanned pair).
#[must_use]
pub fn kv_answer_bytes(response: &Response) -> usize {
    let bytes = |value: &Option<Vec<u8>>| value.as_ref().map_or(0, Vec::len);
    match response {
        Response::Value(value) => bytes(value),
        Response::Written { previous } => bytes(previous),
        Response::CompareAndSwap { current, .. } => bytes(current),
        Response::Scan { pairs, .. } => pairs
            .iter()
            .map(|(key, value)| key.len() + value.len() + 8)
            .sum(),
        Response::Invalid(reason) => reason.len(),
        _ => 0,
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The state machine's response to a key-value command.
    Kv(Response),
    /// The range map and the directory.
    RangeMap {
        /// The ranges.
        map: RangeMap,
        /// Where each node listens.
        directory: Directory,
    },
    /// The node's status.
    Status(NodeStatus),
    /// The data directory the node knows the asked node by (`None`: it never met it).
    KnownDirectory {
        /// The directory id.
        directory: Option<u128>,
    },
    /// The meta group applied the operator's command.
    Applied,
    /// The placement driver's view.
    Placement(PlacementStatus),
    /// The meta group's stored snapshot, and where every node listens now.
    MetaSnapshot {
        /// The snapshot the meta leader's log stores.
        snapshot: flotilla_raft::Snapshot,
        /// The current directory.
        directory: Directory,
    },
    /// A backup view was opened.
    BackupOpened(BackupView),
    /// The next pairs of a backup view, in key order.
    BackupChunk {
        /// The pairs (key, value); empty only with `done`.
        pairs: Vec<(ByteBuf, ByteBuf)>,
        /// Whether every pair was handed out (the node dropped the view).
        done: bool,
    },
}

/// A backup view of one range: what its snapshot file's header states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    /// Names the view in `BackupChunk` and `BackupClose`.
    pub view: u64,
    /// The range's group.
    pub group: GroupId,
    /// The last entry the view holds.
    pub applied: flotilla_raft::LogId,
    /// How many pairs it holds.
    pub pair_count: u64,
    /// Their key and value bytes.
    pub stored_bytes: u64,
}
