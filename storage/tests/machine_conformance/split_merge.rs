//! Splits and merges on every machine: the same answers, the same halves (pairs, sessions,
//! bounds, counts, snapshot bytes), misrouted commands refused alike, the middle key alike,
//! and split or merging ranges through a snapshot and back. Then what only the disk machine
//! has: a reopen after a split and after a merge, and a carve next to another machine of its
//! group.

use super::{KINDS, Kind, Subject, filled, open_session, value, write};
use flotilla_raft::{Entry, EntryPayload, GroupId, LogId, LogIndex, NodeId, Term};
use flotilla_storage::kv::{RangeBounds, SessionId, SessionTable};
use flotilla_storage::machine::encode_machine;
use flotilla_storage::{
    Command, Engine, EngineError, MachineError, MergeState, MergeStep, Proposal, Response,
    StateMachine, decode_snapshot,
};
use std::fmt::Debug;

const LEFT: GroupId = super::GROUP;
const RIGHT: GroupId = GroupId(40);

/// Checks that every machine (in `KINDS` order) gave what the in-memory one gave.
fn assert_alike<T: PartialEq + Debug>(per_kind: &[T]) {
    for (kind, got) in KINDS.iter().zip(per_kind).skip(1) {
        assert!(
            *got == per_kind[0],
            "{kind:?} differs from the memory machine: {got:?}"
        );
    }
}

fn alphabet() -> Vec<String> {
    (b'a'..=b'z')
        .map(|key| char::from(key).to_string())
        .collect()
}

fn split_proposal(expected: RangeBounds, at: &str, right: GroupId) -> Proposal {
    Proposal::Split {
        expected,
        at: at.into(),
        right,
        voters: vec![NodeId(1)],
    }
}

fn bounds(start: &str, end: Option<&str>, version: u64) -> RangeBounds {
    RangeBounds {
        start: start.into(),
        end: end.map(Vec::from),
        version,
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.into(),
        value: value.into(),
    }
}

/// Everything a machine shows: its group, applied entry, bounds, merge state, counts, sessions
/// and snapshot bytes.
type State = (
    GroupId,
    LogId,
    RangeBounds,
    MergeState,
    (u64, u64),
    SessionTable,
    Vec<u8>,
);

fn state(machine: &dyn StateMachine) -> State {
    (
        machine.group(),
        machine.applied(),
        machine.bounds().clone(),
        machine.merge_state().clone(),
        (machine.pair_count(), machine.stored_bytes()),
        machine.sessions().clone(),
        encode_machine(machine, 5).unwrap(),
    )
}

/// `a` to `z` in one range with a session that wrote `k`, split at `m`: the parent and its
/// right half, and the split's answer.
fn split_alphabet(kind: Kind) -> (Subject, Subject, SessionId) {
    let keys = alphabet();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut parent = filled(kind, &keys);
    let session = open_session(&mut parent);
    assert_eq!(
        parent.propose(&write(session, 1, "x", "1")),
        Response::Written {
            previous: value("vx")
        }
    );
    let answer = parent.propose(&split_proposal(RangeBounds::default(), "m", RIGHT));
    assert_eq!(
        answer,
        Response::Split {
            right: RIGHT,
            version: 1
        },
        "{kind:?}"
    );
    let right = parent.carved();
    assert!(parent.machine.take_carved().is_none(), "{kind:?}: once");
    (parent, right, session)
}

#[test]
fn a_split_carves_the_same_halves_on_every_machine() {
    let mut states = Vec::new();
    for kind in KINDS {
        let (parent, right, _) = split_alphabet(kind);
        assert_eq!(*parent.machine.bounds(), bounds("", Some("m"), 1));
        assert_eq!(*right.machine.bounds(), bounds("m", None, 1), "{kind:?}");
        assert_eq!(right.machine.group(), RIGHT);
        assert_eq!(right.machine.applied(), LogId::default(), "{kind:?}");
        assert_eq!(
            (parent.machine.pair_count(), right.machine.pair_count()),
            (12, 14),
            "{kind:?}"
        );
        assert_eq!(right.machine.sessions(), parent.machine.sessions());
        states.push((state(&*parent.machine), state(&*right.machine)));
    }
    assert_alike(&states);
}

