//! A range splits at one entry of its own log (issue 20): the state machine keeps the keys below
//! the split key, hands the rest with a copy of its session table to a new group's machine,
//! and both halves take explicit bounds and the next version. A command on a key outside a
//! machine's bounds is refused and changes nothing, not even its session, so a write sent
//! again to the half that holds its key applies exactly once. Bounds survive snapshots.
//!
//! Two neighbours merge in three entries: the left one prepares (it stops splitting), the
//! right one freezes (it stops serving, for good), and the left one takes the frozen state,
//! carried in its own entry, with the sessions of both sides.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{Entry, EntryPayload, GroupId, LogIndex, NodeId, Term};
use flotilla_storage::kv::{KvMap, RangeBounds, SessionId, SessionLimits, SessionTag};
use flotilla_storage::machine::encode_machine;
use flotilla_storage::snapshot::encode_snapshot;
use flotilla_storage::{
    Command, Engine, EngineConfig, KvStateMachine, MergeState, MergeStep, Proposal, Response,
    StateMachine, decode_snapshot, verify_snapshot,
};
use proptest::prelude::*;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const LEFT: GroupId = GroupId(3);
const RIGHT: GroupId = GroupId(40);

/// A replica of one range fed entries at consecutive indexes, and, in the property test, the
/// same range on the disk machine fed the same entries, which must answer alike.
struct Replica {
    kv: KvStateMachine,
    disk: Option<Box<dyn StateMachine>>,
    next: u64,
}

impl Replica {
    fn new(kv: KvStateMachine) -> Self {
        let next = kv.applied().index.0 + 1;
        Self {
            kv,
            disk: None,
            next,
        }
    }

    fn apply(&mut self, proposal: &Proposal) -> Response {
        self.apply_data(&proposal.to_payload())
    }

    /// Applies the payload `data` at the next index, to the disk twin as well.
    fn apply_data(&mut self, data: &[u8]) -> Response {
        let index = LogIndex(self.next);
        let response = self.kv.apply(index, data);
        if let Some(disk) = &mut self.disk {
            // Term 0: `KvStateMachine::apply` keeps the term it had, 0 from the start.
            let entry = Entry {
                term: Term(0),
                index,
                payload: EntryPayload::Normal(data.to_vec().into()),
            };
            let answer = disk.apply_entry(&entry).unwrap();
            assert_eq!(
                answer.as_ref(),
                Some(&response),
                "the disk machine answers otherwise"
            );
        }
        self.next += 1;
        response
    }

    /// The right half of the split just applied, on the disk twin as well.
    fn carved(&mut self) -> Replica {
        let mut carved = Replica::new(self.kv.take_carved().unwrap());
        carved.disk = self.disk.as_mut().map(|disk| disk.take_carved().unwrap());
        carved
    }

    fn open(&mut self) -> SessionId {
        let open = Proposal::Open {
            time_ms: 1_000,
            limits: SessionLimits {
                expiry_ms: 60_000,
                sessions_max: 10,
                results_max: 10,
            },
        };
        match self.apply(&open) {
            Response::SessionOpened { session, .. } => session,
            other => panic!("opening answered {other:?}"),
        }
    }

    fn write(&mut self, session: SessionId, sequence: u64, command: Command) -> Response {
        self.apply(&Proposal::Write {
            time_ms: 2_000,
            tag: SessionTag {
                session,
                sequence,
                awaited_from: 1,
            },
            command,
        })
    }

    /// Prepares, freezes `right` and merges it, as the node would; the answers of the three.
    fn merge(&mut self, right: &mut Replica) -> [Response; 3] {
        let prepared = self.apply(&Proposal::PrepareMerge {
            expected: self.kv.bounds().clone(),
            right: right.kv.group(),
        });
        let frozen = right.freeze(self.kv.group(), self.kv.bounds().version, u64::MAX);
        let merged = self.absorb(right);
        [prepared, frozen, merged]
    }

    /// Freezes into `into` for its merge attempt `attempt` (its version while it awaits).
    fn freeze(&mut self, into: GroupId, attempt: u64, bytes_max: u64) -> Response {
        self.apply(&Proposal::Freeze {
            expected: self.kv.bounds().clone(),
            into,
            bytes_max,
            attempt,
        })
    }

