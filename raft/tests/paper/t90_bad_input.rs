//! Bad input: messages that are misaddressed, from strangers, or out of range, and
//! configurations that break a relation between limits. Peers' mistakes are errors or are
//! ignored; they never panic (STYLE habit 10).

use crate::util::*;
use flotilla_raft::{Config, ConfigError, NodeId, RaftNode, ReadMode, Ready, StepError, Term};

/// A message addressed to another replica is refused and changes nothing.
#[test]
fn a_message_for_another_replica_is_refused() {
    let mut node = node(1, &[1, 2, 3]);
    let misaddressed = heartbeat(2, 9, 5, 0, 0);
    assert_eq!(
        node.step(misaddressed),
        Err(StepError::WrongRecipient { to: NodeId(9) })
    );
    assert_eq!(node.term(), Term(0));
    assert_eq!(node.take(), Ready::default());
}

/// A response from a replica the leader does not know (e.g. one removed) is refused.
#[test]
fn a_response_from_an_unknown_replica_is_refused() {
    let mut leader = new_leader(1, &[1, 2, 3]);
    assert_eq!(
        leader.step(accepted(9, 1, 1, 1)),
        Err(StepError::UnknownSender(NodeId(9)))
    );
    assert_eq!(
        leader.log().committed().0,
        0,
        "a stranger's ack counts for nothing"
    );
    assert_eq!(leader.take(), Ready::default());
}

/// A heartbeat or AppendEntries whose commit index lies past the follower's log does not panic:
/// the follower commits only what it holds.
#[test]
fn a_commit_index_past_the_log_is_capped_at_what_the_follower_holds() {
    let mut follower = follower_of(1, &[1, 2, 3], 2, 1);
    follower.deliver(append(2, 1, 1, (0, 0), vec![entry(1, 1)], 100));
    let _ = follower.take();
    assert_eq!(follower.log().committed().0, 1);
    follower.deliver(heartbeat(2, 1, 1, 1_000_000, 0));
    let ready = follower.take();
    assert_eq!(
        ready.persisted_messages,
        vec![heartbeat_response(1, 2, 1, 0)]
    );
    assert_eq!(follower.log().committed().0, 1);
}

/// Every relation between limits fails `Config::validate` with a sentence naming it.
#[test]
fn configurations_that_break_a_relation_are_refused_with_a_sentence() {
    let cases: Vec<(Config, &str)> = vec![
        (
            Config {
                id: NodeId(0),
                ..config(1)
            },
            "the node id must not be 0, which means 'nobody'",
        ),
        (
            Config {
                heartbeat_interval_ticks: 10,
                ..config(1)
            },
            "the election timeout must be longer than the heartbeat interval",
        ),
        (
            Config {
                heartbeat_interval_ticks: 0,
                ..config(1)
            },
            "the heartbeat interval must be at least one tick",
        ),
        (
            Config {
                election_timeout_ticks_max: 10,
                ..config(1)
            },
            "the election timeout range [min, max) must not be empty",
        ),
        (
            Config {
                inflight_count_max: 0,
                ..config(1)
            },
            "the in-flight window must allow at least one message and one byte",
        ),
        (
            Config {
                inflight_bytes_max: 0,
                ..config(1)
            },
            "the in-flight window must allow at least one message and one byte",
        ),
        (
            Config {
                snapshot_chunk_bytes: 0,
                ..config(1)
            },
            "message and snapshot chunk sizes must be at least one byte",
        ),
        (
            Config {
                read_mode: ReadMode::Lease,
                check_quorum: false,
                ..config(1)
            },
            "lease reads need check_quorum, or a deposed leader could serve them",
        ),
        (
            Config {
                read_mode: ReadMode::Lease,
                lease_drift_ticks: 10,
                ..config(1)
            },
            "the lease drift must be shorter than the minimum election timeout",
        ),
    ];
    assert_eq!(config(1).validate(), Ok(()));
    for (config, sentence) in cases {
        assert_eq!(config.validate(), Err(ConfigError(sentence)), "{config:?}");
    }
}

