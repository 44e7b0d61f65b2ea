//! The messages replicas exchange, as plain data, and the per-node batch they travel in.

use crate::entry::{Entry, SnapshotMeta};
use crate::types::{GroupId, Incarnation, LogId, LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// One message between two replicas of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sending replica.
    pub from: NodeId,
    /// The receiving replica.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message (Raft Figure 2 plus pre-vote, heartbeats, chunked snapshots and
/// leadership transfer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// RequestVote (Raft §5.2), or a pre-vote probe that changes no state (thesis §9.6).
    RequestVote {
        /// Whether this is a pre-vote.
        pre_vote: bool,
        /// The candidate's last log entry (for the up-to-date check, §5.4.1).
        last_log: LogId,
        /// Set when the campaign follows TimeoutNow: voters skip the leader-lease check.
        transfer: bool,
    },
    /// The answer to a RequestVote.
    VoteResponse {
        /// Whether it answers a pre-vote.
        pre_vote: bool,
        /// Whether the vote was granted.
        granted: bool,
        /// The voter's commit index with the term of its entry there (zero when it cannot
        /// tell). A candidate whose log holds that entry learns the commit from it: a replica
        /// refused for its shorter log may need a configuration committed there to elect
        /// (`docs/protocol/membership.md`, "A refusal tells the commit").
        commit: LogId,
    },
    /// AppendEntries (Raft §5.3) carrying entries.
    AppendEntries {
        /// The entry right before `entries`.
        prev: LogId,
        /// The entries to append; may be empty when probing.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: LogIndex,
    },
    /// The answer to AppendEntries.
    AppendResponse(AppendOutcome),
    /// A heartbeat: the paper's empty AppendEntries. It carries no log position, so the commit
    /// index in it is already capped by the leader at what the follower is known to hold.
    Heartbeat {
        /// `min(leader commit, follower match)`.
        commit: LogIndex,
        /// The newest ReadIndex round this heartbeat confirms leadership for.
        read_round: u64,
    },
    /// The answer to a heartbeat.
    HeartbeatResponse {
        /// The read round echoed back.
        read_round: u64,
    },
    /// One chunk of a snapshot (Raft §7).
    InstallSnapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// The leader's number for this transfer of the snapshot: it grows with each transfer
        /// a leader starts, so within a term a follower tells a new transfer (which may start
        /// over at offset 0) from a late copy of an earlier one's chunk.
        transfer: u64,
        /// Where this chunk starts in the snapshot data.
        offset: u64,
        /// The chunk's bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Whether this is the last chunk.
        done: bool,
    },
    /// The answer to a snapshot chunk that was not the last one: a cumulative acknowledgement.
    SnapshotResponse {
        /// The snapshot's last index (to tell snapshots apart).
        snapshot_index: LogIndex,
        /// The transfer of the chunk answered.
        transfer: u64,
        /// The offset the follower expects next: it holds every byte of this transfer before
        /// it (0: nothing, the transfer must start over).
        next_offset: u64,
    },
    /// Leadership transfer: campaign now, the leader has caught you up (thesis §3.10).
    TimeoutNow,
}

/// What a follower answers to AppendEntries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The log now matches the leader's up to `last`.
    Accepted {
        /// The last index the follower holds that matches the leader.
        last: LogIndex,
    },
    /// The entry at `prev` did not match.
    Rejected {
        /// The `prev.index` of the rejected request.
        rejected: LogIndex,
        /// Fast backtracking hint: the follower's last entry at or before `rejected` whose term
        /// is at most the leader's `prev.term`.
        hint: LogId,
    },
}

impl Message {
    /// Whether this message belongs on the snapshot stream rather than the Raft stream.
    #[must_use]
    pub fn is_snapshot_chunk(&self) -> bool {
        matches!(self.body, MessageBody::InstallSnapshot { .. })
    }
}

/// One message of one group, inside a node-level batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMessage {
    /// The group the message belongs to.
    pub group: GroupId,
    /// The message.
    pub message: Message,
}

/// One group's share of a coalesced heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatEntry {
    /// The group.
    pub group: GroupId,
    /// The leader's term in that group.
    pub term: Term,
    /// The commit index, capped at what the follower is known to hold.
    pub commit: LogIndex,
    /// The newest ReadIndex round confirmed by this heartbeat.
    pub read_round: u64,
    /// The group's last heartbeat before it quiesces: a caught-up follower stops ticking.
    pub quiesce: bool,
}

/// One group's share of a coalesced heartbeat response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponseEntry {
    /// The group.
    pub group: GroupId,
    /// The responder's term in that group.
    pub term: Term,
    /// The read round echoed back.
    pub read_round: u64,
}

impl HeartbeatEntry {
    /// The per-group heartbeat this entry stands for.
    #[must_use]
    pub fn to_message(&self, from: NodeId, to: NodeId) -> Message {
        let body = MessageBody::Heartbeat {
            commit: self.commit,
            read_round: self.read_round,
        };
        Message {
            from,
            to,
            term: self.term,
            body,
        }
    }
}

impl HeartbeatResponseEntry {
    /// The per-group heartbeat response this entry stands for.
    #[must_use]
    pub fn to_message(&self, from: NodeId, to: NodeId) -> Message {
        let body = MessageBody::HeartbeatResponse {
            read_round: self.read_round,
        };
        Message {
            from,
            to,
            term: self.term,
            body,
        }
    }
}

/// Everything one node sends another in one ready cycle: the unit the transport carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The sending node; the transport checks it against the peer's certificate.
    pub from: NodeId,
    /// The sender's data directory and start: a node id's batches come from one directory,
    /// and from its newest process (`MultiRaft::step_batch` refuses the rest).
    pub incarnation: Incarnation,
    /// The receiving node.
    pub to: NodeId,
    /// Per-group messages.
    pub messages: Vec<GroupMessage>,
    /// The coalesced heartbeat: one entry per group the sender leads with a replica on `to`.
    pub heartbeats: Vec<HeartbeatEntry>,
    /// The coalesced heartbeat response.
    pub heartbeat_responses: Vec<HeartbeatResponseEntry>,
    /// The host's own node-to-node notes (reports to the meta group's leader, say), opaque to
    /// Raft: carried, never stepped. Lost like any batch; the host repeats what matters.
    pub notes: Vec<Note>,
}

/// One opaque note of the host application, carried in a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl Batch {
    /// An empty batch from `from` to `to`.
    #[must_use]
    pub fn new(from: NodeId, to: NodeId) -> Self {
        Self {
            from,
            to,
            ..Self::default()
        }
    }

    /// An empty batch with the same sender, receiver and incarnation: for splitting a batch.
    #[must_use]
    pub fn sibling(&self) -> Self {
        Self {
            from: self.from,
            to: self.to,
            incarnation: self.incarnation,
            ..Self::default()
        }
    }

    /// Whether the batch carries nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.heartbeats.is_empty()
            && self.heartbeat_responses.is_empty()
            && self.notes.is_empty()
    }
}