    /// Proposes the merge of `right`'s state as it is now.
    fn absorb(&mut self, right: &Replica) -> Response {
        self.apply(&Proposal::Merge {
            right: right.kv.group(),
            state: encode_snapshot(&right.kv.snapshot_source()),
        })
    }

    fn split(&mut self, expected: RangeBounds, at: &[u8], right: GroupId) -> Response {
        self.apply(&Proposal::Split {
            expected,
            at: at.to_vec(),
            right,
            voters: vec![NodeId(1)],
        })
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str) -> Command {
    Command::Get { key: key.into() }
}

fn whole() -> RangeBounds {
    RangeBounds::default()
}

/// A range of keys `a` to `z` (one byte each), split at `m`.
fn split_alphabet() -> (Replica, Replica) {
    let map: KvMap = (b'a'..=b'z')
        .map(|key| (vec![key], vec![key; 10]))
        .collect();
    let mut left = Replica::new(KvStateMachine::from_parts(LEFT, Default::default(), map));
    let answer = left.split(whole(), b"m", RIGHT);
    assert_eq!(
        answer,
        Response::Split {
            right: RIGHT,
            version: 1
        }
    );
    let right = left
        .kv
        .take_carved()
        .expect("the split carved a right half");
    assert!(
        left.kv.take_carved().is_none(),
        "the right half is taken once"
    );
    (left, Replica::new(right))
}

#[test]
fn a_split_carves_the_keys_from_the_split_key_into_the_new_group() {
    let (left, right) = split_alphabet();
    assert_eq!(right.kv.group(), RIGHT);
    let keys = |replica: &Replica| -> Vec<u8> { replica.kv.map().keys().map(|k| k[0]).collect() };
    assert_eq!(keys(&left), (b'a'..b'm').collect::<Vec<_>>());
    assert_eq!(keys(&right), (b'm'..=b'z').collect::<Vec<_>>());
    assert_eq!(left.kv.stored_bytes(), 12 * 11);
    assert_eq!(right.kv.stored_bytes(), 14 * 11);
    assert_eq!(
        *left.kv.bounds(),
        RangeBounds {
            start: Vec::new(),
            end: Some(b"m".to_vec()),
            version: 1
        }
    );
    assert_eq!(
        *right.kv.bounds(),
        RangeBounds {
            start: b"m".to_vec(),
            end: None,
            version: 1
        }
    );
    assert_eq!(
        right.kv.applied().index,
        LogIndex(0),
        "the new group starts its own log"
    );
}

#[test]
fn commands_outside_the_bounds_are_refused_and_change_nothing() {
    let (mut left, mut right) = split_alphabet();
    let before = left.kv.map().clone();
    let refused = left.apply(&Proposal::Write {
        time_ms: 2_000,
        tag: SessionTag {
            session: SessionId {
                group: LEFT,
                index: LogIndex(99),
            },
            sequence: 1,
            awaited_from: 1,
        },
        command: put("q", "x"),
    });
    assert_eq!(
        refused,
        Response::OutsideRange {
            bounds: Box::new(left.kv.bounds().clone())
        }
    );
    assert_eq!(*left.kv.map(), before);
    // Reads too: a key, and a scan running past the range's end (a client with the map
    // from before the split would miss the right half's keys).
    for command in [
        get("q"),
        Command::Scan {
            start: b"a".to_vec(),
            end: None,
            limit: 100,
        },
        Command::Scan {
            start: b"a".to_vec(),
            end: Some(b"n".to_vec()),
            limit: 100,
        },
    ] {
        assert!(
            matches!(left.kv.read(&command), Some(Response::OutsideRange { .. })),
            "{command:?}"
        );
    }
    let inside = Command::Scan {
        start: b"a".to_vec(),
        end: Some(b"m".to_vec()),
        limit: 100,
    };
    assert!(
        matches!(left.kv.read(&inside), Some(Response::Scan { pairs, more: false }) if pairs.len() == 12)
    );
    assert!(matches!(
        right.kv.read(&get("a")),
        Some(Response::OutsideRange { .. })
    ));
    assert_eq!(
        right.kv.read(&get("q")),
        Some(Response::Value(Some(vec![b'q'; 10])))
    );
    // A bare command (no session) is held to the bounds as well.
    let bare = right
        .kv
        .apply(LogIndex(right.next), &postcard_command(&put("b", "x")));
    assert!(matches!(bare, Response::OutsideRange { .. }));
}

fn postcard_command(command: &Command) -> Vec<u8> {
    use flotilla_storage::Codec;
    command.encode()
}

/// Exactly once across a split: a write applied before the split, whose answer the client
/// never got, is sent again to the half that now holds its key and answered from the copied
/// session record; one refused for being outside the range is not recorded, so sent again
/// to the right half it applies there, once.
#[test]
fn a_write_sent_again_after_a_split_applies_once() {
    let map = KvMap::new();
    let mut parent = Replica::new(KvStateMachine::from_parts(LEFT, Default::default(), map));
    let session = parent.open();
    assert!(matches!(
        parent.write(session, 1, put("x", "1")),
        Response::Written { previous: None }
    ));
    parent.split(whole(), b"m", RIGHT);
    let mut right = Replica::new(parent.kv.take_carved().unwrap());
    // Sequence 1 again, now at the right half: the recorded answer, not a second write.
    assert_eq!(
        right.write(session, 1, put("x", "1")),
        Response::Written { previous: None }
    );
    // Sequence 2 went to the parent after the split: refused there, unrecorded...
    assert!(matches!(
        parent.write(session, 2, put("y", "2")),
        Response::OutsideRange { .. }
    ));
    // ...and applied once at the right half, however often it is sent.
    for _ in 0..2 {
        assert_eq!(
            right.write(session, 2, put("y", "2")),
            Response::Written { previous: None }
        );
    }
    assert_eq!(right.kv.map().len(), 2);
    assert!(parent.kv.map().is_empty());
}

#[test]
fn stale_or_malformed_splits_are_refused_and_change_nothing() {
    let (mut left, _) = split_alphabet();
    let state = left.kv.map().clone();
    let bounds = left.kv.bounds().clone();
    let cases = [
        (
            whole(),
            b"c".as_slice(),
            GroupId(50),
            "version 0 after version 1",
        ),
        (
            bounds.clone(),
            b"m",
            GroupId(50),
            "the split key past the range",
        ),
        (
            bounds.clone(),
            b"",
            GroupId(50),
            "the split key at the range's start",
        ),
        (bounds.clone(), b"c", LEFT, "the range's own group"),
        (
            RangeBounds {
                start: b"b".to_vec(),
                ..bounds.clone()
            },
            b"c",
            GroupId(50),
            "other bounds at the same version",
        ),
    ];
    for (expected, at, right, case) in cases {
        let answer = left.split(expected, at, right);
        assert!(matches!(answer, Response::Invalid(_)), "{case}: {answer:?}");
        assert!(left.kv.take_carved().is_none(), "{case}");
        assert_eq!(*left.kv.map(), state, "{case}");
        assert_eq!(*left.kv.bounds(), bounds, "{case}");
    }
    // The proposer's view, when current, splits the range again.
    assert!(matches!(
        left.split(bounds, b"c", GroupId(50)),
        Response::Split { version: 2, .. }
    ));
}

#[test]
fn bounds_survive_a_snapshot_and_the_disk_engine_keeps_them() {
    let (left, right) = split_alphabet();
    for replica in [&left, &right] {
        let bytes = encode_snapshot(&replica.kv.snapshot_source());
        verify_snapshot(&bytes).unwrap();
        let restored = decode_snapshot(&bytes).unwrap();
        assert_eq!(restored.bounds(), replica.kv.bounds());
        assert_eq!(restored.map(), replica.kv.map());
        assert_eq!(restored.sessions(), replica.kv.sessions());
    }
    // The disk engine keeps them too.
    let directory = tempfile::tempdir().unwrap();
    let engine = Engine::open(directory.path(), EngineConfig::small_for_tests()).unwrap();
    let mut disk = engine.open_range(RIGHT).unwrap();
    let bytes = encode_snapshot(&right.kv.snapshot_source());
    disk.restore(&bytes).unwrap();
    assert_eq!(disk.bounds(), right.kv.bounds());
    assert_eq!(encode_machine(&disk, 16).unwrap(), bytes);
}

/// One step of a random history over a set of ranges.
#[derive(Clone, Debug)]
enum Step {
    /// Put a key (routed to whichever range holds it).
    Put(u8, u8),
    /// Delete a key.
    Delete(u8),
    /// Split the range holding this key at it.
    Split(u8),
    /// Send a put to the wrong range: it must be refused.
    Misroute(u8, u8),
    /// Merge the range holding this key with its right neighbour.
    Merge(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => any::<u8>().prop_map(Step::Delete),
        1 => any::<u8>().prop_map(Step::Split),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Step::Misroute(k, v)),
        1 => any::<u8>().prop_map(Step::Merge),
    ]
}

