//! Transport throughput and latency on loopback, with a plain quinn stream between the same two
//! endpoints as the baseline: small batches per second, bulk MiB/s, and a 100-byte request
//! round trip.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_raft::{
    Batch, Entry, EntryPayload, GroupId, GroupMessage, LogId, LogIndex, Message, MessageBody,
    NodeId, Term,
};
use flotilla_transport_quic::{
    ClientConnection, ClientSession, ClusterCa, ClusterId, QuicTransport, TlsSetup, Transport,
    TransportConfig,
};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const SMALL_BATCHES: usize = 512;
const SMALL_ENTRY_BYTES: usize = 100;
const BULK_BATCHES: usize = 32;
const BULK_ENTRY_BYTES: usize = 256 << 10;
const RAW_COALESCED_WRITE_BYTES: usize = 64 << 10;

struct Bench {
    runtime: Runtime,
    one: QuicTransport,
    two: QuicTransport,
    session: ClientSession,
    raw_done: mpsc::Receiver<u64>,
}

fn batch(entry_bytes: usize, sequence: u64) -> Batch {
    let entry = Entry {
        term: Term(1),
        index: LogIndex(sequence),
        payload: EntryPayload::Normal(vec![7; entry_bytes]),
    };
    let body = MessageBody::AppendEntries {
        prev: LogId::default(),
        entries: vec![entry],
        commit: LogIndex(sequence),
    };
    let message = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body,
    };
    let mut batch = Batch::new(NodeId(1), NodeId(2));
    batch.messages.push(GroupMessage {
        group: GroupId(1),
        message,
    });
    batch
}

/// The batches of one round, built outside the timed part (raw quinn reuses one buffer too).
fn batches(entry_bytes: usize, count: usize) -> Vec<Batch> {
    (0..count)
        .map(|sequence| batch(entry_bytes, sequence as u64))
        .collect()
}

fn encoded_bytes(batch: &Batch) -> usize {
    let mut buf = Vec::new();
    flotilla_transport_quic::frame::encode(
        flotilla_transport_quic::frame::FrameKind::RaftBatch,
        batch,
        u32::MAX,
        &mut buf,
    )
    .unwrap();
    buf.len()
}

fn setup() -> Bench {
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
        outbound_queue_batches: 1024,
        ..TransportConfig::default()
    };
    let loopback = "127.0.0.1:0".parse().unwrap();
    let (one, two, session, raw_done) = runtime.block_on(async {
        let one = QuicTransport::bind(NodeId(1), loopback, tls(1), config.clone())
            .await
            .unwrap();
        let two = QuicTransport::bind(NodeId(2), loopback, tls(2), config.clone())
            .await
            .unwrap();
        one.add_peer(NodeId(2), two.local_address().unwrap());
        two.add_peer(NodeId(1), one.local_address().unwrap());
        let client_tls = TlsSetup {
            cluster: cluster.clone(),
            ca: ca.certificate(),
            identity: ca.client_identity("bench").unwrap(),
        };
        let session = ClientSession::connect(
            &client_tls,
            &config,
            NodeId(2),
            two.local_address().unwrap(),
        )
        .await
        .unwrap();
        let client = two.accept_client().await.unwrap();
        let (done_tx, raw_done) = mpsc::channel(16);
        tokio::spawn(serve_client(client, done_tx));
        (one, two, session, raw_done)
    });
    Bench {
        runtime,
        one,
        two,
        session,
        raw_done,
    }
}

/// Echoes requests and sinks raw unidirectional streams, reporting the bytes of each.
async fn serve_client(client: ClientConnection, done: mpsc::Sender<u64>) {
    let connection = client.connection().clone();
    tokio::spawn(async move {
        while let Ok(mut stream) = connection.accept_uni().await {
            let mut total = 0u64;
            let mut chunk = vec![0u8; 64 << 10];
            while let Ok(Some(read)) = stream.read(&mut chunk).await {
                total += read as u64;
            }
            done.send(total).await.unwrap();
        }
    });
    while let Some(mut request) = client.accept_request().await {
        tokio::spawn(async move {
            let body: Vec<u8> = request.read_request().await.unwrap();
            request.respond(&body).await.unwrap();
        });
    }
}

impl Bench {
    fn transport_round(&self, batches: Vec<Batch>) {
        let count = batches.len();
        self.runtime.block_on(async {
            for batch in batches {
                self.one.send(batch).unwrap();
            }
            // Drain the way a Raft loop does: wait for one batch, then take all that are waiting.
            let mut received = 0;
            while received < count {
                self.two.recv().await.unwrap();
                received += 1;
                while self.two.try_recv().is_some() {
                    received += 1;
                }
            }
        });
    }

