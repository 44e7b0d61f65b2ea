//! One suite for every `StateMachine`: the in-memory map and the disk engine, on fjall and on
//! the engine model, apply the same commands with the same answers (put, delete,
//! compare-and-swap, scans with their count and byte bounds, sessions that apply a write once),
//! count the same bytes, produce byte-identical snapshots through a chunked view, restore from
//! one, and clear. A seeded random history then checks all give the same answer to every entry
//! and the same snapshot at the end. Splits and merges
//! (`machine_conformance/split_merge.rs`) give the same answers, halves and snapshots.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{Entry, EntryPayload, GroupId, LogId, LogIndex, Term};
use flotilla_storage::kv::{RangeBounds, SCAN_PAIR_COUNT_MAX, SessionId, SessionTag};
use flotilla_storage::snapshot::{SnapshotWriter, encode_snapshot, encode_view, write_view};
use flotilla_storage::{
    Codec, Command, Engine, EngineConfig, EngineModel, KvStateMachine, MachineError, Proposal,
    Response, StateMachine,
};
use std::rc::Rc;

mod common;
use common::history::{GROUP, limits, random_entries, random_history};

#[path = "machine_conformance/split_merge.rs"]
mod split_merge;

/// Every implementation under test.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    Disk,
    /// The disk machine on the engine model the crash tests and simulators use.
    Model,
}

const KINDS: [Kind; 3] = [Kind::Memory, Kind::Disk, Kind::Model];

/// A machine under test, fed entries at consecutive indexes, with what keeps it alive.
struct Subject {
    machine: Box<dyn StateMachine>,
    next: u64,
    engine: Option<(Engine, Option<Rc<tempfile::TempDir>>)>,
}

impl Subject {
    fn new(kind: Kind) -> Self {
        Self::of_group(kind, GROUP)
    }

    fn of_group(kind: Kind, group: GroupId) -> Self {
        let (machine, engine): (Box<dyn StateMachine>, _) = match kind {
            Kind::Memory => (Box::new(KvStateMachine::new(group)), None),
            Kind::Disk => {
                let directory = tempfile::tempdir().unwrap();
                let config = EngineConfig::small_for_tests();
                let engine = Engine::open(directory.path(), config).unwrap();
                let machine = engine.open_range(group).unwrap();
                (Box::new(machine), Some((engine, Some(Rc::new(directory)))))
            }
            Kind::Model => {
                let model = EngineModel::new();
                let engine = Engine::open_model(&model, EngineConfig::small_for_tests()).unwrap();
                let machine = engine.open_range(group).unwrap();
                (Box::new(machine), Some((engine, None)))
            }
        };
        Self {
            machine,
            next: 1,
            engine,
        }
    }

    /// The right half of the split the last entry applied, as a subject of its own (on the
    /// same engine for the disk machine).
    fn carved(&mut self) -> Self {
        let machine = self
            .machine
            .take_carved()
            .expect("the split carved a right half");
        Self {
            next: machine.applied().index.0 + 1,
            machine,
            engine: self.engine.clone(),
        }
    }

    fn entry(&mut self, payload: EntryPayload) -> Option<Response> {
        let entry = Entry {
            term: Term(1),
            index: LogIndex(self.next),
            payload,
        };
        self.next += 1;
        self.machine.apply_entry(&entry).unwrap()
    }

    fn run(&mut self, command: Command) -> Response {
        self.entry(EntryPayload::Normal(command.encode().into()))
            .unwrap()
    }

    fn propose(&mut self, proposal: &Proposal) -> Response {
        self.entry(EntryPayload::Normal(proposal.to_payload().into()))
            .unwrap()
    }

    fn put(&mut self, key: &str, value: &str) -> Response {
        self.run(Command::Put {
            key: key.into(),
            value: value.into(),
        })
    }

    fn get(&mut self, key: &str) -> Response {
        self.run(Command::Get { key: key.into() })
    }

