//! The protocol, one concern per file; `step_inner` applies the term rules of Raft Figure 2
//! and hands each message to the handler for its kind.

pub(crate) mod commit;
pub(crate) mod election;
pub(crate) mod membership;
pub(crate) mod read;
pub(crate) mod replication;
pub(crate) mod snapshot;
pub(crate) mod snapshot_send;
pub(crate) mod transfer;

use crate::error::StepError;
use crate::handler::snapshot::Chunk;
use crate::log::LogReader;
use crate::message::{AppendOutcome, Message, MessageBody};
use crate::node::{RaftNode, Role};
use crate::types::NodeId;

impl<L: LogReader> RaftNode<L> {
    pub(crate) fn step_inner(&mut self, message: Message) -> Result<(), StepError> {
        validate(&message)?;
        if message.term > self.term {
            if !self.accept_higher_term(&message) {
                return Ok(());
            }
        } else if message.term < self.term {
            self.answer_stale(&message);
            return Ok(());
        }
        self.dispatch(message)
    }

    /// A message from a higher term: usually adopt the term (Raft §5.1). Returns false when the
    /// message must be ignored instead.
    fn accept_higher_term(&mut self, message: &Message) -> bool {
        match &message.body {
            MessageBody::RequestVote {
                pre_vote, transfer, ..
            } => {
                if !transfer && self.in_leader_lease() {
                    // Thesis §4.2.3: a replica that heard from a leader within the minimum
                    // election timeout ignores campaigns, so a removed or partitioned replica
                    // cannot depose a healthy leader.
                    return false;
                }
                if !pre_vote {
                    self.become_follower(message.term, None);
                }
                true
            }
            MessageBody::VoteResponse {
                pre_vote: true,
                granted: true,
                ..
            } => true,
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => {
                self.become_follower(message.term, Some(message.from));
                true
            }
            _ => {
                self.become_follower(message.term, None);
                true
            }
        }
    }

    /// A message from an older term. A stale leader's traffic gets an answer in our term so it
    /// steps down (needed with pre-vote and check-quorum, where its term may never rise
    /// otherwise); a stale pre-vote gets a refusal so the pre-candidate learns the term. A
    /// stale vote answer still tells a commit: what is committed stays so in every term, and a
    /// removed replica that refuses our pre-votes may answer in a term we have left behind.
    fn answer_stale(&mut self, message: &Message) {
        match &message.body {
            MessageBody::VoteResponse { commit, .. } => self.learn_commit(*commit),
            MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. } => {
                self.send(
                    message.from,
                    MessageBody::HeartbeatResponse { read_round: 0 },
                );
            }
            MessageBody::RequestVote { pre_vote: true, .. } => {
                let commit = self.committed_log_id();
                self.send(
                    message.from,
                    MessageBody::VoteResponse {
                        pre_vote: true,
                        granted: false,
                        commit,
                    },
                );
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, message: Message) -> Result<(), StepError> {
        let from = message.from;
        let term = message.term;
        if self.role == Role::Leader && is_leader_traffic(&message.body) {
            // Election Safety (Raft Figure 3): one leader per term, so the sender is broken.
            // Following it could overwrite this leader's own entries of the term.
            let reason = "a second leader claims this term";
            return Err(StepError::Malformed { from, reason });
        }
        match message.body {
            MessageBody::RequestVote {
                pre_vote, last_log, ..
            } => self.handle_request_vote(from, term, pre_vote, last_log),
            MessageBody::VoteResponse {
                pre_vote,
                granted,
                commit,
            } => {
                self.learn_commit(commit);
                self.handle_vote_response(from, pre_vote, granted);
            }
            MessageBody::AppendEntries {
                prev,
                entries,
                commit,
            } => {
                self.hear_from_leader(from);
                self.handle_append_entries(from, prev, &entries, commit)?;
            }
            MessageBody::Heartbeat { commit, read_round } => {
                self.hear_from_leader(from);
                self.handle_heartbeat(from, commit, read_round);
            }
            MessageBody::InstallSnapshot {
                meta,
                transfer,
                offset,
                data,
                done,
            } => {
                self.hear_from_leader(from);
                let chunk = Chunk {
                    meta,
                    transfer,
                    offset,
                    data,
                    done,
                };
                self.handle_snapshot_chunk(from, chunk)?;
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            body => return self.dispatch_to_leader(from, body),
        }
        Ok(())
    }

    fn dispatch_to_leader(&mut self, from: NodeId, body: MessageBody) -> Result<(), StepError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        if !self.progress.contains_key(&from) {
            return Err(StepError::UnknownSender(from));
        }
        let now = self.timers.now();
        if let Some(progress) = self.progress.get_mut(&from) {
            progress.heard(now);
        }
        match body {
            MessageBody::AppendResponse(outcome) => self.handle_append_response(from, outcome)?,
            MessageBody::HeartbeatResponse { read_round } => {
                self.handle_heartbeat_response(from, read_round)?;
            }
            MessageBody::SnapshotResponse {
                snapshot_index,
                transfer,
                next_offset,
            } => self.handle_snapshot_response(from, (snapshot_index, transfer), next_offset),
            _ => {}
        }
        Ok(())
    }

    /// A leader of the current term contacted us: follow it and reset the election timer.
    fn hear_from_leader(&mut self, leader: NodeId) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.leader_heard_at = Some(self.timers.now());
        self.reset_election_timer();
    }
}

