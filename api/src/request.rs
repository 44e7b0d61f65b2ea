//! What a client asks a node. A client keeps one persistent QUIC stream per node and pipelines
//! requests on it: each [`RequestFrame`] carries an id, and [`ResponseFrame`]s come back in any
//! order with the same id. A new stream per request would cost several times the tail latency
//! of a request that reuses one.
//!
//! [`ResponseFrame`]: crate::ResponseFrame

use crate::kv::Command;
use crate::session::SessionTag;
use flotilla_raft::GroupId;
use flotilla_raft::NodeId;
use flotilla_shard_manager::RangeEpoch;
use flotilla_shard_manager::placement::{ManualRequest, NodeState};
use serde::{Deserialize, Serialize};

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
    /// A key-value command for `group`, routed with the range's `epoch`. Get and Scan are
    /// linearizable reads (ReadIndex); the others are proposed to the group's log.
    Kv {
        /// The group the client's map says serves the key.
        group: GroupId,
        /// The range's epoch in the client's map.
        epoch: RangeEpoch,
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
        /// The range's epoch in the client's map.
        epoch: RangeEpoch,
    },
    /// A write in a session: applied at most once however often it is sent (every attempt
    /// carries the same tag); a copy is answered with the first one's result. A read sent
    /// this way is served as a read.
    Write {
        /// The group the client's map says serves the key.
        group: GroupId,
        /// The range's epoch in the client's map.
        epoch: RangeEpoch,
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
    /// node drops it on `BackupClose`, or when it is idle too long.
    BackupOpen {
        /// The group the client's map says serves the range.
        group: GroupId,
        /// The range's epoch in the client's map.
        epoch: RangeEpoch,
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
    /// Drops a backup view (a backup that finished or gave up).
    BackupClose {
        /// The view.
        view: u64,
    },
    /// Splits the range `group` serves at `at` (a range leader's proposal in the group's own
    /// log): the range keeps the keys below, and group `right` (an id the meta group reserved
    /// with `AdminCommand::ReserveRange`) takes the keys from `at` on, on the same replicas.
    /// Answered `Response::Split` once applied; the leader then has the meta group record it.
    Split {
        /// The group the client's map says serves `at`.
        group: GroupId,
        /// The range's epoch in the client's map.
        epoch: RangeEpoch,
        /// The first key of the right half.
        #[serde(with = "serde_bytes")]
        at: Vec<u8>,
        /// The right half's group.
        right: GroupId,
    },
    /// Merges the range `group` serves with its right neighbour (the range's leader prepares
    /// it in the group's own log, then has the neighbour freeze and takes its state).
    /// Answered `Response::Merge` (`Prepared`) once the range awaits its neighbour; the leader
    /// finishes the merge and has the meta group record it.
    Merge {
        /// The group the client's map says serves the range.
        group: GroupId,
        /// The range's epoch in the client's map.
        epoch: RangeEpoch,
    },
    /// The range map and directory, read linearizably: by the meta group's leader once a
    /// ReadIndex confirms it leads and its replica applied what was committed, so the map
    /// holds every change recorded before the request. Another node refuses `NotLeader` with
    /// the leader it knows. (`RangeMap` answers at once from any node's replica, which may lag.)
    RangeMapRead,
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
    /// Reserves a range id, and the group id of the same number, for a split's right half:
    /// answered `Response::Reserved`.
    ReserveRange,
}
