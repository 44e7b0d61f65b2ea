//! The output of a replica: one batch of work for the caller, acknowledged with `advance`.

use crate::entry::{Entry, HardState, Membership, Snapshot, SnapshotMeta};
use crate::message::Message;
use crate::types::{LogId, LogIndex, NodeId};

/// Everything a replica asks its caller to do, in this order (the one order production and the
/// simulators both run):
///
/// 1. send `messages`: they promise nothing this cycle persists (a leader's entries,
///    heartbeats, snapshot chunks, `TimeoutNow`; Raft thesis §10.2.1);
/// 2. apply `committed[..committed_before_persist]` in order (already durable here: a caller
///    may answer their clients now);
/// 3. persist `persist` (snapshot, then entries, then hard state, then compaction) durably,
///    with one sync (a `commit_only` hard state alone needs no sync and may wait for the next
///    write);
/// 4. send `persisted_messages`: votes and responses, which promise what step 3 persisted;
/// 5. if `persist.snapshot` is set, restore the state machine from it; then apply the rest of
///    `committed` in order;
/// 6. answer each read in `reads` once the state machine has applied its `index`;
/// 7. call `advance(ready)`.
///
/// A crash may come between any two steps: what steps 1 and 2 did never depends on step 3.
/// The caller must not call `step`, `tick` or `propose` between `ready()` and `advance()`.
#[must_use = "a Ready must be acted on and passed back to advance()"]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Messages that may leave now, before `persist` is durable.
    pub messages: Vec<Message>,
    /// Messages that may leave only once `persist` is durable.
    pub persisted_messages: Vec<Message>,
    /// What to make durable (before `persisted_messages` leave).
    pub persist: Persist,
    /// Committed entries to apply to the state machine, in index order, without gaps.
    pub committed: Vec<Entry>,
    /// How many of `committed`, from the front, are durable here already and may be applied
    /// before `persist` is written.
    pub committed_before_persist: usize,
    /// Linearizable reads whose index is now known.
    pub reads: Vec<ReadState>,
    /// Contexts of reads given up because leadership was lost; the caller retries elsewhere.
    pub aborted_reads: Vec<u64>,
    /// The leader as this replica knows it, when that changed since the last `Ready`.
    pub leader_changed: Option<Option<NodeId>>,
    /// Chunks of a snapshot being received, to stage in order (`Config::snapshot_staging`):
    /// a chunk at offset 0 starts the snapshot it belongs to over.
    pub snapshot_chunks: Vec<SnapshotPiece>,
    /// Every chunk of this snapshot was handed out (`Config::snapshot_staging`): check what
    /// was staged, then `install_staged` or `refuse_staged` it.
    pub snapshot_received: Option<SnapshotMeta>,
    /// The snapshot whose chunks were handed out is given up (`Config::snapshot_staging`):
    /// what was staged for it can go. Handled before this ready's `snapshot_chunks`, which
    /// belong to a newer one.
    pub snapshot_staging_dropped: bool,
}

/// A chunk of a snapshot being received, for the caller to stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotPiece {
    /// The snapshot's last entry (which snapshot it belongs to).
    pub last: LogId,
    /// Where the chunk starts in the snapshot.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
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
    /// `hard_state` changed only its commit index: it needs no sync of its own, and a caller
    /// may keep it for its next write (and must write it then, after that write's entries, or
    /// at a clean stop). A restart that finds an older commit index relearns the rest.
    pub commit_only: bool,
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
            && self.persisted_messages.is_empty()
            && self.persist.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.aborted_reads.is_empty()
            && self.leader_changed.is_none()
            && self.snapshot_chunks.is_empty()
            && self.snapshot_received.is_none()
            && !self.snapshot_staging_dropped
    }
}

/// How many of `committed` are durable before `persist` is written: those below the first
/// entry it appends (earlier writes made the log before it durable). None when it installs a
/// snapshot, which they come after.
pub(crate) fn durable_prefix(persist: &Persist, committed: &[Entry]) -> usize {
    if persist.snapshot.is_some() {
        return 0;
    }
    match persist.entries.first() {
        None => committed.len(),
        Some(first) => committed.partition_point(|entry| entry.index < first.index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryPayload;
    use crate::types::Term;

    fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        range
            .map(|index| Entry {
                index: LogIndex(index),
                term: Term(1),
                payload: EntryPayload::Normal(vec![1].into()),
            })
            .collect()
    }

    /// Committed entries may be applied before the write only when an earlier write made them
    /// durable: those below the first entry this ready appends, none with a snapshot.
    #[test]
    fn only_entries_written_before_are_applied_ahead_of_the_write() {
        let committed = entries(5..=9);
        let mut persist = Persist::default();
        assert_eq!(
            durable_prefix(&persist, &committed),
            5,
            "nothing new to write"
        );
        persist.entries = entries(8..=12);
        assert_eq!(
            durable_prefix(&persist, &committed),
            3,
            "5-7 were written before"
        );
        persist.entries = entries(5..=12);
        assert_eq!(
            durable_prefix(&persist, &committed),
            0,
            "all are in this write"
        );
        persist.entries.clear();
        persist.snapshot = Some(Snapshot::default());
        assert_eq!(
            durable_prefix(&persist, &committed),
            0,
            "they follow the snapshot this write installs"
        );
    }
}
