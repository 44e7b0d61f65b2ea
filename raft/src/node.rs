//! One replica of one Raft group, driven from outside.
//!
//! Inputs: [`RaftNode::step`] (a message from a peer), [`RaftNode::tick`] (logical time),
//! [`RaftNode::propose`], [`RaftNode::propose_conf_change`], [`RaftNode::read_index`],
//! [`RaftNode::transfer_leader`] and [`RaftNode::compact`]. Output: [`RaftNode::ready`], acted on
//! by the caller in the order [`Ready`] documents, then acknowledged with [`RaftNode::advance`].
//! Nothing in here touches a clock, a socket or a file.

use crate::config::Config;
use crate::entry::{Bytes, Entry, EntryPayload, HardState, Membership, Snapshot};
use crate::error::{ProposeError, StepError};
use crate::handler::read::ReadQueue;
use crate::handler::snapshot::IncomingSnapshot;
use crate::handler::snapshot_send::{OutgoingSnapshot, SnapshotSendCounters};
use crate::log::{LogError, LogReader, RaftLog};
use crate::message::{Message, MessageBody};
use crate::progress::ProgressMap;
use crate::ready::{Persist, Ready};
use crate::timers::{Timer, TimerTable};
use crate::types::{LogIndex, NodeId, Term};
use std::collections::BTreeMap;

/// The role a replica plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win an election, without disturbing anyone (pre-vote).
    PreCandidate,
    /// Campaigns for leadership in its term.
    Candidate,
    /// Leads the group in its term.
    Leader,
}

/// A summary of a replica's state, for status displays and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The replica's node id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub committed: LogIndex,
    /// Its applied index.
    pub applied: LogIndex,
    /// Its last log index.
    pub last_index: LogIndex,
}

#[cfg(not(feature = "mutations"))]
fn initial_vote(_config: &Config, vote: Option<NodeId>) -> Option<NodeId> {
    vote
}

#[cfg(feature = "mutations")]
fn initial_vote(config: &Config, vote: Option<NodeId>) -> Option<NodeId> {
    let forget = config.mutation == crate::config::Mutation::ForgetVoteOnRestart;
    if forget { None } else { vote }
}

/// One replica of one Raft group. See the module documentation for the calling order.
#[derive(Debug)]
pub struct RaftNode<L> {
    pub(crate) config: Config,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog<L>,
    /// The membership in force: the last one applied.
    pub(crate) membership: Membership,
    /// Memberships applied since the snapshot, to snapshot at any applied index.
    pub(crate) membership_history: Vec<(LogIndex, Membership)>,
    /// The index of the newest membership entry not yet applied (leader).
    pub(crate) pending_membership_index: LogIndex,
    pub(crate) timers: TimerTable,
    /// When this replica last heard from the leader (a leader: last confirmed a quorum); `None`
    /// when nothing heard counts (a new replica, or one just woken from quiescence: its clock
    /// stood still, so any tick number would read as recent).
    pub(crate) leader_heard_at: Option<u64>,
    pub(crate) rng: crate::rng::SeededRng,
    /// Votes received in the current campaign.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// The leader's view of every replica, itself included.
    pub(crate) progress: ProgressMap,
    pub(crate) reads: ReadQueue,
    pub(crate) transfer_target: Option<NodeId>,
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// Staged chunks and a received snapshot for the next `Ready` (`Config::snapshot_staging`).
    pub(crate) staging: crate::handler::snapshot::StagingOutput,
    pub(crate) outgoing_snapshots: BTreeMap<NodeId, OutgoingSnapshot>,
    /// Transfers given up because their follower went silent, kept (their files released) to
    /// resume from where the follower was if the newest snapshot is still the same.
    pub(crate) given_up_snapshots: BTreeMap<NodeId, OutgoingSnapshot>,
    /// The number of the last snapshot transfer this replica started.
    pub(crate) snapshot_transfer_last: u64,
    pub(crate) snapshot_send_counters: SnapshotSendCounters,
    pub(crate) compaction: Option<Snapshot>,
    /// Messages that may leave before this cycle's write is durable (`Ready::messages`).
    pub(crate) messages: Vec<Message>,
    /// Messages that may leave only once it is (`Ready::persisted_messages`).
    pub(crate) persisted_messages: Vec<Message>,
    pub(crate) persisted_hard_state: HardState,
    pub(crate) reported_leader: Option<NodeId>,
    pub(crate) ready_outstanding: bool,
    /// Leader: entries were appended since the last broadcast; `ready()` sends them, so all
    /// proposals between two ready cycles travel in one AppendEntries per follower.
    pub(crate) broadcast_pending: bool,
    /// The store failed: the replica must stop (it keeps answering nothing new).
    pub(crate) fatal: Option<LogError>,
}

