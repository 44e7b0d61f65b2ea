//! Client sessions in the KV state machine (Raft dissertation §6.3): a copy of an applied write
//! is answered with its recorded result and not applied again, results below the client's
//! watermark are forgotten and their copies refused, sessions expire by log time at the same
//! index on every replica, an unknown or expired session is refused and never opened anew, the
//! limits end sessions deterministically, and the table survives snapshots, splits and merges.
#![allow(clippy::unwrap_used)]

use flotilla_raft::{GroupId, LogId, LogIndex, Term};
use flotilla_storage::kv::{KvMap, SessionId, SessionLimits, SessionTable, SessionTag};
use flotilla_storage::snapshot::encode_snapshot;
use flotilla_storage::{Codec, Command, KvStateMachine, Proposal, Response, decode_snapshot};

const GROUP: GroupId = GroupId(7);
const MINUTE_MS: u64 = 60_000;

fn limits() -> SessionLimits {
    SessionLimits {
        expiry_ms: 10 * MINUTE_MS,
        sessions_max: 3,
        results_max: 4,
    }
}

/// A replica of one range, fed entries at consecutive indexes; `now_ms` is the clock of the
/// leader that proposed the next entry (the log time it carries).
struct Replica {
    kv: KvStateMachine,
    next: u64,
    now_ms: u64,
}

impl Replica {
    fn new() -> Self {
        Self {
            kv: KvStateMachine::new(GROUP),
            next: 1,
            now_ms: 1_000_000,
        }
    }

    fn apply(&mut self, proposal: &Proposal) -> Response {
        let response = self.kv.apply(LogIndex(self.next), &proposal.to_payload());
        self.next += 1;
        response
    }

    fn open(&mut self) -> SessionId {
        let open = Proposal::Open {
            time_ms: self.now_ms,
            limits: limits(),
        };
        match self.apply(&open) {
            Response::SessionOpened { session, limits: l } => {
                assert_eq!(l, limits());
                session
            }
            other => panic!("opening answered {other:?}"),
        }
    }

    fn write(&mut self, tag: SessionTag, command: Command) -> Response {
        let write = Proposal::Write {
            time_ms: self.now_ms,
            tag,
            command,
        };
        self.apply(&write)
    }

    fn put(&mut self, tag: SessionTag, key: &str, value: &str) -> Response {
        self.write(tag, put(key, value))
    }

    fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.kv.map().get(key.as_bytes()).cloned()
    }

    /// An entry without a session (a bare command, as logged before sessions).
    fn put_blank(&mut self) {
        let _ = self
            .kv
            .apply(LogIndex(self.next), &Command::Get { key: vec![] }.encode());
        self.next += 1;
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn tag(session: SessionId, sequence: u64, awaited_from: u64) -> SessionTag {
    SessionTag {
        session,
        sequence,
        awaited_from,
    }
}

fn written(previous: Option<&str>) -> Response {
    Response::Written {
        previous: previous.map(|value| value.as_bytes().to_vec()),
    }
}

#[test]
fn a_session_is_named_after_the_entry_that_opened_it() {
    let mut replica = Replica::new();
    replica.put_blank();
    let session = replica.open();
    assert_eq!(
        session,
        SessionId {
            group: GROUP,
            index: LogIndex(2)
        }
    );
}

/// The bug of issue 17: an attempt abandoned by its client, applied after the retry was and
/// after another client's write. With the session, the late copy changes nothing and gets the
/// answer the retry got.
#[test]
fn a_late_copy_of_an_applied_write_gets_the_recorded_result_and_is_not_applied_again() {
    let mut replica = Replica::new();
    let (mine, other) = (replica.open(), replica.open());
    assert_eq!(replica.put(tag(mine, 1, 1), "k", "mine"), written(None));
    assert_eq!(
        replica.put(tag(other, 1, 1), "k", "other"),
        written(Some("mine"))
    );
    assert_eq!(
        replica.put(tag(mine, 1, 1), "k", "mine"),
        written(None),
        "the copy is answered as the first was"
    );
    assert_eq!(replica.value("k"), Some(b"other".to_vec()));
}

/// A compare-and-swap retried after its first attempt applied must not be evaluated again: a
/// second evaluation would see its own write and report a failure, or swap a value that
/// another client wrote in between.
#[test]
fn a_retried_compare_and_swap_reports_the_outcome_of_its_one_application() {
    let mut replica = Replica::new();
    let session = replica.open();
    let swap = Command::CompareAndSwap {
        key: b"k".to_vec(),
        expected: None,
        new: Some(b"1".to_vec()),
    };
    let first = replica.write(tag(session, 1, 1), swap.clone());
    let swapped = Response::CompareAndSwap {
        swapped: true,
        current: None,
    };
    assert_eq!(first, swapped);
    assert_eq!(replica.write(tag(session, 1, 1), swap), swapped);
}

/// The client says which answers it still awaits; the table keeps only those results, so a
/// session's memory is bounded by its client's window, and refuses copies below the watermark.
#[test]
fn results_below_the_watermark_are_forgotten_and_their_copies_refused() {
    let mut replica = Replica::new();
    let session = replica.open();
    for sequence in 1..=3 {
        replica.put(tag(session, sequence, 1), "k", &sequence.to_string());
    }
    assert_eq!(replica.kv.sessions().results_held(session), 3);
    // Sequences 1 and 2 were answered; 3 is still awaited (its answer was lost).
    replica.put(tag(session, 4, 3), "k", "4");
    assert_eq!(replica.kv.sessions().results_held(session), 2);
    assert_eq!(
        replica.put(tag(session, 1, 1), "k", "1"),
        Response::Retired { sequence: 1 },
        "a copy with an older watermark is still below the session's"
    );
    assert_eq!(
        replica.put(tag(session, 3, 3), "k", "3"),
        written(Some("2")),
        "an awaited result is still there"
    );
    assert_eq!(replica.value("k"), Some(b"4".to_vec()));
}

#[test]
fn a_write_of_an_unknown_session_is_refused_and_never_opens_it() {
    let mut replica = Replica::new();
    let never_opened = SessionId {
        group: GroupId(99),
        index: LogIndex(5),
    };
    let refused = Response::SessionExpired {
        session: never_opened,
    };
    assert_eq!(replica.put(tag(never_opened, 1, 1), "k", "v"), refused);
    assert_eq!(replica.put(tag(never_opened, 1, 1), "k", "v"), refused);
    assert_eq!(replica.value("k"), None);
    assert!(replica.kv.sessions().is_empty());
}

/// Expiry follows the log: the same entries expire the same sessions at the same index on
/// every replica, whatever their own clocks, and log time never goes back when a leader with a
/// slower clock takes over.
#[test]
fn sessions_expire_by_log_time_at_the_same_index_on_every_replica() {
    let mut replicas = [Replica::new(), Replica::new()];
    let mut answers = [Vec::new(), Vec::new()];
    for (replica, answers) in replicas.iter_mut().zip(&mut answers) {
        let (idle, busy) = (replica.open(), replica.open());
        for minute in 1..=12 {
            replica.now_ms += MINUTE_MS;
            answers.push(replica.put(tag(busy, minute, minute), "busy", "v"));
        }
        // A new leader whose clock is 5 minutes behind: log time stays where it was.
        replica.now_ms -= 5 * MINUTE_MS;
        answers.push(replica.put(tag(busy, 13, 13), "busy", "v"));
        answers.push(replica.put(tag(idle, 1, 1), "idle", "v"));
        assert!(replica.kv.sessions().contains(busy));
    }
    assert_eq!(replicas[0].kv, replicas[1].kv);
    assert_eq!(answers[0], answers[1]);
    let idle = SessionId {
        group: GROUP,
        index: LogIndex(1),
    };
    assert_eq!(
        answers[0].last(),
        Some(&Response::SessionExpired { session: idle }),
        "idle for 12 minutes of log time, over the 10-minute expiry"
    );
    assert_eq!(
        replicas[0].kv.sessions().clock_ms(),
        1_000_000 + 12 * MINUTE_MS
    );
}

#[test]
fn a_session_expires_exactly_when_its_idle_time_reaches_the_expiry() {
    let mut replica = Replica::new();
    let session = replica.open();
    replica.now_ms += 10 * MINUTE_MS - 1;
    assert_eq!(replica.put(tag(session, 1, 1), "k", "v"), written(None));
    replica.now_ms += 10 * MINUTE_MS;
    assert_eq!(
        replica.put(tag(session, 2, 2), "k", "w"),
        Response::SessionExpired { session }
    );
    assert_eq!(replica.value("k"), Some(b"v".to_vec()));
}

#[test]
fn opening_a_session_in_a_full_range_ends_the_least_recently_active_one() {
    let mut replica = Replica::new();
    let sessions: Vec<SessionId> = (0..3).map(|_| replica.open()).collect();
    replica.now_ms += 1;
    replica.put(tag(sessions[0], 1, 1), "k", "v");
    let fourth = replica.open();
    let table = replica.kv.sessions();
    assert_eq!(table.len(), 3);
    assert!(table.contains(sessions[0]) && table.contains(sessions[2]));
    assert!(!table.contains(sessions[1]), "the least recently active");
    assert!(table.contains(fourth));
}

/// A client keeps `sequence - awaited_from` under `results_max`; one that does not would
/// make the table grow without bound, so its session ends instead.
#[test]
fn a_session_that_would_hold_more_results_than_the_limit_is_ended() {
    let mut replica = Replica::new();
    let session = replica.open();
    for sequence in 1..=4 {
        assert_eq!(
            replica.put(tag(session, sequence, 1), "k", "v"),
            written((sequence > 1).then_some("v"))
        );
    }
    assert_eq!(
        replica.put(tag(session, 5, 1), "k", "w"),
        Response::SessionExpired { session }
    );
    assert!(!replica.kv.sessions().contains(session));
    assert_eq!(replica.value("k"), Some(b"v".to_vec()));
}

#[test]
fn a_tag_that_awaits_above_its_own_sequence_is_invalid_and_changes_nothing() {
    let mut replica = Replica::new();
    let session = replica.open();
    for bad in [tag(session, 2, 3), tag(session, 0, 0)] {
        assert!(matches!(replica.put(bad, "k", "v"), Response::Invalid(_)));
    }
    assert_eq!(replica.value("k"), None);
    assert_eq!(replica.kv.sessions().results_held(session), 0);
}

#[test]
fn the_session_table_survives_a_snapshot_and_answers_copies_after_a_restore() {
    let mut replica = Replica::new();
    let session = replica.open();
    replica.put(tag(session, 1, 1), "k", "v");
    let bytes = encode_snapshot(&replica.kv.snapshot_source());
    let mut restored = Replica {
        kv: decode_snapshot(&bytes).unwrap(),
        next: replica.next,
        now_ms: replica.now_ms,
    };
    assert_eq!(restored.kv, replica.kv);
    assert_eq!(restored.put(tag(session, 1, 1), "k", "v"), written(None));
    assert_eq!(
        restored.put(tag(session, 2, 1), "k", "w"),
        written(Some("v"))
    );
}

/// Snapshot files written before sessions (format version 1: a 56-byte header, no session
/// section) still restore, with no sessions.
#[test]
fn a_version_1_snapshot_restores_with_no_sessions() {
    let map: KvMap = [(b"a".to_vec(), b"1".to_vec())].into_iter().collect();
    let applied = LogId::new(Term(2), LogIndex(9));
    let mut fields = Vec::new();
    for value in [GROUP.0, applied.index.0, applied.term.0, 1, 10] {
        fields.extend_from_slice(&value.to_le_bytes());
    }
    for field in [b"a", b"1"] {
        fields.extend_from_slice(&1u32.to_le_bytes());
        fields.extend_from_slice(field);
    }
    let mut bytes = b"FLOTSNP1".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&fields).to_le_bytes());
    bytes.extend_from_slice(&fields);
    let restored = decode_snapshot(&bytes).unwrap();
    assert_eq!(restored, KvStateMachine::from_parts(GROUP, applied, map));
    assert!(restored.sessions().is_empty());
}

