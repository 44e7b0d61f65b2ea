//! The output of a replica: one batch of work for the caller, acknowledged with `advance`.

use crate::entry::{Entry, HardState, Membership, Snapshot, SnapshotMeta};
use crate::message::Message;
use crate::types::{LogId, LogIndex, NodeId};

/// Everything a replica asks its caller to do, in this order:
///
/// 1. persist `persist` (snapshot, then entries, then hard state, then compaction) durably,
///    with one sync;
/// 2. send `messages` (they may depend on what step 1 persisted);
/// 3. if `persist.snapshot` is set, restore the state machine from it; then apply `committed`
///    in order;
///    (the committed entries below `persist.entries[0]`, when there is no snapshot, were made
///    durable by earlier writes: a caller may apply them, and answer their clients, before
///    step 1);
/// 4. answer each read in `reads` once the state machine has applied its `index`;
/// 5. call `advance(ready)`.
///
/// The caller must not call `step`, `tick` or `propose` between `ready()` and `advance()`.
#[must_use = "a Ready must be acted on and passed back to advance()"]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Messages to send once `persist` is durable.
    pub messages: Vec<Message>,
    /// What to make durable before sending.
    pub persist: Persist,
    /// Committed entries to apply to the state machine, in index order, without gaps.
    pub committed: Vec<Entry>,
    /// Linearizable reads whose index is now known.
    pub reads: Vec<ReadState>,
    /// Contexts of reads given up because leadership was lost; the caller retries elsewhere.
    pub aborted_reads: Vec<u64>,
    /// The leader as this replica knows it, when that changed since the last `Ready`.
    pub leader_changed: Option<Option<NodeId>>,
}

/// What must be durable before the messages of the same `Ready` are sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    /// A snapshot received from the leader: replace the whole log with it.
    pub snapshot: Option<Snapshot>,
    /// Entries to append. Any persisted entry at or after `entries[0].index` must be dropped
    /// first (it conflicts with the leader's log).
    pub entries: Vec<Entry>,
    /// The new hard state, when it changed.
    pub hard_state: Option<HardState>,
    /// A snapshot the application asked for (`RaftNode::compact`): store it, then drop the
    /// entries it covers.
    pub compaction: Option<Snapshot>,
}

impl Persist {
    /// What a new group's first replicas persist before starting: an empty snapshot at index
    /// zero that carries the initial membership.
    #[must_use]
    pub fn bootstrap(membership: Membership) -> Self {
        Self {
            snapshot: Some(Snapshot {
                meta: SnapshotMeta {
                    last: LogId::default(),
                    membership,
                },
                data: Vec::new(),
            }),
            ..Self::default()
        }
    }

    /// Whether nothing needs persisting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.compaction.is_none()
    }
}

/// A read that may be served once the state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's identifier for the read, as passed to `read_index`.
    pub context: u64,
    /// The commit index the read must wait for.
    pub index: LogIndex,
}

impl Ready {
    /// Whether there is nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.aborted_reads.is_empty()
            && self.leader_changed.is_none()
    }
}
