//! Client requests waiting inside the node core: proposals keyed by (group, index) until that
//! index is applied, and reads keyed by their ReadIndex context until the group has applied
//! the index the leader confirmed. Each holds its `Respond`er, which takes the one answer.

use super::Respond;
use crate::api::{ApiError, Reply};
use flotilla_raft::{GroupId, LogIndex, Term};
use flotilla_storage::{Command, Response};
use rustc_hash::FxHashMap;

/// What a read does once its group applied the index ReadIndex confirmed.
#[derive(Debug)]
pub(crate) enum ReadOp {
    /// Answers a get or a scan.
    Kv(Command),
    /// Opens a backup view of the range for a client whose map has this epoch.
    OpenBackup(flotilla_shard_manager::RangeEpoch),
    /// The range map and directory, read linearizably from the meta group.
    RangeMap,
}

/// A read confirmed by ReadIndex, waiting for its group to apply `index`.
#[derive(Debug)]
pub(crate) struct ConfirmedRead<R> {
    pub(crate) group: GroupId,
    pub(crate) index: LogIndex,
    pub(crate) op: ReadOp,
    pub(crate) responder: R,
}

/// Requests in flight through Raft.
#[derive(Debug)]
pub(crate) struct Waiting<R> {
    proposals: FxHashMap<(GroupId, LogIndex), (Term, R)>,
    /// Proposals whose index this node proposed at again (in a later term, as leader again):
    /// either entry may still be the one applied there. Rare, so a list.
    superseded: Vec<(GroupId, LogIndex, Term, R)>,
    reads: FxHashMap<u64, (GroupId, ReadOp, R)>,
    confirmed: Vec<ConfirmedRead<R>>,
    next_read: u64,
}

impl<R> Default for Waiting<R> {
    fn default() -> Self {
        Self {
            proposals: FxHashMap::default(),
            superseded: Vec::new(),
            reads: FxHashMap::default(),
            confirmed: Vec::new(),
            next_read: 0,
        }
    }
}

impl<R: Respond> Waiting<R> {
    pub(crate) fn add_proposal(
        &mut self,
        group: GroupId,
        index: LogIndex,
        term: Term,
        responder: R,
    ) {
        // An older proposal at the same index was cut from this log by another leader, but
        // another replica may still hold it and lead later (with five replicas or more, the
        // Raft paper's Figure 8): it waits, like this one, for the entry applied there.
        if let Some((older_term, older)) = self.proposals.insert((group, index), (term, responder))
        {
            self.superseded.push((group, index, older_term, older));
        }
    }

    /// A context for a new read, and the read recorded under it.
    pub(crate) fn add_read(&mut self, group: GroupId, op: ReadOp, responder: R) -> u64 {
        self.next_read += 1;
        self.reads.insert(self.next_read, (group, op, responder));
        self.next_read
    }

    /// Takes back a read whose `read_index` call failed.
    pub(crate) fn take_read(&mut self, context: u64) -> Option<(GroupId, ReadOp, R)> {
        self.reads.remove(&context)
    }

    /// The entry at `index` of `group` (of term `term`) was applied with `response`: answers the
    /// proposals waiting there. One of another term was never applied, and never will be: an
    /// entry has one index. (Only this proves it: a proposal overwritten in this node's log may
    /// still be committed from another replica's.)
    pub(crate) fn applied(
        &mut self,
        group: GroupId,
        index: LogIndex,
        term: Term,
        response: Option<Response>,
    ) {
        for (proposed_term, responder) in self.take_superseded(group, |i| i == index) {
            answer_applied(responder, (group, proposed_term == term), response.clone());
        }
        if let Some((proposed_term, responder)) = self.proposals.remove(&(group, index)) {
            answer_applied(responder, (group, proposed_term == term), response);
        }
    }