/// Whether only a leader sends `body`.
fn is_leader_traffic(body: &MessageBody) -> bool {
    matches!(
        body,
        MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. }
    )
}

/// Rejects messages that no correct peer sends, before they touch any state.
fn validate(message: &Message) -> Result<(), StepError> {
    let malformed = |reason| {
        Err(StepError::Malformed {
            from: message.from,
            reason,
        })
    };
    if message.from == message.to {
        return malformed("a replica never messages itself");
    }
    if !plausible_numbers(message) {
        return malformed("a term or index is too large to be real (it would overflow)");
    }
    if let MessageBody::AppendEntries { prev, entries, .. } = &message.body {
        let mut expected = prev.index.next();
        let mut term = prev.term;
        for entry in entries {
            if entry.index != expected {
                return malformed("entries do not follow prev contiguously");
            }
            if entry.term < term || entry.term > message.term {
                return malformed("entry terms go back or exceed the leader's term");
            }
            expected = expected.next();
            term = entry.term;
        }
    }
    Ok(())
}

/// Terms and indexes at most 2^62: far beyond any real log, and far enough from `u64::MAX`
/// that no `next()` or `plus()` on a peer's number can overflow.
const PLAUSIBLE_MAX: u64 = 1 << 62;

fn plausible_numbers(message: &Message) -> bool {
    let small = |value: u64| value <= PLAUSIBLE_MAX;
    let numbers: [u64; 3] = match &message.body {
        MessageBody::RequestVote { last_log, .. } => [last_log.term.0, last_log.index.0, 0],
        MessageBody::AppendEntries {
            prev,
            entries,
            commit,
        } => {
            let tail = prev.index.0.saturating_add(entries.len() as u64);
            [prev.index.0.max(prev.term.0), tail, commit.0]
        }
        MessageBody::AppendResponse(AppendOutcome::Accepted { last }) => [last.0, 0, 0],
        MessageBody::AppendResponse(AppendOutcome::Rejected { rejected, hint }) => {
            [rejected.0, hint.index.0, hint.term.0]
        }
        MessageBody::Heartbeat { commit, .. } => [commit.0, 0, 0],
        MessageBody::InstallSnapshot { meta, offset, .. } => {
            [meta.last.index.0, meta.last.term.0, *offset]
        }
        MessageBody::SnapshotResponse {
            snapshot_index,
            next_offset,
            ..
        } => [snapshot_index.0, *next_offset, 0],
        MessageBody::VoteResponse { commit, .. } => [commit.term.0, commit.index.0, 0],
        MessageBody::HeartbeatResponse { .. } | MessageBody::TimeoutNow => [0; 3],
    };
    small(message.term.0) && numbers.into_iter().all(small)
}
