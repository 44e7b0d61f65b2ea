//! QUIC transport throughput: Raft batches per second from one `QuicTransport` to another over
//! loopback with mutual TLS (one AppendEntries with a 256-byte entry per batch).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    reason = "a bench: a failed setup is a bug"
)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_raft::{
    Batch, Entry, EntryPayload, GroupId, GroupMessage, LogId, LogIndex, Message, MessageBody,
    NodeId, Term,
};
use flotilla_transport_quic::{
    ClusterCa, ClusterId, QuicTransport, TlsSetup, Transport, TransportConfig,
};
use std::time::Duration;
use tokio::runtime::Runtime;

const BATCHES_PER_ROUND: usize = 256;
const ENTRY_BYTES: usize = 256;

/// Two endpoints on loopback that know each other; the runtime drives both.
struct Pair {
    runtime: Runtime,
    source: QuicTransport,
    target: QuicTransport,
}

impl Pair {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cluster = ClusterId::new("bench").unwrap();
        let ca = ClusterCa::generate(&cluster).unwrap();
        let tls = |id| TlsSetup {
            cluster: cluster.clone(),
            ca: ca.certificate(),
            identity: ca.node_identity(NodeId(id)).unwrap(),
        };
        let config = TransportConfig {
            outbound_queue_batches: 4 * BATCHES_PER_ROUND,
            outbound_snapshot_queue_bytes: 64 << 20,
            ..TransportConfig::default()
        };
        let loopback = "127.0.0.1:0".parse().unwrap();
        let (source, target) = runtime.block_on(async {
            let source = QuicTransport::bind(NodeId(1), loopback, tls(1), config.clone()).await;
            let target = QuicTransport::bind(NodeId(2), loopback, tls(2), config).await;
            let (source, target) = (source.unwrap(), target.unwrap());
            source.add_peer(NodeId(2), target.local_address().unwrap());
            target.add_peer(NodeId(1), source.local_address().unwrap());
            (source, target)
        });
        Self {
            runtime,
            source,
            target,
        }
    }

    /// Sends `batches` and waits until the target received them all, draining the way the
    /// Raft loop does: wait for one, then take every batch already waiting.
    fn round(&self, batches: Vec<Batch>) {
        let count = batches.len();
        self.runtime.block_on(async {
            for batch in batches {
                self.source.send(batch).unwrap();
            }
            let mut received = 0;
            while received < count {
                self.target.recv().await.unwrap();
                received += 1;
                while self.target.try_recv().is_some() {
                    received += 1;
                }
            }
        });
    }
}

fn batch(sequence: u64) -> Batch {
    let entry = Entry {
        term: Term(1),
        index: LogIndex(sequence),
        payload: EntryPayload::Normal(vec![7; ENTRY_BYTES].into()),
    };
    let message = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev: LogId::default(),
            entries: vec![entry],
            commit: LogIndex(sequence),
        },
    };
    let mut batch = Batch::new(NodeId(1), NodeId(2));
    batch.messages.push(GroupMessage {
        group: GroupId(1),
        message,
    });
    batch
}

fn round_of_batches() -> Vec<Batch> {
    (0..BATCHES_PER_ROUND as u64).map(batch).collect()
}

fn batches_per_second(c: &mut Criterion) {
    let pair = Pair::start();
    // The first round opens the connection; keep it out of the measurement.
    pair.round(round_of_batches());
    let mut group = c.benchmark_group("quic_loopback");
    group.throughput(Throughput::Elements(BATCHES_PER_ROUND as u64));
    group.bench_function("batches_256B_entry", |b| {
        b.iter_batched(
            round_of_batches,
            |batches| pair.round(batches),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = batches_per_second
}
criterion_main!(benches);