/// A split gives each half a copy of the table; a write retried in the half that now holds its
/// key is still answered from its record. A merge folds the halves back: the higher watermark,
/// both halves' results, the later activity.
#[test]
fn the_table_survives_a_split_and_a_merge() {
    let mut parent = Replica::new();
    let session = parent.open();
    parent.put(tag(session, 1, 1), "left", "1");
    parent.put(tag(session, 2, 1), "right", "2");
    let mut right = Replica {
        kv: KvStateMachine::new(GroupId(8)).with_sessions(parent.kv.sessions().clone()),
        next: 1,
        now_ms: parent.now_ms,
    };
    assert_eq!(right.put(tag(session, 2, 1), "right", "2"), written(None));
    assert_eq!(
        right.value("right"),
        None,
        "answered from the copied record"
    );
    parent.put(tag(session, 3, 2), "left", "3");
    right.now_ms += 5;
    right.put(tag(session, 4, 2), "right", "4");
    let mut merged: SessionTable = parent.kv.sessions().clone();
    merged.merge(right.kv.sessions().clone());
    assert_eq!(merged.results_held(session), 3, "sequences 2, 3 and 4");
    assert_eq!(merged.clock_ms(), right.now_ms);
    let mut after = Replica {
        kv: KvStateMachine::new(GROUP).with_sessions(merged),
        next: 1,
        now_ms: right.now_ms,
    };
    assert_eq!(after.put(tag(session, 4, 2), "right", "4"), written(None));
    assert_eq!(
        after.put(tag(session, 1, 1), "left", "1"),
        Response::Retired { sequence: 1 }
    );
}
