//! State machine benchmarks: entries applied per second (one at a time, and 64 per
//! `apply_entries` call as a node applies a ready's entries) and reads per second through the
//! `StateMachine` trait, for the in-memory map and for the disk engine (one batch per call,
//! unsynced, as a node applies; `disk_buffered` leaves batches in the engine's buffer instead
//! of handing each to the OS), with 16-byte keys and 256-byte values over a range preloaded
//! with `KEY_COUNT` keys; the engine's bytes on disk after the preload are printed once.
//!
//! Run: `cargo bench -p flotilla-bench --bench state_machine`.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_raft::{Entry, EntryPayload, GroupId, LogIndex, Term};
use flotilla_storage::{Codec, Command, Engine, EngineConfig, KvStateMachine, StateMachine};

const GROUP: GroupId = GroupId(1);
const KEY_COUNT: u64 = 102_400;
const VALUE_BYTES: usize = 256;
const OPERATIONS_PER_ITERATION: u64 = 1024;

/// A machine under test and what keeps it alive.
struct Subject {
    name: &'static str,
    machine: Box<dyn StateMachine>,
    engine: Option<(Engine, tempfile::TempDir)>,
    next: u64,
}

/// The key of operation `n`: spread over the key space, not in insertion order.
fn key(n: u64) -> Vec<u8> {
    format!("key{:013}", n.wrapping_mul(2_654_435_761) % KEY_COUNT).into_bytes()
}

fn put_entry(index: u64) -> Entry {
    let command = Command::Put {
        key: key(index),
        value: vec![index as u8; VALUE_BYTES],
    };
    Entry {
        term: Term(1),
        index: LogIndex(index),
        payload: EntryPayload::Normal(command.encode().into()),
    }
}

fn subjects() -> Vec<Subject> {
    let mut subjects = vec![Subject {
        name: "memory",
        machine: Box::new(KvStateMachine::new(GROUP)),
        engine: None,
        next: 1,
    }];
    for (name, flush_each_batch) in [("disk", true), ("disk_buffered", false)] {
        let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let config = EngineConfig {
            flush_each_batch,
            ..EngineConfig::default()
        };
        let engine = Engine::open(directory.path(), config).unwrap();
        let machine = engine.open_range(GROUP).unwrap();
        subjects.push(Subject {
            name,
            machine: Box::new(machine),
            engine: Some((engine, directory)),
            next: 1,
        });
    }
    subjects
}

impl Subject {
    fn apply(&mut self, count: u64) {
        for _ in 0..count {
            self.machine.apply_entry(&put_entry(self.next)).unwrap();
            self.next += 1;
        }
    }

    /// `count` entries given `batch_entries` at a time to `apply_entries`.
    fn apply_batched(&mut self, count: u64, batch_entries: u64) {
        for _ in 0..count / batch_entries {
            let entries: Vec<Entry> = (self.next..self.next + batch_entries)
                .map(put_entry)
                .collect();
            self.machine.apply_entries(&entries).unwrap();
            self.next += batch_entries;
        }
    }
}

/// CPU seconds this process used so far, every thread (the engine's background ones too), from
/// `/proc/self/stat`: wall time on a shared 2-core machine says more about the neighbours.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (in parentheses): utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Applies `count` puts `batch_entries` at a time and syncs; the wall and CPU time it took, as a
/// sentence, and the engine's bytes on disk.
fn measure(subject: &mut Subject, count: u64, batch_entries: u64) -> (String, u64) {
    let (wall, cpu) = (std::time::Instant::now(), process_cpu_seconds());
    subject.apply_batched(count, batch_entries);
    if let Some((engine, _)) = &subject.engine {
        engine.sync().unwrap();
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), process_cpu_seconds() - cpu);
    let disk_bytes = subject
        .engine
        .as_ref()
        .map_or(0, |(engine, _)| engine.disk_bytes().unwrap());
    let sentence = format!(
        "{wall:.2} s wall, {cpu:.2} s CPU ({:.1} us CPU per put)",
        cpu * 1e6 / count as f64
    );
    (sentence, disk_bytes)
}

/// What a snapshot's copy of a range in memory and a split at its middle cost on the Raft
/// loop, for a map of `count` pairs.
fn copy_and_split(count: u64) -> String {
    let mut map: flotilla_storage::kv::KvMap = (0..count)
        .map(|n| (key(n), vec![n as u8; VALUE_BYTES]))
        .collect();
    let started = std::time::Instant::now();
    let copy = map.clone();
    let copied = started.elapsed();
    let middle = map.key_at(map.len() / 2).unwrap().clone();
    let started = std::time::Instant::now();
    let right = map.split_off(&middle);
    let split = started.elapsed();
    let started = std::time::Instant::now();
    map.insert(key(1), vec![0; VALUE_BYTES]);
    let first_write = started.elapsed();
    assert_eq!(map.len() + right.len(), copy.len());
    format!(
        "memory map of {count} pairs: a copy {copied:?}, a split at the middle {split:?}, the \
         first write after the copy {first_write:?}"
    )
}

fn bench_state_machines(c: &mut Criterion) {
    // `--test` (CI) runs each bench once: a small preload is enough there.
    let testing = std::env::args().any(|argument| argument == "--test");
    let preload = if testing { 1024 } else { KEY_COUNT };
    let mut subjects = subjects();
    for subject in &mut subjects {
        let (inserts, disk_bytes) = measure(subject, preload, 1);
        let (overwrites, _) = measure(subject, preload, 1);
        let (batched, _) = measure(subject, preload, 64);
        eprintln!(
            "{}: {preload} puts of {VALUE_BYTES} B: {inserts}, {disk_bytes} bytes on disk after \
             a sync; as many overwrites one at a time: {overwrites}; in batches of 64: {batched}",
            subject.name,
        );
    }
    eprintln!("{}", copy_and_split(preload));
    let mut group = c.benchmark_group("state_machine");
    group.throughput(Throughput::Elements(OPERATIONS_PER_ITERATION));
    for subject in &mut subjects {
        group.bench_function(format!("{}/apply_put", subject.name), |b| {
            b.iter(|| subject.apply(OPERATIONS_PER_ITERATION));
        });
        group.bench_function(format!("{}/apply_put_batches_of_64", subject.name), |b| {
            b.iter(|| subject.apply_batched(OPERATIONS_PER_ITERATION, 64));
        });
        let mut n = 0u64;
        group.bench_function(format!("{}/get", subject.name), |b| {
            b.iter(|| {
                for _ in 0..OPERATIONS_PER_ITERATION {
                    n += 1;
                    let get = Command::Get { key: key(n) };
                    subject.machine.read_bounded(&get, usize::MAX).unwrap();
                }
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_state_machines
}
criterion_main!(benches);
