//! Transport throughput and latency on loopback, with a plain quinn stream between the same two
//! endpoints as the baseline: small batches per second, bulk MiB/s, and a 100-byte request
//! round trip on the pipelined client stream.
#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_raft::Batch;
use std::time::Duration;
use support::{
    BULK_BATCHES, BULK_ENTRY_BYTES, RAW_COALESCED_WRITE_BYTES, SMALL_BATCHES, SMALL_ENTRY_BYTES,
    batch, batches, encoded_bytes, setup,
};

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
        b.iter(|| bench.request_round(&request))
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