    fn cas(&mut self, key: &str, expected: Option<&str>, new: Option<&str>) -> Response {
        self.run(Command::CompareAndSwap {
            key: key.into(),
            expected: expected.map(Vec::from),
            new: new.map(Vec::from),
        })
    }

    fn scan(&mut self, start: &str, end: Option<&str>, limit: u32) -> Response {
        self.run(Command::Scan {
            start: start.into(),
            end: end.map(Vec::from),
            limit,
        })
    }

    fn snapshot(&self, chunk_bytes_max: usize) -> Vec<u8> {
        let mut view = self.machine.snapshot_view().unwrap();
        encode_view(view.as_mut(), chunk_bytes_max).unwrap()
    }
}

fn value(text: &str) -> Option<Vec<u8>> {
    Some(text.as_bytes().to_vec())
}

fn pairs(keys: &[&str]) -> Vec<(Vec<u8>, Vec<u8>)> {
    keys.iter()
        .map(|k| (k.as_bytes().to_vec(), format!("v{k}").into_bytes()))
        .collect()
}

fn filled(kind: Kind, keys: &[&str]) -> Subject {
    let mut subject = Subject::new(kind);
    for key in keys {
        subject.put(key, &format!("v{key}"));
    }
    subject
}

#[test]
fn put_get_delete_apply_and_track_the_applied_entry() {
    for kind in KINDS {
        let mut subject = Subject::new(kind);
        assert_eq!(subject.put("a", "1"), Response::Written { previous: None });
        let replaced = Response::Written {
            previous: value("1"),
        };
        assert_eq!(subject.put("a", "2"), replaced, "{kind:?}");
        assert_eq!(subject.get("a"), Response::Value(value("2")));
        let delete = Command::Delete { key: b"a".to_vec() };
        let deleted = Response::Written {
            previous: value("2"),
        };
        assert_eq!(subject.run(delete.clone()), deleted, "{kind:?}");
        let absent = Response::Written { previous: None };
        assert_eq!(subject.run(delete), absent, "{kind:?}");
        assert_eq!(subject.get("a"), Response::Value(None));
        let blank = subject.entry(EntryPayload::Blank);
        assert_eq!(blank, None, "{kind:?}: a blank entry answers nothing");
        assert_eq!(
            subject.machine.applied(),
            LogId::new(Term(1), LogIndex(7)),
            "{kind:?}"
        );
    }
}

#[test]
fn compare_and_swap_needs_the_expected_value_or_absence() {
    for kind in KINDS {
        let mut subject = Subject::new(kind);
        let swapped = |current| Response::CompareAndSwap {
            swapped: true,
            current,
        };
        let refused = |current| Response::CompareAndSwap {
            swapped: false,
            current,
        };
        assert_eq!(subject.cas("k", None, Some("1")), swapped(None));
        assert_eq!(subject.cas("k", None, Some("2")), refused(value("1")));
        assert_eq!(subject.cas("k", Some("0"), Some("2")), refused(value("1")));
        assert_eq!(subject.cas("k", Some("1"), Some("2")), swapped(value("1")));
        assert_eq!(subject.cas("k", Some("2"), None), swapped(value("2")));
        assert_eq!(subject.get("k"), Response::Value(None), "{kind:?}");
        assert_eq!(subject.cas("missing", Some("x"), Some("y")), refused(None));
    }
}

#[test]
fn scans_respect_bounds_and_limits() {
    for kind in KINDS {
        let mut subject = filled(kind, &["a", "b", "c", "d", "e"]);
        let scan = |pairs, more| Response::Scan { pairs, more };
        let expected = [
            scan(pairs(&["b", "c"]), false),
            scan(pairs(&["a", "b"]), true),
            scan(pairs(&["d", "e"]), false),
            scan(vec![], true),
            scan(vec![], false),
            scan(vec![], false),
            scan(vec![], false),
        ];
        let got = [
            subject.scan("b", Some("d"), 10),
            subject.scan("a", None, 2),
            subject.scan("d", None, 2),
            subject.scan("a", None, 0),
            subject.scan("c", Some("c"), 5),
            subject.scan("d", Some("b"), 5),
            subject.scan("f", None, 5),
        ];
        assert_eq!(got, expected, "{kind:?}");
    }
}

