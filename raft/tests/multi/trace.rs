//! `FLOTILLA_SIM_TRACE_GROUP=G`: the simulator prints group G's traffic (delivered or dropped by
//! a cut or a link waiting to reconnect) and each replica's state after each of its readies.

use flotilla_raft::{Batch, GroupId, MemLog, MultiRaft, NodeId};

/// The group to trace, if the variable names one.
pub fn group_from_env() -> Option<GroupId> {
    std::env::var("FLOTILLA_SIM_TRACE_GROUP")
        .ok()
        .and_then(|value| value.parse().ok())
        .map(GroupId)
}

/// Prints `group`'s messages, heartbeats and heartbeat responses in `batch`.
pub fn batch(now_ms: u64, batch: &Batch, group: GroupId, dropped: bool) {
    let fate = if dropped { "dropped" } else { "delivered" };
    let (from, to) = (batch.from, batch.to);
    for message in batch.messages.iter().filter(|m| m.group == group) {
        let message = &message.message;
        let term = message.term.0;
        eprintln!("{now_ms} {fate} {from}->{to} t{term} {:?}", message.body);
    }
    for entry in batch.heartbeats.iter().filter(|h| h.group == group) {
        eprintln!("{now_ms} {fate} {from}->{to} heartbeat {entry:?}");
    }
    for entry in batch
        .heartbeat_responses
        .iter()
        .filter(|h| h.group == group)
    {
        eprintln!("{now_ms} {fate} {from}->{to} heartbeat response {entry:?}");
    }
}

/// Prints the state of `node`'s replica of `group`.
pub fn replica(now_ms: u64, node: NodeId, multi: &MultiRaft<MemLog>, group: GroupId) {
    let Some(raft) = multi.group(group) else {
        return;
    };
    let live: Vec<NodeId> = multi.live_peers().collect();
    eprintln!(
        "{now_ms} {node} {:?} t{} leader {:?} quiescent {} live peers {live:?}",
        raft.role(),
        raft.term().0,
        raft.leader(),
        multi.is_quiescent(group)
    );
}
