//! Leadership transfer: thesis §3.10.

use crate::util::*;
use flotilla_raft::{LogId, MessageBody, NodeId, Persist, ProposeError, Ready, Role, Term};

fn timeout_now(from: u64, to: u64, term: u64) -> flotilla_raft::Message {
    message(from, to, term, MessageBody::TimeoutNow)
}

fn transfer_vote_request(from: u64, to: u64, term: u64, last: LogId) -> flotilla_raft::Message {
    let body = MessageBody::RequestVote {
        pre_vote: false,
        last_log: last,
        transfer: true,
    };
    message(from, to, term, body)
}

/// Thesis §3.10: "The prior leader sends AppendEntries requests to the target server" until it
/// is caught up, "then sends it a TimeoutNow request"; meanwhile it refuses client requests.
#[test]
fn a_transfer_catches_the_target_up_then_sends_timeout_now() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    leader.propose(b"1/2".to_vec()).unwrap();
    let _ = leader.take();
    leader.transfer_leader(NodeId(2)).unwrap();
    assert_eq!(
        leader.take().messages,
        vec![],
        "2 lacks entry 2: no TimeoutNow yet"
    );
    assert_eq!(
        leader.propose(b"x".to_vec()),
        Err(ProposeError::TransferInProgress)
    );

    leader.deliver(accepted(2, 1, 1, 2));
    let ready = leader.take();
    assert_eq!(ready.messages, vec![timeout_now(1, 2, 1)]);
    assert_eq!(
        leader.role(),
        Role::Leader,
        "the old leader leads until it hears the new term"
    );
}

/// Thesis §3.10: a transfer to a target already caught up sends TimeoutNow at once.
#[test]
fn a_transfer_to_an_up_to_date_target_sends_timeout_now_at_once() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    leader.transfer_leader(NodeId(3)).unwrap();
    let expected = Ready {
        messages: vec![timeout_now(1, 3, 1)],
        ..Ready::default()
    };
    assert_eq!(leader.take(), expected);
}

/// Thesis §3.10: "Upon receiving TimeoutNow, the target server ... starts a new election,
/// incrementing its term" (no pre-vote), and the voters, though they heard the leader, grant
/// it (a transfer is not a disruption, §4.2.3).
#[test]
fn the_target_campaigns_at_once_and_voters_in_lease_grant_it() {
    let mut target = follower_of(2, &[1, 2, 3], 1, 1);
    target.deliver(timeout_now(1, 2, 1));
    let expected = Ready {
        persisted_messages: vec![
            transfer_vote_request(2, 1, 2, LogId::default()),
            transfer_vote_request(2, 3, 2, LogId::default()),
        ],
        persist: Persist {
            hard_state: Some(hard_state(2, Some(2), 0)),
            ..Persist::default()
        },
        leader_changed: Some(None),
        ..Ready::default()
    };
    assert_eq!(target.take(), expected);
    assert_eq!(target.role(), Role::Candidate);

    let mut voter = follower_of(3, &[1, 2, 3], 1, 1);
    voter.deliver(transfer_vote_request(2, 3, 2, LogId::default()));
    assert_eq!(voter.take().persisted_messages, vec![vote(3, 2, 2, true)]);
}

/// Thesis §3.10: "If the transfer does not complete within an election timeout, the prior
/// leader aborts the transfer and resumes accepting client requests."
#[test]
fn a_transfer_aborts_after_an_election_timeout_when_the_target_is_down() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    leader.propose(b"1/2".to_vec()).unwrap();
    let _ = leader.take();
    leader.transfer_leader(NodeId(3)).unwrap();
    leader.ticks(9);
    assert_eq!(
        leader.propose(b"x".to_vec()),
        Err(ProposeError::TransferInProgress)
    );
    leader.ticks(1);
    assert_eq!(leader.role(), Role::Leader);
    assert_eq!(leader.propose(b"1/3".to_vec()).map(|index| index.0), Ok(3));
    let sent = leader.take().messages;
    assert!(
        sent.iter()
            .all(|m| !matches!(m.body, MessageBody::TimeoutNow))
    );
}

/// Thesis §3.10: only a voter can take over.
#[test]
fn a_transfer_to_a_non_voter_is_refused() {
    let mut leader = settled_leader(1, &[1, 2, 3]);
    assert_eq!(
        leader.transfer_leader(NodeId(4)),
        Err(ProposeError::NotAVoter(NodeId(4)))
    );
    assert!(
        leader.propose(b"1/2".to_vec()).is_ok(),
        "no transfer started"
    );
}

/// Thesis §3.10 end to end: the target wins the next term and the old leader follows it.
#[test]
fn leadership_moves_to_the_target() {
    let mut net = Net::new(&[1, 2, 3]);
    net.campaign(1);
    net.propose(1, b"1/2");
    net.node_mut(1).transfer_leader(NodeId(3)).unwrap();
    net.stabilize();
    assert_eq!(net.leader(), Some(3));
    assert_eq!(net.node(3).term(), Term(2));
    assert_eq!(net.node(1).leader(), Some(NodeId(3)));
}