/// One engine for every case of the property test (opening one costs about 150 ms), and the
/// first of 1024 group ids the case has to itself.
fn shared_engine() -> (Engine, u64) {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    static NEXT_BASE: AtomicU64 = AtomicU64::new(0);
    let engine = ENGINE.get_or_init(|| {
        let directory = Path::new(env!("CARGO_TARGET_TMPDIR")).join("split-property-engine");
        // What an earlier run left.
        let _ = std::fs::remove_dir_all(&directory);
        Engine::open(&directory, EngineConfig::small_for_tests()).unwrap()
    });
    (
        engine.clone(),
        NEXT_BASE.fetch_add(1 << 10, Ordering::Relaxed),
    )
}

proptest! {
    /// Random writes, splits and merges: the ranges' bounds always tile the key space, every range
    /// holds only keys inside its bounds, and together they hold exactly what a single map
    /// given the same writes holds. The disk machine, given the same entries, answers every
    /// one alike and ends in the same state, range by range.
    #[test]
    fn splits_and_merges_keep_every_write_exactly_once(steps in proptest::collection::vec(step(), 1..200)) {
        let mut model = KvMap::new();
        // Every range also on the disk machine, checked against the memory one, in groups of
        // this case's own.
        let (engine, base) = shared_engine();
        let mut first = Replica::new(KvStateMachine::new(GroupId(base + 1)));
        first.disk = Some(Box::new(engine.open_range(GroupId(base + 1)).unwrap()));
        let mut ranges = vec![first];
        let mut next_group = base + 2;
        let mut sequence = 0;
        // One session, opened before any split: every right half carries a copy of it.
        let session = ranges[0].open();
        let holder = |ranges: &[Replica], key: &[u8]| {
            ranges.iter().position(|r| r.kv.bounds().contains(key)).expect("the ranges tile the key space")
        };
        for step in steps {
            match step {
                Step::Put(key, value) => {
                    let at = holder(&ranges, &[key]);
                    sequence += 1;
                    let answer = ranges[at].apply(&Proposal::Write {
                        time_ms: 0,
                        tag: SessionTag { session, sequence, awaited_from: sequence },
                        command: Command::Put { key: vec![key], value: vec![value] },
                    });
                    prop_assert!(matches!(answer, Response::Written { .. }), "{:?}", answer);
                    model.insert(vec![key], vec![value]);
                }
                Step::Delete(key) => {
                    let at = holder(&ranges, &[key]);
                    ranges[at].apply_data(&postcard_command(&Command::Delete { key: vec![key] }));
                    model.remove(&[key][..]);
                }
                Step::Split(key) => {
                    let at = holder(&ranges, &[key]);
                    let expected = ranges[at].kv.bounds().clone();
                    let answer = ranges[at].split(expected.clone(), &[key], GroupId(next_group));
                    if expected.start == [key] {
                        prop_assert!(matches!(answer, Response::Invalid(_)), "{:?}", answer);
                        continue;
                    }
                    prop_assert!(matches!(answer, Response::Split { .. }), "{:?}", answer);
                    let carved = ranges[at].carved();
                    ranges.push(carved);
                    next_group += 1;
                }
                Step::Merge(key) => {
                    let at = holder(&ranges, &[key]);
                    let Some(end) = ranges[at].kv.bounds().end.clone() else {
                        continue;
                    };
                    let mut right = ranges.remove(holder(&ranges, &end));
                    let at = holder(&ranges, &[key]);
                    let answers = ranges[at].merge(&mut right);
                    prop_assert!(
                        matches!(answers[2], Response::Merge { step: MergeStep::Merged, .. }),
                        "{:?}", answers
                    );
                    // The frozen range stays refused for a write sent there by mistake.
                    let answer = right.apply_data(
                        &postcard_command(&Command::Put { key: end.clone(), value: vec![0] }),
                    );
                    prop_assert_eq!(answer, Response::Merging { into: ranges[at].kv.group() });
                }
                Step::Misroute(key, value) => {
                    let at = holder(&ranges, &[key]);
                    if let Some(wrong) = (0..ranges.len()).find(|&i| i != at) {
                        let answer = ranges[wrong].apply_data(&postcard_command(&Command::Put { key: vec![key], value: vec![value] }));
                        prop_assert!(matches!(answer, Response::OutsideRange { .. }), "{:?}", answer);
                    }
                }
            }
        }
        // The bounds tile the key space: sorted by start, each ends where the next starts.
        let mut bounds: Vec<RangeBounds> = ranges.iter().map(|r| r.kv.bounds().clone()).collect();
        bounds.sort_by(|a, b| a.start.cmp(&b.start));
        prop_assert!(bounds[0].start.is_empty());
        for pair in bounds.windows(2) {
            prop_assert_eq!(pair[0].end.as_ref(), Some(&pair[1].start));
        }
        prop_assert!(bounds.last().unwrap().end.is_none());
        let mut union = KvMap::new();
        for range in &ranges {
            for (key, value) in range.kv.map().iter() {
                prop_assert!(range.kv.bounds().contains(key));
                prop_assert!(union.insert(key.clone(), value.clone()).is_none());
            }
            let bytes: u64 = range.kv.map().iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
            prop_assert_eq!(range.kv.stored_bytes(), bytes);
            let disk = encode_machine(range.disk.as_deref().unwrap(), 64).unwrap();
            prop_assert!(disk == encode_snapshot(&range.kv.snapshot_source()), "the disk machine's state differs");
        }
        for range in &mut ranges {
            range.disk.as_mut().unwrap().clear().unwrap();
        }
        prop_assert_eq!(union, model);
    }
}