/// After a split both halves take writes for their keys, refuse each other's (reads, writes,
/// scans across the split key) and answer a write sent again to the half that holds its key
/// from the copied session.
#[test]
fn both_halves_serve_their_keys_and_refuse_the_others() {
    let mut traces = Vec::new();
    for kind in KINDS {
        let (mut parent, mut right, session) = split_alphabet(kind);
        let mut answers = vec![
            parent.run(put("b", "left")),
            right.run(put("q", "right")),
            parent.run(put("q", "misrouted")),
            right.run(put("b", "misrouted")),
            parent.propose(&write(session, 2, "y", "late")),
            right.propose(&write(session, 1, "x", "1")),
            right.propose(&write(session, 2, "y", "late")),
            parent.get("q"),
            right.get("b"),
            parent.scan("a", None, 100),
            parent.scan("k", Some("n"), 100),
            parent.scan("a", Some("m"), 3),
            right.scan("m", None, 3),
        ];
        for command in [Command::Get { key: "y".into() }, scan_all()] {
            answers.push(
                parent
                    .machine
                    .read_bounded(&command, 1 << 20)
                    .unwrap()
                    .unwrap(),
            );
            answers.push(
                right
                    .machine
                    .read_bounded(&command, 1 << 20)
                    .unwrap()
                    .unwrap(),
            );
        }
        let refused = answers
            .iter()
            .filter(|answer| matches!(answer, Response::OutsideRange { .. }))
            .count();
        assert_eq!(refused, 10, "{kind:?}: {answers:#?}");
        traces.push((answers, state(&*parent.machine), state(&*right.machine)));
    }
    assert_alike(&traces);
}

fn scan_all() -> Command {
    Command::Scan {
        start: Vec::new(),
        end: None,
        limit: 100,
    }
}

fn entry(index: u64, command: &Command) -> Entry {
    use flotilla_storage::Codec;
    Entry {
        term: Term(2),
        index: LogIndex(index),
        payload: EntryPayload::Normal(command.encode().into()),
    }
}

/// A split in the middle of one `apply_entries` batch: the pairs it moves include what the
/// batch wrote before it (new keys, overwrites, deletes past the split key), and the entries
/// after it see the parent's new bounds.
#[test]
fn a_split_in_the_middle_of_a_batch_moves_what_the_batch_wrote() {
    let mut traces = Vec::new();
    for kind in KINDS {
        let mut parent = filled(kind, &["a", "n", "p", "z"]);
        let first = parent.next;
        let split = Entry {
            term: Term(2),
            index: LogIndex(first + 5),
            payload: EntryPayload::Normal(
                split_proposal(RangeBounds::default(), "m", RIGHT)
                    .to_payload()
                    .into(),
            ),
        };
        let batch = vec![
            entry(first, &put("q", "new")),
            entry(first + 1, &put("n", "overwritten")),
            entry(first + 2, &Command::Delete { key: "p".into() }),
            entry(first + 3, &put("b", "left")),
            entry(first + 4, &Command::Get { key: "q".into() }),
            split,
            entry(first + 6, &put("r", "misrouted")),
            entry(first + 7, &put("c", "left")),
            entry(first + 8, &Command::Delete { key: "a".into() }),
            entry(first + 9, &Command::Get { key: "n".into() }),
        ];
        let answers = parent.machine.apply_entries(&batch).unwrap();
        parent.next = first + 10;
        assert!(
            matches!(answers[5], Some(Response::Split { .. })),
            "{kind:?}"
        );
        assert!(matches!(answers[6], Some(Response::OutsideRange { .. })));
        assert!(matches!(answers[9], Some(Response::OutsideRange { .. })));
        let mut right = parent.carved();
        assert_eq!(
            right.get("q"),
            Response::Value(value("new")),
            "{kind:?}: the batch's write before the split moved"
        );
        assert_eq!(right.get("p"), Response::Value(None), "{kind:?}");
        assert_eq!(right.get("n"), Response::Value(value("overwritten")));
        assert_eq!(right.machine.pair_count(), 3, "{kind:?}: n, q, z");
        assert_eq!(parent.machine.pair_count(), 2, "{kind:?}: b, c");
        traces.push((answers, state(&*parent.machine), state(&*right.machine)));
    }
    assert_alike(&traces);
}

