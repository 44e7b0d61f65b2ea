//! A first check that the harness and the core work together.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::Cluster;

#[test]
fn three_replicas_elect_a_leader_and_agree() {
    let mut cluster = Cluster::new(3, 1);
    let leader = cluster.check_one_leader();
    assert!(cluster.raft(leader).is_some());
    let index = cluster.one(b"hello", 3, false);
    assert_eq!(cluster.n_committed(index).0, 3);
    assert!(cluster.checker.checks > 0);
}

/// `advance` keeps the vector of the messages it was handed back, for the next ones: what it
/// held must never go out a second time, whether or not the caller drained it.
#[test]
fn messages_handed_out_once_are_not_handed_out_again() {
    use flotilla_raft::{Config, MemLog, Membership, NodeId, Persist, RaftNode};
    let membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let mut store = MemLog::new();
    store.persist(&Persist::bootstrap(membership));
    let mut node = RaftNode::new(Config::new(NodeId(1)), store).unwrap();
    let mut sent = Vec::new();
    for _ in 0..1000 {
        node.tick();
        if node.has_ready() {
            let ready = node.ready();
            node.store_mut().persist(&ready.persist);
            sent.clone_from(&ready.messages);
            sent.extend(ready.persisted_messages.iter().cloned());
            // Not drained: the messages stay in the vectors `advance` takes back.
            node.advance(ready);
            if !sent.is_empty() {
                break;
            }
        }
    }
    assert!(!sent.is_empty(), "the election timeout sends vote requests");
    if node.has_ready() {
        let again = node.ready();
        let mut again_sent = again.messages.iter().chain(&again.persisted_messages);
        assert!(
            again_sent.all(|message| !sent.contains(message)),
            "{again:?} sent a message twice"
        );
    }
}

/// A proposal's payload is shared, not copied, between the write a leader's ready asks for and
/// the AppendEntries that carry it to each follower.
#[test]
fn a_payload_goes_to_the_write_and_every_follower_without_a_copy() {
    use flotilla_raft::{EntryPayload, MessageBody};
    let mut cluster = Cluster::new(3, 2);
    let leader = cluster.check_one_leader();
    cluster.one(b"warm-up", 3, false);
    let raft = cluster.raft_mut(leader).unwrap();
    raft.propose(b"shared".to_vec()).unwrap();
    let ready = raft.ready();
    let address = |payload: &EntryPayload| match payload {
        EntryPayload::Normal(data) => Some(data.as_ptr()),
        _ => None,
    };
    let written = ready
        .persist
        .entries
        .last()
        .and_then(|entry| address(&entry.payload))
        .expect("the proposal is written");
    let sent: Vec<_> = ready
        .messages
        .iter()
        .filter_map(|message| match &message.body {
            MessageBody::AppendEntries { entries, .. } => entries.last(),
            _ => None,
        })
        .map(|entry| address(&entry.payload))
        .collect();
    assert_eq!(
        sent,
        vec![Some(written); 2],
        "one AppendEntries per follower"
    );
    raft.store_mut().persist(&ready.persist);
    raft.advance(ready);
}
