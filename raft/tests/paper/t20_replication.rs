//! Log replication: Raft §5.3 (AppendEntries, the consistency check, backtracking, pipelining,
//! heartbeats) and the blank entry of a new leader (§5.4.2, §8).

use crate::util::*;
use flotilla_raft::{Config, NodeId, Persist, Ready, Role};

/// A follower of leader 2 in term 3 whose log holds entries of `terms`.
fn follower_with_log(terms: &[u64]) -> Node {
    let mut follower = node_over(config(1), store_with_log(voters(&[1, 2, 3]), terms, 2, 0));
    follower.deliver(heartbeat(2, 1, 3, 0, 0));
    let _ = follower.take();
    follower
}

/// Raft §5.4.2 and §8: a new leader appends a blank entry of its term and sends it to every
/// follower, probing from the end of its log.
#[test]
fn a_new_leader_appends_a_blank_entry_and_sends_it_to_every_follower() {
    let mut node = node(1, &[1, 2, 3]);
    let expected = Ready {
        messages: vec![
            append(1, 2, 1, (0, 0), vec![blank(1, 1)], 0),
            append(1, 3, 1, (0, 0), vec![blank(1, 1)], 0),
        ],
        persist: Persist {
            entries: vec![blank(1, 1)],
            ..Persist::default()
        },
        leader_changed: Some(Some(NodeId(1))),
        ..Ready::default()
    };
    assert_eq!(elect(&mut node), expected);
}

/// Raft §5.3: "the leader ... issues AppendEntries RPCs in parallel to each of the other
/// servers"; the new entry is persisted by the leader in the same Ready.
#[test]
fn a_proposal_is_persisted_and_sent_to_every_follower_in_one_ready() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    let index = leader.propose(b"1/2".to_vec()).unwrap();
    assert_eq!(index.0, 2);
    let expected = Ready {
        messages: vec![
            append(1, 2, 1, (1, 1), vec![entry(1, 2)], 1),
            append(1, 3, 1, (1, 1), vec![entry(1, 2)], 1),
        ],
        persist: Persist {
            entries: vec![entry(1, 2)],
            ..Persist::default()
        },
        ..Ready::default()
    };
    assert_eq!(leader.take(), expected);
}

/// Raft §5.3, AppendEntries receiver rule 2: "Reply false if log doesn't contain an entry at
/// prevLogIndex whose term matches prevLogTerm"; the refusal carries a hint (the follower's
/// last entry at or before prevLogIndex with a term at most prevLogTerm) (etcd
/// `TestFollowerCheckMsgApp`).
#[test]
fn a_follower_checks_the_previous_entry_and_hints_where_to_resume() {
    let cases: &[((u64, u64), AppendAnswer)] = &[
        ((0, 0), AppendAnswer::Accepted(0)),
        ((1, 1), AppendAnswer::Accepted(1)),
        ((2, 3), AppendAnswer::Accepted(3)),
        ((3, 3), AppendAnswer::Rejected(3, (2, 3))),
        ((2, 4), AppendAnswer::Rejected(4, (2, 3))),
        ((1, 3), AppendAnswer::Rejected(3, (1, 2))),
    ];
    for &(prev, answer) in cases {
        let mut follower = follower_with_log(&[1, 1, 2]);
        follower.deliver(append(2, 1, 3, prev, vec![], 0));
        let response = match answer {
            AppendAnswer::Accepted(last) => accepted(1, 2, 3, last),
            AppendAnswer::Rejected(index, hint) => rejected(1, 2, 3, index, hint),
        };
        let expected = Ready {
            persisted_messages: vec![response],
            ..Ready::default()
        };
        assert_eq!(follower.take(), expected, "prev {prev:?}");
    }
}

#[derive(Clone, Copy, Debug)]
enum AppendAnswer {
    Accepted(u64),
    Rejected(u64, (u64, u64)),
}

