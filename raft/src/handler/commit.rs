//! Commitment (Raft §5.3, §5.4.2): an entry commits once a quorum holds it, and a leader
//! commits by counting only entries of its own term (Figure 8). Other replicas learn the
//! commit from the leader, and from the answers to their (pre-)votes.

use crate::log::LogReader;
use crate::node::{RaftNode, Role};
use crate::quorum::quorum_of;
use crate::types::{LogId, LogIndex, Term};

impl<L: LogReader> RaftNode<L> {
    /// Leader: moves the commit index to what a quorum holds, if that entry is of the current
    /// term. Returns whether the commit index moved.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let quorum_index = LogIndex(
            quorum_of(&self.membership)
                .committed(|node| self.progress.get(&node).map(|progress| progress.matched.0)),
        );
        if quorum_index <= self.log.committed() {
            return false;
        }
        if !self.may_commit_by_counting(quorum_index) {
            return false;
        }
        self.log.commit_to(quorum_index);
        self.release_reads_waiting_for_commit();
        true
    }

    /// Figure 8: an entry from an earlier term is never committed by counting replicas; it
    /// commits only together with an entry of the leader's term.
    fn may_commit_by_counting(&self, index: LogIndex) -> bool {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::CommitPreviousTermByCounting {
            return true;
        }
        self.log.term(index) == Ok(self.term)
    }

    /// Leader, after `advance`: its own entries are persisted, so it counts for them now.
    pub(crate) fn on_leader_persisted(&mut self) {
        debug_assert_eq!(self.role, Role::Leader);
        let persisted = self.log.persisted_index();
        let id = self.id_();
        let Some(progress) = self.progress.get_mut(&id) else {
            return;
        };
        if persisted <= progress.matched {
            return;
        }
        progress.matched = persisted;
        progress.next = persisted.next();
        if self.maybe_commit() {
            self.broadcast_append();
        }
    }

    /// The commit index with the term of the entry there: what a vote answer tells. Zero when
    /// the term cannot be read (index zero teaches no one anything).
    pub(crate) fn committed_log_id(&self) -> LogId {
        let index = self.log.committed();
        match self.log.term(index) {
            Ok(term) => LogId::new(term, index),
            Err(_) => LogId::new(Term::ZERO, LogIndex::ZERO),
        }
    }

    /// Not a leader: another replica's vote answer says everything up to `commit` is
    /// committed. We commit as far as our log provably holds the same entries: up to
    /// `commit.index`, or our last entry if the log ends before, and only if our entry there
    /// has `commit.term`. Entries of one term come from its one leader, which put them in
    /// every log at the same index, so an entry of that term at or before `commit.index`
    /// is the voter's own entry there, and Log Matching (Raft §5.3) makes the two prefixes
    /// equal. This is how a replica refused by a removed one with a longer log learns that
    /// the configuration which removed it is committed, and elects under it.
    pub(crate) fn learn_commit(&mut self, commit: LogId) {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::config::Mutation::IgnoreCommitInVoteAnswers {
            return;
        }
        // A leader commits by counting (Figure 8); a learned index would bypass its reads
        // and membership bookkeeping for nothing: it holds every committed entry.
        if self.role == Role::Leader {
            return;
        }
        let index = commit.index.min(self.log.last_index());
        if index <= self.log.committed() || self.log.term(index) != Ok(commit.term) {
            return;
        }
        self.log.commit_to(index);
    }
}