#[test]
fn a_scan_never_returns_more_than_the_cap() {
    for kind in KINDS {
        let mut subject = Subject::new(kind);
        for index in 0..SCAN_PAIR_COUNT_MAX + 5 {
            subject.put(&format!("{index:06}"), "v");
        }
        let Response::Scan { pairs, more } = subject.scan("", None, u32::MAX) else {
            panic!("a scan answers pairs")
        };
        assert_eq!(
            (pairs.len(), more),
            (SCAN_PAIR_COUNT_MAX as usize, true),
            "{kind:?}"
        );
    }
}

#[test]
fn a_read_stops_copying_at_its_byte_bound_and_applies_nothing() {
    for kind in KINDS {
        let mut subject = Subject::new(kind);
        let big = "x".repeat(1 << 16);
        for key in 0..10 {
            subject.put(&format!("{key}"), &big);
        }
        let applied = subject.machine.applied();
        let read = |bytes_max| {
            let scan = Command::Scan {
                start: Vec::new(),
                end: None,
                limit: 100,
            };
            match subject.machine.read_bounded(&scan, bytes_max).unwrap() {
                Some(Response::Scan { pairs, more }) => (pairs.len(), more),
                other => panic!("a scan reads pairs, not {other:?}"),
            }
        };
        assert_eq!(
            read(4 << 16),
            (3, true),
            "{kind:?}: 64 KiB + 1 byte per pair"
        );
        assert_eq!(read(1), (1, true), "{kind:?}: one pair, however large");
        assert_eq!(read(usize::MAX), (10, false), "{kind:?}");
        let delete = Command::Delete { key: b"1".to_vec() };
        assert_eq!(subject.machine.read_bounded(&delete, 1).unwrap(), None);
        assert_eq!(subject.machine.applied(), applied, "{kind:?}");
    }
}

#[test]
fn stored_bytes_follow_every_write() {
    for kind in KINDS {
        let mut subject = Subject::new(kind);
        subject.put("a", "12345");
        subject.put("bb", "1");
        assert_eq!(subject.machine.stored_bytes(), 6 + 3, "{kind:?}");
        subject.put("a", "1");
        assert_eq!(subject.machine.stored_bytes(), 2 + 3, "{kind:?}: once");
        subject.cas("bb", Some("1"), Some("123"));
        assert_eq!(subject.machine.stored_bytes(), 2 + 5, "{kind:?}");
        subject.cas("bb", Some("123"), None);
        subject.run(Command::Delete { key: "zz".into() });
        assert_eq!(subject.machine.stored_bytes(), 2, "{kind:?}: deletes");
    }
}

#[test]
fn undecodable_entries_are_answered_invalid_and_change_nothing() {
    for kind in KINDS {
        let mut subject = Subject::new(kind);
        let response = subject.entry(EntryPayload::Normal(vec![0xff; 4].into()));
        assert!(matches!(response, Some(Response::Invalid(_))), "{kind:?}");
        assert_eq!(subject.machine.stored_bytes(), 0);
        assert_eq!(subject.machine.applied().index, LogIndex(1), "{kind:?}");
    }
}

#[test]
fn applying_an_index_twice_is_a_bug_in_every_machine() {
    for kind in KINDS {
        let outcome = std::panic::catch_unwind(move || {
            let mut subject = Subject::new(kind);
            subject.put("a", "1");
            subject.next = 1;
            subject.put("a", "1");
        });
        let message = outcome.unwrap_err();
        let message = message.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("applied twice or out of order"),
            "{kind:?}"
        );
    }
}