/// Raft §5.3, receiver rules 3-4: "If an existing entry conflicts with a new one (same index but
/// different terms), delete the existing entry and all that follow it. Append any new entries
/// not already in the log." Entries already held are not persisted again (etcd
/// `TestFollowerAppendEntries`).
#[test]
fn a_follower_appends_new_entries_and_truncates_a_conflicting_suffix() {
    let cases: Vec<((u64, u64), Vec<_>, Vec<_>, Vec<_>)> = vec![
        (
            (2, 2),
            vec![entry(3, 3)],
            vec![entry(3, 3)],
            vec![entry(1, 1), entry(2, 2), entry(3, 3)],
        ),
        (
            (1, 1),
            vec![entry(3, 2), entry(3, 3)],
            vec![entry(3, 2), entry(3, 3)],
            vec![entry(1, 1), entry(3, 2), entry(3, 3)],
        ),
        (
            (0, 0),
            vec![entry(1, 1)],
            vec![],
            vec![entry(1, 1), entry(2, 2)],
        ),
        (
            (0, 0),
            vec![entry(3, 1)],
            vec![entry(3, 1)],
            vec![entry(3, 1)],
        ),
    ];
    for (prev, sent, persisted, log) in cases {
        let mut follower = follower_with_log(&[1, 2]);
        let last = prev.1 + sent.len() as u64;
        follower.deliver(append(2, 1, 3, prev, sent, 0));
        let expected = Ready {
            persisted_messages: vec![accepted(1, 2, 3, last)],
            persist: Persist {
                entries: persisted,
                ..Persist::default()
            },
            ..Ready::default()
        };
        assert_eq!(follower.take(), expected, "prev {prev:?}");
        assert_eq!(follower.stored_entries(), log, "prev {prev:?}");
    }
}

/// Raft §5.3, receiver rule 5: "If leaderCommit > commitIndex, set commitIndex =
/// min(leaderCommit, index of last new entry)"; committed entries are handed out in order
/// (etcd `TestFollowerCommitEntry`).
#[test]
fn a_follower_commits_up_to_the_leaders_commit_but_not_past_the_entries_it_was_sent() {
    let mut follower = follower_with_log(&[1, 1, 1, 1]);
    follower.deliver(append(2, 1, 3, (1, 1), vec![entry(1, 2)], 4));
    let expected = Ready {
        persisted_messages: vec![accepted(1, 2, 3, 2)],
        persist: Persist {
            hard_state: Some(hard_state(3, None, 2)),
            commit_only: true,
            ..Persist::default()
        },
        committed: vec![entry(1, 1), entry(1, 2)],
        committed_before_persist: 2,
        ..Ready::default()
    };
    assert_eq!(follower.take(), expected);
}

/// Two replicas exchange messages, starting with the leader's `first` ready, until `follower`
/// holds the leader's whole log; returns the number of AppendEntries round trips it took.
fn round_trips_to_catch_up(leader: &mut Node, follower: &mut Node, first: Ready) -> usize {
    let follower_id = follower.id().0;
    let mut ready = first;
    for rounds in 1..=100 {
        for request in to(&ready, follower_id).into_iter().filter(is_append) {
            follower.deliver(request);
        }
        for response in follower.take().persisted_messages {
            leader.deliver(response);
        }
        if follower.log().last_log_id() == leader.log().last_log_id() {
            return rounds;
        }
        ready = leader.take();
    }
    panic!("the follower never caught up");
}

/// Raft §5.3: "the leader must find the latest log entry where the two logs agree, delete any
/// entries in the follower's log after that point, and send the follower all of the leader's
/// entries after that point." With the term hint a whole term is skipped per round trip, so
/// 50 divergent entries take two round trips, not 50 (6.5840 `TestBackup3B`; etcd
/// `TestLeaderSyncFollowerLog`).
#[test]
fn fast_backtracking_reaches_the_divergence_in_two_round_trips() {
    let leader_terms = [vec![1; 10], vec![3; 50]].concat();
    let follower_logs = [
        [vec![1; 10], vec![2; 50]].concat(),
        vec![1; 10],
        [vec![1; 10], vec![4; 70]].concat(),
    ];
    for follower_terms in follower_logs {
        let store = store_with_log(voters(&[1, 2, 3]), &leader_terms, 4, 10);
        let mut leader = node_over(config(1), store);
        let won = elect(&mut leader);
        let store = store_with_log(voters(&[1, 2, 3]), &follower_terms, 4, 10);
        let mut follower = node_over(config(2), store);
        let rounds = round_trips_to_catch_up(&mut leader, &mut follower, won);
        assert_eq!(rounds, 2, "follower terms {follower_terms:?}");
        assert_eq!(follower.stored_entries(), leader.stored_entries());
    }
}

