//! One suite of `LogReader` + write behaviour, run against `flotilla_raft::MemLog` (through
//! `MemLog::persist`) and against `LogEngine`'s `GroupLog` (which is also reopened after every
//! case and must read back the same log). Modelled on openraft's `testing/log/suite.rs`.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{
    GroupId, HardState, InitialState, LogError, LogIndex, LogReader, MemLog, Membership, NodeId,
    Persist, Snapshot, Term,
};
use flotilla_storage::{CrashFs, LogConfig, LogEngine, SnapshotLoading, WriteBatch};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;
use common::{Observed, entries, observe, snapshot};

const G1: GroupId = GroupId(1);
const G2: GroupId = GroupId(2);

/// A log implementation under test.
trait Subject {
    fn persist(&mut self, group: GroupId, persist: &Persist);
    fn reader(&self, group: GroupId) -> Box<dyn LogReader + '_>;
}

#[derive(Default)]
struct MemSubject {
    logs: HashMap<GroupId, MemLog>,
}

impl Subject for MemSubject {
    fn persist(&mut self, group: GroupId, persist: &Persist) {
        self.logs.entry(group).or_default().persist(persist);
    }
    fn reader(&self, group: GroupId) -> Box<dyn LogReader + '_> {
        match self.logs.get(&group) {
            Some(log) => Box::new(log.clone()),
            None => Box::new(MemLog::new()),
        }
    }
}

struct EngineSubject {
    fs: CrashFs,
    engine: LogEngine,
}

impl EngineSubject {
    fn new() -> Self {
        let fs = CrashFs::new(7);
        let engine = Self::open(&fs);
        Self { fs, engine }
    }
    fn open(fs: &CrashFs) -> LogEngine {
        let config = LogConfig::small_for_tests();
        LogEngine::open_with(Arc::new(fs.clone()), "/data", config)
            .unwrap()
            .0
    }
    fn reopen(&mut self) {
        self.engine = Self::open(&self.fs);
    }
}

impl Subject for EngineSubject {
    fn persist(&mut self, group: GroupId, persist: &Persist) {
        let mut batch = WriteBatch::new();
        batch.persist(group, persist);
        self.engine.write(batch).unwrap();
    }
    fn reader(&self, group: GroupId) -> Box<dyn LogReader + '_> {
        Box::new(self.engine.group(group))
    }
}

fn append(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Persist {
    Persist {
        entries: entries(term, indexes),
        ..Persist::default()
    }
}

fn empty_log_reads_like_memlog(subject: &mut dyn Subject) {
    let log = subject.reader(G1);
    assert_eq!(log.first_index(), LogIndex(1));
    assert_eq!(log.last_index(), LogIndex(0));
    assert_eq!(log.term(LogIndex(0)), Ok(Term(0)));
    assert_eq!(
        log.term(LogIndex(1)),
        Err(LogError::Unavailable(LogIndex(1)))
    );
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(2), 100),
        Err(LogError::Unavailable(LogIndex(1)))
    );
    assert_eq!(log.entries(LogIndex(1), LogIndex(1), 100), Ok(vec![]));
    assert_eq!(log.snapshot().unwrap(), Snapshot::default());
    assert_eq!(log.initial_state().unwrap(), InitialState::default());
}

fn appended_entries_read_back(subject: &mut dyn Subject) {
    subject.persist(G1, &append(1, 1..=5));
    let log = subject.reader(G1);
    assert_eq!(log.last_index(), LogIndex(5));
    assert_eq!(
        log.entries(LogIndex(2), LogIndex(5), u64::MAX).unwrap(),
        entries(1, 2..=4)
    );
    assert_eq!(log.term(LogIndex(5)), Ok(Term(1)));
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(7), 100),
        Err(LogError::Unavailable(LogIndex(6)))
    );
}

fn bytes_max_stops_early_but_returns_one(subject: &mut dyn Subject) {
    subject.persist(G1, &append(1, 1..=5));
    let log = subject.reader(G1);
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(6), 0).unwrap(),
        entries(1, 1..=1)
    );
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(6), 25).unwrap(),
        entries(1, 1..=2)
    );
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(6), 30).unwrap(),
        entries(1, 1..=3)
    );
}

fn a_conflicting_suffix_is_overwritten(subject: &mut dyn Subject) {
    subject.persist(G1, &append(1, 1..=5));
    subject.persist(G1, &append(2, 3..=4));
    let log = subject.reader(G1);
    assert_eq!(log.last_index(), LogIndex(4));
    assert_eq!(log.term(LogIndex(2)), Ok(Term(1)));
    assert_eq!(log.term(LogIndex(3)), Ok(Term(2)));
    assert_eq!(
        log.term(LogIndex(5)),
        Err(LogError::Unavailable(LogIndex(5)))
    );
    let mut expected = entries(1, 1..=2);
    expected.extend(entries(2, 3..=4));
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(5), u64::MAX).unwrap(),
        expected
    );
}

fn hard_state_is_kept(subject: &mut dyn Subject) {
    let hard_state = HardState {
        term: Term(3),
        vote: Some(NodeId(2)),
        commit: LogIndex(0),
    };
    let persist = Persist {
        hard_state: Some(hard_state),
        ..append(3, 1..=2)
    };
    subject.persist(G1, &persist);
    assert_eq!(
        subject.reader(G1).initial_state().unwrap().hard_state,
        hard_state
    );
}

