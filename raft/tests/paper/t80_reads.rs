//! Linearizable reads: thesis §6.4 (ReadIndex) and §6.4.1 (leases); Raft §8 (read-only
//! operations).

use crate::util::*;
use flotilla_raft::{
    Config, LogIndex, MessageBody, NodeId, Persist, ProposeError, ReadMode, ReadState, Ready,
};

fn read(context: u64, index: u64) -> ReadState {
    ReadState {
        context,
        index: LogIndex(index),
    }
}

/// Thesis §6.4 step 1: "If the leader has not yet marked an entry from its current term
/// committed, it waits until it has done so." Then (step 3) one heartbeat round confirms it is
/// still leader, and the read is released at the commit index.
#[test]
fn a_read_waits_for_the_first_commit_of_the_term_then_for_a_heartbeat_round() {
    let mut leader = new_leader(1, &[1, 2, 3]);
    leader.read_index(7).unwrap();
    assert_eq!(
        leader.take(),
        Ready::default(),
        "the blank entry is not committed yet"
    );

    leader.deliver(accepted(2, 1, 1, 1));
    let expected = Ready {
        messages: vec![heartbeat(1, 2, 1, 1, 1), heartbeat(1, 3, 1, 0, 1)],
        persist: Persist {
            hard_state: Some(hard_state(1, Some(1), 1)),
            commit_only: true,
            ..Persist::default()
        },
        committed: vec![blank(1, 1)],
        committed_before_persist: 1,
        ..Ready::default()
    };
    assert_eq!(leader.take(), expected);

    leader.deliver(heartbeat_response(2, 1, 1, 1));
    let released = Ready {
        reads: vec![read(7, 1)],
        ..Ready::default()
    };
    assert_eq!(leader.take(), released);
}

/// Thesis §6.4: reads that arrive before a round starts share it (one heartbeat per follower),
/// and the round confirms them only once a majority (the leader and two of four followers)
/// answered.
#[test]
fn reads_share_one_heartbeat_round_that_a_majority_must_answer() {
    let mut leader = settled_leader(1, &[1, 2, 3, 4, 5]);
    for context in 1..=3 {
        leader.read_index(context).unwrap();
    }
    let expected: Vec<_> = (2..=5)
        .map(|follower| heartbeat(1, follower, 1, 1, 1))
        .collect();
    assert_eq!(leader.take().messages, expected);
    leader.deliver(heartbeat_response(2, 1, 1, 1));
    assert_eq!(
        leader.take(),
        Ready::default(),
        "two of five is no majority"
    );
    leader.deliver(heartbeat_response(3, 1, 1, 1));
    assert_eq!(
        leader.take().reads,
        vec![read(1, 1), read(2, 1), read(3, 1)]
    );
}

/// Thesis §6.4: a leader that learns it was deposed gives up its pending reads; the caller
/// retries them at the new leader.
#[test]
fn a_deposed_leaders_pending_reads_are_aborted() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    leader.read_index(5).unwrap();
    leader.read_index(6).unwrap();
    let _ = leader.take();
    leader.deliver(heartbeat(2, 1, 2, 0, 0));
    let ready = leader.take();
    assert_eq!(ready.aborted_reads, vec![5, 6]);
    assert_eq!(ready.reads, vec![]);
}

/// Thesis §6.4.1: with a lease, a leader that heard from a majority within the election timeout
/// (less the clock drift bound) answers at once, with no round; once the lease has run out a
/// read needs a round again.
#[test]
fn a_lease_read_is_answered_without_a_round_only_while_the_lease_holds() {
    let config = Config {
        read_mode: ReadMode::Lease,
        ..config(1)
    };
    let mut leader = node_over(config, bootstrapped(voters(&[1, 2, 3])));
    let _ = elect(&mut leader);
    leader.deliver(accepted(2, 1, 1, 1));
    leader.deliver(accepted(3, 1, 1, 1));
    leader.ticks(2);
    leader.deliver(heartbeat_response(2, 1, 1, 1));
    let _ = leader.take();

    leader.read_index(1).unwrap();
    let answered = Ready {
        reads: vec![read(1, 1)],
        ..Ready::default()
    };
    assert_eq!(leader.take(), answered, "within the lease: no round");

    leader.ticks(8);
    leader.read_index(2).unwrap();
    let ready = leader.take();
    assert_eq!(ready.reads, vec![], "the lease ran out");
    assert_eq!(
        ready.messages.len(),
        2,
        "a heartbeat round confirms the read instead"
    );
}

/// Raft §8: only the leader serves linearizable reads; a follower refuses, naming the leader.
#[test]
fn a_follower_refuses_a_read_with_the_leader_hint() {
    let mut follower = follower_of(1, &[1, 2, 3], 2, 1);
    let refused = follower.read_index(1);
    let not_leader = ProposeError::NotLeader {
        leader_hint: Some(NodeId(2)),
    };
    assert_eq!(refused, Err(not_leader));
    assert_eq!(follower.take(), Ready::default());
}

