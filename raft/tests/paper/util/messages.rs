//! Hand-built messages, with node ids, terms and indexes as plain numbers so tests read as the
//! paper's figures do.

use flotilla_raft::{
    AppendOutcome, Entry, LogId, LogIndex, Message, MessageBody, NodeId, SnapshotMeta, Term,
};

use super::log_id;

/// A message from `from` to `to` in `term`.
pub fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

/// RequestVote from a candidate whose last entry is `(last_term, last_index)`.
pub fn request_vote(from: u64, to: u64, term: u64, (last_term, last_index): (u64, u64)) -> Message {
    let body = MessageBody::RequestVote {
        pre_vote: false,
        last_log: log_id(last_term, last_index),
        transfer: false,
    };
    message(from, to, term, body)
}

/// A pre-vote probe for `term`.
pub fn request_pre_vote(
    from: u64,
    to: u64,
    term: u64,
    (last_term, last_index): (u64, u64),
) -> Message {
    let body = MessageBody::RequestVote {
        pre_vote: true,
        last_log: log_id(last_term, last_index),
        transfer: false,
    };
    message(from, to, term, body)
}

/// The answer to a RequestVote.
pub fn vote(from: u64, to: u64, term: u64, granted: bool) -> Message {
    let body = MessageBody::VoteResponse {
        pre_vote: false,
        granted,
        commit: LogId::default(),
    };
    message(from, to, term, body)
}

/// The answer to a pre-vote.
pub fn pre_vote(from: u64, to: u64, term: u64, granted: bool) -> Message {
    let body = MessageBody::VoteResponse {
        pre_vote: true,
        granted,
        commit: LogId::default(),
    };
    message(from, to, term, body)
}

/// AppendEntries after `(prev_term, prev_index)`.
pub fn append(
    from: u64,
    to: u64,
    term: u64,
    (prev_term, prev_index): (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> Message {
    let body = MessageBody::AppendEntries {
        prev: log_id(prev_term, prev_index),
        entries,
        commit: LogIndex(commit),
    };
    message(from, to, term, body)
}

/// AppendEntries accepted up to `last`.
pub fn accepted(from: u64, to: u64, term: u64, last: u64) -> Message {
    let outcome = AppendOutcome::Accepted {
        last: LogIndex(last),
    };
    message(from, to, term, MessageBody::AppendResponse(outcome))
}

/// AppendEntries at `rejected` refused, with the follower's hint `(term, index)`.
pub fn rejected(
    from: u64,
    to: u64,
    term: u64,
    rejected: u64,
    (hint_term, hint_index): (u64, u64),
) -> Message {
    let outcome = AppendOutcome::Rejected {
        rejected: LogIndex(rejected),
        hint: log_id(hint_term, hint_index),
    };
    message(from, to, term, MessageBody::AppendResponse(outcome))
}

/// A heartbeat carrying `commit` and read round `round`.
pub fn heartbeat(from: u64, to: u64, term: u64, commit: u64, round: u64) -> Message {
    let body = MessageBody::Heartbeat {
        commit: LogIndex(commit),
        read_round: round,
    };
    message(from, to, term, body)
}

/// The answer to a heartbeat.
pub fn heartbeat_response(from: u64, to: u64, term: u64, round: u64) -> Message {
    message(
        from,
        to,
        term,
        MessageBody::HeartbeatResponse { read_round: round },
    )
}

/// One snapshot chunk of the leader's first transfer (number 1).
pub fn snapshot_chunk(
    from: u64,
    to: u64,
    term: u64,
    meta: SnapshotMeta,
    (offset, data): (u64, &[u8]),
    done: bool,
) -> Message {
    snapshot_chunk_of(1, (from, to, term), meta, (offset, data), done)
}

/// One snapshot chunk of transfer `transfer`.
pub fn snapshot_chunk_of(
    transfer: u64,
    (from, to, term): (u64, u64, u64),
    meta: SnapshotMeta,
    (offset, data): (u64, &[u8]),
    done: bool,
) -> Message {
    let body = MessageBody::InstallSnapshot {
        meta,
        transfer,
        offset,
        data: data.to_vec(),
        done,
    };
    message(from, to, term, body)
}

/// A follower's answer to a chunk of transfer `transfer` of the snapshot at `index`.
pub fn snapshot_answer(
    (from, to, term): (u64, u64, u64),
    (index, transfer): (u64, u64),
    next_offset: u64,
) -> Message {
    let body = MessageBody::SnapshotResponse {
        snapshot_index: flotilla_raft::LogIndex(index),
        transfer,
        next_offset,
    };
    message(from, to, term, body)
}

/// Whether `message` is a RequestVote (pre-vote or real).
pub fn is_vote_request(message: &Message) -> bool {
    matches!(message.body, MessageBody::RequestVote { .. })
}

/// Whether `message` is AppendEntries.
pub fn is_append(message: &Message) -> bool {
    matches!(message.body, MessageBody::AppendEntries { .. })
}
