//! Every limit of a replica, in ticks, bytes and counts, validated once when a node is built.

use crate::entry::SnapshotMeta;
use crate::types::{GroupId, NodeId};
use std::fmt;
use thiserror::Error;

/// How a follower checks the data of a snapshot it received, before it installs it: whether
/// the bytes are the state of `group` at `meta.last` (the application's format, verified
/// without building the state). A refused snapshot is dropped and its leader sends it again;
/// an accepted one replaces the log, so it must restore. A plain function, so Raft stays
/// deterministic and free of IO.
#[derive(Clone, Copy)]
pub struct SnapshotCheck(pub fn(GroupId, &SnapshotMeta, &[u8]) -> Result<(), String>);

impl SnapshotCheck {
    /// Accepts every snapshot (an application without a format to verify, and tests).
    #[must_use]
    pub fn accept_all() -> Self {
        Self(|_, _, _| Ok(()))
    }
}

impl fmt::Debug for SnapshotCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotCheck")
    }
}

impl PartialEq for SnapshotCheck {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for SnapshotCheck {}

/// How linearizable reads are confirmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex: one heartbeat round to a quorum confirms leadership (thesis §6.4). Safe
    /// whatever the clocks do.
    #[default]
    ReadIndex,
    /// Leader lease (thesis §6.4.1): a leader that heard from a quorum within
    /// `election_timeout_ticks_min - lease_drift_ticks` ticks answers without a round.
    /// Safe only while no replica's clock runs more than `lease_drift_ticks` per election
    /// timeout faster than the leader's; requires `check_quorum`.
    Lease,
}

/// The configuration of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This replica's node id.
    pub id: NodeId,
    /// The group this replica belongs to (what `snapshot_check` is told).
    pub group: GroupId,
    /// Lower bound (inclusive) of the randomized election timeout.
    pub election_timeout_ticks_min: u64,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_timeout_ticks_max: u64,
    /// A leader sends a heartbeat every this many ticks.
    pub heartbeat_interval_ticks: u64,
    /// Campaign with a pre-vote round first, so a partitioned replica cannot disrupt a
    /// healthy leader when it comes back (thesis §9.6).
    pub pre_vote: bool,
    /// A leader that hears from no quorum for an election timeout steps down, and voters
    /// ignore campaigns while they hear from a leader (thesis §6.2).
    pub check_quorum: bool,
    /// The most AppendEntries messages in flight to one follower.
    pub inflight_count_max: usize,
    /// The most entry bytes in flight to one follower.
    pub inflight_bytes_max: u64,
    /// The most entry bytes in one AppendEntries message (at least one entry is always sent).
    pub append_bytes_max: u64,
    /// The size of one InstallSnapshot chunk.
    pub snapshot_chunk_bytes: u64,
    /// The most snapshot bytes in flight to one follower: a leader sends a chunk while fewer
    /// than this are sent and not acknowledged (a window of chunks, so a transfer moves more
    /// than one chunk per round trip and copies of chunks cannot pile up in the transport).
    pub snapshot_inflight_bytes_max: u64,
    /// A transfer whose acknowledged offset has not moved for this many ticks sends its window
    /// again from that offset, at the follower's next heartbeat answer (a chunk was lost).
    pub snapshot_resend_ticks: u64,
    /// A snapshot transfer to a follower silent this long is given up at the next
    /// check-quorum (the log may close its file); it resumes where it was if the follower
    /// comes back while the newest snapshot is still the same.
    pub snapshot_give_up_ticks: u64,
    /// The largest snapshot a follower accepts; a bigger one is refused as malformed, so a
    /// peer cannot make a replica buffer without bound.
    pub snapshot_bytes_max: u64,
    /// Checks a received snapshot's data before it is installed (not called when staging).
    pub snapshot_check: SnapshotCheck,
    /// A follower hands each snapshot chunk it receives to the caller to stage
    /// (`Ready::snapshot_chunks`) instead of gathering the snapshot in memory, and once the
    /// last arrived (`Ready::snapshot_received`) waits for the caller to check what it staged
    /// and call `install_staged` or `refuse_staged`.
    pub snapshot_staging: bool,
    /// How reads are confirmed.
    pub read_mode: ReadMode,
    /// The clock drift a lease read tolerates, in ticks per election timeout.
    pub lease_drift_ticks: u64,
    /// The most reads waiting for confirmation at once.
    pub pending_reads_max: usize,
    /// Seed of the random number generator (election timeouts).
    pub rng_seed: u64,
    /// The node's MultiRaft sends this group's heartbeats, coalesced per peer node, by calling
    /// `heartbeat()`; the group's own heartbeat timer stays off.
    pub coalesced_heartbeats: bool,
    /// A deliberately broken rule, to prove that the simulator's checkers catch it.
    #[cfg(feature = "mutations")]
    pub mutation: Mutation,
}