    /// `group` installed a snapshot up to `index`: proposals at or below it will never be
    /// applied one by one here, so their outcome is unknown to this node.
    pub(crate) fn snapshot_installed(&mut self, group: GroupId, index: LogIndex) {
        let covered: Vec<_> = self
            .proposals
            .keys()
            .filter(|(proposal_group, proposal_index)| {
                *proposal_group == group && *proposal_index <= index
            })
            .copied()
            .collect();
        for key in covered {
            if let Some((_, responder)) = self.proposals.remove(&key) {
                responder.answer(Err(ApiError::OutcomeUnknown));
            }
        }
        for (_, responder) in self.take_superseded(group, |i| i <= index) {
            responder.answer(Err(ApiError::OutcomeUnknown));
        }
    }

    /// Removes and returns the superseded proposals of `group` at the indexes `wanted` picks
    /// (allocating nothing when there is none).
    fn take_superseded(
        &mut self,
        group: GroupId,
        wanted: impl Fn(LogIndex) -> bool,
    ) -> Vec<(Term, R)> {
        let picked = |(g, i, _, _): &(GroupId, LogIndex, Term, R)| *g == group && wanted(*i);
        if !self.superseded.iter().any(picked) {
            return Vec::new();
        }
        let (taken, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.superseded)
            .into_iter()
            .partition(picked);
        self.superseded = rest;
        taken
            .into_iter()
            .map(|(_, _, term, responder)| (term, responder))
            .collect()
    }

    /// ReadIndex confirmed the read `context` at `index`.
    pub(crate) fn confirm_read(&mut self, context: u64, index: LogIndex) {
        if let Some((group, op, responder)) = self.reads.remove(&context) {
            self.confirmed.push(ConfirmedRead {
                group,
                index,
                op,
                responder,
            });
        }
    }

    /// The reads whose group has now applied their index (per `applied`).
    pub(crate) fn take_servable(
        &mut self,
        applied: impl Fn(GroupId) -> LogIndex,
    ) -> Vec<ConfirmedRead<R>> {
        let (ready, waiting) = std::mem::take(&mut self.confirmed)
            .into_iter()
            .partition(|read| applied(read.group) >= read.index);
        self.confirmed = waiting;
        ready
    }

    /// Gives back servable reads left for a later turn, ahead of those confirmed since.
    pub(crate) fn put_back_servable(&mut self, mut reads: Vec<ConfirmedRead<R>>) {
        if reads.is_empty() {
            return;
        }
        reads.append(&mut self.confirmed);
        self.confirmed = reads;
    }

    /// Proposals and reads waiting, for status.
    pub(crate) fn len(&self) -> usize {
        self.proposals.len() + self.superseded.len() + self.reads.len() + self.confirmed.len()
    }
}

