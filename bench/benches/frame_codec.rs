//! Frame codec cost: encode and decode one Raft `Batch` (1 or 64 groups, one 256-byte entry
//! each) with `flotilla_transport_quic::frame`, no IO.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    reason = "a bench: a failed setup is a bug"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_raft::{
    Batch, Entry, EntryPayload, GroupId, GroupMessage, LogId, LogIndex, Message, MessageBody,
    NodeId, Term,
};
use flotilla_transport_quic::frame::{self, FrameKind};
use std::hint::black_box;
use std::time::Duration;

const ENTRY_BYTES: usize = 256;

/// A batch from node 1 to node 2 carrying one AppendEntries with one entry per group.
fn batch(group_count: u64) -> Batch {
    let mut batch = Batch::new(NodeId(1), NodeId(2));
    for group in 1..=group_count {
        let entry = Entry {
            term: Term(3),
            index: LogIndex(1000 + group),
            payload: EntryPayload::Normal(vec![7; ENTRY_BYTES].into()),
        };
        let body = MessageBody::AppendEntries {
            prev: LogId {
                term: Term(3),
                index: LogIndex(999 + group),
            },
            entries: vec![entry],
            commit: LogIndex(998 + group),
        };
        let message = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body,
        };
        batch.messages.push(GroupMessage {
            group: GroupId(group),
            message,
        });
    }
    batch
}

fn codec(c: &mut Criterion) {
    for group_count in [1, 64] {
        let batch = batch(group_count);
        let mut encoded = Vec::new();
        frame::encode(FrameKind::RaftBatch, &batch, u32::MAX, &mut encoded).unwrap();
        let mut bench_group = c.benchmark_group(format!("frame_{group_count}_groups"));
        bench_group.throughput(Throughput::Bytes(encoded.len() as u64));
        let mut buf = Vec::with_capacity(encoded.len());
        bench_group.bench_function("encode", |b| {
            b.iter(|| {
                buf.clear();
                frame::encode(FrameKind::RaftBatch, black_box(&batch), u32::MAX, &mut buf).unwrap();
            });
        });
        bench_group.bench_function("decode", |b| {
            b.iter(|| {
                frame::decode::<Batch>(black_box(&encoded), FrameKind::RaftBatch, u32::MAX).unwrap()
            });
        });
        bench_group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
