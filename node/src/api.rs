//! The client protocol's messages. A client keeps one persistent QUIC stream per node and
//! pipelines requests on it: each `RequestFrame` carries an id, and `ResponseFrame`s come back
//! in any order with the same id. A new stream per request would cost several times the tail
//! latency of a request that reuses one.

use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::placement::{ManualRequest, NodeState, NodeView, Operator, RangeView};
use flotilla_shard_manager::{Directory, Epoch, RangeMap};
use flotilla_storage::kv::SessionTag;
use flotilla_storage::{Command, Response};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// One request on a client stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client, unique on the stream; the response carries it back.
    pub id: u64,
    /// What is asked.
    pub request: Request,
}

/// What a client may ask a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A key-value command for `group`, routed with map `epoch`. Get and Scan are
    /// linearizable reads (ReadIndex); the others are proposed to the group's log.
    Kv {
        /// The group the client's map says serves the key.
        group: GroupId,
        /// The epoch of the client's map.
        epoch: Epoch,
        /// The command.
        command: Command,
    },
    /// The node's range map and directory (from its replica of the meta group).
    RangeMap,
    /// The node's state: its groups, their leaders, terms and indexes, and its counters.
    Status,
    /// The data directory this node knows `node` by, if it has met it: asked by a node about to
    /// bootstrap an empty directory under that id.
    KnownDirectory {
        /// The node asked about.
        node: NodeId,
    },
    /// Opens a client session in `group` (a log entry): answered with
    /// `Response::SessionOpened`, the session's id and the limits the range applies.
    OpenSession {
        /// The group the client's map says serves the keys it will write.
        group: GroupId,
        /// The epoch of the client's map.
        epoch: Epoch,
    },
    /// A write in a session: applied at most once however often it is sent (every attempt
    /// carries the same tag); a copy is answered with the first one's result. A read sent
    /// this way is served as a read.
    Write {
        /// The group the client's map says serves the key.
        group: GroupId,
        /// The epoch of the client's map.
        epoch: Epoch,
        /// The session, the write's sequence and the lowest sequence the client still awaits.
        tag: SessionTag,
        /// The write.
        command: Command,
    },
    /// An operator's command, carried out through the meta group; answered once applied.
    /// Only the meta group's leader takes it (the others answer `NotLeader` with a hint).
    Admin(AdminCommand),
    /// The placement driver's view (nodes and their states, ranges and their replicas, the
    /// operators in flight), from the meta group's leader.
    Placement,
    /// A new node (the certificate's, never used in this cluster) joins at `address`:
    /// answered `Applied` once the meta group recorded it (again, if it already had).
    Join {
        /// The joining node.
        node: NodeId,
        /// Where it listens (`host:port`).
        address: String,
    },
    /// The meta group's snapshot as the meta leader's log stores it (the state a joining
    /// node's meta replica starts from before the log after it arrives), with the current
    /// directory (the peers it must reach before its meta replica catches up).
    MetaSnapshot,
    /// A node restarted at another address (same id and certificate, same data directory)
    /// listens at `address` now: answered `Applied` once the meta group recorded it. Only the
    /// node itself may ask, and only with the data directory registered for it.
    SetAddress {
        /// The node that moved.
        node: NodeId,
        /// Where it listens now (`host:port`).
        address: String,
        /// The id of its data directory.
        data_directory: u128,
    },
    // Appended: the wire encodes a request by its position.
    /// Opens a backup view of `group` at the range leader: a read view of the whole range at
    /// one applied entry, at or after a ReadIndex confirmed when it opened (so it holds every
    /// write acknowledged before), answered `BackupOpened`. Drained with `BackupChunk`; the
    /// node drops it once drained, on `BackupClose`, or when it is idle too long.
    BackupOpen {
        /// The group the client's map says serves the range.
        group: GroupId,
        /// The epoch of the client's map.
        epoch: Epoch,
    },
    /// The next pairs of an open backup view, in key order.
    BackupChunk {
        /// The view's range (checked: a view is only read for its own range).
        group: GroupId,
        /// The view `BackupOpened` named.
        view: u64,
        /// Which chunk, from 0: the next one, or the last one again (the same pairs: a retry
        /// or a copy of the request never skips any).
        chunk: u64,
    },
    /// Drops a backup view before it is drained (a backup that gave up).
    BackupClose {
        /// The view.
        view: u64,
    },
}

