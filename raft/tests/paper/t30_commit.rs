//! Commitment: Raft §5.3 (a majority stores it) and §5.4.2 (Figure 8: only entries of the
//! leader's term commit by counting).

use crate::util::*;
use flotilla_raft::{Config, Message, MessageBody, Persist, Ready};

/// Raft §5.3: "A log entry is committed once the leader that created the entry has replicated
/// it on a majority of the servers" (etcd `TestLeaderAcknowledgeCommit`).
#[test]
fn the_leader_commits_an_entry_once_a_majority_stored_it() {
    let cases: &[(u64, &[u64], bool)] = &[
        (1, &[], true),
        (3, &[], false),
        (3, &[2], true),
        (3, &[2, 3], true),
        (5, &[2], false),
        (5, &[2, 3], true),
        (5, &[2, 3, 4, 5], true),
    ];
    for &(size, acks, commits) in cases {
        let ids: Vec<u64> = (1..=size).collect();
        let mut leader = new_leader(1, &ids);
        for &follower in acks {
            leader.deliver(accepted(follower, 1, 1, 1));
        }
        let ready = leader.take();
        let expected = if commits { vec![blank(1, 1)] } else { vec![] };
        assert_eq!(ready.committed, expected, "size {size} acks {acks:?}");
        assert_eq!(
            leader.log().committed().0,
            u64::from(commits),
            "size {size} acks {acks:?}"
        );
    }
}

/// Thesis §10.2.1: the leader may send an entry before its own write finishes, but it counts
/// itself for the entry only once it is persisted (after `advance`).
#[test]
fn a_leader_counts_itself_for_an_entry_only_once_it_is_persisted() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    let _ = leader.take();
    leader.propose(b"1/2".to_vec()).unwrap();
    leader.deliver(accepted(2, 1, 1, 2));
    let ready = leader.take();
    assert_eq!(ready.persist.entries, vec![entry(1, 2)]);
    assert_eq!(
        ready.committed,
        vec![],
        "one follower alone is no majority of three"
    );
    let after_persist = leader.take();
    assert_eq!(after_persist.committed, vec![entry(1, 2)]);
    assert_eq!(
        after_persist.persist.hard_state,
        Some(hard_state(1, Some(1), 2))
    );
}

/// Raft §5.3: "Once a follower learns that a log entry is committed, it applies the entry to its
/// local state machine (in log order)", from AppendEntries or from a heartbeat.
#[test]
fn a_follower_learns_the_commit_index_and_applies_in_log_order() {
    let mut follower = follower_of(2, &[1, 2, 3], 1, 1);
    let entries = vec![entry(1, 1), entry(1, 2), entry(1, 3)];
    follower.deliver(append(1, 2, 1, (0, 0), entries, 2));
    let ready = follower.take();
    assert_eq!(ready.committed, vec![entry(1, 1), entry(1, 2)]);
    follower.deliver(heartbeat(1, 2, 1, 3, 1));
    let expected = Ready {
        persisted_messages: vec![heartbeat_response(2, 1, 1, 1)],
        persist: Persist {
            hard_state: Some(hard_state(1, None, 3)),
            commit_only: true,
            ..Persist::default()
        },
        committed: vec![entry(1, 3)],
        committed_before_persist: 1,
        ..Ready::default()
    };
    assert_eq!(follower.take(), expected);
}

/// Raft §5.4.2, Figure 8: "Raft never commits log entries from previous terms by counting
/// replicas." A leader of term 3 whose entry 2 (term 2) is on a majority of five does not
/// commit it; once its own blank entry (term 3) is on a majority, both commit (etcd
/// `TestLeaderOnlyCommitsLogFromCurrentTerm`).
#[test]
fn a_leader_never_commits_an_earlier_term_entry_by_counting_replicas() {
    let ids = [1, 2, 3, 4, 5];
    let store = store_with_log(voters(&ids), &[1, 2], 2, 0);
    let mut leader = node_over(config(1), store);
    let _ = elect(&mut leader);
    assert_eq!(leader.term_number(), 3);
    leader.deliver(accepted(2, 1, 3, 2));
    leader.deliver(accepted(3, 1, 3, 2));
    let ready = leader.take();
    assert_eq!(
        ready.committed,
        vec![],
        "entry 2 of term 2 is on 3 of 5, but not committed"
    );
    assert_eq!(ready.persist.hard_state, None);

    leader.deliver(accepted(2, 1, 3, 3));
    leader.deliver(accepted(3, 1, 3, 3));
    let ready = leader.take();
    assert_eq!(ready.committed, vec![entry(1, 1), entry(2, 2), blank(3, 3)]);
    assert_eq!(ready.persist.hard_state, Some(hard_state(3, Some(1), 3)));
}