/// The view of every machine encodes to the bytes the in-memory snapshot writer gives, at any
/// chunk size, while the machine goes on applying after the view was taken.
#[test]
fn snapshots_are_byte_identical_across_machines_and_chunk_sizes() {
    let mut reference = filled(Kind::Memory, &["apple", "banana", "cherry", "date"]);
    let session = open_session(&mut reference);
    reference.propose(&write(session, 1, "k", "v"));
    let expected = reference.snapshot(1 << 20);
    for kind in KINDS {
        let mut subject = filled(kind, &["apple", "banana", "cherry", "date"]);
        let session = open_session(&mut subject);
        subject.propose(&write(session, 1, "k", "v"));
        let mut views: Vec<_> = (0..3)
            .map(|_| subject.machine.snapshot_view().unwrap())
            .collect();
        subject.put("later", "not in the views");
        subject.propose(&write(session, 2, "k", "also not"));
        for (view, chunk_bytes_max) in views.iter_mut().zip([1, 7, 1 << 20]) {
            let bytes = encode_view(view.as_mut(), chunk_bytes_max).unwrap();
            assert!(bytes == expected, "{kind:?}, chunks of {chunk_bytes_max}");
        }
    }
}

fn open_session(subject: &mut Subject) -> SessionId {
    let open = Proposal::Open {
        time_ms: 1_000,
        limits: limits(),
    };
    match subject.propose(&open) {
        Response::SessionOpened { session, .. } => session,
        other => panic!("opening answered {other:?}"),
    }
}

fn write(session: SessionId, sequence: u64, key: &str, value: &str) -> Proposal {
    Proposal::Write {
        time_ms: 1_000 + sequence,
        tag: SessionTag {
            session,
            sequence,
            awaited_from: 1,
        },
        command: Command::Put {
            key: key.into(),
            value: value.into(),
        },
    }
}

/// Issue 17 on every machine: a late copy of an applied write gets the recorded answer and
/// changes nothing, a write of an unknown session is refused.
#[test]
fn sessions_apply_a_write_once_on_every_machine() {
    for kind in KINDS {
        let mut subject = Subject::new(kind);
        let (mine, other) = (open_session(&mut subject), open_session(&mut subject));
        let first = subject.propose(&write(mine, 1, "k", "mine"));
        assert_eq!(first, Response::Written { previous: None });
        let theirs = subject.propose(&write(other, 1, "k", "theirs"));
        assert_eq!(
            theirs,
            Response::Written {
                previous: value("mine")
            }
        );
        let copy = subject.propose(&write(mine, 1, "k", "mine"));
        assert_eq!(copy, first, "{kind:?}: the copy gets the recorded answer");
        assert_eq!(
            subject.get("k"),
            Response::Value(value("theirs")),
            "{kind:?}"
        );
        let unknown = SessionId {
            group: GROUP,
            index: LogIndex(99),
        };
        let refused = subject.propose(&write(unknown, 1, "k", "x"));
        let expired = Response::SessionExpired { session: unknown };
        assert_eq!(refused, expired, "{kind:?}");
    }
}

#[test]
fn a_snapshot_restores_into_every_machine_and_clear_empties_it() {
    let mut source = filled(Kind::Memory, &["a", "b", "c"]);
    let session = open_session(&mut source);
    source.propose(&write(session, 1, "k", "v"));
    let bytes = encode_snapshot(&snapshot_source(&source));
    for kind in KINDS {
        let mut subject = filled(kind, &["stale", "zzz"]);
        subject.machine.restore(&bytes).unwrap();
        assert_eq!(subject.machine.applied(), source.machine.applied());
        assert_eq!(
            subject.machine.stored_bytes(),
            source.machine.stored_bytes()
        );
        assert_eq!(subject.snapshot(3), bytes, "{kind:?}: restored exactly");
        // The restored sessions answer a copy as the source would.
        subject.next = source.next;
        let copy = subject.propose(&write(session, 1, "k", "v"));
        assert_eq!(copy, Response::Written { previous: None }, "{kind:?}");

        subject.machine.clear().unwrap();
        assert_eq!(subject.machine.applied(), LogId::default(), "{kind:?}");
        assert_eq!(subject.machine.stored_bytes(), 0);
        assert_eq!(
            subject
                .machine
                .read_bounded(&Command::Get { key: "a".into() }, 1)
                .unwrap(),
            Some(Response::Value(None)),
            "{kind:?}: cleared"
        );
    }
}

