//! Commitment (Raft §5.3, §5.4.2): an entry commits once a quorum holds it, and a leader
//! commits by counting only entries of its own term (Figure 8).

use crate::log::LogReader;
use crate::node::{RaftNode, Role};
use crate::quorum::quorum_of;
use crate::types::LogIndex;

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
}