impl<L: LogReader> RaftNode<L> {
    /// A replica over `store`, restarting from what it holds. A new group's store must first
    /// persist `Persist::bootstrap(membership)`; a replica added later starts from an empty
    /// store and waits for the leader to contact it.
    ///
    /// # Errors
    /// If the store cannot be read.
    ///
    /// # Panics
    /// If `config` does not validate: configurations are checked when they are built.
    pub fn new(config: Config, store: L) -> Result<Self, LogError> {
        if let Err(error) = config.validate() {
            panic!("{error}");
        }
        let initial = store.initial_state()?;
        let log = RaftLog::new(store)?;
        let mut node = Self {
            rng: crate::rng::SeededRng::new(config.rng_seed),
            reads: ReadQueue::new(config.pending_reads_max),
            term: initial.hard_state.term,
            vote: initial_vote(&config, initial.hard_state.vote),
            role: Role::Follower,
            leader: None,
            membership: initial.snapshot_meta.membership.clone(),
            membership_history: Vec::new(),
            pending_membership_index: LogIndex::ZERO,
            log,
            timers: TimerTable::default(),
            leader_heard_at: None,
            votes: BTreeMap::new(),
            progress: ProgressMap::default(),
            transfer_target: None,
            incoming_snapshot: None,
            staging: crate::handler::snapshot::StagingOutput::default(),
            outgoing_snapshots: BTreeMap::new(),
            given_up_snapshots: BTreeMap::new(),
            snapshot_transfer_last: 0,
            snapshot_send_counters: SnapshotSendCounters::default(),
            compaction: None,
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            persisted_hard_state: initial.hard_state,
            config,
            reported_leader: None,
            ready_outstanding: false,
            broadcast_pending: false,
            fatal: None,
        };
        node.load_committed_membership()?;
        node.reset_election_timer();
        Ok(node)
    }

