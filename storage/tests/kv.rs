//! The in-memory KV state machine and its snapshot files: byte counts that survive a restore,
//! determinism, snapshot write -> read -> restore (also through the log engine, replaying the
//! log tail after the snapshot), chunked reads, and corruption detection. The meaning of every
//! command is checked on every state machine by `machine_conformance.rs`.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{
    Entry, EntryPayload, GroupId, LogId, LogIndex, LogReader, Persist, Snapshot, SnapshotMeta, Term,
};
use flotilla_storage::kv::KvMap;
use flotilla_storage::{
    Codec, Command, KvStateMachine, LogConfig, LogEngine, Response, SnapshotError, SnapshotFile,
    WriteBatch, decode_snapshot, verify_snapshot, write_snapshot,
};
use proptest::prelude::*;
use std::os::unix::fs::FileExt;

const GROUP: GroupId = GroupId(9);

/// A state machine fed through `apply` with consecutive indexes.
struct Machine {
    kv: KvStateMachine,
    next: u64,
}

impl Machine {
    fn new() -> Self {
        Self {
            kv: KvStateMachine::new(GROUP),
            next: 1,
        }
    }
    fn run(&mut self, command: Command) -> Response {
        let response = self.kv.apply(LogIndex(self.next), &command.encode());
        self.next += 1;
        response
    }
    fn put(&mut self, key: &str, value: &str) -> Response {
        self.run(Command::Put {
            key: key.into(),
            value: value.into(),
        })
    }
    fn cas(&mut self, key: &str, expected: Option<&str>, new: Option<&str>) -> Response {
        let expected = expected.map(Vec::from);
        let new = new.map(Vec::from);
        self.run(Command::CompareAndSwap {
            key: key.into(),
            expected,
            new,
        })
    }
    fn scan(&mut self, start: &str, end: Option<&str>, limit: u32) -> Response {
        self.run(Command::Scan {
            start: start.into(),
            end: end.map(Vec::from),
            limit,
        })
    }
}

fn filled(keys: &[&str]) -> Machine {
    let mut machine = Machine::new();
    for key in keys {
        machine.put(key, &format!("v{key}"));
    }
    machine
}

#[test]
fn stored_bytes_follow_every_write() {
    let mut machine = Machine::new();
    machine.put("a", "12345");
    machine.put("bb", "1");
    assert_eq!(machine.kv.stored_bytes(), 6 + 3);
    machine.put("a", "1");
    assert_eq!(machine.kv.stored_bytes(), 2 + 3, "an overwrite counts once");
    machine.cas("bb", Some("1"), Some("123"));
    assert_eq!(machine.kv.stored_bytes(), 2 + 5);
    machine.cas("bb", Some("123"), None);
    machine.run(Command::Delete { key: "zz".into() });
    assert_eq!(machine.kv.stored_bytes(), 2, "deletes give bytes back");
    let restored =
        KvStateMachine::from_parts(GROUP, machine.kv.applied(), machine.kv.map().clone());
    assert_eq!(restored, machine.kv);
}

#[test]
fn blank_and_membership_entries_only_move_the_applied_entry() {
    let mut kv = KvStateMachine::new(GROUP);
    let blank = Entry {
        term: Term(2),
        index: LogIndex(1),
        payload: EntryPayload::Blank,
    };
    assert_eq!(kv.apply_entry(&blank), None);
    assert_eq!(kv.applied(), LogId::new(Term(2), LogIndex(1)));
}

#[test]
fn a_snapshot_file_roundtrips_and_streams_in_chunks() {
    let directory = tempfile::tempdir().unwrap();
    let mut machine = filled(&["apple", "banana", "cherry"]);
    let source = machine.kv.snapshot_source();
    let path = directory.path().join("g9.kvsnap");
    let writer = std::thread::spawn(move || write_snapshot(&path, &source).unwrap());
    machine.put("date", "later"); // applying goes on while the snapshot is written
    let file = writer.join().unwrap();
    let restored = file.restore().unwrap();
    assert_eq!(
        restored.map(),
        filled(&["apple", "banana", "cherry"]).kv.map()
    );
    assert_eq!(restored.applied().index, LogIndex(3));
    assert_eq!(restored.group(), GROUP);

    let mut streamed = Vec::new();
    while (streamed.len() as u64) < file.file_bytes() {
        streamed.extend_from_slice(file.read_chunk(streamed.len() as u64, 7).unwrap());
    }
    assert_eq!(streamed, file.bytes());
    assert!(matches!(
        file.read_chunk(file.file_bytes() + 1, 1),
        Err(SnapshotError::ChunkOutOfRange { .. })
    ));
    assert_eq!(decode_snapshot(&streamed).unwrap(), restored);
}