/// Raft §5.4.2, Figure 8 (e) and §8: entries of an earlier term commit indirectly, with the new
/// leader's first entry. Entries 2-3 of term 1 reach only replicas 1 and 2; replica 2 then wins
/// term 2 and its blank entry commits them everywhere (etcd `TestCommitWithoutNewTermEntry`).
#[test]
fn earlier_term_entries_commit_with_the_new_leaders_first_entry() {
    let mut net = Net::with_config(&[1, 2, 3, 4, 5], |id| Config {
        check_quorum: false,
        ..config(id)
    });
    net.campaign(1);
    for other in [3, 4, 5] {
        net.cut(1, other);
    }
    net.propose(1, b"1/2");
    net.propose(1, b"1/3");
    assert_eq!(
        net.node(1).log().committed().0,
        1,
        "two of five hold entries 2-3"
    );
    net.recover();
    net.campaign(2);
    assert_eq!(net.leader(), Some(2));
    for _ in 0..2 {
        net.tick(2);
    }
    for (id, committed) in net.committed() {
        assert_eq!(committed, 4, "replica {id}");
        assert_eq!(
            net.node_mut(id).stored_entries()[1..3],
            [entry(1, 2), entry(1, 3)]
        );
    }
}

/// A vote answer from 2 (in `term`) that says its commit is `(commit_term, commit_index)`.
fn answer_with_commit(
    term: u64,
    pre_vote: bool,
    (commit_term, commit_index): (u64, u64),
) -> Message {
    let body = MessageBody::VoteResponse {
        pre_vote,
        granted: false,
        commit: log_id(commit_term, commit_index),
    };
    message(2, 1, term, body)
}

/// Replica 1 of {1, 2, 3} holding entries of `terms`, in term 2 with commit 1, campaigning.
fn pre_candidate(terms: &[u64]) -> Node {
    let mut node = node_over(config(1), store_with_log(voters(&[1, 2, 3]), terms, 2, 1));
    node.tick_until_campaign();
    let _ = node.take();
    node
}

/// Raft §5.3 (Log Matching) applied to a vote answer: a refusal carries the voter's commit
/// with its term, and a candidate whose log holds that entry commits up to it (the seed 3894
/// rule, `docs/protocol/membership.md`); the entries it learns are handed out to apply.
#[test]
fn a_vote_answer_teaches_the_commit_when_the_candidate_holds_that_entry() {
    let mut node = pre_candidate(&[1, 1, 2, 2]);
    node.deliver(answer_with_commit(2, true, (2, 3)));
    let ready = node.take();
    assert_eq!(ready.committed, vec![entry(1, 2), entry(2, 3)]);
    assert_eq!(node.log().committed().0, 3);
}

/// Not the same entry there (another term): nothing is learned, whatever the index.
#[test]
fn a_vote_answer_teaches_nothing_when_the_entry_there_differs() {
    for commit in [(1, 3), (3, 3), (3, 9), (1, 9)] {
        let mut node = pre_candidate(&[1, 1, 2, 2]);
        node.deliver(answer_with_commit(2, true, commit));
        assert_eq!(node.log().committed().0, 1, "commit {commit:?}");
    }
}

/// A log that ends before the voter's commit, in an entry of the same term: that entry came
/// from the same leader as the voter's, at the same index, so the prefix up to it is the
/// voter's, and committed.
#[test]
fn a_shorter_log_ending_in_the_commits_term_learns_up_to_its_end() {
    let mut node = pre_candidate(&[1, 1, 2, 2]);
    node.deliver(answer_with_commit(2, true, (2, 7)));
    assert_eq!(node.log().committed().0, 4);
}

/// What is committed stays committed in every term: an answer from an older term (a removed
/// replica that no longer follows the terms) and one from a newer term still teach. A
/// leader counts instead (Figure 8) and ignores it.
#[test]
fn a_vote_answer_of_any_term_teaches_but_not_a_leader() {
    for term in [1, 3] {
        let mut node = pre_candidate(&[1, 1, 2, 2]);
        node.deliver(answer_with_commit(term, false, (2, 4)));
        assert_eq!(node.log().committed().0, 4, "answer in term {term}");
    }
    let mut leader = new_leader(1, &[1, 2, 3]);
    leader.deliver(answer_with_commit(1, false, (1, 1)));
    assert_eq!(leader.log().committed().0, 0);
}