/// Raft §5.3 (pipelining, thesis §10.2.2): a leader keeps up to `inflight_count_max`
/// AppendEntries in flight to a follower, then pauses until one is acknowledged.
#[test]
fn pipelining_fills_the_in_flight_window_then_pauses() {
    let config = Config {
        inflight_count_max: 3,
        ..config(1)
    };
    let mut leader = node_over(config, bootstrapped(voters(&[1, 2, 3])));
    let _ = elect(&mut leader);
    leader.deliver(accepted(2, 1, 1, 1));
    let _ = leader.take();
    let mut sent = Vec::new();
    for index in 2..=6 {
        leader.propose(format!("1/{index}").into_bytes()).unwrap();
        sent.push(leader.take().messages);
    }
    let expected: Vec<Vec<_>> = (2..=4)
        .map(|index| vec![append(1, 2, 1, (1, index - 1), vec![entry(1, index)], 1)])
        .chain([vec![], vec![]])
        .collect();
    assert_eq!(
        sent, expected,
        "three in flight, then paused (3 is still probing)"
    );

    leader.deliver(accepted(2, 1, 1, 2));
    let resumed = vec![append(1, 2, 1, (1, 4), vec![entry(1, 5), entry(1, 6)], 2)];
    assert_eq!(leader.take().messages, resumed);
}

/// Raft §5.2/§5.3: a leader sends a heartbeat every `heartbeat_interval_ticks`; it carries the
/// commit index capped at what each follower is known to hold, so a follower never commits an
/// entry it may not have.
#[test]
fn heartbeats_go_out_every_interval_with_the_commit_capped_at_each_followers_match() {
    let mut leader = new_leader(1, &[1, 2, 3]);
    leader.deliver(accepted(2, 1, 1, 1));
    let _ = leader.take();
    let mut heartbeat_ticks = Vec::new();
    for tick in 1..=9 {
        leader.tick();
        let ready = leader.take();
        if ready.messages.is_empty() {
            continue;
        }
        heartbeat_ticks.push(tick);
        let round = heartbeat_ticks.len() as u64;
        let expected = vec![heartbeat(1, 2, 1, 1, round), heartbeat(1, 3, 1, 0, round)];
        assert_eq!(ready.messages, expected, "tick {tick}");
    }
    assert_eq!(heartbeat_ticks, vec![2, 4, 6, 8]);
    assert_eq!(leader.role(), Role::Leader);
}

/// Raft §5.3: "If followers crash or run slowly, or if network packets are lost, the leader
/// retries AppendEntries RPCs indefinitely." A lost probe is sent again once the follower
/// answers a heartbeat.
#[test]
fn a_lost_probe_is_sent_again_after_the_next_heartbeat_answer() {
    let mut leader = new_leader(1, &[1, 2, 3]);
    leader.ticks(2);
    leader.deliver(heartbeat_response(2, 1, 1, 1));
    let expected = vec![append(1, 2, 1, (0, 0), vec![blank(1, 1)], 0)];
    assert_eq!(leader.take().messages, expected);
}

/// Raft §5.3, the same rule for a follower that is replicating: entries lost on the way are
/// sent again without waiting for a new proposal, and the follower catches up and commits.
#[test]
fn entries_lost_while_pipelining_are_sent_again_without_a_new_proposal() {
    let mut net = Net::new(&[1, 2, 3]);
    net.campaign(1);
    net.drop_messages(|message| message.to == NodeId(3) && is_append(message));
    for index in 2..=4 {
        net.propose(1, format!("1/{index}").as_bytes());
    }
    net.recover();
    for _ in 0..10 {
        net.tick(1);
    }
    assert_eq!(
        net.node(3).log().last_index().0,
        4,
        "3 got the lost entries"
    );
    assert_eq!(net.node(3).log().committed().0, 4);
}

/// Raft §5.5: "Raft RPCs are idempotent": AppendEntries delivered twice appends and persists
/// its entries once, and is acknowledged the same way both times.
#[test]
fn append_entries_delivered_twice_is_applied_once() {
    let mut follower = follower_with_log(&[1]);
    let request = append(2, 1, 3, (1, 1), vec![entry(3, 2), entry(3, 3)], 0);
    follower.deliver(request.clone());
    assert_eq!(
        follower.take().persist.entries,
        vec![entry(3, 2), entry(3, 3)]
    );
    follower.deliver(request);
    let expected = Ready {
        persisted_messages: vec![accepted(1, 2, 3, 3)],
        ..Ready::default()
    };
    assert_eq!(follower.take(), expected);
    assert_eq!(follower.stored_entries().len(), 3);
}