fn compaction_drops_covered_entries(subject: &mut dyn Subject) {
    subject.persist(G1, &append(1, 1..=10));
    let compaction = Persist {
        compaction: Some(snapshot(1, 6, b"state at 6")),
        ..Persist::default()
    };
    subject.persist(G1, &compaction);
    let log = subject.reader(G1);
    assert_eq!(log.first_index(), LogIndex(7));
    assert_eq!(log.last_index(), LogIndex(10));
    assert_eq!(log.term(LogIndex(6)), Ok(Term(1)));
    assert_eq!(log.term(LogIndex(5)), Err(LogError::Compacted(LogIndex(5))));
    assert_eq!(
        log.entries(LogIndex(6), LogIndex(8), 100),
        Err(LogError::Compacted(LogIndex(6)))
    );
    assert_eq!(
        log.entries(LogIndex(7), LogIndex(11), u64::MAX).unwrap(),
        entries(1, 7..=10)
    );
    assert_eq!(log.snapshot().unwrap(), snapshot(1, 6, b"state at 6"));
    assert_eq!(
        log.initial_state().unwrap().snapshot_meta,
        snapshot(1, 6, b"").meta
    );
}

fn an_older_compaction_is_ignored(subject: &mut dyn Subject) {
    subject.persist(G1, &append(1, 1..=10));
    subject.persist(
        G1,
        &Persist {
            compaction: Some(snapshot(1, 6, b"six")),
            ..Persist::default()
        },
    );
    subject.persist(
        G1,
        &Persist {
            compaction: Some(snapshot(1, 4, b"four")),
            ..Persist::default()
        },
    );
    let log = subject.reader(G1);
    assert_eq!(log.first_index(), LogIndex(7));
    assert_eq!(log.snapshot().unwrap().data, b"six");
}

fn compaction_up_to_the_last_entry_empties_the_log(subject: &mut dyn Subject) {
    subject.persist(G1, &append(2, 1..=4));
    subject.persist(
        G1,
        &Persist {
            compaction: Some(snapshot(2, 4, b"all")),
            ..Persist::default()
        },
    );
    let log = subject.reader(G1);
    assert_eq!(
        (log.first_index(), log.last_index()),
        (LogIndex(5), LogIndex(4))
    );
    assert_eq!(log.term(LogIndex(4)), Ok(Term(2)));
    drop(log);
    subject.persist(G1, &append(3, 5..=6));
    assert_eq!(
        subject
            .reader(G1)
            .entries(LogIndex(5), LogIndex(7), 100)
            .unwrap(),
        entries(3, 5..=6)
    );
}

fn an_installed_snapshot_replaces_the_log(subject: &mut dyn Subject) {
    subject.persist(G1, &append(1, 1..=10));
    let install = Persist {
        snapshot: Some(snapshot(4, 20, b"leader state")),
        entries: entries(4, 21..=22),
        ..Persist::default()
    };
    subject.persist(G1, &install);
    let log = subject.reader(G1);
    assert_eq!(log.first_index(), LogIndex(21));
    assert_eq!(log.last_index(), LogIndex(22));
    assert_eq!(log.term(LogIndex(20)), Ok(Term(4)));
    assert_eq!(
        log.term(LogIndex(10)),
        Err(LogError::Compacted(LogIndex(10)))
    );
    assert_eq!(log.initial_state().unwrap().hard_state.commit, LogIndex(20));
    assert_eq!(log.snapshot().unwrap().data, b"leader state");
}

fn a_bootstrap_snapshot_at_zero_carries_membership(subject: &mut dyn Subject) {
    let membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    subject.persist(G1, &Persist::bootstrap(membership.clone()));
    let log = subject.reader(G1);
    assert_eq!(log.first_index(), LogIndex(1));
    assert_eq!(log.last_index(), LogIndex(0));
    assert_eq!(
        log.initial_state().unwrap().snapshot_meta.membership,
        membership
    );
}

fn groups_are_independent(subject: &mut dyn Subject) {
    subject.persist(G1, &append(1, 1..=3));
    subject.persist(G2, &append(5, 1..=1));
    subject.persist(G1, &append(2, 2..=2));
    assert_eq!(subject.reader(G1).last_index(), LogIndex(2));
    assert_eq!(subject.reader(G2).term(LogIndex(1)), Ok(Term(5)));
}

fn many_entries_cross_segments(subject: &mut dyn Subject) {
    for start in (1..=400).step_by(40) {
        subject.persist(G1, &append(1, start..=start + 39));
        subject.persist(G2, &append(1, start..=start + 39));
    }
    subject.persist(
        G1,
        &Persist {
            compaction: Some(snapshot(1, 390, b"g1")),
            ..Persist::default()
        },
    );
    let log = subject.reader(G2);
    assert_eq!(
        log.entries(LogIndex(1), LogIndex(401), u64::MAX).unwrap(),
        entries(1, 1..=400)
    );
    assert_eq!(subject.reader(G1).first_index(), LogIndex(391));
    // Byte limits that stop on disk, in the cache, and from a start in the middle: the same
    // entries as reading everything and cutting.
    for (low, bytes_max) in [(1, 0), (1, 300), (1, 3_000), (200, 1_500), (390, 100)] {
        let mut total = 0;
        let mut expected: Vec<_> = entries(1, low..=400)
            .into_iter()
            .take_while(|entry| {
                total += entry.payload_bytes();
                total <= bytes_max
            })
            .collect();
        if expected.is_empty() {
            expected = entries(1, low..=low);
        }
        assert_eq!(
            log.entries(LogIndex(low), LogIndex(401), bytes_max)
                .unwrap(),
            expected,
            "from {low} within {bytes_max} bytes"
        );
    }
}

