//! Leader election (Raft §5.2, §5.4.1) with pre-vote (thesis §9.6): randomized timeouts, one
//! vote per term, the up-to-date rule, and the role transitions.

use crate::log::LogReader;
use crate::message::MessageBody;
use crate::node::{RaftNode, Role};
use crate::quorum::{VoteResult, quorum_of};
use crate::timers::Timer;
use crate::types::{LogId, NodeId, Term};

/// Which kind of campaign to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Campaign {
    /// Ask first whether an election could be won, changing no state.
    PreVote,
    /// A real election in a new term.
    Vote,
    /// A real election ordered by the leader (TimeoutNow): voters skip the lease check.
    Transfer,
}

impl<L: LogReader> RaftNode<L> {
    /// Arms the election timer with a fresh random timeout in `[min, max)`; re-randomizing on
    /// every reset is what resolves split votes (Raft §5.2).
    pub(crate) fn reset_election_timer(&mut self) {
        let timeout_ticks = self.rng.range(
            self.config.election_timeout_ticks_min,
            self.config.election_timeout_ticks_max,
        );
        self.timers.set(Timer::Election, timeout_ticks);
    }

    /// Whether this replica may become leader: it must be a voter of the membership in force.
    pub(crate) fn promotable(&self) -> bool {
        self.membership.is_voter(self.id_())
    }

    /// Whether a leader was heard from within the minimum election timeout (check-quorum only).
    /// With lease reads, a replica that started less than that long ago counts as in lease too:
    /// before a crash it may have acknowledged a leader whose lease still runs (thesis §6.4.1).
    pub(crate) fn in_leader_lease(&self) -> bool {
        let now = self.timers.now();
        let timeout_ticks = self.config.election_timeout_ticks_min;
        let heard_leader = self.leader.is_some()
            && self
                .leader_heard_at
                .is_some_and(|heard_at| now - heard_at < timeout_ticks);
        let may_have_acknowledged_a_lease =
            self.config.read_mode == crate::config::ReadMode::Lease && now < timeout_ticks;
        self.config.check_quorum && (heard_leader || may_have_acknowledged_a_lease)
    }

    pub(crate) fn on_election_timeout(&mut self) {
        if !self.promotable() {
            self.reset_election_timer();
            return;
        }
        let kind = if self.config.pre_vote {
            Campaign::PreVote
        } else {
            Campaign::Vote
        };
        self.campaign(kind);
    }

    pub(crate) fn campaign(&mut self, kind: Campaign) {
        if kind == Campaign::PreVote {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        let term = match kind {
            Campaign::PreVote => self.term.next(),
            Campaign::Vote | Campaign::Transfer => self.term,
        };
        self.votes.insert(self.id_(), true);
        if self.tally_votes() == VoteResult::Won {
            self.on_campaign_won(kind == Campaign::PreVote);
            return;
        }
        let last_log = self.log.last_log_id();
        let voters: Vec<NodeId> = self.membership.replicas().collect();
        for voter in voters {
            if voter == self.id_() || !self.membership.is_voter(voter) {
                continue;
            }
            let body = MessageBody::RequestVote {
                pre_vote: kind == Campaign::PreVote,
                last_log,
                transfer: kind == Campaign::Transfer,
            };
            self.send_with_term(voter, term, body);
        }
    }

    pub(crate) fn handle_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log: LogId,
    ) {
        let granted = self.may_grant_vote(from, term, pre_vote)
            && last_log.is_up_to_date_with(&self.log.last_log_id());
        if granted && !pre_vote {
            self.vote = Some(from);
            self.reset_election_timer();
        }
        // A granted pre-vote answers in the term asked about; a refusal tells our own term.
        let answer_term = if pre_vote && granted { term } else { self.term };
        let commit = self.committed_log_id();
        self.send_with_term(
            from,
            answer_term,
            MessageBody::VoteResponse {
                pre_vote,
                granted,
                commit,
            },
        );
    }

    /// One vote per term (Raft §5.2): repeat a vote already given, or vote when free and no
    /// leader is known; a pre-vote for a later term is always considered.
    fn may_grant_vote(&self, from: NodeId, term: Term, pre_vote: bool) -> bool {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::GrantEveryVote
            && self.role == Role::Follower
        {
            return true;
        }
        self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term)
    }

    pub(crate) fn handle_vote_response(&mut self, from: NodeId, pre_vote: bool, granted: bool) {
        let campaigning = match self.role {
            Role::PreCandidate => pre_vote,
            Role::Candidate => !pre_vote,
            Role::Follower | Role::Leader => false,
        };
        if !campaigning {
            return;
        }
        self.votes.insert(from, granted);
        match self.tally_votes() {
            VoteResult::Won => self.on_campaign_won(pre_vote),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    fn tally_votes(&self) -> VoteResult {
        quorum_of(&self.membership).vote_result(|node| self.votes.get(&node).copied())
    }

    fn on_campaign_won(&mut self, pre_vote: bool) {
        if pre_vote {
            self.campaign(Campaign::Vote);
        } else {
            self.become_leader();
        }
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.leave_leadership();
        self.reset_election_timer();
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader never campaigns");
        self.role = Role::PreCandidate;
        self.votes.clear();
        self.leader = None;
        self.reset_election_timer();
    }

    fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader never campaigns");
        self.term = self.term.next();
        self.vote = Some(self.id_());
        self.role = Role::Candidate;
        self.votes.clear();
        self.leader = None;
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        self.role = Role::Leader;
        self.leader = Some(self.id_());
        self.leader_heard_at = Some(self.timers.now());
        self.timers.stop(Timer::Election);
        if !self.config.coalesced_heartbeats {
            self.timers
                .set(Timer::Heartbeat, self.config.heartbeat_interval_ticks);
        }
        self.timers
            .set(Timer::CheckQuorum, self.config.election_timeout_ticks_min);
        self.reset_progress();
        // Any membership entry past the commit index may still be pending (etcd's rule).
        self.pending_membership_index = self.log.last_index();
        self.reads.reset();
        // A blank entry of the new term commits everything before it (Raft §5.4.2, §8).
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::CommitPreviousTermByCounting {
            self.broadcast_append();
            return;
        }
        self.append_as_leader(crate::entry::EntryPayload::Blank);
    }

    /// Drops every piece of leader-only state.
    fn leave_leadership(&mut self) {
        self.timers.stop(Timer::Heartbeat);
        self.timers.stop(Timer::CheckQuorum);
        self.timers.stop(Timer::Transfer);
        self.progress.clear();
        self.drop_outgoing_snapshots();
        self.transfer_target = None;
        self.reads.abort_all();
    }
}
