//! Client requests waiting inside the Raft loop: proposals keyed by (group, index) until that
//! index is applied, and reads keyed by their ReadIndex context until the group has applied
//! the index the leader confirmed.

use crate::api::{ApiError, Reply, ResponseFrame};
use flotilla_raft::{GroupId, LogIndex, Term};
use flotilla_storage::{Command, Response};
use std::collections::HashMap;
use tokio::sync::mpsc::UnboundedSender;

/// Where the answer to one request goes: its client stream's writer.
#[derive(Debug)]
pub(crate) struct Responder {
    id: u64,
    stream: UnboundedSender<ResponseFrame>,
}

impl Responder {
    pub(crate) fn new(id: u64, stream: UnboundedSender<ResponseFrame>) -> Self {
        Self { id, stream }
    }

    /// Sends the answer; a client that went away is not an error.
    pub(crate) fn answer(self, result: Result<Reply, ApiError>) {
        let _ = self.stream.send(ResponseFrame {
            id: self.id,
            result,
        });
    }
}

/// A read confirmed by ReadIndex, waiting for its group to apply `index`.
#[derive(Debug)]
pub(crate) struct ConfirmedRead {
    pub(crate) group: GroupId,
    pub(crate) index: LogIndex,
    pub(crate) command: Command,
    pub(crate) responder: Responder,
}

/// Requests in flight through Raft.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    proposals: HashMap<(GroupId, LogIndex), (Term, Responder)>,
    reads: HashMap<u64, (GroupId, Command, Responder)>,
    confirmed: Vec<ConfirmedRead>,
    next_read: u64,
}

impl Waiting {
    pub(crate) fn add_proposal(
        &mut self,
        group: GroupId,
        index: LogIndex,
        term: Term,
        responder: Responder,
    ) {
        self.proposals.insert((group, index), (term, responder));
    }

    /// A context for a new read, and the read recorded under it.
    pub(crate) fn add_read(
        &mut self,
        group: GroupId,
        command: Command,
        responder: Responder,
    ) -> u64 {
        self.next_read += 1;
        self.reads
            .insert(self.next_read, (group, command, responder));
        self.next_read
    }

    /// Takes back a read whose `read_index` call failed.
    pub(crate) fn take_read(&mut self, context: u64) -> Option<(GroupId, Command, Responder)> {
        self.reads.remove(&context)
    }

    /// The entry at `index` of `group` (of term `term`) was applied with `response`: answers the
    /// proposal waiting there. A proposal of another term was overwritten: never applied.
    pub(crate) fn applied(
        &mut self,
        group: GroupId,
        index: LogIndex,
        term: Term,
        response: Option<Response>,
    ) {
        let Some((proposed_term, responder)) = self.proposals.remove(&(group, index)) else {
            return;
        };
        match response {
            Some(response) if proposed_term == term => responder.answer(Ok(Reply::Kv(response))),
            _ => responder.answer(Err(ApiError::Dropped)),
        }
    }

    /// ReadIndex confirmed the read `context` at `index`.
    pub(crate) fn confirm_read(&mut self, context: u64, index: LogIndex) {
        if let Some((group, command, responder)) = self.reads.remove(&context) {
            self.confirmed.push(ConfirmedRead {
                group,
                index,
                command,
                responder,
            });
        }
    }

    /// The reads whose group has now applied their index (per `applied`).
    pub(crate) fn take_servable(
        &mut self,
        applied: impl Fn(GroupId) -> LogIndex,
    ) -> Vec<ConfirmedRead> {
        let (ready, waiting) = std::mem::take(&mut self.confirmed)
            .into_iter()
            .partition(|read| applied(read.group) >= read.index);
        self.confirmed = waiting;
        ready
    }

    /// Proposals and reads waiting, for status.
    pub(crate) fn len(&self) -> usize {
        self.proposals.len() + self.reads.len() + self.confirmed.len()
    }
}
