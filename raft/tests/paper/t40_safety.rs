//! Election restriction: Raft §5.4.1 (the up-to-date rule) and leader completeness.

use crate::util::*;
use flotilla_raft::{Config, Persist, Ready, Role, Term};

/// Candidates' last entries against a voter whose log ends at (term 2, index 2), and whether
/// the voter must grant (etcd `TestVoter`).
const UP_TO_DATE_CASES: &[((u64, u64), bool)] = &[
    ((1, 3), false),
    ((2, 1), false),
    ((2, 2), true),
    ((2, 3), true),
    ((3, 1), true),
];

/// Raft §5.4.1: "If the logs have last entries with different terms, then the log with the
/// later term is more up-to-date. If the logs end with the same term, then whichever log is
/// longer is more up-to-date." The voter grants only a candidate at least as up to date.
#[test]
fn a_voter_refuses_a_candidate_whose_log_is_less_up_to_date() {
    for &(last, granted) in UP_TO_DATE_CASES {
        let mut voter = node_over(config(1), store_with_log(voters(&[1, 2, 3]), &[2, 2], 2, 0));
        voter.deliver(request_vote(2, 1, 3, last));
        let expected = Ready {
            persisted_messages: vec![vote(1, 2, 3, granted)],
            persist: Persist {
                hard_state: Some(hard_state(3, granted.then_some(2), 0)),
                ..Persist::default()
            },
            ..Ready::default()
        };
        assert_eq!(voter.take(), expected, "candidate last {last:?}");
    }
}

/// Thesis §9.6: a pre-vote applies the same rule but changes nothing on the voter: a grant
/// answers in the term asked about, a refusal in the voter's own term, and nothing is persisted.
#[test]
fn a_pre_vote_applies_the_up_to_date_rule_and_changes_no_state() {
    for &(last, granted) in UP_TO_DATE_CASES {
        let mut voter = node_over(config(1), store_with_log(voters(&[1, 2, 3]), &[2, 2], 2, 0));
        voter.deliver(request_pre_vote(2, 1, 3, last));
        let answer_term = if granted { 3 } else { 2 };
        let expected = Ready {
            persisted_messages: vec![pre_vote(1, 2, answer_term, granted)],
            ..Ready::default()
        };
        assert_eq!(voter.take(), expected, "candidate last {last:?}");
        assert_eq!(voter.term(), Term(2));
    }
}

/// Raft §5.4 (Leader Completeness): a replica that missed a committed entry cannot win an
/// election, because every majority includes a voter that holds the entry.
#[test]
fn a_replica_that_missed_a_committed_entry_cannot_be_elected() {
    let mut net = Net::with_config(&[1, 2, 3], |id| Config {
        check_quorum: false,
        pre_vote: false,
        ..config(id)
    });
    net.campaign(1);
    net.isolate(3);
    net.propose(1, b"1/2");
    assert_eq!(net.node(1).log().committed().0, 2);
    net.recover();
    net.campaign(3);
    assert_ne!(net.node(3).role(), Role::Leader);
    assert_eq!(
        net.node(2).log().last_index().0,
        2,
        "the committed entry survived"
    );
    net.campaign(2);
    assert_eq!(net.leader(), Some(2), "a replica holding the entry can win");
}