/// Prepare, a freeze refused (too big: the attempt is recorded and never frozen for), a later
/// attempt frozen, and the merge: the left range takes the frozen one's pairs and sessions.
/// Every answer and state is the same on every machine.
#[test]
fn a_merge_prepares_freezes_and_absorbs_on_every_machine() {
    let mut traces = Vec::new();
    for kind in KINDS {
        let (mut left, mut right, session) = split_alphabet(kind);
        // Both halves write in the same session after the split: the merge folds the two.
        left.propose(&write(session, 2, "b", "left"));
        let right_write = right.propose(&write(session, 3, "q", "right"));
        let freeze = |right: &mut Subject, attempt, bytes_max| {
            let expected = right.machine.bounds().clone();
            right.propose(&Proposal::Freeze {
                expected,
                into: LEFT,
                bytes_max,
                attempt,
            })
        };
        let mut answers = vec![freeze(&mut right, 1, 10)];
        assert!(matches!(answers[0], Response::Invalid(_)), "{kind:?}");
        answers.push(freeze(&mut right, 1, u64::MAX));
        assert!(
            matches!(answers[1], Response::Invalid(_)),
            "{kind:?}: final"
        );
        let expected = left.machine.bounds().clone();
        answers.push(left.propose(&Proposal::PrepareMerge {
            expected,
            right: RIGHT,
        }));
        assert_eq!(
            *left.machine.merge_state(),
            MergeState::Absorbing { right: RIGHT }
        );
        let split_refused = left.propose(&split_proposal(
            left.machine.bounds().clone(),
            "c",
            GroupId(50),
        ));
        answers.push(split_refused);
        let attempt = left.machine.bounds().version;
        answers.push(freeze(&mut right, attempt, u64::MAX));
        assert!(right.machine.is_frozen(), "{kind:?}: {answers:?}");
        answers.push(right.get("q"));
        answers.push(right.run(put("q", "frozen")));
        let read = right.machine.read_bounded(&scan_all(), 1 << 20).unwrap();
        answers.push(read.unwrap());
        let frozen_state = state(&*right.machine);
        let merge = Proposal::Merge {
            right: RIGHT,
            state: encode_machine(&*right.machine, 7).unwrap(),
        };
        answers.push(left.propose(&merge));
        assert!(
            matches!(
                answers.last(),
                Some(Response::Merge {
                    step: MergeStep::Merged,
                    ..
                })
            ),
            "{kind:?}: {answers:?}"
        );
        assert_eq!(*left.machine.bounds(), bounds("", None, 3), "{kind:?}");
        assert_eq!(left.machine.merge_state(), &MergeState::None);
        assert_eq!(left.machine.pair_count(), 26, "{kind:?}");
        // A write of the session sent again to the merged range is answered from the folded
        // sessions, not applied again.
        let again = left.propose(&write(session, 3, "q", "right"));
        assert_eq!(again, right_write, "{kind:?}");
        answers.push(again);
        answers.push(left.get("q"));
        answers.push(left.propose(&write(session, 4, "r", "after")));
        traces.push((answers, frozen_state, state(&*left.machine)));
    }
    assert_alike(&traces);
}

#[test]
fn the_middle_key_is_the_same_on_every_machine() {
    let mut found = Vec::new();
    for kind in KINDS {
        let mut subject = Subject::new(kind);
        let mut keys = vec![subject.machine.middle_key().unwrap()];
        subject.put("a", "1");
        keys.push(subject.machine.middle_key().unwrap());
        subject.put("b", "1");
        keys.push(subject.machine.middle_key().unwrap());
        let (parent, right, _) = split_alphabet(kind);
        keys.push(parent.machine.middle_key().unwrap());
        keys.push(right.machine.middle_key().unwrap());
        assert_eq!(keys[..2], [None, None], "{kind:?}");
        assert_eq!(keys[2], value("b"), "{kind:?}");
        found.push(keys);
    }
    assert_alike(&found);
}