#[test]
fn a_snapshot_of_another_range_or_invalid_bytes_change_nothing() {
    let other = filled(Kind::Memory, &["x"]);
    let mut foreign = Subject::of_group(Kind::Memory, GroupId(3));
    foreign.put("x", "1");
    let foreign_bytes = foreign.snapshot(1 << 20);
    for kind in KINDS {
        let mut subject = filled(kind, &["a"]);
        let before = subject.snapshot(1 << 20);
        let wrong = subject.machine.restore(&foreign_bytes);
        assert!(
            matches!(wrong, Err(MachineError::WrongGroup { .. })),
            "{kind:?}: {wrong:?}"
        );
        let mut damaged = other.snapshot(1 << 20);
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let invalid = subject.machine.restore(&damaged);
        assert!(
            matches!(invalid, Err(MachineError::Snapshot(_))),
            "{kind:?}"
        );
        assert_eq!(subject.snapshot(1 << 20), before, "{kind:?}: unchanged");
        assert_eq!(subject.get("a"), Response::Value(value("va")));
    }
}

fn snapshot_source(subject: &Subject) -> flotilla_storage::kv::KvSnapshotSource {
    let bytes = subject.snapshot(1 << 20);
    flotilla_storage::decode_snapshot(&bytes)
        .unwrap()
        .snapshot_source()
}

/// A seeded random history of puts, deletes, swaps, scans and session writes (copies and
/// stale ones included) on few keys: every machine answers every entry as the in-memory one
/// does, and ends with the same snapshot.
#[test]
fn a_random_history_gets_the_same_answers_from_every_machine() {
    for seed in 0..4u64 {
        let history = random_history(seed, 400);
        let mut answers = Vec::new();
        let mut snapshots = Vec::new();
        for kind in KINDS {
            let mut subject = Subject::new(kind);
            let got: Vec<Option<Response>> = history
                .iter()
                .map(|payload| subject.entry(payload.clone()))
                .collect();
            answers.push(got);
            snapshots.push(subject.snapshot(64));
        }
        let count = |wanted: fn(&Response) -> bool| {
            answers[0]
                .iter()
                .flatten()
                .filter(|answer| wanted(answer))
                .count()
        };
        // The history reaches every session outcome, not only plain writes.
        assert!(count(|answer| matches!(answer, Response::SessionOpened { .. })) > 0);
        assert!(
            count(|answer| matches!(answer, Response::Retired { .. })) > 0,
            "seed {seed}"
        );
        assert!(count(|answer| matches!(answer, Response::SessionExpired { .. })) > 0);
        for (index, kind) in KINDS.iter().enumerate().skip(1) {
            assert!(
                answers[index] == answers[0],
                "seed {seed}: {kind:?} answers differ"
            );
            assert!(
                snapshots[index] == snapshots[0],
                "seed {seed}: {kind:?} state differs"
            );
        }
    }
}

/// A view streamed to a file in small chunks gives the file the in-memory writer gives, which
/// opens, verifies and restores into every machine.
#[test]
fn a_view_streams_to_a_snapshot_file_that_restores_everywhere() {
    let directory = tempfile::tempdir().unwrap();
    let mut reference = filled(Kind::Memory, &["a", "bb", "ccc"]);
    let session = open_session(&mut reference);
    reference.propose(&write(session, 1, "k", "v"));
    let expected = reference.snapshot(1 << 20);
    for kind in KINDS {
        let mut subject = filled(kind, &["a", "bb", "ccc"]);
        let session = open_session(&mut subject);
        subject.propose(&write(session, 1, "k", "v"));
        let path = directory.path().join(format!("{kind:?}.kvsnap"));
        let mut view = subject.machine.snapshot_view().unwrap();
        let file = write_view(&path, view.as_mut(), 2).unwrap();
        assert!(file.bytes() == expected.as_slice(), "{kind:?}");
        let mut restored = Subject::new(kind);
        restored.machine.restore(file.bytes()).unwrap();
        assert!(restored.snapshot(5) == expected, "{kind:?}");
    }
}

