//! A node's status as it answers a `Status` request: its groups, counters and peers.

use flotilla_raft::{GroupId, NodeId};
use flotilla_shard_manager::Epoch;
use serde::{Deserialize, Serialize};

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