/// Raft §5.3 (Leader Append-Only, Figure 3): whatever followers answer, a leader never
/// overwrites or deletes entries in its own log.
#[test]
fn a_leader_never_changes_its_own_log_whatever_followers_answer() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    leader.propose(b"1/2".to_vec()).unwrap();
    let _ = leader.take();
    let before = leader.stored_entries();
    leader.deliver(rejected(2, 1, 1, 2, (0, 0)));
    leader.deliver(rejected(3, 1, 1, 1, (0, 0)));
    let ready = leader.take();
    assert_eq!(ready.persist.entries, vec![]);
    assert_eq!(leader.stored_entries(), before);
}

/// A leader whose follower 2 is still probing, with entries 2 to 6 proposed (3 payload bytes
/// each) and `config` applied on top of the default one.
fn leader_with_five_unsent_entries(config: Config) -> Node {
    let mut leader = node_over(config, bootstrapped(voters(&[1, 2, 3])));
    let _ = elect(&mut leader);
    for index in 2..=6 {
        leader.propose(format!("1/{index}").into_bytes()).unwrap();
    }
    let sent = leader.take().messages;
    assert!(
        to(
            &Ready {
                messages: sent,
                ..Ready::default()
            },
            2
        )
        .is_empty()
    );
    leader
}

/// Raft §5.3 with batching: once the probe matches, the leader sends what the follower is
/// missing in messages of at most `append_bytes_max` payload bytes.
/// Regression: an ack that moved the commit index sent one message, not the window.
#[test]
fn a_catching_up_follower_gets_entries_in_messages_of_bounded_size() {
    let config = Config {
        append_bytes_max: 6,
        ..config(1)
    };
    let mut leader = leader_with_five_unsent_entries(config);
    leader.deliver(accepted(2, 1, 1, 1));
    let expected = vec![
        append(1, 2, 1, (1, 1), vec![entry(1, 2), entry(1, 3)], 1),
        append(1, 2, 1, (1, 3), vec![entry(1, 4), entry(1, 5)], 1),
        append(1, 2, 1, (1, 5), vec![entry(1, 6)], 1),
    ];
    assert_eq!(to(&leader.take(), 2), expected);
}

/// Raft §5.3 pipelining: the in-flight window is bounded in bytes as well as in messages.
#[test]
fn the_in_flight_window_is_also_bounded_in_bytes() {
    let config = Config {
        append_bytes_max: 3,
        inflight_bytes_max: 6,
        ..config(1)
    };
    let mut leader = leader_with_five_unsent_entries(config);
    leader.deliver(accepted(2, 1, 1, 1));
    let expected = vec![
        append(1, 2, 1, (1, 1), vec![entry(1, 2)], 1),
        append(1, 2, 1, (1, 2), vec![entry(1, 3)], 1),
    ];
    assert_eq!(
        to(&leader.take(), 2),
        expected,
        "six bytes in flight, then paused"
    );
}

/// Raft §5.3, leader side: "After a rejection, the leader decrements nextIndex and retries";
/// with the hint it jumps to the last entry whose term the follower can match, and it ignores
/// a rejection of a probe it is no longer waiting for (etcd `TestLeaderAppResp`).
#[test]
fn a_rejection_sends_the_leader_back_to_the_hinted_position() {
    let blank_5 = blank(3, 5);
    let cases = [
        (
            4,
            (2, 3),
            Some(((2, 3), vec![entry(2, 4), blank_5.clone()])),
        ),
        (
            4,
            (1, 4),
            Some(((1, 2), vec![entry(2, 3), entry(2, 4), blank_5.clone()])),
        ),
        (
            4,
            (0, 0),
            Some((
                (0, 0),
                vec![
                    entry(1, 1),
                    entry(1, 2),
                    entry(2, 3),
                    entry(2, 4),
                    blank_5.clone(),
                ],
            )),
        ),
        (2, (0, 0), None),
    ];
    for (rejected_index, hint, expected) in cases {
        let store = store_with_log(voters(&[1, 2, 3]), &[1, 1, 2, 2], 2, 0);
        let mut leader = node_over(config(1), store);
        let won = elect(&mut leader);
        assert_eq!(
            to(&won, 2),
            vec![append(1, 2, 3, (2, 4), vec![blank(3, 5)], 0)]
        );
        leader.deliver(rejected(2, 1, 3, rejected_index, hint));
        let resent = expected.map(|(prev, entries)| append(1, 2, 3, prev, entries, 0));
        assert_eq!(
            to(&leader.take(), 2),
            Vec::from_iter(resent),
            "hint {hint:?}"
        );
    }
}