/// Answers a proposal whose index was applied: with the response if its own entry was
/// (`own_entry`), `Dropped` otherwise.
fn answer_applied<R: Respond>(
    responder: R,
    (group, own_entry): (GroupId, bool),
    response: Option<Response>,
) {
    match response {
        Some(response) if own_entry => responder.answer(crate::api::kv_result(group, response)),
        // Only an operator's meta-group command waits on an entry without a KV response.
        None if own_entry => responder.answer(Ok(Reply::Applied)),
        _ => responder.answer(Err(ApiError::Dropped)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    const GROUP: GroupId = GroupId(3);

    type Answers = Rc<RefCell<Vec<(u64, Result<Reply, ApiError>)>>>;

    /// Records its answer under a request id.
    struct Recorder {
        id: u64,
        answers: Answers,
    }

    impl Respond for Recorder {
        fn answer(self, result: Result<Reply, ApiError>) {
            self.answers.borrow_mut().push((self.id, result));
        }
    }

    /// `Waiting` with one proposal per `(group, index, term)`, request ids 1, 2, ... in order,
    /// and where their answers arrive.
    fn proposed(proposals: &[(GroupId, u64, u64)]) -> (Waiting<Recorder>, Answers) {
        let answers = Answers::default();
        let mut waiting = Waiting::default();
        for (id, &(group, index, term)) in (1..).zip(proposals) {
            let responder = Recorder {
                id,
                answers: Rc::clone(&answers),
            };
            waiting.add_proposal(group, LogIndex(index), Term(term), responder);
        }
        (waiting, answers)
    }

    /// The answers so far (there must be `count`), by request id.
    fn answers_by_id(answered: &Answers, count: usize) -> Vec<(u64, Result<Reply, ApiError>)> {
        let mut answers = std::mem::take(&mut *answered.borrow_mut());
        assert_eq!(answers.len(), count, "{answers:?}");
        answers.sort_by_key(|(id, _)| *id);
        answers
    }

    #[test]
    fn a_proposal_is_answered_only_by_its_own_entry() {
        let (mut waiting, answered) = proposed(&[(GROUP, 5, 2), (GROUP, 6, 2)]);
        let written = Response::Written { previous: None };
        waiting.applied(GROUP, LogIndex(5), Term(2), Some(written.clone()));
        // Another leader's entry took index 6: the proposal made there was never applied.
        waiting.applied(GROUP, LogIndex(6), Term(3), Some(written.clone()));
        assert_eq!(
            answers_by_id(&answered, 2),
            [(1, Ok(Reply::Kv(written))), (2, Err(ApiError::Dropped))]
        );
        assert_eq!(waiting.len(), 0);
    }

    /// This node proposed at index 5 in term 2, lost leadership, and proposed at 5 again in
    /// term 4. Either entry may be the one applied there (the first may live on in another
    /// replica's log), so neither is answered until index 5 is applied.
    #[test]
    fn a_proposal_made_again_at_its_index_waits_with_the_first_for_the_applied_entry() {
        for (applied_term, winner) in [(Term(2), 1), (Term(4), 2), (Term(3), 0)] {
            let (mut waiting, answered) = proposed(&[(GROUP, 5, 2), (GROUP, 5, 4)]);
            assert!(answered.borrow().is_empty(), "answered before the apply");
            let written = Response::Written { previous: None };
            waiting.applied(GROUP, LogIndex(5), applied_term, Some(written.clone()));
            let results = answers_by_id(&answered, 2);
            let expected: Vec<_> = [1, 2]
                .into_iter()
                .map(|id| {
                    let result = if id == winner {
                        Ok(Reply::Kv(written.clone()))
                    } else {
                        Err(ApiError::Dropped)
                    };
                    (id, result)
                })
                .collect();
            assert_eq!(results, expected, "entry of {applied_term:?} applied");
            assert_eq!(waiting.len(), 0);
        }
    }

    #[test]
    fn a_snapshot_over_a_proposal_makes_its_outcome_unknown() {
        // Request 4 proposes at index 5 again: request 1 waits beside it, superseded.
        let (mut waiting, answered) = proposed(&[
            (GROUP, 5, 2),
            (GROUP, 9, 2),
            (GroupId(4), 1, 2),
            (GROUP, 5, 4),
        ]);
        waiting.snapshot_installed(GROUP, LogIndex(7));
        assert_eq!(
            answers_by_id(&answered, 2),
            [
                (1, Err(ApiError::OutcomeUnknown)),
                (4, Err(ApiError::OutcomeUnknown))
            ]
        );
        assert_eq!(waiting.len(), 2);
    }

    #[test]
    fn reads_wait_until_their_index_is_applied() {
        let mut waiting = Waiting::default();
        let command = Command::Get { key: b"k".to_vec() };
        let responder = Recorder {
            id: 1,
            answers: Answers::default(),
        };
        let context = waiting.add_read(GROUP, ReadOp::Kv(command), responder);
        waiting.confirm_read(context, LogIndex(10));
        assert!(waiting.take_servable(|_| LogIndex(9)).is_empty());
        let ready = waiting.take_servable(|_| LogIndex(10));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].index, LogIndex(10));
    }
}
