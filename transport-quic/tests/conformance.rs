//! One suite of `Transport` behaviour, run against the in-memory and the QUIC transport.
#![allow(clippy::unwrap_used)]

mod common;

use common::{batch, recv, sequence, snapshot_batch};
use flotilla_raft::NodeId;
use flotilla_transport_quic::mem::{MemNetwork, MemTransport};
use flotilla_transport_quic::{ClusterCa, QuicTransport, Transport};
use std::collections::HashMap;

/// A node id no transport answers for.
const DOWN: u64 = 9;

fn mem_cluster() -> Vec<MemTransport> {
    let network = MemNetwork::new();
    (1..=3)
        .map(|id| network.join(NodeId(id), &common::config()))
        .collect()
}

async fn quic_cluster() -> Vec<QuicTransport> {
    let ca = ClusterCa::generate(&common::cluster_id()).unwrap();
    let nodes = common::quic_cluster(&ca, &[1, 2, 3]).await;
    // Node 9 is a peer whose address nobody listens on: a node that is down.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    nodes[0].add_peer(NodeId(DOWN), silent.local_addr().unwrap());
    drop(silent);
    nodes
}

/// Every node sends one batch to every other; each arrives once, with `from` and `to` intact.
async fn delivery_between_three_nodes<T: Transport>(nodes: &[T]) {
    for sender in nodes {
        for receiver in nodes.iter().filter(|r| r.node_id() != sender.node_id()) {
            let (from, to) = (sender.node_id().0, receiver.node_id().0);
            sender.send(batch(from, to, from * 10 + to)).unwrap();
        }
    }
    for receiver in nodes {
        let mut senders = Vec::new();
        for _ in 0..nodes.len() - 1 {
            let got = recv(receiver).await;
            assert_eq!(got.to, receiver.node_id());
            assert_eq!(got.messages[0].message.from, got.from);
            assert_eq!(sequence(&got), got.from.0 * 10 + got.to.0);
            senders.push(got.from.0);
        }
        senders.sort_unstable();
        let mut expected: Vec<u64> = nodes
            .iter()
            .map(|n| n.node_id().0)
            .filter(|id| *id != receiver.node_id().0)
            .collect();
        expected.sort_unstable();
        assert_eq!(senders, expected);
    }
}

/// Batches from one node to another arrive in the order they were sent, even interleaved with
/// another sender's.
async fn order_per_peer_pair<T: Transport>(nodes: &[T]) {
    let count = 50;
    for sequence_number in 0..count {
        nodes[0]
            .send(batch(
                nodes[0].node_id().0,
                nodes[2].node_id().0,
                sequence_number,
            ))
            .unwrap();
        nodes[1]
            .send(batch(
                nodes[1].node_id().0,
                nodes[2].node_id().0,
                sequence_number,
            ))
            .unwrap();
    }
    let mut seen: HashMap<NodeId, Vec<u64>> = HashMap::new();
    for _ in 0..2 * count {
        let got = recv(&nodes[2]).await;
        seen.entry(got.from).or_default().push(sequence(&got));
    }
    let expected: Vec<u64> = (0..count).collect();
    assert_eq!(seen[&nodes[0].node_id()], expected);
    assert_eq!(seen[&nodes[1].node_id()], expected);
}

/// An empty batch arrives: it is the liveness heartbeat of a node whose groups are all idle.
async fn an_empty_batch_is_delivered<T: Transport>(nodes: &[T]) {
    let (from, to) = (nodes[0].node_id(), nodes[1].node_id());
    nodes[0].send(flotilla_raft::Batch::new(from, to)).unwrap();
    let got = recv(&nodes[1]).await;
    assert_eq!((got.from, got.to, got.is_empty()), (from, to, true));
}

/// A batch of several megabytes arrives whole.
async fn large_batch_arrives_whole<T: Transport>(nodes: &[T]) {
    let mut large = snapshot_batch(nodes[0].node_id().0, nodes[1].node_id().0, 4 << 20);
    large
        .messages
        .extend(batch(nodes[0].node_id().0, nodes[1].node_id().0, 7).messages);
    nodes[0].send(large.clone()).unwrap();
    let mut received = Vec::new();
    while received
        .iter()
        .map(|b: &flotilla_raft::Batch| b.messages.len())
        .sum::<usize>()
        < large.messages.len()
    {
        received.push(recv(&nodes[1]).await);
    }
    let mut messages: Vec<_> = received.into_iter().flat_map(|b| b.messages).collect();
    messages.sort_by_key(|m| m.group);
    let mut expected = large.messages;
    expected.sort_by_key(|m| m.group);
    assert_eq!(messages, expected);
}

/// Sending to a down node never blocks; once its queue (if any) is full, batches are dropped
/// and counted.
async fn drop_when_down_is_counted<T: Transport>(nodes: &[T]) {
    let queue = common::config().outbound_queue_batches as u64;
    let extra = 20;
    let mut refused = 0;
    for sequence_number in 0..queue + extra {
        refused += u64::from(
            nodes[0]
                .send(batch(nodes[0].node_id().0, DOWN, sequence_number))
                .is_err(),
        );
    }
    assert!(refused >= extra, "only {refused} sends were refused");
    assert_eq!(nodes[0].counters().dropped_total(), refused);
    assert_eq!(nodes[0].counters().batches_sent, 0);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod mem {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&mem_cluster()).await;
                }
            )*
        }

        mod quic {
            use super::*;
            $(
                #[test]
                fn $case() {
                    common::run(async {
                        let nodes = quic_cluster().await;
                        super::$case(&nodes).await;
                        for node in nodes {
                            node.shutdown().await;
                        }
                    });
                }
            )*
        }
    };
}

conformance!(
    delivery_between_three_nodes,
    order_per_peer_pair,
    an_empty_batch_is_delivered,
    large_batch_arrives_whole,
    drop_when_down_is_counted
);
