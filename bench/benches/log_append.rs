//! Log engine benchmarks: appends per second and MB/s at batch sizes 1, 16, 256 and 4096 with
//! 16- and 256-byte payloads (one `fdatasync` per batch), reads from a sealed (memory-mapped)
//! segment, and the raw floor: write + `fdatasync` loops on a plain file, zero-filled
//! (overwrites, like the engine's segments) and sparse (4 KiB only, for comparison).
//!
//! Run: `cargo bench -p flotilla-bench --bench log_append`.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_raft::{Entry, EntryPayload, GroupId, LogIndex, LogReader, Term};
use flotilla_storage::{LogConfig, LogEngine, WriteBatch};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Duration;

const GROUP: GroupId = GroupId(1);
const RAW_FILE_BYTES: u64 = 64 << 20;
const SPARE_SETTLE: Duration = Duration::from_secs(8);

fn entries(first: u64, count: u64, payload_bytes: usize) -> Vec<Entry> {
    (first..first + count)
        .map(|index| Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Normal(vec![index as u8; payload_bytes].into()),
        })
        .collect()
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for payload_bytes in [16usize, 256] {
        for batch_entries in [1u64, 16, 256, 4096] {
            let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let (engine, _) = LogEngine::open(directory.path(), LogConfig::default()).unwrap();
            // Opening zero-fills a spare segment in the background; measure the steady state,
            // not the disk busy with 64 MiB of zeros.
            // `--test` (CI) runs each bench once and measures nothing: no need to wait there.
            if !std::env::args().any(|argument| argument == "--test") {
                std::thread::sleep(SPARE_SETTLE);
            }
            let mut next = 1;
            group.throughput(Throughput::Elements(batch_entries));
            let name = format!("payload_{payload_bytes}B/batch_{batch_entries}");
            group.bench_function(name, |b| {
                b.iter_batched(
                    || {
                        let mut batch = WriteBatch::new();
                        batch.append(GROUP, entries(next, batch_entries, payload_bytes));
                        next += batch_entries;
                        batch
                    },
                    |batch| engine.write(batch).unwrap(),
                    BatchSize::PerIteration,
                );
            });
        }
    }
    group.finish();
}

fn bench_sealed_read(c: &mut Criterion) {
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = LogConfig {
        segment_bytes_max: 4 << 20,
        record_bytes_max: 64 << 10,
        sync_bytes_max: 1 << 20,
        ..LogConfig::default()
    };
    let (engine, _) = LogEngine::open(directory.path(), config).unwrap();
    let entry_count = 40_000;
    for first in (1..=entry_count).step_by(4000) {
        let mut batch = WriteBatch::new();
        batch.append(GROUP, entries(first, 4000, 256));
        engine.write(batch).unwrap();
    }
    assert!(
        engine.segment_sequences().len() > 2,
        "the reads must hit sealed segments"
    );
    let log = engine.group(GROUP);
    let mut group = c.benchmark_group("sealed_read");
    group.throughput(Throughput::Elements(256));
    let mut low = 1;
    group.bench_function("payload_256B/entries_256", |b| {
        b.iter(|| {
            let read = log
                .entries(LogIndex(low), LogIndex(low + 256), u64::MAX)
                .unwrap();
            low = if low + 512 > entry_count / 2 {
                1
            } else {
                low + 256
            };
            read
        });
    });
    group.finish();
}

/// A plain file of `RAW_FILE_BYTES`: zero-filled (every write overwrites allocated blocks, as
/// the engine's segments are) or sparse (`set_len` only: every write allocates).
fn raw_file(directory: &std::path::Path, zero_filled: bool) -> std::fs::File {
    let path = directory.join("raw");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.set_len(RAW_FILE_BYTES).unwrap();
    if zero_filled {
        let zeros = vec![0; 1 << 20];
        for offset in (0..RAW_FILE_BYTES).step_by(zeros.len()) {
            file.write_all_at(&zeros, offset).unwrap();
        }
    }
    file.sync_all().unwrap();
    file
}

fn bench_raw_floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw_write_fdatasync");
    let cases = [
        (4usize << 10, false),
        (4 << 10, true),
        (16 << 10, true),
        (64 << 10, true),
        (1 << 20, true),
    ];
    for (write_bytes, zero_filled) in cases {
        let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let file = raw_file(directory.path(), zero_filled);
        let buffer = vec![0x5a; write_bytes];
        let mut offset = 0;
        group.throughput(Throughput::Bytes(write_bytes as u64));
        let kind = if zero_filled { "overwrite" } else { "sparse" };
        group.bench_function(format!("{kind}_bytes_{write_bytes}"), |b| {
            b.iter(|| {
                file.write_all_at(&buffer, offset).unwrap();
                file.sync_data().unwrap();
                offset = (offset + write_bytes as u64) % RAW_FILE_BYTES;
            });
        });
    }
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = quick();
    targets = bench_raw_floor, bench_append, bench_sealed_read
}
criterion_main!(benches);