/// A split parent, its right half, a range awaiting its merge and a frozen one: each encodes
/// (`encode_machine`) to the same bytes on every machine, restores into a fresh machine of its
/// group on every machine, and encodes again to the same bytes, bounds and merge state kept.
#[test]
fn split_and_merging_ranges_round_trip_through_snapshots() {
    let mut encoded = Vec::new();
    for kind in KINDS {
        let (mut left, mut right, _) = split_alphabet(kind);
        let mut bytes = vec![
            encode_machine(&*left.machine, 3).unwrap(),
            encode_machine(&*right.machine, 3).unwrap(),
        ];
        let expected = left.machine.bounds().clone();
        left.propose(&Proposal::PrepareMerge {
            expected,
            right: RIGHT,
        });
        let expected = right.machine.bounds().clone();
        // A refused attempt first: the snapshot keeps it.
        right.propose(&Proposal::Freeze {
            expected: expected.clone(),
            into: LEFT,
            bytes_max: 1,
            attempt: 1,
        });
        right.propose(&Proposal::Freeze {
            expected,
            into: LEFT,
            bytes_max: u64::MAX,
            attempt: 2,
        });
        bytes.push(encode_machine(&*left.machine, 3).unwrap());
        bytes.push(encode_machine(&*right.machine, 3).unwrap());
        encoded.push(bytes);
    }
    assert_alike(&encoded);
    let merges = [
        MergeState::None,
        MergeState::None,
        MergeState::Absorbing { right: RIGHT },
        MergeState::Frozen {
            into: LEFT,
            attempt: 2,
        },
    ];
    for (bytes, merge) in encoded[0].iter().zip(merges) {
        let decoded = decode_snapshot(bytes).unwrap();
        assert_eq!(*decoded.merge_state(), merge);
        for kind in KINDS {
            let mut restored = Subject::of_group(kind, decoded.group());
            restored.machine.restore(bytes).unwrap();
            assert_eq!(restored.machine.bounds(), decoded.bounds(), "{kind:?}");
            assert_eq!(*restored.machine.merge_state(), merge, "{kind:?}");
            let again = encode_machine(&*restored.machine, 1 << 20).unwrap();
            assert!(again == *bytes, "{kind:?}: {merge:?} restored exactly");
        }
    }
    // The frozen range's snapshot keeps the attempt it refused.
    let frozen = decode_snapshot(&encoded[0][3]).unwrap();
    let declined = frozen.snapshot_source().declined;
    assert_eq!(declined, std::collections::BTreeMap::from([(LEFT, 1)]));
}

/// Drops every machine and the engine, reopens the engine in the same directory and the
/// groups of `subjects` in it.
fn reopen(subjects: Vec<Subject>) -> Vec<Subject> {
    let directory = subjects[0].engine.as_ref().unwrap().1.clone().unwrap();
    let groups: Vec<(GroupId, u64)> = subjects
        .iter()
        .map(|subject| (subject.machine.group(), subject.next))
        .collect();
    let config = subjects[0].engine.as_ref().unwrap().0.config().clone();
    drop(subjects);
    let engine = Engine::open(directory.path(), config).unwrap();
    groups
        .into_iter()
        .map(|(group, next)| Subject {
            machine: Box::new(engine.open_range(group).unwrap()),
            next,
            engine: Some((engine.clone(), Some(directory.clone()))),
        })
        .collect()
}

/// The disk machine after a split, and after a merge, reopened from the engine alone: the
/// same halves, bounds, merge state, sessions and snapshots.
#[test]
fn a_disk_machine_reopens_as_it_was_after_a_split_and_a_merge() {
    let (left, right, session) = split_alphabet(Kind::Disk);
    let before = (state(&*left.machine), state(&*right.machine));
    let reopened = reopen(vec![left, right]);
    assert_eq!(
        (state(&*reopened[0].machine), state(&*reopened[1].machine)),
        before
    );

    let mut halves = reopened.into_iter();
    let (mut left, mut right) = (halves.next().unwrap(), halves.next().unwrap());
    right.propose(&write(session, 2, "q", "right"));
    let expected = left.machine.bounds().clone();
    left.propose(&Proposal::PrepareMerge {
        expected,
        right: RIGHT,
    });
    let expected = right.machine.bounds().clone();
    right.propose(&Proposal::Freeze {
        expected,
        into: LEFT,
        bytes_max: u64::MAX,
        attempt: 2,
    });
    let before_merge = (state(&*left.machine), state(&*right.machine));
    let mut reopened = reopen(vec![left, right]);
    assert_eq!(
        (state(&*reopened[0].machine), state(&*reopened[1].machine)),
        before_merge,
        "awaiting and frozen"
    );
    let state_bytes = encode_machine(&*reopened[1].machine, 1 << 20).unwrap();
    let merged = reopened[0].propose(&Proposal::Merge {
        right: RIGHT,
        state: state_bytes,
    });
    assert!(matches!(
        merged,
        Response::Merge {
            step: MergeStep::Merged,
            ..
        }
    ));
    let after = state(&*reopened[0].machine);
    let reopened = reopen(reopened);
    assert_eq!(state(&*reopened[0].machine), after, "merged");
}