/// What an operator may ask of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminCommand {
    /// Sets `node`'s state: `Draining` (its replicas and leaders leave it), `Up` (back from
    /// draining) or `Removed` (for good: its replicas are re-placed at once, its id is never
    /// used again and its messages are refused).
    SetNodeState {
        /// The node.
        node: NodeId,
        /// The state.
        state: NodeState,
    },
    // Appended: the wire encodes a command by its position.
    /// A move of one replica (PD's `transfer-peer`) or one leadership: a manual operator
    /// with the rules' steps, answered once the meta group recorded it (not once it finished).
    Manual(ManualRequest),
}

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
    /// What [`Self::weight`] counts for a frame's id, result tags and lengths.
    pub const OVERHEAD_BYTES: usize = 32;

    /// About how many bytes the frame takes on the wire (within a few bytes for a key-value
    /// answer; counted by encoding for the rest): what a client stream's answer budget counts.
    #[must_use]
    pub fn weight(&self) -> usize {
        Self::OVERHEAD_BYTES
            + match &self.result {
                Ok(Reply::Kv(response)) => kv_answer_bytes(response),
                other => postcard::serialize_with_flavor::<_, _, usize>(
                    other,
                    postcard::ser_flavors::Size::default(),
                )
                .unwrap_or(0),
            }
    }
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
    /// The client's map epoch differs from the node's; refresh the map.
    #[error("stale range map: the node is at epoch {node_epoch:?}")]
    StaleEpoch {
        /// The node's epoch.
        node_epoch: Epoch,
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
    /// The backup view is not open on this node: it was drained, closed, dropped for being
    /// idle longer than `limits.backup_view_idle_ms`, or the node restarted. Open another.
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

/// One group as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The group.
    pub group: GroupId,
    /// Follower, PreCandidate, Candidate or Leader.
    pub role: String,
    /// The replica's term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub committed: u64,
    /// Its applied index.
    pub applied: u64,
    /// The last index its snapshot covers (0: none); its log starts after it.
    pub snapshot_index: u64,
    /// Whether the group is quiescent (idle: no ticks, no heartbeats of its own).
    pub quiescent: bool,
    /// Key and value bytes the range holds on this replica (0 for the meta group).
    pub stored_bytes: u64,
}

/// A node's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: NodeId,
    /// The range map epoch it knows.
    pub epoch: Epoch,
    /// Its groups.
    pub groups: Vec<GroupStatus>,
    /// Log writes (each one fdatasync) since start.
    pub fsyncs: u64,
    /// Entries those writes persisted.
    pub entries_persisted: u64,
    /// Time spent in those writes (write + fdatasync), in microseconds.
    pub write_micros: u64,
    /// Time the driver spent working (not waiting for input), in microseconds.
    pub busy_micros: u64,
    /// Time since the driver started, in microseconds.
    pub uptime_micros: u64,
    /// Client requests received since start (status requests included).
    pub requests: u64,
    /// Inbound batches refused as malformed or from an unknown group.
    pub batches_refused: u64,
    /// Client requests waiting for their entry to apply or their read to be confirmed.
    pub waiting: u64,
    /// Changes of a group's leader seen by this node since start, over all its groups (a
    /// replica learning a new leader, or losing the one it knew). It rises with elections;
    /// a steady cluster keeps it still.
    pub leader_changes: u64,
    /// The peer nodes this node has heard from within the node timeout.
    pub live_peers: Vec<NodeId>,
    /// How many times this node's data directory has been started (this process's number).
    pub incarnation: u64,
    /// The nodes whose data directory the meta group has registered (as this node applied it).
    pub registered_directories: Vec<NodeId>,
    /// Every peer node this node watches, and whether it is live, connected but quiet, or
    /// unreachable.
    pub peers: Vec<PeerStatus>,
}

/// How a node sees one peer node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer.
    pub node: NodeId,
    /// Live, quiet or unreachable.
    pub state: PeerState,
    /// Milliseconds since a batch last came from it (or since this node started watching it).
    pub silent_ms: u64,
}

/// Whether a peer node is heard from, and if not, whether a connection to it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Heard from within the node timeout.
    Live,
    /// Not heard from within the node timeout, though a connection to it is open: the
    /// connection is stalled (the transport gives it up after `peer_silence_ms`) or the
    /// peer's driver is stuck.
    Quiet,
    /// Not heard from, and no connection is open: it is down, or the path to it is, and the
    /// transport keeps dialing (or, if it has the lower id, waits for its dial).
    Unreachable,
}

impl PeerState {
    /// The state of a peer silent for `silent_ticks` out of a node timeout of
    /// `node_timeout_ticks`, with or without an open connection.
    #[must_use]
    pub fn of(silent_ticks: u64, node_timeout_ticks: u64, connected: bool) -> Self {
        match (silent_ticks < node_timeout_ticks, connected) {
            (true, _) => Self::Live,
            (false, true) => Self::Quiet,
            (false, false) => Self::Unreachable,
        }
    }
}

impl NodeStatus {
    /// Entries per fsync since start.
    #[must_use]
    pub fn entries_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.entries_persisted as f64 / self.fsyncs as f64
        }
    }
}

impl From<crate::access::Denied> for ApiError {
    fn from(denied: crate::access::Denied) -> Self {
        Self::PermissionDenied {
            who: denied.who,
            action: denied.action,
        }
    }
}