#[test]
fn a_merge_takes_the_frozen_neighbours_keys_and_sessions() {
    let map: KvMap = (b'a'..=b'z')
        .map(|key| (vec![key], vec![key; 10]))
        .collect();
    let mut left = Replica::new(KvStateMachine::from_parts(LEFT, Default::default(), map));
    let session = left.open();
    assert!(matches!(
        left.write(session, 1, put("b", "1")),
        Response::Written { .. }
    ));
    left.split(whole(), b"m", RIGHT);
    let mut right = Replica::new(left.kv.take_carved().unwrap());
    // Sequence 2 applies at the right half; its answer is lost, and the client will send it
    // again to the merged range.
    let answer = right.write(session, 2, put("x", "2"));
    assert!(matches!(answer, Response::Written { .. }));
    assert!(matches!(
        left.write(session, 3, put("c", "3")),
        Response::Written { .. }
    ));
    let [prepared, frozen, merged] = left.merge(&mut right);
    assert_eq!(
        prepared,
        Response::Merge {
            right: RIGHT,
            step: MergeStep::Prepared,
            version: 2
        }
    );
    assert_eq!(
        frozen,
        Response::Merge {
            right: LEFT,
            step: MergeStep::Frozen,
            version: 2
        }
    );
    assert_eq!(
        merged,
        Response::Merge {
            right: RIGHT,
            step: MergeStep::Merged,
            version: 3
        }
    );
    assert_eq!(
        *left.kv.bounds(),
        RangeBounds {
            start: Vec::new(),
            end: None,
            version: 3
        }
    );
    assert_eq!(*left.kv.merge_state(), MergeState::None);
    assert_eq!(left.kv.map().len(), 26);
    assert_eq!(left.kv.map().get(b"x".as_slice()), Some(&b"2".to_vec()));
    let bytes: u64 = left
        .kv
        .map()
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    assert_eq!(left.kv.stored_bytes(), bytes);
    // Sequence 2 again, now at the merged range: the right half's recorded answer.
    assert_eq!(left.write(session, 2, put("x", "2")), answer);
    // The frozen right half serves nothing, not even a read, and refuses every change but a
    // copy of its freeze.
    assert_eq!(
        right.write(session, 4, put("y", "4")),
        Response::Merging { into: LEFT }
    );
    assert_eq!(
        right.kv.read(&get("y")),
        Some(Response::Merging { into: LEFT })
    );
    let expected = right.kv.bounds().clone();
    assert!(matches!(
        right.split(expected, b"q", GroupId(99)),
        Response::Invalid(_)
    ));
    assert!(matches!(
        right.freeze(GroupId(7), 2, u64::MAX),
        Response::Invalid(_)
    ));
    assert!(matches!(
        right.freeze(LEFT, 2, u64::MAX),
        Response::Merge {
            step: MergeStep::Frozen,
            ..
        }
    ));
    // A second merge entry (a copy) changes nothing.
    assert!(matches!(left.absorb(&right), Response::Invalid(_)));
    assert_eq!(left.kv.map().len(), 26);
}

