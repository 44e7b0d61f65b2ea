//! Linearizable reads (thesis §6.4). ReadIndex: the leader records its commit index, confirms
//! it is still leader with one heartbeat round to a quorum, and the read may be served once
//! that index is applied. Every read that arrives before a round starts shares it. Lease
//! (opt-in): a leader that heard from a quorum recently enough answers without a round.

use crate::config::ReadMode;
use crate::error::ProposeError;
use crate::log::LogReader;
use crate::node::{RaftNode, Role};
use crate::quorum::quorum_of;
use crate::ready::ReadState;
use crate::types::{LogIndex, NodeId};
use std::collections::{BTreeMap, VecDeque};

/// How many recent heartbeat rounds remember when they were sent (for leases).
const ROUNDS_REMEMBERED: usize = 64;

/// The reads a leader is confirming, and the heartbeat rounds that confirm them.
#[derive(Clone, Debug)]
pub(crate) struct ReadQueue {
    pending_max: usize,
    /// Reads waiting for the leader's first commit in its term (§6.4 step 1).
    waiting_commit: Vec<u64>,
    /// Reads waiting for a round: (context, index, round).
    waiting_round: VecDeque<(u64, LogIndex, u64)>,
    /// Whether some read waits for a round that has not started.
    round_wanted: bool,
    /// The last round started.
    round: u64,
    /// When recent rounds were sent: (round, tick).
    round_sent_at: VecDeque<(u64, u64)>,
    /// The highest round each follower acknowledged.
    acknowledged: BTreeMap<NodeId, u64>,
    /// When the newest round each follower acknowledged was sent (its lease start).
    lease_start: BTreeMap<NodeId, u64>,
    /// Set once this leader sent TimeoutNow: voters grant that campaign despite their own
    /// lease, so no lease proves anything for the rest of the term (thesis §3.10, §6.4.1).
    lease_suspended: bool,
    ready: Vec<ReadState>,
    aborted: Vec<u64>,
}

impl ReadQueue {
    pub(crate) fn new(pending_max: usize) -> Self {
        Self {
            pending_max,
            waiting_commit: Vec::new(),
            waiting_round: VecDeque::new(),
            round_wanted: false,
            round: 0,
            round_sent_at: VecDeque::new(),
            acknowledged: BTreeMap::new(),
            lease_start: BTreeMap::new(),
            lease_suspended: false,
            ready: Vec::new(),
            aborted: Vec::new(),
        }
    }

    fn pending_count(&self) -> usize {
        self.waiting_commit.len() + self.waiting_round.len()
    }

    pub(crate) fn has_output(&self) -> bool {
        !self.ready.is_empty() || !self.aborted.is_empty() || self.round_wanted
    }

    /// Starts a heartbeat round sent at `now`; returns its number. Send times are kept only
    /// for leases (`track_send_times`), which need them; ReadIndex does not.
    pub(crate) fn start_round(&mut self, now: u64, track_send_times: bool) -> u64 {
        self.round += 1;
        self.round_wanted = false;
        if !track_send_times {
            return self.round;
        }
        if self.round_sent_at.len() == ROUNDS_REMEMBERED {
            self.round_sent_at.pop_front();
        }
        self.round_sent_at.push_back((self.round, now));
        self.round
    }

    pub(crate) fn acknowledge(&mut self, from: NodeId, round: u64) {
        let acknowledged = self.acknowledged.entry(from).or_default();
        *acknowledged = (*acknowledged).max(round);
        let sent_at = self
            .round_sent_at
            .iter()
            .find(|(sent_round, _)| *sent_round == round)
            .map(|(_, tick)| *tick);
        if let Some(tick) = sent_at {
            let start = self.lease_start.entry(from).or_default();
            *start = (*start).max(tick);
        }
    }

    /// TimeoutNow was sent: serve no more lease reads in this term.
    pub(crate) fn suspend_lease(&mut self) {
        self.lease_suspended = true;
    }

    /// The reads that are ready and the contexts of reads given up, since the last call.
    pub(crate) fn take_ready(&mut self) -> (Vec<ReadState>, Vec<u64>) {
        (
            std::mem::take(&mut self.ready),
            std::mem::take(&mut self.aborted),
        )
    }

    /// A new term of leadership: nothing carries over but the round counter.
    pub(crate) fn reset(&mut self) {
        self.abort_all();
        self.acknowledged.clear();
        self.lease_start.clear();
        self.lease_suspended = false;
        self.round_sent_at.clear();
    }