/// MultiRaft lets an idle leader's group quiesce: stop ticking and sending. A leader is idle
/// only once every follower acknowledged a heartbeat committing the whole log; holding the log
/// is not enough. A follower that missed the commit index would wait for it for good: no
/// heartbeat comes from a quiescent leader, and a learner does not campaign to wake it.
#[test]
fn a_leader_is_idle_only_once_every_follower_acknowledged_the_commit() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    assert!(
        !leader.is_idle(),
        "the followers hold the log but never heard it committed"
    );
    leader.heartbeat();
    let ready = leader.take();
    let round = |message: &flotilla_raft::Message| match message.body {
        flotilla_raft::MessageBody::Heartbeat { read_round, .. } => read_round,
        _ => panic!("{message:?} is not a heartbeat"),
    };
    let to_two = to(&ready, 2);
    leader.deliver(heartbeat_response(2, 1, 1, round(&to_two[0])));
    let _ = leader.take();
    assert!(!leader.is_idle(), "follower 3 has not acknowledged");
    for request in to(&ready, 3) {
        leader.deliver(heartbeat_response(3, 1, 1, round(&request)));
    }
    let _ = leader.take();
    assert!(leader.is_idle());
}

/// A follower that refuses the entry after one it acknowledged lost what it promised (never in
/// a correct run; the simulator's amnesiac mutation does it): the leader cannot move back past
/// what it counts as matched, so it probes again on the next heartbeat answer, not at once.
/// Resending at once echoed forever, and every duplicated answer doubled the echo.
#[test]
fn a_follower_refusing_what_it_acknowledged_is_probed_at_heartbeat_pace() {
    let store = store_with_log(voters(&[1, 2, 3]), &[1, 1, 2, 2], 2, 0);
    let mut leader = node_over(config(1), store);
    let _ = elect(&mut leader);
    leader.deliver(accepted(2, 1, 3, 4));
    let _ = leader.take();
    // Entry 5 refused: back to probing from 5, the entry after the four acknowledged.
    leader.deliver(rejected(2, 1, 3, 5, (0, 0)));
    let probe = vec![append(1, 2, 3, (2, 4), vec![blank(3, 5)], 0)];
    assert_eq!(to(&leader.take(), 2), probe);
    // The probe at 4 refused too: the follower lost entries it acknowledged.
    leader.deliver(rejected(2, 1, 3, 4, (0, 0)));
    assert_eq!(to(&leader.take(), 2), vec![], "no immediate resend");
    leader.deliver(rejected(2, 1, 3, 4, (0, 0)));
    assert_eq!(
        to(&leader.take(), 2),
        vec![],
        "nor for a duplicated refusal"
    );
    leader.deliver(heartbeat_response(2, 1, 3, 0));
    assert_eq!(
        to(&leader.take(), 2),
        probe,
        "probed again on a heartbeat answer"
    );
}

/// A probe still unanswered at the next heartbeat answer (lost, or queued behind a slow
/// follower) is sent again with one entry at most, not the whole `append_bytes_max`: resending
/// everything at every heartbeat kept a real leader's loop rereading its log for seconds
/// after a partition healed. One entry still acknowledges past what the leader counts as
/// matched, so an accepted short probe starts pipelined replication.
#[test]
fn an_unanswered_probe_is_sent_again_with_one_entry() {
    let store = store_with_log(voters(&[1, 2, 3]), &[1, 1, 1, 1], 1, 0);
    let mut leader = node_over(config(1), store);
    let _ = elect(&mut leader);
    // Follower 2 has nothing: back to probing from its first entry, with every entry.
    leader.deliver(rejected(2, 1, 2, 4, (0, 0)));
    let everything = vec![
        entry(1, 1),
        entry(1, 2),
        entry(1, 3),
        entry(1, 4),
        blank(2, 5),
    ];
    assert_eq!(
        to(&leader.take(), 2),
        vec![append(1, 2, 2, (0, 0), everything, 0)]
    );
    // Unanswered at the heartbeat answers: one entry each time.
    let short = vec![append(1, 2, 2, (0, 0), vec![entry(1, 1)], 0)];
    for _ in 0..2 {
        leader.deliver(heartbeat_response(2, 1, 2, 0));
        assert_eq!(to(&leader.take(), 2), short);
    }
    // Accepted: replication resumes after it, pipelined.
    leader.deliver(accepted(2, 1, 2, 1));
    let rest = vec![entry(1, 2), entry(1, 3), entry(1, 4), blank(2, 5)];
    assert_eq!(
        to(&leader.take(), 2),
        vec![append(1, 2, 2, (1, 1), rest, 0)]
    );
}