type Case = fn(&mut dyn Subject);

const CASES: &[(&str, Case)] = &[
    ("empty_log_reads_like_memlog", empty_log_reads_like_memlog),
    ("appended_entries_read_back", appended_entries_read_back),
    (
        "bytes_max_stops_early_but_returns_one",
        bytes_max_stops_early_but_returns_one,
    ),
    (
        "a_conflicting_suffix_is_overwritten",
        a_conflicting_suffix_is_overwritten,
    ),
    ("hard_state_is_kept", hard_state_is_kept),
    (
        "compaction_drops_covered_entries",
        compaction_drops_covered_entries,
    ),
    (
        "an_older_compaction_is_ignored",
        an_older_compaction_is_ignored,
    ),
    (
        "compaction_up_to_the_last_entry_empties_the_log",
        compaction_up_to_the_last_entry_empties_the_log,
    ),
    (
        "an_installed_snapshot_replaces_the_log",
        an_installed_snapshot_replaces_the_log,
    ),
    (
        "a_bootstrap_snapshot_at_zero_carries_membership",
        a_bootstrap_snapshot_at_zero_carries_membership,
    ),
    ("groups_are_independent", groups_are_independent),
    ("many_entries_cross_segments", many_entries_cross_segments),
];

#[test]
fn memlog_passes_the_suite() {
    for (name, case) in CASES {
        eprintln!("memlog: {name}");
        case(&mut MemSubject::default());
    }
}

#[test]
fn log_engine_passes_the_suite_and_reopens_to_the_same_log() {
    for (name, case) in CASES {
        eprintln!("log engine: {name}");
        let mut subject = EngineSubject::new();
        case(&mut subject);
        let before: Vec<Observed> = [G1, G2]
            .iter()
            .map(|g| observe(&*subject.reader(*g)))
            .collect();
        subject.reopen();
        let after: Vec<Observed> = [G1, G2]
            .iter()
            .map(|g| observe(&*subject.reader(*g)))
            .collect();
        assert_eq!(before, after, "{name}: reopening changed the log");
    }
}

#[test]
fn log_engine_matches_memlog_on_every_case() {
    for (name, case) in CASES {
        let mut mem = MemSubject::default();
        let mut engine = EngineSubject::new();
        case(&mut mem);
        case(&mut engine);
        for group in [G1, G2] {
            let expected = observe(&*mem.reader(group));
            assert_eq!(observe(&*engine.reader(group)), expected, "{name}: {group}");
        }
    }
}

#[test]
fn log_engine_reopens_on_real_files() {
    let directory = tempfile::tempdir().unwrap();
    let config = LogConfig::small_for_tests();
    let (engine, _) = LogEngine::open(directory.path(), config.clone()).unwrap();
    let mut batch = WriteBatch::new();
    batch.persist(G1, &append(1, 1..=300));
    engine.write(batch).unwrap();
    let before = observe(&engine.group(G1));
    drop(engine);
    let (engine, report) = LogEngine::open(directory.path(), config).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(observe(&engine.group(G1)), before);
}

/// A snapshot up to `snapshot_inline_bytes_max` is read whole at once; a larger one is never
/// read whole: the leader is handed a reference at once and reads the file a chunk at a time.
#[test]
fn a_small_snapshot_is_sent_inline_and_a_large_one_from_its_file() {
    let directory = tempfile::tempdir().unwrap();
    let config = LogConfig {
        snapshot_inline_bytes_max: 16,
        ..LogConfig::small_for_tests()
    };
    let (engine, _) = LogEngine::open(directory.path(), config).unwrap();
    let mut batch = WriteBatch::new();
    batch.persist(G1, &append(1, 1..=10));
    engine.write(batch).unwrap();
    let (small, large) = (snapshot(1, 4, b"tiny"), snapshot(1, 9, &[7; 1000]));
    engine.write(compaction(G1, &small)).unwrap();
    let log = engine.group(G1);
    assert_eq!(log.snapshot(), Ok(small), "inline");
    engine.write(compaction(G1, &large)).unwrap();
    let sending = log.snapshot().unwrap();
    assert_eq!(sending.meta, large.meta);
    assert!(sending.data.len() < 200, "a reference, not the file");
    assert_eq!(read_in_chunks(&log, &sending, 300), large.data);
}

fn compaction(group: GroupId, snapshot: &Snapshot) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.persist(
        group,
        &Persist {
            compaction: Some(snapshot.clone()),
            ..Persist::default()
        },
    );
    batch
}

