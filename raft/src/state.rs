//! The invariants every replica keeps, written once and checked after every input in debug
//! builds (and by the simulator after every event). The pointer ordering is explained in
//! `docs/data/log-pointers.md`.

use crate::log::LogReader;
use crate::node::{RaftNode, Role};

impl<L: LogReader> RaftNode<L> {
    /// Panics if a local invariant is broken: a bug in this crate.
    pub fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            self.check_invariants_always();
        }
    }

    /// The same checks, in every build (the simulator calls this).
    ///
    /// # Panics
    /// If an invariant does not hold.
    pub fn check_invariants_always(&self) {
        // A snapshot received but not yet persisted is applied by `advance`; until then only
        // the persisted snapshot bounds the applied index.
        let snapshot_index = self.log.store().first_index().prev();
        let applied = self.log.applied();
        let committed = self.log.committed();
        let last = self.log.last_index();
        if self.log.unstable.snapshot.is_none() {
            assert!(
                snapshot_index <= applied,
                "snapshot {snapshot_index} is past applied {applied}"
            );
        }
        assert!(
            applied <= committed,
            "applied {applied} is past committed {committed}"
        );
        assert!(
            committed <= last,
            "committed {committed} is past the last index {last}"
        );
        assert!(
            self.persisted_hard_state.term <= self.term,
            "the term went back from the persisted one"
        );
        self.check_role();
    }

    fn check_role(&self) {
        let id = self.id_();
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(id), "a leader must know itself as leader");
                assert_eq!(self.vote, Some(id), "a leader must have voted for itself");
                assert!(self.progress.contains_key(&id) || !self.membership.contains(id));
            }
            Role::Candidate => {
                assert_eq!(
                    self.vote,
                    Some(id),
                    "a candidate must have voted for itself"
                );
                assert!(self.progress.is_empty(), "a candidate keeps no progress");
            }
            Role::Follower | Role::PreCandidate => {
                assert!(self.progress.is_empty(), "only a leader keeps progress");
                assert!(self.transfer_target.is_none(), "only a leader transfers");
            }
        }
    }
}