#[test]
fn a_corrupted_snapshot_file_fails_its_checksum() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("g9.kvsnap");
    let file = write_snapshot(&path, &filled(&["a", "b"]).kv.snapshot_source()).unwrap();
    let last = file.file_bytes() - 1;
    drop(file);
    let raw = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    raw.write_all_at(b"X", last).unwrap();
    drop(raw);
    assert!(matches!(
        SnapshotFile::open(&path),
        Err(SnapshotError::ChecksumMismatch { .. })
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(last)
        .unwrap();
    assert!(matches!(
        SnapshotFile::open(&path),
        Err(SnapshotError::Truncated { .. })
    ));
}

/// Restart: load the snapshot the log holds, then replay the log tail after it.
fn restart(engine: &LogEngine) -> KvStateMachine {
    let log = engine.group(GROUP);
    let snapshot = log.snapshot().unwrap();
    let mut kv = decode_snapshot(&snapshot.data).unwrap();
    let tail = log
        .entries(log.first_index(), log.last_index().next(), u64::MAX)
        .unwrap();
    for entry in &tail {
        kv.apply_entry(entry);
    }
    kv
}

#[test]
fn a_restart_loads_the_snapshot_then_replays_the_log_tail() {
    let directory = tempfile::tempdir().unwrap();
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    let mut kv = KvStateMachine::new(GROUP);
    let mut entries = Vec::new();
    for index in 1..=30u64 {
        let command = Command::Put {
            key: format!("k{}", index % 7).into(),
            value: index.to_le_bytes().to_vec(),
        };
        entries.push(Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Normal(command.encode().into()),
        });
    }
    let mut batch = WriteBatch::new();
    batch.append(GROUP, entries.clone());
    engine.write(batch).unwrap();
    for entry in &entries[..20] {
        kv.apply_entry(entry);
    }
    let file = write_snapshot(
        &directory.path().join("kv-20.kvsnap"),
        &kv.snapshot_source(),
    )
    .unwrap();
    let meta = SnapshotMeta {
        last: kv.applied(),
        membership: Default::default(),
    };
    let compaction = Snapshot {
        meta,
        data: file.bytes().to_vec(),
    };
    let mut batch = WriteBatch::new();
    batch.persist(
        GROUP,
        &Persist {
            compaction: Some(compaction),
            ..Persist::default()
        },
    );
    engine.write(batch).unwrap();
    for entry in &entries[20..] {
        kv.apply_entry(entry);
    }
    drop(engine);
    let (engine, _) = LogEngine::open(directory.path(), LogConfig::small_for_tests()).unwrap();
    assert_eq!(engine.group(GROUP).first_index(), LogIndex(21));
    assert_eq!(restart(&engine), kv);
}

#[test]
fn replicas_applying_the_same_entries_agree() {
    let mut first = filled(&["x", "y"]);
    let mut second = filled(&["x", "y"]);
    for machine in [&mut first, &mut second] {
        machine.cas("x", Some("vx"), None);
        machine.scan("", None, 1);
    }
    assert_eq!(first.kv, second.kv);
}

proptest! {
    #[test]
    fn any_map_roundtrips_through_a_snapshot(
        map in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..32),
            0..64,
        ),
        index in 0..1000u64,
    ) {
        let kv = KvStateMachine::from_parts(GROUP, LogId::new(Term(1), LogIndex(index)), map.into_iter().collect::<KvMap>());
        let bytes = flotilla_storage::snapshot::encode_snapshot(&kv.snapshot_source());
        prop_assert_eq!(decode_snapshot(&bytes).unwrap(), kv);
    }

    /// What a follower checks before installing a snapshot: a whole one passes and names its
    /// entry; the same bytes with any one byte changed are refused, as decoding refuses them.
    #[test]
    fn verify_passes_a_snapshot_and_refuses_it_with_any_byte_changed(
        map in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..32),
            0..32,
        ),
        at in any::<proptest::sample::Index>(),
        xor in 1..=255u8,
    ) {
        let applied = LogId::new(Term(3), LogIndex(77));
        let kv = KvStateMachine::from_parts(GROUP, applied, map.into_iter().collect::<KvMap>());
        let bytes = flotilla_storage::snapshot::encode_snapshot(&kv.snapshot_source());
        let header = verify_snapshot(&bytes).unwrap();
        prop_assert_eq!((header.group, header.applied), (GROUP, applied));
        let mut damaged = bytes.clone();
        let offset = at.index(damaged.len());
        damaged[offset] ^= xor;
        prop_assert!(verify_snapshot(&damaged).is_err(), "byte {} changed", offset);
        prop_assert!(decode_snapshot(&damaged).is_err());
    }

    #[test]
    fn arbitrary_snapshot_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_snapshot(&bytes);
    }
}

#[test]
fn reads_answer_from_the_applied_state_without_an_entry() {
    let mut machine = Machine::new();
    machine.run(Command::Put {
        key: b"a".to_vec(),
        value: b"1".to_vec(),
    });
    let applied = machine.kv.applied();
    let get = Command::Get { key: b"a".to_vec() };
    assert_eq!(
        machine.kv.read(&get),
        Some(Response::Value(Some(b"1".to_vec())))
    );
    let scan = Command::Scan {
        start: Vec::new(),
        end: None,
        limit: 10,
    };
    assert_eq!(
        machine.kv.read(&scan),
        Some(Response::Scan {
            pairs: vec![(b"a".to_vec(), b"1".to_vec())],
            more: false
        })
    );
    let delete = Command::Delete { key: b"a".to_vec() };
    assert_eq!(machine.kv.read(&delete), None, "a write is never a read");
    assert_eq!(machine.kv.applied(), applied, "reading applies nothing");
}