/// A snapshot without data (every range's first state, which holds only its membership) is
/// recorded by its marker alone: no file and no file sync, so bootstrapping many ranges costs
/// one log write. It reads back, after a reopen too, and a snapshot with data later gets a
/// file as before.
#[test]
fn a_snapshot_without_data_gets_no_file() {
    let directory = tempfile::tempdir().unwrap();
    let config = LogConfig::small_for_tests();
    let (engine, _) = LogEngine::open(directory.path(), config.clone()).unwrap();
    let membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let mut batch = WriteBatch::new();
    for group in 1..=100 {
        batch.persist(GroupId(group), &Persist::bootstrap(membership.clone()));
    }
    engine.write(batch).unwrap();
    let snapshot_files = || {
        std::fs::read_dir(directory.path())
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("snap-")
            })
            .count()
    };
    assert_eq!(snapshot_files(), 0);
    drop(engine);

    let (engine, report) = LogEngine::open(directory.path(), config).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(engine.group_ids().len(), 100);
    let loaded = engine.group(GroupId(42)).load_snapshot().unwrap();
    assert_eq!(loaded.meta.membership, membership);
    assert!(loaded.data.is_empty());

    let mut batch = WriteBatch::new();
    let installed = Persist {
        snapshot: Some(snapshot(1, 5, b"state")),
        ..Persist::default()
    };
    batch.persist(GroupId(42), &installed);
    engine.write(batch).unwrap();
    assert_eq!(snapshot_files(), 1);
    let loaded = engine.group(GroupId(42)).load_snapshot().unwrap();
    assert_eq!(loaded.data, b"state");
}