    /// Sends `bytes` on a new raw stream in writes of `write_bytes`, and waits until the
    /// receiver has read them all. The bytes are built outside the timed part.
    fn raw_round(&mut self, bytes: &[u8], write_bytes: usize) {
        let connection = self.session.connection().clone();
        let done = &mut self.raw_done;
        self.runtime.block_on(async {
            let mut stream = connection.open_uni().await.unwrap();
            for write in bytes.chunks(write_bytes) {
                stream.write_all(write).await.unwrap();
            }
            stream.finish().unwrap();
            assert_eq!(done.recv().await.unwrap(), bytes.len() as u64);
        });
    }
}

fn benches(c: &mut Criterion) {
    let mut bench = setup();
    bench.transport_round(batches(SMALL_ENTRY_BYTES, 8));
    let small_frame = encoded_bytes(&batch(SMALL_ENTRY_BYTES, 1));
    let bulk_frame = encoded_bytes(&batch(BULK_ENTRY_BYTES, 1));
    // One write per frame, of the frame's size: the same bytes and writes as the transport.
    let small_raw = vec![7u8; small_frame * SMALL_BATCHES];
    let bulk_raw = vec![7u8; bulk_frame * BULK_BATCHES];

    let mut small = c.benchmark_group("small_batches_100B");
    small.throughput(Throughput::Elements(SMALL_BATCHES as u64));
    small.bench_function("transport", |b| {
        b.iter_batched(
            || batches(SMALL_ENTRY_BYTES, SMALL_BATCHES),
            |batches| bench.transport_round(batches),
            BatchSize::SmallInput,
        )
    });
    small.bench_function("raw_quinn_same_bytes", |b| {
        b.iter(|| bench.raw_round(&small_raw, small_frame))
    });
    // The same bytes in writes of up to 64 KiB, as the transport's writer gathers them: quinn
    // without per-batch writes, a stricter reference than one write per batch.
    small.bench_function("raw_quinn_64KiB_writes", |b| {
        b.iter(|| bench.raw_round(&small_raw, RAW_COALESCED_WRITE_BYTES))
    });
    small.finish();

    let mut bulk = c.benchmark_group("bulk_256KiB_batches");
    bulk.throughput(Throughput::Bytes((bulk_frame * BULK_BATCHES) as u64));
    bulk.bench_function("transport", |b| {
        b.iter_batched(
            || batches(BULK_ENTRY_BYTES, BULK_BATCHES),
            |batches| bench.transport_round(batches),
            BatchSize::LargeInput,
        )
    });
    bulk.bench_function("raw_quinn_same_bytes", |b| {
        b.iter(|| bench.raw_round(&bulk_raw, bulk_frame))
    });
    bulk.finish();

    // The codec alone (no IO, no tasks): encode then decode one round of small batches.
    let mut codec = c.benchmark_group("codec_only_100B");
    codec.throughput(Throughput::Elements(SMALL_BATCHES as u64));
    let round = batches(SMALL_ENTRY_BYTES, SMALL_BATCHES);
    codec.bench_function("encode_decode", |b| b.iter(|| codec_round(&round)));
    codec.finish();
    let mut codec_bulk = c.benchmark_group("codec_only_256KiB");
    codec_bulk.throughput(Throughput::Bytes((bulk_frame * BULK_BATCHES) as u64));
    let round = batches(BULK_ENTRY_BYTES, BULK_BATCHES);
    codec_bulk.bench_function("encode_decode", |b| b.iter(|| codec_round(&round)));
    codec_bulk.finish();

    let mut latency = c.benchmark_group("request_response_100B");
    let request = vec![1u8; 100];
    latency.bench_function("client_protocol", |b| {
        b.iter(|| {
            bench
                .runtime
                .block_on(bench.session.request::<Vec<u8>, Vec<u8>>(&request))
                .unwrap()
        })
    });
    latency.finish();
}

fn codec_round(round: &[Batch]) {
    use flotilla_transport_quic::frame::{self, FrameKind};
    let mut buf = Vec::new();
    for batch in round {
        frame::encode(FrameKind::RaftBatch, batch, u32::MAX, &mut buf).unwrap();
    }
    let mut offset = 0;
    while offset < buf.len() {
        let (decoded, used) =
            frame::decode::<Batch>(&buf[offset..], FrameKind::RaftBatch, u32::MAX).unwrap();
        criterion::black_box(decoded);
        offset += used;
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! { name = quic; config = config(); targets = benches }
criterion_main!(quic);
