//! Client interaction: Raft §8 (requests go to the leader; others redirect).

use crate::util::*;
use flotilla_raft::{ChangeStep, Config, NodeId, ProposeError, Ready};

fn not_leader(hint: Option<u64>) -> ProposeError {
    ProposeError::NotLeader {
        leader_hint: hint.map(NodeId),
    }
}

/// Raft §8: "If the client's first choice is not the leader, that server will reject the
/// client's request and supply information about the most recent leader it has heard from."
/// With no leader known the hint is empty; every kind of request is refused the same way.
#[test]
fn a_proposal_to_a_non_leader_is_refused_with_the_last_known_leader() {
    let mut follower = node(1, &[1, 2, 3]);
    assert_eq!(follower.propose(b"x".to_vec()), Err(not_leader(None)));
    follower.deliver(heartbeat(2, 1, 1, 0, 0));
    let _ = follower.take();
    assert_eq!(follower.propose(b"x".to_vec()), Err(not_leader(Some(2))));
    let change = vec![ChangeStep::AddVoter(NodeId(4))];
    assert_eq!(
        follower.propose_conf_change(change),
        Err(not_leader(Some(2)))
    );
    assert_eq!(
        follower.transfer_leader(NodeId(3)),
        Err(not_leader(Some(2)))
    );
    assert_eq!(
        follower.take(),
        Ready::default(),
        "a refused request changes nothing"
    );
}

/// Raft §8: a candidate knows no leader for its term, so its hint is empty.
#[test]
fn a_candidate_refuses_proposals_without_a_hint() {
    let config = Config {
        pre_vote: false,
        ..config(1)
    };
    let mut candidate = node_over(config, bootstrapped(voters(&[1, 2, 3])));
    candidate.deliver(heartbeat(2, 1, 1, 0, 0));
    let _ = candidate.take();
    candidate.ticks(20);
    assert_eq!(candidate.role(), flotilla_raft::Role::Candidate);
    assert_eq!(candidate.propose(b"x".to_vec()), Err(not_leader(None)));
}

/// Raft §8: the leader accepts a command and tells the client the index it will have.
#[test]
fn the_leader_accepts_a_proposal_at_the_next_index() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    assert_eq!(leader.propose(b"1/2".to_vec()).map(|index| index.0), Ok(2));
    assert_eq!(leader.propose(b"1/3".to_vec()).map(|index| index.0), Ok(3));
}