    /// Whether no read is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending_count() == 0 && self.ready.is_empty()
    }

    /// Forgets every lease evidence (after a pause in ticking, old evidence proves nothing).
    pub(crate) fn forget_leases(&mut self) {
        self.lease_start.clear();
        self.round_sent_at.clear();
    }

    /// Leadership lost: every pending read is given up (the caller retries elsewhere).
    pub(crate) fn abort_all(&mut self) {
        self.aborted.append(&mut self.waiting_commit);
        self.aborted
            .extend(self.waiting_round.drain(..).map(|(context, _, _)| context));
        self.round_wanted = false;
    }
}

impl<L: LogReader> RaftNode<L> {
    /// Asks for a linearizable read. The read appears in a later `Ready` as a `ReadState` with
    /// the index the state machine must reach before serving it, or among the aborted reads
    /// if leadership is lost first.
    ///
    /// # Errors
    /// `NotLeader` with the last known leader, or `TooManyPendingReads`.
    pub fn read_index(&mut self, context: u64) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.reads.pending_count() >= self.reads.pending_max {
            return Err(ProposeError::TooManyPendingReads);
        }
        if self.committed_in_current_term() {
            self.queue_read(context);
        } else {
            self.reads.waiting_commit.push(context);
        }
        Ok(())
    }

    fn committed_in_current_term(&self) -> bool {
        self.log.term(self.log.committed()) == Ok(self.term)
    }

    fn queue_read(&mut self, context: u64) {
        let index = self.log.committed();
        if self.read_needs_no_round() {
            self.reads.ready.push(ReadState { context, index });
            return;
        }
        let round = self.reads.round + 1;
        self.reads.waiting_round.push_back((context, index, round));
        self.reads.round_wanted = true;
    }

    fn read_needs_no_round(&self) -> bool {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::ReadWithoutQuorum {
            return true;
        }
        // Alone only if this replica is every voter of both halves: in the joint
        // configuration {2}/{1} leader 1 still needs 2 (Raft §6).
        let id = self.id_();
        let membership = &self.membership;
        let alone = membership.voters.contains(&id)
            && membership
                .voters
                .iter()
                .chain(&membership.outgoing)
                .all(|&node| node == id);
        alone || (self.config.read_mode == ReadMode::Lease && self.lease_is_valid())
    }

    /// Lease (thesis §6.4.1): a quorum acknowledged heartbeats sent within the minimum
    /// election timeout less the drift bound, so no other leader can exist yet.
    fn lease_is_valid(&self) -> bool {
        if self.reads.lease_suspended {
            return false;
        }
        let now = self.timers.now();
        let id = self.id_();
        let lease_ticks = self.config.election_timeout_ticks_min - self.config.lease_drift_ticks;
        let oldest = quorum_of(&self.membership).committed(|node| {
            if node == id {
                Some(now)
            } else {
                self.reads.lease_start.get(&node).copied()
            }
        });
        oldest > 0 && now.saturating_sub(oldest) < lease_ticks
    }

    /// Called from `ready()`: start a round now if some read waits for one.
    pub(crate) fn flush_read_round(&mut self) {
        if self.role == Role::Leader && self.reads.round_wanted {
            self.broadcast_heartbeat();
        }
    }

    /// Leader: after an acknowledgement, serve every read whose round a quorum confirmed.
    pub(crate) fn release_confirmed_reads(&mut self) {
        let id = self.id_();
        let round = self.reads.round;
        let confirmed = quorum_of(&self.membership).committed(|node| {
            if node == id {
                Some(round)
            } else {
                self.reads.acknowledged.get(&node).copied()
            }
        });
        while let Some(&(context, index, read_round)) = self.reads.waiting_round.front() {
            if read_round > confirmed {
                break;
            }
            self.reads.waiting_round.pop_front();
            self.reads.ready.push(ReadState { context, index });
        }
    }

    /// Leader: the commit index moved; reads waiting for a commit in this term may proceed.
    pub(crate) fn release_reads_waiting_for_commit(&mut self) {
        if self.reads.waiting_commit.is_empty() || !self.committed_in_current_term() {
            return;
        }
        let waiting = std::mem::take(&mut self.reads.waiting_commit);
        for context in waiting {
            self.queue_read(context);
        }
    }
}
