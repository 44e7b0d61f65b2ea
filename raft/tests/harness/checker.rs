//! The Raft safety properties (Raft Figure 3; docs/TESTING.md), checked after every event of a
//! simulated run. A violation panics with the property's name; the simulator turns that into
//! a `reproduce:` line.

use flotilla_raft::{Entry, EntryPayload, LogId, LogIndex, MemLog, NodeId, RaftNode, Role, Term};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// A stable hash of an entry's payload.
pub fn payload_hash(entry: &Entry) -> u64 {
    let mut hasher = DefaultHasher::new();
    match &entry.payload {
        EntryPayload::Blank => 0u8.hash(&mut hasher),
        EntryPayload::Normal(data) => data.hash(&mut hasher),
        EntryPayload::Membership(membership) => format!("{membership:?}").hash(&mut hasher),
    }
    hasher.finish()
}

/// Everything the checker remembers about the run.
#[derive(Debug, Default)]
pub struct Checker {
    /// (index, term) -> (payload hash, term of the entry before): Log Matching.
    entries_seen: HashMap<(LogIndex, Term), (u64, Option<Term>)>,
    /// term -> its leader: Election Safety.
    leaders: BTreeMap<Term, NodeId>,
    /// node -> the (term, last log id) it had as leader: Leader Append-Only.
    leader_tails: BTreeMap<NodeId, (Term, LogId)>,
    /// index -> (term, payload hash) of every applied entry: State Machine Safety.
    applied: BTreeMap<LogIndex, (Term, u64)>,
    /// node -> last applied index: apply order.
    last_applied: BTreeMap<NodeId, LogIndex>,
    /// node -> highest commit index seen while up.
    commits: BTreeMap<NodeId, LogIndex>,
    /// index -> (term of the entry, term it was first seen committed in) of every entry any
    /// replica has committed.
    committed: BTreeMap<LogIndex, (Term, Term)>,
    /// node -> highest term seen (persisted terms survive restarts).
    terms: BTreeMap<NodeId, Term>,
    /// How many times each property was checked (a checker that never runs proves nothing).
    pub checks: u64,
    /// Leaders elected in a term before that of an entry already committed, lacking it (legal:
    /// see `check_leader_completeness`); counted so a regression seed can show it gets there.
    pub late_leaders: u64,
}

impl Checker {
    /// Log Matching (§5.3): the same (index, term) always holds the same entry, preceded by
    /// the same term.
    pub fn on_entries_persisted(&mut self, entries: &[Entry], prev_term: Option<Term>) {
        let mut prev = prev_term;
        for entry in entries {
            let key = (entry.index, entry.term);
            let value = (payload_hash(entry), prev);
            let seen = *self.entries_seen.entry(key).or_insert(value);
            assert!(
                seen.0 == value.0 && (seen.1 == value.1 || seen.1.is_none() || value.1.is_none()),
                "log matching violated at {}: two different entries share index and term",
                entry.log_id()
            );
            prev = Some(entry.term);
            self.checks += 1;
        }
    }

    /// State Machine Safety: no two replicas apply different entries at one index, and each
    /// applies in order without gaps.
    pub fn on_applied(&mut self, node: NodeId, entry: &Entry) {
        let value = (entry.term, payload_hash(entry));
        let first = *self.applied.entry(entry.index).or_insert(value);
        assert_eq!(
            first, value,
            "state machine safety violated: {node} applied a different entry at {}",
            entry.index
        );
        let last = self.last_applied.entry(node).or_default();
        assert_eq!(entry.index, last.next(), "apply out of order on {node}");
        *last = entry.index;
        self.checks += 1;
    }

    /// The replica restored its state machine from a snapshot (or restarted from one).
    pub fn on_state_restored(&mut self, node: NodeId, index: LogIndex) {
        self.last_applied.insert(node, index);
    }

    /// The replica crashed: its volatile commit index is gone.
    pub fn on_crash(&mut self, node: NodeId) {
        self.commits.remove(&node);
        self.leader_tails.remove(&node);
    }

    /// Checks every property that needs the replicas' state, after an event.
    pub fn after_event(&mut self, replicas: &BTreeMap<NodeId, &RaftNode<MemLog>>) {
        for (&id, raft) in replicas {
            self.check_term_and_commit(id, raft);
            if raft.role() == Role::Leader {
                self.check_leader(id, raft);
            } else {
                self.leader_tails.remove(&id);
            }
        }
    }

    fn check_term_and_commit(&mut self, id: NodeId, raft: &RaftNode<MemLog>) {
        let term = self.terms.entry(id).or_default();
        assert!(
            raft.term() >= *term,
            "the term of {id} went back to {}",
            raft.term()
        );
        *term = raft.term();
        let commit = self.commits.entry(id).or_default();
        let now = raft.log().committed();
        assert!(
            now >= *commit,
            "the commit index of {id} went back from {commit} to {now}"
        );
        let newly_committed = commit.next();
        *commit = now;
        self.record_committed(id, raft, newly_committed, now);
        self.checks += 1;
    }

    fn check_leader(&mut self, id: NodeId, raft: &RaftNode<MemLog>) {
        let term = raft.term();
        let elected = *self.leaders.entry(term).or_insert(id);
        assert_eq!(
            elected, id,
            "election safety violated: two leaders in {term}"
        );
        let tail = raft.log().last_log_id();
        match self.leader_tails.get(&id) {
            Some(&(tail_term, old_tail)) if tail_term == term => {
                assert!(
                    tail.index >= old_tail.index && raft.log().matches(old_tail),
                    "leader append-only violated: {id} lost {old_tail} in {term}"
                );
            }
            _ => self.check_leader_completeness(id, raft),
        }
        self.leader_tails.insert(id, (term, tail));
        self.checks += 1;
    }

    /// Leader Completeness (§5.4): a new leader holds every entry committed in an earlier term
    /// (it is checked right after the election, before it commits anything of its own).
    /// Committed entries never change: every replica that commits index i commits the same
    /// term there. An entry's commit term is the term of the replica first seen committing
    /// it: the leader that committed it, checked after the ready that did.
    fn record_committed(
        &mut self,
        id: NodeId,
        raft: &RaftNode<MemLog>,
        low: LogIndex,
        high: LogIndex,
    ) {
        let mut index = low.max(raft.log().first_index());
        while index <= high {
            if let Ok(term) = raft.log().term(index) {
                let (first, _) = *self.committed.entry(index).or_insert((term, raft.term()));
                assert_eq!(
                    first, term,
                    "commit safety violated: {id} committed another entry at {index}"
                );
            }
            index = index.next();
        }
    }

    /// Only entries committed in a term before the leader's count: a vote granted in term t
    /// may reach its candidate after a leader of t + 1 committed, and that late leader of t,
    /// which can commit nothing, need not hold the entry (the multi-node simulator found it).
    fn check_leader_completeness(&mut self, id: NodeId, raft: &RaftNode<MemLog>) {
        let first = raft.log().first_index();
        let mut late = false;
        for (&index, &(term, committed_in)) in self.committed.range(first..) {
            let held = raft.log().matches(LogId::new(term, index));
            if committed_in >= raft.term() {
                late |= !held;
                continue;
            }
            assert!(
                held,
                "leader completeness violated: new leader {id} in {} lacks committed {}",
                raft.term(),
                LogId::new(term, index)
            );
        }
        self.late_leaders += u64::from(late);
    }

    /// The entry applied at `index`, if any replica applied one.
    pub fn applied_at(&self, index: LogIndex) -> Option<(Term, u64)> {
        self.applied.get(&index).copied()
    }
}