/// A log compacted with `ENGINE_STATE` (the range's state is in the node's engine) keeps no
/// file and no copy of the state: it reads back as that note, after a reopen too, and a leader
/// asking for the snapshot to send gets the one the engine produces, off the caller's thread.
#[test]
fn a_log_compacted_onto_the_engine_sends_what_the_engine_produces() {
    use flotilla_storage::machine::ENGINE_STATE;
    for loading in [SnapshotLoading::NextAsk, SnapshotLoading::Background] {
        let config = LogConfig {
            snapshot_loading: loading,
            ..LogConfig::small_for_tests()
        };
        let (directory, engine) = log_of(config.clone(), 1..=10);
        let note = snapshot(1, 6, ENGINE_STATE);
        engine.write(compaction(G1, &note)).unwrap();
        let no_files = Vec::<String>::new();
        assert_eq!(files_named(directory.path(), "snap-"), no_files, "no file");
        assert_eq!(engine.group(G1).load_snapshot(), Ok(note.clone()));
        // Nothing produces it yet: a leader cannot send it, and says why.
        assert!(matches!(
            engine.group(G1).snapshot(),
            Err(LogError::Storage(_))
        ));
        // The engine's snapshot is at its applied entry, past the compaction.
        let produced = snapshot(1, 9, b"the state at entry 9");
        let (answer, productions) = (produced.clone(), Arc::new(AtomicUsize::new(0)));
        let counted = Arc::clone(&productions);
        engine.set_engine_snapshots(Arc::new(move |group, file| {
            assert_eq!(group, G1);
            counted.fetch_add(1, Ordering::Relaxed);
            file.write_at(0, &answer.data).unwrap();
            Ok((answer.meta.clone(), answer.data.len() as u64))
        }));
        let log = engine.group(G1);
        assert_eq!(
            log.snapshot(),
            Err(LogError::SnapshotTemporarilyUnavailable),
            "{loading:?}: produced off the caller's thread"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let taken = loop {
            match log.snapshot() {
                Err(LogError::SnapshotTemporarilyUnavailable) => {
                    assert!(std::time::Instant::now() < deadline, "{loading:?}: never");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => break other.unwrap(),
            }
        };
        // Raft holds a reference; the bytes come from the spool, a chunk at a time.
        assert_eq!(taken.meta, produced.meta, "{loading:?}");
        assert_ne!(
            taken.data, produced.data,
            "{loading:?}: a reference, not the state"
        );
        assert_eq!(
            read_in_chunks(&log, &taken, 3),
            produced.data,
            "{loading:?}"
        );
        assert_eq!(
            files_named(directory.path(), "spool-").len(),
            1,
            "{loading:?}"
        );
        // The spool covers the note: a second follower shares it, nothing is produced again.
        assert_eq!(log.snapshot(), Ok(taken.clone()), "{loading:?}");
        assert_eq!(productions.load(Ordering::Relaxed), 1, "{loading:?}");
        // Once both transfers end, the spool is deleted.
        log.snapshot_released(&taken);
        assert_eq!(
            files_named(directory.path(), "spool-").len(),
            1,
            "{loading:?}"
        );
        log.snapshot_released(&taken);
        assert_eq!(
            files_named(directory.path(), "spool-"),
            Vec::<String>::new(),
            "{loading:?}"
        );
        // A follower asking now is sent a new spool.
        assert_eq!(
            log.snapshot(),
            Err(LogError::SnapshotTemporarilyUnavailable)
        );
        drop(log);
        drop(engine);
        let (engine, _) = LogEngine::open(directory.path(), config).unwrap();
        assert_eq!(
            files_named(directory.path(), "spool-"),
            Vec::<String>::new(),
            "{loading:?}: spools are copies to send, removed at the next open"
        );
        assert_eq!(engine.group(G1).load_snapshot(), Ok(note), "after a reopen");
    }
}

/// The whole of `snapshot` (as `snapshot()` gave it) read through `snapshot_chunk`, `chunk`
/// bytes at a time.
fn read_in_chunks(log: &impl LogReader, snapshot: &Snapshot, chunk: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let piece = log
            .snapshot_chunk(snapshot, bytes.len() as u64, chunk)
            .unwrap();
        assert!(piece.data.len() as u64 <= chunk);
        bytes.extend_from_slice(&piece.data);
        if piece.done {
            return bytes;
        }
        assert!(!piece.data.is_empty(), "no progress before the end");
    }
}

/// A log on real files in a new directory, with `G1`'s entries `indexes` of term 1.
fn log_of(
    config: LogConfig,
    indexes: std::ops::RangeInclusive<u64>,
) -> (tempfile::TempDir, LogEngine) {
    let directory = tempfile::tempdir().unwrap();
    let (engine, _) = LogEngine::open(directory.path(), config).unwrap();
    let mut batch = WriteBatch::new();
    batch.persist(G1, &append(1, indexes));
    engine.write(batch).unwrap();
    (directory, engine)
}

/// A log of entries 1 to 10 of `G1` that sends any snapshot over 8 bytes from its file.
fn log_sending_files(config: LogConfig) -> (tempfile::TempDir, LogEngine) {
    let config = LogConfig {
        snapshot_inline_bytes_max: 8,
        ..config
    };
    log_of(config, 1..=10)
}

/// A snapshot file over `snapshot_inline_bytes_max` is sent from the file a chunk at a time,
/// never read whole, and stays readable to the end of its transfer after the log's next
/// compaction deletes it, even once another follower is sent the newest snapshot: a transfer
/// is never cut short by another. Released by every transfer, a file is closed.
#[test]
fn a_large_snapshot_file_is_sent_a_chunk_at_a_time_and_outlives_its_compaction() {
    let (_directory, engine) = log_sending_files(LogConfig::small_for_tests());
    let first = snapshot(1, 5, b"the range's state at entry 5");
    engine.write(compaction(G1, &first)).unwrap();
    let log = engine.group(G1);
    let sending = log.snapshot().unwrap();
    assert_eq!(sending.meta, first.meta);
    assert_ne!(
        sending.data, first.data,
        "a reference, not the file's bytes"
    );
    let head = log.snapshot_chunk(&sending, 0, 4).unwrap();
    assert_eq!((head.data.as_slice(), head.done), (&b"the "[..], false));
    // A second follower asks meanwhile: it shares the same file.
    assert_eq!(log.snapshot(), Ok(sending.clone()));

    // The log compacts again and deletes the first file, and a third follower asks for the
    // newest: the first file's transfers still read to the end.
    let second = snapshot(1, 8, b"the range's state at entry 8");
    engine.write(compaction(G1, &second)).unwrap();
    let newest = log.snapshot().unwrap();
    assert_eq!(newest.meta, second.meta);
    assert_eq!(read_in_chunks(&log, &newest, 5), second.data);
    let rest = log.snapshot_chunk(&sending, 4, 1 << 20).unwrap();
    assert_eq!(rest.data, &first.data[4..]);
    assert!(rest.done);

    // Both transfers of the first file end: it is closed, and can no longer be read.
    log.snapshot_released(&sending);
    assert!(
        log.snapshot_chunk(&sending, 0, 4).is_ok(),
        "one still reads it"
    );
    log.snapshot_released(&sending);
    assert!(matches!(
        log.snapshot_chunk(&sending, 0, 4),
        Err(LogError::Compacted(_))
    ));
}

/// At most `snapshot_sends_max` files are open: one more ask waits ("temporarily
/// unavailable") instead of closing a file a transfer reads, and gets its file once one is
/// released.
#[test]
fn files_sent_at_once_are_bounded_and_a_new_ask_waits_for_room() {
    let (_directory, engine) = log_sending_files(LogConfig {
        snapshot_sends_max: 1,
        ..LogConfig::small_for_tests()
    });
    let mut batch = WriteBatch::new();
    batch.persist(G2, &append(1, 1..=10));
    engine.write(batch).unwrap();
    let state = snapshot(1, 5, b"the range's state at entry 5");
    engine.write(compaction(G1, &state)).unwrap();
    engine.write(compaction(G2, &state)).unwrap();
    let sending = engine.group(G1).snapshot().unwrap();
    assert_eq!(
        engine.group(G2).snapshot(),
        Err(LogError::SnapshotTemporarilyUnavailable)
    );
    assert_eq!(read_in_chunks(&engine.group(G1), &sending, 7), state.data);
    engine.group(G1).snapshot_released(&sending);
    let next = engine.group(G2).snapshot().unwrap();
    assert_eq!(read_in_chunks(&engine.group(G2), &next, 7), state.data);
}

/// A snapshot file that no longer matches its marker's crc32c (a damaged disk) is never sent
/// whole: the read of its last chunk fails as a storage error, which stops the node.
#[test]
fn a_damaged_snapshot_file_fails_its_last_chunk_read() {
    let (directory, engine) = log_sending_files(LogConfig::small_for_tests());
    let state = snapshot(1, 5, b"the range's state at entry 5");
    engine.write(compaction(G1, &state)).unwrap();
    let [file] = files_named(directory.path(), "snap-").try_into().unwrap();
    let path = directory.path().join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let log = engine.group(G1);
    let sending = log.snapshot().unwrap();
    assert!(log.snapshot_chunk(&sending, 0, 10).is_ok());
    assert!(log.snapshot_chunk(&sending, 10, 10).is_ok());
    assert!(matches!(
        log.snapshot_chunk(&sending, 20, 10),
        Err(LogError::Storage(reason)) if reason.contains("checksum")
    ));
}

/// The files in `directory` whose names start with `prefix`.
fn files_named(directory: &std::path::Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

fn piece(last: &Snapshot, offset: u64, data: &[u8]) -> flotilla_raft::SnapshotPiece {
    flotilla_raft::SnapshotPiece {
        last: last.meta.last,
        offset,
        data: data.to_vec(),
    }
}

/// The check the tests stage against: only the bytes "0123456789" pass, and it prepares
/// their length.
fn digits_only() -> flotilla_storage::StagedCheck {
    Arc::new(|_group, _meta, data: &[u8]| {
        if data == b"0123456789" {
            Ok(Some(flotilla_storage::Prepared(Box::new(data.len()))))
        } else {
            Err(format!("{} bytes that are not the digits", data.len()))
        }
    })
}

/// Calls `take` until it hands something out (what a log did off the caller's thread), for
/// ten seconds at most; `what` names it if it never does.
fn waited_for<T>(what: &str, mut take: impl FnMut() -> Vec<T>) -> Vec<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let taken = take();
        if !taken.is_empty() {
            return taken;
        }
        assert!(std::time::Instant::now() < deadline, "never {what}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Waits for the checks of staged snapshots to be handed out.
fn checked(engine: &LogEngine) -> Vec<flotilla_storage::CheckedSnapshot> {
    waited_for("checked", || engine.take_checked_snapshots())
}

/// A snapshot a follower receives is staged in a file a chunk at a time, checked off the
/// caller's thread (on the next ask in the simulator's mode), and installing it moves that
/// file into place: the log reads it back as its snapshot, after a reopen too, and nothing is
/// staged any more.
#[test]
fn a_staged_snapshot_is_checked_and_its_file_becomes_the_snapshot() {
    for loading in [SnapshotLoading::NextAsk, SnapshotLoading::Background] {
        let config = LogConfig {
            snapshot_loading: loading,
            ..LogConfig::small_for_tests()
        };
        let (directory, engine) = log_of(config.clone(), 1..=3);
        let received = snapshot(1, 9, b"0123456789");
        for (offset, data) in [(0, &b"0123"[..]), (4, b"4567"), (8, b"89")] {
            engine.stage_snapshot_chunk(G1, &piece(&received, offset, data));
        }
        assert_eq!(files_named(directory.path(), "incoming-").len(), 1);
        engine.check_staged_snapshot(G1, received.meta.clone(), digits_only());
        let [checked] = checked(&engine).try_into().unwrap();
        assert_eq!((checked.group, &checked.meta), (G1, &received.meta));
        let (reference, prepared) = checked.outcome.expect("the digits pass");
        let prepared = prepared.expect("prepared").0.downcast::<usize>().unwrap();
        assert_eq!(*prepared, 10, "prepared from the staged bytes");
        let installed = Snapshot {
            meta: received.meta.clone(),
            data: reference,
        };
        let mut batch = WriteBatch::new();
        let persist = Persist {
            snapshot: Some(installed.clone()),
            ..Persist::default()
        };
        batch.persist(G1, &persist);
        engine.write(batch).unwrap();
        let bytes = engine.installed_snapshot_bytes(G1, &installed).unwrap();
        assert_eq!(&*bytes, &received.data[..], "{loading:?}");
        drop(bytes);
        assert_eq!(engine.group(G1).load_snapshot(), Ok(received.clone()));
        assert_eq!(
            files_named(directory.path(), "incoming-"),
            Vec::<String>::new()
        );
        drop(engine);
        let (engine, _) = LogEngine::open(directory.path(), config).unwrap();
        assert_eq!(
            engine.group(G1).load_snapshot(),
            Ok(received),
            "{loading:?}"
        );
    }
}

/// A staged snapshot whose chunks do not add up (one lost, out of order) or whose bytes fail
/// the check is refused with the reason; dropping it keeps a newer snapshot staged since, and
/// the log deletes what was staged when it next opens.
#[test]
fn a_staged_snapshot_that_fails_is_refused_and_leftovers_are_removed() {
    let directory = tempfile::tempdir().unwrap();
    let config = LogConfig {
        snapshot_loading: SnapshotLoading::NextAsk,
        ..LogConfig::small_for_tests()
    };
    let (engine, _) = LogEngine::open(directory.path(), config.clone()).unwrap();
    let first = snapshot(1, 9, b"0123456789");
    engine.stage_snapshot_chunk(G1, &piece(&first, 0, b"0123"));
    engine.stage_snapshot_chunk(G1, &piece(&first, 8, b"89"));
    engine.check_staged_snapshot(G1, first.meta.clone(), digits_only());
    let [refused] = checked(&engine).try_into().unwrap();
    let reason = refused.outcome.unwrap_err();
    assert!(reason.contains("incomplete"), "{reason}");

    let damaged = snapshot(1, 9, b"0123456780");
    engine.stage_snapshot_chunk(G1, &piece(&damaged, 0, &damaged.data));
    engine.check_staged_snapshot(G1, damaged.meta.clone(), digits_only());
    let [refused] = checked(&engine).try_into().unwrap();
    assert!(refused.outcome.unwrap_err().contains("not the digits"));

    // A newer snapshot is staged before the older one's refusal is acted on: it stays.
    let newer = snapshot(2, 12, b"0123456789");
    engine.stage_snapshot_chunk(G1, &piece(&newer, 0, &newer.data));
    assert!(!engine.is_current_staging(G1, refused.stage));
    engine.discard_staged_snapshot(G1, refused.stage);
    engine.check_staged_snapshot(G1, newer.meta.clone(), digits_only());
    let [passed] = checked(&engine).try_into().unwrap();
    assert!(engine.is_current_staging(G1, passed.stage));
    let (stale, _) = passed.outcome.unwrap();
    assert_eq!(files_named(directory.path(), "incoming-").len(), 1);

    // The same snapshot staged again from its start: the older check's reference no longer
    // stores (what the node ignores, as `is_current_staging` says).
    engine.stage_snapshot_chunk(G1, &piece(&newer, 0, &newer.data));
    assert!(!engine.is_current_staging(G1, passed.stage));
    let mut batch = WriteBatch::new();
    let persist = Persist {
        snapshot: Some(Snapshot {
            meta: newer.meta.clone(),
            data: stale,
        }),
        ..Persist::default()
    };
    batch.persist(G1, &persist);
    assert!(engine.write(batch).is_err(), "a staging that is gone");
    drop(engine);
    let (_engine, _) = LogEngine::open(directory.path(), config).unwrap();
    assert_eq!(
        files_named(directory.path(), "incoming-"),
        Vec::<String>::new(),
        "never installed: removed at the next open"
    );
}

/// Waits for the snapshots written off the caller's thread to be handed out.
fn written(engine: &LogEngine) -> Vec<flotilla_storage::WrittenSnapshot> {
    waited_for("written", || engine.take_written_snapshots())
}

/// A range in memory at entry `index` holding `keys` pairs.
fn range_in_memory(index: u64, keys: u8) -> flotilla_storage::KvStateMachine {
    let map: flotilla_storage::kv::KvMap =
        (0..keys).map(|key| (vec![key], vec![key; 40])).collect();
    let applied = flotilla_raft::LogId::new(Term(1), LogIndex(index));
    flotilla_storage::KvStateMachine::from_parts(G1, applied, map)
}

/// A node's own snapshot of a range in memory is written to a file off the caller's thread
/// (on the next ask in the simulator's mode) from a view of the range, synced, and handed back
/// as a reference; compacting the log with it moves that file into place, so the log reads
/// the encoded range back as its snapshot, after a reopen too.
#[test]
fn a_snapshot_written_off_the_loop_becomes_the_snapshot_file() {
    use flotilla_storage::StateMachine;
    for loading in [SnapshotLoading::NextAsk, SnapshotLoading::Background] {
        let config = LogConfig {
            snapshot_loading: loading,
            ..LogConfig::small_for_tests()
        };
        let (directory, engine) = log_of(config.clone(), 1..=10);
        let range = range_in_memory(7, 50);
        let encoded = flotilla_storage::snapshot::encode_snapshot(&range.snapshot_source());
        engine.write_snapshot(G1, range.snapshot_view().unwrap(), 64);
        if loading == SnapshotLoading::NextAsk {
            // Deterministically off the caller's thread: nothing is written until asked.
            let none = Vec::<String>::new();
            assert_eq!(files_named(directory.path(), "written-"), none);
        }
        let [done] = written(&engine).try_into().unwrap();
        assert_eq!((done.group, done.last.index), (G1, LogIndex(7)));
        let (reference, length) = done.outcome.expect("written");
        assert_eq!(length, encoded.len() as u64, "{loading:?}");
        assert_ne!(reference, encoded, "a reference, not the bytes");
        assert_eq!(files_named(directory.path(), "written-").len(), 1);
        stored_at_7(engine, directory.path(), config, reference, encoded);
    }
}

/// Compacts `engine`'s `G1` (entries 1 to 10) at entry 7 with the written snapshot
/// `reference`: the log holds `data` as its snapshot, no written file is left, and after a
/// reopen the log reads `data` back.
fn stored_at_7(
    engine: LogEngine,
    directory: &std::path::Path,
    config: LogConfig,
    reference: Vec<u8>,
    data: Vec<u8>,
) {
    let compacted = Snapshot {
        meta: snapshot(1, 7, b"").meta,
        data: reference,
    };
    engine.write(compaction(G1, &compacted)).unwrap();
    let stored = Snapshot {
        meta: compacted.meta.clone(),
        data,
    };
    assert_eq!(engine.group(G1).load_snapshot(), Ok(stored.clone()));
    assert_eq!(engine.group(G1).first_index(), LogIndex(8));
    assert_eq!(files_named(directory, "written-"), Vec::<String>::new());
    drop(engine);
    let (engine, _) = LogEngine::open(directory, config).unwrap();
    assert_eq!(engine.group(G1).load_snapshot(), Ok(stored));
}

/// A snapshot that encodes itself (the meta group's state, copied on the loop) is encoded and
/// written off the caller's thread too, and becomes the snapshot file the same way.
#[test]
fn an_encoded_snapshot_written_off_the_loop_becomes_the_snapshot_file() {
    for loading in [SnapshotLoading::NextAsk, SnapshotLoading::Background] {
        let config = LogConfig {
            snapshot_loading: loading,
            ..LogConfig::small_for_tests()
        };
        let (directory, engine) = log_of(config.clone(), 1..=10);
        let caller = std::thread::current().id();
        let (sender, encoded_on) = std::sync::mpsc::channel();
        let last = flotilla_raft::LogId::new(Term(1), LogIndex(7));
        engine.write_encoded_snapshot(
            G1,
            last,
            Box::new(move || {
                let _ = sender.send(std::thread::current().id());
                b"the state at 7".to_vec()
            }),
        );
        let [done] = written(&engine).try_into().unwrap();
        assert_eq!((done.group, done.last), (G1, last));
        let encoder = encoded_on.recv().unwrap();
        assert_eq!(
            encoder != caller,
            loading == SnapshotLoading::Background,
            "{loading:?}: encoded on the caller's thread only in the simulator's mode"
        );
        let (reference, length) = done.outcome.expect("written");
        assert_eq!(length, 14);
        let data = b"the state at 7".to_vec();
        stored_at_7(engine, directory.path(), config, reference, data);
    }
}

/// A state replaced on the loop is dropped on the log's snapshot thread, not the caller's.
#[test]
fn a_replaced_state_is_dropped_off_the_callers_thread() {
    struct Noted(std::sync::mpsc::Sender<std::thread::ThreadId>);
    impl Drop for Noted {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }
    let config = LogConfig {
        snapshot_loading: SnapshotLoading::Background,
        ..LogConfig::small_for_tests()
    };
    let (_directory, engine) = log_of(config, 1..=3);
    let (sender, dropped_on) = std::sync::mpsc::channel();
    engine.drop_off_loop(Box::new(Noted(sender)));
    let dropper = dropped_on
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("dropped");
    assert_ne!(dropper, std::thread::current().id());
}

/// A written snapshot never stored does not stay: a newer write of its group replaces it,
/// the node discards one the log is already past, a destroyed replica's goes with it, and the
/// log deletes what is left when it next opens. A reference that was replaced no longer
/// stores.
#[test]
fn written_snapshots_never_stored_are_removed() {
    use flotilla_storage::StateMachine;
    let config = LogConfig {
        snapshot_loading: SnapshotLoading::NextAsk,
        ..LogConfig::small_for_tests()
    };
    let (directory, engine) = log_of(config.clone(), 1..=10);
    engine.write_snapshot(G1, range_in_memory(5, 3).snapshot_view().unwrap(), 64);
    let [first] = engine.take_written_snapshots().try_into().unwrap();
    let (first, _) = first.outcome.unwrap();
    engine.write_snapshot(G1, range_in_memory(6, 3).snapshot_view().unwrap(), 64);
    let [second] = engine.take_written_snapshots().try_into().unwrap();
    let (second, _) = second.outcome.unwrap();
    let [file] = files_named(directory.path(), "written-")
        .try_into()
        .unwrap();
    assert!(
        file.contains(&format!("{:020}", 6)),
        "the newer one: {file}"
    );
    let stale = Snapshot {
        meta: snapshot(1, 5, b"").meta,
        data: first,
    };
    assert!(engine.write(compaction(G1, &stale)).is_err(), "replaced");

    engine.discard_written_snapshot(G1, &second);
    assert_eq!(
        files_named(directory.path(), "written-"),
        Vec::<String>::new()
    );

    // Written, then the replica is destroyed before it is stored.
    let (engine, _) = reopened(engine, directory.path(), &config);
    engine.write_snapshot(G1, range_in_memory(7, 3).snapshot_view().unwrap(), 64);
    assert_eq!(engine.take_written_snapshots().len(), 1);
    let mut batch = WriteBatch::new();
    batch.destroy(G1, HardState::default());
    engine.write(batch).unwrap();
    assert_eq!(
        files_named(directory.path(), "written-"),
        Vec::<String>::new()
    );

    // Written and left: gone at the next open.
    let mut batch = WriteBatch::new();
    batch.persist(G2, &append(1, 1..=10));
    engine.write(batch).unwrap();
    engine.write_snapshot(G2, range_in_memory(8, 3).snapshot_view().unwrap(), 64);
    assert_eq!(engine.take_written_snapshots().len(), 1);
    assert_eq!(files_named(directory.path(), "written-").len(), 1);
    let (engine, _) = reopened(engine, directory.path(), &config);
    assert_eq!(
        files_named(directory.path(), "written-"),
        Vec::<String>::new()
    );

    // Two writes asked for before either ran: the older one's writer finds itself replaced
    // and leaves no file.
    engine.write_snapshot(G2, range_in_memory(8, 3).snapshot_view().unwrap(), 64);
    engine.write_snapshot(G2, range_in_memory(9, 3).snapshot_view().unwrap(), 64);
    let [older, newer] = engine.take_written_snapshots().try_into().unwrap();
    assert!(older.outcome.is_err(), "replaced before it ran");
    assert!(newer.outcome.is_ok());
    let [file] = files_named(directory.path(), "written-")
        .try_into()
        .unwrap();
    assert!(
        file.contains(&format!("{:020}", 9)),
        "the newer one: {file}"
    );
}

fn reopened(
    engine: LogEngine,
    directory: &std::path::Path,
    config: &LogConfig,
) -> (LogEngine, flotilla_storage::RecoveryReport) {
    drop(engine);
    LogEngine::open(directory, config.clone()).unwrap()
}