#[test]
fn a_merge_waits_for_a_freeze_and_a_refused_freeze_is_final() {
    let (mut left, mut right) = split_alphabet();
    let bounds = left.kv.bounds().clone();
    assert!(matches!(
        left.apply(&Proposal::PrepareMerge {
            expected: bounds.clone(),
            right: RIGHT
        }),
        Response::Merge {
            step: MergeStep::Prepared,
            ..
        }
    ));
    // Prepared twice (a copy): answered, unchanged. A split waits for the merge.
    let prepared_bounds = left.kv.bounds().clone();
    assert!(matches!(
        left.apply(&Proposal::PrepareMerge {
            expected: bounds,
            right: RIGHT
        }),
        Response::Merge {
            step: MergeStep::Prepared,
            ..
        }
    ));
    assert_eq!(*left.kv.bounds(), prepared_bounds);
    assert!(matches!(
        left.split(prepared_bounds.clone(), b"c", GroupId(50)),
        Response::Invalid(_)
    ));
    // The right range's state before it froze is no merge.
    assert!(matches!(left.absorb(&right), Response::Invalid(_)));
    // Too big to freeze: refused, and the refusal recorded, so a copy of that freeze later in
    // the log cannot freeze the range after the left one gave up. The version stays.
    let version = right.kv.bounds().version;
    let expected = right.kv.bounds().clone();
    let attempt = left.kv.bounds().version;
    assert!(matches!(
        right.freeze(LEFT, attempt, 10),
        Response::Invalid(_)
    ));
    assert_eq!(right.kv.bounds().version, version);
    assert!(matches!(
        right.apply(&Proposal::Freeze {
            expected,
            into: LEFT,
            bytes_max: u64::MAX,
            attempt,
        }),
        Response::Invalid(_)
    ));
    // A late ask for the same attempt, proposed against the range as it is now, is refused
    // too: the left range gives that attempt up on the first refusal.
    assert!(matches!(
        right.freeze(LEFT, attempt, u64::MAX),
        Response::Invalid(_)
    ));
    // And after a restart from a snapshot.
    let mut restored =
        Replica::new(decode_snapshot(&encode_snapshot(&right.kv.snapshot_source())).unwrap());
    assert!(matches!(
        restored.freeze(LEFT, attempt, u64::MAX),
        Response::Invalid(_)
    ));
    assert_eq!(*right.kv.merge_state(), MergeState::None);
    // The left range gives up, splits again, and a merge entry no longer applies.
    assert!(matches!(
        left.apply(&Proposal::AbortMerge { right: RIGHT }),
        Response::Merge {
            step: MergeStep::Aborted,
            ..
        }
    ));
    assert_eq!(*left.kv.merge_state(), MergeState::None);
    let bounds = left.kv.bounds().clone();
    assert!(matches!(
        left.split(bounds, b"c", GroupId(50)),
        Response::Split { .. }
    ));
    // The right range, still serving, answers writes.
    let session = right.open();
    assert!(matches!(
        right.write(session, 1, put("y", "1")),
        Response::Written { .. }
    ));
}