    /// Handles a message from a peer.
    ///
    /// # Errors
    /// `WrongRecipient` or `UnknownSender` for messages that were ignored; `Log` if the store
    /// failed (the node must stop).
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        self.assert_no_ready_outstanding();
        if message.to != self.config.id {
            return Err(StepError::WrongRecipient { to: message.to });
        }
        let result = self.step_inner(message);
        self.check_invariants();
        match &self.fatal {
            Some(error) => Err(StepError::Log(error.clone())),
            None => result,
        }
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.assert_no_ready_outstanding();
        self.timers.advance();
        if self.role == Role::Leader {
            self.tick_leader();
        } else if self.timers.expired(Timer::Election) {
            self.on_election_timeout();
        }
        self.check_invariants();
    }

    /// Proposes application data; returns the index the entry will have if it commits.
    ///
    /// # Errors
    /// `NotLeader` with the last known leader, or `TransferInProgress`.
    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<LogIndex, ProposeError> {
        self.assert_no_ready_outstanding();
        self.check_can_propose()?;
        let index = self.append_as_leader(EntryPayload::Normal(data.into()));
        self.check_invariants();
        Ok(index)
    }

    /// Whether `ready()` has anything to hand out.
    #[must_use]
    pub fn has_ready(&self) -> bool {
        if self.fatal.is_some() {
            return false;
        }
        !self.messages.is_empty()
            || !self.persisted_messages.is_empty()
            || self.broadcast_pending
            || self.reads.has_output()
            || self.log.unstable.snapshot.is_some()
            || !self.log.unstable.entries.is_empty()
            || self.hard_state() != self.persisted_hard_state
            || self.compaction.is_some()
            || self.log.committed() > self.log.applied()
            || self.leader != self.reported_leader
            || !self.staging.is_empty()
    }

    /// Everything the caller must do now, in one batch. Call `advance` once it is done.
    pub fn ready(&mut self) -> Ready {
        self.ready_within(u64::MAX)
    }

    /// As `ready`, with at most `committed_bytes_max` payload bytes of committed entries (at
    /// least one entry, so applying always moves on): the rest come in the next ready
    /// (`has_ready` stays true), so a replica far behind its commit index, as at a restart,
    /// never reads its whole backlog into memory at once.
    pub fn ready_within(&mut self, committed_bytes_max: u64) -> Ready {
        self.assert_no_ready_outstanding();
        self.flush_broadcast();
        self.flush_read_round();
        let hard_state = self.hard_state();
        let leader_changed = (self.leader != self.reported_leader).then_some(self.leader);
        self.reported_leader = self.leader;
        self.ready_outstanding = true;
        let (reads, aborted_reads) = self.reads.take_ready();
        let persist = Persist {
            snapshot: self.log.unstable.snapshot.clone(),
            entries: self.log.unstable.entries.clone(),
            hard_state: (hard_state != self.persisted_hard_state).then_some(hard_state),
            commit_only: is_commit_only(hard_state, self.persisted_hard_state),
            compaction: self.compaction.take(),
        };
        let committed = self.next_committed(committed_bytes_max);
        let committed_before_persist = self.committed_before_persist(&persist, &committed);
        let staging = std::mem::take(&mut self.staging);
        Ready {
            messages: std::mem::take(&mut self.messages),
            persisted_messages: std::mem::take(&mut self.persisted_messages),
            persist,
            committed,
            committed_before_persist,
            reads,
            aborted_reads,
            leader_changed,
            snapshot_chunks: staging.chunks,
            snapshot_received: staging.received,
            snapshot_staging_dropped: staging.dropped,
        }
    }

    /// How many of `committed` may be applied before `persist` is written.
    fn committed_before_persist(&self, persist: &Persist, committed: &[Entry]) -> usize {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::ApplyBeforePersist {
            return committed.len();
        }
        crate::ready::durable_prefix(persist, committed)
    }

    /// Acknowledges that `ready` was persisted, sent and applied.
    pub fn advance(&mut self, ready: Ready) {
        assert!(self.ready_outstanding, "advance() without ready()");
        self.ready_outstanding = false;
        let Ready {
            mut messages,
            mut persisted_messages,
            persist,
            committed,
            ..
        } = ready;
        // The messages were sent: their vectors' allocations serve the next ones (nothing
        // was queued since `ready()` took the last).
        messages.clear();
        if self.messages.capacity() == 0 {
            self.messages = messages;
        }
        persisted_messages.clear();
        if self.persisted_messages.capacity() == 0 {
            self.persisted_messages = persisted_messages;
        }
        let snapshot = persist.snapshot.as_ref();
        let snapshot_index = snapshot.map(|snapshot| snapshot.meta.last.index);
        let last_persisted = persist.entries.last().map(Entry::log_id);
        self.log.stable_to(last_persisted, snapshot_index);
        if let Some(hard_state) = persist.hard_state {
            self.persisted_hard_state = hard_state;
        }
        if let Some(snapshot) = snapshot {
            self.log.applied_snapshot(snapshot.meta.last.index);
        }
        for entry in &committed {
            self.apply_entry(entry);
        }
        if self.role == Role::Leader {
            self.on_leader_persisted();
        }
        self.check_invariants();
    }

    /// Leader: sends a heartbeat to every follower now (MultiRaft's coalesced heartbeat calls
    /// this for each group it leads). Does nothing on other roles.
    pub fn heartbeat(&mut self) {
        if self.role == Role::Leader {
            self.broadcast_heartbeat();
        }
    }

    /// Whether this leader has nothing in flight: every replica holds the whole log and has
    /// acknowledged a heartbeat that committed all of it, everything is applied, and no read,
    /// transfer, snapshot or membership change is pending. Such a group may stop ticking
    /// (quiesce). False on other roles. (A replica that misses the last heartbeat before the
    /// quiescence then still holds everything committed; a learner, which never campaigns,
    /// would otherwise wait for a commit index that no one sends it again.)
    #[must_use]
    pub fn is_idle(&self) -> bool {
        let last = self.log.last_index();
        self.role == Role::Leader
            && self.log.committed() == last
            && self.log.applied() == last
            && self
                .progress
                .values()
                .all(|progress| progress.matched == last)
            && self.followers_know_the_commit(last)
            && self.reads.is_empty()
            && self.transfer_target.is_none()
            && self.outgoing_snapshots.is_empty()
            && !self.membership.is_joint()
            && self.pending_membership_index <= self.log.applied()
            && !self.has_ready()
    }

    /// Whether every follower acknowledged a heartbeat that committed up to `last`.
    fn followers_know_the_commit(&self, last: LogIndex) -> bool {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::QuiesceBeforeTheCommitIsKnown {
            return true;
        }
        self.followers()
            .filter_map(|node| self.progress.get(&node))
            .all(|progress| progress.commit_known >= last)
    }

    /// Frees what an idle replica keeps only to make the next `ready` cheaper (the vector its
    /// last messages went out in): a node hosts thousands of quiescent groups.
    pub fn release_spare_memory(&mut self) {
        if self.messages.is_empty() {
            self.messages = Vec::new();
        }
        if self.persisted_messages.is_empty() {
            self.persisted_messages = Vec::new();
        }
    }

    /// A follower woken by its leader node's silence hears that node again and goes back to
    /// quiescence: the leader counts as heard now, as it did before the silence (so the
    /// follower keeps ignoring campaigns while its leader's node is live). Does nothing unless
    /// this replica follows a known leader.
    pub fn heard_leader_node(&mut self) {
        self.assert_no_ready_outstanding();
        if self.role == Role::Follower && self.leader.is_some() {
            self.leader_heard_at = Some(self.timers.now());
        }
    }

    /// Resumes after a pause in ticking (quiescence): timers start afresh, and nothing learned
    /// before the pause counts as recent (no lease, no activity for check-quorum).
    pub fn wake(&mut self) {
        self.assert_no_ready_outstanding();
        self.reads.forget_leases();
        self.leader_heard_at = None;
        if self.role == Role::Leader {
            let now = self.timers.now();
            for progress in self.progress.values_mut() {
                progress.heard(now);
            }
            self.timers.set(
                crate::timers::Timer::CheckQuorum,
                self.config.election_timeout_ticks_min,
            );
            self.leader_heard_at = Some(self.timers.now());
        } else {
            self.reset_election_timer();
        }
    }

    /// The store error that stopped this replica, if any. Reading the persisted log failed in
    /// a way Raft cannot work around (not a compacted or missing entry): the node must stop
    /// and be restarted from its store, like after a crash. Check it after each input.
    #[must_use]
    pub fn fatal_error(&self) -> Option<&LogError> {
        self.fatal.as_ref()
    }

    /// Records a store failure; the first one is kept.
    pub(crate) fn fail(&mut self, error: LogError) {
        self.fatal.get_or_insert(error);
    }

    fn next_committed(&mut self, bytes_max: u64) -> Vec<Entry> {
        match self.log.next_committed(bytes_max) {
            Ok(entries) => entries,
            Err(error) => {
                self.fail(error);
                Vec::new()
            }
        }
    }

    /// This replica's node id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The role in the current term.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current term.
    #[must_use]
    pub fn term(&self) -> Term {
        self.term
    }

    /// The candidate this replica voted for in its term, if any.
    #[must_use]
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// The leader this replica last heard of in its term.
    #[must_use]
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The membership in force (the last applied).
    #[must_use]
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The replica's log.
    #[must_use]
    pub fn log(&self) -> &RaftLog<L> {
        &self.log
    }

    /// The persisted store, for the caller to write what `Ready` asks.
    pub fn store_mut(&mut self) -> &mut L {
        self.log.store_mut()
    }

    /// Gives the store back (what a crash keeps).
    pub fn into_store(self) -> L {
        self.log.into_store()
    }

    /// The index of the entry the membership in force comes from (the snapshot's last index
    /// when it comes from a snapshot): a newer membership always has a higher one.
    #[must_use]
    pub fn membership_index(&self) -> LogIndex {
        self.membership_history.last().map_or_else(
            || LogIndex(self.log.first_index().0.saturating_sub(1)),
            |(index, _)| *index,
        )
    }

    /// On a leader, the highest index `node`'s replica is known to hold; `None` on a follower
    /// or for a node outside the group. Whether a learner has caught up is read from it.
    #[must_use]
    pub fn matched(&self, node: NodeId) -> Option<LogIndex> {
        if self.role != Role::Leader {
            return None;
        }
        if node == self.config.id {
            return Some(self.log.last_index());
        }
        self.progress.get(&node).map(|progress| progress.matched)
    }

    /// The tick at which the next timer fires; `None` when no timer is armed.
    #[must_use]
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    /// A summary for displays and tests.
    #[must_use]
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            committed: self.log.committed(),
            applied: self.log.applied(),
            last_index: self.log.last_index(),
        }
    }

    pub(crate) fn id_(&self) -> NodeId {
        self.config.id
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }

    /// Queues a message to `to` in the current term.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_with_term(to, self.term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        debug_assert_ne!(to, self.config.id, "a replica never messages itself");
        let message = Message {
            from: self.config.id,
            to,
            term,
            body,
        };
        if self.may_leave_before_persist(&message) {
            self.messages.push(message);
        } else {
            self.persisted_messages.push(message);
        }
    }

    /// Whether `message` may leave before this cycle's write is durable (Raft thesis
    /// §10.2.1): a leader's own traffic (entries, heartbeats, snapshot chunks, TimeoutNow)
    /// promises nothing this cycle persists, since the leader counts its own copy of an entry
    /// only once `advance` reports it durable and its term and vote were made durable when it
    /// campaigned. Votes and responses promise what this replica has persisted: after.
    fn may_leave_before_persist(&self, message: &Message) -> bool {
        let leader_traffic = self.role == Role::Leader
            && matches!(
                message.body,
                MessageBody::AppendEntries { .. }
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::InstallSnapshot { .. }
                    | MessageBody::TimeoutNow
            );
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::VoteBeforePersist
            && matches!(message.body, MessageBody::VoteResponse { .. })
        {
            return true;
        }
        leader_traffic
    }

    fn assert_no_ready_outstanding(&self) {
        assert!(
            !self.ready_outstanding,
            "the Ready handed out must be advanced before the next input"
        );
    }

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer_target.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        Ok(())
    }

    /// Appends an entry in the current term to the leader's log and replicates it.
    pub(crate) fn append_as_leader(&mut self, payload: EntryPayload) -> LogIndex {
        let index = self.log.last_index().next();
        let entry = Entry {
            term: self.term,
            index,
            payload,
        };
        self.log.append(std::slice::from_ref(&entry));
        self.broadcast_pending = true;
        index
    }

    /// Sends the entries appended since the last broadcast, one message per follower.
    fn flush_broadcast(&mut self) {
        if std::mem::take(&mut self.broadcast_pending) && self.role == Role::Leader {
            self.broadcast_append();
        }
    }
}

/// Whether `now` differs from the last persisted hard state only in its commit index: such a
/// hard state needs no sync of its own (a restart that finds an older commit index relearns the
/// rest from the leader).
fn is_commit_only(now: HardState, persisted: HardState) -> bool {
    now != persisted && now.term == persisted.term && now.vote == persisted.vote
}