/// A replica is never built from a configuration that does not validate.
#[test]
#[should_panic(expected = "the election timeout range [min, max) must not be empty")]
fn a_replica_refuses_to_start_with_an_invalid_configuration() {
    let config = Config {
        election_timeout_ticks_max: 10,
        ..config(1)
    };
    let _ = RaftNode::new(config, bootstrapped(voters(&[1, 2, 3])));
}

/// Raft §5.3 assumes `entries` follow `prev` one index at a time. AppendEntries that breaks
/// that (a gap, or entries before `prev`) is a malformed message: refused, never a panic.
#[test]
fn append_entries_that_do_not_follow_prev_are_refused_without_panicking() {
    let cases = [
        append(2, 1, 1, (0, 0), vec![entry(1, 5)], 1),
        append(2, 1, 1, (1, 1), vec![entry(1, 1)], 3),
        append(2, 1, 1, (0, 0), vec![entry(1, 1), entry(1, 3)], 3),
        append(2, 1, 1, (0, 0), vec![entry(2, 1)], 1),
    ];
    for malformed in cases {
        let mut follower = follower_of(1, &[1, 2, 3], 2, 1);
        follower.deliver(append(2, 1, 1, (0, 0), vec![entry(1, 1)], 0));
        let _ = follower.take();
        let refused = follower.step(malformed.clone());
        assert!(
            matches!(refused, Err(StepError::Malformed { .. })),
            "{malformed:?}"
        );
        assert_eq!(follower.take(), Ready::default(), "{malformed:?}");
        assert_eq!(follower.log().last_index().0, 1, "{malformed:?}");
    }
}

/// An acknowledgement of entries the leader never had is malformed: counting it could commit
/// an entry no majority holds.
#[test]
fn an_acknowledgement_past_the_leaders_log_is_refused() {
    let mut leader = new_leader(1, &[1, 2, 3]);
    let refused = leader.step(accepted(2, 1, 1, 100));
    assert!(matches!(refused, Err(StepError::Malformed { .. })));
    leader.propose(b"1/2".to_vec()).unwrap();
    let _ = leader.take();
    let _ = leader.take();
    assert_eq!(leader.log().committed().0, 0, "2 acknowledged nothing real");
}

/// Raft Figure 3 (Election Safety): at most one leader per term, so a leader that receives
/// leader traffic of its own term is facing a broken peer. It refuses it and keeps leading;
/// following the impostor could overwrite its own entries of this term.
/// Regression: the leader stepped down and followed the impostor.
#[test]
fn leader_traffic_in_the_leaders_own_term_is_refused() {
    let impostor = [
        heartbeat(2, 1, 1, 0, 0),
        append(2, 1, 1, (0, 0), vec![entry(1, 1)], 0),
    ];
    for message in impostor {
        let mut leader = new_leader(1, &[1, 2, 3]);
        let refused = leader.step(message.clone());
        assert!(
            matches!(refused, Err(StepError::Malformed { .. })),
            "{message:?}"
        );
        assert_eq!(leader.role(), flotilla_raft::Role::Leader, "{message:?}");
        assert_eq!(leader.take(), Ready::default(), "{message:?}");
        assert_eq!(leader.stored_entries(), vec![blank(1, 1)], "{message:?}");
    }
}

/// Terms and indexes near `u64::MAX` are refused before they touch any state: adopting such a
/// term, or stepping past such an index, would overflow.
#[test]
fn numbers_too_large_to_be_real_are_refused_without_overflowing() {
    let cases = [
        append(2, 1, u64::MAX, (0, 0), vec![], 0),
        append(2, 1, 1, (1, u64::MAX), vec![], 0),
        append(2, 1, 1, (0, 0), vec![], u64::MAX),
    ];
    for malformed in cases {
        let mut follower = follower_of(1, &[1, 2, 3], 2, 1);
        let refused = follower.step(malformed.clone());
        assert!(
            matches!(refused, Err(StepError::Malformed { .. })),
            "{malformed:?}"
        );
        assert_eq!(follower.take(), Ready::default(), "{malformed:?}");
        assert!(follower.term() < Term(u64::MAX), "{malformed:?}");
    }
}