/// Two merges chained: the middle range awaits its right neighbour, which froze for it, when
/// its own left neighbour asks it to freeze. The refusal leaves its version (the attempt its
/// neighbour froze for) alone, so it still takes the frozen state (simulator seed 4: a refusal
/// that moved it left the right range frozen for an attempt nobody would finish).
#[test]
fn a_range_awaiting_its_merge_refuses_a_freeze_and_still_merges() {
    let (mut middle, mut right) = split_alphabet();
    middle.apply(&Proposal::PrepareMerge {
        expected: middle.kv.bounds().clone(),
        right: RIGHT,
    });
    let attempt = middle.kv.bounds().version;
    assert!(matches!(
        right.freeze(LEFT, attempt, u64::MAX),
        Response::Merge {
            step: MergeStep::Frozen,
            ..
        }
    ));
    // Its left neighbour (group 70) asks the middle range to freeze into it.
    assert!(matches!(
        middle.freeze(GroupId(70), 5, u64::MAX),
        Response::Invalid(_)
    ));
    assert_eq!(middle.kv.bounds().version, attempt, "the attempt stands");
    assert!(matches!(
        middle.absorb(&right),
        Response::Merge {
            step: MergeStep::Merged,
            ..
        }
    ));
}

#[test]
fn a_merge_takes_only_its_neighbour_frozen_into_it() {
    let (mut left, mut right) = split_alphabet();
    left.apply(&Proposal::PrepareMerge {
        expected: left.kv.bounds().clone(),
        right: RIGHT,
    });
    // Frozen into another range: not this merge's state.
    let mut other = Replica::new(right.kv.clone());
    other.freeze(GroupId(77), 2, u64::MAX);
    assert!(matches!(left.absorb(&other), Response::Invalid(_)));
    // Garbage for a state: refused, nothing changed.
    let garbage = left.apply(&Proposal::Merge {
        right: RIGHT,
        state: vec![1, 2, 3],
    });
    assert!(matches!(garbage, Response::Invalid(_)));
    assert_eq!(left.kv.map().len(), 12);
    right.freeze(LEFT, 2, u64::MAX);
    assert!(matches!(
        left.absorb(&right),
        Response::Merge {
            step: MergeStep::Merged,
            ..
        }
    ));
}