/// Deliberately broken protocol rules (feature `mutations`, tests only).
#[cfg(feature = "mutations")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mutation {
    /// The protocol as it should be.
    #[default]
    None,
    /// Grant every vote, even a second one in the same term (breaks election safety).
    GrantEveryVote,
    /// Commit an entry of an earlier term by counting replicas, and skip the blank entry a new
    /// leader appends (which otherwise masks the rule): the paper's Figure 8 as drawn.
    CommitPreviousTermByCounting,
    /// Forget the persisted vote on restart (votedFor not made durable).
    ForgetVoteOnRestart,
    /// Never re-check a replicating follower's position on a heartbeat answer, so pipelined
    /// AppendEntries that were lost are never sent again (the simulator's first find).
    NoPositionCheck,
    /// Serve ReadIndex reads without confirming leadership (stale reads).
    ReadWithoutQuorum,
    /// Let a vote leave before the write that records it is durable (`Ready::messages`
    /// instead of `persisted_messages`): a crash can then forget a vote it gave.
    VoteBeforePersist,
    /// Say every committed entry may be applied before this cycle's write
    /// (`Ready::committed_before_persist`), also those the write itself makes durable.
    ApplyBeforePersist,
    /// Leave a quiescent replica quiescent when a message stepped into it without waking it
    /// (a heartbeat response from a higher term) makes it a follower that knows no leader:
    /// it never campaigns, and its followers, hearing its node, vote for no one else.
    StrandQuiescentReplicas,
    /// Quiesce a group as soon as every replica holds the whole log, before each has
    /// acknowledged the commit: a learner that misses the last heartbeat never commits it.
    QuiesceBeforeTheCommitIsKnown,
    /// Keep awake the followers a leader node's silence woke after that node is heard again:
    /// with their leader quiescent they time out and depose it, so a node whose loop stalled
    /// past the node timeout costs every group it led an election.
    StayAwakeAfterASilence,
    /// Ignore the commit index a vote answer carries: a replica refused by a removed one
    /// with a longer log never learns that the configuration without it is committed, and
    /// counts votes by the joint configuration, which needs the removed replica.
    IgnoreCommitInVoteAnswers,
}

impl Config {
    /// The default configuration for replica `id`, with a seed derived from the id.
    #[must_use]
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            group: GroupId(0),
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            inflight_count_max: 256,
            inflight_bytes_max: 32 << 20,
            append_bytes_max: 1 << 20,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_inflight_bytes_max: 4 << 20,
            snapshot_resend_ticks: 50,
            snapshot_give_up_ticks: 500,
            snapshot_bytes_max: 1 << 34,
            snapshot_check: SnapshotCheck::accept_all(),
            snapshot_staging: false,
            read_mode: ReadMode::ReadIndex,
            lease_drift_ticks: 2,
            pending_reads_max: 65_536,
            rng_seed: id.0,
            coalesced_heartbeats: false,
            #[cfg(feature = "mutations")]
            mutation: Mutation::None,
        }
    }

    /// Checks every relation between the limits.
    ///
    /// # Errors
    /// The first relation that does not hold, as a sentence.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |reason: &'static str| Err(ConfigError(reason));
        if self.id == NodeId(0) {
            return error("the node id must not be 0, which means 'nobody'");
        }
        if self.heartbeat_interval_ticks == 0 {
            return error("the heartbeat interval must be at least one tick");
        }
        if self.election_timeout_ticks_min <= self.heartbeat_interval_ticks {
            return error("the election timeout must be longer than the heartbeat interval");
        }
        if self.election_timeout_ticks_max <= self.election_timeout_ticks_min {
            return error("the election timeout range [min, max) must not be empty");
        }
        if self.inflight_count_max == 0 || self.inflight_bytes_max == 0 {
            return error("the in-flight window must allow at least one message and one byte");
        }
        if self.append_bytes_max == 0 || self.snapshot_chunk_bytes == 0 {
            return error("message and snapshot chunk sizes must be at least one byte");
        }
        if self.snapshot_bytes_max < self.snapshot_chunk_bytes {
            return error("the largest snapshot must hold at least one chunk");
        }
        if self.snapshot_inflight_bytes_max < self.snapshot_chunk_bytes {
            return error("the snapshot window must hold at least one chunk");
        }
        if self.snapshot_resend_ticks == 0 {
            return error("a snapshot window is sent again after at least one tick");
        }
        if self.snapshot_give_up_ticks < self.election_timeout_ticks_min {
            return error(
                "a snapshot transfer is given up after one check-quorum interval at the least",
            );
        }
        if self.pending_reads_max == 0 {
            return error("at least one pending read must be allowed");
        }
        if self.read_mode == ReadMode::Lease && !self.check_quorum {
            return error("lease reads need check_quorum, or a deposed leader could serve them");
        }
        if self.read_mode == ReadMode::Lease
            && self.lease_drift_ticks >= self.election_timeout_ticks_min
        {
            return error("the lease drift must be shorter than the minimum election timeout");
        }
        Ok(())
    }
}

/// A configuration that breaks a relation between its limits.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid raft configuration: {0}")]
pub struct ConfigError(pub &'static str);