/// A snapshot larger than `snapshot_bytes_max` is refused chunk by chunk, so a peer cannot make
/// a follower buffer without bound.
#[test]
fn a_snapshot_past_the_size_limit_is_refused() {
    use flotilla_raft::{LogId, LogIndex, Message, MessageBody, SnapshotMeta};
    let config = Config {
        snapshot_chunk_bytes: 4,
        snapshot_bytes_max: 8,
        ..Config::new(NodeId(2))
    };
    assert!(config.validate().is_ok());
    let mut store = flotilla_raft::MemLog::new();
    store.persist(&flotilla_raft::Persist::bootstrap(
        flotilla_raft::Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    ));
    let mut follower = RaftNode::new(config, store).unwrap();
    let chunk = |offset: u64| Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                last: LogId::new(Term(1), LogIndex(50)),
                membership: flotilla_raft::Membership::with_voters([
                    NodeId(1),
                    NodeId(2),
                    NodeId(3),
                ]),
            },
            transfer: 1,
            offset,
            data: vec![7; 4],
            done: false,
        },
    };
    assert!(follower.step(chunk(0)).is_ok());
    assert!(follower.step(chunk(4)).is_ok());
    let refused = follower.step(chunk(8));
    assert!(
        matches!(refused, Err(StepError::Malformed { .. })),
        "{refused:?}"
    );
}

/// A store whose reads fail (a disk error, not a compacted entry) stops the replica with an
/// error it reports, never a panic: the leader cannot read the entries a lagging follower
/// needs.
#[test]
fn a_failing_store_stops_the_replica_with_an_error() {
    use flotilla_raft::{
        Entry, InitialState, LogError, LogIndex, LogReader, MemLog, Membership, Message,
        MessageBody, Persist, Snapshot,
    };
    use std::cell::Cell;
    use std::rc::Rc;

    struct FailingLog {
        inner: MemLog,
        failing: Rc<Cell<bool>>,
    }
    impl LogReader for FailingLog {
        fn initial_state(&self) -> Result<InitialState, LogError> {
            self.inner.initial_state()
        }
        fn entries(
            &self,
            low: LogIndex,
            high: LogIndex,
            bytes_max: u64,
        ) -> Result<Vec<Entry>, LogError> {
            if self.failing.get() {
                return Err(LogError::Storage("injected read error".to_string()));
            }
            self.inner.entries(low, high, bytes_max)
        }
        fn term(&self, index: LogIndex) -> Result<Term, LogError> {
            self.inner.term(index)
        }
        fn first_index(&self) -> LogIndex {
            self.inner.first_index()
        }
        fn last_index(&self) -> LogIndex {
            self.inner.last_index()
        }
        fn snapshot(&self) -> Result<Snapshot, LogError> {
            self.inner.snapshot()
        }
    }

    let failing = Rc::new(Cell::new(false));
    let mut inner = MemLog::new();
    inner.persist(&Persist::bootstrap(Membership::with_voters([
        NodeId(1),
        NodeId(2),
    ])));
    let store = FailingLog {
        inner,
        failing: failing.clone(),
    };
    let mut leader = RaftNode::new(Config::new(NodeId(1)), store).unwrap();
    let vote = |pre_vote: bool| Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        body: MessageBody::VoteResponse {
            pre_vote,
            granted: true,
            commit: log_id(0, 0),
        },
    };
    let settle = |node: &mut RaftNode<FailingLog>| {
        while node.has_ready() {
            let ready = node.ready();
            node.store_mut().inner.persist(&ready.persist);
            node.advance(ready);
        }
    };
    while leader.role() != flotilla_raft::Role::PreCandidate {
        leader.tick();
    }
    settle(&mut leader);
    leader.step(vote(true)).unwrap();
    settle(&mut leader);
    leader.step(vote(false)).unwrap();
    settle(&mut leader);
    assert_eq!(leader.role(), flotilla_raft::Role::Leader);
    // The follower never acknowledged the blank entry; now the disk fails.
    failing.set(true);
    let answer = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: leader.term(),
        body: MessageBody::HeartbeatResponse { read_round: 0 },
    };
    let result = leader.step(answer);
    assert!(
        matches!(result, Err(StepError::Log(LogError::Storage(_)))),
        "{result:?}"
    );
    assert!(leader.fatal_error().is_some());
    assert!(
        !leader.has_ready(),
        "a stopped replica hands out nothing more"
    );
}