#[test]
fn merge_states_survive_a_snapshot_and_the_disk_engine_keeps_them() {
    let (mut left, mut right) = split_alphabet();
    left.apply(&Proposal::PrepareMerge {
        expected: left.kv.bounds().clone(),
        right: RIGHT,
    });
    right.freeze(LEFT, 2, u64::MAX);
    for replica in [&left, &right] {
        let bytes = encode_snapshot(&replica.kv.snapshot_source());
        verify_snapshot(&bytes).unwrap();
        let restored = decode_snapshot(&bytes).unwrap();
        assert_eq!(restored.merge_state(), replica.kv.merge_state());
        assert_eq!(restored.bounds(), replica.kv.bounds());
    }
    assert_eq!(
        *right.kv.merge_state(),
        MergeState::Frozen {
            into: LEFT,
            attempt: 2
        }
    );
    let directory = tempfile::tempdir().unwrap();
    let engine = Engine::open(directory.path(), EngineConfig::small_for_tests()).unwrap();
    for replica in [&left, &right] {
        let mut disk = engine.open_range(replica.kv.group()).unwrap();
        let bytes = encode_snapshot(&replica.kv.snapshot_source());
        disk.restore(&bytes).unwrap();
        assert_eq!(disk.merge_state(), replica.kv.merge_state());
        assert_eq!(encode_machine(&disk, 16).unwrap(), bytes);
    }
}
