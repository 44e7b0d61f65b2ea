//! Raft core cost with no IO: proposals committed per second by a 3-replica group whose
//! messages are handed over in memory, and the cost of one AppendEntries step and its answer.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_raft::{
    AppendOutcome, Config, Entry, EntryPayload, LogId, LogIndex, MemLog, Membership, Message,
    MessageBody, NodeId, Persist, RaftNode, Role, Term,
};
use std::hint::black_box;

/// Three replicas connected by an in-memory queue; every ready is persisted to `MemLog`.
struct Group {
    nodes: Vec<RaftNode<MemLog>>,
    inbox: Vec<Message>,
}

impl Group {
    fn new() -> Self {
        let membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
        let nodes = (1..=3)
            .map(|id| {
                let mut store = MemLog::new();
                store.persist(&Persist::bootstrap(membership.clone()));
                RaftNode::new(Config::new(NodeId(id)), store).unwrap()
            })
            .collect();
        let mut group = Self {
            nodes,
            inbox: Vec::new(),
        };
        // Bounded, so a protocol change that stops the election fails here instead of hanging.
        for _ in 0..10_000 {
            if group.nodes[0].role() == Role::Leader {
                return group;
            }
            group.nodes[0].tick();
            group.settle();
        }
        panic!("node 1 was not elected within 10,000 ticks");
    }

    fn settle(&mut self) {
        loop {
            for node in &mut self.nodes {
                while node.has_ready() {
                    let ready = node.ready();
                    node.store_mut().persist(&ready.persist);
                    self.inbox.extend(ready.messages.iter().cloned());
                    self.inbox.extend(ready.persisted_messages.iter().cloned());
                    node.advance(ready);
                }
            }
            if self.inbox.is_empty() {
                return;
            }
            for message in std::mem::take(&mut self.inbox) {
                let target = (message.to.0 - 1) as usize;
                let _ = self.nodes[target].step(message);
            }
        }
    }

    /// Proposes `batch` entries at the leader and runs until all are committed everywhere.
    fn commit_batch(&mut self, batch: usize, payload: &[u8]) {
        for _ in 0..batch {
            self.nodes[0].propose(payload.to_vec()).unwrap();
        }
        self.settle();
    }

    fn compact(&mut self) {
        for node in &mut self.nodes {
            let applied = node.log().applied();
            if applied.0 > 10_000 {
                node.compact(applied, Vec::new()).unwrap();
            }
        }
    }
}

fn proposals_committed(c: &mut Criterion) {
    let mut bench_group = c.benchmark_group("propose_commit_3_replicas");
    for payload_bytes in [16usize, 256] {
        for batch in [1usize, 16, 256] {
            let payload = vec![7u8; payload_bytes];
            let mut group = Group::new();
            bench_group.throughput(Throughput::Elements(batch as u64));
            let name = format!("batch_{batch}/payload_{payload_bytes}B");
            bench_group.bench_function(name, |b| {
                b.iter(|| {
                    group.commit_batch(batch, &payload);
                    group.compact();
                });
            });
        }
    }
    bench_group.finish();
}

fn follower() -> RaftNode<MemLog> {
    let membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let mut store = MemLog::new();
    store.persist(&Persist::bootstrap(membership));
    RaftNode::new(Config::new(NodeId(2)), store).unwrap()
}

fn append(index: u64, payload_bytes: usize) -> Message {
    let entry = Entry {
        term: Term(1),
        index: LogIndex(index),
        payload: EntryPayload::Normal(vec![1; payload_bytes].into()),
    };
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev: LogId::new(Term(if index == 1 { 0 } else { 1 }), LogIndex(index - 1)),
            entries: vec![entry],
            commit: LogIndex(index - 1),
        },
    }
}

fn step_costs(c: &mut Criterion) {
    let mut bench_group = c.benchmark_group("step");
    bench_group.bench_function("follower_append_entries_256B", |b| {
        b.iter_batched(
            || (follower(), append(1, 256)),
            |(mut node, message)| {
                node.step(message).unwrap();
                let ready = node.ready();
                node.store_mut().persist(&ready.persist);
                node.advance(black_box(ready));
                node
            },
            BatchSize::SmallInput,
        );
    });
    let mut group = Group::new();
    group.commit_batch(1, b"warm");
    let leader = std::cell::RefCell::new(group.nodes.remove(0));
    bench_group.bench_function("leader_append_response", |b| {
        b.iter_batched(
            || {
                let mut node = leader.borrow_mut();
                node.propose(vec![1; 256]).unwrap();
                let ready = node.ready();
                node.store_mut().persist(&ready.persist);
                node.advance(ready);
                let last = node.log().last_index();
                Message {
                    from: NodeId(2),
                    to: NodeId(1),
                    term: node.term(),
                    body: MessageBody::AppendResponse(AppendOutcome::Accepted { last }),
                }
            },
            |message| {
                let mut node = leader.borrow_mut();
                node.step(message).unwrap();
                let ready = node.ready();
                node.store_mut().persist(&ready.persist);
                node.advance(black_box(ready));
            },
            BatchSize::SmallInput,
        );
    });
    bench_group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = proposals_committed, step_costs
}
criterion_main!(benches);