/// The same histories applied in batches of 1 to 40 entries (the disk machine commits each
/// batch at once, its entries reading what earlier ones in it wrote, scans included) answer and
/// end as the in-memory machine applying one entry at a time.
#[test]
fn a_random_history_applied_in_batches_gets_the_same_answers() {
    for seed in 0..4u64 {
        let entries = random_entries(seed, 400);
        let mut reference = Subject::new(Kind::Memory);
        let expected: Vec<Option<Response>> = entries
            .iter()
            .map(|entry| reference.entry(entry.payload.clone()))
            .collect();
        for kind in KINDS {
            let mut subject = Subject::new(kind);
            let mut answers = Vec::new();
            let mut rest = entries.as_slice();
            let mut batch_entries = 1;
            while !rest.is_empty() {
                let (batch, after) = rest.split_at(batch_entries.min(rest.len()));
                answers.extend(subject.machine.apply_entries(batch).unwrap());
                rest = after;
                batch_entries = batch_entries * 7 % 41 + 1;
            }
            assert!(answers == expected, "seed {seed}: {kind:?} answers differ");
            let state = subject.snapshot(64) == reference.snapshot(64);
            assert!(state, "seed {seed}: {kind:?} state differs");
        }
    }
}

/// A file written pair by pair through `SnapshotWriter` (what a backup does with the chunks of
/// a remote view) holds the bytes `encode_snapshot` gives for the same state, and restores it.
#[test]
fn a_snapshot_written_pair_by_pair_is_the_encoded_snapshot() {
    let subject = filled(Kind::Memory, &["a", "b", "c", "zz"]);
    let mut view = subject.machine.snapshot_view().unwrap();
    let expected = encode_view(view.as_mut(), 1 << 20).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("range.snap");
    let mut view = subject.machine.snapshot_view().unwrap();
    let mut writer = SnapshotWriter::create(
        &path,
        (view.group(), view.applied()),
        (view.pair_count(), view.stored_bytes()),
        (view.sessions(), view.bounds()),
    )
    .unwrap();
    let mut chunk = Vec::new();
    while view.next_chunk(1, &mut chunk).unwrap() {
        for (key, value) in chunk.drain(..) {
            writer.push(&key, &value).unwrap();
        }
    }
    let file = writer.finish().unwrap();
    assert_eq!(file.bytes(), &expected[..]);
    assert_eq!(
        file.restore().unwrap().read(&Command::Get {
            key: b"zz".to_vec()
        }),
        Some(Response::Value(value("vzz")))
    );
    assert!(!path.with_extension("tmp").exists());
}

/// The writer refuses what would make a file that does not decode: keys out of order, and
/// other pairs than the header counts; the file never appears under its name.
#[test]
fn a_snapshot_writer_refuses_pairs_that_break_the_format() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("range.snap");
    let at = (GROUP, LogId::new(Term(2), LogIndex(9)));
    let sessions = flotilla_storage::kv::SessionTable::default();
    let mut writer =
        SnapshotWriter::create(&path, at, (2, 4), (&sessions, &RangeBounds::default())).unwrap();
    writer.push(b"b", b"1").unwrap();
    let refused = writer.push(b"a", b"2").unwrap_err().to_string();
    assert!(refused.contains("strictly ascending"), "{refused}");

    let mut writer =
        SnapshotWriter::create(&path, at, (2, 4), (&sessions, &RangeBounds::default())).unwrap();
    writer.push(b"a", b"1").unwrap();
    let refused = writer.finish().unwrap_err().to_string();
    assert!(
        refused.contains("1 pairs of 10 bytes were written where the header says 2 pairs of 20"),
        "{refused}"
    );
    assert!(!path.exists());
}