/// The node may hold an empty machine of the right group open when the parent splits: the
/// carve reads (the node encodes it) but refuses to write while the other machine lives, and
/// takes the group's place once that one is dropped.
#[test]
fn a_carve_writes_only_once_an_empty_machine_of_its_group_is_gone() {
    let mut parent = filled(Kind::Disk, &["a", "q"]);
    let engine = parent.engine.as_ref().unwrap().0.clone();
    let empty = engine.open_range(RIGHT).unwrap();
    parent.propose(&split_proposal(RangeBounds::default(), "m", RIGHT));
    let mut right = parent.carved();
    let get = Command::Get { key: "q".into() };
    assert_eq!(
        right.machine.read_bounded(&get, 1 << 20).unwrap(),
        Some(Response::Value(value("vq")))
    );
    let mut memory = filled(Kind::Memory, &["a", "q"]);
    memory.propose(&split_proposal(RangeBounds::default(), "m", RIGHT));
    let expected = encode_machine(&*memory.carved().machine, 1 << 20).unwrap();
    assert_eq!(encode_machine(&*right.machine, 2).unwrap(), expected);
    let refused = right.machine.apply_entry(&entry(1, &put("r", "1")));
    assert!(
        matches!(
            refused,
            Err(MachineError::Engine(EngineError::AlreadyOpen(RIGHT)))
        ),
        "{refused:?}"
    );
    assert!(matches!(
        right.machine.clear(),
        Err(MachineError::Engine(_))
    ));
    drop(empty);
    assert_eq!(
        right.run(put("r", "1")),
        Response::Written { previous: None }
    );
    assert!(
        matches!(
            engine.open_range(RIGHT),
            Err(EngineError::AlreadyOpen(RIGHT))
        ),
        "the carve holds its group's place"
    );
    drop(right);
    engine.open_range(RIGHT).unwrap();
}

/// A replica of the right group that holds state here already (it took its own group's
/// snapshot before its parent applied the split) keeps it: the split removes the moved pairs
/// from the parent only, and the carve comes in memory, for the node to drop.
#[test]
fn a_split_leaves_a_right_group_that_holds_state_alone() {
    let mut parent = filled(Kind::Disk, &["a", "q"]);
    let engine = parent.engine.as_ref().unwrap().0.clone();
    let mut newer = Subject::of_group(Kind::Memory, RIGHT);
    newer.put("z", "newer");
    let mut hosted = engine.open_range(RIGHT).unwrap();
    hosted
        .restore(&encode_machine(&*newer.machine, 1 << 20).unwrap())
        .unwrap();
    parent.propose(&split_proposal(RangeBounds::default(), "m", RIGHT));
    let carve = parent.carved();
    assert_eq!(carve.machine.pair_count(), 1);
    assert_eq!(
        carve
            .machine
            .read_bounded(&Command::Get { key: "q".into() }, 1 << 20)
            .unwrap(),
        Some(Response::Value(value("vq"))),
        "the carve, in memory"
    );
    assert_eq!(parent.machine.pair_count(), 1);
    assert_eq!(
        encode_machine(&hosted, 1 << 20).unwrap(),
        encode_machine(&*newer.machine, 1 << 20).unwrap(),
        "the hosted replica is untouched"
    );
    drop(hosted);
    let reopened = engine.open_range(RIGHT).unwrap();
    assert_eq!(
        reopened
            .read_bounded(&Command::Get { key: "q".into() }, 1)
            .unwrap(),
        Some(Response::Value(None))
    );
}