/// A lease-mode leader of `voter_ids` whose lease is fresh: every follower acknowledged the
/// blank entry and follower 2 answered the first heartbeat round.
fn leader_with_fresh_lease(voter_ids: &[u64]) -> Node {
    let config = Config {
        read_mode: ReadMode::Lease,
        ..config(1)
    };
    let mut leader = node_over(config, bootstrapped(voters(voter_ids)));
    let _ = elect(&mut leader);
    for &follower in &voter_ids[1..] {
        leader.deliver(accepted(follower, 1, 1, 1));
    }
    leader.ticks(2);
    leader.deliver(heartbeat_response(2, 1, 1, 1));
    let _ = leader.take();
    leader
}

/// Thesis §6.4.1 with §3.10: voters grant a TimeoutNow campaign even while they hear the
/// leader, so once the leader has sent TimeoutNow another leader may exist before its lease
/// runs out. From then on its reads need a heartbeat round (TiKV suspects its lease on
/// TimeoutNow for the same reason).
/// Regression: the leader answered lease reads after sending TimeoutNow.
#[test]
fn a_leader_that_sent_timeout_now_no_longer_trusts_its_lease() {
    let mut leader = leader_with_fresh_lease(&[1, 2, 3]);
    leader.transfer_leader(NodeId(2)).unwrap();
    let sent = leader.take().messages;
    assert_eq!(sent, vec![message(1, 2, 1, MessageBody::TimeoutNow)]);
    leader.read_index(1).unwrap();
    let ready = leader.take();
    assert_eq!(ready.reads, vec![], "2 may already lead term 2");
    assert_eq!(
        ready.messages.len(),
        2,
        "the read waits for a heartbeat round"
    );
}

/// Thesis §6.4 with Raft §6: in the joint configuration that replaces voter 1 by voter 2, the
/// leader 1 is not alone: a read must be confirmed by 2 as well.
/// Regression: leader 1 of {2}/{1} counted itself "alone" and skipped the round.
#[test]
fn in_a_joint_configuration_a_read_needs_both_halves() {
    let joint = flotilla_raft::Membership {
        outgoing: voters(&[1]).voters,
        ..voters(&[2])
    };
    let mut leader = node_over(config(1), bootstrapped(joint));
    let _ = elect(&mut leader);
    leader.deliver(accepted(2, 1, 1, 1));
    let _ = leader.take();
    leader.read_index(1).unwrap();
    let ready = leader.take();
    assert_eq!(ready.reads, vec![], "2 must confirm the leadership first");
    assert!(
        ready.messages.contains(&heartbeat(1, 2, 1, 1, 1)),
        "a round asks 2"
    );
    leader.deliver(heartbeat_response(2, 1, 1, 1));
    assert_eq!(leader.take().reads, vec![read(1, 1)]);
}

/// A single voter needs no round: it is its own majority.
#[test]
fn a_single_voter_answers_a_read_at_once() {
    let mut leader = new_leader(1, &[1]);
    let _ = leader.take();
    leader.read_index(1).unwrap();
    let expected = Ready {
        reads: vec![read(1, 1)],
        ..Ready::default()
    };
    assert_eq!(leader.take(), expected);
}

/// Every queue is bounded: past `pending_reads_max` a read is refused, to be retried.
#[test]
fn reads_past_the_pending_limit_are_refused() {
    let config = Config {
        pending_reads_max: 2,
        ..config(1)
    };
    let mut leader = node_over(config, bootstrapped(voters(&[1, 2, 3])));
    let _ = elect(&mut leader);
    leader.read_index(1).unwrap();
    leader.read_index(2).unwrap();
    assert_eq!(leader.read_index(3), Err(ProposeError::TooManyPendingReads));
}

/// Thesis §6.4.1: a lease holds because voters that acknowledged the leader refuse votes for
/// an election timeout. A voter that crashes and restarts forgot whom it heard, so in lease
/// mode it refuses votes for an election timeout after starting, as it may have acknowledged a
/// lease that is still running.
/// Regression: a restarted voter granted a vote at once, under a running lease.
#[test]
fn a_restarted_voter_refuses_votes_while_a_lease_it_acknowledged_may_run() {
    let lease = |id| Config {
        read_mode: ReadMode::Lease,
        ..config(id)
    };
    let mut voter = node_over(lease(2), bootstrapped(voters(&[1, 2, 3])));
    voter.deliver(heartbeat(1, 2, 1, 0, 1));
    let _ = voter.take();
    let mut restarted = node_over(lease(2), voter.into_store());
    restarted.deliver(request_vote(3, 2, 2, (0, 0)));
    assert_eq!(
        restarted.take(),
        Ready::default(),
        "leader 1 may still hold a lease"
    );
    restarted.ticks(10);
    restarted.deliver(request_vote(3, 2, 2, (0, 0)));
    assert_eq!(
        restarted.take().persisted_messages,
        vec![vote(2, 3, 2, true)]
    );
}
